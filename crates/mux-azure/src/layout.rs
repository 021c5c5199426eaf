//! How a record's metadata is kept as blob metadata (`x-ms-meta-*`), in the layout of
//! [`mux_core::codec::fields`] shared with the S3 backend.

use std::collections::HashMap;

use mux_core::codec::fields;
use mux_core::{Error, ErrorKind, Metadata, Record, Result};

/// Azure's limit on the metadata of one blob (names plus values).
const MAX_METADATA_BYTES: usize = 8 << 10;

/// The blob metadata of a record, refused with `TooLarge` when Azure cannot hold it.
pub(crate) fn encode_meta(record: &Record) -> Result<HashMap<String, String>> {
    let key = record.key();
    let pairs = fields::encode(record.meta()).map_err(|e| e.context(key))?;
    let metadata_size = fields::size(&pairs);
    if metadata_size > MAX_METADATA_BYTES {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{key}: the metadata (tags included) is {metadata_size} bytes, Azure allows {MAX_METADATA_BYTES}"
            ),
        ));
    }
    Ok(pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect())
}

/// Whether blob metadata has any `mux_` field: blobs without are not mux's (written by
/// another tool into the container) and are left out of listings.
pub(crate) fn has_mux_metadata(metadata: &HashMap<String, String>) -> bool {
    metadata.keys().any(|name| {
        name.as_bytes()
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"mux_"))
    })
}

/// Rebuilds metadata from blob metadata (names compared case-insensitively).
pub(crate) fn decode_meta(key: &str, metadata: HashMap<String, String>) -> Result<Metadata> {
    let lower: HashMap<String, String> = metadata
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    fields::decode(|name| lower.get(name).map(String::as_str))
        .map_err(|e| e.context(format!("blob of {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::{Key, Version};

    #[test]
    fn recognises_mux_metadata() {
        let meta = |names: &[&str]| -> HashMap<String, String> {
            names.iter().map(|n| (n.to_string(), "x".into())).collect()
        };
        assert!(has_mux_metadata(&meta(&["mux_version"])));
        assert!(has_mux_metadata(&meta(&["other", "MUX_CRC32"])));
        assert!(!has_mux_metadata(&meta(&[])));
        assert!(!has_mux_metadata(&meta(&["owner", "mux", "é"])));
    }

    #[test]
    fn decodes_metadata_case_insensitively() {
        let record = Record::new(Key::new("a").unwrap(), "v", Version::new(3, 0, 1))
            .with_tag("class", "pii")
            .with_content_type("text/plain");
        let stored: HashMap<String, String> = fields::encode(record.meta())
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_uppercase(), v))
            .collect();
        assert_eq!(&decode_meta("a", stored).unwrap(), record.meta());
        let err = decode_meta("a", HashMap::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().starts_with("blob of a: "), "{err}");
    }
}
