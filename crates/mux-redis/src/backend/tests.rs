//! Tests of [`RedisBackend`](super::RedisBackend) against the Redis at `MUX_REDIS_URL`.

use super::*;

/// A backend on the Redis at `MUX_REDIS_URL` (default `redis://127.0.0.1:6379`) under
/// `namespace`, in the default layout. Panics when it cannot connect: Redis is a
/// required backend.
async fn connect(namespace: &str) -> RedisBackend {
    connect_in(namespace, Layout::default()).await
}

/// As [`connect`], writing in `layout`.
async fn connect_in(namespace: &str, layout: Layout) -> RedisBackend {
    let url = std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = RedisConfig::new(&url)
        .with_namespace(namespace)
        .with_layout(layout);
    RedisBackend::connect("redis", config)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required for this test: {e}"))
}

/// The conformance suite against the Redis at `MUX_REDIS_URL` (default
/// `redis://127.0.0.1:6379`). Fails when it cannot connect: Redis is a required
/// backend (`cargo xtask services up` starts one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let backend = connect("mux-test").await;
    let report = mux_conformance::run(std::sync::Arc::new(backend)).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    // This store keeps no history: only the history cases may skip.
    assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
}

/// The conformance suite again, writing hashes (`layout = "hash"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_in_the_hash_layout() {
    let backend = connect_in("mux-test-hash", Layout::Hash).await;
    let report = mux_conformance::run(std::sync::Arc::new(backend)).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
}

/// A server restart empties its script cache: a single write and a batch load the
/// put script again and go through (`SCRIPT FLUSH` stands in for the restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_load_the_script_again_after_the_cache_is_flushed() {
    let backend = connect(&format!("mux-noscript-{}", std::process::id())).await;
    let mut conn = backend.conn.clone();
    let flush = async |conn: &mut Conn| {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(conn)
            .await
            .unwrap();
    };
    let key = |k: &str| Key::new(k).unwrap();
    let v = |n: u64| Version::new(n, 0, 1);
    flush(&mut conn).await;
    let one = Record::new(key("noscript/a"), "one", v(1));
    assert_eq!(backend.put(&one).await.unwrap(), PutOutcome::Applied);
    assert_eq!(backend.get(&key("noscript/a")).await.unwrap().unwrap(), one);
    flush(&mut conn).await;
    let batch = [
        Record::new(key("noscript/a"), "two", v(2)),
        Record::new(key("noscript/b"), "three", v(1)),
    ];
    assert_eq!(
        backend.put_batch(&batch).await.unwrap(),
        vec![PutOutcome::Applied, PutOutcome::Applied]
    );
    assert_eq!(
        backend
            .get(&key("noscript/a"))
            .await
            .unwrap()
            .unwrap()
            .value(),
        "two"
    );
    for k in ["noscript/a", "noscript/b"] {
        assert!(backend.purge(&key(k), v(2)).await.unwrap());
    }
}

/// The fields of `hash`, sorted.
async fn field_names(conn: &mut Conn, hash: &impl redis::ToRedisArgs) -> Vec<String> {
    let mut names: Vec<String> = redis::cmd("HKEYS")
        .arg(hash)
        .query_async(conn)
        .await
        .unwrap();
    names.sort();
    names
}

/// What Redis keeps at `record`: nothing (empty), `["string"]`, or a hash's field names.
async fn shape(conn: &mut Conn, record: &impl redis::ToRedisArgs) -> Vec<String> {
    let kind: String = redis::cmd("TYPE")
        .arg(record)
        .query_async(&mut *conn)
        .await
        .unwrap();
    match kind.as_str() {
        "none" => Vec::new(),
        "hash" => field_names(conn, record).await,
        other => vec![other.to_owned()],
    }
}

/// What a record's key holds in `layout`.
fn shape_of(layout: Layout) -> Vec<String> {
    let names: &[&str] = match layout {
        Layout::String => &["string"],
        Layout::Hash => &["m", "v", "val"],
    };
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The layout the put script leaves: one string, or the fields `v`, `m` and `val`,
/// whatever the record holds, and one index entry from the first write until a purge,
/// back with the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_put_script_keeps_the_record_and_its_index_entry_together() {
    for layout in [Layout::String, Layout::Hash] {
        record_and_index_entry_together(layout).await;
    }
}

