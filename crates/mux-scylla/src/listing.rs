//! Listing a prefix in byte order (the README's *Partitions and listing*): mux's
//! partitioned listing ([`mux_core::partitioned`]) over clustering ranges.
//!
//! CQL returns a partition's rows in clustering order, and compares `text` by its UTF-8
//! bytes, so a clustering range of one partition is read in key order. Each range is
//! read with keyset paging: `key > <last key read>` and a `LIMIT`.

use mux_core::partitioned::{PartitionedStore, Range, Scanned};
use mux_core::{ListEntry, Result};

use crate::backend::ScyllaBackend;
use crate::cql::Scan;
use crate::layout::{INDEX_PARTITION, Row};
use crate::schema::RangeShape;

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

/// The listing reads clustering ranges of the records table; a range's paging state is
/// the last key read (the cursor before the first scan), and the index partition is
/// read like any other.
impl PartitionedStore for ScyllaBackend {
    const INDEX_PARTITION: &'static str = INDEX_PARTITION;
    type Row = Row;
    type Scan = Option<String>;

    fn partition_depth(&self) -> usize {
        self.config.partition_depth
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    fn key(row: &Row) -> &str {
        &row.key
    }

    /// Every range gets a stream; one with nothing left ends at its first scan.
    fn start(&self, _: &Range, after: Option<&str>) -> Option<Option<String>> {
        Some(after.map(str::to_owned))
    }

    /// One scan of what is left of `range` (none when nothing is): the range is done
    /// when the scan returns fewer rows than its `LIMIT`.
    async fn scan(
        &self,
        partition: &str,
        range: &Range,
        after: &mut Option<String>,
        limit: usize,
        _keys_only: bool,
    ) -> Result<Scanned<Row>> {
        let Some((shape, bounds)) = bounds(range, after.as_deref()) else {
            return Ok(Scanned {
                rows: Vec::new(),
                done: true,
            });
        };
        let rows = self
            .cql
            .scan(&Scan {
                partition: partition.to_owned(),
                shape,
                bounds,
                limit,
            })
            .await?;
        if let Some(last) = rows.last() {
            *after = Some(last.key.clone());
        }
        Ok(Scanned {
            done: rows.len() < limit,
            rows,
        })
    }

    fn entry(&self, row: Row) -> Option<ListEntry> {
        match row.entry() {
            Ok(entry) => Some(entry),
            // Not a mux record (written by someone else): skipped rather than failing
            // every listing of its prefix.
            Err(e) => {
                tracing::warn!(key = %row.key, error = %e, "skipping a row that is not a mux record");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
