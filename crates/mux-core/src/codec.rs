//! The envelope format: a record as plain bytes at rest.
//!
//! Stores that keep a record as one blob (a file, an embedded table row) use this
//! layout so the data stays readable without mux:
//!
//! ```text
//! {"key":"a/b","version":"0000018c2f3a1b2c-00000000-00000001","checksum":907060870}\n
//! <the value's bytes, exactly>
//! ```
//!
//! The first line is one JSON object (the key plus [`Metadata`]); everything after the
//! first `\n` is the value. `head -n 1 FILE` shows the metadata, `tail -c +N FILE` the
//! value.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::record::{Metadata, Record};

#[derive(Serialize)]
struct HeaderRef<'a> {
    key: &'a Key,
    #[serde(flatten)]
    meta: &'a Metadata,
}

#[derive(Deserialize)]
struct Header {
    key: Key,
    #[serde(flatten)]
    meta: Metadata,
}

/// Encodes a record as a JSON header line followed by the raw value.
pub fn encode(record: &Record) -> Vec<u8> {
    let header = HeaderRef {
        key: record.key(),
        meta: record.meta(),
    };
    let mut out = serde_json::to_vec(&header).expect("a record header always serialises");
    out.reserve_exact(1 + record.value().len());
    out.push(b'\n');
    out.extend_from_slice(record.value());
    out
}

/// Decodes only the header: the key and the metadata, not the value.
pub fn decode_header(bytes: &[u8]) -> Result<(Key, Metadata, usize)> {
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            "stored record has no header line (expected JSON, a newline, then the value)",
        )
    })?;
    let header: Header = serde_json::from_slice(&bytes[..newline]).map_err(|e| {
        Error::new(ErrorKind::Corrupt, "stored record header is not valid").with_source(e)
    })?;
    Ok((header.key, header.meta, newline + 1))
}

/// Decodes a full record and verifies its checksum.
pub fn decode(bytes: Bytes) -> Result<Record> {
    let (key, meta, start) = decode_header(&bytes)?;
    Record::from_parts(key, bytes.slice(start..), meta)
}

/// Metadata as name/value pairs for stores that keep a value as an object with
/// user metadata (S3 `x-amz-meta-*`, Azure `x-ms-meta-*`).
///
/// Names are lowercase with underscores (valid in both stores; Azure requires C#
/// identifiers); values are ASCII, as HTTP headers require:
///
/// | name | value |
/// |---|---|
/// | `mux_version` | the version, `0000018c2f3a1b2c-00000000-00000001` (hex, sorts as text) |
/// | `mux_tombstone` | `true` on a tombstone; absent otherwise |
/// | `mux_crc32` | CRC-32 (IEEE) of the value, 8 lowercase hex digits |
/// | `mux_content_type` | the record's content type; absent when it has none |
/// | `mux_tags` | the tags as a JSON object, non-ASCII escaped as `\uXXXX`; absent when none |
///
/// Stores should also send the content type as the object's own `Content-Type` (for
/// browsers and tools), `application/octet-stream` when the record has none: the stores
/// fill in a default when none is sent, so only `mux_content_type` tells "none" apart.
pub mod fields {
    use std::collections::BTreeMap;

    use crate::error::{Error, ErrorKind, Result};
    use crate::record::Metadata;

    /// The version field.
    pub const VERSION: &str = "mux_version";
    /// The tombstone flag field.
    pub const TOMBSTONE: &str = "mux_tombstone";
    /// The checksum field.
    pub const CHECKSUM: &str = "mux_crc32";
    /// The content type field.
    pub const CONTENT_TYPE: &str = "mux_content_type";
    /// The tags field.
    pub const TAGS: &str = "mux_tags";
    /// The `Content-Type` to send for a record without one.
    pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

