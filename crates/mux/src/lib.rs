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
//! | `mysql` | [`mysql`](crate) | MariaDB and MySQL |
//! | `scylla` | [`scylla`](crate) | ScyllaDB and Apache Cassandra (CQL) |
//! | `influx` | [`influx`](crate) | InfluxDB 1.x (a point per version: history, as-of reads) |
//! | `redis` | [`redis`](crate) | Redis |
//! | `s3` | [`s3`](crate) | Amazon S3 and S3-compatible object stores |
//! | `azure` | [`azure`](crate) | Azure Blob Storage |
//! | `dynamodb` | [`dynamodb`](crate) | Amazon DynamoDB (and ScyllaDB Alternator) |
//! | `ssm` | [`ssm`](crate) | AWS Systems Manager Parameter Store |
//!
//! `encrypt` adds [`encrypt`](crate) (encryption at rest: `mux-encrypt`), `kms` its
//! AWS KMS key provider.
//!
//! The default features compile no networked store.
//!
//! ## Opening stores from configuration
//! [`open`] builds any compiled-in store from a [`BackendSpec`] (`name`, `kind` and the
//! store's own fields, from TOML or code); see the [`registry`] module. A store that is
//! unreachable at start opens as a [`Deferred`](deferred::Deferred) backend that
//! connects in the background, so only configuration errors stop a start.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> mux::Result<()> {
//! use mux::Backend;
//!
//! let spec: mux::BackendSpec = toml::from_str("name = \"cache\"\nkind = \"memory\"").unwrap();
//! let store = mux::open(&spec).await?;
//! assert_eq!(store.info().name.as_ref(), "cache");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub use mux_core::*;

pub mod feed;
pub mod registry;

pub use feed::{FEED_KINDS, FeedSpec};
pub use registry::{BackendSpec, KINDS, check_all, enabled_kinds, open, open_all, open_with};

/// The local-directory backend (feature `fs`).
#[cfg(feature = "fs")]
pub use mux_fs as fs;

/// The embedded redb backend (feature `redb`).
#[cfg(feature = "redb")]
pub use mux_redb as redb;

/// Encryption at rest (feature `encrypt`; AWS KMS keys with `kms`).
#[cfg(feature = "encrypt")]
pub use mux_encrypt as encrypt;

/// The durable intent log in segment files with group commit (feature `wal`).
#[cfg(feature = "wal")]
pub use mux_wal as wal;

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub use mux_postgres as postgres;

/// The MariaDB/MySQL backend (feature `mysql`).
#[cfg(feature = "mysql")]
pub use mux_mysql as mysql;

/// The InfluxDB 1.x backend (feature `influx`).
#[cfg(feature = "influx")]
pub use mux_influx as influx;
/// The ScyllaDB/Cassandra backend (feature `scylla`).
#[cfg(feature = "scylla")]
pub use mux_scylla as scylla;

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
pub use mux_redis as redis;

/// The S3 backend (feature `s3`).
#[cfg(feature = "s3")]
pub use mux_s3 as s3;

/// The Azure Blob Storage backend (feature `azure`).
#[cfg(feature = "azure")]
pub use mux_azure as azure;

/// The DynamoDB backend (feature `dynamodb`).
#[cfg(feature = "dynamodb")]
pub use mux_dynamodb as dynamodb;
/// The AWS Systems Manager Parameter Store backend (feature `ssm`).
#[cfg(feature = "ssm")]
pub use mux_ssm as ssm;
