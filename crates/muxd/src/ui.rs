//! The live status page: `GET /ui` (a self-contained page, its HTML, CSS and JavaScript
//! compiled into the binary from `src/ui/`; nothing is fetched from elsewhere) and the
//! JSON it polls, `GET /v1/admin/status`.
//!
//! The page is served without auth: it holds no data. `/v1/admin/status` sits behind
//! the same authentication as the rest of the admin API and, like
//! `GET /v1/admin/health` whose report it includes, is for operators only (an
//! `[auth.operator]` token, or auth off on loopback). The page sends the token it was
//! given (`/ui#token=…` or its token box) as `Authorization: Bearer` on every call, the
//! dead-letter replay and discard buttons included.
//!
//! Where each figure comes from:
//! - circuit state, times opened, p50/p95/p99 and EWMA latency, error rate, calls in
//!   flight, hints pending and dead letters per backend: [`mux::Mux::health_report`]
//!   (the percentiles and error rate are the coordinator's own, over each backend's
//!   recent calls through its instrumentation layer);
//! - up/down per backend and per route: [`crate::readiness::readiness`], as `/readyz`;
//! - the dead letters: [`mux::Mux::dead_letters`] (the first [`MAX_DEAD_LETTERS`]);
//! - cache hit ratio and feed freshness: [`mux::Mux::stats`] and
//!   [`mux::Mux::cache_is_fresh`]; feed lag: the `mux_feed_lag_seconds` gauge the
//!   coordinator sets as it applies changes from the feed (how old the last applied
//!   change was), read from this process's metrics;
//! - anti-entropy: `[anti_entropy]` and the summary of this node's last pass
//!   ([`crate::antientropy::AntiEntropy::last_pass`]).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::service::ServiceError;

/// The page.
const INDEX: &str = include_str!("ui/index.html");
/// Its style sheet.
const STYLE: &str = include_str!("ui/style.css");
/// Its script.
const SCRIPT: &str = include_str!("ui/app.js");

/// How many dead letters the status carries (the total is always given).
pub const MAX_DEAD_LETTERS: usize = 100;

/// The page may load only itself and talk only to this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The static routes of the page (no auth: they hold no data).
pub(crate) fn pages() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route("/ui/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/ui/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /v1/admin/status`: everything the page shows, in one JSON document.
#[utoipa::path(get, path = "/v1/admin/status",
    responses((status = 200, description = "Backends (health, circuit, latency percentiles, error rate, hints, dead letters), routes, dead letters, cache and feed (operators only)"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn status(
    State(state): State<AppState>,
    who: axum::Extension<Principal>,
) -> Result<Response, ServiceError> {
    // The same rule as GET /v1/admin/health, whose report this includes.
    crate::admin::operator_only(&state, &who, "GET /v1/admin/status")?;
    Ok(axum::Json(gather(&state).await?).into_response())
}

/// Gathers the status of the configuration in force.
async fn gather(state: &AppState) -> Result<Value, mux::Error> {
    let live = state.live();
    let mux = &live.mux;
    let mut routes = live.config.mux.routes.clone();
    routes.push(live.config.mux.default.clone());
    let (health, ready) = futures_util::join!(
        mux.health_report(),
        crate::readiness::readiness(mux, &routes)
    );
    let health = health?;
    let dead = mux.dead_letters().await?;

    let backends: Vec<Value> = health
        .iter()
        .map(|h| {
            let r = ready.backends.iter().find(|b| b.name == h.backend);
            let mut v = serde_json::to_value(h).unwrap_or_default();
            v["name"] = json!(h.backend);
            v["up"] = json!(r.is_some_and(|r| r.up));
            v["error"] = json!(r.and_then(|r| r.error.clone()));
            v["routed"] = json!(r.is_some());
            v
        })
        .collect();
    let routes: Vec<Value> = routes
        .iter()
        .zip(&ready.routes)
        .map(|(route, r)| {
            json!({
                "route": r.route,
                "prefix": route.prefix,
                "tenant": route.tenant,
                "tags": route.tags,
                "write": r.write,
                "read": route.read.to_string(),
                "backends": route.backends.iter()
                    .map(|t| json!({"backend": t.backend, "role": t.role}))
                    .collect::<Vec<_>>(),
                "cache": route.cache.map(|c| json!({
                    "capacity": c.capacity,
                    "ttl_ms": c.ttl.as_millis() as u64,
                    "max_staleness_ms": c.max_staleness.as_millis() as u64,
                })),
                "ready": r.ready,
                "down": r.down,
            })
        })
        .collect();
    let dead_letters: Vec<Value> = dead
        .iter()
        .take(MAX_DEAD_LETTERS)
        .map(|d| {
            json!({
                "id": d.id, "backend": d.backend, "key": d.record.key().as_str(),
                "version": d.record.version().to_string(), "error": d.error,
                "attempts": d.attempts, "failed_at_ms": d.failed_at_ms,
            })
        })
        .collect();

    let stats = mux.stats();
    let c = stats.cache;
    let cached = routes.iter().any(|r| !r["cache"].is_null());
    let lookups = c.hits + c.misses + c.bypassed;
    let cache = cached.then(|| {
        json!({
            "hits": c.hits, "misses": c.misses, "bypassed": c.bypassed,
            "invalidations": c.invalidations, "evictions": c.evictions,
            "hit_ratio": (lookups > 0).then(|| c.hits as f64 / lookups as f64),
        })
    });
    let feed = json!({
        "kind": live.config.feed.clone().unwrap_or_default().kind,
        // Only routes with a cache tail the feed.
        "tailed": cached,
        "fresh": cached && mux.cache_is_fresh(),
        "lag_seconds": if cached { gauge(&state.metrics.render(), "mux_feed_lag_seconds") } else { None },
    });
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(json!({
        "time_ms": now_ms,
        "node_id": live.config.mux.node_id,
        "ready": ready.ready,
        "backends": backends,
        "routes": routes,
        "hints_pending": mux.hints_pending(),
        "dead_letters": dead_letters,
        "dead_letters_total": dead.len(),
        "stats": {
            "read_repairs": stats.read_repairs,
            "corrupt_reads": stats.corrupt_reads,
            "hedged_requests": stats.hedged_requests,
            "background_failures": stats.background_failures,
            "background_pending": stats.background_pending,
            "feed_publish_failures": stats.feed_publish_failures,
            "feed_publish_lost": stats.feed_publish_lost,
        },
        "cache": cache,
        "feed": feed,
        "anti_entropy": {
            "enabled": live.config.anti_entropy.enabled,
            "interval_ms": live.config.anti_entropy.interval.as_millis() as u64,
            "last_pass": state.anti_entropy().last_pass(),
        },
    }))
}

/// The value of an unlabelled gauge in Prometheus text, if present.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_gauge() {
        let text = "# TYPE mux_feed_lag_seconds gauge\nmux_feed_lag_seconds_x 9\n\
                    mux_feed_lag_seconds 0.25\nother 1\n";
        assert_eq!(gauge(text, "mux_feed_lag_seconds"), Some(0.25));
        assert_eq!(gauge(text, "absent"), None);
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for asset in [INDEX, SCRIPT, STYLE] {
            // The SVG namespace is a name, not a location.
            let asset = asset.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!asset.contains("http://") && !asset.contains("https://"));
        }
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/style.css"));
    }
}
