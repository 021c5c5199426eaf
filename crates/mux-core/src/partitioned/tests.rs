//! Tests of the partitioned listing: partitions, ranges, the sources of a cursor, and
//! whole listings over an in-memory partitioned store compared with the byte-ordered
//! model.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::*;
use crate::{Prefix, Record, Version};

/// Partitions of keys in byte order, as a store keeps them; `foreign` rows are not
/// mux records (their entry is skipped). Paging is keyset paging after the last
/// key read, and a range with nothing left is dropped up front.
struct Fake {
    depth: usize,
    concurrency: usize,
    partitions: BTreeMap<String, BTreeSet<String>>,
    foreign: BTreeSet<String>,
}

impl Fake {
    fn new(depth: usize, concurrency: usize, keys: &[String]) -> Fake {
        let mut partitions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for k in keys {
            let partition = partition_of(k, depth).to_owned();
            let index = partitions.entry(Fake::INDEX_PARTITION.into()).or_default();
            index.insert(partition.clone());
            partitions.entry(partition).or_default().insert(k.clone());
        }
        Fake {
            depth,
            concurrency,
            partitions,
            foreign: BTreeSet::new(),
        }
    }
}

fn in_range(range: &Range, key: &str) -> bool {
    match range {
        Range::All => true,
        Range::Exact(k) => key == k,
        Range::Under(p) => key.starts_with(p.as_str()),
    }
}

impl PartitionedStore for Fake {
    const INDEX_PARTITION: &'static str = "/partitions";
    type Row = String;
    type Scan = Option<String>;

