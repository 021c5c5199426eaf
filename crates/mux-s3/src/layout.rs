//! How a record maps to an object: the body, and the user metadata
//! ([`mux_core::codec::fields`]) S3 keeps beside it.

use std::collections::HashMap;

use bytes::Bytes;
use mux_core::codec::fields;
use mux_core::{Error, ErrorKind, Metadata, Record, Result};

/// S3's limit on user metadata (names plus values), in bytes.
pub const MAX_USER_METADATA: usize = 2048;

/// The user metadata of a record, refused with `TooLarge` when S3 cannot hold it.
pub(crate) fn encode_meta(record: &Record) -> Result<Vec<(&'static str, String)>> {
    let pairs = fields::encode(record.meta())?;
    let size = fields::size(&pairs);
    if size > MAX_USER_METADATA {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "record {}: its metadata takes {size} bytes as S3 user metadata, \
                 S3 allows {MAX_USER_METADATA} (fewer or shorter tags)",
                record.key()
            ),
        ));
    }
    Ok(pairs)
}

/// Rebuilds metadata from S3 user metadata (whose names S3 lowercases).
pub(crate) fn decode_meta(
    metadata: Option<&HashMap<String, String>>,
    object_key: &str,
) -> Result<Metadata> {
    let empty = HashMap::new();
    let metadata = metadata.unwrap_or(&empty);
    fields::decode(|name| {
        metadata
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    })
    .map_err(|e| e.context(format!("object {object_key} is not a mux record")))
}

/// Whether two user-metadata names are the same: S3 lowercases names, and some
/// S3-compatible stores and proxies turn `_` into `-`.
fn same_name(stored: &str, wanted: &str) -> bool {
    stored.len() == wanted.len()
        && stored.bytes().zip(wanted.bytes()).all(|(a, b)| {
            let norm = |c: u8| {
                if c == b'-' {
                    b'_'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(a) == norm(b)
        })
}

/// The object body of a record: the value, byte for byte; for a tombstone, a line
/// naming its version. S3's ETag is a hash of the body, and `If-Match` compares ETags:
/// if every tombstone had the same (empty) body, racing deletes could not be told
/// apart and a lower tombstone could replace a higher one.
pub(crate) fn body(record: &Record) -> Bytes {
    if record.is_tombstone() {
        Bytes::from(format!("mux tombstone {}\n", record.meta().version))
    } else {
        record.value().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::{Key, Version};

    #[test]
    fn names_match_across_case_and_separators() {
        assert!(same_name("mux-version", "mux_version"));
        assert!(same_name("MUX_CRC32", "mux_crc32"));
        assert!(!same_name("mux_versio", "mux_version"));
        let record = Record::new(Key::new("a").unwrap(), "v", Version::new(3, 0, 1))
            .with_tag("class", "pii");
        let stored: HashMap<String, String> = encode_meta(&record)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n.replace('_', "-"), v))
            .collect();
        assert_eq!(&decode_meta(Some(&stored), "o").unwrap(), record.meta());
        let tombstone = Record::tombstone(Key::new("a").unwrap(), Version::new(3, 0, 1));
        assert!(body(&tombstone).starts_with(b"mux tombstone "));
    }
}