    /// The metadata as `(name, value)` pairs, every value ASCII.
    ///
    /// Fails with `InvalidInput` when the content type is not printable ASCII (it must
    /// fit in an HTTP header).
    pub fn encode(meta: &Metadata) -> Result<Vec<(&'static str, String)>> {
        let mut out = vec![
            (VERSION, meta.version.to_string()),
            (CHECKSUM, format!("{:08x}", meta.checksum)),
        ];
        if meta.tombstone {
            out.push((TOMBSTONE, "true".to_owned()));
        }
        if let Some(ct) = &meta.content_type {
            if !ct.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::invalid_input(format!(
                    "content type {ct:?} is not printable ASCII"
                )));
            }
            out.push((CONTENT_TYPE, ct.clone()));
        }
        if !meta.tags.is_empty() {
            let json = serde_json::to_string(&meta.tags).expect("string tags serialise");
            out.push((TAGS, ascii_json(&json)));
        }
        Ok(out)
    }

    /// Rebuilds metadata from the stored pairs (`get` looks a name up, case-insensitively
    /// where the store folds case).
    pub fn decode<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Metadata> {
        let corrupt = |what: String| Error::new(ErrorKind::Corrupt, what);
        let version = get(VERSION)
            .ok_or_else(|| corrupt(format!("object has no {VERSION} metadata")))?
            .parse()
            .map_err(|e: Error| corrupt(format!("bad {VERSION} metadata: {}", e.message())))?;
        let checksum_text =
            get(CHECKSUM).ok_or_else(|| corrupt(format!("object has no {CHECKSUM} metadata")))?;
        let checksum = u32::from_str_radix(checksum_text, 16)
            .map_err(|_| corrupt(format!("bad {CHECKSUM} metadata {checksum_text:?}")))?;
        let tombstone = match get(TOMBSTONE) {
            None => false,
            Some(t) if t.eq_ignore_ascii_case("true") => true,
            Some(t) if t.eq_ignore_ascii_case("false") => false,
            Some(t) => return Err(corrupt(format!("bad {TOMBSTONE} metadata {t:?}"))),
        };
        let tags: BTreeMap<String, String> = match get(TAGS) {
            None => BTreeMap::new(),
            Some(t) => {
                serde_json::from_str(t).map_err(|e| corrupt(format!("bad {TAGS} metadata: {e}")))?
            }
        };
        let content_type = get(CONTENT_TYPE).map(str::to_owned);
        Ok(Metadata {
            version,
            tombstone,
            content_type,
            tags,
            checksum,
        })
    }

    /// The encoded size of the pairs as the stores count it (names plus values).
    pub fn size(pairs: &[(&'static str, String)]) -> usize {
        pairs.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    /// JSON text with every non-ASCII character written as `\uXXXX` (UTF-16 units).
    fn ascii_json(json: &str) -> String {
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    #[test]
    fn round_trips_and_is_readable() {
        let r = Record::new(
            Key::new("a/b").unwrap(),
            &b"line1\nline2\x00\xff"[..],
            Version::new(1, 2, 3),
        )
        .with_content_type("text/plain")
        .with_tag("class", "pii");
        let bytes = encode(&r);
        let first_line = bytes.split(|b| *b == b'\n').next().unwrap();
        let text = std::str::from_utf8(first_line).unwrap();
        assert!(text.contains("\"key\":\"a/b\""), "{text}");
        assert!(
            text.contains("\"version\":\"0000000000000001-00000002-00000003\""),
            "{text}"
        );
        assert_eq!(decode(Bytes::from(bytes)).unwrap(), r);
    }

    #[test]
    fn fields_round_trip_in_ascii() {
        let r = Record::new(Key::new("a").unwrap(), &b"v"[..], Version::new(5, 0, 1))
            .with_content_type("text/plain")
            .with_tag("city", "Zürich 🏔")
            .with_tag("class", "pii");
        let pairs = fields::encode(r.meta()).unwrap();
        assert!(pairs.iter().all(|(_, v)| v.is_ascii()), "{pairs:?}");
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        let meta = fields::decode(get).unwrap();
        assert_eq!(meta.tags, r.meta().tags);
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert_eq!(meta.version, r.meta().version);
        assert_eq!(meta.checksum, r.meta().checksum);
        assert!(!meta.tombstone);
        let t = Record::tombstone(Key::new("a").unwrap(), Version::new(6, 0, 1));
        let pairs = fields::encode(t.meta()).unwrap();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(fields::decode(get).unwrap().tombstone);
        let err = fields::decode(|_| None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("mux_version"), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            decode(Bytes::from_static(b"no header")).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            decode(Bytes::from_static(b"{}\nvalue")).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
}
