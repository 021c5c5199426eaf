//! Listing a prefix in byte order (the README's *Listing*): mux's partitioned listing
//! ([`mux_core::partitioned`]) over sort-key ranges.
//!
//! A sort-key range of one partition is read with `Query` in key order: its key
//! condition is fixed when the range is opened (strictly after the cursor), and its
//! pages follow `LastEvaluatedKey`. A range of the partition index reads only the sort
//! keys (the partition names); a range of records reads everything but the value.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use mux_core::partitioned::{PartitionedStore, Range, Scanned};
use mux_core::{ListEntry, Result};

use crate::core::Core;
use crate::error::map_sdk;
use crate::layout::{self, INDEX_PARTITION, KEY, LIST_PROJECTION};

/// An item as `Query` returns it.
type Item = HashMap<String, AttributeValue>;

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

/// Where the reading of a range goes on: its key condition, and where the next `Query`
/// page starts.
#[derive(Debug)]
pub(crate) struct QueryState {
    condition: (String, Vec<String>),
    start: Option<Item>,
}

/// The listing reads sort-key ranges of the table with `Query`.
impl PartitionedStore for Core {
    const INDEX_PARTITION: &'static str = INDEX_PARTITION;
    type Row = (String, Item);
    type Scan = QueryState;

    fn partition_depth(&self) -> usize {
        self.depth()
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    fn key(row: &(String, Item)) -> &str {
        &row.0
    }

    /// The range's key condition; a range with nothing left after the cursor is not
    /// read at all.
    fn start(&self, range: &Range, after: Option<&str>) -> Option<QueryState> {
        Some(QueryState {
            condition: condition(range, after)?,
            start: None,
        })
    }

    /// One `Query` page (`limit` items, only the sort keys when `keys_only`), keeping
    /// the items with a string sort key; the range is done when the page has no
    /// `LastEvaluatedKey`.
    async fn scan(
        &self,
        partition: &str,
        _: &Range,
        state: &mut QueryState,
        limit: usize,
        keys_only: bool,
    ) -> Result<Scanned<(String, Item)>> {
        let (extra, values) = &state.condition;
        let mut query = self
            .client
            .query()
            .table_name(self.table())
            .key_condition_expression(format!("mux_partition = :p{extra}"))
            .expression_attribute_values(":p", layout::s(partition))
            .projection_expression(if keys_only { KEY } else { LIST_PROJECTION })
            .consistent_read(true)
            .limit(limit as i32)
            .set_exclusive_start_key(state.start.take());
        for (name, value) in [":a", ":b"].iter().zip(values) {
            query = query.expression_attribute_values(*name, layout::s(value));
        }
        let out = query.send().await.map_err(|e| map_sdk(e).error)?;
        state.start = out.last_evaluated_key.filter(|k| !k.is_empty());
        let rows = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| match item.get(KEY) {
                Some(AttributeValue::S(key)) => Some((key.clone(), item)),
                _ => None,
            })
            .collect();
        Ok(Scanned {
            rows,
            done: state.start.is_none(),
        })
    }

    /// A listed item as an entry; items that are not mux records are skipped with a
    /// warning rather than failing every listing of their prefix.
    fn entry(&self, (_, item): (String, Item)) -> Option<ListEntry> {
        match layout::decode_meta(&item) {
            Ok((key, meta, size)) => Some(ListEntry { key, meta, size }),
            Err(e) => {
                let key = item.get(KEY).and_then(|k| k.as_s().ok());
                tracing::warn!(?key, error = %e, "skipping an item that is not a mux record");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
