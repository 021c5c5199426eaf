//! Shared helpers for mux's cross-crate tests and the conformance runner.
#![deny(missing_docs)]

pub mod bench;
pub mod container;
pub mod denied;
pub mod faults;
pub mod history;
pub mod netfault;
pub mod pki;
pub mod scenario;

use std::sync::Arc;

use mux::{
    Backend, BackendSpec, Error, MemoryBackend, Mux, ReadPolicy, Result, Role, RouteConfig,
    WriteConsistency,
};

/// Every backend name the runner knows, in table order.
pub const BACKENDS: &[&str] = &[
    "memory", "fs", "redb", "mux", "postgres", "mysql", "scylla", "redis", "s3", "azure",
    "dynamodb", "ssm", "influx",
];

/// A backend under test plus whatever must live as long as it (temp dirs).
#[derive(Debug)]
pub struct TestBackend {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Kept alive until the backend is dropped.
    pub _guard: Option<tempfile::TempDir>,
}

/// Why a backend could not be built.
#[derive(Debug)]
pub enum Unavailable {
    /// Not reachable here (no server, no Docker); the text says why.
    Skip(String),
    /// A real error (bad configuration, unknown name).
    Error(Error),
}

/// The registry spec of the store `name` for tests, from the `MUX_*` settings; fs and
/// redb live under `dir`. `None` for `memory` (no settings) and `mux` (a whole `Mux`).
pub fn spec(name: &str, dir: &std::path::Path) -> Option<BackendSpec> {
    let path = |p: std::path::PathBuf| p.display().to_string();
    Some(match name {
        "fs" => BackendSpec::new("fs", "fs").with("path", path(dir.to_path_buf())),
        "redb" => BackendSpec::new("redb", "redb").with("path", path(dir.join("mux.redb"))),
        "postgres" => BackendSpec::new("postgres", "postgres")
            .with("url", postgres_url())
            .with("table", "mux_conformance"),
        "mysql" => BackendSpec::new("mysql", "mysql")
            .with("url", mysql_url())
            .with("table", "mux_conformance_mysql"),
        // An existing cluster only (no CQL server can be installed here); the keyspace
        // and table are created, one replica each.
        "scylla" => scylla_spec(scylla_nodes()?),
        "redis" => BackendSpec::new("redis", "redis")
            .with("url", redis_url())
            .with("namespace", "mux-conformance"),
        // Small multipart sizes, so the suite's large value goes up in parts.
        "s3" => {
            let var =
                |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
            BackendSpec::new("s3", "s3")
                .with("bucket", "mux-conformance")
                .with("endpoint", s3_endpoint())
                .with("region", var("MUX_S3_REGION", "us-east-1"))
                .with("access_key_id", var("MUX_S3_ACCESS_KEY_ID", "test"))
                .with("secret_access_key", var("MUX_S3_SECRET_ACCESS_KEY", "test"))
                .with("create_bucket", true)
                .with("multipart_threshold", 5i64 << 20)
                .with("part_size", 5i64 << 20)
                // Used on its own (no coordinator above to retry), the SDK may retry a
                // dropped connection to the emulator, as the adapter's README allows.
                .with("max_attempts", 3)
                // Within the fault mode's 30 s per call: a lost answer ends as a timeout.
                .with("operation_timeout_ms", 20_000)
        }
        "azure" => BackendSpec::new("azure", "azure")
            .with("connection_string", azure_connection_string())
            .with("container", "mux-conformance")
            .with("prefix", "mux")
            .with("create_container", true)
            // As for S3: the SDK may retry a dropped connection (no coordinator above),
            // and a lost answer ends as a timeout within the fault mode's 30 s per call.
            .with("max_retries", 3)
            .with("timeout_ms", 20_000),
        "dynamodb" => {
            let var =
                |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
            BackendSpec::new("dynamodb", "dynamodb")
                .with("table", "mux-conformance")
                .with("endpoint", dynamodb_endpoint())
                .with("region", var("MUX_DYNAMODB_REGION", "us-east-1"))
                .with("access_key_id", var("MUX_DYNAMODB_ACCESS_KEY_ID", "test"))
                .with(
                    "secret_access_key",
                    var("MUX_DYNAMODB_SECRET_ACCESS_KEY", "test"),
                )
                .with("create_table", true)
                // As for S3: the SDK may retry a dropped connection (no coordinator
                // above), within the fault mode's 30 s per call.
                .with("max_attempts", 3)
                .with("operation_timeout_ms", 20_000)
        }
        // Under a root path of its own; the SDK may retry as for S3.
        "ssm" => {
            let var =
                |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
            BackendSpec::new("ssm", "ssm")
                .with("root_path", "/mux-conformance")
                .with("endpoint", var("MUX_SSM_ENDPOINT", "http://127.0.0.1:4566"))
                .with("region", var("MUX_SSM_REGION", "us-east-1"))
                .with("access_key_id", var("MUX_SSM_ACCESS_KEY_ID", "test"))
                .with(
                    "secret_access_key",
                    var("MUX_SSM_SECRET_ACCESS_KEY", "test"),
                )
                .with("max_attempts", 3)
                .with("operation_timeout_ms", 20_000)
        }
        // A database of its own; create_database makes it at open.
        "influx" => BackendSpec::new("influx", "influx")
            .with("url", influx_url())
            .with("database", "mux_conformance"),
        _ => return None,
    })
}

