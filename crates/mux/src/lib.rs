//! # mux
//!
//! One interface, many stores. mux writes each record to several heterogeneous stores
//! at once and reads it back through routing, with versioned, convergent writes.
//!
//! This facade re-exports [`mux_core`] (the model, the [`Backend`] trait, the in-memory
//! backend) and, behind one cargo feature each, the store crates, so nobody compiles a
//! store they do not use:
//!
//! | feature | module | store |
//! |---|---|---|
//! | `fs` | [`fs`](crate) | a local directory, one file per record |
//! | `redb` | [`redb`](crate) | the embedded redb database |
//! | `postgres` | [`postgres`](crate) | PostgreSQL |
//! | `redis` | [`redis`](crate) | Redis |
//! | `s3` | [`s3`](crate) | Amazon S3 and S3-compatible object stores |
//! | `azure` | [`azure`](crate) | Azure Blob Storage |
//!
//! The default features compile no networked store.
#![deny(missing_docs)]

pub use mux_core::*;

/// The local-directory backend (feature `fs`).
#[cfg(feature = "fs")]
pub use mux_fs as fs;

/// The embedded redb backend (feature `redb`).
#[cfg(feature = "redb")]
pub use mux_redb as redb;

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub use mux_postgres as postgres;

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
pub use mux_redis as redis;

/// The S3 backend (feature `s3`).
#[cfg(feature = "s3")]
pub use mux_s3 as s3;

/// The Azure Blob Storage backend (feature `azure`).
#[cfg(feature = "azure")]
pub use mux_azure as azure;
