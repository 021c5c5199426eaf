//! Listing a prefix in byte order (the README's *Partitions and listing*).
//!
//! The keys of a listing come from *sources*: a clustering range of one partition, read
//! in key order (CQL returns a partition's rows in clustering order, and compares `text`
//! by its UTF-8 bytes), every key of it at least the source's `lo`. Sources are merged
//! in byte order, opened lazily in order of `lo` (a few at a time): an entry is handed
//! out only once it is smaller than the `lo` of every source not yet opened.
//!
//! - A prefix at least `partition_depth` segments deep lies in one partition: its
//!   sources are the prefix's ranges there (the key `p` itself, then `p/…`).
//! - A shallower prefix spans partitions: their names come from the partition index
//!   (the same ranges, read in the index partition), and each is one source. A cursor
//!   `c` also reopens the partitions whose names are string prefixes of `c` followed by
//!   a byte below `0` (`a/b` for `c = a/b-c/x`): their `a/b/…` keys sort after `c`.
//!
//! Each range is read with keyset paging: `key > <last key read>` and a `LIMIT`.

use std::collections::VecDeque;

use futures_util::future::try_join_all;
use mux_core::{Key, ListEntry, ListPage, ListRequest, Result};

use crate::backend::ScyllaBackend;
use crate::cql::Scan;
use crate::layout::{INDEX_PARTITION, Row, partition_of};
use crate::schema::RangeShape;

/// A clustering range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Range {
    /// The whole partition.
    All,
    /// One key.
    Exact(String),
    /// The keys starting with this text, which ends with `/`.
    Under(String),
}

/// A range of one partition; every key in it is at least `lo`.
#[derive(Clone, Debug)]
struct Source {
    partition: String,
    lo: String,
    range: Range,
}

