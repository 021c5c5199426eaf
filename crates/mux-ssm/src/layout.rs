//! How a record maps to a parameter version: the value, and the description that
//! carries mux's metadata.
//!
//! The parameter value is the record's value as text whenever it can be: UTF-8, not
//! empty, without `{{` (SSM refuses values that look like references to other
//! parameters). Otherwise the description says how to read it (`mux_encoding`):
//! `base64` (standard alphabet, padded) for any other bytes, `empty` for an empty
//! value, whose parameter value is the placeholder `(empty)` because SSM refuses empty
//! values. A tombstone's value is the placeholder `(deleted)`.
//!
//! The description is one JSON object of strings: the `mux_core::codec::fields` pairs
//! (`mux_version`, `mux_crc32`, `mux_tombstone`, `mux_content_type`, `mux_tags`) plus
//! `mux_size` (the value's length in bytes, for listings, which see only descriptions)
//! and `mux_encoding` when the value is not stored as text. SSM allows 1024 characters.

use std::collections::BTreeMap;

use aws_smithy_types::base64;
use bytes::Bytes;
use mux_core::codec::fields;
use mux_core::{Error, ErrorKind, Key, Metadata, Record, Result};

/// SSM's limit on a parameter description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// The description field naming the value's encoding (absent: text).
const ENCODING: &str = "mux_encoding";
/// The description field holding the value's length in bytes.
const SIZE: &str = "mux_size";
/// The parameter value of an empty record value.
pub(crate) const EMPTY_VALUE: &str = "(empty)";
/// The parameter value of a tombstone.
pub(crate) const TOMBSTONE_VALUE: &str = "(deleted)";

/// How a value is written as parameter text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Text,
    Base64,
    Empty,
}

impl Encoding {
    fn name(self) -> Option<&'static str> {
        match self {
            Encoding::Text => None,
            Encoding::Base64 => Some("base64"),
            Encoding::Empty => Some("empty"),
        }
    }
}

/// A record as SSM stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// The parameter value.
    pub(crate) value: String,
    /// The parameter description (mux's metadata).
    pub(crate) description: String,
}

/// The record's value and description, refused with `TooLarge` naming SSM's limit when
/// either does not fit (`value_limit`: the tier's limit in bytes).
pub(crate) fn encode(record: &Record, value_limit: usize) -> Result<Encoded> {
    let raw = record.value();
    let (value, encoding) = if record.is_tombstone() {
        (TOMBSTONE_VALUE.to_owned(), Encoding::Text)
    } else if raw.is_empty() {
        (EMPTY_VALUE.to_owned(), Encoding::Empty)
    } else {
        match std::str::from_utf8(raw) {
            Ok(text) if !text.contains("{{") => (text.to_owned(), Encoding::Text),
            _ => (base64::encode(raw), Encoding::Base64),
        }
    };
    if value.len() > value_limit {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "record {}: its value takes {} bytes as a parameter value{}, and SSM allows \
                 {value_limit} in this tier",
                record.key(),
                value.len(),
                if encoding == Encoding::Base64 {
                    " (in base64, as it is not UTF-8 text)"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut pairs: BTreeMap<&str, String> = fields::encode(record.meta())?.into_iter().collect();
    pairs.insert(SIZE, raw.len().to_string());
    if let Some(name) = encoding.name() {
        pairs.insert(ENCODING, name.to_owned());
    }
    let description = serde_json::to_string(&pairs).expect("string pairs serialise");
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_LEN {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "record {}: its metadata takes {chars} characters as the parameter's \
                 description, SSM allows {MAX_DESCRIPTION_LEN} (fewer or shorter tags, or a \
                 shorter content type)",
                record.key()
            ),
        ));
    }
    Ok(Encoded { value, description })
}

/// What a description says about a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Described {
    /// The record's metadata.
    pub(crate) meta: Metadata,
    /// The value's length in bytes.
    pub(crate) size: u64,
    encoding: Encoding,
}

/// Reads a description; `Ok(None)` when it is not mux's (absent, not a JSON object of
/// strings, or without `mux_version`: a parameter written by another tool), `Corrupt`
/// when it is mux's but malformed. `name` locates errors.
pub(crate) fn describe(description: Option<&str>, name: &str) -> Result<Option<Described>> {
    let Some(pairs) = description
        .and_then(|d| serde_json::from_str::<BTreeMap<String, String>>(d).ok())
        .filter(|p| p.contains_key(fields::VERSION))
    else {
        return Ok(None);
    };
    let corrupt = |what: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("parameter {name}: the mux metadata in its description is bad: {what}"),
        )
    };
    let meta = fields::decode(|n| pairs.get(n).map(String::as_str))
        .map_err(|e| corrupt(e.message().to_owned()))?;
    let size = match pairs.get(SIZE) {
        Some(s) => s
            .parse()
            .map_err(|_| corrupt(format!("{SIZE} {s:?} is not a number")))?,
        None => return Err(corrupt(format!("{SIZE} is missing"))),
    };
    let encoding = match pairs.get(ENCODING).map(String::as_str) {
        None => Encoding::Text,
        Some("base64") => Encoding::Base64,
        Some("empty") => Encoding::Empty,
        Some(other) => return Err(corrupt(format!("unknown {ENCODING} {other:?}"))),
    };
    Ok(Some(Described {
        meta,
        size,
        encoding,
    }))
}

