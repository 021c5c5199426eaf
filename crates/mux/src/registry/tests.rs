//! The registry's unit tests: messages, field checks, secrets, deferral.

use super::*;

fn spec(text: &str) -> BackendSpec {
    toml::from_str(text).unwrap()
}

#[tokio::test]
async fn memory_opens_from_toml() {
    let b = open(&spec("name = \"m\"\nkind = \"memory\""))
        .await
        .unwrap();
    assert_eq!((b.info().name.as_ref(), b.info().kind), ("m", "memory"));
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_kind_whose_feature_is_off_names_the_feature() {
    let s = BackendSpec::new("pg-eu", "postgres").with("url", "postgres://db/x");
    let e = open(&s).await.unwrap_err();
    assert_eq!(
        e.message(),
        "backend \"pg-eu\": kind \"postgres\" needs the mux feature \"postgres\""
    );
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.is_temporary());
}

#[tokio::test]
async fn an_unknown_kind_lists_the_known_ones() {
    let e = open(&BackendSpec::new("x", "postgress")).await.unwrap_err();
    assert!(
        e.message().starts_with(
            "backend \"x\": unknown kind \"postgress\"; the known kinds are \"memory\", \"fs\", \
             \"redb\", \"postgres\", \"mysql\", \"scylla\", \"redis\", \"s3\", \"azure\", \"dynamodb\", \"ssm\", \
             \"influx\""
        ),
        "{e}"
    );
    assert!(e.message().contains("(in this build: \"memory\""), "{e}");
}

#[tokio::test]
async fn an_unknown_field_names_the_field_and_the_backend() {
    let e = open(&spec("name = \"m\"\nkind = \"memory\"\npath = \"x\""))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("backend \"m\": unknown field \"path\""),
        "{e}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_unknown_store_field_lists_the_expected_ones() {
    let s = spec("name = \"pg-eu\"\nkind = \"postgres\"\nurl = \"postgres://db/x\"\ntabel = \"t\"");
    let e = open(&s).await.unwrap_err();
    assert!(
        e.message().starts_with(
            "backend \"pg-eu\": unknown field \"tabel\", expected one of \"url\", \"table\""
        ),
        "{e}"
    );
    let e = open(&spec("name = \"pg-eu\"\nkind = \"postgres\""))
        .await
        .unwrap_err();
    assert_eq!(e.message(), "backend \"pg-eu\": missing field \"url\"");
}

#[test]
fn check_all_reports_every_problem_at_once() {
    let specs = vec![
        BackendSpec::new("a", "memory"),
        BackendSpec::new("a", "memory"),
        BackendSpec::new("b", "nosuch"),
        BackendSpec::new("c", "memory").with("size", 3),
    ];
    let e = check_all(&specs).unwrap_err();
    let m = e.message();
    assert!(m.starts_with("invalid backend configuration:\n  - "), "{m}");
    assert!(m.contains("backend \"a\" is declared twice"), "{m}");
    assert!(m.contains("backend \"b\": unknown kind \"nosuch\""), "{m}");
    assert!(m.contains("backend \"c\": unknown field \"size\""), "{m}");
    check_all(&specs[..1]).unwrap();
}

#[test]
fn debug_without_a_parsable_config_shows_field_names_only() {
    let s = BackendSpec::new("x", "nosuch").with("password", "s3cret");
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("password"),
        "{shown}"
    );
}

#[cfg(all(feature = "postgres", feature = "redis"))]
#[test]
fn debug_hides_secrets_in_urls() {
    for (kind, url) in [
        ("postgres", "postgres://app:s3cret@db:5432/x"),
        ("redis", "redis://:s3cret@cache:6379/0"),
    ] {
        let s = BackendSpec::new("b", kind).with("url", url);
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains(":***@"), "{shown}");
    }
}

/// A store on a closed port: `open` succeeds with a backend that is unavailable,
/// names the last connect error, and keeps its kind and capability.
#[cfg(all(feature = "postgres", feature = "redis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_opens_deferred() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (kind, url) in [
        (
            "postgres",
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ),
        ("redis", format!("redis://127.0.0.1:{port}")),
    ] {
        let s = BackendSpec::new("down", kind).with("url", url);
        let b = open(&s).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(b.info().kind, kind);
        assert!(b.info().capability.atomic_conditional_write);
        let e = b.health().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.is_temporary());
        assert_eq!(e.backend(), Some("down"));
        assert!(e.message().contains("last connect error"), "{e}");
    }
    // A configuration error still fails.
    let s = BackendSpec::new("bad", "postgres").with("url", "not a url ::");
    assert_eq!(open(&s).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

/// ScyllaDB from TOML: its fields, its secrets hidden, and a cluster that does not
/// answer opens deferred (no CQL server is needed for this test).
#[cfg(feature = "scylla")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_opens_from_toml_and_defers_an_unreachable_cluster() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = spec(&format!(
        "name = \"scylla-eu\"\nkind = \"scylla\"\nnodes = [\"127.0.0.1:{port}\"]\n\
         keyspace = \"app\"\nlocal_datacenter = \"dc1\"\nusername = \"app\"\npassword = \"s3cret\""
    ));
    s.check().unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("ScyllaConfig"),
        "{shown}"
    );
    let b = open(&s).await.unwrap();
    assert_eq!(b.info().kind, "scylla");
    assert!(b.info().capability.atomic_conditional_write);
    let e = b.health().await.unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{e}"
    );
    assert!(e.message().contains("last connect error"), "{e}");
    let e = open(&spec(
        "name = \"s\"\nkind = \"scylla\"\nnodes = [\"a:1\"]\ntabel = \"t\"",
    ))
    .await
    .unwrap_err();
    assert!(
        e.message()
            .starts_with("backend \"s\": unknown field \"tabel\""),
        "{e}"
    );
    let e = open(&spec(
        "name = \"s\"\nkind = \"scylla\"\nnodes = [\"a:1\"]\ntable = \"Bad\"",
    ))
    .await
    .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary()),
        (ErrorKind::InvalidInput, false),
        "{e}"
    );
}
