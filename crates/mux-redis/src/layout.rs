//! How a record is kept in a Redis hash ([`crate::Layout::Hash`]; the default is one
//! string, see [`crate::string_layout`]).
//!
//! A hash `<namespace>:r:<key>` has three fields:
//! - `v`: the version, fixed-width hex, so it compares as text (the scripts compare it);
//! - `m`: the metadata as one JSON object, the same as the first line of mux's record
//!   envelope without the key (`{"version":…,"tombstone":false,"checksum":…}`, plus
//!   `content_type` and `tags` when there are any);
//! - `val`: the value.
//!
//! A read asks for those three (`HMGET`): one reply of three buffers, where the layout
//! before (six fields: `v`, `t`, `ct`, `tags`, `crc`, `val`) made a read parse seven
//! values and a write pass twice the script arguments. Hashes written in that layout are
//! still read: `v` decides. `m` counts only when it holds `v`'s version; otherwise (no
//! `m`, or an older mux wrote the old fields over a newer hash during a rolling upgrade)
//! the read asks again for every field and decodes the old ones; with no old fields, `v`
//! was set by hand and gives the version, `m` the rest. The next write removes the old
//! fields (or turns the hash into a string).

use std::fmt;

use bytes::Bytes;
use mux_core::{Error, ErrorKind, Key, Metadata, Record, Result, Version};
use redis::Value;

use crate::error::map_err;

/// Every field a hash may hold, in the order of [`Fields`]: the three a read asks for
/// first ([`READ`]), then the old layout's metadata.
pub(crate) const FIELDS: [&str; 7] = ["v", "m", "val", "t", "ct", "tags", "crc"];

/// The fields a read asks for: version, metadata, value.
pub(crate) const READ: [&str; 3] = ["v", "m", "val"];

/// The fields a listing asks for: every one but the value.
pub(crate) const LIST: [&str; 6] = ["v", "m", "t", "ct", "tags", "crc"];

/// A hash as read: each field of [`FIELDS`], if the hash has it.
pub(crate) type Fields = [Option<Vec<u8>>; 7];

/// A field's value as a reply holds it.
pub(crate) type Field = Option<Vec<u8>>;

/// A record's metadata as the JSON `m` holds, written into the command.
pub(crate) struct MetaJson<'a>(pub(crate) &'a Metadata);

impl redis::ToRedisArgs for MetaJson<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        serde_json::to_writer(out.writer_for_next_arg(), self.0).expect("metadata serialises");
    }
}

/// The fields a put stores for `record` in the hash layout, as
/// [`crate::scripts::PUT_HASH`] writes them (the fuzz targets' seed).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn stored(record: &Record) -> Vec<(String, Vec<u8>)> {
    let meta = record.meta();
    vec![
        ("v".to_owned(), meta.version.to_string().into_bytes()),
        (
            "m".to_owned(),
            serde_json::to_vec(meta).expect("metadata serialises"),
        ),
        ("val".to_owned(), record.value().to_vec()),
    ]
}

/// The record a hash holds, from every field of [`FIELDS`] (see [`meta`]).
pub(crate) fn decode(key: Key, fields: Fields) -> Result<Record> {
    let [v, m, val, t, ct, tags, crc] = fields;
    let meta = meta(&key, v, m, [t, ct, tags, crc])?;
    Record::from_parts(key, Bytes::from(val.unwrap_or_default()), meta)
}

/// The metadata of a hash from `v`, `m` and the old layout's `t`, `ct`, `tags` and `crc`:
/// - `m` when it holds `v`'s version (every hash this layout wrote);
/// - else the old fields when there are any (a hash of the old layout, or one an older
///   mux wrote over during a rolling upgrade, leaving `m` behind);
/// - else `m` with `v`'s version: `v` was set by hand (`HSET … v …`), and as the scripts
///   compare `v`, it is the version the store holds.
pub(crate) fn meta(key: &Key, v: Field, m: Field, old: [Field; 4]) -> Result<Metadata> {
    match parse_current(key, &v, &m)? {
        Some((meta, version)) if meta.version == version => Ok(meta),
        Some((mut meta, version)) if old.iter().all(Option::is_none) => {
            meta.version = version;
            Ok(meta)
        }
        _ => {
            let [t, ct, tags, crc] = old;
            old_meta(key, [v, t, ct, tags, crc])
        }
    }
}

