//! The deployment kit under `deploy/`, checked offline:
//!
//! - `promtool check rules` accepts `deploy/prometheus/muxd-rules.yml`;
//! - every manifest in `deploy/kubernetes/` validates (strictly: no unknown fields)
//!   against Kubernetes 1.30 with `kubernetes-validate`; only the CRD kinds it cannot
//!   know (ServiceMonitor) may be skipped, and every other resource must be reported as
//!   validated; the ConfigMap's TOML, rendered, is a configuration muxd accepts, and the
//!   Deployment sets every variable it uses;
//! - a real muxd, started through the image's entrypoint (`deploy/docker/
//!   muxd-entrypoint.sh`, which renders the config template and derives the node id
//!   from `POD_IP`), serves some traffic, and every metric named by an alerting rule or
//!   a dashboard query is in its `/metrics`.
//!
//! A missing tool fails the test with what to run; nothing is skipped.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::request;

const INSTALL: &str = "run `cargo xtask services up --install`";
/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";
/// Kinds defined by CRDs, which kubernetes-validate has no schema for.
const CRD_KINDS: &[&str] = &["ServiceMonitor"];

/// `path` under the repository's `deploy/`.
fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

/// The services venv's Python (`MUX_PYTHON`, or `$MUX_SERVICES_DIR/venv/bin/python`),
/// as in tests/src/lib.rs.
fn python() -> PathBuf {
    std::env::var_os("MUX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let dir = std::env::var("MUX_SERVICES_DIR")
                .unwrap_or_else(|_| "/var/tmp/mux-services".into());
            Path::new(&dir).join("venv/bin/python")
        })
}

/// Runs a tool; a tool that is not installed fails the test with what to run.
fn run_tool(cmd: &mut Command, what: &str) -> Output {
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what} is not installed: {INSTALL}")
        }
        Err(e) => panic!("cannot run {what} ({cmd:?}): {e}"),
    }
}

/// The venv's Python with kubernetes-validate importable, or a failure saying what to run.
fn validator_python() -> PathBuf {
    let python = python();
    let out = run_tool(
        Command::new(&python).args(["-c", "import kubernetes_validate, yaml"]),
        &format!("the services venv ({})", python.display()),
    );
    assert!(
        out.status.success(),
        "kubernetes-validate is not installed in {}: {INSTALL}\n{}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    python
}

#[test]
fn promtool_accepts_the_alerting_rules() {
    let rules = deploy("prometheus/muxd-rules.yml");
    let out = run_tool(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&rules),
        "promtool (Debian package prometheus)",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    let alerts = alert_count(&std::fs::read_to_string(&rules).unwrap());
    assert!(
        text.contains(&format!("SUCCESS: {alerts} rules found")),
        "promtool saw another number of rules than the {alerts} alerts in the file:\n{text}"
    );
}

/// The manifests, sorted (the kustomize base's own `kustomization.yaml` is not one).
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// The kustomize base lists every manifest (and nothing else).
#[test]
fn the_kustomize_base_lists_every_manifest() {
    let base = std::fs::read_to_string(deploy("kubernetes").join("kustomization.yaml")).unwrap();
    let mut listed: Vec<String> = base
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|l| l.ends_with(".yaml"))
        .map(str::to_owned)
        .collect();
    listed.sort();
    let mut files: Vec<String> = manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(listed, files, "deploy/kubernetes/kustomization.yaml");
}

/// Every document of every manifest, as JSON (parsed by the venv's PyYAML).
fn documents(python: &Path, files: &[PathBuf]) -> Vec<(PathBuf, serde_json::Value)> {
    let script = "import json, sys, yaml\n\
        print(json.dumps([[f, d] for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let out = run_tool(
        Command::new(python).arg("-c").arg(script).args(files),
        "the venv's Python",
    );
    assert!(
        out.status.success(),
        "cannot parse the manifests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn kubernetes_manifests_validate_offline() {
    let python = validator_python();
    let files = manifests();
    let docs = documents(&python, &files);
    let kinds: BTreeSet<&str> = docs
        .iter()
        .filter_map(|(_, d)| d["kind"].as_str())
        .collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes");
    }
    let out = run_tool(
        Command::new(&python)
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "-k",
                KUBERNETES_VERSION,
            ])
            .args(&files),
        "kubernetes-validate",
    );
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    // It only warns on a kind it has no schema for, which a wrong apiVersion of a built-in
    // kind also causes: each built-in resource must be reported as validated.
    let minor = KUBERNETES_VERSION.rsplit_once('.').unwrap().0;
    for (file, doc) in &docs {
        let kind = doc["kind"].as_str().expect("a kind");
        let name = doc["metadata"]["name"].as_str().expect("a name");
        let file = file.display().to_string();
        let line = if CRD_KINDS.contains(&kind) {
            format!("WARN {file} Couldn't find schema for kind {kind} ")
        } else {
            let kind = kind.to_lowercase();
            format!("INFO {file} passed for resource {kind}/{name} against version {minor}")
        };
        assert!(report.contains(&line), "no \"{line}\" in:\n{report}");
    }
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| !l.starts_with("INFO ") && !CRD_KINDS.iter().any(|k| l.contains(k)))
        .collect();
    assert!(unexpected.is_empty(), "kubernetes-validate: {unexpected:?}");
    the_configmap_renders_to_a_valid_config(&docs);
}