/// The ranges of keys that `prefix` matches, in byte order, each with its lowest
/// possible key.
pub(crate) fn ranges(prefix: &str) -> Vec<(String, Range)> {
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

/// The statement shape and bounds reading what is left of `range` strictly after
/// `after`, or `None` when nothing is left.
pub(crate) fn bounds(range: &Range, after: Option<&str>) -> Option<(RangeShape, Vec<String>)> {
    match (range, after) {
        (Range::All, None) => Some((RangeShape::From, vec![String::new()])),
        (Range::All, Some(a)) => Some((RangeShape::After, vec![a.to_owned()])),
        (Range::Exact(k), a) if a.is_none_or(|a| a < k.as_str()) => {
            Some((RangeShape::Exactly, vec![k.clone()]))
        }
        (Range::Exact(_), _) => None,
        (Range::Under(p), a) => {
            // The first string past the range: `p` ends with `/`, and `0` follows `/`.
            let end = format!("{}0", &p[..p.len() - 1]);
            match a {
                None => Some((RangeShape::FromTo, vec![p.clone(), end])),
                Some(a) if a < p.as_str() => Some((RangeShape::FromTo, vec![p.clone(), end])),
                Some(a) if a < end.as_str() => Some((RangeShape::AfterTo, vec![a.to_owned(), end])),
                Some(_) => None,
            }
        }
    }
}

/// One source being read: what was fetched and not yet handed out, and where the next
/// scan starts.
struct Stream {
    source: Source,
    after: Option<String>,
    buffer: VecDeque<Row>,
    done: bool,
}

impl Stream {
    fn new(source: Source, cursor: Option<&str>) -> Stream {
        Stream {
            source,
            after: cursor.map(str::to_owned),
            buffer: VecDeque::new(),
            done: false,
        }
    }

    fn head(&self) -> Option<&str> {
        self.buffer.front().map(|r| r.key.as_str())
    }
}

/// The partitions of a listing, in byte order of their names.
struct Feed {
    /// Sources known up front, in order of `lo`.
    fixed: VecDeque<Source>,
    /// Streams over the partition index (shallow prefixes), in order.
    index: VecDeque<Stream>,
}

impl ScyllaBackend {
    /// One page of `request`.
    pub(crate) async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.effective_limit()?;
        let want = limit + 1; // one more, to know whether there is a next page
        let cursor = request.cursor.as_ref().map(Key::as_str);
        let mut feed = self.feed(request);
        let mut open: Vec<Stream> = Vec::new();
        let mut entries: Vec<ListEntry> = Vec::new();
        while entries.len() < want {
            let best = open
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.head().map(|k| (i, k)))
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(i, k)| (i, k.to_owned()));
            let next_lo = self.peek(&mut feed, request, want).await?;
            match (best, next_lo) {
                (Some((i, key)), next) if next.as_ref().is_none_or(|lo| key < *lo) => {
                    let row = open[i].buffer.pop_front().expect("a head");
                    match row.entry() {
                        Ok(entry) => entries.push(entry),
                        // Not a mux record (written by someone else): skipped rather
                        // than failing every listing of its prefix.
                        Err(e) => {
                            tracing::warn!(key = %row.key, error = %e, "skipping a row that is not a mux record");
                        }
                    }
                    let need = want.saturating_sub(entries.len()).max(1);
                    self.fill(&mut open[i], request, need).await?;
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
                    while batch.len() < need.min(self.config.concurrency) {
                        match self.next_source(&mut feed, request, want).await? {
                            Some(source) => batch.push(Stream::new(source, cursor)),
                            None => break,
                        }
                        if self.peek(&mut feed, request, want).await?.is_none() {
                            break;
                        }
                    }
                    try_join_all(
                        batch
                            .iter_mut()
                            .map(|stream| self.fill(stream, request, need)),
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
    fn feed(&self, request: &ListRequest) -> Feed {
        let prefix = request.prefix.as_str();
        let stripped = prefix.strip_suffix('/').unwrap_or(prefix);
        let depth = self.config.partition_depth;
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
        // cursor's string prefixes (within its first `depth` segments) followed by a
        // byte below `0`, and the cursor itself.
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
            .map(|(lo, range)| {
                Stream::new(
                    Source {
                        partition: INDEX_PARTITION.to_owned(),
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
    async fn peek(
        &self,
        feed: &mut Feed,
        request: &ListRequest,
        want: usize,
    ) -> Result<Option<String>> {
        if let Some(source) = feed.fixed.front() {
            return Ok(Some(source.lo.clone()));
        }
        while let Some(stream) = feed.index.front_mut() {
            self.fill(stream, request, want.clamp(16, 1000)).await?;
            if let Some(name) = stream.head() {
                return Ok(Some(name.to_owned()));
            }
            feed.index.pop_front();
        }
        Ok(None)
    }

    /// The next source of `feed`.
    async fn next_source(
        &self,
        feed: &mut Feed,
        request: &ListRequest,
        want: usize,
    ) -> Result<Option<Source>> {
        if let Some(source) = feed.fixed.pop_front() {
            return Ok(Some(source));
        }
        if self.peek(feed, request, want).await?.is_none() {
            return Ok(None);
        }
        let stream = feed.index.front_mut().expect("peeked");
        let name = stream.buffer.pop_front().expect("peeked").key;
        Ok(Some(Source {
            partition: name.clone(),
            lo: name,
            range: Range::All,
        }))
    }

    /// Scans `stream` until it has a buffered row or is exhausted, keeping the rows
    /// whose key `request` wants (a partition name in the index wants the same test as
    /// the keys in it); `need` is the scan's `LIMIT`.
    async fn fill(&self, stream: &mut Stream, request: &ListRequest, need: usize) -> Result<()> {
        while stream.buffer.is_empty() && !stream.done {
            let Some((shape, bounds)) = bounds(&stream.source.range, stream.after.as_deref())
            else {
                stream.done = true;
                break;
            };
            let limit = need.clamp(1, 1000);
            let rows = self
                .cql
                .scan(&Scan {
                    partition: stream.source.partition.clone(),
                    shape,
                    bounds,
                    limit,
                })
                .await?;
            stream.done = rows.len() < limit;
            if let Some(last) = rows.last() {
                stream.after = Some(last.key.clone());
            }
            stream
                .buffer
                .extend(rows.into_iter().filter(|r| request.wants(&r.key)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_whole_segments() {
        assert_eq!(ranges(""), vec![(String::new(), Range::All)]);
        assert_eq!(
            ranges("a/b/"),
            vec![("a/b/".into(), Range::Under("a/b/".into()))]
        );
        assert_eq!(
            ranges("a/b"),
            vec![
                ("a/b".into(), Range::Exact("a/b".into())),
                ("a/b/".into(), Range::Under("a/b/".into()))
            ]
        );
    }

    #[test]
    fn bounds_start_after_the_cursor() {
        let under = Range::Under("a/".into());
        assert_eq!(
            bounds(&under, None),
            Some((RangeShape::FromTo, vec!["a/".into(), "a0".into()]))
        );
        assert_eq!(
            bounds(&under, Some("a/x")),
            Some((RangeShape::AfterTo, vec!["a/x".into(), "a0".into()]))
        );
        assert_eq!(
            bounds(&under, Some("a-")),
            Some((RangeShape::FromTo, vec!["a/".into(), "a0".into()])),
            "before the range"
        );
        assert_eq!(bounds(&under, Some("a0")), None);
        assert_eq!(bounds(&under, Some("b")), None);
        assert_eq!(bounds(&Range::Exact("a".into()), Some("a")), None);
        assert_eq!(
            bounds(&Range::Exact("b".into()), Some("a")),
            Some((RangeShape::Exactly, vec!["b".into()]))
        );
        assert_eq!(
            bounds(&Range::All, Some("a")),
            Some((RangeShape::After, vec!["a".into()]))
        );
        assert_eq!(
            bounds(&Range::All, None),
            Some((RangeShape::From, vec![String::new()]))
        );
    }
}
