//! # mux-redis
//!
//! A mux [`Backend`] on Redis, through one multiplexed connection that reconnects by
//! itself (`redis::aio::ConnectionManager`).
//!
//! ## Layout (readable with `redis-cli`)
//! - one string per record at `<namespace>:r:<key>`: the metadata as one line of JSON
//!   (version first, tombstone, checksum, content type and tags), a newline, then the
//!   value. A read is one `GET`;
//! - or, with `layout = "hash"` ([`Layout::Hash`], for a rolling upgrade from a mux that
//!   wrote hashes), one hash per record with fields `v` (the version, fixed-width hex,
//!   so it compares as text), `m` (the same JSON) and `val` (the value). Both layouts,
//!   and the earlier six-field hash, are always read; a write converts a record to the
//!   configured layout;
//! - one sorted set `<namespace>:idx` holding every key with score 0, so keys list in
//!   byte order with `ZRANGEBYLEX` (never `SCAN`).
//!
//! ```text
//! $ redis-cli GET mux:r:tenantconfig/acme/limits
//! $ redis-cli ZRANGEBYLEX mux:idx "[tenantconfig/" "+" LIMIT 0 10
//! ```
//!
//! Writes run a Lua script that compares the stored version and writes the record and
//! the index entry only if the new version is higher: atomic on the server. `put_batch`
//! sends one pipeline (one round trip).
//!
//! [`RedisFeed`] is a `mux_core::ChangeFeed` on a Redis Stream (see [`RedisFeedConfig`]).
#![deny(missing_docs)]

mod backend;
mod config;
mod conn;
mod error;
mod feed;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod layout;
mod scripts;
mod string_layout;

use std::sync::Arc;

pub use backend::RedisBackend;
pub use config::{DEFAULT_MAX_VALUE_SIZE, Layout, RedisConfig};
pub use feed::{PREV_FIELD, RedisFeed, RedisFeedConfig};

/// The `kind` of this store in a mux configuration (`kind = "redis"`).
pub const KIND: &str = "redis";

/// What a Redis backend named `name` is and can do, known from its config without
/// connecting.
pub fn info(name: &str, config: &RedisConfig) -> mux_core::BackendInfo {
    let _ = config;
    mux_core::BackendInfo::new(name, KIND, RedisBackend::CAPABILITY)
}

/// Connects to the Redis a configuration describes (the registry's entry point; see
/// `mux::open`).
pub async fn open(name: &str, config: RedisConfig) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(RedisBackend::connect(name, config).await?))
}
