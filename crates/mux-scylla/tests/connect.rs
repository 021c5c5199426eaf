//! Opening without a cluster: what the driver's errors become (no server needed).

use mux_core::{ErrorKind, Operation};
use mux_scylla::{ScyllaBackend, ScyllaConfig};

#[tokio::test]
async fn no_cluster_at_the_contact_points_is_a_temporary_unavailable() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = ScyllaConfig::new([format!("127.0.0.1:{port}")]);
    config.connect_timeout_ms = 2_000;
    let started = std::time::Instant::now();
    let e = ScyllaBackend::connect("scylla-eu", config)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{e}"
    );
    assert_eq!(e.backend(), Some("scylla-eu"));
    assert_eq!(e.operation(), Some(Operation::Open));
    assert!(e.message().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn an_invalid_config_is_refused_before_connecting() {
    let e = ScyllaBackend::connect(
        "scylla-eu",
        ScyllaConfig::new(["127.0.0.1:1"]).with_table("Bad-Name"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary()),
        (ErrorKind::InvalidInput, false),
        "{e}"
    );
    assert!(e.message().contains("\"Bad-Name\""), "{e}");
    let e = ScyllaBackend::connect("scylla-eu", ScyllaConfig::new(["nowhere.invalid:9042"]))
        .await
        .unwrap_err();
    assert!(
        e.is_temporary(),
        "an unresolvable host may resolve later: {e}"
    );
}
