//! # muxd
//!
//! The mux storage proxy: a REST API over a [`mux::Mux`] built from a TOML
//! configuration (see `examples/embedded.toml`, the default).
//!
//! Endpoints: `PUT/GET/HEAD/DELETE /v1/kv/{key}`, `GET /v1/kv?prefix=&cursor=&limit=`,
//! `/healthz`, `/readyz`, `/metrics` (Prometheus), `GET /v1/admin/health`,
//! `GET /v1/admin/dead-letters`, `POST /v1/admin/dead-letters/{id}/replay`,
//! `DELETE /v1/admin/dead-letters/{id}`, `GET /v1/admin/status`, and `GET /ui`, a live
//! status page (backends, latency, routes, dead letters) that polls the latter.
//! Consistency checks and migration (`mux-sync`): `POST /v1/admin/jobs` (verify,
//! repair, backfill, tombstone GC in the background), `GET /v1/admin/jobs[/{id}]`,
//! `GET /v1/admin/export` (JSON lines, streamed) and `POST /v1/admin/import`.
#![deny(missing_docs)]

mod admin;
pub mod antientropy;
pub mod audit;
pub mod auth;
pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod grpc;
mod jobs;
pub mod openapi;
pub mod quota;
pub mod readiness;
mod rest;
mod service;
mod sse;
pub mod telemetry;
pub mod tls;
pub mod token;
mod ui;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mux::{Error, Mux, Result};

pub use config::ServerConfig;
pub use mux::BackendSpec;

/// The process-wide Prometheus recorder (installed once, before any `Mux` is built, so
/// the coordinator's metrics register with it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Real histograms (with `_bucket` series), from 50 µs to 10 s.
            let buckets = [
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding application's).
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// What a configuration produces; swapped atomically on reload.
#[derive(Debug)]
pub struct Live {
    /// The multiplexed store.
    pub mux: Mux,
    /// Verifies tokens; `None` when auth is off.
    pub auth: Option<Arc<auth::Verifier>>,
    /// The configuration it came from.
    pub config: ServerConfig,
    /// The TLS configuration of new REST and gRPC connections (`[tls]`), built from
    /// the certificate files when this `Live` was: a reload rotates them.
    tls: Option<TlsPair>,
}

/// The rustls configurations of the two listeners (they differ in ALPN only).
#[derive(Clone)]
struct TlsPair {
    rest: Arc<rustls::ServerConfig>,
    grpc: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPair")
    }
}

/// A node-local event pushed to watchers (changes come from the feed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The configuration was reloaded.
    Config {
        /// Why, for people.
        reason: String,
    },
}

/// The stores opened so far, by the spec that opened them.
type OpenBackends = Vec<(BackendSpec, Arc<dyn mux::Backend>)>;