    fn partition_depth(&self) -> usize {
        self.depth
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn key(row: &String) -> &str {
        row
    }

    fn start(&self, range: &Range, after: Option<&str>) -> Option<Option<String>> {
        match range {
            Range::Exact(k) if after.is_some_and(|a| a >= k.as_str()) => None,
            _ => Some(after.map(str::to_owned)),
        }
    }

    async fn scan(
        &self,
        partition: &str,
        range: &Range,
        scan: &mut Option<String>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Scanned<String>> {
        assert!((1..=1000).contains(&limit), "limit {limit}");
        assert_eq!(keys_only, partition == Fake::INDEX_PARTITION, "{partition}");
        let from = scan.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let rows: Vec<String> = match self.partitions.get(partition) {
            None => Vec::new(),
            Some(keys) => keys
                .range::<str, _>((from, Bound::Unbounded))
                .filter(|k| in_range(range, k))
                .take(limit)
                .cloned()
                .collect(),
        };
        if let Some(last) = rows.last() {
            *scan = Some(last.clone());
        }
        Ok(Scanned {
            done: rows.len() < limit,
            rows,
        })
    }

    fn entry(&self, row: String) -> Option<ListEntry> {
        if self.foreign.contains(&row) {
            return None;
        }
        let record = Record::new(Key::new(&row).unwrap(), "", Version::new(1, 0, 0));
        Some(ListEntry {
            key: record.key().clone(),
            meta: record.meta().clone(),
            size: 0,
        })
    }
}

/// Segments chosen so that siblings sort between a key and the keys under it.
const SEGMENTS: &[&str] = &["a", "b", "a-b", "a b", "a.b", "ab", "a0", "é", "~"];

/// Every key of one segment, of two of the first five, of three of the first three.
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = SEGMENTS.iter().map(|s| s.to_string()).collect();
    for a in &SEGMENTS[..5] {
        for b in &SEGMENTS[..5] {
            keys.push(format!("{a}/{b}"));
            if SEGMENTS[..3].contains(a) && SEGMENTS[..3].contains(b) {
                for c in &SEGMENTS[..3] {
                    keys.push(format!("{a}/{b}/{c}"));
                }
            }
        }
    }
    keys.sort();
    keys
}

/// Every page of `prefix` after `cursor`, checked page by page.
async fn list(store: &Fake, prefix: &str, cursor: Option<&str>, limit: usize) -> Vec<String> {
    let mut request = ListRequest::new(Prefix::new(prefix).unwrap()).with_limit(limit);
    request.cursor = cursor.map(|c| Key::new(c).unwrap());
    let mut got = Vec::new();
    for _ in 0..1000 {
        let page = list_page(store, &request).await.unwrap();
        assert!(page.entries.len() <= limit, "{prefix:?} limit {limit}");
        got.extend(page.entries.iter().map(|e| e.key.as_str().to_owned()));
        match page.next_cursor {
            Some(c) => {
                assert_eq!(Some(&c), page.entries.last().map(|e| &e.key));
                request.cursor = Some(c);
            }
            None => return got,
        }
    }
    panic!("{prefix:?}: the listing does not end");
}

#[test]
fn partitions_are_the_leading_segments() {
    assert_eq!(
        partition_of("tenants/acme/config/limits", 2),
        "tenants/acme"
    );
    assert_eq!(partition_of("tenants/acme/config/limits", 1), "tenants");
    assert_eq!(partition_of("tenants/acme", 2), "tenants/acme");
    assert_eq!(partition_of("tenants", 3), "tenants");
    assert_eq!(partition_of("a/b/c", 1), "a");
    assert_eq!(partition_of("a/b/c/d", 3), "a/b/c");
    assert_eq!(partition_of("a/b/c/d", 16), "a/b/c/d");
}

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

fn fixed(depth: usize, prefix: &str, cursor: Option<&str>) -> Vec<(String, Range)> {
    let store = Fake::new(depth, 1, &[]);
    let mut request = ListRequest::new(Prefix::new(prefix).unwrap());
    request.cursor = cursor.map(|c| Key::new(c).unwrap());
    let feed = feed(&store, &request);
    feed.fixed
        .into_iter()
        .map(|s| (s.partition, s.range))
        .collect()
}

#[test]
fn deep_prefixes_read_their_partition() {
    let all = |p: &str| vec![(p.to_owned(), Range::All)];
    assert_eq!(fixed(2, "a/b", None), all("a/b"));
    assert_eq!(
        fixed(2, "a/b/", None),
        ranges("a/b/")
            .into_iter()
            .map(|(_, r)| ("a/b".into(), r))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fixed(2, "a/b/c", Some("a/b/c/d")),
        ranges("a/b/c")
            .into_iter()
            .map(|(_, r)| ("a/b".into(), r))
            .collect::<Vec<_>>()
    );
    assert_eq!(fixed(1, "a", None), all("a"));
}

#[test]
fn a_cursor_reopens_the_partitions_that_sort_around_it() {
    let names = |depth, prefix, cursor| -> Vec<String> {
        fixed(depth, prefix, Some(cursor))
            .into_iter()
            .map(|(name, range)| {
                assert_eq!(range, Range::All);
                name
            })
            .collect()
    };
    assert_eq!(names(2, "", "a/b-c/x"), ["a", "a/b", "a/b-c"]);
    assert_eq!(names(2, "a/", "a/b-c/x"), ["a/b", "a/b-c"]);
    assert_eq!(names(2, "a", "a/b-c"), ["a", "a/b", "a/b-c"]);
    assert_eq!(names(3, "", "ab/c"), ["ab", "ab/c"]);
    assert!(fixed(2, "", None).is_empty());
}

#[tokio::test]
async fn every_prefix_lists_in_byte_order_at_every_depth() {
    let keys = keys();
    let mut prefixes = BTreeSet::from([String::new()]);
    for k in &keys {
        for (i, _) in k.match_indices('/') {
            prefixes.insert(k[..i].to_owned());
            prefixes.insert(k[..=i].to_owned());
        }
        prefixes.insert(k.clone());
    }
    let cursors: Vec<Option<&str>> = std::iter::once(None)
        .chain(keys.iter().step_by(7).map(|k| Some(k.as_str())))
        .collect();
    for depth in 1..=3 {
        for concurrency in [1, 4] {
            let mut store = Fake::new(depth, concurrency, &keys);
            // Rows that are not mux records are skipped, not listed.
            store.foreign = keys.iter().step_by(5).cloned().collect();
            for prefix in &prefixes {
                let p = Prefix::new(prefix).unwrap();
                for &cursor in &cursors {
                    let expected: Vec<String> = keys
                        .iter()
                        .filter(|k| p.matches(k) && cursor.is_none_or(|c| k.as_str() > c))
                        .filter(|k| !store.foreign.contains(*k))
                        .cloned()
                        .collect();
                    for limit in [2, 1000] {
                        let got = list(&store, prefix, cursor, limit).await;
                        assert_eq!(
                            got, expected,
                            "depth {depth}, prefix {prefix:?}, cursor {cursor:?}, limit {limit}"
                        );
                    }
                }
            }
        }
    }
}
