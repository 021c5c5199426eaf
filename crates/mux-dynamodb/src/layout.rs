//! How a record maps to a DynamoDB item (the README's *Item layout*), the partition a
//! key lives in, and the reserved items beside the records.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use mux_core::codec::fields;
use mux_core::{Error, ErrorKind, Key, Metadata, Record, Result, Version};

/// The partition key attribute (string): the key's first `partition_depth` segments.
pub const PARTITION: &str = "mux_partition";
/// The sort key attribute (string): the full mux key.
pub const KEY: &str = "mux_key";
/// The value (binary), absent on tombstones and for empty values.
pub const VALUE: &str = "mux_value";
/// The value's length in bytes (number), so listings need not read values.
pub const SIZE: &str = "mux_size";
/// The version in its fixed-width text form (string; sorts like the versions).
pub const VERSION: &str = fields::VERSION;
/// Whether the record is a tombstone (boolean).
pub const TOMBSTONE: &str = fields::TOMBSTONE;
/// CRC-32 (IEEE) of the value, 8 lowercase hex digits (string).
pub const CHECKSUM: &str = fields::CHECKSUM;
/// The content type (string), absent when the record has none.
pub const CONTENT_TYPE: &str = fields::CONTENT_TYPE;
/// The tags (a map of strings), absent when the record has none.
pub const TAGS: &str = fields::TAGS;
/// The partition depth recorded in the layout item (number).
pub const PARTITION_DEPTH: &str = "mux_partition_depth";

/// The partition of the partition index: one item per record partition, its name as
/// the sort key. Keys never start with `/`, so no record partition is called this.
pub const INDEX_PARTITION: &str = "/partitions";
/// The partition and sort key of the layout item, which records the partition depth.
pub const LAYOUT_ITEM: &str = "/layout";

/// DynamoDB's largest item: 400 KB.
pub const MAX_ITEM_SIZE: usize = 400 * 1024;
/// What an item keeps beside the value, at most: a 1,024-byte key twice (partition and
/// sort key), 32 tags of 128 + 512 bytes, a 256-byte content type, the version, the
/// checksum, the size and the attribute names come to about 23 KB; 32 KiB is reserved.
pub const RESERVED_FOR_METADATA: usize = 32 * 1024;
/// The largest value an item can hold whatever its key and metadata (368 KiB).
pub const MAX_VALUE_SIZE: usize = MAX_ITEM_SIZE - RESERVED_FOR_METADATA;

/// The attributes a listing reads: everything but the value.
pub(crate) const LIST_PROJECTION: &str =
    "mux_key, mux_version, mux_tombstone, mux_crc32, mux_content_type, mux_tags, mux_size";

// The partition of a key: mux's partitioned layout, shared with other partitioned
// stores.
pub use mux_core::partitioned::partition_of;

/// A string attribute.
pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// The primary key of the item at `partition` and `sort_key`.
pub(crate) fn raw_key(partition: &str, sort_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PARTITION.to_owned(), s(partition)),
        (KEY.to_owned(), s(sort_key)),
    ])
}

/// The primary key of `key`'s item.
pub(crate) fn item_key(key: &str, depth: usize) -> HashMap<String, AttributeValue> {
    raw_key(partition_of(key, depth), key)
}

/// The item of a record.
pub(crate) fn encode(record: &Record, depth: usize) -> HashMap<String, AttributeValue> {
    let meta = record.meta();
    let mut item = item_key(record.key().as_str(), depth);
    item.insert(VERSION.to_owned(), s(meta.version.to_string()));
    item.insert(CHECKSUM.to_owned(), s(format!("{:08x}", meta.checksum)));
    item.insert(TOMBSTONE.to_owned(), AttributeValue::Bool(meta.tombstone));
    item.insert(
        SIZE.to_owned(),
        AttributeValue::N(record.value().len().to_string()),
    );
    if !record.value().is_empty() {
        item.insert(
            VALUE.to_owned(),
            AttributeValue::B(Blob::new(record.value().to_vec())),
        );
    }
    if let Some(ct) = &meta.content_type {
        item.insert(CONTENT_TYPE.to_owned(), s(ct));
    }
    if !meta.tags.is_empty() {
        let tags = meta.tags.iter().map(|(n, v)| (n.clone(), s(v))).collect();
        item.insert(TAGS.to_owned(), AttributeValue::M(tags));
    }
    item
}

/// A generous estimate of an item's size as DynamoDB counts it (names plus values),
/// for the 4 MB budget of a transaction.
pub(crate) fn estimated_size(record: &Record) -> usize {
    let meta = record.meta();
    let tags: usize = meta.tags.iter().map(|(n, v)| n.len() + v.len() + 3).sum();
    200 + 2 * record.key().as_str().len()
        + record.value().len()
        + meta.content_type.as_ref().map_or(0, String::len)
        + tags
}

fn corrupt(key: &str, what: String) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("item {key:?} is not a mux record: {what}"),
    )
}