/// What the handlers share: one `Arc`, so the clone every request makes (axum's
/// `State`, the middleware) is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct Shared {
    live: Arc<RwLock<Arc<Live>>>,
    /// Open backends by spec, reused across reloads (a store is opened once).
    backends: Arc<tokio::sync::Mutex<OpenBackends>>,
    intent_log: Option<Arc<dyn mux::IntentLog>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The body limit (fixed at start).
    pub max_body_bytes: usize,
    /// Configuration reloads, for watchers.
    pub events: tokio::sync::broadcast::Sender<Event>,
    /// The change feed every `Mux` of this server publishes to; watchers read it.
    pub feed: Arc<dyn mux::ChangeFeed>,
    /// The admin jobs (verify, repair, backfill, GC) of this process.
    jobs: Arc<jobs::Jobs>,
    /// Background anti-entropy (`[anti_entropy]`): its last pass.
    anti_entropy: Arc<antientropy::AntiEntropy>,
    /// The audit trail (`[audit]`).
    pub(crate) audit: Arc<audit::Audit>,
    /// Per-tenant quotas and usage (`[quotas]`).
    pub(crate) quotas: Arc<quota::Quotas>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("live", &self.live())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The configuration in force now (requests hold it until they finish).
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `Mux` in force now.
    pub fn mux(&self) -> Mux {
        self.live().mux.clone()
    }

    /// Background anti-entropy (`[anti_entropy]`): the summary of its last pass.
    pub fn anti_entropy(&self) -> &antientropy::AntiEntropy {
        &self.anti_entropy
    }

    /// Validates `config` and swaps it in atomically: requests in flight finish on the
    /// old one, new requests see the new one. An invalid config changes nothing and its
    /// errors are returned. `listen`, `grpc_listen`, `max_body_bytes` and `intent_log` need a restart.
    pub async fn reload(&self, config: ServerConfig) -> Result<()> {
        self.reload_by(config, "the embedding program").await
    }

    /// [`AppState::reload`], logged with who asked (`by`) and what changed; a refused
    /// reload is logged with its errors.
    pub async fn reload_by(&self, config: ServerConfig, by: &str) -> Result<()> {
        let changes = self.live().config.changes_to(&config).join(", ");
        let slot = self
            .audit
            .reserve()
            .map_err(|e| Error::new(mux::ErrorKind::Unavailable, e.message().to_owned()))?;
        let result = self.swap(config).await;
        slot.record(audit::Pending {
            actor: by.to_owned(),
            tenant: None,
            action: "reload".into(),
            key: None,
            version: None,
            outcome: match &result {
                Ok(()) => "ok".into(),
                Err(e) => e.kind().as_str().into(),
            },
            request_id: self.audit.request_id(),
        });
        match result {
            Ok(()) => {
                tracing::info!(by, changes = %changes, "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(by, error = %e, "reload refused; the old configuration keeps serving");
                Err(e)
            }
        }
    }

    async fn swap(&self, config: ServerConfig) -> Result<()> {
        let current = self.live();
        for (what, same) in [
            ("listen", config.listen == current.config.listen),
            (
                "grpc_listen",
                config.grpc_listen == current.config.grpc_listen,
            ),
            (
                "max_body_bytes",
                config.max_body_bytes == current.config.max_body_bytes,
            ),
            ("intent_log", config.intent_log == current.config.intent_log),
            (
                "allow_plaintext",
                config.allow_plaintext == current.config.allow_plaintext,
            ),
            (
                "whether [tls] is present",
                config.tls.is_some() == current.config.tls.is_some(),
            ),
            ("feed", config.feed == current.config.feed),
            ("audit", config.audit == current.config.audit),
            ("quotas", config.quotas == current.config.quotas),
            ("telemetry", config.telemetry == current.config.telemetry),
        ] {
            if !same {
                return Err(Error::invalid_input(format!(
                    "{what} cannot change on reload: restart muxd"
                )));
            }
        }
        let live = Arc::new(
            make_live(
                &self.backends,
                self.intent_log.as_ref(),
                &self.feed,
                config,
                Some(&current.mux),
            )
            .await?,
        );
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
        let _ = self.events.send(Event::Config {
            reason: "configuration reloaded".into(),
        });
        Ok(())
    }
}

