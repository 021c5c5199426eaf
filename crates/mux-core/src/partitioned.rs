//! Listing a prefix in byte order over a *partitioned* layout: mux's own listing logic
//! for any store that keeps its rows in partitions read in key order (DynamoDB,
//! ScyllaDB/Cassandra), as [`codec`](crate::codec) is for encodings. The adapter
//! implements [`PartitionedStore`] (how to read rows of one partition and turn them
//! into entries); [`list_page`] does the rest.
//!
//! The layout: a key lives in the partition named by its first `depth` segments
//! ([`partition_of`]), every row of a partition sorted by the key's bytes, and a
//! partition index (the partition [`PartitionedStore::INDEX_PARTITION`]) holds one row
//! per partition, the partition's name as its key.
//!
//! The keys of a listing come from *sources*: a [`Range`] of one partition, read in key
//! order, every key of it at least the source's `lo`. Sources are merged in byte order,
//! opened lazily in order of `lo` (a few at a time): an entry is handed out only once
//! it is smaller than the `lo` of every source not yet opened.
//!
//! - A prefix at least `depth` segments deep lies in one partition: its sources are the
//!   prefix's ranges there (the key `p` itself, then the keys under `p/`).
//! - A shallower prefix spans partitions: their names come from the partition index
//!   (the same ranges, read in the index partition), and each is one source. A cursor
//!   `c` also reopens the partitions whose names are string prefixes of `c` followed by
//!   a byte below `0` (`a/b` for `c = a/b-c/x`): their `a/b/…` keys sort after `c`.
//!
//! A page reads one entry more than its limit, to know whether there is a next page.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::future::try_join_all;

use crate::{Key, ListEntry, ListPage, ListRequest, Result};

/// The partition of `key` at `depth`: its first `depth` segments (the whole key when it
/// has fewer).
pub fn partition_of(key: &str, depth: usize) -> &str {
    match key.match_indices('/').nth(depth.saturating_sub(1)) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

/// A range of keys within one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Range {
    /// The whole partition.
    All,
    /// One key.
    Exact(String),
    /// The keys starting with this text, which ends with `/`.
    Under(String),
}

/// The ranges of keys that `prefix` matches, in byte order, each with its lowest
/// possible key.
pub fn ranges(prefix: &str) -> Vec<(String, Range)> {
    if prefix.is_empty() {
        vec![(String::new(), Range::All)]
    } else if prefix.ends_with('/') {
        vec![(prefix.to_owned(), Range::Under(prefix.to_owned()))]
    } else {
        let under = format!("{prefix}/");
        vec![
            (prefix.to_owned(), Range::Exact(prefix.to_owned())),
            (under.clone(), Range::Under(under)),
        ]
    }
}

/// What one [`PartitionedStore::scan`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned<R> {
    /// The rows, in byte order of their keys.
    pub rows: Vec<R>,
    /// Whether the range has no more rows after these.
    pub done: bool,
}

/// The store-specific part of a partitioned listing: reading rows of one partition in
/// byte order of their keys, and turning a row into an entry.
pub trait PartitionedStore: Sync {
    /// The partition holding the partition index (no key names it).
    const INDEX_PARTITION: &'static str;

    /// A row as read: a record's key and what its entry is made of, or (in the index)
    /// a partition's name.
    type Row: Send;
    /// Where the reading of one range goes on: the store's paging state (the last key
    /// read, a continuation token, a prepared condition, …).
    type Scan: Send;

    /// The number of leading segments that name a key's partition.
    fn partition_depth(&self) -> usize;

    /// How many sources a listing opens at once, at most (at least 1).
    fn concurrency(&self) -> usize;

    /// The key of `row` (in the index: the partition's name).
    fn key(row: &Self::Row) -> &str;

    /// The paging state for reading `range` strictly after `after` (`None`: from its
    /// start), or `None` when nothing of `range` can be left (the source is dropped).
    fn start(&self, range: &Range, after: Option<&str>) -> Option<Self::Scan>;

