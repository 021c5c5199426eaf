//! mux-ssm passes the shared conformance suite against a real SSM server (moto).

mod common;

use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let backend = common::connect(common::config("conf")).await;
    let report = mux_conformance::run(Arc::new(backend.clone())).await;
    println!("{report}");
    common::clean(&backend).await;
    assert!(report.all_passed(), "{report}");
    assert_eq!(report.skipped(), 0, "{report}");
}
