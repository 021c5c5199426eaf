//! Digests of key ranges: how two stores find out cheaply whether they hold the same
//! records, and where they differ.
//!
//! # The hash (identical however it is computed)
//!
//! An entry is a listed key with its version and tombstone flag (values are not read).
//! Its hash is the first 16 bytes of
//!
//! ```text
//! SHA-256( u32 big-endian byte length of the key ‖ the key's UTF-8 bytes
//!          ‖ the version's 16-byte big-endian form ‖ 1 byte: 1 for a tombstone, else 0 )
//! ```
//!
//! The digest of a range is the number of entries in it and the XOR of their hashes
//! (Cassandra's Merkle leaves combine rows the same way). XOR makes the digest of a
//! range the combination of the digests of any partition of it, so a store can compute
//! it by listing, with an SQL aggregate, or from per-range sums it keeps, and always get
//! the same bytes; two stores agree on a range exactly when they hold the same keys at
//! the same versions and tombstone flags (up to a 2⁻¹²⁸ collision).
//!
//! # The tree
//!
//! [`Backend::digest`](crate::Backend::digest) answers a [`DigestRequest`]: the digests
//! of consecutive chunks of a [`KeyRange`], split either at keys the caller gives
//! ([`Splits::At`]) or after every `n` of the store's own entries ([`Splits::Every`]).
//! A verifier asks the store with the most entries to cut a range into chunks, asks the
//! others for the same chunks, and descends only into chunks whose digests differ: two
//! stores that agree exchange one digest each.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::backend::{ListEntry, ListRequest, MAX_LIST_LIMIT};
use crate::error::{Error, Result};
use crate::key::{Key, Prefix};
use crate::version::Version;

/// The keys under `prefix` that sort strictly after `after` and at or before `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// The keys' prefix (on whole segments, as for listings).
    pub prefix: Prefix,
    /// Exclusive lower bound (`None`: from the first key).
    pub after: Option<Key>,
    /// Inclusive upper bound (`None`: to the last key).
    pub until: Option<Key>,
}

impl KeyRange {
    /// Every key under `prefix`.
    pub fn prefix(prefix: Prefix) -> KeyRange {
        KeyRange {
            prefix,
            after: None,
            until: None,
        }
    }

    /// The same prefix between other bounds.
    pub fn between(&self, after: Option<Key>, until: Option<Key>) -> KeyRange {
        KeyRange {
            prefix: self.prefix.clone(),
            after,
            until,
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &str) -> bool {
        self.prefix.matches(key)
            && self.after.as_ref().is_none_or(|a| key > a.as_str())
            && self.until.as_ref().is_none_or(|u| key <= u.as_str())
    }

    /// Whether a listing in key order that reached `key` has passed the range.
    pub fn is_past(&self, key: &str) -> bool {
        self.until.as_ref().is_some_and(|u| key > u.as_str()) || self.prefix.is_past(key)
    }

    /// The first listing request over the range.
    pub fn list_request(&self, limit: usize) -> ListRequest {
        ListRequest::new(self.prefix.clone())
            .with_cursor(self.after.clone())
            .with_limit(limit)
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" (", self.prefix.as_str())?;
        match &self.after {
            Some(a) => write!(f, "after {a}")?,
            None => write!(f, "from the start")?,
        }
        match &self.until {
            Some(u) => write!(f, ", until {u})"),
            None => write!(f, ", to the end)"),
        }
    }
}

/// The digest of a set of entries: how many, and the XOR of their hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digest {
    /// The number of entries (tombstones included).
    pub count: u64,
    /// The XOR of the entries' hashes ([`entry_hash`]).
    pub hash: [u8; 16],
}

impl Digest {
    /// The digest of nothing.
    pub const EMPTY: Digest = Digest {
        count: 0,
        hash: [0; 16],
    };

    /// Adds one entry.
    pub fn add(&mut self, key: &str, version: Version, tombstone: bool) {
        self.add_hash(entry_hash(key, version, tombstone));
    }

    /// Adds one entry by its hash.
    pub fn add_hash(&mut self, hash: [u8; 16]) {
        self.count += 1;
        for (h, e) in self.hash.iter_mut().zip(hash) {
            *h ^= e;
        }
    }

    /// Adds a listed entry.
    pub fn add_entry(&mut self, entry: &ListEntry) {
        self.add(entry.key.as_str(), entry.meta.version, entry.meta.tombstone);
    }

    /// The digest of `self` without `other`, a subset of it.
    pub fn without(mut self, other: Digest) -> Digest {
        self.count = self.count.saturating_sub(other.count);
        for (h, o) in self.hash.iter_mut().zip(other.hash) {
            *h ^= o;
        }
        self
    }

    /// The digest of the union of two disjoint sets.
    pub fn combine(mut self, other: Digest) -> Digest {
        self.count += other.count;
        for (h, o) in self.hash.iter_mut().zip(other.hash) {
            *h ^= o;
        }
        self
    }

    /// The hash as 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} entries, {}", self.count, self.hex())
    }
}