/// The ConfigMap's template, rendered as the entrypoint would (keys pointed at the test
/// keys), parses and builds a verifier; the Deployment sets every `${MUX_…}` it uses.
fn the_configmap_renders_to_a_valid_config(docs: &[(PathBuf, serde_json::Value)]) {
    let find = |kind: &str| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let template = find("ConfigMap")["data"]["muxd.toml"]
        .as_str()
        .expect("a muxd.toml in the ConfigMap");
    let container = &find("Deployment")["spec"]["template"]["spec"]["containers"][0];
    let env: BTreeSet<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        env.contains("POD_IP"),
        "the entrypoint needs POD_IP for the node id"
    );
    let mut rendered = template.to_owned();
    for var in placeholders(template) {
        assert!(
            var == "MUX_NODE_ID" || env.contains(var.as_str()),
            "the ConfigMap uses ${{{var}}} but the Deployment does not set {var}"
        );
        let value = match var.as_str() {
            "MUX_NODE_ID" => "167838211",
            "MUX_REDIS_URL" => "redis://:password@redis.example:6379",
            _ => "postgres://mux:password@postgres.example:5432/mux",
        };
        rendered = rendered.replace(&format!("${{{var}}}"), value);
    }
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/es256-public.pem");
    for pem in ["/etc/muxd/jwt/tenant.pem", "/etc/muxd/jwt/operator.pem"] {
        assert!(
            rendered.contains(pem),
            "the ConfigMap no longer reads {pem}"
        );
        rendered = rendered.replace(pem, &key.display().to_string());
    }
    let config = muxd::ServerConfig::from_toml(&rendered)
        .unwrap_or_else(|e| panic!("the ConfigMap's muxd.toml is refused: {e}\n{rendered}"));
    assert_eq!(config.mux.node_id, 167_838_211);
    assert_eq!(config.listen, "0.0.0.0:8080");
    muxd::auth::Verifier::new(&config.auth).expect("the ConfigMap's [auth] is accepted");
}

