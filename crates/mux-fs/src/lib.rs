//! # mux-fs
//!
//! A mux [`Backend`] on a local directory. No server is needed, which makes it (with
//! `mux-redb`) the embedded default of mux.
//!
//! ## Layout
//! ```text
//! <root>/.mux.lock                 held (flock) while a backend has the directory open
//! <root>/data/<seg>/<seg>/<last>.rec   one file per record
//! <root>/journal/                   the write-ahead journal (mux-wal segment files)
//! ```
//! The key-to-path mapping is described in [`path`]: readable (`tenants/acme/limits`
//! lives in `data/tenants/acme/limits.rec`), reversible, and no key can escape the
//! root. Each record file is in the envelope format of [`mux_core::codec`]: one JSON line
//! of metadata (key, version, tombstone, content type, tags, checksum), then the raw
//! value. `head -n 1` shows the metadata.
//!
//! ## Writes
//! A write appends the record to the store's write-ahead journal (a mux-wal segment
//! log: one `fdatasync` shared by every writer waiting) and returns once that is
//! durable; in between it reads the stored version and, if the new one is higher,
//! writes a temp file in the same directory and renames it over the record — neither
//! synced on its own. A checkpoint thread (every 200 ms, or after 4,096 writes) syncs
//! the file system with one `syncfs` and only then marks those journal entries complete;
//! opening the store replays every entry not complete, rewriting any record file that
//! is older, missing or torn. So a crash loses nothing acknowledged and leaves no torn
//! record behind once the store is open again. Writers of the same key are serialised
//! by a striped lock, and the directory lock keeps other processes out, so the version
//! check and the write are atomic. A purge checkpoints first and syncs its removal.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mux_core::Error> {
//! use mux_core::{Backend, BackendExt, Clock, Key, Record};
//! use mux_fs::FsBackend;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = FsBackend::open("local", dir.path())?;
//! let key = Key::new("tenantconfig/acme/limits")?;
//! store.put(&Record::new(key.clone(), "max=10", Clock::new(1).now())).await?;
//! assert!(dir.path().join("data/tenantconfig/acme/limits.rec").exists());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod backend;
mod config;
mod error;
mod journal;
pub mod path;

use std::sync::Arc;

pub use backend::FsBackend;
pub use config::{DEFAULT_MAX_VALUE_SIZE, FsConfig};

/// The `kind` of this store in a mux configuration (`kind = "fs"`).
pub const KIND: &str = "fs";

/// What an fs backend named `name` is and can do, known from its config without I/O.
pub fn info(name: &str, config: &FsConfig) -> mux_core::BackendInfo {
    let _ = config;
    mux_core::BackendInfo::new(name, KIND, FsBackend::CAPABILITY)
}

/// Opens the store a configuration describes (the registry's entry point; see
/// `mux::open`).
pub async fn open(name: &str, config: FsConfig) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(FsBackend::open(name, &config.path)?))
}
