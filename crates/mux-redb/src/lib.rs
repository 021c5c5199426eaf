//! # mux-redb
//!
//! A mux [`Backend`] on [redb](https://docs.rs/redb), an embedded, transactional,
//! crash-safe key-value store in one file. No server is needed, which makes it (with
//! `mux-fs`) the embedded default of mux.
//!
//! Layout: one table, `mux_records`, key = the mux key as a string, value = the record
//! in the envelope format of [`mux_core::codec`] (a JSON metadata line, `\n`, then the
//! raw value). Every conditional write runs in one write transaction, so the version
//! check and the write are atomic; `put_batch` commits a whole batch in one transaction.
//! Concurrent single puts and deletes are group-committed: those arriving while a
//! commit is in flight share the next transaction and its one fsync (each still gets
//! its own outcome), so the file's fsync rate no longer caps the write rate.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mux_core::Error> {
//! use mux_core::{Backend, BackendExt, Clock, Key, Record};
//! use mux_redb::RedbBackend;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = RedbBackend::open("local", dir.path().join("mux.redb"))?;
//! let key = Key::new("paramconfig/site/a")?;
//! store.put(&Record::new(key.clone(), "hello", Clock::new(1).now())).await?;
//! assert_eq!(store.get_live(&key).await?.unwrap().value(), "hello".as_bytes());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod backend;
mod blocks;
mod config;
mod error;
mod group;
mod intent_log;

use std::sync::Arc;

pub use backend::{RedbBackend, TABLE};
pub use config::{DEFAULT_MAX_VALUE_SIZE, RedbConfig};
pub use intent_log::RedbIntentLog;

/// The `kind` of this store in a mux configuration (`kind = "redb"`).
pub const KIND: &str = "redb";

/// What a redb backend named `name` is and can do, known from its config without I/O.
pub fn info(name: &str, config: &RedbConfig) -> mux_core::BackendInfo {
    let mut capability = RedbBackend::CAPABILITY;
    capability.max_value_size = Some(config.max_value_size);
    mux_core::BackendInfo::new(name, KIND, capability)
}

/// Opens the database a configuration describes (the registry's entry point; see
/// `mux::open`).
pub async fn open(name: &str, config: RedbConfig) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    let backend = RedbBackend::open(name, &config.path)?.with_max_value_size(config.max_value_size);
    Ok(Arc::new(backend))
}