/// Builds what `config` produces, opening the stores it adds to `backends` (and
/// forgetting those it no longer names). On a reload, the new `Mux` takes over from
/// `previous` (`MuxBuilder::succeeding`): hints already being delivered stay with
/// their one task, and circuits keep their state.
async fn make_live(
    backends: &tokio::sync::Mutex<OpenBackends>,
    intent_log: Option<&Arc<dyn mux::IntentLog>>,
    feed: &Arc<dyn mux::ChangeFeed>,
    config: ServerConfig,
    previous: Option<&Mux>,
) -> Result<Live> {
    let auth = verifier(&config)?;
    config.check_transport()?;
    let tls = match &config.tls {
        Some(tls) => Some(TlsPair {
            rest: tls::server_config(tls, &[b"http/1.1"])?,
            grpc: tls::server_config(tls, &[b"h2"])?,
        }),
        None => None,
    };
    // Every kind and field checked first, all problems at once; then the stores this
    // config adds are opened together. A store that is unreachable now opens as a
    // deferred backend (unavailable until it connects): only config errors fail.
    mux::check_all(&config.backends)?;
    let mut opened = backends.lock().await;
    let new: Vec<&BackendSpec> = config
        .backends
        .iter()
        .filter(|spec| !opened.iter().any(|(s, _)| s == *spec))
        .collect();
    let results = futures_util::future::join_all(new.iter().map(|spec| mux::open(spec))).await;
    let mut problems = Vec::new();
    for (spec, result) in new.into_iter().zip(results) {
        match result {
            Ok(b) => opened.push((spec.clone(), b)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid_input(format!(
            "cannot open the backends:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    let mut builder = Mux::builder().feed(feed.clone());
    // Key sets are read again on every reload: a rotated keyring takes effect then.
    for envelope in mux::encrypt::spec::open_all(&config.keys).await? {
        builder = builder.sealer(envelope);
    }
    for spec in &config.backends {
        let (_, backend) = opened
            .iter()
            .find(|(s, _)| s == spec)
            .expect("every backend was opened above");
        builder = builder.backend(backend.clone());
    }
    if let Some(log) = intent_log {
        builder = builder.intent_log(log.clone());
    }
    if let Some(previous) = previous {
        builder = builder.succeeding(previous);
    }
    let mux = builder.config(config.mux.clone()).build()?;
    mux.recover().await?;
    // Forget stores the new config no longer names.
    opened.retain(|(s, _)| config.backends.contains(s));
    Ok(Live {
        mux,
        auth,
        config,
        tls,
    })
}

fn verifier(config: &ServerConfig) -> Result<Option<Arc<auth::Verifier>>> {
    match config.auth.mode {
        auth::AuthMode::Jwt => Ok(Some(Arc::new(auth::Verifier::new(&config.auth)?))),
        auth::AuthMode::Off => {
            let loopback = config
                .listen
                .parse::<SocketAddr>()
                .map(|a| a.ip().is_loopback())
                .unwrap_or(config.listen.starts_with("localhost:"));
            if !loopback {
                return Err(Error::invalid_input(format!(
                    "[auth] mode = \"off\" is allowed only on a loopback address, not {}",
                    config.listen
                )));
            }
            Ok(None)
        }
    }
}

/// A node's own intent log: a redb file when the path ends in `.redb` or is an existing
/// file, else a directory of segment files with group commit (`mux_wal`).
fn open_file_log(path: &std::path::Path) -> Result<Arc<dyn mux::IntentLog>> {
    if path.extension().is_some_and(|e| e == "redb") || path.is_file() {
        Ok(Arc::new(mux::redb::RedbIntentLog::open(path)?))
    } else {
        Ok(Arc::new(mux::wal::SegmentIntentLog::open(path)?))
    }
}

/// Opens every backend and builds the `Mux`.
pub async fn build(config: &ServerConfig) -> Result<AppState> {
    verifier(config)?;
    let metrics = metrics_handle();
    let intent_log: Option<Arc<dyn mux::IntentLog>> = match &config.intent_log {
        Some(config::IntentLogSpec::File(path)) => Some(open_file_log(path)?),
        Some(config::IntentLogSpec::Postgres(log)) => Some(Arc::new(
            mux::postgres::PostgresIntentLog::connect(
                &log.url,
                &log.prefix,
                &format!("node-{}", config.mux.node_id),
                std::time::Duration::from_millis(log.lease_ms),
            )
            .await?,
        )),
        None => None,
    };
    let feed = config.feed.clone().unwrap_or_default().open().await?;
    // The first `Mux` is the real one: no throwaway store is built before it (its
    // metrics series would show in /metrics).
    let backends = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let live = make_live(&backends, intent_log.as_ref(), &feed, config.clone(), None).await?;
    let live = Arc::new(RwLock::new(Arc::new(live)));
    let current = live.clone();
    let audit = audit::Audit::start(
        config.audit.clone(),
        config.mux.node_id,
        Arc::new(move || {
            current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .mux
                .clone()
        }),
    );
    Ok(AppState(Arc::new(Shared {
        live,
        audit: Arc::new(audit),
        quotas: Arc::new(quota::Quotas::new(config.quotas.clone())),
        backends,
        intent_log,
        metrics,
        max_body_bytes: config.max_body_bytes,
        events: tokio::sync::broadcast::channel(64).0,
        feed,
        jobs: Arc::default(),
        anti_entropy: Arc::default(),
    })))
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address the REST API listens on.
    pub addr: SocketAddr,
    /// The address the gRPC API listens on.
    pub grpc_addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    grpc_task: tokio::task::JoinHandle<()>,
    /// Background anti-entropy passes (idle unless `[anti_entropy] enabled`).
    anti_entropy_task: tokio::task::JoinHandle<()>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, and waits for background writes.
    pub async fn shutdown(mut self, mux: &Mux) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        // Open streams (Watch) never end by themselves: give in-flight calls a few
        // seconds, then close what is left.
        let drain = std::time::Duration::from_secs(5);
        if tokio::time::timeout(drain, &mut self.task).await.is_err() {
            self.task.abort();
        }
        if tokio::time::timeout(drain, &mut self.grpc_task)
            .await
            .is_err()
        {
            self.grpc_task.abort();
        }
        // A pass in progress stops at once (and releases its lease).
        if tokio::time::timeout(drain, &mut self.anti_entropy_task)
            .await
            .is_err()
        {
            self.anti_entropy_task.abort();
        }
        mux.settle().await;
    }
}

/// Binds `config.listen` and serves the REST API.
pub async fn serve(config: &ServerConfig, state: AppState) -> Result<Server> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| Error::from(e).context(format!("cannot listen on {}", config.listen)))?;
    let addr = listener.local_addr().map_err(Error::from)?;
    let grpc_listener = tokio::net::TcpListener::bind(&config.grpc_listen)
        .await
        .map_err(|e| Error::from(e).context(format!("cannot listen on {}", config.grpc_listen)))?;
    let grpc_addr = grpc_listener.local_addr().map_err(Error::from)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let grpc = grpc::service(state.clone());
    let anti_entropy_task = antientropy::spawn(state.clone(), rx.clone());
    let tls = state.live().tls.is_some();
    let current = |pick: fn(&TlsPair) -> Arc<rustls::ServerConfig>| -> tls::Current {
        let state = state.clone();
        Arc::new(move || state.live().tls.as_ref().map(pick))
    };
    let rest_tls = current(|t| t.rest.clone());
    let grpc_tls = current(|t| t.grpc.clone());
    let app = rest::router(state)
        .merge(openapi::router())
        .route_layer(axum::middleware::from_fn(telemetry::trace_request));
    let rest_stop = stopped(rx.clone());
    let task = if tls {
        let listener = tls::TlsListener::new(listener, rest_tls, "rest")?;
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<tls::Peer>(),
            )
            .with_graceful_shutdown(rest_stop)
            .await
        })
    } else {
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(rest_stop)
                .await
        })
    };
    let grpc_stop = stopped(rx);
    let grpc_server = tonic::transport::Server::builder()
        .layer(telemetry::grpc_layer())
        .add_service(grpc);
    let grpc_task = if tls {
        let incoming = tls::TlsListener::new(grpc_listener, grpc_tls, "grpc")?.into_stream();
        tokio::spawn(async move {
            if let Err(e) = grpc_server
                .serve_with_incoming_shutdown(incoming, grpc_stop)
                .await
            {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    } else {
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
            if let Err(e) = grpc_server
                .serve_with_incoming_shutdown(incoming, grpc_stop)
                .await
            {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    };
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(rest = %addr, grpc = %grpc_addr, "muxd listening on {scheme}://{addr} (gRPC {scheme}://{grpc_addr})");
    Ok(Server {
        addr,
        grpc_addr,
        task,
        grpc_task,
        anti_entropy_task,
        shutdown: Some(tx),
    })
}

#[cfg(test)]
mod tests {
    use super::open_file_log;

    #[test]
    fn a_file_intent_log_is_redb_by_extension_else_a_segment_directory() {
        let dir = tempfile::tempdir().unwrap();
        let redb = open_file_log(&dir.path().join("intents.redb")).unwrap();
        assert!(format!("{redb:?}").starts_with("RedbIntentLog"), "{redb:?}");
        drop(redb);
        // An existing redb file keeps opening as one, whatever its name.
        std::fs::rename(dir.path().join("intents.redb"), dir.path().join("old-log")).unwrap();
        let old = open_file_log(&dir.path().join("old-log")).unwrap();
        assert!(format!("{old:?}").starts_with("RedbIntentLog"), "{old:?}");
        let wal = open_file_log(&dir.path().join("intents")).unwrap();
        assert!(
            format!("{wal:?}").starts_with("SegmentIntentLog"),
            "{wal:?}"
        );
        assert!(dir.path().join("intents").is_dir());
    }
}
