//! Background anti-entropy (`[anti_entropy]`):
//!
//! - a muxd whose route has two memory stores finds drift injected into one of them
//!   (a newer version, a missing key, a tenant's key) on its own, reports it without
//!   repairing while `repair = false` (with the replica lag it saw), and repairs it
//!   within seconds once a reload sets `repair = true`; `/metrics` shows the passes;
//! - with the lease in PostgreSQL, a node skips its passes while another session holds
//!   the lock, and runs them once it is released; two leases exclude each other;
//! - the table is off by default and its errors name the field.
//!
//! The PostgreSQL tests need the local server (`MUX_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), as the other PostgreSQL tests do.

mod common;

use std::time::{Duration, Instant};

use common::request;
use mux::{Backend, Key, Record, Version};
use muxd::ServerConfig;
use muxd::antientropy::{LEASE_KEY, PassSummary, PostgresLease};

/// The PostgreSQL tests share one lock key: one at a time.
static POSTGRES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn postgres_url() -> String {
    std::env::var("MUX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Two memory stores `a` and `b` under `prefix` (the default route on `a` only);
/// `head` adds top-level keys, `ae` the `[anti_entropy]` fields.
fn config(prefix: &str, head: &str, ae: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
{head}
[auth]
mode = "off"
[anti_entropy]
enabled = true
interval = "200ms"
{ae}
[[backends]]
name = "a"
kind = "memory"
[[backends]]
name = "b"
kind = "memory"
[mux]
node_id = 7
[[mux.routes]]
prefix = "{prefix}"
backends = [{{ backend = "a", role = "primary" }}, {{ backend = "b", role = "replica" }}]
write = "all"
[mux.default]
backends = [{{ backend = "a", role = "primary" }}]
"#
    )
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// Writes `<p>k1`, `<p>k2`, `<p>k3` through muxd, then drifts store `a` ahead of `b`:
/// `k1` at a version 5 s newer on `a`, `k2` gone from `b`, and a tenant's key on `a`
/// only. Returns the newer version of `k1`.
async fn drift(server: &muxd::Server, state: &muxd::AppState, p: &str) -> Version {
    for k in ["k1", "k2", "k3"] {
        let r = request(server.addr, "PUT", &format!("/v1/kv/{p}{k}"), &[], b"v1").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mux = state.mux();
    let (a, b) = (mux.backend("a").unwrap(), mux.backend("b").unwrap());
    let k1 = key(&format!("{p}k1"));
    let v1 = a.get(&k1).await.unwrap().unwrap().version();
    let newer = Version::new(v1.physical_ms() + 5000, 0, 99);
    a.put(&Record::new(k1, "v2", newer)).await.unwrap();
    b.purge(
        &key(&format!("{p}k2")),
        Version::new(u64::MAX, u32::MAX, u32::MAX),
    )
    .await
    .unwrap();
    let tenant_key = key(&format!("tenants/acme/{p}t1"));
    a.put(&Record::new(tenant_key, "t", v1)).await.unwrap();
    newer
}

/// Whether `b` holds what `a` does for the drifted keys.
async fn converged(state: &muxd::AppState, p: &str, newer: Version) -> bool {
    let b = state.mux().backend("b").unwrap().clone();
    let k1 = b.get(&key(&format!("{p}k1"))).await.unwrap();
    let k2 = b.get(&key(&format!("{p}k2"))).await.unwrap();
    let t1 = b.get(&key(&format!("tenants/acme/{p}t1"))).await.unwrap();
    k1.is_some_and(|r| r.version() == newer) && k2.is_some() && t1.is_some()
}

/// Polls the last pass until `done` holds (at most 10 s).
async fn wait_for_pass(
    state: &muxd::AppState,
    what: &str,
    done: impl Fn(&PassSummary) -> bool,
) -> PassSummary {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pass) = state.anti_entropy().last_pass()
            && done(&pass)
        {
            return pass;
        }
        assert!(
            Instant::now() < deadline,
            "no pass {what} within 10 s; the last: {:?}",
            state.anti_entropy().last_pass()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `b` converged (at most 10 s).
async fn wait_converged(state: &muxd::AppState, p: &str, newer: Version) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !converged(state, p, newer).await {
        assert!(
            Instant::now() < deadline,
            "not repaired within 10 s; the last pass: {:?}",
            state.anti_entropy().last_pass()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of a metric's series whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            let same_name = series.is_empty() || series.starts_with('{');
            if !same_name || !series.contains(labels) {
                return None;
            }
            value.parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_found_then_repaired_after_a_reload() {
    let p = "ae1/";
    let text = config(p, "", "repair = false");
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let newer = drift(&server, &state, p).await;

    // Found, with the lag it saw, and left alone.
    let pass = wait_for_pass(&state, "finding the drift", |s| s.divergent == 3).await;
    assert_eq!(pass.skipped, None);
    assert_eq!(pass.node_id, 7);
    assert_eq!(pass.repaired, 0);
    assert!(pass.max_lag_ms >= 5000, "{pass:?}");
    let route = pass
        .routes
        .iter()
        .find(|r| r.prefix == p)
        .expect("the route");
    assert_eq!(route.backends, ["a", "b"]);
    assert_eq!(route.prefixes, [p.to_owned(), format!("tenants/acme/{p}")]);
    assert_eq!(route.errors, Vec::<String>::new());
    assert!(
        route.sample.contains(&format!("tenants/acme/{p}t1")),
        "{route:?}"
    );
    // The default route has one store: nothing to compare.
    assert_eq!(pass.routes.len(), 1, "{pass:?}");
    assert!(!converged(&state, p, newer).await);
    let metrics = request(server.addr, "GET", "/metrics", &[], b"")
        .await
        .text();
    let route_label = format!("route=\"{p}\"");
    assert_eq!(
        metric(&metrics, "mux_antientropy_divergent_keys", &route_label),
        Some(3.0),
        "{metrics}"
    );
    let lag = metric(
        &metrics,
        "mux_antientropy_replica_lag_seconds",
        &route_label,
    );
    assert!(lag.is_some_and(|l| l >= 5.0), "{metrics}");

    // The admin status carries the last pass.
    let status = request(server.addr, "GET", "/v1/admin/status", &[], b"").await;
    assert_eq!(status.status, 200, "{}", status.text());
    let ae = &status.json()["anti_entropy"];
    assert_eq!(ae["enabled"], true, "{ae}");
    assert_eq!(ae["interval_ms"], 200, "{ae}");
    assert_eq!(ae["last_pass"]["divergent"], 3, "{ae}");
    assert_eq!(ae["last_pass"]["routes"][0]["prefix"], p, "{ae}");

    // A reload turns repair on: the schedule restarts and the next pass repairs.
    let repairing =
        ServerConfig::from_toml(&text.replace("repair = false", "repair = true")).unwrap();
    state.reload(repairing).await.unwrap();
    wait_converged(&state, p, newer).await;
    let pass = wait_for_pass(&state, "seeing the stores agree", |s| {
        s.divergent == 0 && s.checked > 0
    })
    .await;
    assert_eq!(pass.repair_failed, 0);

    let metrics = request(server.addr, "GET", "/metrics", &[], b"")
        .await
        .text();
    let checked = metric(&metrics, "mux_antientropy_keys_checked_total", &route_label);
    assert!(checked.is_some_and(|c| c > 0.0), "{metrics}");
    let repaired = metric(&metrics, "mux_antientropy_repaired_total", &route_label);
    assert!(repaired.is_some_and(|r| r >= 3.0), "{metrics}");
    assert!(
        metric(&metrics, "mux_antientropy_last_run_timestamp_seconds", "")
            .is_some_and(|t| t > 1.0e9),
        "{metrics}"
    );
    server.shutdown(&state.mux()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_runs_after_each_pass() {
    let p = "ae3/";
    let text = config(p, "", "gc_grace = \"1ms\"");
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let path = format!("/v1/kv/{p}gone");
    assert_eq!(
        request(server.addr, "PUT", &path, &[], b"x").await.status,
        200
    );
    let deleted = request(server.addr, "DELETE", &path, &[], b"").await.status;
    assert!(deleted == 200 || deleted == 204, "{deleted}");
    // Both stores hold the tombstone; after its (1 ms) grace a pass purges it from both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = key(&format!("{p}gone"));
    loop {
        let mux = state.mux();
        let a = mux.backend("a").unwrap().get(&gone).await.unwrap();
        let b = mux.backend("b").unwrap().get(&gone).await.unwrap();
        if a.is_none() && b.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tombstone is still there after 10 s: {:?}",
            state.anti_entropy().last_pass()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pass = wait_for_pass(&state, "with GC", |s| {
        s.routes.iter().any(|r| r.gc.is_some())
    })
    .await;
    assert_eq!(pass.routes[0].errors, Vec::<String>::new());
    server.shutdown(&state.mux()).await;
}

/// Drops the tables a PostgreSQL intent log made under `prefix`.
async fn drop_tables(client: &tokio_postgres::Client, prefix: &str) {
    let rows = client
        .query(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1",
            &[&format!("{prefix}\\_%")],
        )
        .await
        .unwrap();
    for row in rows {
        let table: String = row.get(0);
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table} CASCADE"))
            .await
            .unwrap();
    }
}

async fn postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", postgres_url()));
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_skips_its_passes_while_another_holds_the_lease() {
    let _serial = POSTGRES.lock().await;
    let p = "ae2/";
    let run = common::run_id("mxae");
    let head = format!(
        "intent_log = {{ kind = \"postgres\", url = \"{}\", prefix = \"{run}\" }}",
        postgres_url()
    );
    // No `lease`: the PostgreSQL intent log makes it "postgres".
    let config = ServerConfig::from_toml(&config(p, &head, "")).unwrap();
    let holder = postgres().await;
    let took: bool = holder
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_KEY])
        .await
        .unwrap()
        .get(0);
    assert!(took, "another session holds the anti-entropy lease");
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let newer = drift(&server, &state, p).await;

    // Skipped while another session holds the lock...
    let pass = wait_for_pass(&state, "skipped for the lease", |s| {
        s.skipped.as_deref() == Some("lease")
    })
    .await;
    assert_eq!(pass.checked, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !converged(&state, p, newer).await,
        "repaired without the lease"
    );
    let metrics = request(server.addr, "GET", "/metrics", &[], b"")
        .await
        .text();
    assert!(
        metric(
            &metrics,
            "mux_antientropy_skipped_total",
            "reason=\"lease\""
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );

    // ... and run once it is released.
    let released: bool = holder
        .query_one("SELECT pg_advisory_unlock($1)", &[&LEASE_KEY])
        .await
        .unwrap()
        .get(0);
    assert!(released);
    wait_converged(&state, p, newer).await;
    let pass = wait_for_pass(&state, "run with the lease", |s| s.skipped.is_none()).await;
    assert!(pass.checked > 0, "{pass:?}");

    // muxd releases the lease between passes: another session gets it within a pass's
    // time (the interval is 200 ms; a pass here takes milliseconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let took: bool = holder
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_KEY])
            .await
            .unwrap()
            .get(0);
        if took {
            let _: bool = holder
                .query_one("SELECT pg_advisory_unlock($1)", &[&LEASE_KEY])
                .await
                .unwrap()
                .get(0);
            break;
        }
        assert!(Instant::now() < deadline, "muxd never released the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown(&state.mux()).await;
    drop_tables(&holder, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leases_exclude_each_other() {
    let _serial = POSTGRES.lock().await;
    let mut first = PostgresLease::new(&postgres_url());
    let mut second = PostgresLease::new(&postgres_url());
    assert!(first.try_acquire().await.unwrap());
    assert!(!second.try_acquire().await.unwrap());
    assert!(!second.try_acquire().await.unwrap());
    first.release().await;
    assert!(second.try_acquire().await.unwrap());
    assert!(!first.try_acquire().await.unwrap());
    // A lease whose session ends (its node died) is released by PostgreSQL.
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !first.try_acquire().await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the dropped session's lock was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.release().await;
}

const MINIMAL: &str = r#"
[[backends]]
name = "a"
kind = "memory"
[auth]
mode = "off"
[mux]
node_id = 1
[mux.default]
backends = [{ backend = "a", role = "primary" }]
"#;

#[test]
fn anti_entropy_is_off_by_default() {
    let config = ServerConfig::from_toml(MINIMAL).unwrap();
    let ae = &config.anti_entropy;
    assert!(!ae.enabled);
    assert_eq!(ae.interval, Duration::from_secs(600));
    assert_eq!(ae.ops_per_second, 1000);
    assert!(ae.repair);
    assert_eq!(ae.gc_grace, None);
    assert_eq!(ae.lease, None);
    // The embedded default keeps it off; the cluster example turns it on.
    let embedded = ServerConfig::from_toml(muxd::config::EMBEDDED).unwrap();
    assert!(!embedded.anti_entropy.enabled);
    let cluster = ServerConfig::from_toml(include_str!("../examples/cluster.toml")).unwrap();
    assert!(cluster.anti_entropy.enabled);
    assert_eq!(cluster.anti_entropy.interval, Duration::from_secs(300));
    assert_eq!(cluster.anti_entropy.ops_per_second, 500);
    // Store markers: off by default, on in the cluster example, restored automatically.
    assert!(!embedded.mux.resilience.markers);
    assert!(cluster.mux.resilience.markers);
    assert!(cluster.anti_entropy.restore_stale);
}

#[test]
fn anti_entropy_errors_name_the_field() {
    let with =
        |table: &str| ServerConfig::from_toml(&format!("{MINIMAL}\n[anti_entropy]\n{table}\n"));
    let err = with("enabled = true\ninterval = \"soon\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("anti_entropy.interval"), "{err}");
    assert!(err.contains("soon"), "{err}");
    let err = with("gc_grace = \"forever\"").unwrap_err().to_string();
    assert!(err.contains("anti_entropy.gc_grace"), "{err}");
    let err = with("interval = \"0s\"").unwrap_err().to_string();
    assert!(err.contains("anti_entropy.interval"), "{err}");
    let err = with("intervall = \"5m\"").unwrap_err().to_string();
    assert!(err.contains("intervall"), "{err}");
    let err = with("lease = \"postgres\"").unwrap_err().to_string();
    assert!(err.contains("anti_entropy.lease"), "{err}");
    let err = with("lease = \"zookeeper\"").unwrap_err().to_string();
    assert!(err.contains("zookeeper"), "{err}");
    let err = with("exclude_prefixes = [\"nope/\"]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("anti_entropy.exclude_prefixes") && err.contains("nope/"),
        "{err}"
    );
    let ok =
        with("enabled = true\ninterval = \"90s\"\ngc_grace = \"10d\"\nexclude_prefixes = [\"\"]")
            .unwrap();
    assert_eq!(ok.anti_entropy.interval, Duration::from_secs(90));
    assert_eq!(ok.anti_entropy.gc_grace, Some(Duration::from_secs(864_000)));
}
