//! TLS from mux to its stores, with a certificate authority made here (rcgen):
//! - Redis: a `redis-server` of the test's own with only a TLS port; `rediss://` with
//!   the CA as `ca_file` passes the conformance suite, and without it (an unknown CA)
//!   nothing is written;
//! - the HTTP stores (S3, DynamoDB and SSM through moto, Azure Blob through Azurite,
//!   InfluxDB): each behind a TLS front with a certificate of that CA; with `ca_file`
//!   a record goes in and comes back, without it the store is refused;
//! - ScyllaDB: the driver's TLS handshake with a front standing in for a node.
//!
//! PostgreSQL and MySQL TLS are tested in their own crates.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mux::{Backend, BackendSpec, Key, Mux, Role, RouteConfig};
use mux_tests::pki::{Ca, TlsFront};

/// A server the test started on a free port; killed when dropped.
struct Spawned {
    child: Child,
    port: u16,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command(port)` on a free port and waits (up to 20 s) until it accepts;
/// another port is tried if the server exits (the port was taken meanwhile). Panics,
/// naming `what` and the fix, when it cannot.
fn start(what: &str, command: impl Fn(u16) -> Command) -> Spawned {
    for _ in 0..5 {
        let port = mux_tests::free_port();
        let mut child = command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {what}: {e} (cargo xtask services up --install)")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Spawned { child, port };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} did not start with TLS on a free port");
}

/// `redis-server` with only a TLS port, its certificate signed by `ca`.
fn redis_tls(ca: &Ca, dir: &Path) -> Spawned {
    ca.sign("redis-server", "redis.test", true);
    start("redis-server", |port| {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(dir.join("redis-server.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("redis-server.key"))
            .arg("--tls-ca-cert-file")
            .arg(&ca.path)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir);
        cmd
    })
}

/// An Azurite blob server of its own serving HTTPS, its certificate signed by `ca`.
fn azurite_tls(ca: &Ca, dir: &Path) -> Spawned {
    ca.sign("azurite", "azurite.test", true);
    start("Azurite", |port| {
        let mut cmd = Command::new(mux_tests::azurite_bin());
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--cert")
            .arg(dir.join("azurite.pem"))
            .arg("--key")
            .arg(dir.join("azurite.key"))
            .args([
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--silent",
            ]);
        cmd
    })
}

fn redis_spec(port: u16) -> BackendSpec {
    BackendSpec::new("redis-tls", "redis")
        .with("url", format!("rediss://localhost:{port}"))
        .with("namespace", "mux-tls")
}

/// A `Mux` over `backend` alone, so one write and one read go through the coordinator.
fn over(backend: Arc<dyn Backend>) -> Mux {
    let name = backend.info().name.clone();
    Mux::builder()
        .backend(backend)
        .default_route(RouteConfig::new("").backend(&*name, Role::Primary))
        .build()
        .unwrap()
}

/// Whether `e`'s text says the certificate was not trusted.
fn untrusted(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    e.contains("certificate") || e.contains("unknownissuer") || e.contains("unknown issuer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_passes_the_suite_and_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "redis-ca");
    let server = redis_tls(&ca, dir.path());

    let backend =
        mux::open(&redis_spec(server.port).with("ca_file", ca.path.display().to_string()))
            .await
            .unwrap();
    let report = mux_conformance::run(backend).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");

    // Without the CA the server's certificate is refused, and nothing is written.
    let refused = over(mux::open(&redis_spec(server.port)).await.unwrap())
        .put(Key::new("tls/x").unwrap(), "v")
        .await
        .unwrap_err()
        .to_string();
    assert!(untrusted(&refused), "{refused}");
    // A CA file with a plain redis:// URL is a mistake, said so.
    let plain = mux::open(
        &BackendSpec::new("redis-plain", "redis")
            .with("url", mux_tests::redis_url())
            .with("ca_file", ca.path.display().to_string()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(plain.contains("not a rediss:// URL"), "{plain}");
}

/// `http://host:port…` → (`host:port`, the rest).
fn authority(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url} is not http://"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_stores_trust_a_configured_ca_and_refuse_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "stores-ca");
    let identity = ca.sign("front", "stores.test", true);
    let ca_file = ca.path.display().to_string();
    // Azure's account-key SAS is https-only on an https endpoint, so Azurite itself must
    // speak TLS (a front would hand it plain HTTP); the others sit behind a TLS front.
    let azurite = azurite_tls(&ca, dir.path());
    let mut failures = Vec::new();
    for store in ["s3", "dynamodb", "ssm", "azure", "influx"] {
        let base = mux_tests::spec(store, dir.path()).unwrap();
        // The plain URL behind a TLS front (kept until the next store).
        let plain = match store {
            "azure" => None,
            "influx" => Some(mux_tests::influx_url()),
            _ => Some(base.fields["endpoint"].as_str().unwrap().to_owned()),
        };
        let mut https = String::new();
        let mut _front = None;
        if let Some(plain) = plain {
            let (upstream, path) = authority(&plain);
            let front = TlsFront::start(&identity, &upstream).await.unwrap();
            https = format!("https://localhost:{}{path}", front.addr().port());
            _front = Some(front);
        }
        let (field, value) = match store {
            "azure" => (
                "connection_string",
                format!(
                    "DefaultEndpointsProtocol=https;AccountName={};AccountKey={};BlobEndpoint=https://localhost:{}/{};",
                    mux::azure::DEV_ACCOUNT_NAME,
                    mux::azure::DEV_ACCOUNT_KEY,
                    azurite.port,
                    mux::azure::DEV_ACCOUNT_NAME,
                ),
            ),
            "influx" => ("url", https),
            _ => ("endpoint", https),
        };
        let spec = |with_ca: bool| {
            let spec = base.clone().with(field, value.clone());
            if with_ca {
                spec.with("ca_file", ca_file.clone())
            } else {
                spec
            }
        };
        let key = Key::new(format!("tls/{store}-{}", std::process::id())).unwrap();
        let trusted = async {
            let mux = over(mux::open(&spec(true)).await?);
            mux.put(key.clone(), "over TLS").await?;
            let got = mux.get(&key).await?.map(|r| r.value().to_vec());
            mux.delete(&key, &mux::WriteOptions::default()).await?;
            Ok::<_, mux::Error>(got)
        };
        match trusted.await {
            Ok(Some(v)) if v == b"over TLS" => {}
            other => failures.push(format!("{store} with ca_file: {other:?}")),
        }
        let refused = async {
            over(mux::open(&spec(false)).await?)
                .put(key.clone(), "x")
                .await
        };
        match refused.await {
            Err(e) if untrusted(&format!("{e} {e:?}")) => {}
            other => failures.push(format!(
                "{store} without ca_file was not refused for its certificate: {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// ScyllaDB over TLS. No CQL server can run here (see mux-scylla's README), so a TLS
/// front with a certificate of the test's CA stands in for a node, forwarding to a
/// listener that counts what reaches it: with the CA as `ca_file` the handshake
/// completes and the connection reaches it (where CQL then fails); with another CA or
/// the system's trusted certificates the driver refuses the certificate and nothing
/// gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_verifies_the_node_certificate_against_its_ca_file() {
    use mux::scylla::{ScyllaBackend, ScyllaConfig, TlsMode};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cql-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let identity = ca.sign("cql", "cql.test", true);
    let behind = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let behind_addr = behind.local_addr().unwrap().to_string();
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = tokio::spawn({
        let reached = reached.clone();
        async move {
            while let Ok((conn, _)) = behind.accept().await {
                reached.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        }
    });
    let front = TlsFront::start(&identity, &behind_addr).await.unwrap();
    let node = format!("127.0.0.1:{}", front.addr().port());
    let connect = |ca_file: Option<std::path::PathBuf>| {
        let mut config = ScyllaConfig::new([node.clone()]).with_tls(TlsMode::Require { ca_file });
        config.connect_timeout_ms = 3_000;
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                ScyllaBackend::connect("cql", config),
            )
            .await
            .expect("the driver gave up within 60 s")
        }
    };

    for (what, ca_file) in [
        ("another CA", Some(other.path.clone())),
        ("the system's trusted certificates", None),
    ] {
        let e = connect(ca_file).await.unwrap_err().to_string();
        println!("{what}: {e}");
        assert!(untrusted(&e), "{what}: {e}");
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "{what}: a connection got past the TLS front"
        );
    }
    let e = connect(Some(ca.path.clone()))
        .await
        .unwrap_err()
        .to_string();
    println!("its CA: {e}");
    assert!(
        reached.load(Ordering::SeqCst) > 0,
        "with its CA the handshake should complete and reach the node: {e}"
    );
    assert!(
        !untrusted(&e),
        "with its CA the certificate was refused: {e}"
    );
    counter.abort();
}
