//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API. A row is given as named columns, each as the bytes
//! of its text form (`tombstone` as `t`/`f`, `checksum` as a decimal; `content_type`
//! absent for NULL).

use mux_core::{Bytes, Error, ErrorKind, Key, Record, Result};

use crate::backend::meta_of;

/// The columns a put stores for `record` (a seed for the fuzzer).
pub fn stored(record: &Record) -> Vec<(String, Vec<u8>)> {
    let meta = record.meta();
    let mut out = vec![
        ("value".to_owned(), record.value().to_vec()),
        ("version".to_owned(), meta.version.to_string().into_bytes()),
        (
            "tombstone".to_owned(),
            if meta.tombstone { "t" } else { "f" }.into(),
        ),
        (
            "tags".to_owned(),
            serde_json::to_vec(&meta.tags).expect("string tags serialise"),
        ),
        (
            "checksum".to_owned(),
            meta.checksum.to_string().into_bytes(),
        ),
    ];
    if let Some(ct) = &meta.content_type {
        out.push(("content_type".to_owned(), ct.clone().into_bytes()));
    }
    out
}

/// Decodes a row as a read does. Columns PostgreSQL's types would refuse (text that
/// is not UTF-8, JSON that does not parse, a checksum that is not an integer) are
/// `Corrupt` here rather than impossible.
pub fn decode(key: Key, fields: &[(String, Vec<u8>)]) -> Result<Record> {
    let column = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| &v[..]);
    let bad = |what: &str| Error::new(ErrorKind::Corrupt, format!("column {what}"));
    let text =
        |name: &str| std::str::from_utf8(column(name).unwrap_or_default()).map_err(|_| bad(name));
    let tags = serde_json::from_slice(column("tags").unwrap_or(b"{}")).map_err(|_| bad("tags"))?;
    let checksum = text("checksum")?.parse().map_err(|_| bad("checksum"))?;
    let content_type = match column("content_type") {
        Some(_) => Some(text("content_type")?.to_owned()),
        None => None,
    };
    let meta = meta_of(
        &key,
        text("version")?,
        column("tombstone") == Some(b"t"),
        content_type,
        tags,
        checksum,
    )?;
    let value = Bytes::copy_from_slice(column("value").unwrap_or_default());
    Record::from_parts(key, value, meta)
}
