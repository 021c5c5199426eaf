//! The line protocol: a record as one point, with the escaping each part needs.
//!
//! ```text
//! mux_records,key=tenantconfig/acme/limits value="max=10",encoding="utf-8",version="0000018c2f3a1b2c-00000000-00000001",tombstone=false,size=6i,checksum=2764436127i,tags="{}" 1702000000000001001
//! ```

use base64::Engine;
use mux_core::{Error, Record, Result, Version};

/// The field `encoding` of a value stored as it is (valid UTF-8).
pub(crate) const UTF8: &str = "utf-8";
/// The field `encoding` of a value that is not UTF-8, stored as standard base64.
pub(crate) const BASE64: &str = "base64";

/// Nanoseconds per millisecond: a version's physical milliseconds are the point's
/// time; the 10⁶ nanoseconds of that millisecond are slots for its versions.
pub(crate) const NS_PER_MS: i64 = 1_000_000;

/// A measurement name: `,` and space escaped (names from the config never hold more).
pub(crate) fn escape_measurement(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, ',' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A tag value (the key): `,`, `=` and space escaped.
///
/// InfluxDB 1.x reads a backslash as escaping the next byte and unescapes only `\,`,
/// `\=` and `\ `, so a key with an odd run of backslashes right before one of those
/// characters, or at its end, has no spelling in the line protocol: it is refused.
pub(crate) fn escape_tag(value: &str) -> Result<String> {
    let mut out = String::with_capacity(value.len() + 8);
    let mut backslashes = 0usize;
    for c in value.chars() {
        let special = matches!(c, ',' | '=' | ' ');
        if special && backslashes % 2 == 1 {
            return Err(unrepresentable(value));
        }
        if special {
            out.push('\\');
        }
        out.push(c);
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
    }
    if backslashes % 2 == 1 {
        return Err(unrepresentable(value));
    }
    Ok(out)
}

fn unrepresentable(key: &str) -> Error {
    Error::invalid_input(format!(
        "the key {key:?} cannot be an InfluxDB tag value: an odd number of backslashes \
         before ',', '=', ' ' or at the end has no line-protocol spelling"
    ))
}

/// A string field's body (without its quotes): `\` and `"` escaped.
pub(crate) fn escape_field(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The first nanosecond slot tried for `version` within its millisecond: unique for
/// logical counters and node ids below 1000, which covers the versions of one key in
/// one millisecond in practice; a taken slot moves the write to the next free one.
pub(crate) fn first_slot(version: Version) -> i64 {
    i64::from(version.logical() % 1000) * 1000 + i64::from(version.node() % 1000)
}

/// The start of `version`'s millisecond in nanoseconds since the epoch; versions past
/// the year 2262 do not fit InfluxDB's timestamps.
pub(crate) fn millis_ns(ms: u64) -> Result<i64> {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_mul(NS_PER_MS))
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "a version at {ms} ms is beyond InfluxDB's timestamps (the year 2262)"
            ))
        })
}

/// A free slot for `version` given the times already taken in its millisecond.
pub(crate) fn timestamp(version: Version, taken: &[i64]) -> Result<i64> {
    let base = millis_ns(version.physical_ms())?;
    let first = first_slot(version);
    (0..NS_PER_MS)
        .map(|i| base + (first + i) % NS_PER_MS)
        .find(|t| !taken.contains(t))
        .ok_or_else(|| {
            Error::new(
                mux_core::ErrorKind::Overloaded,
                "every nanosecond slot of this millisecond is taken",
            )
        })
}

/// The stored form of a value: itself when UTF-8, else base64; and its encoding.
pub(crate) fn encode_value(value: &[u8]) -> (std::borrow::Cow<'_, str>, &'static str) {
    match std::str::from_utf8(value) {
        Ok(s) => (s.into(), UTF8),
        Err(_) => (
            base64::engine::general_purpose::STANDARD
                .encode(value)
                .into(),
            BASE64,
        ),
    }
}

