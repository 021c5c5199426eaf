//! mux-scylla against a real cluster: the conformance suite, racing lightweight
//! transactions, the layout as CQL reads it, and the schema errors.
//!
//! The cluster is `MUX_SCYLLA_NODES` (`host:port,…`; `MUX_SCYLLA_URL` is read too) when
//! set — then it must answer — or else a throwaway ScyllaDB started with testcontainers
//! (image `scylladb/scylla`). Where neither is possible (no Docker engine, the image
//! cannot be had) every test here is **skipped**: it prints
//! `SKIPPED mux-scylla live tests (<test>): <reason>` on the terminal (past the test harness's
//! capture) and returns without failing. ScyllaDB is not a required backend.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mux_core::{Backend, ErrorKind, Key, PutOutcome, Record, Version};
use mux_scylla::{ScyllaBackend, ScyllaConfig};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::OnceCell;

/// The image testcontainers starts (the tag testcontainers-modules' `scylladb` uses).
const IMAGE: (&str, &str) = ("scylladb/scylla", "2025.1.0");

/// Where the tests' cluster is, or why there is none.
enum Cluster {
    Nodes(
        Vec<String>,
        #[allow(dead_code)] Option<Box<ContainerAsync<GenericImage>>>,
    ),
    Skip(String),
}

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

