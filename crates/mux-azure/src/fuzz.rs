//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API.

use mux_core::{Bytes, Key, Record, Result};

use crate::layout::{decode_meta, encode_meta};

/// The field holding the blob's body; the others are its metadata.
pub const BODY: &str = "body";

/// The metadata and body Azure stores for `record` (a seed for the fuzzer).
pub fn stored(record: &Record) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = encode_meta(record)?
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    out.push((BODY.to_owned(), record.value().to_vec()));
    Ok(out)
}

/// Decodes a blob (its metadata and body) as a read does.
pub fn decode(key: Key, fields: &[(String, Vec<u8>)]) -> Result<Record> {
    let metadata = fields
        .iter()
        .filter(|(name, _)| name != BODY)
        .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    let meta = decode_meta(key.as_str(), metadata)?;
    let value = fields
        .iter()
        .find(|(name, _)| name == BODY)
        .map(|(_, body)| Bytes::copy_from_slice(body))
        .unwrap_or_default();
    Record::from_parts(key, value, meta)
}