/// One point for `record` at `time` (nanoseconds).
pub(crate) fn point(measurement: &str, record: &Record, time: i64) -> Result<String> {
    let meta = record.meta();
    let (value, encoding) = encode_value(record.value());
    let mut line = String::with_capacity(value.len() + 256);
    line.push_str(&escape_measurement(measurement));
    line.push_str(",key=");
    line.push_str(&escape_tag(record.key().as_str())?);
    line.push_str(" value=\"");
    line.push_str(&escape_field(&value));
    line.push_str("\",encoding=\"");
    line.push_str(encoding);
    line.push_str("\",version=\"");
    line.push_str(&meta.version.to_string());
    line.push_str("\",tombstone=");
    line.push_str(if meta.tombstone { "true" } else { "false" });
    line.push_str(&format!(
        ",size={}i,checksum={}i",
        record.value().len(),
        meta.checksum
    ));
    if let Some(ct) = &meta.content_type {
        line.push_str(",content_type=\"");
        line.push_str(&escape_field(ct));
        line.push('"');
    }
    let tags = serde_json::to_string(&meta.tags).expect("tags serialise");
    line.push_str(",tags=\"");
    line.push_str(&escape_field(&tags));
    line.push_str(&format!("\" {time}\n"));
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::Key;

    #[test]
    fn measurements_and_tags_are_escaped() {
        assert_eq!(escape_measurement("a,b c"), "a\\,b\\ c");
        assert_eq!(escape_tag("a b,c=d").unwrap(), "a\\ b\\,c\\=d");
        // A backslash before an ordinary character, or an even run, stays as it is.
        assert_eq!(escape_tag("a\\b").unwrap(), "a\\b");
        assert_eq!(escape_tag("a\\\\,b").unwrap(), "a\\\\\\,b");
        assert_eq!(escape_tag("x\\\\").unwrap(), "x\\\\");
        // An odd run before a special character or at the end cannot be written.
        for bad in ["x\\", "a\\,b", "a\\ b", "a\\=b", "a\\\\\\"] {
            let e = escape_tag(bad).unwrap_err();
            assert!(e.message().contains("backslashes"), "{bad:?}: {e}");
        }
        // No newline or quote can end the line or the field early.
        assert_eq!(escape_field("a\"b\\c\nd"), "a\\\"b\\\\c\nd");
    }

    #[test]
    fn a_point_carries_the_documented_fields() {
        let key = Key::new("t/a b").unwrap();
        let v = Version::new(1_700_000_000_000, 3, 7);
        let r = Record::new(key.clone(), "x\"y", v)
            .with_content_type("text/plain")
            .with_tag("class", "pii");
        let line = point("mux_records", &r, 5).unwrap();
        assert_eq!(
            line,
            format!(
                "mux_records,key=t/a\\ b value=\"x\\\"y\",encoding=\"utf-8\",version=\"{v}\",tombstone=false,size=3i,checksum={}i,content_type=\"text/plain\",tags=\"{{\\\"class\\\":\\\"pii\\\"}}\" 5\n",
                r.meta().checksum
            )
        );
        let bin = Record::new(key, vec![0xffu8, 0, 1], v);
        assert!(
            point("m", &bin, 5)
                .unwrap()
                .contains("value=\"/wAB\",encoding=\"base64\"")
        );
    }

    #[test]
    fn timestamps_are_unique_per_version_within_a_millisecond() {
        let v = Version::new(2, 5, 9);
        assert_eq!(timestamp(v, &[]).unwrap(), 2_005_009);
        assert_eq!(timestamp(v, &[2_005_009]).unwrap(), 2_005_010);
        let last = Version::new(2, 999, 999);
        assert_eq!(timestamp(last, &[2_999_999]).unwrap(), 2_000_000);
        assert_ne!(
            timestamp(Version::new(2, 0, 1), &[]).unwrap(),
            timestamp(Version::new(2, 1, 1), &[]).unwrap()
        );
        assert!(millis_ns(u64::MAX).is_err());
    }
}
