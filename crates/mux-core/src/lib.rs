//! # mux-core
//!
//! The thin core of mux: the record model ([`Key`], [`Version`], [`Record`]), the
//! [`Backend`] trait every store implements, its [`Capability`] declaration, the one
//! [`Error`] type, and the in-memory [`MemoryBackend`].
//!
//! Every record carries a [`Version`] from a hybrid logical [`Clock`]. A backend applies
//! a write or a tombstone only when its version is higher than the stored one, so
//! retries, replays and repairs are idempotent and every replica converges to the
//! highest version.
//!
//! ```
//! use mux_core::{Backend, BackendExt, Clock, Key, MemoryBackend, PutOutcome, Record};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mux_core::Error> {
//! let store = MemoryBackend::new("mem");
//! let clock = Clock::new(1);
//! let key = Key::new("tenantconfig/acme/limits")?;
//!
//! let first = clock.now();
//! let second = clock.now();
//! assert_eq!(store.put(&Record::new(key.clone(), "v2", second)).await?, PutOutcome::Applied);
//! // An older version arriving late never replaces a newer one.
//! assert!(store.put(&Record::new(key.clone(), "v1", first)).await?.is_superseded());
//! assert_eq!(store.get_live(&key).await?.unwrap().value(), "v2".as_bytes());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod backend;
pub mod batcher;
mod capability;
pub mod codec;
mod coordinator;
pub mod deferred;
pub mod digest;
mod error;
pub mod feed;
mod history;
mod key;
mod memory;
pub mod partitioned;
mod record;
pub mod resilience;
pub mod seal;
mod tenant;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tls;
mod version;

pub use backend::{
    Backend, BackendExt, BackendInfo, DEFAULT_LIST_LIMIT, ListEntry, ListPage, ListRequest,
    MAX_LIST_LIMIT, PutOutcome, digest_by_listing,
};
pub use capability::Capability;
pub use coordinator::{
    BackendWrite, CacheConfig, CacheStats, Durability, EraseReport, HealthReport, Mux, MuxBackend,
    MuxBuilder, MuxConfig, MuxStats, RESERVED_ROOT, RESIDENCY_TAG, ReadOptions, ReadPolicy,
    ResealPage, ResilienceConfig, ResilienceStack, Role, RouteConfig, RouteTarget, Staleness,
    StoreErasure, WriteConsistency, WriteOptions, WriteOutcome, WriteReport, is_reserved,
};
pub use error::{Error, ErrorKind, Operation, Result};
pub use feed::{ChangeEvent, ChangeFeed, ChangeKind, FeedEvent, MemoryFeed, Position};
pub use history::{AsOf, DEFAULT_HISTORY_LIMIT, HistoryPage, HistoryRequest, MAX_HISTORY_LIMIT};
pub use key::{Key, MAX_KEY_LEN, Prefix};
pub use memory::MemoryBackend;
pub use record::{
    MAX_CONTENT_TYPE_LEN, MAX_TAG_NAME_LEN, MAX_TAG_VALUE_LEN, MAX_TAGS, Metadata, Record,
};
pub use resilience::{DeadLetter, IntentLog, IntentLogStats, MemoryIntentLog, PendingIntent};
pub use tenant::{TENANTS_ROOT, Tenant};
pub use tls::TlsMode;
pub use version::{Clock, Version};

/// Re-exported so that implementors of [`Backend`] use the same macro version.
pub use async_trait::async_trait;
/// Re-exported: record values are [`bytes::Bytes`].
pub use bytes::Bytes;