/// The metadata in `m` when it is there and holds the version `v` names; `None` when
/// [`meta`] must decide from every field.
pub(crate) fn current_meta(key: &Key, v: &Field, m: &Field) -> Result<Option<Metadata>> {
    Ok(parse_current(key, v, m)?
        .and_then(|(meta, version)| (meta.version == version).then_some(meta)))
}

/// `m`'s metadata and `v`'s version, when there is an `m`.
fn parse_current(key: &Key, v: &Field, m: &Field) -> Result<Option<(Metadata, Version)>> {
    let Some(m) = m else { return Ok(None) };
    let version: Version = text(key, "v", v)?
        .parse()
        .map_err(|_| corrupt(key, "version in 'v'"))?;
    let meta: Metadata = serde_json::from_slice(m).map_err(|_| corrupt(key, "metadata in 'm'"))?;
    Ok(Some((meta, version)))
}

/// The metadata of the old layout, from `v`, `t`, `ct`, `tags` and `crc`; every one but
/// `ct` must be there.
fn old_meta(key: &Key, fields: [Field; 5]) -> Result<Metadata> {
    let [v, t, ct, tags, crc] = fields;
    Ok(Metadata {
        version: text(key, "v", &v)?
            .parse()
            .map_err(|_| corrupt(key, "version"))?,
        tombstone: text(key, "t", &t)? == "1",
        content_type: match &ct {
            Some(_) => Some(text(key, "ct", &ct)?.to_owned()),
            None => None,
        },
        tags: serde_json::from_str(text(key, "tags", &tags)?).map_err(|_| corrupt(key, "tags"))?,
        checksum: text(key, "crc", &crc)?
            .parse()
            .map_err(|_| corrupt(key, "checksum"))?,
    })
}

fn corrupt(key: &Key, what: &str) -> Error {
    Error::new(ErrorKind::Corrupt, format!("record {key}: invalid {what}"))
}

/// Field `name` of the hash of `key`, which must be there and be UTF-8.
fn text<'a>(key: &Key, name: &str, raw: &'a Field) -> Result<&'a str> {
    let raw = raw.as_deref().ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key} has no field '{name}'"),
        )
    })?;
    std::str::from_utf8(raw).map_err(|_| {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key}: field '{name}' is not UTF-8"),
        )
    })
}

/// The `N` fields of an `HMGET` from its reply, moved out of it; `None` when the hash
/// does not exist (every field nil).
pub(crate) fn fields_of<const N: usize>(key: &Key, reply: Value) -> Result<Option<[Field; N]>> {
    let unexpected = |what: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key}: unexpected reply to HMGET: {what}"),
        )
    };
    let items = match reply {
        Value::Array(items) => items,
        other => return Err(unexpected(format!("{other:?}"))),
    };
    if items.len() != N {
        return Err(unexpected(format!("{} fields for {N}", items.len())));
    }
    let mut fields: [Field; N] = std::array::from_fn(|_| None);
    for (slot, item) in fields.iter_mut().zip(items) {
        *slot = match item {
            Value::Nil => None,
            Value::BulkString(bytes) => Some(bytes),
            Value::ServerError(e) => return Err(map_err(e.into())),
            other => return Err(unexpected(format!("{other:?}"))),
        };
    }
    Ok(fields.iter().any(Option::is_some).then_some(fields))
}

/// An argument written into a command's buffer as `T`'s text, without a `String` of
/// its own (a read or write names several such).
pub(crate) struct Shown<T>(pub(crate) T);

