//! # muxd
//!
//! The mux storage proxy: a REST API over a [`mux::Mux`] built from a TOML
//! configuration (see `examples/embedded.toml`, the default).
//!
//! Endpoints: `PUT/GET/HEAD/DELETE /v1/kv/{key}`, `GET /v1/kv?prefix=&cursor=&limit=`,
//! `/healthz`, `/readyz`, `/metrics` (Prometheus), `GET /v1/admin/health`,
//! `GET /v1/admin/dead-letters`, `POST /v1/admin/dead-letters/{id}/replay`,
//! `DELETE /v1/admin/dead-letters/{id}`.
#![deny(missing_docs)]

pub mod auth;
pub mod config;
mod rest;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mux::{Error, Mux, Result};

pub use config::{BackendSpec, ServerConfig};

/// The process-wide Prometheus recorder (installed once, before any `Mux` is built, so
/// the coordinator's metrics register with it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding application's).
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The multiplexed store.
    pub mux: Mux,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The body limit.
    pub max_body_bytes: usize,
    /// Verifies tokens; `None` when auth is off.
    pub auth: Option<Arc<auth::Verifier>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("mux", &self.mux)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// Opens every backend and builds the `Mux`.
pub async fn build(config: &ServerConfig) -> Result<AppState> {
    let auth = match config.auth.mode {
        auth::AuthMode::Jwt => Some(Arc::new(auth::Verifier::new(&config.auth)?)),
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
            None
        }
    };
    let metrics = metrics_handle();
    let mut builder = Mux::builder();
    for spec in &config.backends {
        builder = builder.backend(spec.open().await?);
    }
    if let Some(path) = &config.intent_log {
        builder = builder.intent_log(Arc::new(mux::redb::RedbIntentLog::open(path)?));
    }
    let mux = builder.config(config.mux.clone()).build()?;
    mux.recover().await?;
    Ok(AppState {
        mux,
        metrics,
        max_body_bytes: config.max_body_bytes,
        auth,
    })
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, and waits for background writes.
    pub async fn shutdown(mut self, mux: &Mux) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        mux.settle().await;
    }
}

/// Binds `config.listen` and serves the REST API.
pub async fn serve(config: &ServerConfig, state: AppState) -> Result<Server> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| Error::from(e).context(format!("cannot listen on {}", config.listen)))?;
    let addr = listener.local_addr().map_err(Error::from)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = rest::router(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "muxd listening");
    Ok(Server {
        addr,
        task,
        shutdown: Some(tx),
    })
}