/// The registry spec of a ScyllaDB/Cassandra cluster at `nodes`: the keyspace and
/// table are created, one replica each.
pub fn scylla_spec(nodes: Vec<String>) -> BackendSpec {
    let mut replication = toml::Table::new();
    replication.insert("replication_factor".into(), toml::Value::Integer(1));
    BackendSpec::new("scylla", "scylla")
        .with("nodes", nodes)
        .with("keyspace", "mux_conformance")
        .with("table", "mux_conformance")
        .with("create_schema", true)
        .with("replication", replication)
}

/// Opens `spec` through the registry and checks that the store answers: a store that
/// is unreachable here (the registry opens it deferred) is a skip, with the reason.
pub(crate) async fn open_spec(
    spec: &BackendSpec,
    guard: Option<tempfile::TempDir>,
) -> std::result::Result<TestBackend, Unavailable> {
    let backend = mux::open(spec).await.map_err(Unavailable::Error)?;
    // A store that opened deferred (not reached within the open's 10 s: an emulator
    // stalled by a busy machine, say) keeps connecting in the background: give it up
    // to 30 s more before calling it unreachable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match backend.health().await {
            Ok(()) => {
                return Ok(TestBackend {
                    backend,
                    _guard: guard,
                });
            }
            Err(e) if e.is_temporary() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) if e.is_temporary() => {
                return Err(Unavailable::Skip(format!(
                    "the {} store of backend {} is not reachable ({e}); start it with `cargo xtask services up`",
                    spec.kind, spec.name
                )));
            }
            Err(e) => return Err(Unavailable::Error(e)),
        }
    }
}

/// Builds the backend called `name` for tests.
pub async fn backend(name: &str) -> std::result::Result<TestBackend, Unavailable> {
    let temp = || tempfile::tempdir().map_err(|e| Unavailable::Error(Error::from(e)));
    match name {
        "memory" => Ok(TestBackend {
            backend: Arc::new(MemoryBackend::new("memory")),
            _guard: None,
        }),
        "fs" | "redb" => {
            let dir = temp()?;
            let spec = spec(name, dir.path()).expect("fs and redb have specs");
            open_spec(&spec, Some(dir)).await
        }
        "mux" => {
            let dir = temp()?;
            let mux = embedded_mux(dir.path()).map_err(Unavailable::Error)?;
            Ok(TestBackend {
                backend: Arc::new(mux.as_backend()),
                _guard: Some(dir),
            })
        }
        "scylla" if scylla_nodes().is_none() => Err(Unavailable::Skip(
            "no ScyllaDB/Cassandra cluster: none can be installed here (no package, no Docker \
             engine); set MUX_SCYLLA_NODES=host:port,… to run it against an existing one \
             (mux-scylla's own tests also try testcontainers)"
                .into(),
        )),
        "postgres" | "mysql" | "scylla" | "redis" | "s3" | "azure" | "dynamodb" | "ssm"
        | "influx" => {
            let spec = spec(name, std::path::Path::new(".")).expect("a networked store");
            open_spec(&spec, None).await
        }
        other => Err(Unavailable::Error(Error::invalid_input(format!(
            "unknown backend '{other}'; known backends: {}",
            BACKENDS.join(", ")
        )))),
    }
}

