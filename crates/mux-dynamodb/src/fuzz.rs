//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API. An item is given as named attributes, each value's
//! first byte naming its type: `S` string, `N` number, `B` binary, `t`/`f` boolean,
//! `M` a map of strings (as a JSON object); anything else is NULL.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use mux_core::{Record, Result};

use crate::layout::{decode, encode, s};

/// The attributes a put stores for `record` (a seed for the fuzzer).
pub fn stored(record: &Record) -> Vec<(String, Vec<u8>)> {
    encode(record, 1)
        .into_iter()
        .map(|(name, value)| {
            let bytes = match value {
                AttributeValue::S(text) => [b"S", text.as_bytes()].concat(),
                AttributeValue::N(number) => [b"N", number.as_bytes()].concat(),
                AttributeValue::B(blob) => [b"B", blob.as_ref()].concat(),
                AttributeValue::Bool(b) => if b { b"t" } else { b"f" }.to_vec(),
                AttributeValue::M(map) => {
                    let strings: BTreeMap<String, String> = map
                        .into_iter()
                        .filter_map(|(n, v)| v.as_s().ok().map(|v| (n, v.clone())))
                        .collect();
                    [
                        b"M".to_vec(),
                        serde_json::to_vec(&strings).expect("strings"),
                    ]
                    .concat()
                }
                _ => b"0".to_vec(),
            };
            (name, bytes)
        })
        .collect()
}

/// Decodes an item as a read does.
pub fn decode_item(fields: &[(String, Vec<u8>)]) -> Result<Record> {
    let item: HashMap<String, AttributeValue> = fields
        .iter()
        .map(|(name, bytes)| {
            let rest = bytes.get(1..).unwrap_or_default();
            let text = || String::from_utf8_lossy(rest).into_owned();
            let value = match bytes.first() {
                Some(b'S') => s(text()),
                Some(b'N') => AttributeValue::N(text()),
                Some(b'B') => AttributeValue::B(Blob::new(rest.to_vec())),
                Some(b't') => AttributeValue::Bool(true),
                Some(b'f') => AttributeValue::Bool(false),
                Some(b'M') => match serde_json::from_slice::<BTreeMap<String, String>>(rest) {
                    Ok(map) => AttributeValue::M(map.into_iter().map(|(n, v)| (n, s(v))).collect()),
                    Err(_) => AttributeValue::Null(true),
                },
                _ => AttributeValue::Null(true),
            };
            (name.clone(), value)
        })
        .collect();
    decode(item)
}