    /// Reads the next rows of `range` in `partition`, at most `limit` (1 to 1000), in
    /// byte order of their keys, advancing `scan`. Rows the request does not want (at
    /// or before its cursor, outside its prefix) may be among them: the listing drops
    /// them. `keys_only`: only the rows' keys are needed (the partition index is read).
    fn scan(
        &self,
        partition: &str,
        range: &Range,
        scan: &mut Self::Scan,
        limit: usize,
        keys_only: bool,
    ) -> impl Future<Output = Result<Scanned<Self::Row>>> + Send;

    /// The entry of a record row, or `None` to skip the row (one that is not a mux
    /// record, say, rather than failing every listing of its prefix).
    fn entry(&self, row: Self::Row) -> Option<ListEntry>;
}

/// A range of one partition; every key in it is at least `lo`.
#[derive(Clone, Debug)]
struct Source {
    partition: String,
    lo: String,
    range: Range,
}

/// One source being read: what was fetched and not yet handed out, and where the next
/// scan starts.
struct Stream<S: PartitionedStore> {
    source: Source,
    scan: S::Scan,
    buffer: VecDeque<S::Row>,
    done: bool,
}

impl<S: PartitionedStore> Stream<S> {
    fn new(store: &S, source: Source, cursor: Option<&str>) -> Option<Stream<S>> {
        let scan = store.start(&source.range, cursor)?;
        Some(Stream {
            source,
            scan,
            buffer: VecDeque::new(),
            done: false,
        })
    }

    fn head(&self) -> Option<&str> {
        self.buffer.front().map(S::key)
    }
}

/// The partitions of a listing, in byte order of their names.
struct Feed<S: PartitionedStore> {
    /// Sources known up front, in order of `lo`.
    fixed: VecDeque<Source>,
    /// Streams over the partition index (shallow prefixes), in order.
    index: VecDeque<Stream<S>>,
}

/// One page of `request` from `store`.
pub async fn list_page<S: PartitionedStore>(store: &S, request: &ListRequest) -> Result<ListPage> {
    let limit = request.effective_limit()?;
    let want = limit + 1; // one more, to know whether there is a next page
    let cursor = request.cursor.as_ref().map(Key::as_str);
    let mut feed = feed(store, request);
    let mut open: Vec<Stream<S>> = Vec::new();
    let mut entries: Vec<ListEntry> = Vec::new();
    while entries.len() < want {
        let best = open
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head().map(|k| (i, k)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, k)| (i, k.to_owned()));
        let next_lo = peek(store, &mut feed, request, want).await?;
        match (best, next_lo) {
            (Some((i, key)), next) if next.as_ref().is_none_or(|lo| key < *lo) => {
                let row = open[i].buffer.pop_front().expect("a head");
                if let Some(entry) = store.entry(row) {
                    entries.push(entry);
                }
                let need = want.saturating_sub(entries.len()).max(1);
                fill(store, &mut open[i], request, need, false).await?;
                if open[i].head().is_none() {
                    open.swap_remove(i);
                }
            }
            (_, Some(_)) => {
                // Open the next source, and with it up to `concurrency` more (at most
                // one per entry still wanted): many small partitions are read
                // concurrently instead of one round trip after the other.
                let need = want.saturating_sub(entries.len()).max(1);
                let mut batch = Vec::new();
                while batch.len() < need.min(store.concurrency()) {
                    match next_source(store, &mut feed, request, want).await? {
                        Some(source) => batch.extend(Stream::new(store, source, cursor)),
                        None => break,
                    }
                    if peek(store, &mut feed, request, want).await?.is_none() {
                        break;
                    }
                }
                try_join_all(
                    batch
                        .iter_mut()
                        .map(|stream| fill(store, stream, request, need, false)),
                )
                .await?;
                open.extend(batch.into_iter().filter(|s| s.head().is_some()));
            }
            _ => break,
        }
    }
    let next_cursor = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| e.key.clone())
    } else {
        None
    };
    Ok(ListPage {
        entries,
        next_cursor,
    })
}