async fn record_and_index_entry_together(layout: Layout) {
    let backend = connect_in(&format!("mux-layout-{}", std::process::id()), layout).await;
    let mut conn = backend.conn.clone();
    let key = Key::new("layout/a").unwrap();
    let (hash, index) = (backend.record_key(key.as_str()), backend.index_key());
    let v = |n: u64| Version::new(n, 0, 1);
    let mut state = async |expect_ct: Option<&str>, indexed: bool| {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(index)
            .arg(key.as_str())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(score.is_some(), indexed);
        let fields = shape(&mut conn, &hash).await;
        if indexed {
            assert_eq!(fields, shape_of(layout));
            let read = backend.get(&key).await.unwrap().unwrap();
            assert_eq!(read.meta().content_type.as_deref(), expect_ct);
        } else {
            assert!(fields.is_empty(), "{fields:?}");
        }
    };

    let typed = Record::new(key.clone(), "one", v(1)).with_content_type("text/plain");
    assert_eq!(backend.put(&typed).await.unwrap(), PutOutcome::Applied);
    state(Some("text/plain"), true).await;
    // An update without a content type has none; the entry stays.
    let plain = Record::new(key.clone(), "two", v(2));
    assert_eq!(backend.put(&plain).await.unwrap(), PutOutcome::Applied);
    state(None, true).await;
    assert_eq!(backend.get(&key).await.unwrap().unwrap().value(), "two");
    let typed = Record::new(key.clone(), "three", v(3)).with_content_type("application/json");
    assert_eq!(backend.put(&typed).await.unwrap(), PutOutcome::Applied);
    state(Some("application/json"), true).await;
    // A stale write changes nothing.
    let stale = Record::new(key.clone(), "old", v(2));
    assert_eq!(
        backend.put(&stale).await.unwrap(),
        PutOutcome::Superseded { stored: v(3) }
    );
    state(Some("application/json"), true).await;
    // Purged, the hash and the entry go together; the next write brings both back.
    assert!(backend.purge(&key, v(3)).await.unwrap());
    state(None, false).await;
    assert_eq!(
        backend
            .put(&Record::new(key.clone(), "four", v(4)))
            .await
            .unwrap(),
        PutOutcome::Applied
    );
    state(None, true).await;
    let listed = backend
        .list(&ListRequest::new(mux_core::Prefix::new("layout").unwrap()))
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 1);
    let _: () = redis::cmd("DEL")
        .arg(&hash)
        .arg(index)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// A hash in the earlier six-field layout (`v`, `t`, `ct`, `tags`, `crc`, `val`), as
/// an older mux wrote it, is read and listed; a stale write leaves it; the next write
/// turns it into the configured layout (either). An older mux writing the old fields over a newer
/// hash (a rolling upgrade) is read by `v`, not by the stale `m`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_in_the_earlier_layout_read_and_convert_on_their_next_write() {
    for layout in [Layout::String, Layout::Hash] {
        earlier_layout_converts(layout).await;
    }
}