/// The `NAME`s of the `${NAME}` placeholders in `text`.
fn placeholders(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// One `muxd` started through the image's entrypoint; killed (and reaped) when dropped.
struct Muxd {
    child: Child,
    addr: SocketAddr,
}

impl Muxd {
    /// Runs `sh deploy/docker/muxd-entrypoint.sh` with `MUXD_CONFIG=config`, the built
    /// muxd first on PATH and `POD_IP`, its output in `dir/muxd.log`, and waits (at most
    /// 20 s) for its listening line.
    fn spawn(dir: &Path, config: &Path, pod_ip: &str) -> Muxd {
        let bin = Path::new(env!("CARGO_BIN_EXE_muxd")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log_path = dir.join("muxd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("sh")
            .arg(deploy("docker/muxd-entrypoint.sh"))
            .env("PATH", path)
            .env("MUXD_CONFIG", config)
            .env("POD_IP", pod_ip)
            .env("TMPDIR", dir)
            .env_remove("MUX_NODE_ID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the entrypoint");
        let mut node = Muxd {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            // The line may carry a log prefix.
            let addr = output
                .split_once("muxd listening on http://")
                .and_then(|(_, rest)| rest.split_once(' '))
                .and_then(|(addr, _)| addr.parse().ok());
            if let Some(addr) = addr {
                node.addr = addr;
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("muxd exited ({status}) before listening; output:\n{output}");
            }
            assert!(
                Instant::now() < deadline,
                "no \"muxd listening\" line within 20 s; output:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Muxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A template as the ConfigMap's, on loopback with stores that need no server: a cached
/// route (cache and feed metrics) and a default route read at quorum (read repairs).
fn template(dir: &Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "off"
[[backends]]
name = "memory"
kind = "memory"
[[backends]]
name = "fs"
kind = "fs"
path = "{fs}"
[mux]
node_id = ${{MUX_NODE_ID}}
[[mux.routes]]
prefix = "tenantconfig/"
backends = [{{ backend = "memory", role = "primary" }}, {{ backend = "fs", role = "replica" }}]
write = "all"
read = "primary"
cache = {{ capacity = 1000, ttl = "10m", max_staleness = "2s" }}
[mux.default]
backends = [{{ backend = "fs", role = "primary" }}, {{ backend = "memory", role = "replica" }}]
write = "all"
read = "quorum"
[mux.resilience]
markers = true
health_interval = 200
[anti_entropy]
enabled = true
interval = "200ms"
"#,
        fs = dir.join("fs").display()
    )
}

#[tokio::test]
async fn rules_and_dashboard_use_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("muxd.toml");
    std::fs::write(&config, template(dir.path())).unwrap();
    let node = Muxd::spawn(dir.path(), &config, "10.1.2.3");
    let addr = node.addr;
    for (key, value) in [("tenantconfig/acme/limits", "max=10"), ("blobs/a", "a")] {
        let put = request(addr, "PUT", &format!("/v1/kv/{key}"), &[], value.as_bytes()).await;
        assert_eq!(put.status, 200, "PUT {key}: {}", put.text());
        let version = put.json()["version"].as_str().unwrap().to_owned();
        assert!(
            version.ends_with("-0a010203"),
            "the entrypoint should make POD_IP 10.1.2.3 the node id 0x0a010203: {version}"
        );
        for _ in 0..3 {
            let get = request(addr, "GET", &format!("/v1/kv/{key}"), &[], b"").await;
            assert_eq!((get.status, get.text()), (200, value.to_owned()));
        }
    }
    let absent = request(addr, "GET", "/v1/kv/tenantconfig/acme/none", &[], b"").await;
    assert_eq!(absent.status, 404);
    assert_eq!(request(addr, "GET", "/readyz", &[], b"").await.status, 200);
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").await.status, 200);

    // The feed lag gauge appears once the cache's feed tail has read a change, the
    // store-marker gauge after the first marker check, the anti-entropy series after
    // the first pass.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exposition = loop {
        let metrics = request(addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        let all = [
            "mux_feed_lag_seconds",
            "mux_store_stale",
            "mux_antientropy_divergent_keys",
        ]
        .iter()
        .all(|m| text.contains(m));
        if all || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exported = exported_names(&exposition);
    assert!(
        exported.contains("mux_backend_requests_total"),
        "not muxd's /metrics:\n{exposition}"
    );

    let rules_text = std::fs::read_to_string(deploy("prometheus/muxd-rules.yml")).unwrap();
    let rules = rule_exprs(&rules_text);
    assert_eq!(rules.len(), alert_count(&rules_text), "an expr per rule");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/muxd-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_exprs(&dashboard);
    assert!(queries.len() >= 10, "dashboard queries: {queries:?}");
    let mut problems = Vec::new();
    for (what, exprs) in [("rule", &rules), ("dashboard query", &queries)] {
        for expr in exprs {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "no metric found in the {what} {expr}");
            for name in missing(&exported, &names) {
                problems.push(format!("{name} (in the {what} `{expr}`)"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "not exported by muxd: {problems:#?}\n/metrics:\n{exposition}"
    );
    // The check can fail: a made-up name is reported.
    let made_up = metric_names("rate(mux_no_such_metric_total[5m])");
    assert_eq!(missing(&exported, &made_up), ["mux_no_such_metric_total"]);
    drop(node);
}

/// The names a Prometheus text exposition exports: the names of its samples. A
/// histogram `x` is exported as `x_bucket`, `x_sum` and `x_count` samples and its bare
/// name (only in the `# TYPE` line) is no series, so a query naming `x` is reported.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line[..line.find(['{', ' ']).unwrap_or(line.len())].to_owned())
        .collect()
}

/// The names in `names` that `exported` lacks.
fn missing(exported: &BTreeSet<String>, names: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter(|n| !exported.contains(*n))
        .cloned()
        .collect()
}

/// PromQL keywords, aggregation operators and constants: identifiers that are never
/// metric names even when no `(` follows them.
const PROMQL_WORDS: &str = "and or unless offset bool atan2 inf nan sum min max avg group \
    stddev stdvar count count_values bottomk topk quantile limitk limit_ratio";
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_WORDS: &str = "by without on ignoring group_left group_right";

/// Whether `word` is one of the space-separated `words`.
fn is_one_of(word: &str, words: &str) -> bool {
    words.split_whitespace().any(|w| w == word)
}

/// The metric names a PromQL expression selects. A simple tokenizer, enough for the
/// expressions in deploy/: string literals, `{…}` label matchers and `[…]` ranges are
/// dropped; numbers and durations (`0.99`, `5m`) and Grafana variables (`$x`) skipped;
/// of the identifiers left, keywords and aggregation operators, label lists after
/// `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, and names followed by `(`
/// (functions) are not metrics; every other identifier is a metric name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let (mut quote, mut depth_brace, mut depth_bracket) = (None, 0, 0);
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{') => depth_brace += 1,
            (None, '}') => depth_brace -= 1,
            (None, '[') => depth_bracket += 1,
            (None, ']') => depth_bracket -= 1,
            (None, c) if depth_brace == 0 && depth_bracket == 0 => text.push(c),
            (None, _) => {}
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        (i, chars.get(i).copied())
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' || c == '$' {
            i += 1;
            while i < chars.len() && (is_part(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !is_start(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_part(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let lower = word.to_lowercase();
        let (after, next) = next_non_space(i);
        if is_one_of(&lower, LABEL_LIST_WORDS) {
            if next == Some('(') {
                i = after + chars[after..].iter().position(|&c| c == ')').unwrap_or(0) + 1;
            }
        } else if !is_one_of(&lower, PROMQL_WORDS) && next != Some('(') {
            names.insert(word);
        }
    }
    names
}

/// How many alerting and recording rules a rules file declares.
fn alert_count(yaml: &str) -> usize {
    yaml.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("- alert:") || l.starts_with("- record:"))
        .count()
}

/// Each rule's `expr:` in a rules file: `expr: <one line>` (quotes removed) or a block
/// scalar (`expr: |`, `|-`, `>`, `>-`) whose lines are indented deeper than the key.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if matches!(rest, "|" | "|-" | ">" | ">-") {
            let mut block = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line))
            {
                block.push(lines[i].trim());
                i += 1;
            }
            exprs.push(block.join("\n").trim().to_owned());
        } else if let Some(inner) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            exprs.push(inner.replace("\\\"", "\""));
        } else if let Some(inner) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            exprs.push(inner.replace("''", "'"));
        } else {
            exprs.push(rest.to_owned());
        }
    }
    exprs
}

/// Every `expr` string anywhere in a dashboard (panel targets, nested rows).
fn dashboard_exprs(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("expr", serde_json::Value::String(s)) => vec![s.clone()],
                _ => dashboard_exprs(v),
            })
            .collect(),
        serde_json::Value::Array(items) => items.iter().flat_map(dashboard_exprs).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_tokenizer_finds_metrics_and_reports_made_up_ones() {
    let expr = r#"histogram_quantile(0.99, sum by (backend, le) (rate(mux_a_bucket{op!="health", x=~"a|b"}[$__rate_interval])))
        / on (instance) group_left (route) max without (job) (mux_b offset 5m) > bool 1e3
        unless count(mux_c) and topk(3, mux_d[5m:1m]) or vector(1) * Inf"#;
    let names = metric_names(expr);
    let expected: BTreeSet<String> = ["mux_a_bucket", "mux_b", "mux_c", "mux_d"]
        .map(String::from)
        .into();
    assert_eq!(names, expected);
    let exposition = "# TYPE mux_a histogram\nmux_a_bucket{le=\"1\"} 0\nmux_a_sum 0\nmux_a_count 0\n\
        # TYPE mux_b gauge\nmux_b 1\nmux_c{x=\"y\"} 2\n";
    let exported = exported_names(exposition);
    assert_eq!(missing(&exported, &names), ["mux_d"]);
    let bare = metric_names("rate(mux_a[5m])");
    assert_eq!(
        missing(&exported, &bare),
        ["mux_a"],
        "a histogram's bare name is no series"
    );
    assert_eq!(
        missing(&exported, &metric_names("sum(rate(mux_made_up_total[5m]))")),
        ["mux_made_up_total"]
    );
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: mux_b > 0\n\
        \x20     - alert: B\n        expr: |\n          sum(mux_c)\n          > 1\n        for: 1m\n\
        \x20     - record: r\n        expr: \"max(mux_d{a=\\\"b\\\"})\"\n";
    assert_eq!(
        rule_exprs(rules),
        ["mux_b > 0", "sum(mux_c)\n> 1", "max(mux_d{a=\"b\"})"]
    );
    assert_eq!(alert_count(rules), 3);
}