/// `MUX_POSTGRES_URL`, or the local default.
pub fn postgres_url() -> String {
    std::env::var("MUX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `MUX_MYSQL_URL`, or the local default.
pub fn mysql_url() -> String {
    std::env::var("MUX_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// The contact points of an existing ScyllaDB/Cassandra cluster from `MUX_SCYLLA_NODES`
/// (or `MUX_SCYLLA_URL`), `host:port` separated by commas; `None` when unset: there is
/// no local default, as no CQL server can be installed here.
pub fn scylla_nodes() -> Option<Vec<String>> {
    let value = std::env::var("MUX_SCYLLA_NODES")
        .or_else(|_| std::env::var("MUX_SCYLLA_URL"))
        .ok()?;
    let nodes: Vec<String> = value
        .split(',')
        .map(|n| {
            n.trim()
                .trim_start_matches("scylla://")
                .trim_start_matches("cql://")
        })
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

/// `MUX_INFLUX_URL`, or the local InfluxDB 1.x.
pub fn influx_url() -> String {
    std::env::var("MUX_INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into())
}

/// `MUX_REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A plain PostgreSQL client (`postgres_url`), for tests that work on the store behind
/// mux's back; its connection runs on a spawned task. Panics, naming the fix, when
/// PostgreSQL is unreachable.
pub async fn pg_client() -> tokio_postgres::Client {
    let url = postgres_url();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is required (cargo xtask services up): {e}")
        });
    tokio::spawn(conn);
    client
}

/// A plain Redis connection (`redis_url`), for tests that work on the store behind
/// mux's back. Panics, naming the fix, when Redis is unreachable.
pub async fn redis_conn() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required (cargo xtask services up): {e}"))
}

/// `MUX_S3_ENDPOINT`, or the local moto server's.
pub fn s3_endpoint() -> String {
    std::env::var("MUX_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// `MUX_DYNAMODB_ENDPOINT`, or the local moto server's.
pub fn dynamodb_endpoint() -> String {
    std::env::var("MUX_DYNAMODB_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// A config for `table` on the test DynamoDB server (`MUX_DYNAMODB_*` or the local moto
/// server's defaults), creating the table at open.
pub fn dynamodb_config(table: &str) -> mux::dynamodb::DynamoDbConfig {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    mux::dynamodb::DynamoDbConfig::new(table)
        .with_endpoint(dynamodb_endpoint())
        .with_region(var("MUX_DYNAMODB_REGION", "us-east-1"))
        .with_static_credentials(
            var("MUX_DYNAMODB_ACCESS_KEY_ID", "test"),
            var("MUX_DYNAMODB_SECRET_ACCESS_KEY", "test"),
        )
        .with_create_table(true)
}

/// A config under root path `root` on the test SSM server (`MUX_SSM_*` or the local
/// moto server's defaults).
pub fn ssm_config(root: &str) -> mux::ssm::SsmConfig {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    mux::ssm::SsmConfig::new()
        .with_root_path(root)
        .with_endpoint(var("MUX_SSM_ENDPOINT", "http://127.0.0.1:4566"))
        .with_region(var("MUX_SSM_REGION", "us-east-1"))
        .with_static_credentials(
            var("MUX_SSM_ACCESS_KEY_ID", "test"),
            var("MUX_SSM_SECRET_ACCESS_KEY", "test"),
        )
}

/// A config for `bucket` on the test S3 server (`MUX_S3_*` or the local moto server's
/// defaults), creating the bucket at connect.
pub fn s3_config(bucket: &str) -> mux::s3::S3Config {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    mux::s3::S3Config::new(bucket)
        .with_endpoint(s3_endpoint(), true)
        .with_region(var("MUX_S3_REGION", "us-east-1"))
        .with_static_credentials(
            var("MUX_S3_ACCESS_KEY_ID", "test"),
            var("MUX_S3_SECRET_ACCESS_KEY", "test"),
        )
        .with_create_bucket(true)
}

/// `MUX_AZURE_CONNECTION_STRING`, or Azurite's development account on 127.0.0.1:10000.
pub fn azure_connection_string() -> String {
    std::env::var("MUX_AZURE_CONNECTION_STRING").unwrap_or_else(|_| {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};",
            mux::azure::DEV_ACCOUNT_NAME,
            mux::azure::DEV_ACCOUNT_KEY,
            mux::azure::DEV_BLOB_ENDPOINT
        )
    })
}

/// A config for `container` on the test Blob service (prefix `mux`), creating the
/// container at connect.
pub fn azure_config(container: &str) -> Result<mux::azure::AzureConfig> {
    Ok(
        mux::azure::AzureConfig::from_connection_string(&azure_connection_string(), container)?
            .with_prefix("mux")
            .with_create_container(true),
    )
}

/// The Python with boto3 and azure-storage-blob (`MUX_PYTHON`, or the venv that
/// `cargo xtask services up --install` makes).
pub fn python() -> String {
    std::env::var("MUX_PYTHON").unwrap_or_else(|_| {
        let dir =
            std::env::var("MUX_SERVICES_DIR").unwrap_or_else(|_| "/var/tmp/mux-services".into());
        format!("{dir}/venv/bin/python")
    })
}

/// A TCP port free on 127.0.0.1 now (the OS's pick; a server started on it may still
/// lose it to another process, so callers retry on another).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Azurite's blob server (`MUX_AZURITE_BIN`, or where `cargo xtask services up
/// --install` puts it), for tests that start one of their own.
pub fn azurite_bin() -> String {
    std::env::var("MUX_AZURITE_BIN").unwrap_or_else(|_| {
        let dir =
            std::env::var("MUX_SERVICES_DIR").unwrap_or_else(|_| "/var/tmp/mux-services".into());
        format!("{dir}/azurite/node_modules/.bin/azurite-blob")
    })
}

/// Runs a command (a store's own client: psql, redis-cli …) and returns its stdout;
/// panics with its stderr when it fails.
pub fn run_command(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Python snippet with `args` in the services venv ([`python`]); it prints one
/// JSON document, which is returned. Panics with the script's stderr when it fails.
pub fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let python = python();
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (run `cargo xtask services up --install`): {e}")
        });
    assert!(
        out.status.success(),
        "{python} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// A `Mux` over memory, fs (under `dir/fs`) and redb (`dir/mux.redb`), writing and
/// reading at `All`, so it keeps the single-store contract exactly. The memory replica
/// keeps history, so the `Mux` answers history and as-of reads (routed by the
/// coordinator to that replica) and the history cases run too.
pub fn embedded_mux(dir: &std::path::Path) -> Result<Mux> {
    Mux::builder()
        .backend(Arc::new(MemoryBackend::with_history("memory")))
        .backend(Arc::new(mux::fs::FsBackend::open("fs", dir.join("fs"))?))
        .backend(Arc::new(mux::redb::RedbBackend::open(
            "redb",
            dir.join("mux.redb"),
        )?))
        .default_route(
            RouteConfig::new("")
                .backend("redb", Role::Primary)
                .backend("fs", Role::Replica)
                .backend("memory", Role::Replica)
                .write(WriteConsistency::All)
                .read(ReadPolicy::All),
        )
        .build()
}

/// Result alias for tests.
pub type TestResult = Result<()>;
