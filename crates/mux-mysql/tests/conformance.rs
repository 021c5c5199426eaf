//! The conformance suite against the MariaDB/MySQL server at `MUX_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`, which `cargo xtask services up` provides). MySQL
//! is a required backend: this fails, not skips, when the server cannot be reached.

use std::sync::Arc;

use mux_conformance::CaseOutcome;
use mux_mysql::{MysqlBackend, MysqlConfig};

fn url() -> String {
    std::env::var("MUX_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let backend = MysqlBackend::connect(
        "mysql",
        MysqlConfig::new(url()).with_table("mux_conformance_mysql"),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "MariaDB/MySQL at {} is required for this test (cargo xtask services up): {e}",
            url()
        )
    });
    let report = mux_conformance::run(Arc::new(backend)).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    // Only the history cases skip, because the capability says there is no history.
    for case in mux_conformance::cases::ALL {
        if let Some(CaseOutcome::Skipped(why)) = report.outcome(case.name) {
            assert!(
                case.name.starts_with("history_") || case.name.starts_with("as_of_"),
                "{} skipped: {why}",
                case.name
            );
            assert!(why.contains("`history`"), "{}: {why}", case.name);
        }
    }
    assert!(
        matches!(
            report.outcome("history_matches_capability"),
            Some(CaseOutcome::Passed)
        ),
        "{report}"
    );
}
