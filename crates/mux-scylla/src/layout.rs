//! The row of a record (the README's *Layout*): partitions, and the mapping between
//! rows and records.

use std::collections::BTreeMap;

use bytes::Bytes;
use mux_core::{Error, ErrorKind, Key, ListEntry, Metadata, Record, Result, Version};

/// The deepest partition key allowed.
pub const MAX_PARTITION_DEPTH: usize = 16;

/// The partition holding the partition index: one row per record partition, its name
/// in `key`. No mux key can name it (keys never start with `/`).
pub const INDEX_PARTITION: &str = "/partitions";

// The partition of a key: mux's partitioned layout, shared with other partitioned
// stores.
pub use mux_core::partitioned::partition_of;

/// A row of the records table as CQL returns it: every column may be null.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// The partition key (column `partition_key`).
    pub partition: String,
    /// The clustering key: the full mux key (or a partition name in the index).
    pub key: String,
    /// The version's fixed-width text form.
    pub version: Option<String>,
    /// Whether the record is a tombstone.
    pub tombstone: Option<bool>,
    /// The content type.
    pub content_type: Option<String>,
    /// The tags (CQL stores an empty map as null).
    pub tags: Option<BTreeMap<String, String>>,
    /// CRC-32 of the value.
    pub checksum: Option<i64>,
    /// The value's length.
    pub size: Option<i64>,
    /// The value (`None` in listings, which do not read it, and on null).
    pub value: Option<Vec<u8>>,
}

impl Row {
    /// The row of `record` in a table partitioned at `depth`.
    pub fn of(record: &Record, depth: usize) -> Row {
        let m = record.meta();
        let key = record.key().as_str();
        Row {
            partition: partition_of(key, depth).to_owned(),
            key: key.to_owned(),
            version: Some(m.version.to_string()),
            tombstone: Some(m.tombstone),
            content_type: m.content_type.clone(),
            tags: (!m.tags.is_empty()).then(|| m.tags.clone()),
            checksum: Some(i64::from(m.checksum)),
            size: Some(record.value().len() as i64),
            value: Some(record.value().to_vec()),
        }
    }

    /// The stored version, which must be there.
    pub fn stored_version(&self) -> Result<Version> {
        match &self.version {
            Some(v) => parse_version(&self.key, v),
            None => Err(corrupt(&self.key, "no version")),
        }
    }

    /// The key, metadata and size of a record row.
    pub fn meta(&self) -> Result<(Key, Metadata, u64)> {
        let key = Key::new(&self.key).map_err(|e| corrupt(&self.key, e.message()))?;
        let checksum = self
            .checksum
            .ok_or_else(|| corrupt(&self.key, "no checksum"))?;
        let checksum = u32::try_from(checksum)
            .map_err(|_| corrupt(&self.key, format_args!("checksum {checksum} out of range")))?;
        let size = match self.size {
            Some(s) => u64::try_from(s).map_err(|_| corrupt(&self.key, "negative size"))?,
            None => return Err(corrupt(&self.key, "no size")),
        };
        let meta = Metadata {
            version: self.stored_version()?,
            tombstone: self.tombstone.unwrap_or(false),
            content_type: self.content_type.clone(),
            tags: self.tags.clone().unwrap_or_default(),
            checksum,
        };
        Ok((key, meta, size))
    }

    /// The listing entry of a record row.
    pub fn entry(&self) -> Result<ListEntry> {
        let (key, meta, size) = self.meta()?;
        Ok(ListEntry { key, meta, size })
    }

    /// The record of a full row (value included; a null value is the empty value),
    /// checking its checksum and size.
    pub fn into_record(self) -> Result<Record> {
        let (key, meta, size) = self.meta()?;
        let value = self.value.unwrap_or_default();
        if value.len() as u64 != size {
            return Err(corrupt(
                key.as_str(),
                format_args!("size {size} stored for a value of {} bytes", value.len()),
            ));
        }
        Record::from_parts(key, Bytes::from(value), meta)
    }
}

/// A stored version's text form as a `Version`.
pub fn parse_version(key: &str, text: &str) -> Result<Version> {
    text.parse::<Version>().map_err(|e| {
        corrupt(
            key,
            format_args!("invalid version {text:?}: {}", e.message()),
        )
    })
}

fn corrupt(key: &str, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Corrupt, format!("record {key}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    #[test]
    fn records_round_trip_through_rows() {
        let v = Version::new(0x18b_cfe5_6800, 3, 7);
        for record in [
            Record::new(key("tenants/acme/limits"), "max=10", v)
                .with_content_type("text/plain")
                .with_tag("class", "pii")
                .with_tag("team", "core"),
            Record::new(key("a"), Bytes::new(), v),
            Record::new(key("bin/x"), vec![0u8, 255, 1, 0, 128], v),
            Record::tombstone(key("a/b/c"), v),
        ] {
            let row = Row::of(&record, 2);
            assert_eq!(
                row.version.as_deref(),
                Some("0000018bcfe56800-00000003-00000007")
            );
            assert_eq!(row.partition, partition_of(record.key().as_str(), 2));
            assert_eq!(row.tags.is_none(), record.meta().tags.is_empty());
            assert_eq!(row.clone().into_record().unwrap(), record);
            let entry = row.entry().unwrap();
            assert_eq!(
                (&entry.key, &entry.meta, entry.size),
                (record.key(), record.meta(), record.value().len() as u64)
            );
        }
    }

    #[test]
    fn a_null_value_is_the_empty_value_and_null_tags_are_none() {
        let mut row = Row::of(&Record::new(key("k"), "", Version::new(1, 0, 0)), 1);
        row.value = None;
        row.tags = None;
        let r = row.into_record().unwrap();
        assert!(r.value().is_empty() && r.meta().tags.is_empty());
        let mut row = Row::of(&Record::tombstone(key("k"), Version::new(1, 0, 0)), 1);
        row.tombstone = None;
        assert!(!row.into_record().unwrap().is_tombstone(), "null is false");
    }

    #[test]
    fn damaged_rows_are_corrupt() {
        let good = Row::of(&Record::new(key("k/x"), "abc", Version::new(1, 0, 0)), 1);
        type Damage = Box<dyn Fn(&mut Row)>;
        let cases: Vec<(&str, Damage)> = vec![
            ("no version", Box::new(|r| r.version = None)),
            (
                "invalid version",
                Box::new(|r| r.version = Some("v1".into())),
            ),
            ("no checksum", Box::new(|r| r.checksum = None)),
            ("out of range", Box::new(|r| r.checksum = Some(-1))),
            ("checksum", Box::new(|r| r.value = Some(b"abd".to_vec()))),
            ("size", Box::new(|r| r.size = Some(4))),
            ("no size", Box::new(|r| r.size = None)),
            ("carries a value", Box::new(|r| r.tombstone = Some(true))),
            ("key", Box::new(|r| r.key = "/bad".into())),
        ];
        for (what, damage) in cases {
            let mut row = good.clone();
            damage(&mut row);
            let e = row.into_record().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}");
            assert!(e.message().contains(what), "{what}: {e}");
        }
    }
}
