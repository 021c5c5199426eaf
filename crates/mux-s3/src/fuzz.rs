//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API.

use std::collections::HashMap;

use mux_core::{Bytes, Key, Record, Result};

use crate::layout::{body, decode_meta, encode_meta};

/// The field holding the object's body; the others are its user metadata.
pub const BODY: &str = "body";

/// The user metadata and body S3 stores for `record` (a seed for the fuzzer).
pub fn stored(record: &Record) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = encode_meta(record)?
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.into_bytes()))
        .collect();
    out.push((BODY.to_owned(), body(record).to_vec()));
    Ok(out)
}

/// Decodes an object (its metadata as S3 returns it, lowercased or not, and its body)
/// as a read does.
pub fn decode(key: Key, fields: &[(String, Vec<u8>)]) -> Result<Record> {
    let metadata: HashMap<String, String> = fields
        .iter()
        .filter(|(name, _)| name != BODY)
        .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    let meta = decode_meta(Some(&metadata), key.as_str())?;
    let value = match fields.iter().find(|(name, _)| name == BODY) {
        Some((_, body)) if !meta.tombstone => Bytes::copy_from_slice(body),
        _ => Bytes::new(),
    };
    Record::from_parts(key, value, meta)
}