/// The hash of one entry (see the [module docs](self) for the exact bytes).
pub fn entry_hash(key: &str, version: Version, tombstone: bool) -> [u8; 16] {
    let mut sha = Sha256::new();
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    sha.update(len.to_be_bytes());
    sha.update(key.as_bytes());
    sha.update(version.to_bytes());
    sha.update([u8::from(tombstone)]);
    let full = sha.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// How a [`DigestRequest`] cuts its range into chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Splits {
    /// At these keys, ascending, each the inclusive end of a chunk; `n` keys make
    /// `n + 1` chunks (the last ends with the range).
    At(Vec<Key>),
    /// After every `n` entries the store holds in the range (`n ≥ 1`).
    Every(u64),
}

/// A request for the digests of consecutive chunks of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestRequest {
    /// The range.
    pub range: KeyRange,
    /// Where chunks end.
    pub splits: Splits,
}

impl DigestRequest {
    /// The digest of the whole range, as one chunk.
    pub fn whole(range: KeyRange) -> DigestRequest {
        DigestRequest {
            range,
            splits: Splits::At(Vec::new()),
        }
    }

    /// Checks the request: `Every(0)` and split keys out of order or outside the range
    /// are refused.
    pub fn check(&self) -> Result<()> {
        match &self.splits {
            Splits::Every(0) => Err(Error::invalid_input(
                "a digest request cannot split after every 0 entries: use 1 or more",
            )),
            Splits::Every(_) => Ok(()),
            Splits::At(keys) => {
                if keys.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::invalid_input(
                        "digest split keys must be strictly ascending",
                    ));
                }
                match keys.iter().find(|k| !self.range.contains(k.as_str())) {
                    Some(k) => Err(Error::invalid_input(format!(
                        "digest split key {k} lies outside the range {}",
                        self.range
                    ))),
                    None => Ok(()),
                }
            }
        }
    }
}

/// One chunk of a digested range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestChunk {
    /// The chunk's inclusive end: a split key, or the range's own end (`None`: open).
    pub last: Option<Key>,
    /// The chunk's digest.
    pub digest: Digest,
}

/// Folds entries listed in key order into the chunks of `request`: the shared
/// implementation of listing-based digests (the default [`crate::Backend::digest`]) and
/// of stores that scan their own entries.
#[derive(Debug)]
pub struct ChunkBuilder {
    splits: Splits,
    until: Option<Key>,
    next_split: usize,
    current: Digest,
    last_seen: Option<Key>,
    chunks: Vec<DigestChunk>,
}

impl ChunkBuilder {
    /// A builder for `request` (checked with [`DigestRequest::check`] first).
    pub fn new(request: &DigestRequest) -> Result<ChunkBuilder> {
        request.check()?;
        Ok(ChunkBuilder {
            splits: request.splits.clone(),
            until: request.range.until.clone(),
            next_split: 0,
            current: Digest::EMPTY,
            last_seen: None,
            chunks: Vec::new(),
        })
    }

    /// Adds the next entry; entries must come in key order and lie in the range.
    pub fn push(&mut self, key: &Key, version: Version, tombstone: bool) {
        self.push_hash(key, entry_hash(key.as_str(), version, tombstone));
    }

    /// Adds the next entry by its hash.
    pub fn push_hash(&mut self, key: &Key, hash: [u8; 16]) {
        self.close_splits_before(key.as_str());
        self.current.add_hash(hash);
        self.last_seen = Some(key.clone());
        if let Splits::Every(n) = self.splits
            && self.current.count >= n
        {
            let chunk = DigestChunk {
                last: self.last_seen.clone(),
                digest: std::mem::take(&mut self.current),
            };
            self.chunks.push(chunk);
        }
    }

    /// Whether a run of `count` entries that all sort at or after `first` and before
    /// `end` (`None`: no bound) can be added whole with [`ChunkBuilder::push_digest`]:
    /// it crosses no split key ([`Splits::At`]) and does not fill the chunk
    /// ([`Splits::Every`]). For stores that keep per-block sums.
    pub fn takes_whole(&self, first: &str, end: Option<&str>, count: u64) -> bool {
        match &self.splits {
            Splits::At(splits) => {
                let next = splits[self.next_split..]
                    .iter()
                    .find(|s| s.as_str() >= first);
                match (next, end) {
                    (None, _) => true,
                    (Some(split), Some(end)) => end <= split.as_str(),
                    (Some(_), None) => false,
                }
            }
            Splits::Every(n) => self.current.count + count < *n,
        }
    }

    /// Adds a run of entries by their digest; only where [`ChunkBuilder::takes_whole`]
    /// said so, in key order with the entries pushed one by one.
    pub fn push_digest(&mut self, first: &str, digest: Digest) {
        self.close_splits_before(first);
        self.current = self.current.combine(digest);
    }

