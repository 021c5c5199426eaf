//! Listing against the test DynamoDB server, compared with the byte-ordered model, at
//! partition depths 1 to 3: prefixes deeper than the depth read one partition,
//! shallower ones go through the partition index and merge partitions whose key
//! ranges interleave (`a/b/…` sorts after `a/b-c` and `a/b c`).

mod common;

use mux_core::{Backend, Key, ListRequest, Prefix, Record, Version};

/// Segments chosen so that siblings sort between a key and the keys under it.
const SEGMENTS: &[&str] = &["a", "b", "a-b", "a b", "a.b", "ab", "a0", "é", "~"];

/// 60 distinct keys of 1 to 4 segments (a seeded LCG: reproducible).
fn keys() -> Vec<String> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) % n as u64) as usize
    };
    let mut keys = std::collections::BTreeSet::new();
    while keys.len() < 60 {
        // Mostly short segments from the first three, so keys share prefixes.
        let depth = 1 + next(4);
        let key: Vec<&str> = (0..depth)
            .map(|_| {
                SEGMENTS[if next(3) == 0 {
                    next(SEGMENTS.len())
                } else {
                    next(3)
                }]
            })
            .collect();
        keys.insert(key.join("/"));
    }
    keys.into_iter().collect()
}

/// Pages through `prefix` from `cursor` with `limit`, checking each page.
async fn list(
    backend: &dyn Backend,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let mut request = ListRequest::new(Prefix::new(prefix).unwrap())
        .with_limit(limit)
        .with_cursor(cursor.map(|c| Key::new(c).unwrap()));
    let mut got = Vec::new();
    for _ in 0..200 {
        let page = backend.list(&request).await.unwrap();
        assert!(page.entries.len() <= limit, "{prefix:?} limit {limit}");
        got.extend(page.entries.iter().map(|e| e.key.as_str().to_owned()));
        match page.next_cursor {
            Some(c) => {
                assert!(!page.entries.is_empty(), "an empty page with a cursor");
                assert_eq!(Some(&c), page.entries.last().map(|e| &e.key));
                request.cursor = Some(c);
            }
            None => return got,
        }
    }
    panic!("{prefix:?}: the listing does not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prefix_lists_in_byte_order_at_every_depth() {
    let keys = keys();
    for depth in 1..=3 {
        let config = common::config("list").with_partition_depth(depth);
        let writer = common::connect(config.clone()).await;
        let records: Vec<Record> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Record::new(Key::new(k).unwrap(), "v", Version::new(1 + i as u64, 0, 0)))
            .collect();
        writer.put_batch(&records).await.unwrap();
        // Every tenth key deleted: tombstones list too.
        for k in keys.iter().step_by(10) {
            writer
                .delete(&Key::new(k).unwrap(), Version::new(1_000, 0, 0))
                .await
                .unwrap();
        }
        // A second backend lists: the partition index is in the table, not in memory.
        let reader = common::connect(config).await;
        let prefixes = [
            "", "a", "a/", "a-b", "a b", "a/a", "a/a/", "a/a-b", "a/b/a", "a/a/b/", "ab", "é", "zz",
        ];
        for prefix in prefixes {
            let p = Prefix::new(prefix).unwrap();
            let expected: Vec<String> = keys.iter().filter(|k| p.matches(k)).cloned().collect();
            for limit in [3, 1000] {
                let got = list(&reader, prefix, None, limit).await;
                assert_eq!(
                    got, expected,
                    "depth {depth}, prefix {prefix:?}, limit {limit}"
                );
            }
        }
        // Pages of one, and cursors that are not stored keys, between siblings.
        let all = list(&reader, "a", None, 1).await;
        assert_eq!(all, list(&reader, "a", None, 1000).await, "depth {depth}");
        for cursor in ["a/a", "a/a b/zzz", "a/a-b", "a/a.b/a", "a/a/a/a", "b/~"] {
            let expected: Vec<String> = keys
                .iter()
                .filter(|k| k.as_str() > cursor)
                .cloned()
                .collect();
            let got = list(&reader, "", Some(cursor), 3).await;
            assert_eq!(got, expected, "depth {depth}, after {cursor:?}");
            let p = Prefix::new("a").unwrap();
            let expected: Vec<String> = expected.into_iter().filter(|k| p.matches(k)).collect();
            let got = list(&reader, "a", Some(cursor), 4).await;
            assert_eq!(got, expected, "depth {depth}, under a after {cursor:?}");
        }
        common::drop_table(&writer).await;
    }
}
