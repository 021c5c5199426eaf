//! # mux-postgres
//!
//! A mux [`Backend`] on PostgreSQL (tokio-postgres with a deadpool pool).
//!
//! ## Layout (readable with `psql`)
//! One table (default `mux_records`):
//!
//! | column | type | |
//! |---|---|---|
//! | `key` | `text COLLATE "C"` primary key | byte order, the order every mux store lists in |
//! | `value` | `bytea` | the value, exactly |
//! | `version` | `text COLLATE "C"` | fixed-width hex: compares like the versions |
//! | `tombstone` | `boolean` | |
//! | `content_type` | `text` | null when none |
//! | `tags` | `jsonb` | |
//! | `checksum` | `bigint` | CRC-32 of the value |
//! | `updated_at` | `timestamptz` | |
//!
//! A conditional write is one statement (`INSERT … ON CONFLICT (key) DO UPDATE … WHERE
//! stored version < new version`). `put_batch` is one round trip (arrays + `unnest`).
//! Concurrent single `put`s are batched transparently: whatever is queued while the pool
//! is busy goes out together, so many callers share round trips.
//!
//! Range digests (`Backend::digest`, for `mux-sync`'s verify) are computed by the server:
//! one aggregate statement hashes each row's key, version and tombstone flag with
//! `sha256` and XORs the hashes with `bit_xor`, so one row per chunk leaves PostgreSQL
//! (PostgreSQL 14 or later; older servers fall back to listing, and the backend then
//! does not declare `Capability::digest`).
//!
//! [`PostgresFeed`] is a durable change feed (`mux_core::ChangeFeed`) in a table of its
//! own; see its module docs for the ordering guarantee.
#![deny(missing_docs)]

mod backend;
mod batcher;
mod config;
mod connect;
mod digest;
mod error;
mod feed;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod intent_log;
mod listen;
mod schema;
mod sql;
mod tls;

use std::sync::Arc;

pub use backend::PostgresBackend;
pub use config::{DEFAULT_MAX_VALUE_SIZE, PostgresConfig, PostgresFeedConfig, TlsMode};
pub use connect::dedicated_connection;
pub use feed::PostgresFeed;
pub use intent_log::PostgresIntentLog;
pub use schema::SCHEMA_VERSION;

/// The `kind` of this store in a mux configuration (`kind = "postgres"`).
pub const KIND: &str = "postgres";

/// What a PostgreSQL backend named `name` is and can do, known from its config without
/// connecting.
pub fn info(name: &str, config: &PostgresConfig) -> mux_core::BackendInfo {
    let _ = config;
    mux_core::BackendInfo::new(name, KIND, PostgresBackend::CAPABILITY)
}

/// Connects to the database a configuration describes (the registry's entry point; see
/// `mux::open`).
pub async fn open(
    name: &str,
    config: PostgresConfig,
) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(PostgresBackend::connect(name, config).await?))
}
