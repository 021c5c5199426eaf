//! Logs and traces end to end: a real `muxd` process exports its spans over OTLP to a
//! collector started here (the collector's trace service from `opentelemetry-proto`),
//! continuing the caller's W3C trace, with the coordinator's spans as children; its
//! JSON log lines carry the request id.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::request;
use muxd::grpc::pb;
use muxd::grpc::pb::store_client::StoreClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

/// A collector that keeps every span it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        (collector, addr)
    }

    /// The spans of `trace`, once `ready` holds for them (at most 20 s).
    async fn trace(&self, trace: &[u8], ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace)
                .cloned()
                .collect();
            if ready(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the trace never arrived whole; spans so far: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// A muxd process, killed when dropped.
struct Muxd {
    child: Child,
    rest: SocketAddr,
    grpc: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Muxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Muxd {
    /// Starts muxd on `config` with extra arguments and environment; returns once it
    /// logs where it listens (at most 30 s).
    fn start(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Muxd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_muxd"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("muxd listening on http://") {
                    let rest = &line[at + "muxd listening on http://".len()..];
                    if let Some((a, g)) = rest.split_once(" (gRPC http://") {
                        let g = &g[..g.find(')').unwrap_or(g.len())];
                        let _ = tx.send((a.parse().unwrap(), g.parse().unwrap()));
                    }
                }
                seen.lock().unwrap().push(line);
            }
        });
        let (rest, grpc) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "muxd did not log where it listens; output: {:?}",
                    lines.lock().unwrap()
                )
            });
        Muxd {
            child,
            rest,
            grpc,
            lines,
        }
    }
}

/// Two memory stores written at `All`, and telemetry as given.
fn config(dir: &std::path::Path, telemetry: &str) -> std::path::PathBuf {
    let path = dir.join("muxd.toml");
    std::fs::write(
        &path,
        format!(
            r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "off"
[[backends]]
name = "a"
kind = "memory"
[[backends]]
name = "b"
kind = "memory"
[mux]
node_id = 1
[mux.default]
backends = [{{ backend = "a", role = "primary" }}, {{ backend = "b", role = "replica" }}]
write = "all"
read = "primary"
[telemetry]
{telemetry}
"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_continuing_the_callers_with_the_coordinators_spans() {
    let (collector, otlp) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!("otlp_endpoint = \"http://{otlp}\"\nexport_interval_ms = 100"),
    );
    let muxd = Muxd::start(&config, &[], &[]);

    // A PUT in the caller's trace, with the caller's request id.
    let trace = [0x4b_u8; 16];
    let caller = [0x2c_u8; 8];
    let traceparent = format!("00-{}-{}-01", hex(&trace), hex(&caller));
    let put = request(
        muxd.rest,
        "PUT",
        "/v1/kv/traced/k",
        &[("traceparent", &traceparent), ("x-request-id", "req-42")],
        b"v",
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.header("x-request-id"), Some("req-42"));

    let spans = collector
        .trace(&trace, |s| named(s, "mux.backend").len() >= 2)
        .await;
    let server = named(&spans, "PUT /v1/kv/{*key}");
    assert_eq!(server.len(), 1, "one server span: {spans:#?}");
    let server = server[0];
    assert_eq!(
        server.parent_span_id, caller,
        "the caller's span is the parent"
    );
    assert_eq!(attribute(server, "request_id").as_deref(), Some("req-42"));
    assert_eq!(attribute(server, "status").as_deref(), Some("200"));
    let route = named(&spans, "mux.route");
    assert!(
        route.iter().any(|r| r.parent_span_id == server.span_id),
        "routing is a child of the request: {spans:#?}"
    );
    let write = named(&spans, "mux.write");
    assert_eq!(write.len(), 1, "{spans:#?}");
    assert_eq!(write[0].parent_span_id, server.span_id);
    let mut backends: Vec<(String, String, String)> = named(&spans, "mux.backend")
        .into_iter()
        .map(|b| {
            assert_eq!(
                b.parent_span_id, write[0].span_id,
                "a backend call is the write's child"
            );
            assert_eq!(attribute(b, "attempt").as_deref(), Some("1"));
            (
                attribute(b, "backend").unwrap_or_default(),
                attribute(b, "operation").unwrap_or_default(),
                attribute(b, "outcome").unwrap_or_default(),
            )
        })
        .collect();
    backends.sort();
    assert_eq!(
        backends,
        [
            ("a".into(), "put".into(), "ok".into()),
            ("b".into(), "put".into(), "ok".into())
        ]
    );

    // A gRPC read in another trace: its own server span, the read and the backend call.
    let trace2 = [0x5d_u8; 16];
    let mut client = StoreClient::connect(format!("http://{}", muxd.grpc))
        .await
        .unwrap();
    let mut get = tonic::Request::new(pb::GetRequest {
        key: "traced/k".into(),
        ..Default::default()
    });
    get.metadata_mut().insert(
        "traceparent",
        format!("00-{}-{}-01", hex(&trace2), hex(&caller))
            .parse()
            .unwrap(),
    );
    client.get(get).await.unwrap();
    let spans = collector
        .trace(&trace2, |s| !named(s, "mux.backend").is_empty())
        .await;
    let server = spans
        .iter()
        .find(|s| s.name.ends_with("/Get"))
        .unwrap_or_else(|| panic!("no gRPC server span: {spans:#?}"));
    assert_eq!(server.parent_span_id, caller);
    let read = named(&spans, "mux.read");
    assert_eq!(read.len(), 1, "{spans:#?}");
    assert_eq!(read[0].parent_span_id, server.span_id);
    let backend = named(&spans, "mux.backend");
    assert_eq!(backend[0].parent_span_id, read[0].span_id);
    assert_eq!(attribute(backend[0], "operation").as_deref(), Some("get"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_the_startup_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let muxd = Muxd::start(
        &config,
        &["--log-format", "json"],
        &[("RUST_LOG", "info,muxd::access=debug")],
    );
    // A generated request id when the caller sends none.
    let got = request(muxd.rest, "GET", "/v1/kv/nothing/here", &[], b"").await;
    let generated = got
        .header("x-request-id")
        .expect("an id is generated")
        .to_owned();
    assert_eq!(generated.len(), 32, "{generated}");
    request(
        muxd.rest,
        "PUT",
        "/v1/kv/logged/k",
        &[("x-request-id", "req-7")],
        b"v",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = muxd.lines.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains("req-7")) || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let startup = events
        .iter()
        .find(|e| e["fields"]["message"] == "muxd starting")
        .expect("the startup line");
    assert!(
        startup["fields"]["effective"]
            .as_str()
            .unwrap()
            .contains("a (memory"),
        "{startup}"
    );
    let access: HashMap<&str, &serde_json::Value> = events
        .iter()
        .filter(|e| e["target"] == "muxd::access")
        .map(|e| (e["span"]["request_id"].as_str().unwrap_or(""), e))
        .collect();
    let put = access.get("req-7").unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(put["fields"]["status"], 200, "{put}");
    assert!(access.contains_key(generated.as_str()), "{lines:#?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
