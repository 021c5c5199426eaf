//! Recorded histories under network faults between mux and the object stores, checked
//! afterwards (issue 19, points 1–2): the scenarios of `history_faults.rs`, on S3 (the
//! moto server) as the primary and Azure Blob (Azurite), each reached through its own
//! network fault proxy, and a memory store — two nodes, four clients
//! (`mux_tests::scenario`), one fault on one store per scenario; then heal, drain, and
//! check that nothing acknowledged was lost or resurrected, no version invented, the
//! stores converged and no `Quorum`/`All` read went stale.
//!
//! S3 (moto) and Azurite are required (`cargo xtask services up`).

use std::sync::Arc;
use std::time::Duration;

use mux::azure::{AzureBackend, AzureConfig};
use mux::s3::S3Backend;
use mux::{Backend, MemoryBackend};
use mux_tests::netfault::{FaultProxy, LinkFaults};
use mux_tests::scenario::{Cluster, Store, authority_of, cycle, run, run_length, through};

const BUCKET: &str = "mux-history-objects";
const CONTAINER: &str = "mux-history-objects";

/// Two nodes over S3 (the primary) and Azure Blob, each behind its own proxy, and a
/// memory store.
async fn cluster(scenario: &str) -> Cluster {
    let s3_endpoint = mux_tests::s3_endpoint();
    let s3_proxy = FaultProxy::start(&authority_of(&s3_endpoint))
        .await
        .unwrap();
    let s3: Arc<dyn Backend> = Arc::new(
        S3Backend::connect(
            "s3",
            mux_tests::s3_config(BUCKET)
                .with_endpoint(through(&s3_endpoint, &s3_proxy.authority()), true),
        )
        .await
        .unwrap_or_else(|e| panic!("S3 (moto) is required (cargo xtask services up): {e}")),
    );
    let connection = mux_tests::azure_connection_string();
    let blob_endpoint = connection
        .split(';')
        .find_map(|part| part.strip_prefix("BlobEndpoint="))
        .expect("the Azure connection string names its BlobEndpoint")
        .to_owned();
    let azure_proxy = FaultProxy::start(&authority_of(&blob_endpoint))
        .await
        .unwrap();
    let proxied = connection.replace(
        &blob_endpoint,
        &through(&blob_endpoint, &azure_proxy.authority()),
    );
    let azure: Arc<dyn Backend> = Arc::new(
        AzureBackend::connect(
            "azure",
            AzureConfig::from_connection_string(&proxied, CONTAINER)
                .unwrap()
                .with_prefix("mux")
                .with_create_container(true),
        )
        .await
        .unwrap_or_else(|e| panic!("Azurite is required (cargo xtask services up): {e}")),
    );
    let stores = vec![
        Store {
            backend: s3,
            proxy: Some(s3_proxy),
        },
        Store {
            backend: azure,
            proxy: Some(azure_proxy),
        },
        Store {
            backend: Arc::new(MemoryBackend::new("memory")),
            proxy: None,
        },
    ];
    Cluster::new(scenario, stores).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_connections_reset_mid_run() {
    let name = "s3-resets";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("s3");
            let times = cycle(300, 0, || proxy.reset_all(), || ()).await;
            format!(
                "every S3 connection reset {times} times, 300 ms apart ({} connections reset)",
                proxy.stats().resets
            )
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_narrow_link_to_s3() {
    let name = "s3-slow";
    run(
        name,
        cluster(name).await,
        |c| async move {
            c.proxy("s3").set_link(LinkFaults {
                latency: Duration::from_millis(15),
                jitter: Duration::from_millis(30),
                bytes_per_sec: Some(64 * 1024),
                ..Default::default()
            });
            tokio::time::sleep(run_length()).await;
            "S3 link 15 ms + up to 30 ms jitter per chunk, 64 KiB/s, the whole run".to_owned()
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_partitioned_then_healed() {
    let name = "azure-partition";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("azure");
            let times = cycle(500, 1500, || proxy.partition(), || proxy.heal()).await;
            format!("Azure Blob partitioned {times} times for 1.5 s (calls time out), then healed")
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_refuses_connections() {
    let name = "azure-refused";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("azure");
            let on = || {
                proxy.refuse(true);
                proxy.reset_all();
            };
            let times = cycle(500, 1500, on, || proxy.refuse(false)).await;
            format!(
                "Azure Blob reset and refused {times} times for 1.5 s ({} connections reset)",
                proxy.stats().resets
            )
        },
        false,
    )
    .await;
}

/// Azure's connections are dropped and new ones blackholed (accepted, never answered)
/// for 1.5 s at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blackholed() {
    let name = "azure-blackhole";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("azure");
            let on = || {
                proxy.blackhole(true);
                proxy.reset_all();
            };
            let times = cycle(500, 1500, on, || proxy.blackhole(false)).await;
            format!(
                "Azure Blob blackholed {times} times for 1.5 s (connections accepted, never answered)"
            )
        },
        false,
    )
    .await;
}
