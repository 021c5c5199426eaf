//! What the integration tests share: the server at `MUX_INFLUX_URL` (default
//! `http://127.0.0.1:8086`, which `cargo xtask services up` provides), a database of
//! each test's own, and the rule for an unreachable server: a failure when
//! `MUX_REQUIRE` names `influx` (as CI does), else a skip that says why.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use mux_influx::{InfluxBackend, InfluxConfig};

/// The test server's URL.
pub fn url() -> String {
    std::env::var("MUX_INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into())
}

/// Whether `MUX_REQUIRE` names this backend.
pub fn required() -> bool {
    std::env::var("MUX_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|b| b.trim() == "influx")
}

/// A config on a database no other test or run uses.
pub fn config(test: &str) -> InfluxConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    InfluxConfig::new(url()).with_database(format!(
        "mux_test_{test}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Connects; `None` (the test is skipped, with the reason printed) when the server is
/// unreachable and not required.
pub async fn connect(config: InfluxConfig) -> Option<InfluxBackend> {
    match InfluxBackend::connect("influx", config).await {
        Ok(b) => Some(b),
        Err(e) if e.is_temporary() && !required() => {
            println!(
                "skipped: InfluxDB at {} is not reachable ({e}); start it with `cargo xtask services up`, or set MUX_REQUIRE=influx to make this a failure",
                url()
            );
            None
        }
        Err(e) => panic!(
            "InfluxDB at {} is required for this test (cargo xtask services up): {e}",
            url()
        ),
    }
}

/// Drops the test's database.
pub async fn clean(backend: &InfluxBackend) {
    query(
        &format!("DROP DATABASE \"{}\"", backend.config().database),
        "",
    )
    .await;
}

/// An independent client: runs `q` on `/query` with curl, returns the JSON answer.
pub async fn query(q: &str, db: &str) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-XPOST", &format!("{}/query", url())])
        .args(["--data-urlencode", &format!("q={q}")])
        .args(["--data-urlencode", &format!("db={db}")])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON answer")
}
