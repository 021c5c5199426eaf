// muxd status page: polls GET /v1/admin/status, keeps the last points in memory and
// draws them as inline SVG polylines. No libraries; nothing is loaded from elsewhere.
"use strict";

const POLL_MS = 1000;          // how often the status is polled
const KEEP = 120;              // points kept per series (two minutes at one a second)
const SVG_NS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "muxd-ui-token";
const DEGRADED = 0.1;          // the error rate from which an up backend shows as degraded
const W = 300, H = 70;         // chart coordinates (the SVG scales to its box)
const COLOR = { p50: "#2563eb", p95: "#9333ea", p99: "#db2777", err: "#c62828", one: "#0f766e", ok: "#16803c" };

const series = new Map();      // name -> [{t, v}]
let paused = false;
let timer = null;

// ---- the token: from #token=..., the token box, kept in sessionStorage ----

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  // Keep the token out of the address bar and history.
  history.replaceState(null, "", location.pathname + location.search);
}

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

// ---- small DOM helpers (text only: nothing from the server becomes markup) ----

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v; // CSSOM: allowed by the page's CSP
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function pill(text, kind) {
  return el("span", { class: "pill " + (kind || "") }, text);
}

function banner(text, info) {
  const b = document.getElementById("banner");
  b.hidden = !text;
  b.className = "banner" + (info ? " info" : "");
  b.textContent = text || "";
}

// ---- formatting ----

function ms(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v < 1) return (v * 1000).toFixed(0) + " µs";
  if (v < 100) return v.toFixed(v < 10 ? 2 : 1) + " ms";
  return (v / 1000).toFixed(2) + " s";
}

function pct(v) {
  return v === null || v === undefined ? "–" : (v * 100).toFixed(v < 0.1 ? 1 : 0) + " %";
}

function secs(v) {
  return v === null || v === undefined ? "–" : v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(2) + " s";
}

