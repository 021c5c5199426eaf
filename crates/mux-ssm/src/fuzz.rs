//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API. A parameter is given as two fields, `description`
//! and `value`.

use mux_core::{Key, Record, Result};

use crate::layout::{describe_mux, encode};

/// The description and value a put stores for `record` (a seed for the fuzzer).
pub fn stored(record: &Record) -> Result<Vec<(String, Vec<u8>)>> {
    let encoded = encode(record, usize::MAX)?;
    Ok(vec![
        ("description".to_owned(), encoded.description.into_bytes()),
        ("value".to_owned(), encoded.value.into_bytes()),
    ])
}

/// Decodes a parameter as a read does.
pub fn decode(key: Key, fields: &[(String, Vec<u8>)]) -> Result<Record> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let described = describe_mux(field("description").as_deref(), "/fuzz")?;
    described.record(key, &field("value").unwrap_or_default(), "/fuzz")
}
