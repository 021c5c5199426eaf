//! The export format, version 1: JSON lines, UTF-8, one JSON object per line.
//!
//! ```text
//! {"mux_export":1,"prefix":"app/","as_of":null,"exported_at_ms":1764757200000}
//! {"key":"app/a","meta":{"version":"0000019ae1f3c2a0-00000000-00000001","checksum":3964322768,"tags":{"class":"pii"}},"value":"aGVsbG8="}
//! {"key":"app/b","meta":{"version":"0000019ae1f3c2a1-00000000-00000001","tombstone":true,"checksum":0},"value":""}
//! {"end":true,"records":2}
//! ```
//!
//! - The **header** names the format version (`mux_export`; a reader refuses versions
//!   it does not know), the prefix, the as-of bound if any, and when it was written.
//! - Each **record** line holds the key, the metadata exactly as mux keeps it (the
//!   version in its text form, the tombstone flag, content type, tags and the value's
//!   CRC-32) and the value in standard base64 — values are bytes, not text.
//! - The **end** line counts the records: a file without it was cut short, and an
//!   import says so (after importing what it holds, which is safe).
//!
//! Records come in key order, tombstones included, so an import reproduces deletions.

use base64::Engine as _;
use mux_core::{Error, Key, Metadata, Record, Result, Version};
use serde::{Deserialize, Serialize};

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The format version.
    pub mux_export: u32,
    /// The prefix exported.
    pub prefix: String,
    /// The as-of bound, if the export was taken as of a version.
    pub as_of: Option<Version>,
    /// When the export was written (Unix milliseconds).
    pub exported_at_ms: u64,
}

/// A record line.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RecordLine {
    key: String,
    meta: Metadata,
    value: String,
}

/// The last line.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct End {
    end: bool,
    records: u64,
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// The header.
    Header(Header),
    /// A record.
    Record(Record),
    /// The end line and its record count.
    End(u64),
}

/// The header line (without its newline).
pub fn header_line(header: &Header) -> String {
    serde_json::to_string(header).unwrap_or_default()
}

/// A record's line (without its newline).
pub fn record_line(record: &Record) -> String {
    let line = RecordLine {
        key: record.key().as_str().to_owned(),
        meta: record.meta().clone(),
        value: base64::engine::general_purpose::STANDARD.encode(record.value()),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// The end line (without its newline).
pub fn end_line(records: u64) -> String {
    serde_json::to_string(&End { end: true, records }).unwrap_or_default()
}

/// Parses line `number` (1-based, for the error) of an export.
pub fn parse_line(text: &str, number: u64) -> Result<Line> {
    let bad = |what: String| Error::invalid_input(format!("export line {number}: {what}"));
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
    if value.get("mux_export").is_some() {
        let header: Header =
            serde_json::from_value(value).map_err(|e| bad(format!("a bad header ({e})")))?;
        if header.mux_export != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is not supported (this mux reads version {FORMAT_VERSION}): import it with the mux that wrote it",
                header.mux_export
            )));
        }
        return Ok(Line::Header(header));
    }
    if let Some(error) = value.get("error") {
        return Err(bad(format!(
            "the export was cut short at its source by an error: {}",
            error["message"].as_str().unwrap_or("(no message)")
        )));
    }
    if value.get("end").is_some() {
        let end: End =
            serde_json::from_value(value).map_err(|e| bad(format!("a bad end line ({e})")))?;
        return Ok(Line::End(end.records));
    }
    let line: RecordLine =
        serde_json::from_value(value).map_err(|e| bad(format!("a bad record ({e})")))?;
    let key = Key::new(&line.key).map_err(|e| bad(e.to_string()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line.value.as_bytes())
        .map_err(|e| bad(format!("the value of {key} is not base64 ({e})")))?;
    let record =
        Record::from_parts(key, bytes.into(), line.meta).map_err(|e| bad(e.to_string()))?;
    Ok(Line::Record(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_line_round_trips_exactly() {
        let r = Record::new(
            Key::new("a/b").unwrap(),
            vec![0u8, 255, 10],
            Version::new(7, 1, 2),
        )
        .with_tag("class", "pii")
        .with_content_type("application/octet-stream");
        let line = record_line(&r);
        assert!(!line.contains('\n'));
        assert_eq!(parse_line(&line, 2).unwrap(), Line::Record(r));
        let t = Record::tombstone(Key::new("a/c").unwrap(), Version::new(9, 0, 1));
        assert_eq!(parse_line(&record_line(&t), 3).unwrap(), Line::Record(t));
    }

    #[test]
    fn bad_lines_name_the_line_and_the_problem() {
        let err = parse_line("{nope", 4).unwrap_err().to_string();
        assert!(err.contains("line 4") && err.contains("not JSON"), "{err}");
        let future = r#"{"mux_export":9,"prefix":"","as_of":null,"exported_at_ms":0}"#;
        let err = parse_line(future, 1).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
        let r = Record::new(Key::new("a").unwrap(), "v", Version::new(1, 0, 1));
        let tampered = record_line(&r).replace("\"dg==\"", "\"dw==\"");
        let err = parse_line(&tampered, 5).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }
}
