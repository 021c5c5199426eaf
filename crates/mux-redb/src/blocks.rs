//! Digest sums kept per block of keys, so a digest reads one row per block instead of
//! every record.
//!
//! The keys are cut into blocks at **boundary keys**: a key is one when the FNV-1a
//! hash of its bytes is a multiple of [`SPREAD`] (one key in 32 on average). A block
//! runs from a boundary key up to the next one; the head block, stored under `""`,
//! holds the keys before the first. The table [`BLOCKS`] maps each block's start to
//! the digest of its records (count and XOR of the entry hashes, as
//! `mux_core::digest` defines them), and every write keeps it exact in the same
//! transaction: a changed record XORs out its old hash and in its new one; a new
//! boundary key splits its block (summing the records from it to the next boundary);
//! a purged boundary key merges its block into the previous one.
//!
//! A digest then adds whole blocks that lie inside a chunk from their sums and reads
//! records one by one only at the chunk's edges (`digest` below). Because the
//! boundaries depend on the keys alone, the result is the same bytes a listing gives
//! (the conformance case `digest_matches_listing` and this crate's tests check it).
//! A database written before this table existed gets it built when it is opened.

use std::ops::Bound;

use mux_core::digest::{ChunkBuilder, Digest, DigestRequest, KeyRange, entry_hash};
use mux_core::{Error, ErrorKind, Key, Result, Version};
use redb::{ReadableTable, Table, TableDefinition};

/// Block start key → the block's digest (`count` as u64 big-endian, then the hash).
pub(crate) const BLOCKS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("mux_digest_blocks");

/// One key in `SPREAD` starts a block, on average.
pub(crate) const SPREAD: u64 = 32;

/// The head block's start (before every key).
const HEAD: &str = "";

/// Whether `key` starts a block.
pub(crate) fn is_boundary(key: &str) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.is_multiple_of(SPREAD)
}

fn encode(d: Digest) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&d.count.to_be_bytes());
    out[8..].copy_from_slice(&d.hash);
    out
}

fn decode(bytes: &[u8]) -> Result<Digest> {
    if bytes.len() != 24 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            "a digest block sum is not 24 bytes",
        ));
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&bytes[..8]);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&bytes[8..]);
    Ok(Digest {
        count: u64::from_be_bytes(count),
        hash,
    })
}

/// The digest of one entry.
fn single(hash: [u8; 16]) -> Digest {
    let mut d = Digest::EMPTY;
    d.add_hash(hash);
    d
}

/// The hash of a stored record (version and tombstone flag from its header).
pub(crate) fn stored_hash(key: &str, bytes: &[u8]) -> Result<[u8; 16]> {
    let (version, tombstone) = header(key, bytes)?;
    Ok(entry_hash(key, version, tombstone))
}

/// The part of a stored record's header line a digest needs (serde skips the rest).
#[derive(serde::Deserialize)]
struct DigestHeader {
    version: Version,
    #[serde(default)]
    tombstone: bool,
}

/// Reads the version and tombstone flag from a stored record's header line (the
/// `codec` envelope), without decoding its tags or touching its value.
fn header(key: &str, bytes: &[u8]) -> Result<(Version, bool)> {
    let corrupt = || {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key}: stored header is not valid"),
        )
    };
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(corrupt)?;
    let h: DigestHeader =
        serde_json::from_slice(&bytes[..newline]).map_err(|e| corrupt().with_source(e))?;
    Ok((h.version, h.tombstone))
}

fn db(e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    Error::new(ErrorKind::Internal, format!("redb digest blocks: {e}"))
}

type Records<'t> = Table<'t, &'static str, &'static [u8]>;
type Blocks<'t> = Table<'t, &'static str, &'static [u8]>;

