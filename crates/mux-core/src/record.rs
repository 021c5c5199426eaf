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

/// The most tags a record may carry.
pub const MAX_TAGS: usize = 32;
/// The longest tag name, in bytes.
pub const MAX_TAG_NAME_LEN: usize = 128;
/// The longest tag value, in bytes.
pub const MAX_TAG_VALUE_LEN: usize = 512;
/// The longest content type, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;

impl Metadata {
    /// Checks what a writer chose (tags and content type) against mux's limits; errors
    /// name the key, the rule and the limit. Stores may allow less (S3's 2 KiB of user
    /// metadata); they say so themselves.
    pub fn check(&self, key: &Key) -> Result<()> {
        let bad = |what: String| Err(Error::invalid_input(format!("record {key}: {what}")));
        if self.tags.len() > MAX_TAGS {
            return bad(format!(
                "it has {} tags, the limit is {MAX_TAGS}",
                self.tags.len()
            ));
        }
        for (name, value) in &self.tags {
            if name.trim().is_empty() {
                return bad("a tag name is empty".to_owned());
            }
            if name.len() > MAX_TAG_NAME_LEN {
                return bad(format!(
                    "tag name \"{}…\" is {} bytes, the limit is {MAX_TAG_NAME_LEN}",
                    name.chars().take(16).collect::<String>().escape_debug(),
                    name.len()
                ));
            }
            if value.len() > MAX_TAG_VALUE_LEN {
                return bad(format!(
                    "the value of tag \"{}\" is {} bytes, the limit is {MAX_TAG_VALUE_LEN}",
                    name.escape_debug(),
                    value.len()
                ));
            }
            if name.contains(['=', ',']) || name.chars().chain(value.chars()).any(char::is_control)
            {
                return bad(format!(
                    "tag \"{}\" contains '=', ',' in its name or a control character",
                    name.escape_debug()
                ));
            }
        }
        if let Some(ct) = &self.content_type {
            if ct.len() > MAX_CONTENT_TYPE_LEN {
                return bad(format!(
                    "the content type is {} bytes, the limit is {MAX_CONTENT_TYPE_LEN}",
                    ct.len()
                ));
            }
            if ct.is_empty() || !ct.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
                return bad(format!(
                    "the content type \"{}\" must be non-empty printable ASCII",
                    ct.escape_debug()
                ));
            }
        }
        Ok(())
    }
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

    /// Replaces tags and content type (the coordinator builds records from options).
    pub(crate) fn set_metadata(
        &mut self,
        tags: BTreeMap<String, String>,
        content_type: Option<String>,
    ) {
        self.meta.tags = tags;
        self.meta.content_type = content_type;
    }

    /// Replaces the key (the coordinator stores a tenant's record under its namespace).
    pub fn with_key(mut self, key: Key) -> Record {
        self.key = key;
        self
    }

    /// Replaces the value, keeping key and metadata; the checksum is recomputed (a
    /// [`Sealer`](crate::seal::Sealer) swaps a value for its sealed form and back).
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Record {
        self.value = value.into();
        self.meta.checksum = crc32fast::hash(&self.value);
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
    fn metadata_limits_are_named() {
        let k = Key::new("a").unwrap();
        let check = |r: Record| r.meta().check(&k).map_err(|e| e.message().to_owned());
        let r = || Record::new(k.clone(), "v", Version::new(1, 0, 0));
        assert!(check(r().with_tag("class", "pii").with_content_type("text/plain")).is_ok());
        assert!(
            check(r().with_tag("", "x"))
                .unwrap_err()
                .contains("a tag name is empty")
        );
        let long = "n".repeat(MAX_TAG_NAME_LEN + 1);
        assert!(
            check(r().with_tag(long, "x"))
                .unwrap_err()
                .contains("the limit is 128")
        );
        let long = "v".repeat(MAX_TAG_VALUE_LEN + 1);
        assert!(
            check(r().with_tag("n", long))
                .unwrap_err()
                .contains("the limit is 512")
        );
        let many = (0..=MAX_TAGS).fold(r(), |r, i| r.with_tag(format!("t{i}"), "x"));
        assert!(
            check(many)
                .unwrap_err()
                .contains("33 tags, the limit is 32")
        );
        let ct = "x".repeat(MAX_CONTENT_TYPE_LEN + 1);
        assert!(
            check(r().with_content_type(ct))
                .unwrap_err()
                .contains("the limit is 256")
        );
        assert!(
            check(r().with_content_type("a\nb"))
                .unwrap_err()
                .contains("printable ASCII")
        );
    }

    #[test]
    fn tombstones_are_empty() {
        let t = Record::tombstone(Key::new("a").unwrap(), Version::new(2, 0, 0));
        assert!(t.is_tombstone());
        assert!(t.value().is_empty());
    }
}