impl<T: fmt::Display> redis::ToRedisArgs for Shown<T> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        // Writing into the command's Vec cannot fail.
        let _ = write!(out.writer_for_next_arg(), "{}", self.0);
    }
}

/// A record's hash, `{namespace}:r:{key}`.
pub(crate) struct RecordKey<'a>(pub(crate) &'a str, pub(crate) &'a str);

impl fmt::Display for RecordKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:r:{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new("a/b").unwrap()
    }

    fn by_name(pairs: &[(String, Vec<u8>)]) -> Fields {
        FIELDS.map(|f| pairs.iter().find(|(n, _)| n == f).map(|(_, v)| v.clone()))
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_stored_record_decodes_to_itself() {
        let record = Record::new(key(), "hello", Version::new(5, 1, 2))
            .with_content_type("text/plain")
            .with_tag("class", "pii");
        assert_eq!(decode(key(), by_name(&stored(&record))).unwrap(), record);
        let tombstone = Record::tombstone(key(), Version::new(6, 0, 1));
        assert_eq!(
            decode(key(), by_name(&stored(&tombstone))).unwrap(),
            tombstone
        );
    }

    #[test]
    fn the_old_layout_still_reads() {
        let record = Record::new(key(), "hello", Version::new(5, 0, 1)).with_tag("class", "pii");
        let v = record.version().to_string();
        let crc = record.meta().checksum.to_string();
        let old = owned(&[
            ("v", &v),
            ("t", "0"),
            ("ct", "text/plain"),
            ("tags", r#"{"class":"pii"}"#),
            ("crc", &crc),
            ("val", "hello"),
        ]);
        let read = decode(key(), by_name(&old)).unwrap();
        assert_eq!(read.value(), "hello");
        assert_eq!(read.meta().content_type.as_deref(), Some("text/plain"));
        assert_eq!(read.meta().tags, record.meta().tags);
    }

    /// An older mux wrote the old fields over a newer hash: `v` decides, and the stale `m`
    /// is not used.
    #[test]
    fn a_stale_m_gives_way_to_the_old_fields() {
        let first = Record::new(key(), "first", Version::new(5, 0, 1));
        let second = Record::new(key(), "second", Version::new(7, 0, 1));
        let mut fields = by_name(&stored(&first));
        let v = second.version().to_string();
        let crc = second.meta().checksum.to_string();
        let old = by_name(&owned(&[
            ("v", &v),
            ("t", "0"),
            ("tags", "{}"),
            ("crc", &crc),
            ("val", "second"),
        ]));
        for (slot, new) in fields.iter_mut().zip(old) {
            if new.is_some() {
                *slot = new;
            }
        }
        assert_eq!(decode(key(), fields).unwrap(), second);
    }

    /// `v` set back by hand (drift made with Redis commands): `v` is the version, `m` the
    /// rest.
    #[test]
    fn a_version_set_by_hand_in_v_decides() {
        let record = Record::new(key(), "hello", Version::new(5, 0, 1)).with_tag("class", "pii");
        let mut fields = by_name(&stored(&record));
        let older = Version::new(1, 0, 1);
        fields[0] = Some(older.to_string().into_bytes());
        let read = decode(key(), fields).unwrap();
        assert_eq!(read.version(), older);
        assert_eq!(read.value(), "hello");
        assert_eq!(read.meta().tags, record.meta().tags);
    }

    #[test]
    fn damaged_fields_are_corrupt_not_a_panic() {
        let record = Record::new(key(), "hello", Version::new(5, 0, 1));
        let mut fields = by_name(&stored(&record));
        fields[1] = Some(b"{not json".to_vec());
        let err = decode(key(), fields).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.message().contains("'m'"), "{err}");
        let mut fields = by_name(&stored(&record));
        fields[2] = Some(b"hellp".to_vec());
        assert_eq!(
            decode(key(), fields).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
}
