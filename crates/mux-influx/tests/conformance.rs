//! The conformance suite against the InfluxDB 1.x server at `MUX_INFLUX_URL` (default
//! `http://127.0.0.1:8086`, which `cargo xtask services up` provides), in a database of
//! its own, dropped afterwards. Fails when the server is unreachable and `MUX_REQUIRE`
//! names `influx`; otherwise says it skipped and why.

mod common;

use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let Some(backend) = common::connect(common::config("conformance")).await else {
        return;
    };
    let backend = Arc::new(backend);
    let report = mux_conformance::run(backend.clone()).await;
    println!("{report}");
    common::clean(&backend).await;
    assert!(report.all_passed(), "{report}");
    // History is declared, so no case may skip.
    assert_eq!(report.skipped(), 0, "{report}");
    assert_eq!(
        report.passed(),
        mux_conformance::cases::ALL.len(),
        "{report}"
    );
}
