//! # mux-scylla
//!
//! A mux [`Backend`](mux_core::Backend) on ScyllaDB and Apache Cassandra over CQL,
//! through the `scylla` driver: prepared statements, token-aware and (optionally)
//! datacenter-aware load balancing, configurable consistency levels.
//!
//! **Not run against a live cluster here**: the machines this crate was built on have
//! no CQL server and no Docker engine. Its tests run the backend over an in-memory model
//! of its statements ([`testing::Model`]), and the conformance suite against a real
//! cluster when one is reachable (`MUX_SCYLLA_NODES`, or testcontainers); see the README.
//!
//! ## Layout (readable with `cqlsh`)
//! One row per record in one table (default `mux.mux_records`):
//!
//! ```sql
//! CREATE TABLE mux.mux_records (
//!     partition_key text,      -- the key's first `partition_depth` segments
//!     key text,                -- the full key; clustering column: byte order
//!     version text,            -- fixed-width text form: text order = version order
//!     tombstone boolean,
//!     content_type text,
//!     tags frozen<map<text, text>>,
//!     checksum bigint,         -- CRC-32 of the value
//!     size bigint,             -- the value's length (listings skip the value)
//!     value blob,
//!     PRIMARY KEY ((partition_key), key)
//! ) WITH CLUSTERING ORDER BY (key ASC);
//! ```
//!
//! A conditional write is a lightweight transaction: `INSERT … IF NOT EXISTS`, then, if
//! a lower version is stored, `UPDATE … IF version < ?`; a refused transaction returns
//! the stored version (`Superseded { stored }`). Tombstones are rows with
//! `tombstone = true`; `purge` is `DELETE … IF version <= ?`. Listing merges the
//! partitions of a prefix in byte order (see `listing.rs` and the README).
#![deny(missing_docs)]

mod backend;
mod config;
mod cql;
mod error;
mod layout;
mod listing;
mod schema;
mod session;
mod tls;

use std::sync::Arc;

pub use backend::ScyllaBackend;
pub use config::{ConsistencyLevel, ScyllaConfig, SerialLevel, TlsMode};
pub use layout::{INDEX_PARTITION, MAX_PARTITION_DEPTH, partition_of};
pub use schema::{SCHEMA_VERSION, check_identifier, create_keyspace, create_table};

/// The `kind` of this store in a mux configuration (`kind = "scylla"`).
pub const KIND: &str = "scylla";

/// The largest value this backend accepts, and the default `max_value_size`: 1 MiB.
/// A value is one cell; ScyllaDB warns about cells and rows over 1 MiB
/// (`compaction_large_cell_warning_threshold_mb`, `compaction_large_row_warning_threshold_mb`)
/// and large cells hurt latency and compaction, and Cassandra's guidance is the same
/// order; the protocol itself allows far more (256 MiB frames).
pub const MAX_VALUE_SIZE: usize = 1 << 20;

/// What a ScyllaDB backend named `name` is and can do, known from its config without
/// connecting.
pub fn info(name: &str, config: &ScyllaConfig) -> mux_core::BackendInfo {
    mux_core::BackendInfo::new(
        name,
        KIND,
        ScyllaBackend::capability(config.max_value_size.min(MAX_VALUE_SIZE)),
    )
    .with_label("table", format!("{}.{}", config.keyspace, config.table))
}

/// Connects to the cluster a configuration describes (the registry's entry point; see
/// `mux::open`).
pub async fn open(
    name: &str,
    config: ScyllaConfig,
) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(ScyllaBackend::connect(name, config).await?))
}

/// The statement layer, for tests: the in-memory model of the statements, a backend
/// over it, and the CQL text. Not part of the stable API.
#[doc(hidden)]
pub mod testing {
    use std::sync::Arc;

    pub use crate::cql::{Cql, Lwt, Model, Scan};
    pub use crate::layout::Row;
    pub use crate::schema::{RangeShape, Statements};

    /// A backend named `name` over `cql` (e.g. a [`Model`]), laid out as `config` says.
    pub fn backend(
        name: &str,
        config: crate::ScyllaConfig,
        cql: Arc<dyn Cql>,
    ) -> crate::ScyllaBackend {
        crate::ScyllaBackend::with_cql(name, config, cql)
    }
}
