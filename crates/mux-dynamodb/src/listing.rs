//! Listing a prefix in byte order (the README's *Listing*).
//!
//! The keys of a listing come from *sources*: a sort-key range of one partition, read
//! with `Query` in key order, every key of it at least the source's `lo`. Sources are
//! merged in byte order, opened lazily in order of `lo` (a few at a time): an entry is
//! handed out only once it is smaller than the `lo` of every source not yet opened.
//!
//! - A prefix at least `partition_depth` segments deep lies in one partition: its
//!   sources are the prefix's ranges there (the key `p` itself, then `begins_with p/`).
//! - A shallower prefix spans partitions: their names come from the partition index
//!   (the same ranges, read in the index partition), and each is one source. A cursor
//!   `c` also reopens the partitions whose names are string prefixes of `c` followed by
//!   a byte below `0` (`a/b` for `c = a/b-c/x`): their `a/b/…` keys sort after `c`.

use std::collections::{HashMap, VecDeque};

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::try_join_all;
use mux_core::{Key, ListEntry, ListPage, ListRequest, Result};

use crate::core::Core;
use crate::error::map_sdk;
use crate::layout::{self, INDEX_PARTITION, KEY, LIST_PROJECTION, partition_of};

/// A sort-key range.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Range {
    /// The whole partition.
    All,
    /// One sort key.
    Exact(String),
    /// The sort keys starting with this text, which ends with `/`.
    Under(String),
}

/// A range of one partition; every key in it is at least `lo`.
#[derive(Clone, Debug)]
struct Source {
    partition: String,
    lo: String,
    range: Range,
}

