//! Tests of [`RedisBackend`](super::RedisBackend) against the Redis at `MUX_REDIS_URL`.

use super::*;

/// A backend on the Redis at `MUX_REDIS_URL` (default `redis://127.0.0.1:6379`) under
/// `namespace`. Panics when it cannot connect: Redis is a required backend.
async fn connect(namespace: &str) -> RedisBackend {
    let url = std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    RedisBackend::connect("redis", RedisConfig::new(&url).with_namespace(namespace))
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

/// The layout the put script leaves: the fields `v`, `m` and `val` whatever the
/// record holds, and one index entry from the first write until a purge, back with the
/// next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_put_script_keeps_the_hash_and_its_index_entry_together() {
    let backend = connect(&format!("mux-layout-{}", std::process::id())).await;
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
        let fields = field_names(&mut conn, &hash).await;
        if indexed {
            assert_eq!(fields, ["m", "v", "val"]);
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
/// turns it into the current layout. An older mux writing the old fields over a newer
/// hash (a rolling upgrade) is read by `v`, not by the stale `m`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_in_the_earlier_layout_read_and_convert_on_their_next_write() {
    let backend = connect(&format!("mux-oldlayout-{}", std::process::id())).await;
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
    assert_eq!(field_names(&mut conn, &hash).await, ["m", "v", "val"]);
    assert_eq!(backend.get(&key).await.unwrap().unwrap(), new);

    // An older node writes version 4 in the old layout over it: `m` still says 3.
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
    assert_eq!(field_names(&mut conn, &hash).await, ["m", "v", "val"]);
    assert_eq!(backend.get(&key).await.unwrap().unwrap(), newest);

    let _: () = redis::cmd("DEL")
        .arg(&hash)
        .arg(index)
        .query_async(&mut conn)
        .await
        .unwrap();
}
