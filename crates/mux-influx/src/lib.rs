//! # mux-influx
//!
//! A mux [`Backend`](mux_core::Backend) on InfluxDB 1.x, through its HTTP API (`/write`,
//! `/query`, `/ping`) with reqwest (rustls on ring). Every write is kept: the store is a
//! version history, with as-of reads.
//!
//! ## Layout (readable with the `influx` CLI)
//! One point per applied version in one measurement (default `mux_records`) of one
//! database (default `mux`):
//!
//! | part | name | |
//! |---|---|---|
//! | tag | `key` | the key, as it is (each key is one series) |
//! | field | `value` | the value: itself when it is UTF-8, else standard base64 |
//! | field | `encoding` | `"utf-8"` or `"base64"` |
//! | field | `version` | the mux version in its text form (`0000018c2f3a1b2c-00000000-00000001`) |
//! | field | `tombstone` | boolean |
//! | field | `size`, `checksum` | integers: the value's length and CRC-32 |
//! | field | `content_type` | string, absent when none |
//! | field | `tags` | string: the record's tags as a JSON object |
//! | time | | the version's physical milliseconds, plus a nanosecond slot unique per version in that millisecond |
//!
//! Two points of one series at one time overwrite each other, so each version gets a
//! slot of its own: `(logical % 1000) * 1000 + node % 1000` nanoseconds into its
//! millisecond, moved to the next free slot when taken. The newest record is the point
//! with the **highest mux version** — read as whole milliseconds, newest first, and
//! compared on the `version` field — never InfluxDB's `LAST()`.
//!
//! InfluxDB has no conditional write: `put` reads the newest version first and answers
//! `Superseded` when it is not lower, else writes a point. Two writers racing on one key
//! may both write; the higher version still wins every read, and the lower one stays in
//! the history (see the README).
#![deny(missing_docs)]

mod backend;
mod batch;
mod config;
mod error;
mod influxql;
mod line;

use std::sync::Arc;

pub use backend::{InfluxBackend, MAX_FIELD_BYTES, MAX_VALUE_SIZE};
pub use config::InfluxConfig;

/// The `kind` of this store in a mux configuration (`kind = "influx"`).
pub const KIND: &str = "influx";

/// What an InfluxDB backend named `name` is and can do, known without connecting.
pub fn info(name: &str, config: &InfluxConfig) -> mux_core::BackendInfo {
    let _ = config;
    mux_core::BackendInfo::new(name, KIND, InfluxBackend::capability())
}

/// Connects to the server a configuration describes (the registry's entry point; see
/// `mux::open`).
pub async fn open(
    name: &str,
    config: InfluxConfig,
) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(InfluxBackend::connect(name, config).await?))
}

/// What the crate's own tests need from its inside: the escaping and the point format.
/// Not part of the stable API.
#[doc(hidden)]
pub mod testing {
    /// A record's point at `time`, as `put` writes it.
    pub fn point(measurement: &str, record: &mux_core::Record, time: i64) -> String {
        crate::line::point(measurement, record, time).expect("a representable key")
    }

    /// An InfluxQL string literal.
    pub fn string_literal(value: &str) -> String {
        crate::influxql::string(value)
    }
}