async fn earlier_layout_converts(layout: Layout) {
    let backend = connect_in(&format!("mux-oldlayout-{}", std::process::id()), layout).await;
    let mut conn = backend.conn.clone();
    let key = Key::new("old/a").unwrap();
    let (hash, index) = (backend.record_key(key.as_str()), backend.index_key());
    let v = |n: u64| Version::new(n, 0, 1);
    let write_old = async |conn: &mut Conn, record: &Record| {
        let meta = record.meta();
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&hash)
            .arg("v")
            .arg(meta.version.to_string())
            .arg("t")
            .arg(if meta.tombstone { "1" } else { "0" })
            .arg("tags")
            .arg(serde_json::to_string(&meta.tags).unwrap())
            .arg("crc")
            .arg(meta.checksum.to_string())
            .arg("val")
            .arg(record.value().as_ref());
        if let Some(ct) = &meta.content_type {
            cmd.arg("ct").arg(ct);
        }
        let _: () = cmd.query_async(&mut *conn).await.unwrap();
        let _: () = redis::cmd("ZADD")
            .arg(index)
            .arg(0)
            .arg(key.as_str())
            .query_async(conn)
            .await
            .unwrap();
    };

    let old = Record::new(key.clone(), "old layout", v(2))
        .with_content_type("text/plain")
        .with_tag("class", "pii");
    write_old(&mut conn, &old).await;
    assert_eq!(backend.get(&key).await.unwrap().unwrap(), old);
    let listed = backend
        .list(&ListRequest::new(mux_core::Prefix::new("old").unwrap()))
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(&listed.entries[0].meta, old.meta());
    assert_eq!(listed.entries[0].size, 10);
    let stale = Record::new(key.clone(), "stale", v(1));
    assert_eq!(
        backend.put(&stale).await.unwrap(),
        PutOutcome::Superseded { stored: v(2) }
    );
    assert_eq!(
        field_names(&mut conn, &hash).await,
        ["crc", "ct", "t", "tags", "v", "val"]
    );

    let new = Record::new(key.clone(), "new layout", v(3));
    assert_eq!(backend.put(&new).await.unwrap(), PutOutcome::Applied);
    assert_eq!(shape(&mut conn, &hash).await, shape_of(layout));
    assert_eq!(backend.get(&key).await.unwrap().unwrap(), new);

    // An older node writes version 4 in the old layout over a hash (it cannot over a
    // string: `WRONGTYPE`): `m` still says 3.
    if layout == Layout::Hash {
        let over = Record::new(key.clone(), "older node", v(4)).with_tag("by", "old");
        write_old(&mut conn, &over).await;
        assert_eq!(backend.get(&key).await.unwrap().unwrap(), over);
        let listed = backend
            .list(&ListRequest::new(mux_core::Prefix::new("old").unwrap()))
            .await
            .unwrap();
        assert_eq!(&listed.entries[0].meta, over.meta());
        let newest = Record::tombstone(key.clone(), v(5));
        assert_eq!(
            backend.delete(&key, v(5)).await.unwrap(),
            PutOutcome::Applied
        );
        assert_eq!(shape(&mut conn, &hash).await, shape_of(layout));
        assert_eq!(backend.get(&key).await.unwrap().unwrap(), newest);
    }

    let _: () = redis::cmd("DEL")
        .arg(&hash)
        .arg(index)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Two nodes on one namespace, one writing strings and one hashes (a rolling upgrade, or
/// a change of `layout`): each reads and lists what the other wrote, a stale write is
/// refused whichever layout holds the record, a newer one converts it, and purge
/// removes either. A string mux did not write reads as corrupt, and writes over it are
/// refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_move_between_layouts() {
    let namespace = format!("mux-mixed-{}", std::process::id());
    let strings = connect_in(&namespace, Layout::String).await;
    let hashes = connect_in(&namespace, Layout::Hash).await;
    let mut conn = strings.conn.clone();
    let v = |n: u64| Version::new(n, 0, 1);
    let key = |k: &str| Key::new(k).unwrap();
    let (a, b, c) = (key("mixed/a"), key("mixed/b"), key("mixed/c"));
    let (at_a, at_c) = (
        strings.record_key(a.as_str()),
        strings.record_key(c.as_str()),
    );

    let first = Record::new(a.clone(), "by a hash node", v(1)).with_tag("n", "1");
    assert_eq!(hashes.put(&first).await.unwrap(), PutOutcome::Applied);
    assert_eq!(shape(&mut conn, &at_a).await, shape_of(Layout::Hash));
    for node in [&strings, &hashes] {
        assert_eq!(node.get(&a).await.unwrap().unwrap(), first);
    }
    let stale = Record::new(a.clone(), "stale", v(1));
    assert_eq!(
        strings.put(&stale).await.unwrap(),
        PutOutcome::Superseded { stored: v(1) }
    );
    assert_eq!(shape(&mut conn, &at_a).await, shape_of(Layout::Hash));

    let second = Record::new(a.clone(), "by a string node", v(2)).with_content_type("text/plain");
    assert_eq!(strings.put(&second).await.unwrap(), PutOutcome::Applied);
    assert_eq!(shape(&mut conn, &at_a).await, shape_of(Layout::String));
    for node in [&strings, &hashes] {
        assert_eq!(node.get(&a).await.unwrap().unwrap(), second);
    }
    assert_eq!(
        hashes.put(&stale).await.unwrap(),
        PutOutcome::Superseded { stored: v(2) }
    );
    assert_eq!(shape(&mut conn, &at_a).await, shape_of(Layout::String));
    assert_eq!(hashes.delete(&a, v(3)).await.unwrap(), PutOutcome::Applied);
    assert_eq!(shape(&mut conn, &at_a).await, shape_of(Layout::Hash));
    let deleted = Record::tombstone(a.clone(), v(3));

    // Metadata longer than a listing's first read of a string.
    let long = (1..=3).fold(Record::new(b.clone(), "long tags", v(1)), |r, i| {
        r.with_tag(format!("t{i}"), "x".repeat(500))
    });
    assert_eq!(strings.put(&long).await.unwrap(), PutOutcome::Applied);
    let prefix = mux_core::Prefix::new("mixed").unwrap();
    for node in [&strings, &hashes] {
        let page = node.list(&ListRequest::new(prefix.clone())).await.unwrap();
        let listed: Vec<_> = page
            .entries
            .iter()
            .map(|e| (e.key.as_str(), &e.meta, e.size))
            .collect();
        assert_eq!(
            listed,
            [("mixed/a", deleted.meta(), 0), ("mixed/b", long.meta(), 9)]
        );
    }
    assert!(strings.purge(&a, v(3)).await.unwrap(), "a hash");
    assert!(hashes.purge(&b, v(1)).await.unwrap(), "a string");
    assert!(shape(&mut conn, &at_a).await.is_empty());
    let left: usize = redis::cmd("ZCARD")
        .arg(strings.index_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "purge removes the index entries of both layouts");

    let _: () = redis::cmd("SET")
        .arg(&at_c)
        .arg("plain text")
        .query_async(&mut conn)
        .await
        .unwrap();
    for node in [&strings, &hashes] {
        let err = node.get(&c).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        let err = node
            .put(&Record::new(c.clone(), "x", v(1)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a mux record"), "{err}");
    }
    let _: () = redis::cmd("DEL")
        .arg(&at_c)
        .arg(strings.index_key())
        .query_async(&mut conn)
        .await
        .unwrap();
}