/// The start of the block holding `key` (the greatest start at or before it).
fn block_of(blocks: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> Result<String> {
    match blocks.range::<&str>(..=key).map_err(db)?.next_back() {
        Some(item) => Ok(item.map_err(db)?.0.value().to_owned()),
        None => Ok(HEAD.to_owned()),
    }
}

/// The first block start after `key` (`None`: its block is the last).
fn next_start(blocks: &Blocks<'_>, key: &str) -> Result<Option<String>> {
    match blocks
        .range::<&str>((Bound::Excluded(key), Bound::Unbounded))
        .map_err(db)?
        .next()
    {
        Some(item) => Ok(Some(item.map_err(db)?.0.value().to_owned())),
        None => Ok(None),
    }
}

fn sum_of(blocks: &impl ReadableTable<&'static str, &'static [u8]>, start: &str) -> Result<Digest> {
    match blocks.get(start).map_err(db)? {
        Some(v) => decode(v.value()),
        None => Ok(Digest::EMPTY),
    }
}

fn set(blocks: &mut Blocks<'_>, start: &str, d: Digest) -> Result<()> {
    blocks.insert(start, encode(d).as_slice()).map_err(db)?;
    Ok(())
}

/// The digest of the records from `from` (inclusive) to the next block start.
fn sum_until_next_block(records: &Records<'_>, blocks: &Blocks<'_>, from: &str) -> Result<Digest> {
    let next = next_start(blocks, from)?;
    let end = match &next {
        Some(n) => Bound::Excluded(n.as_str()),
        None => Bound::Unbounded,
    };
    let mut d = Digest::EMPTY;
    for item in records
        .range::<&str>((Bound::Included(from), end))
        .map_err(db)?
    {
        let (k, v) = item.map_err(db)?;
        d.add_hash(stored_hash(k.value(), v.value())?);
    }
    Ok(d)
}

/// The sum `d` after a record's hash changed from `old` (`None`: a new record) to `new`.
fn replaced(d: Digest, old: Option<[u8; 16]>, new: [u8; 16]) -> Digest {
    match old {
        Some(old) => d.without(single(old)).combine(single(new)),
        None => d.combine(single(new)),
    }
}

/// Starts a block at the new boundary key `key` (already in `records`, its hash
/// `new`): it takes the records from there to the next start, itself included, away
/// from the block that held them.
fn split_at(
    records: &Records<'_>,
    blocks: &mut Blocks<'_>,
    key: &str,
    new: [u8; 16],
) -> Result<()> {
    let holder = block_of(blocks, key)?;
    let moved = sum_until_next_block(records, blocks, key)?;
    let left = sum_of(blocks, &holder)?.without(moved.without(single(new)));
    set(blocks, &holder, left)?;
    set(blocks, key, moved)
}

/// Keeps the block sums exact through a transaction's writes: holds the sum of the
/// block the last write touched in memory while the next writes fall into it too (a
/// sorted batch mostly does), and writes it back when they move on. [`SumCache::flush`] before committing.
#[derive(Debug, Default)]
pub(crate) struct SumCache {
    /// The block's start, the next block's start, and its sum.
    block: Option<(String, Option<String>, Digest)>,
}

impl SumCache {
    /// Accounts a write of `key` (already in `records`): `old` is the hash it replaced.
    pub(crate) fn write(
        &mut self,
        records: &Records<'_>,
        blocks: &mut Blocks<'_>,
        key: &str,
        old: Option<[u8; 16]>,
        new: [u8; 16],
    ) -> Result<()> {
        if old.is_none() && is_boundary(key) {
            self.flush(blocks)?;
            return split_at(records, blocks, key, new);
        }
        let holds = self.block.as_ref().is_some_and(|(start, end, _)| {
            start.as_str() <= key && end.as_deref().is_none_or(|e| key < e)
        });
        if !holds {
            self.flush(blocks)?;
            let start = block_of(blocks, key)?;
            let end = next_start(blocks, &start)?;
            let sum = sum_of(blocks, &start)?;
            self.block = Some((start, end, sum));
        }
        if let Some((_, _, d)) = &mut self.block {
            *d = replaced(*d, old, new);
        }
        Ok(())
    }

    /// Writes the held sum back.
    pub(crate) fn flush(&mut self, blocks: &mut Blocks<'_>) -> Result<()> {
        match self.block.take() {
            Some((start, _, d)) => set(blocks, &start, d),
            None => Ok(()),
        }
    }
}

/// Accounts the removal of `key` (already gone from `records`), whose hash was `old`.
pub(crate) fn on_remove(blocks: &mut Blocks<'_>, key: &str, old: [u8; 16]) -> Result<()> {
    let own = match blocks.remove(key).map_err(db)? {
        Some(v) => Some(decode(v.value())?),
        None => None,
    };
    match own {
        // Its block merges into the previous one.
        Some(own) => {
            let previous = block_of(blocks, key)?;
            let d = sum_of(blocks, &previous)?.combine(own.without(single(old)));
            set(blocks, &previous, d)
        }
        None => {
            let holder = block_of(blocks, key)?;
            let d = sum_of(blocks, &holder)?.without(single(old));
            set(blocks, &holder, d)
        }
    }
}

/// Builds the table from the records when it lacks the head block (a database from
/// before it existed, or a new one).
pub(crate) fn ensure_built(records: &Records<'_>, blocks: &mut Blocks<'_>) -> Result<()> {
    if blocks.get(HEAD).map_err(db)?.is_some() {
        return Ok(());
    }
    blocks.retain(|_, _| false).map_err(db)?;
    let mut start = HEAD.to_owned();
    let mut d = Digest::EMPTY;
    for item in records.iter().map_err(db)? {
        let (k, v) = item.map_err(db)?;
        let key = k.value();
        if is_boundary(key) {
            set(blocks, &start, d)?;
            start = key.to_owned();
            d = Digest::EMPTY;
        }
        d.add_hash(stored_hash(key, v.value())?);
    }
    set(blocks, &start, d)
}

/// Answers a digest request from the block sums, reading records only where a block
/// is not wholly inside one chunk.
pub(crate) fn digest(
    records: &impl ReadableTable<&'static str, &'static [u8]>,
    blocks: &impl ReadableTable<&'static str, &'static [u8]>,
    request: &DigestRequest,
) -> Result<Vec<mux_core::digest::DigestChunk>> {
    let range = &request.range;
    let mut chunks = ChunkBuilder::new(request)?;
    let start: &str = match &range.after {
        Some(a) if a.as_str() >= range.prefix.scan_start() => a.as_str(),
        _ => range.prefix.scan_start(),
    };
    if range.until.as_ref().is_some_and(|u| u.as_str() < start) {
        return Ok(chunks.finish());
    }
    // The contiguous run of keys the prefix matches below it: [below, below_end).
    let (below, below_end) = below_prefix(range);
    let first = block_of(blocks, start)?;
    let mut starts = blocks.range::<&str>(first.as_str()..).map_err(db)?;
    let mut read_next = || -> Result<Option<(String, Digest)>> {
        match starts.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(db)?;
                Ok(Some((k.value().to_owned(), decode(v.value())?)))
            }
        }
    };
    let mut current = read_next()?;
    while let Some((b, sum)) = current.take() {
        if range.is_past(&b) && b.as_str() > start {
            break;
        }
        let next = read_next()?;
        let end: Option<String> = next.as_ref().map(|(n, _)| n.clone());
        current = next;
        if sum.count == 0 {
            continue;
        }
        let inside = range.after.as_ref().is_none_or(|a| b.as_str() > a.as_str())
            && match (&range.until, &end) {
                (None, _) => true,
                (Some(u), Some(e)) => e.as_str() <= u.as_str(),
                (Some(_), None) => false,
            }
            && match (&below, &below_end, &end) {
                (None, _, _) => true,
                (Some(lo), None, _) => b.as_str() >= lo.as_str(),
                (Some(lo), Some(hi), Some(e)) => b.as_str() >= lo.as_str() && e <= hi,
                (Some(_), Some(_), None) => false,
            };
        if inside && chunks.takes_whole(&b, end.as_deref(), sum.count) {
            chunks.push_digest(&b, sum);
            continue;
        }
        // Record by record: the block's keys that lie in the range.
        let lower = if b.as_str() > start {
            b.as_str()
        } else {
            start
        };
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_str()),
            None => Bound::Unbounded,
        };
        for item in records
            .range::<&str>((Bound::Included(lower), upper))
            .map_err(db)?
        {
            let (k, v) = item.map_err(db)?;
            let key = k.value();
            if range.is_past(key) {
                break;
            }
            if !range.contains(key) {
                continue;
            }
            let (version, tombstone) = header(key, v.value())?;
            let key = Key::new(key)
                .map_err(|e| Error::new(ErrorKind::Corrupt, e.message().to_owned()))?;
            chunks.push(&key, version, tombstone);
        }
    }
    Ok(chunks.finish())
}

/// The contiguous key run `[lo, hi)` of the keys below the range's prefix (every key
/// starting with it, or with it and `/`); `(None, None)` for the empty prefix, which
/// matches every key. The prefix's own key (`a/b` for the prefix `a/b`) lies outside
/// the run: its block is read record by record.
fn below_prefix(range: &KeyRange) -> (Option<String>, Option<String>) {
    let p = range.prefix.as_str();
    if p.is_empty() {
        return (None, None);
    }
    let lo = if p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    };
    // `/` + 1 is `0`: the first text after every key starting with `lo`.
    let hi = format!("{}0", &lo[..lo.len() - 1]);
    (Some(lo), Some(hi))
}

#[cfg(test)]
#[path = "blocks_tests.rs"]
mod tests;