/// `describe`, failing with `Corrupt` ("not a mux record") for foreign descriptions.
pub(crate) fn describe_mux(description: Option<&str>, name: &str) -> Result<Described> {
    describe(description, name)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "parameter {name} is not a mux record: its description carries no mux \
                 metadata (written by another tool?); purge it or write the key through mux"
            ),
        )
    })
}

impl Described {
    /// The record of this version, its value read from the parameter value and checked
    /// against the size and checksum (`Corrupt` naming the parameter when they differ,
    /// e.g. after an edit outside mux).
    pub(crate) fn record(self, key: Key, value: &str, name: &str) -> Result<Record> {
        let corrupt = |what: String| {
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "parameter {name}: {what} (was it changed outside mux? write the key \
                     again through mux, or purge it)"
                ),
            )
        };
        let bytes = if self.meta.tombstone {
            Bytes::new()
        } else {
            match self.encoding {
                Encoding::Text => Bytes::copy_from_slice(value.as_bytes()),
                Encoding::Empty => Bytes::new(),
                Encoding::Base64 => Bytes::from(base64::decode(value).map_err(|_| {
                    corrupt("its value is not the base64 its description says".into())
                })?),
            }
        };
        if bytes.len() as u64 != self.size {
            return Err(corrupt(format!(
                "its value is {} bytes, its description says {}",
                bytes.len(),
                self.size
            )));
        }
        Record::from_parts(key, bytes, self.meta).map_err(|e| corrupt(e.message().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::Version;

    fn key() -> Key {
        Key::new("paramconfig/acme/limits").unwrap()
    }

    fn round_trip(record: &Record) -> Encoded {
        let enc = encode(record, 4096).unwrap();
        let got = describe_mux(Some(&enc.description), "/p")
            .unwrap()
            .record(key(), &enc.value, "/p")
            .unwrap();
        assert_eq!(&got, record);
        enc
    }

    #[test]
    fn text_is_stored_as_it_is() {
        let r = Record::new(key(), r#"{"rps":100}"#, Version::new(1, 2, 3))
            .with_content_type("application/json")
            .with_tag("city", "Zürich");
        let enc = round_trip(&r);
        assert_eq!(enc.value, r#"{"rps":100}"#);
        let d: BTreeMap<String, String> = serde_json::from_str(&enc.description).unwrap();
        assert_eq!(d["mux_version"], Version::new(1, 2, 3).to_string());
        assert_eq!(d["mux_size"], "11");
        assert_eq!(d["mux_content_type"], "application/json");
        assert!(!d.contains_key("mux_encoding"));
        assert!(enc.description.is_ascii(), "{}", enc.description);
    }

    #[test]
    fn other_values_say_how_they_are_stored() {
        let binary = Record::new(
            key(),
            (0..=255u8).collect::<Vec<u8>>(),
            Version::new(1, 0, 1),
        );
        let enc = round_trip(&binary);
        assert!(enc.description.contains(r#""mux_encoding":"base64""#));
        let nested = Record::new(key(), "{{ssm:other}}", Version::new(1, 0, 1));
        assert_eq!(round_trip(&nested).value, "e3tzc206b3RoZXJ9fQ==");
        let empty = Record::new(key(), "", Version::new(1, 0, 1));
        assert_eq!(round_trip(&empty).value, EMPTY_VALUE);
        let tombstone = Record::tombstone(key(), Version::new(2, 0, 1));
        let enc = round_trip(&tombstone);
        assert_eq!(enc.value, TOMBSTONE_VALUE);
        let d = describe_mux(Some(&enc.description), "/p").unwrap();
        assert_eq!((d.size, d.meta.tombstone), (0, true));
    }

    #[test]
    fn limits_are_named() {
        let err = encode(
            &Record::new(key(), vec![0xffu8; 3073], Version::new(1, 0, 1)),
            4096,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert!(
            err.to_string().contains("base64") && err.to_string().contains("4096"),
            "{err}"
        );
        assert!(
            encode(
                &Record::new(key(), vec![0xffu8; 3072], Version::new(1, 0, 1)),
                4096
            )
            .is_ok()
        );
        let mut tagged = Record::new(key(), "x", Version::new(1, 0, 1));
        for i in 0..20 {
            tagged = tagged.with_tag(format!("tag{i}"), "v".repeat(60));
        }
        let err = encode(&tagged, 4096).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert!(err.to_string().contains("1024"), "{err}");
    }

    #[test]
    fn foreign_and_damaged_versions_are_told_apart() {
        assert_eq!(describe(None, "/p").unwrap(), None);
        assert_eq!(describe(Some("database password"), "/p").unwrap(), None);
        assert_eq!(describe(Some(r#"{"owner":"ops"}"#), "/p").unwrap(), None);
        let err = describe(Some(r#"{"mux_version":"zz"}"#), "/p").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        let err = describe_mux(Some("x"), "/p").unwrap_err();
        assert!(err.to_string().contains("not a mux record"), "{err}");
        // An edit of the value outside mux fails its checksum.
        let enc = encode(&Record::new(key(), "one", Version::new(1, 0, 1)), 4096).unwrap();
        let err = describe_mux(Some(&enc.description), "/p")
            .unwrap()
            .record(key(), "two", "/p")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("outside mux"), "{err}");
    }
}
