//! # mux-redis
//!
//! A mux [`Backend`] on Redis, through one multiplexed connection that reconnects by
//! itself (`redis::aio::ConnectionManager`).
//!
//! ## Layout (readable with `redis-cli`)
//! - one hash per record at `<namespace>:r:<key>` with fields `v` (the version, fixed-width
//!   hex, so it compares as text), `m` (the metadata as one JSON object: version,
//!   tombstone, checksum, content type and tags) and `val` (the value); hashes in the
//!   earlier six-field layout are read as well and rewritten by their next write;
//! - one sorted set `<namespace>:idx` holding every key with score 0, so keys list in
//!   byte order with `ZRANGEBYLEX` (never `SCAN`).
//!
//! ```text
//! $ redis-cli HGETALL mux:r:tenantconfig/acme/limits
//! $ redis-cli ZRANGEBYLEX mux:idx "[tenantconfig/" "+" LIMIT 0 10
//! ```
//!
//! Writes run a Lua script that compares the stored version and writes the hash and the
//! index entry only if the new version is higher: atomic on the server. `put_batch`
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

use std::sync::Arc;

pub use backend::RedisBackend;
pub use config::{DEFAULT_MAX_VALUE_SIZE, RedisConfig};
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
