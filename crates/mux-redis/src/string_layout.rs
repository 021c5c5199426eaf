//! A record kept as one Redis string at `<namespace>:r:<key>` (the default
//! [`crate::Layout`]): its metadata as one line of JSON, a newline, then the value.
//!
//! ```text
//! {"version":"0000018c2f3a1b2c-00000000-00000001","tombstone":false,"checksum":907060870}
//! hello
//! ```
//!
//! The JSON is the metadata the hash layout keeps in `m` (the envelope header's form
//! without the key), so its first member is the version: the scripts read it with
//! `GETRANGE 0 63`. A read is one `GET`, the value a slice of the reply; a listing reads
//! the first [`LIST_HEAD`] bytes and the length, and the whole string only when its
//! metadata is longer (many or long tags).

use std::io::Write as _;

use bytes::Bytes;
use mux_core::{Error, ErrorKind, Key, Metadata, Record, Result};

/// How many bytes of a string a listing reads (`GETRANGE 0 LIST_HEAD-1`).
pub(crate) const LIST_HEAD: usize = 1024;

/// The string a put stores for a record, written into the command.
pub(crate) struct RecordString<'a>(pub(crate) &'a Record);

impl redis::ToRedisArgs for RecordString<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let mut w = out.writer_for_next_arg();
        serde_json::to_writer(&mut w, self.0.meta()).expect("metadata serialises");
        // Writing into the command's Vec cannot fail.
        let _ = w.write_all(b"\n");
        let _ = w.write_all(self.0.value());
    }
}

/// The string a put stores for `record` (tests and the fuzz target's seeds).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode(record: &Record) -> Vec<u8> {
    let mut out = serde_json::to_vec(record.meta()).expect("metadata serialises");
    out.push(b'\n');
    out.extend_from_slice(record.value());
    out
}

/// The record a string holds; its value is a slice of `bytes`, not a copy.
pub(crate) fn decode(key: Key, bytes: Vec<u8>) -> Result<Record> {
    let Some(line) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(corrupt(&key, "has no metadata line"));
    };
    let meta = metadata(&key, &bytes[..line])?;
    let value = Bytes::from(bytes).slice(line + 1..);
    Record::from_parts(key, value, meta)
}

/// What a listing learns from the first bytes of a string (`head`) and its length.
#[derive(Debug)]
pub(crate) enum Listed {
    /// The record's metadata and the size of its value.
    Entry(Metadata, u64),
    /// The metadata goes on past `head`: read the whole string.
    Longer,
    /// No such string (removed since the index was read).
    Gone,
}

/// See [`Listed`].
pub(crate) fn listed(key: &Key, head: &[u8], len: u64) -> Result<Listed> {
    if head.is_empty() && len == 0 {
        return Ok(Listed::Gone);
    }
    match head.iter().position(|&b| b == b'\n') {
        Some(line) => Ok(Listed::Entry(
            metadata(key, &head[..line])?,
            len.saturating_sub(line as u64 + 1),
        )),
        None if (head.len() as u64) < len => Ok(Listed::Longer),
        None => Err(corrupt(key, "has no metadata line")),
    }
}

fn metadata(key: &Key, line: &[u8]) -> Result<Metadata> {
    serde_json::from_slice(line).map_err(|e| corrupt(key, &format!("has invalid metadata: {e}")))
}

fn corrupt(key: &Key, what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("record {key}: its Redis string {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::Version;

    fn key() -> Key {
        Key::new("a/b").unwrap()
    }

    #[test]
    fn a_record_reads_back_from_its_string() {
        let record = Record::new(key(), "hello\nworld", Version::new(5, 1, 2))
            .with_content_type("text/plain")
            .with_tag("class", "pii");
        assert_eq!(decode(key(), encode(&record)).unwrap(), record);
        let tombstone = Record::tombstone(key(), Version::new(6, 0, 1));
        assert_eq!(decode(key(), encode(&tombstone)).unwrap(), tombstone);
    }

    /// The scripts find the version at a fixed place: the JSON's first member.
    #[test]
    fn the_version_leads_the_string() {
        let record = Record::new(key(), "x", Version::new(5, 1, 2)).with_tag("a", "b");
        let text = encode(&record);
        let start = format!("{{\"version\":\"{}\"", record.version());
        assert!(text.starts_with(start.as_bytes()));
        assert!(start.len() <= 64, "within the scripts' GETRANGE 0 63");
    }

    #[test]
    fn a_listing_reads_the_head() {
        let record = Record::new(key(), "hello", Version::new(5, 0, 1)).with_tag("a", "b");
        let text = encode(&record);
        let len = text.len() as u64;
        match listed(&key(), &text, len).unwrap() {
            Listed::Entry(meta, size) => assert_eq!((&meta, size), (record.meta(), 5)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            listed(&key(), &text[..10], len).unwrap(),
            Listed::Longer
        ));
        assert!(matches!(listed(&key(), b"", 0).unwrap(), Listed::Gone));
        let err = listed(&key(), b"{}", 2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    }

    #[test]
    fn damage_is_corrupt_not_a_panic() {
        let record = Record::new(key(), "hello", Version::new(5, 0, 1));
        let mut text = encode(&record);
        *text.last_mut().unwrap() = b'p';
        assert_eq!(decode(key(), text).unwrap_err().kind(), ErrorKind::Corrupt);
        for bad in [&b"no newline"[..], b"{not json\nvalue", b""] {
            let err = decode(key(), bad.to_vec()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            assert!(err.message().contains("a/b"), "{err}");
        }
    }
}
