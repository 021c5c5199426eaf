//! `examples/audit-history.toml` as written — PostgreSQL primary, InfluxDB history
//! replica on `audit/` — with only the listen ports, the database names and the server
//! URLs (`MUX_POSTGRES_URL`, `MUX_INFLUX_URL`) substituted: writes land on both, and
//! muxd answers `GET /v1/history/{key}` and `GET /v1/kv/{key}?as_of=…` from InfluxDB.
//! Skipped (with the reason) when InfluxDB is unreachable, unless `MUX_REQUIRE` names
//! `influx`.

mod common;

use common::request;
use muxd::ServerConfig;

const EXAMPLE: &str = include_str!("../examples/audit-history.toml");

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// The example with this run's servers, ports and an InfluxDB database of its own.
fn config(influx_db: &str) -> ServerConfig {
    let mut t: toml::Table = toml::from_str(EXAMPLE).unwrap();
    t.insert("listen".into(), "127.0.0.1:0".into());
    t.insert("grpc_listen".into(), "127.0.0.1:0".into());
    for b in t["backends"].as_array_mut().unwrap() {
        let b = b.as_table_mut().unwrap();
        match b["kind"].as_str().unwrap() {
            "postgres" => {
                let url = var(
                    "MUX_POSTGRES_URL",
                    "postgres://postgres@127.0.0.1:5432/postgres",
                );
                b.insert("url".into(), url.into());
                b.insert("table".into(), "mux_audit_example_test".into());
            }
            "influx" => {
                b.insert("url".into(), influx_url().into());
                b.insert("database".into(), influx_db.into());
            }
            other => panic!("the example has an unexpected backend kind {other}"),
        }
    }
    ServerConfig::from_toml(&toml::to_string(&t).unwrap()).unwrap()
}

fn influx_url() -> String {
    var("MUX_INFLUX_URL", "http://127.0.0.1:8086")
}

fn influx_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = influx_url();
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    host.to_socket_addrs().unwrap().next().unwrap()
}

#[test]
fn the_example_parses() {
    let config = ServerConfig::from_toml(EXAMPLE).unwrap();
    assert_eq!(config.backends.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_reads_through_muxd_from_the_influx_history_replica() {
    let reachable =
        std::net::TcpStream::connect_timeout(&influx_addr(), std::time::Duration::from_secs(2))
            .is_ok();
    let required = var("MUX_REQUIRE", "")
        .split(',')
        .any(|b| b.trim() == "influx");
    if !reachable && !required {
        println!(
            "skipped: InfluxDB at {} is not reachable (cargo xtask services up)",
            influx_url()
        );
        return;
    }
    let db = format!("mux_audit_example_{}", std::process::id());
    let config = config(&db);
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.unwrap();
    let a = server.addr;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = format!("audit/acme-{nanos}/limits");
    let mut versions = Vec::new();
    for value in ["limit=10", "limit=20", "limit=30"] {
        let put = request(a, "PUT", &format!("/v1/kv/{key}"), &[], value.as_bytes()).await;
        assert_eq!(put.status, 200, "{}", put.text());
        let body = put.json();
        assert_eq!(
            body["applied_on"],
            serde_json::json!(["pg", "history"]),
            "{body}"
        );
        versions.push(body["version"].as_str().unwrap().to_owned());
    }

    let history = request(a, "GET", &format!("/v1/history/{key}"), &[], b"").await;
    assert_eq!(history.status, 200, "{}", history.text());
    let body = history.json();
    let entries = body["entries"].as_array().unwrap();
    let got: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["version"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (versions[2].as_str(), "limit=30"),
            (versions[1].as_str(), "limit=20"),
            (versions[0].as_str(), "limit=10"),
        ],
        "{body}"
    );

    let as_of = request(
        a,
        "GET",
        &format!("/v1/kv/{key}?as_of={}", versions[1]),
        &[],
        b"",
    )
    .await;
    assert_eq!(as_of.status, 200, "{}", as_of.text());
    assert_eq!(as_of.body, b"limit=20".as_ref());
    assert_eq!(as_of.header("x-mux-version"), Some(versions[1].as_str()));
    let before = request(
        a,
        "GET",
        &format!("/v1/kv/{key}?as_of=1970-01-01T00:00:00Z"),
        &[],
        b"",
    )
    .await;
    assert_eq!(before.status, 404, "{}", before.text());
    // The current record is PostgreSQL's.
    let now = request(a, "GET", &format!("/v1/kv/{key}"), &[], b"").await;
    assert_eq!(now.body, b"limit=30".as_ref());

    server.shutdown(&mux).await;
    let drop = request(
        influx_addr(),
        "POST",
        &format!("/query?q=DROP%20DATABASE%20%22{db}%22"),
        &[],
        b"",
    )
    .await;
    assert_eq!(drop.status, 200, "{}", drop.text());
}