function ago(msAt, now) {
  const s = Math.max(0, Math.round((now - msAt) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function circuitKind(c) {
  return c === "closed" ? "ok" : c === "half_open" ? "warn" : "bad";
}

// ---- series and charts ----

function record(name, t, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return;
  let s = series.get(name);
  if (!s) series.set(name, (s = []));
  s.push({ t, v });
  if (s.length > KEEP) s.splice(0, s.length - KEEP);
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// One chart: `lines` are [{name, label, color}] of recorded series; `fmt` formats the
// y axis; `floor` is the least top of the y axis.
function chart(title, lines, fmt, floor) {
  const all = lines.map((l) => series.get(l.name) || []);
  const points = all.reduce((n, s) => Math.max(n, s.length), 0);
  const t0 = Math.min(...all.filter((s) => s.length).map((s) => s[0].t));
  const t1 = Math.max(...all.filter((s) => s.length).map((s) => s[s.length - 1].t));
  const top = niceMax(Math.max(floor || 0, ...all.flat().map((p) => p.v)));
  const box = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
    "data-points": String(points), role: "img", "aria-label": title,
  });
  for (const y of [0.25, 0.5, 0.75]) {
    box.append(svg("line", { class: "grid", x1: 0, x2: W, y1: H * y, y2: H * y, "vector-effect": "non-scaling-stroke" }));
  }
  if (points < 2) {
    const t = svg("text", { class: "empty", x: 8, y: H / 2 + 4 });
    t.textContent = "collecting…";
    box.append(t);
  }
  const span = Math.max(t1 - t0, 1);
  lines.forEach((l, i) => {
    const s = all[i];
    if (s.length < 2) return;
    const pts = s.map((p) => {
      const x = ((p.t - t0) / span) * W;
      const y = H - 3 - (Math.min(p.v, top) / top) * (H - 6);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    box.append(svg("polyline", {
      points: pts.join(" "), stroke: l.color, "data-series": l.name, "vector-effect": "non-scaling-stroke",
    }));
  });
  const legend = el("span", { class: "legend" },
    lines.length > 1 ? lines.map((l) => el("span", {}, el("i", { style: "background:" + l.color }), l.label)) : null,
    el("span", {}, "max " + fmt(top)));
  return el("div", { class: "chart", "data-chart": title }, el("div", { class: "head" }, el("span", {}, title), legend), box);
}

function figure(label, value) {
  return el("div", { class: "figure" }, label, el("b", {}, value));
}

// ---- sections ----

function renderSummary(s) {
  const down = s.backends.filter((b) => b.routed && !b.up).length;
  const degraded = s.backends.filter((b) => b.up && b.error_rate >= DEGRADED).length;
  const box = document.getElementById("summary");
  box.replaceChildren(
    pill(s.ready ? "ready" : "not ready", s.ready ? "ok" : "bad"),
    pill(`node ${s.node_id}`),
    pill(`${s.backends.length} backends` + (down ? `, ${down} down` : "") +
      (degraded ? `, ${degraded} degraded` : ""), down ? "bad" : degraded ? "warn" : ""),
    pill(`${s.hints_pending} hints pending`),
    pill(`${s.dead_letters_total} dead letters`),
    pill(new Date(s.time_ms).toLocaleTimeString()),
  );
}

function renderBackends(s) {
  const cards = s.backends.map((b) => {
    const n = "b:" + b.name + ":";
    // Down: its health check fails or its circuit is open (as /readyz); degraded: up, but
    // at least DEGRADED of its last calls failed.
    const state = !b.routed ? pill("unrouted")
      : !b.up ? pill("down", "bad")
      : b.error_rate >= DEGRADED ? pill("degraded", "warn") : pill("up", "ok");
    return el("div", { class: "card backend", "data-backend": b.name },
      el("h3", {}, el("span", { class: "name" }, b.name), state,
        pill("circuit " + b.circuit.replace("_", "-"), circuitKind(b.circuit))),
      b.error ? el("div", { class: "why" }, b.error) : null,
      el("div", { class: "figures" },
        figure("p50", ms(b.p50_ms)), figure("p95", ms(b.p95_ms)), figure("p99", ms(b.p99_ms)),
        figure("EWMA", ms(b.ewma_ms)), figure("errors", pct(b.error_rate)),
        figure("in flight", b.in_flight), figure("hints", b.hints_pending),
        figure("DLQ", b.dead_letters)),
      chart("latency", [
        { name: n + "p50", label: "p50", color: COLOR.p50 },
        { name: n + "p95", label: "p95", color: COLOR.p95 },
        { name: n + "p99", label: "p99", color: COLOR.p99 },
      ], ms, 1),
      chart("error rate", [{ name: n + "err", label: "errors", color: COLOR.err }], pct, 0.05));
  });
  document.getElementById("backends").replaceChildren(...cards);
}

function renderOverview(s) {
  const st = s.stats;
  const cards = [
    el("div", { class: "card" }, el("h3", {}, "Hints and background work"),
      el("div", { class: "figures" },
        figure("hints", s.hints_pending), figure("background", st.background_pending),
        figure("bg failures", st.background_failures), figure("read repairs", st.read_repairs)),
      chart("hints pending", [{ name: "hints", label: "hints", color: COLOR.one }], (v) => v.toFixed(0), 4)),
  ];
  if (s.cache) {
    const c = s.cache;
    cards.push(el("div", { class: "card" }, el("h3", {}, "Route cache"),
      el("div", { class: "figures" },
        figure("hit ratio", pct(c.hit_ratio)), figure("hits", c.hits),
        figure("misses", c.misses), figure("bypassed", c.bypassed)),
      chart("hit ratio", [{ name: "hit_ratio", label: "hit ratio", color: COLOR.ok }], pct, 1)));
  }
  const f = s.feed;
  cards.push(el("div", { class: "card" }, el("h3", {}, "Change feed ", pill(f.kind),
    f.tailed ? pill(f.fresh ? "fresh" : "stale", f.fresh ? "ok" : "warn") : pill("not tailed")),
    el("div", { class: "figures" },
      figure("lag", secs(f.lag_seconds)), figure("publish fails", st.feed_publish_failures),
      figure("lost", st.feed_publish_lost), figure("hedged reads", st.hedged_requests)),
    f.tailed
      ? chart("feed lag", [{ name: "feed_lag", label: "lag", color: COLOR.p95 }], secs, 0.1)
      : el("p", { class: "muted" }, "No route has a cache, so this node does not tail the feed.")));
  document.getElementById("overview").replaceChildren(...cards);
}

function renderRoutes(s) {
  const rows = s.routes.map((r) => el("tr", { "data-route": r.prefix },
    el("td", {}, el("code", {}, r.prefix || "(default)"),
      r.tenant ? el("div", { class: "muted" }, "tenant " + r.tenant) : null,
      Object.keys(r.tags || {}).length ? el("div", { class: "muted" },
        Object.entries(r.tags).map(([k, v]) => k + "=" + v).join(", ")) : null),
    el("td", {}, r.backends.map((b) => el("span", {
      class: "chip" + (r.down.includes(b.backend) ? " down" : ""), "data-route-backend": b.backend,
    }, b.backend, el("small", {}, b.role.replace("_", " "))))),
    el("td", {}, r.write), el("td", {}, r.read),
    el("td", {}, r.cache ? `${r.cache.capacity} entries, ≤ ${r.cache.max_staleness_ms} ms stale` : "–"),
    el("td", {}, pill(r.ready ? "ready" : "not ready", r.ready ? "ok" : "bad"))));
  document.querySelector("#routes tbody").replaceChildren(...rows);
}

function renderDeadLetters(s) {
  const total = s.dead_letters_total;
  document.getElementById("dead-count").textContent =
    total > s.dead_letters.length ? `(${s.dead_letters.length} of ${total})` : `(${total})`;
  const rows = s.dead_letters.map((d) => el("tr", { "data-dead-letter": d.id },
    el("td", {}, d.id), el("td", {}, el("code", {}, d.backend)), el("td", {}, el("code", {}, d.key)),
    el("td", { class: "mono" }, d.version), el("td", {}, d.attempts), el("td", { class: "nowrap" }, ago(d.failed_at_ms, s.time_ms)),
    el("td", { class: "error" }, d.error),
    el("td", { class: "actions" },
      el("button", { "data-action": "replay", "data-id": d.id, title: "Hand it to its backend again" }, "Replay"),
      " ",
      el("button", { class: "danger", "data-action": "discard", "data-id": d.id, title: "Remove it for good" }, "Discard"))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No dead letters.")));
  document.querySelector("#dead tbody").replaceChildren(...rows);
}

// ---- polling ----

function render(s) {
  const t = s.time_ms;
  for (const b of s.backends) {
    record("b:" + b.name + ":p50", t, b.p50_ms);
    record("b:" + b.name + ":p95", t, b.p95_ms);
    record("b:" + b.name + ":p99", t, b.p99_ms);
    record("b:" + b.name + ":err", t, b.error_rate);
  }
  record("hints", t, s.hints_pending);
  if (s.cache) record("hit_ratio", t, s.cache.hit_ratio);
  record("feed_lag", t, s.feed.lag_seconds);
  renderSummary(s);
  renderBackends(s);
  renderOverview(s);
  renderRoutes(s);
  renderDeadLetters(s);
}

async function poll() {
  timer = null;
  try {
    const r = await fetch("/v1/admin/status", { headers: headers(), cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      const body = await r.json().catch(() => ({}));
      const why = (body.error && body.error.message) || r.statusText;
      banner(`${r.status}: ${why} — enter an operator token above (or open /ui#token=…).`);
    } else if (!r.ok) {
      banner(`GET /v1/admin/status answered ${r.status}`);
    } else {
      banner("");
      render(await r.json());
    }
  } catch (e) {
    banner("muxd does not answer: " + e.message);
  }
  if (!paused) timer = setTimeout(poll, POLL_MS);
}

async function act(action, id) {
  const path = action === "replay" ? `/v1/admin/dead-letters/${id}/replay` : `/v1/admin/dead-letters/${id}`;
  const method = action === "replay" ? "POST" : "DELETE";
  if (action === "discard" && !confirm(`Discard dead letter ${id} for good?`)) return;
  try {
    const r = await fetch(path, { method, headers: headers() });
    const body = await r.json().catch(() => ({}));
    if (r.ok) banner(`Dead letter ${id}: ${action === "replay" ? "replayed" : "discarded"}.`, true);
    else banner(`${action} ${id}: ${r.status} ${(body.error && body.error.message) || ""}`);
  } catch (e) {
    banner(`${action} ${id}: ${e.message}`);
  }
  if (timer !== null) clearTimeout(timer);
  poll();
}

function start() {
  takeTokenFromFragment();
  const input = document.getElementById("token");
  input.value = token();
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    if (timer !== null) clearTimeout(timer);
    poll();
  });
  const pause = document.getElementById("pause");
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused && timer === null) poll();
  });
  document.getElementById("dead").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    if (b) {
      b.disabled = true;
      act(b.dataset.action, b.dataset.id);
    }
  });
  poll();
}

start();
