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
