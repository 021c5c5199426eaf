//! # mux-mysql
//!
//! A mux [`Backend`](mux_core::Backend) on MariaDB (10.3 and later) and MySQL (8), through
//! mysql_async and its connection pool, with TLS by rustls on ring.
//!
//! ## Layout (readable with the `mariadb` / `mysql` client)
//! One row per record in one table (default `mux_records`):
//!
//! | column | type | |
//! |---|---|---|
//! | `key` | `VARBINARY(1024)` primary key | the key's UTF-8 bytes: byte order, no case, accent or trailing-space folding |
//! | `version` | `BINARY(16)` | the version, big-endian: byte order is version order |
//! | `tombstone` | `BOOLEAN` | |
//! | `content_type` | `VARCHAR(256)` ASCII | `NULL` when none |
//! | `tags` | `JSON` | `{"name": "value", …}` |
//! | `checksum` | `INT UNSIGNED` | CRC-32 of the value |
//! | `value` | `LONGBLOB` | the value, exactly |
//!
//! A conditional write is **one statement**: `INSERT … ON DUPLICATE KEY UPDATE` whose
//! every assignment is guarded by `IF(VALUES(version) > version, new, old)`, with
//! `version` assigned last; the affected-row count (1 inserted, 2 updated, 0 kept) says
//! whether it applied. `put_batch` is a multi-row upsert in one transaction, with
//! per-record outcomes from the versions before and after (see `batch.rs`). Listing is
//! a keyset scan of byte ranges of the primary key.
#![deny(missing_docs)]

mod backend;
mod batch;
mod config;
mod error;
mod schema;
mod sql;
mod tls;

use std::sync::Arc;

pub use backend::{DEFAULT_MAX_VALUE_SIZE, MysqlBackend, ROW_OVERHEAD};
pub use config::{MysqlConfig, TlsMode};
pub use schema::SCHEMA_VERSION;

/// The `kind` of this store in a mux configuration (`kind = "mysql"`).
pub const KIND: &str = "mysql";

/// What a MariaDB/MySQL backend named `name` is and can do, known from its config
/// without connecting. `max_value_size` assumes MariaDB's default `max_allowed_packet`
/// (16 MiB); once connected, the backend declares what its server allows.
pub fn info(name: &str, config: &MysqlConfig) -> mux_core::BackendInfo {
    let _ = config;
    mux_core::BackendInfo::new(name, KIND, MysqlBackend::capability(DEFAULT_MAX_VALUE_SIZE))
}

/// Connects to the database a configuration describes (the registry's entry point; see
/// `mux::open`).
pub async fn open(name: &str, config: MysqlConfig) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(MysqlBackend::connect(name, config).await?))
}

/// What the crate's own tests need from its inside: the conditional write's statement
/// (to prove its assignment order matters) and the error mapping (to classify real
/// server errors). Not part of the stable API.
#[doc(hidden)]
pub mod testing {
    /// The one-row conditional upsert this crate runs on `table`.
    pub fn upsert_statement(table: &str) -> String {
        crate::sql::upsert(table, 1)
    }

    /// A mysql_async error as this crate reports it.
    pub fn map_error(e: mysql_async::Error) -> mux_core::Error {
        crate::error::map_err(e)
    }
}
