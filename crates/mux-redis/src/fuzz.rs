//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API.

use mux_core::{Key, Record, Result};

use crate::layout::{self, FIELDS, Fields};

/// The hash fields the put script of the hash layout stores for `record` (a seed for the fuzzer).
pub fn stored(record: &Record) -> Vec<(String, Vec<u8>)> {
    layout::stored(record)
}

/// Decodes a record's hash as a read does: from `m` when it holds `v`'s version, else
/// from the earlier layout's fields.
pub fn decode(key: Key, fields: &[(String, Vec<u8>)]) -> Result<Record> {
    let mut read: Fields = Default::default();
    for (name, value) in fields {
        if let Some(i) = FIELDS.iter().position(|f| f == name) {
            read[i] = Some(value.clone());
        }
    }
    layout::decode(key, read)
}

/// The string a put stores for `record` in the string layout (a seed for the fuzzer).
pub fn stored_string(record: &Record) -> Vec<u8> {
    crate::string_layout::encode(record)
}

/// Decodes a record's string as a read does.
pub fn decode_string(key: Key, bytes: &[u8]) -> Result<Record> {
    crate::string_layout::decode(key, bytes.to_vec())
}
