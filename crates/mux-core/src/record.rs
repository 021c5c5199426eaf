//! Records and their metadata.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::version::Version;

/// What mux stores next to a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The version that decides which write wins.
    pub version: Version,
    /// Whether this record marks a deletion.
    #[serde(default)]
    pub tombstone: bool,
    /// The MIME type of the value, if the writer gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// String tags such as `class=pii`, used by routing and kept with the record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// CRC-32 (IEEE) of the value.
    pub checksum: u32,
}

/// A key, its value and its metadata.
///
/// Construct records with [`Record::new`] or [`Record::tombstone`]; the checksum is
/// computed for you. Records are immutable once built except through the `with_*`
/// builders, so the checksum always matches the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    key: Key,
    value: Bytes,
    meta: Metadata,
}

impl Record {
    /// A live record.
    pub fn new(key: Key, value: impl Into<Bytes>, version: Version) -> Record {
        let value = value.into();
        let checksum = crc32fast::hash(&value);
        Record {
            key,
            value,
            meta: Metadata {
                version,
                tombstone: false,
                content_type: None,
                tags: BTreeMap::new(),
                checksum,
            },
        }
    }

    /// A tombstone: the deletion of `key` at `version`.
    pub fn tombstone(key: Key, version: Version) -> Record {
        let mut r = Record::new(key, Bytes::new(), version);
        r.meta.tombstone = true;
        r
    }

    /// Rebuilds a record read back from a store, checking the stored checksum.
    pub fn from_parts(key: Key, value: Bytes, meta: Metadata) -> Result<Record> {
        let actual = crc32fast::hash(&value);
        if actual != meta.checksum {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "record {key}: the value's checksum is {actual:08x} but {:08x} was stored",
                    meta.checksum
                ),
            ));
        }
        if meta.tombstone && !value.is_empty() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("record {key}: a tombstone carries a value"),
            ));
        }
        Ok(Record { key, value, meta })
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Record {
        self.meta.content_type = Some(content_type.into());
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, name: impl Into<String>, value: impl Into<String>) -> Record {
        self.meta.tags.insert(name.into(), value.into());
        self
    }

    /// Replaces the key (the coordinator stores a tenant's record under its namespace).
    pub fn with_key(mut self, key: Key) -> Record {
        self.key = key;
        self
    }

    /// Replaces the version (used when a coordinator stamps a write).
    pub fn with_version(mut self, version: Version) -> Record {
        self.meta.version = version;
        self
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The value (empty for a tombstone).
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// The metadata.
    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.meta.version
    }

    /// Whether this record marks a deletion.
    pub fn is_tombstone(&self) -> bool {
        self.meta.tombstone
    }

    /// Splits the record into its parts.
    pub fn into_parts(self) -> (Key, Bytes, Metadata) {
        (self.key, self.value, self.meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_computed_and_verified() {
        let k = Key::new("a").unwrap();
        let r = Record::new(k.clone(), "hello", Version::new(1, 0, 0)).with_tag("class", "pii");
        assert_eq!(r.meta().checksum, crc32fast::hash(b"hello"));
        let (key, value, meta) = r.clone().into_parts();
        assert_eq!(Record::from_parts(key, value, meta.clone()).unwrap(), r);
        let err = Record::from_parts(k, Bytes::from_static(b"hellO"), meta).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn tombstones_are_empty() {
        let t = Record::tombstone(Key::new("a").unwrap(), Version::new(2, 0, 0));
        assert!(t.is_tombstone());
        assert!(t.value().is_empty());
    }
}
