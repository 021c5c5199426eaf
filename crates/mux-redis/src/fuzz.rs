//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API.

use mux_core::{Key, Record, Result};

use crate::RedisBackend;
use crate::backend::{FIELDS, Fields};

/// The hash fields the put script stores for `record` (a seed for the fuzzer).
pub fn stored(record: &Record) -> Vec<(String, Vec<u8>)> {
    let meta = record.meta();
    let mut out = vec![
        ("v".to_owned(), meta.version.to_string().into_bytes()),
        (
            "t".to_owned(),
            if meta.tombstone { "1" } else { "0" }.into(),
        ),
        (
            "tags".to_owned(),
            serde_json::to_vec(&meta.tags).expect("string tags serialise"),
        ),
        ("crc".to_owned(), meta.checksum.to_string().into_bytes()),
        ("val".to_owned(), record.value().to_vec()),
    ];
    if let Some(ct) = &meta.content_type {
        out.push(("ct".to_owned(), ct.clone().into_bytes()));
    }
    out
}

/// Decodes a record's hash as a read does.
pub fn decode(key: Key, fields: &[(String, Vec<u8>)]) -> Result<Record> {
    let mut read: Fields = Default::default();
    for (name, value) in fields {
        if let Some(i) = FIELDS.iter().position(|f| f == name) {
            read[i] = Some(value.clone());
        }
    }
    RedisBackend::decode(key, read)
}