fn nodes_from_env() -> Option<Vec<String>> {
    let value = std::env::var("MUX_SCYLLA_NODES")
        .or_else(|_| std::env::var("MUX_SCYLLA_URL"))
        .ok()?;
    Some(
        value
            .split(',')
            .map(|n| {
                n.trim()
                    .trim_start_matches("scylla://")
                    .trim_start_matches("cql://")
            })
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

async fn start_container() -> Cluster {
    let image = GenericImage::new(IMAGE.0, IMAGE.1)
        .with_exposed_port(9042.tcp())
        .with_wait_for(WaitFor::message_on_stderr("init - serving"))
        .with_cmd([
            "--smp",
            "1",
            "--memory",
            "750M",
            "--overprovisioned",
            "1",
            "--developer-mode",
            "1",
        ])
        .with_startup_timeout(Duration::from_secs(240));
    let container = match tokio::time::timeout(Duration::from_secs(300), image.start()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Cluster::Skip(format!(
                "no MUX_SCYLLA_NODES and testcontainers cannot start {}:{} ({e}); a Docker engine with that image (or a cluster in MUX_SCYLLA_NODES) is needed",
                IMAGE.0, IMAGE.1
            ));
        }
        Err(_) => return Cluster::Skip("the ScyllaDB container did not start within 300 s".into()),
    };
    let host = container.get_host().await.map(|h| h.to_string());
    let port = container.get_host_port_ipv4(9042).await;
    match (host, port) {
        (Ok(host), Ok(port)) => {
            Cluster::Nodes(vec![format!("{host}:{port}")], Some(Box::new(container)))
        }
        (h, p) => Cluster::Skip(format!(
            "the container's CQL port is not reachable: {h:?} {p:?}"
        )),
    }
}

/// The cluster's contact points, or `None` after printing why the test is skipped.
async fn nodes(test: &str) -> Option<Vec<String>> {
    let cluster = CLUSTER
        .get_or_init(|| async {
            match nodes_from_env() {
                Some(nodes) => Cluster::Nodes(nodes, None),
                None => start_container().await,
            }
        })
        .await;
    match cluster {
        Cluster::Nodes(nodes, _) => Some(nodes.clone()),
        Cluster::Skip(why) => {
            // Straight to the terminal (the harness captures print!/eprint! only), in
            // one write so that parallel tests do not interleave it.
            let line = format!("SKIPPED mux-scylla live tests ({test}): {why}\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            None
        }
    }
}

fn table(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "mux_{test}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(nodes: Vec<String>, table: &str) -> ScyllaConfig {
    ScyllaConfig::new(nodes)
        .with_keyspace("mux_test")
        .with_table(table)
        .with_create_schema(BTreeMap::from([("replication_factor".to_owned(), 1)]))
}

async fn connect(config: ScyllaConfig) -> ScyllaBackend {
    let nodes = config.nodes.join(",");
    ScyllaBackend::connect("scylla", config)
        .await
        .unwrap_or_else(|e| panic!("the ScyllaDB cluster at {nodes} does not answer: {e}"))
}

async fn raw(nodes: &[String]) -> scylla::client::session::Session {
    scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(nodes)
        .build()
        .await
        .expect("a raw session")
}

async fn drop_table(nodes: &[String], table: &str) {
    raw(nodes)
        .await
        .query_unpaged(format!("DROP TABLE IF EXISTS mux_test.{table}"), ())
        .await
        .expect("drop table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let Some(nodes) = nodes("conformance").await else {
        return;
    };
    for depth in [2, 3] {
        let t = table("conf");
        let backend = connect(config(nodes.clone(), &t).with_partition_depth(depth)).await;
        let report = mux_conformance::run(Arc::new(backend)).await;
        println!("{report}");
        drop_table(&nodes, &t).await;
        assert!(report.all_passed(), "depth {depth}: {report}");
        assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_racing_writers_end_with_the_highest_version() {
    let Some(nodes) = nodes("race").await else {
        return;
    };
    let t = table("race");
    let backend = Arc::new(connect(config(nodes.clone(), &t)).await);
    let k = Key::new("race/a/b").unwrap();
    let versions: Vec<Version> = (0..16u32)
        .flat_map(|w| {
            (0..5u64).map(move |i| Version::new((i * 37 + u64::from(w) * 11) % 101 + 1, 0, w))
        })
        .collect();
    let mut tasks = Vec::new();
    for chunk in versions.chunks(5) {
        let (backend, k, chunk) = (backend.clone(), k.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for v in chunk {
                // Paxos contention may time out a round: retry it, as the coordinator would.
                loop {
                    match backend.put(&Record::new(k.clone(), v.to_string(), v)).await {
                        Ok(_) => break,
                        Err(e) if e.is_temporary() => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let max = versions.iter().max().copied().unwrap();
    let got = backend.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.version(), got.value().as_ref()),
        (max, max.to_string().as_bytes())
    );
    drop_table(&nodes, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_read_back_with_cql_as_documented() {
    let Some(nodes) = nodes("layout").await else {
        return;
    };
    let t = table("layout");
    let backend = connect(config(nodes.clone(), &t)).await;
    let v = Version::new(0x18b_cfe5_6800, 3, 7);
    let r = Record::new(Key::new("tenants/acme/limits").unwrap(), "max=10", v)
        .with_content_type("text/plain")
        .with_tag("class", "pii");
    assert_eq!(backend.put(&r).await.unwrap(), PutOutcome::Applied);
    let session = raw(&nodes).await;
    let rows = session
        .query_unpaged(
            format!("SELECT key, version, tombstone, content_type, tags, checksum, size, value FROM mux_test.{t} WHERE partition_key = 'tenants/acme'"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    type Row = (
        String,
        String,
        bool,
        Option<String>,
        Option<BTreeMap<String, String>>,
        i64,
        i64,
        Vec<u8>,
    );
    let (key, version, tombstone, content_type, tags, checksum, size, value) =
        rows.single_row::<Row>().unwrap();
    assert_eq!(key, "tenants/acme/limits");
    assert_eq!(version, "0000018bcfe56800-00000003-00000007");
    assert!(!tombstone);
    assert_eq!(content_type.as_deref(), Some("text/plain"));
    assert_eq!(tags.unwrap()["class"], "pii");
    assert_eq!(
        (checksum, size, value),
        (i64::from(r.meta().checksum), 6, b"max=10".to_vec())
    );
    drop_table(&nodes, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_or_another_depth_is_refused_at_open() {
    let Some(nodes) = nodes("schema").await else {
        return;
    };
    let t = table("schema");
    let mut missing = config(nodes.clone(), &t);
    missing.create_schema = false;
    let e = ScyllaBackend::connect("scylla", missing).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary()),
        (ErrorKind::NotFound, false),
        "{e}"
    );
    assert!(e.message().contains("create_schema = true"), "{e}");
    connect(config(nodes.clone(), &t)).await;
    let e = ScyllaBackend::connect("scylla", config(nodes.clone(), &t).with_partition_depth(3))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("partition_depth 2, the config says 3"),
        "{e}"
    );
    drop_table(&nodes, &t).await;
}