fn string<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// The stored version of an item.
pub(crate) fn decode_version(item: &HashMap<String, AttributeValue>) -> Result<Version> {
    let key = string(item, KEY).unwrap_or("?");
    string(item, VERSION)
        .ok_or_else(|| corrupt(key, format!("no string attribute {VERSION}")))?
        .parse()
        .map_err(|e: Error| corrupt(key, e.message().to_owned()))
}

/// The key, metadata and value size of an item (the value itself is not needed).
pub(crate) fn decode_meta(item: &HashMap<String, AttributeValue>) -> Result<(Key, Metadata, u64)> {
    let key_text = string(item, KEY).ok_or_else(|| corrupt("?", format!("no {KEY}")))?;
    let key = Key::new(key_text).map_err(|e| corrupt(key_text, e.message().to_owned()))?;
    let bad = |what: String| corrupt(key_text, what);
    let version = decode_version(item)?;
    let checksum_text =
        string(item, CHECKSUM).ok_or_else(|| bad(format!("no string attribute {CHECKSUM}")))?;
    let checksum = u32::from_str_radix(checksum_text, 16)
        .map_err(|_| bad(format!("bad {CHECKSUM} {checksum_text:?}")))?;
    let tombstone = match item.get(TOMBSTONE) {
        None => false,
        Some(AttributeValue::Bool(b)) => *b,
        Some(other) => return Err(bad(format!("{TOMBSTONE} is not a boolean: {other:?}"))),
    };
    let content_type = match item.get(CONTENT_TYPE) {
        None => None,
        Some(AttributeValue::S(ct)) => Some(ct.clone()),
        Some(other) => return Err(bad(format!("{CONTENT_TYPE} is not a string: {other:?}"))),
    };
    let tags = match item.get(TAGS) {
        None => BTreeMap::new(),
        Some(AttributeValue::M(map)) => map
            .iter()
            .map(|(n, v)| match v {
                AttributeValue::S(v) => Ok((n.clone(), v.clone())),
                other => Err(bad(format!("tag {n:?} is not a string: {other:?}"))),
            })
            .collect::<Result<_>>()?,
        Some(other) => return Err(bad(format!("{TAGS} is not a map: {other:?}"))),
    };
    let size = match item.get(SIZE) {
        None => 0,
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| bad(format!("bad {SIZE} {n:?}")))?,
        Some(other) => return Err(bad(format!("{SIZE} is not a number: {other:?}"))),
    };
    let meta = Metadata {
        version,
        tombstone,
        content_type,
        tags,
        checksum,
    };
    Ok((key, meta, size))
}

/// The record of an item, its checksum verified.
pub(crate) fn decode(mut item: HashMap<String, AttributeValue>) -> Result<Record> {
    let (key, meta, _) = decode_meta(&item)?;
    let value = match item.remove(VALUE) {
        None => Bytes::new(),
        Some(AttributeValue::B(blob)) => Bytes::from(blob.into_inner()),
        Some(other) => {
            return Err(corrupt(
                key.as_str(),
                format!("{VALUE} is not binary: {other:?}"),
            ));
        }
    };
    Record::from_parts(key, value, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let key = Key::new("tenants/acme/limits").unwrap();
        let r = Record::new(key.clone(), &b"\x00\xff{}"[..], Version::new(7, 1, 2))
            .with_content_type("application/json")
            .with_tag("class", "config")
            .with_tag("ünï", "");
        let item = encode(&r, 2);
        assert_eq!(item[PARTITION].as_s().unwrap(), "tenants/acme");
        assert_eq!(
            item[VERSION].as_s().unwrap(),
            "0000000000000007-00000001-00000002"
        );
        assert_eq!(item[SIZE].as_n().unwrap(), "4");
        assert_eq!(decode(item).unwrap(), r);

        let t = Record::tombstone(key.clone(), Version::new(8, 0, 0));
        let item = encode(&t, 2);
        assert!(!item.contains_key(VALUE));
        assert_eq!(item[TOMBSTONE], AttributeValue::Bool(true));
        assert_eq!(decode(item).unwrap(), t);
        let empty = Record::new(key, Bytes::new(), Version::new(9, 0, 0));
        assert_eq!(decode(encode(&empty, 2)).unwrap(), empty);
    }

    #[test]
    fn foreign_items_are_corrupt_with_the_reason() {
        let mut item = item_key("a/b", 1);
        let err = decode(item.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("mux_version"), "{err}");
        item.insert(VERSION.into(), s("nope"));
        let err = decode(item).unwrap_err();
        assert!(err.to_string().contains("invalid version"), "{err}");
    }

    #[test]
    fn the_largest_metadata_fits_the_reserve() {
        let mut r = Record::new(
            Key::new("k".repeat(1024)).unwrap(),
            Bytes::new(),
            Version::new(1, 0, 0),
        )
        .with_content_type("x".repeat(mux_core::MAX_CONTENT_TYPE_LEN));
        for i in 0..mux_core::MAX_TAGS {
            r = r.with_tag(
                format!("{i:0>128}"),
                "v".repeat(mux_core::MAX_TAG_VALUE_LEN),
            );
        }
        r.meta().check(r.key()).unwrap();
        assert!(
            estimated_size(&r) < RESERVED_FOR_METADATA,
            "{}",
            estimated_size(&r)
        );
    }
}
