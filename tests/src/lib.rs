//! Shared helpers for mux's cross-crate tests and the conformance runner.
#![deny(missing_docs)]

pub mod bench;

use std::sync::Arc;

use mux::{
    Backend, Error, MemoryBackend, Mux, ReadPolicy, Result, Role, RouteConfig, WriteConsistency,
};

/// Every backend name the runner knows, in table order.
pub const BACKENDS: &[&str] = &["memory", "fs", "redb", "mux", "postgres", "redis"];

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

/// Builds the backend called `name` for tests.
pub async fn backend(name: &str) -> std::result::Result<TestBackend, Unavailable> {
    let temp = || tempfile::tempdir().map_err(|e| Unavailable::Error(Error::from(e)));
    match name {
        "memory" => Ok(TestBackend {
            backend: Arc::new(MemoryBackend::new("memory")),
            _guard: None,
        }),
        "fs" => {
            let dir = temp()?;
            let b = mux::fs::FsBackend::open("fs", dir.path()).map_err(Unavailable::Error)?;
            Ok(TestBackend {
                backend: Arc::new(b),
                _guard: Some(dir),
            })
        }
        "redb" => {
            let dir = temp()?;
            let b = mux::redb::RedbBackend::open("redb", dir.path().join("mux.redb"))
                .map_err(Unavailable::Error)?;
            Ok(TestBackend {
                backend: Arc::new(b),
                _guard: Some(dir),
            })
        }
        "mux" => {
            let dir = temp()?;
            let mux = embedded_mux(dir.path()).map_err(Unavailable::Error)?;
            Ok(TestBackend {
                backend: Arc::new(mux),
                _guard: Some(dir),
            })
        }
        "postgres" => {
            let url = postgres_url();
            let config = mux::postgres::PostgresConfig::new(&url).with_table("mux_conformance");
            match mux::postgres::PostgresBackend::connect("postgres", config).await {
                Ok(b) => Ok(TestBackend {
                    backend: Arc::new(b),
                    _guard: None,
                }),
                Err(e) if e.is_temporary() => Err(Unavailable::Skip(format!(
                    "no PostgreSQL at {url} ({e}); start one with `cargo xtask services up`"
                ))),
                Err(e) => Err(Unavailable::Error(e)),
            }
        }
        "redis" => {
            let url = redis_url();
            let config = mux::redis::RedisConfig::new(&url).with_namespace("mux-conformance");
            match mux::redis::RedisBackend::connect("redis", config).await {
                Ok(b) => Ok(TestBackend {
                    backend: Arc::new(b),
                    _guard: None,
                }),
                Err(e) if e.is_temporary() => Err(Unavailable::Skip(format!(
                    "no Redis at {url} ({e}); start one with `cargo xtask services up`"
                ))),
                Err(e) => Err(Unavailable::Error(e)),
            }
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

/// `MUX_REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A `Mux` over memory, fs (under `dir/fs`) and redb (`dir/mux.redb`), writing and
/// reading at `All`, so it keeps the single-store contract exactly.
pub fn embedded_mux(dir: &std::path::Path) -> Result<Mux> {
    Mux::builder()
        .backend(Arc::new(MemoryBackend::new("memory")))
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