    /// Ends the chunk of every split key before `key` ([`Splits::At`]).
    fn close_splits_before(&mut self, key: &str) {
        if let Splits::At(splits) = &self.splits {
            while let Some(split) = splits.get(self.next_split) {
                if key <= split.as_str() {
                    break;
                }
                let chunk = DigestChunk {
                    last: Some(split.clone()),
                    digest: std::mem::take(&mut self.current),
                };
                self.chunks.push(chunk);
                self.next_split += 1;
            }
        }
    }

    /// The chunks: for [`Splits::At`] exactly one per split plus the last; for
    /// [`Splits::Every`] as many as the entries filled, the last ending with the range.
    pub fn finish(mut self) -> Vec<DigestChunk> {
        match &self.splits {
            Splits::At(splits) => {
                for split in &splits[self.next_split..] {
                    let chunk = DigestChunk {
                        last: Some(split.clone()),
                        digest: std::mem::take(&mut self.current),
                    };
                    self.chunks.push(chunk);
                }
                self.chunks.push(DigestChunk {
                    last: self.until,
                    digest: self.current,
                });
            }
            Splits::Every(_) => {
                // The last chunk always reaches the end of the range, so the chunks
                // cover it; an exactly full last chunk is widened instead of followed
                // by an empty one.
                if self.current.count > 0 || self.chunks.is_empty() {
                    self.chunks.push(DigestChunk {
                        last: self.until,
                        digest: self.current,
                    });
                } else if let Some(last) = self.chunks.last_mut() {
                    last.last = self.until;
                }
            }
        }
        self.chunks
    }
}

/// The default page size of listing-based digests.
pub const DIGEST_LIST_LIMIT: usize = MAX_LIST_LIMIT;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    fn v(n: u64) -> Version {
        Version::new(n, 0, 1)
    }

    #[test]
    fn the_entry_hash_is_pinned() {
        // Pinned so a change to the documented bytes cannot pass unnoticed: every
        // native implementation (PostgreSQL's aggregate) must produce the same.
        let h = entry_hash("a/b", Version::new(1, 2, 3), true);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let mut sha = Sha256::new();
        sha.update([0, 0, 0, 3]);
        sha.update(b"a/b");
        sha.update([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
        sha.update([1]);
        let expected: String = sha.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
        assert_ne!(h, entry_hash("a/b", Version::new(1, 2, 3), false));
        assert_ne!(h, entry_hash("a/b", Version::new(1, 2, 4), true));
    }

    #[test]
    fn digests_combine_over_any_partition() {
        let entries: Vec<_> = (0..10).map(|i| (format!("k/{i}"), v(i))).collect();
        let mut whole = Digest::EMPTY;
        for (k, ver) in &entries {
            whole.add(k, *ver, false);
        }
        let (a, b) = entries.split_at(4);
        let part = |es: &[(String, Version)]| {
            es.iter().fold(Digest::EMPTY, |mut d, (k, ver)| {
                d.add(k, *ver, false);
                d
            })
        };
        assert_eq!(part(a).combine(part(b)), whole);
        assert_eq!(whole.count, 10);
        assert_ne!(part(a), whole);
    }

    #[test]
    fn chunks_at_splits_cover_the_range() {
        let range = KeyRange::prefix(Prefix::new("k").unwrap());
        let req = DigestRequest {
            range,
            splits: Splits::At(vec![key("k/2"), key("k/5"), key("k/9")]),
        };
        let mut b = ChunkBuilder::new(&req).unwrap();
        for i in [1, 2, 3, 7] {
            b.push(&key(&format!("k/{i}")), v(i), false);
        }
        let chunks = b.finish();
        let counts: Vec<u64> = chunks.iter().map(|c| c.digest.count).collect();
        assert_eq!(counts, vec![2, 1, 1, 0]);
        assert_eq!(chunks[3].last, None);
        assert_eq!(chunks[1].last, Some(key("k/5")));
    }

    #[test]
    fn chunks_every_n_end_with_the_range() {
        let range = KeyRange::prefix(Prefix::all()).between(None, Some(key("z")));
        let req = DigestRequest {
            range,
            splits: Splits::Every(2),
        };
        let mut b = ChunkBuilder::new(&req).unwrap();
        for i in 0..4 {
            b.push(&key(&format!("k{i}")), v(i), false);
        }
        let chunks = b.finish();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].last, Some(key("k1")));
        assert_eq!(chunks[1].last, Some(key("z")));
        let empty = ChunkBuilder::new(&req).unwrap().finish();
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].digest, Digest::EMPTY);
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let range = KeyRange::prefix(Prefix::new("k").unwrap());
        let every0 = DigestRequest {
            range: range.clone(),
            splits: Splits::Every(0),
        };
        assert!(every0.check().unwrap_err().to_string().contains("every 0"));
        let outside = DigestRequest {
            range: range.clone(),
            splits: Splits::At(vec![key("other")]),
        };
        assert!(outside.check().unwrap_err().to_string().contains("outside"));
        let unordered = DigestRequest {
            range,
            splits: Splits::At(vec![key("k/2"), key("k/1")]),
        };
        assert!(
            unordered
                .check()
                .unwrap_err()
                .to_string()
                .contains("ascending")
        );
    }
}