/// The ranges of sort keys that `prefix` matches, in byte order, each with its lowest
/// possible key.
fn ranges(prefix: &str) -> Vec<(String, Range)> {
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

/// The key condition on the sort key of a range read strictly after `cursor` (the
/// expression and its values), or `None` when nothing of the range is left.
fn condition(range: &Range, cursor: Option<&str>) -> Option<(String, Vec<String>)> {
    match (range, cursor) {
        (Range::All, None) => Some((String::new(), vec![])),
        (Range::All, Some(c)) => Some((" AND mux_key > :a".into(), vec![c.into()])),
        (Range::Exact(k), c) if c.is_none_or(|c| c < k.as_str()) => {
            Some((" AND mux_key = :a".into(), vec![k.clone()]))
        }
        (Range::Exact(_), _) => None,
        (Range::Under(p), c) if c.is_none_or(|c| c < p.as_str()) => {
            Some((" AND begins_with(mux_key, :a)".into(), vec![p.clone()]))
        }
        (Range::Under(p), Some(c)) if c.starts_with(p.as_str()) => {
            // Between the cursor (handed out already; filtered) and the first string
            // past the range (`p` ends with `/`, and `0` follows `/`; filtered too).
            let end = format!("{}0", &p[..p.len() - 1]);
            Some((" AND mux_key BETWEEN :a AND :b".into(), vec![c.into(), end]))
        }
        (Range::Under(_), _) => None,
    }
}

/// One source being read: what was fetched and not yet handed out, and where the
/// next `Query` page starts.
struct Stream {
    source: Source,
    condition: (String, Vec<String>),
    buffer: VecDeque<(String, HashMap<String, AttributeValue>)>,
    start: Option<HashMap<String, AttributeValue>>,
    done: bool,
}

impl Stream {
    fn new(source: Source, cursor: Option<&str>) -> Option<Stream> {
        let condition = condition(&source.range, cursor)?;
        Some(Stream {
            source,
            condition,
            buffer: VecDeque::new(),
            start: None,
            done: false,
        })
    }

    fn head(&self) -> Option<&str> {
        self.buffer.front().map(|(k, _)| k.as_str())
    }
}

/// The partitions of a listing, in byte order of their names.
struct Feed {
    /// Sources known up front, in order of `lo`.
    fixed: VecDeque<Source>,
    /// Streams over the partition index (shallow prefixes), in order.
    index: VecDeque<Stream>,
}

impl Core {
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
                    let (_, item) = open[i].buffer.pop_front().expect("a head");
                    if let Some(entry) = entry(item) {
                        entries.push(entry);
                    }
                    let need = want.saturating_sub(entries.len()).max(1);
                    self.fill(&mut open[i], request, need, false).await?;
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
                            Some(source) => batch.extend(Stream::new(source, cursor)),
                            None => break,
                        }
                        if self.peek(&mut feed, request, want).await?.is_none() {
                            break;
                        }
                    }
                    try_join_all(
                        batch
                            .iter_mut()
                            .map(|stream| self.fill(stream, request, need, false)),
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
        let depth = self.depth();
        let segments = if stripped.is_empty() {
            0
        } else {
            stripped.split('/').count()
        };
        let cursor = request.cursor.as_ref().map(Key::as_str);
        if segments >= depth {
            let partition = partition_of(stripped, depth).to_owned();
            // The prefix is the partition: `p` and `p/…` are the whole partition.
            let whole = partition == prefix;
            let ranges = if whole {
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
            .filter_map(|(lo, range)| {
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
            self.fill(stream, request, want.clamp(16, 1000), true)
                .await?;
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
        let (name, _) = stream.buffer.pop_front().expect("peeked");
        Ok(Some(Source {
            partition: name.clone(),
            lo: name,
            range: Range::All,
        }))
    }

    /// Reads pages of `stream` until it has a buffered item or is exhausted, keeping
    /// the items whose sort key `request` wants (a partition name in the index wants
    /// the same test as the keys in it); `need` is the `Query` page size. `keys_only`
    /// reads only the sort keys (the index).
    async fn fill(
        &self,
        stream: &mut Stream,
        request: &ListRequest,
        need: usize,
        keys_only: bool,
    ) -> Result<()> {
        while stream.buffer.is_empty() && !stream.done {
            let (extra, values) = &stream.condition;
            let mut query = self
                .client
                .query()
                .table_name(self.table())
                .key_condition_expression(format!("mux_partition = :p{extra}"))
                .expression_attribute_values(":p", layout::s(&stream.source.partition))
                .projection_expression(if keys_only { KEY } else { LIST_PROJECTION })
                .consistent_read(true)
                .limit(need.clamp(1, 1000) as i32)
                .set_exclusive_start_key(stream.start.take());
            for (name, value) in [":a", ":b"].iter().zip(values) {
                query = query.expression_attribute_values(*name, layout::s(value));
            }
            let out = query.send().await.map_err(|e| map_sdk(e).error)?;
            stream.start = out.last_evaluated_key.filter(|k| !k.is_empty());
            stream.done = stream.start.is_none();
            for item in out.items.unwrap_or_default() {
                if let Some(AttributeValue::S(key)) = item.get(KEY)
                    && request.wants(key)
                {
                    stream.buffer.push_back((key.clone(), item));
                }
            }
        }
        Ok(())
    }
}

/// A listed item as an entry; items that are not mux records are skipped with a
/// warning rather than failing every listing of their prefix.
fn entry(item: HashMap<String, AttributeValue>) -> Option<ListEntry> {
    match layout::decode_meta(&item) {
        Ok((key, meta, size)) => Some(ListEntry { key, meta, size }),
        Err(e) => {
            let key = item.get(KEY).and_then(|k| k.as_s().ok());
            tracing::warn!(?key, error = %e, "skipping an item that is not a mux record");
            None
        }
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
    fn conditions_start_after_the_cursor() {
        let under = Range::Under("a/".into());
        assert_eq!(
            condition(&under, None).unwrap().0,
            " AND begins_with(mux_key, :a)"
        );
        assert_eq!(
            condition(&under, Some("a/x")).unwrap().1,
            vec!["a/x".to_owned(), "a0".to_owned()]
        );
        assert!(condition(&under, Some("b")).is_none());
        assert!(condition(&under, Some("a-")).is_some(), "before the range");
        assert!(condition(&Range::Exact("a".into()), Some("a")).is_none());
        assert!(condition(&Range::Exact("b".into()), Some("a")).is_some());
        assert_eq!(
            condition(&Range::All, Some("a")).unwrap().0,
            " AND mux_key > :a"
        );
    }
}