/// The sources of `request`: the prefix's ranges in its partition, or (for a prefix
/// shallower than the partition depth) the partition index.
fn feed<S: PartitionedStore>(store: &S, request: &ListRequest) -> Feed<S> {
    let prefix = request.prefix.as_str();
    let stripped = prefix.strip_suffix('/').unwrap_or(prefix);
    let depth = store.partition_depth();
    let segments = if stripped.is_empty() {
        0
    } else {
        stripped.split('/').count()
    };
    let cursor = request.cursor.as_ref().map(Key::as_str);
    if segments >= depth {
        let partition = partition_of(stripped, depth).to_owned();
        // The prefix is the partition: `p` and `p/…` are the whole partition.
        let ranges = if partition == prefix {
            vec![(partition.clone(), Range::All)]
        } else {
            ranges(prefix)
        };
        let fixed = ranges
            .into_iter()
            .map(|(lo, range)| Source {
                partition: partition.clone(),
                lo,
                range,
            })
            .collect();
        return Feed {
            fixed,
            index: VecDeque::new(),
        };
    }
    // Partitions at or before the cursor that can still hold keys after it: the
    // cursor's string prefixes (within its first `depth` segments) followed by a byte
    // below `0`, and the cursor itself.
    let mut fixed = VecDeque::new();
    if let Some(c) = cursor {
        let bytes = c.as_bytes();
        let end = partition_of(c, depth).len();
        for i in 1..=end {
            // At such a byte (ASCII) `i` is a character boundary.
            if i < bytes.len() && bytes[i] >= b'0' {
                continue;
            }
            let name = &c[..i];
            if !name.ends_with('/') && request.prefix.matches(name) {
                fixed.push_back(Source {
                    partition: name.to_owned(),
                    lo: name.to_owned(),
                    range: Range::All,
                });
            }
        }
    }
    let index = ranges(prefix)
        .into_iter()
        .filter_map(|(lo, range)| {
            Stream::new(
                store,
                Source {
                    partition: S::INDEX_PARTITION.to_owned(),
                    lo,
                    range,
                },
                cursor,
            )
        })
        .collect();
    Feed { fixed, index }
}

/// The `lo` of the next source of `feed`, reading the index as needed.
async fn peek<S: PartitionedStore>(
    store: &S,
    feed: &mut Feed<S>,
    request: &ListRequest,
    want: usize,
) -> Result<Option<String>> {
    if let Some(source) = feed.fixed.front() {
        return Ok(Some(source.lo.clone()));
    }
    while let Some(stream) = feed.index.front_mut() {
        fill(store, stream, request, want.clamp(16, 1000), true).await?;
        if let Some(name) = stream.head() {
            return Ok(Some(name.to_owned()));
        }
        feed.index.pop_front();
    }
    Ok(None)
}

/// The next source of `feed`.
async fn next_source<S: PartitionedStore>(
    store: &S,
    feed: &mut Feed<S>,
    request: &ListRequest,
    want: usize,
) -> Result<Option<Source>> {
    if let Some(source) = feed.fixed.pop_front() {
        return Ok(Some(source));
    }
    if peek(store, feed, request, want).await?.is_none() {
        return Ok(None);
    }
    let stream = feed.index.front_mut().expect("peeked");
    let row = stream.buffer.pop_front().expect("peeked");
    let name = S::key(&row).to_owned();
    Ok(Some(Source {
        partition: name.clone(),
        lo: name,
        range: Range::All,
    }))
}

/// Scans `stream` until it has a buffered row or is exhausted, keeping the rows whose
/// key `request` wants (a partition name in the index wants the same test as the keys
/// in it); `need` is the scan's size (clamped to 1 to 1000). `keys_only` when reading
/// the index.
async fn fill<S: PartitionedStore>(
    store: &S,
    stream: &mut Stream<S>,
    request: &ListRequest,
    need: usize,
    keys_only: bool,
) -> Result<()> {
    let limit = need.clamp(1, 1000);
    while stream.buffer.is_empty() && !stream.done {
        let source = &stream.source;
        let scanned = store
            .scan(
                &source.partition,
                &source.range,
                &mut stream.scan,
                limit,
                keys_only,
            )
            .await?;
        stream.done = scanned.done;
        stream.buffer.extend(
            scanned
                .rows
                .into_iter()
                .filter(|row| request.wants(S::key(row))),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
