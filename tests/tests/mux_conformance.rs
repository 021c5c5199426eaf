//! A `Mux` keeps every contract a single store keeps: the conformance suite passes
//! against a `Mux` over memory, fs and redb.

use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mux_over_memory_fs_and_redb_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let mux = mux_tests::embedded_mux(dir.path()).unwrap();
    let report = mux_conformance::run(Arc::new(mux.as_backend())).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    assert_eq!(report.skipped(), 0, "{report}");
}
