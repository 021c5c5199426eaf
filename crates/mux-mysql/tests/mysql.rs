//! mux-mysql against the MariaDB/MySQL server at `MUX_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`, which `cargo xtask services up` provides). Each
//! test works in a table of its own (`mux_test_<pid>_<n>`) and drops it. MySQL is a
//! required backend: these tests fail, not skip, when the server cannot be reached.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mux_core::{
    Backend, BackendExt, ErrorKind, Key, ListRequest, Prefix, PutOutcome, Record, Version,
};
use mux_mysql::{MysqlBackend, MysqlConfig};
use mysql_async::prelude::Queryable;

fn url() -> String {
    std::env::var("MUX_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn table_name(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "mux_test_{test}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect(table: &str) -> MysqlBackend {
    MysqlBackend::connect("mysql", MysqlConfig::new(url()).with_table(table))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MariaDB/MySQL at {} is required (run `cargo xtask services up`): {e}",
                url()
            )
        })
}

/// A connection of the test's own, not through mux.
async fn raw() -> mysql_async::Conn {
    mysql_async::Conn::from_url(url())
        .await
        .expect("a raw connection")
}

async fn drop_table(table: &str) {
    let mut conn = raw().await;
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
    conn.exec_drop("DELETE FROM mux_schema WHERE table_name = ?", (table,))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// Writes v1 `one` and then v2 `two` to a fresh key with `statement` (parameters in the
/// crate's column order) and says whether the row then holds v2 *with* `two`.
async fn keeps_value_with_version(backend: &MysqlBackend, statement: &str, k: &str) -> bool {
    let mut conn = raw().await;
    for (v, value) in [
        (Version::new(1, 0, 1), "one"),
        (Version::new(2, 0, 1), "two"),
    ] {
        let r = Record::new(key(k), value, v);
        conn.exec_drop(
            statement,
            (
                k.as_bytes(),
                value.as_bytes(),
                v.to_bytes().to_vec(),
                false,
                None::<String>,
                "{}",
                r.meta().checksum,
            ),
        )
        .await
        .unwrap();
    }
    let stored = backend.get(&key(k)).await.unwrap().unwrap();
    stored.version() == Version::new(2, 0, 1) && stored.value().as_ref() == b"two"
}

/// The upsert assigns `version` last. With `version` first, the guard of every later
/// assignment compares the new version with itself and keeps the old value: the row
/// silently holds the old value under the new version (its checksum still matching, so
/// nothing downstream notices). The check below catches that order and passes the
/// crate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_is_assigned_after_the_value() {
    let table = table_name("order");
    let backend = connect(&table).await;
    let ours = mux_mysql::testing::upsert_statement(&table);
    let last = ", version = IF(VALUES(version) > version, VALUES(version), version)";
    let (head, rest) = ours.split_once(" ON DUPLICATE KEY UPDATE ").unwrap();
    let others = rest.strip_suffix(last).expect("version is assigned last");
    let wrong = format!("{head} ON DUPLICATE KEY UPDATE {}, {others}", &last[2..]);
    assert!(
        !keeps_value_with_version(&backend, &wrong, "order/wrong").await,
        "the wrong order kept the new value: the check cannot tell the orders apart"
    );
    let stored = backend.get(&key("order/wrong")).await.unwrap().unwrap();
    assert_eq!(
        stored.value().as_ref(),
        b"one",
        "old value under the new version"
    );
    assert!(keeps_value_with_version(&backend, &ours, "order/ours").await);
    drop_table(&table).await;
}

/// 16 distinct pseudo-random versions for `round` (a seeded LCG: reproducible).
fn distinct_versions(round: u64) -> Vec<Version> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ round;
    let mut physical = HashSet::new();
    while physical.len() < 16 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        physical.insert(1_000_000 * (round + 1) + (seed >> 40) % 100_000);
    }
    physical
        .into_iter()
        .map(|p| Version::new(p, 0, 1))
        .collect()
}

/// 16 writers with random versions race on one key, released together by a barrier;
/// the highest version ends stored, and every superseded writer was superseded by a
/// version at least its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_end_with_the_highest_version() {
    let table = table_name("race");
    let backend = Arc::new(connect(&table).await);
    let k = key("race/one");
    for round in 0..5u64 {
        let versions = distinct_versions(round);
        let highest = *versions.iter().max().unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(versions.len()));
        let tasks: Vec<_> = versions
            .iter()
            .map(|&v| {
                let (b, k, barrier) = (backend.clone(), k.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let r = Record::new(k, format!("written at {v}"), v);
                    (v, b.put(&r).await.expect("put"))
                })
            })
            .collect();
        for t in tasks {
            let (v, outcome) = t.await.unwrap();
            if v == highest {
                assert_eq!(outcome, PutOutcome::Applied, "the highest version's write");
            }
            if let PutOutcome::Superseded { stored } = outcome {
                assert!(stored >= v, "superseded by a lower version: {stored} < {v}");
            }
        }
        let stored = backend.get(&k).await.unwrap().expect("stored");
        assert_eq!(stored.version(), highest, "round {round}");
        assert_eq!(
            stored.value().as_ref(),
            format!("written at {highest}").as_bytes()
        );
    }
    drop(backend);
    drop_table(&table).await;
}

/// Keys that MariaDB's usual collations fold together (case, trailing spaces, accents,
/// `ß`/`s`/`ss`, composed/decomposed) stay distinct records, each listed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_collations_would_fold_stay_distinct() {
    let table = table_name("fold");
    let backend = connect(&table).await;
    let keys = [
        "fold/a",
        "fold/A",
        "fold/a ",
        "fold/a  ",
        "fold/é",
        "fold/e",
        "fold/E",
        "fold/e\u{301}",
        "fold/ß",
        "fold/ss",
        "fold/s",
        "fold/ǅ",
        "fold/Ǆ",
    ];
    for (i, k) in keys.iter().enumerate() {
        let r = Record::new(key(k), format!("value {i}"), Version::new(10, 0, 1));
        assert_eq!(backend.put(&r).await.unwrap(), PutOutcome::Applied, "{k:?}");
    }
    for (i, k) in keys.iter().enumerate() {
        let got = backend.get(&key(k)).await.unwrap().expect(k);
        assert_eq!(got.key().as_str(), *k);
        assert_eq!(
            got.value().as_ref(),
            format!("value {i}").as_bytes(),
            "{k:?}"
        );
    }
    let listed: Vec<String> = backend
        .list_all(&Prefix::new("fold").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.as_str().to_owned())
        .collect();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected, "byte order, each key once");
    // A stale write to a folded twin is judged against its own row only.
    let stale = Record::new(key("fold/A"), "x", Version::new(5, 0, 1));
    assert!(backend.put(&stale).await.unwrap().is_superseded());
    assert!(
        backend
            .purge(&key("fold/a "), Version::new(10, 0, 1))
            .await
            .unwrap()
    );
    assert!(backend.get(&key("fold/a ")).await.unwrap().is_none());
    assert!(backend.get(&key("fold/a")).await.unwrap().is_some());
    drop(backend);
    drop_table(&table).await;
}

/// The `mariadb` (or `mysql`) command-line client, an independent reader, finds what
/// mux wrote in the documented layout: column types, the key's bytes, the big-endian
/// version (so `ORDER BY version` is version order), the flags, tags, checksum and value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mariadb_client_reads_the_documented_layout() {
    let table = table_name("plain");
    let backend = connect(&table).await;
    let records = [
        Record::new(
            key("plain/b"),
            "hello, world",
            Version::new(0x0102_0304_0506, 7, 9),
        )
        .with_content_type("text/plain")
        .with_tag("class", "pii")
        .with_tag("owner", "ünï"),
        Record::new(
            key("plain/a"),
            "older",
            Version::new(0x0102_0304_0500, 0, 1),
        ),
        Record::tombstone(key("plain/c"), Version::new(0x0102_0304_0600, 0, 2)),
    ];
    for r in &records {
        backend.put(r).await.unwrap();
    }
    let opts = mysql_async::Opts::from_url(&url()).unwrap();
    let client = ["mariadb", "mysql"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("the mariadb client is installed (cargo xtask services up --install)");
    let query = |sql: &str| {
        let mut cmd = std::process::Command::new(client);
        cmd.args(["--batch", "--raw", "--skip-column-names", "--protocol=TCP"])
            .arg(format!("--host={}", opts.ip_or_hostname()))
            .arg(format!("--port={}", opts.tcp_port()))
            .arg(format!("--user={}", opts.user().unwrap_or("root")))
            .arg(format!("--database={}", opts.db_name().unwrap()))
            .args(["-e", sql]);
        if let Some(p) = opts.pass() {
            cmd.env("MYSQL_PWD", p);
        }
        let out = cmd.output().expect("run the client");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let types = query(&format!(
        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
    ));
    let types: Vec<(String, String)> = types
        .lines()
        .map(|l| {
            let (n, t) = l.split_once('\t').unwrap();
            (n.to_owned(), t.replace("int(10) unsigned", "int unsigned"))
        })
        .collect();
    let expected = [
        ("key", "varbinary(1024)"),
        ("version", "binary(16)"),
        ("tombstone", "tinyint(1)"),
        ("content_type", "varchar(256)"),
        ("tags", "longtext"), // MariaDB's JSON; MySQL says "json"
        ("checksum", "int unsigned"),
        ("value", "longblob"),
    ];
    for ((name, ty), (want_name, want_ty)) in types.iter().zip(expected) {
        assert_eq!(name, want_name);
        assert!(
            ty == want_ty || (want_name == "tags" && ty == "json"),
            "{name}: {ty}"
        );
    }
    assert_eq!(types.len(), expected.len(), "{types:?}");

    let rows = query(&format!(
        "SELECT `key`, HEX(version), tombstone, content_type, tags, checksum, value \
         FROM {table} ORDER BY version"
    ));
    let mut by_version = records.to_vec();
    by_version.sort_by_key(Record::version);
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 3, "{rows}");
    for (line, r) in lines.iter().zip(&by_version) {
        let f: Vec<&str> = line.split('\t').collect();
        let m = r.meta();
        assert_eq!(f[0], r.key().as_str());
        let hex: String = m
            .version
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(f[1], hex);
        assert_eq!(f[2], if m.tombstone { "1" } else { "0" });
        assert_eq!(f[3], m.content_type.as_deref().unwrap_or("NULL"));
        let tags: std::collections::BTreeMap<String, String> = serde_json::from_str(f[4]).unwrap();
        assert_eq!(tags, m.tags);
        assert_eq!(f[5], m.checksum.to_string());
        assert_eq!(f[6].as_bytes(), r.value().as_ref());
    }
    drop(backend);
    drop_table(&table).await;
}

/// Batches report one exact outcome per record: new keys and newer versions applied,
/// stale and repeated ones superseded with the stored version, duplicates within the
/// batch reduced to the highest; more than one statement's worth of rows too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_report_an_outcome_per_record() {
    let table = table_name("batch");
    let backend = connect(&table).await;
    let v = |p: u64| Version::new(p, 0, 1);
    backend
        .put(&Record::new(key("b/old"), "x", v(10)))
        .await
        .unwrap();
    backend
        .put(&Record::new(key("b/newer"), "x", v(10)))
        .await
        .unwrap();
    let batch = [
        Record::new(key("b/new"), "n", v(5)),
        Record::new(key("b/old"), "stale", v(9)),
        Record::new(key("b/newer"), "y", v(11)),
        Record::new(key("b/dup"), "low", v(3)),
        Record::new(key("b/dup"), "high", v(4)),
        Record::tombstone(key("b/gone"), v(2)),
    ];
    let outcomes = backend.put_batch(&batch).await.unwrap();
    assert_eq!(
        outcomes,
        [
            PutOutcome::Applied,
            PutOutcome::Superseded { stored: v(10) },
            PutOutcome::Applied,
            PutOutcome::Superseded { stored: v(4) },
            PutOutcome::Applied,
            PutOutcome::Applied,
        ]
    );
    // The same batch again: nothing applies; each is superseded by what is stored.
    let again = backend.put_batch(&batch).await.unwrap();
    let stored = [v(5), v(10), v(11), v(4), v(4), v(2)];
    for ((o, s), r) in again.iter().zip(stored).zip(&batch) {
        assert_eq!(*o, PutOutcome::Superseded { stored: s }, "{}", r.key());
    }
    assert_eq!(
        backend
            .get(&key("b/dup"))
            .await
            .unwrap()
            .unwrap()
            .value()
            .as_ref(),
        b"high"
    );
    assert!(
        backend
            .get(&key("b/gone"))
            .await
            .unwrap()
            .unwrap()
            .is_tombstone()
    );

    // 2,100 records: three statements in one transaction.
    let many: Vec<Record> = (0..2100)
        .map(|i| Record::new(key(&format!("many/k{i:05}")), format!("{i}"), v(20 + i % 2)))
        .collect();
    let outcomes = backend.put_batch(&many).await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_applied()));
    let page = backend
        .list(&ListRequest::new(Prefix::new("many").unwrap()).with_limit(5000))
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 2100);
    drop(backend);
    drop_table(&table).await;
}

/// Concurrent batches over the same keys in opposite orders neither deadlock (keys go
/// out in byte order) nor lose the highest version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_converge() {
    let table = table_name("batches");
    let backend = Arc::new(connect(&table).await);
    let keys: Vec<Key> = (0..50).map(|i| key(&format!("cb/k{i:02}"))).collect();
    let tasks: Vec<_> = (0..8u64)
        .map(|w| {
            let (b, keys) = (backend.clone(), keys.clone());
            tokio::spawn(async move {
                let mut batch: Vec<Record> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        // Writer w's version for key i; the highest per key varies.
                        let p = 100 + (w * 7 + i as u64 * 13) % 8;
                        Record::new(k.clone(), format!("{w}"), Version::new(p, 0, w as u32))
                    })
                    .collect();
                if w % 2 == 1 {
                    batch.reverse();
                }
                let outcomes = b.put_batch(&batch).await.expect("batch");
                (batch, outcomes)
            })
        })
        .collect();
    let mut highest: std::collections::HashMap<Key, Version> = Default::default();
    for t in tasks {
        let (batch, outcomes) = t.await.unwrap();
        for (r, o) in batch.iter().zip(outcomes) {
            let h = highest.entry(r.key().clone()).or_insert(r.version());
            *h = (*h).max(r.version());
            if let PutOutcome::Superseded { stored } = o {
                assert!(stored >= r.version());
            }
        }
    }
    for k in &keys {
        assert_eq!(
            backend.get(k).await.unwrap().unwrap().version(),
            highest[k],
            "{k}"
        );
    }
    drop(backend);
    drop_table(&table).await;
}

/// The server's `max_allowed_packet` sets `max_value_size`; a value of exactly that
/// size, with the longest key and the most and largest tags, round-trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_value_size_follows_max_allowed_packet() {
    let table = table_name("packet");
    let backend = connect(&table).await;
    let mut conn = raw().await;
    let packet: u64 = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .unwrap()
        .unwrap();
    conn.disconnect().await.unwrap();
    let max = backend.info().capability.max_value_size.unwrap();
    assert_eq!(max, packet as usize - mux_mysql::ROW_OVERHEAD);
    let long_key = format!("big/{}", "k".repeat(1020));
    let mut r = Record::new(
        key(&long_key),
        (0..max).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        Version::new(1, 0, 1),
    )
    .with_content_type("x".repeat(256));
    for t in 0..32 {
        r = r.with_tag(format!("{t:0>128}"), "\"\\".repeat(256));
    }
    assert_eq!(backend.put(&r).await.unwrap(), PutOutcome::Applied);
    assert_eq!(backend.get(r.key()).await.unwrap().unwrap(), r);
    let too_big = Record::new(key("big/over"), vec![0u8; max + 1], Version::new(1, 0, 1));
    let e = backend.put(&too_big).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    drop(backend);
    drop_table(&table).await;
}

/// A real deadlock and a real lock wait timeout, provoked with two raw connections,
/// come out of the crate's error mapping as temporary errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_deadlocks_and_lock_timeouts_are_temporary() {
    let table = table_name("locks");
    let backend = connect(&table).await;
    for k in ["l/a", "l/b"] {
        backend
            .put(&Record::new(key(k), "x", Version::new(1, 0, 1)))
            .await
            .unwrap();
    }
    let update = format!("UPDATE {table} SET checksum = checksum WHERE `key` = ?");
    let (mut one, mut two) = (raw().await, raw().await);
    one.query_drop("START TRANSACTION").await.unwrap();
    two.query_drop("START TRANSACTION").await.unwrap();
    one.exec_drop(&update, ("l/a",)).await.unwrap();
    two.exec_drop(&update, ("l/b",)).await.unwrap();
    // Each now wants the other's row: whichever InnoDB picks gets 1213 and is rolled
    // back, which lets the other finish.
    let (a, b) = tokio::join!(
        one.exec_drop(&update, ("l/b",)),
        two.exec_drop(&update, ("l/a",))
    );
    let errors: Vec<mysql_async::Error> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = mux_mysql::testing::map_error(errors.into_iter().next().unwrap());
    assert!(e.is_temporary(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    one.query_drop("ROLLBACK").await.unwrap();
    two.query_drop("ROLLBACK").await.unwrap();

    // A lock wait timeout (after one second on this session).
    one.query_drop("START TRANSACTION").await.unwrap();
    one.exec_drop(&update, ("l/a",)).await.unwrap();
    two.query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    let e = two.exec_drop(&update, ("l/a",)).await.unwrap_err();
    let e = mux_mysql::testing::map_error(e);
    assert!(e.is_temporary(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    one.query_drop("ROLLBACK").await.unwrap();
    one.disconnect().await.unwrap();
    two.disconnect().await.unwrap();
    drop(backend);
    drop_table(&table).await;
}

/// Several processes starting at once on a new table: the migration runs under the
/// server lock, every start succeeds and the schema version is recorded once. A table
/// whose recorded schema is newer than the crate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_under_a_lock() {
    let table = table_name("migrate");
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let t = table.clone();
            tokio::spawn(async move { connect(&t).await })
        })
        .collect();
    let mut backends = Vec::new();
    for s in starts {
        backends.push(s.await.unwrap());
    }
    let mut conn = raw().await;
    let version: Option<u32> = conn
        .exec_first(
            "SELECT version FROM mux_schema WHERE table_name = ?",
            (&table,),
        )
        .await
        .unwrap();
    assert_eq!(version, Some(mux_mysql::SCHEMA_VERSION));
    conn.exec_drop(
        "UPDATE mux_schema SET version = ? WHERE table_name = ?",
        (mux_mysql::SCHEMA_VERSION + 1, &table),
    )
    .await
    .unwrap();
    let e = MysqlBackend::connect("mysql", MysqlConfig::new(url()).with_table(&table))
        .await
        .unwrap_err();
    assert!(e.message().contains("newer than this mux-mysql"), "{e}");
    conn.disconnect().await.unwrap();
    drop(backends);
    drop_table(&table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_refused_clearly() {
    let e = MysqlBackend::connect("m", MysqlConfig::new(url()).with_table("x; drop table y"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("table name"), "{e}");
    let e = MysqlBackend::connect("m", MysqlConfig::new("mysql://root:pw@127.0.0.1:3306"))
        .await
        .unwrap_err();
    assert!(e.message().contains("names no database"), "{e}");
    assert!(!e.to_string().contains("pw"), "{e}");
    let e = MysqlBackend::connect("m", MysqlConfig::new("postgres://x/y"))
        .await
        .unwrap_err();
    assert!(e.message().contains("invalid MySQL URL"), "{e}");
    // Nothing listens on port 1: a temporary error naming the server, password hidden.
    let e = MysqlBackend::connect(
        "m",
        MysqlConfig::new("mysql://root:s3cret@127.0.0.1:1/test"),
    )
    .await
    .unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert!(e.to_string().contains("root:***@127.0.0.1:1"), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    // `mariadb://` works like `mysql://`.
    let table = table_name("scheme");
    let b = MysqlBackend::connect(
        "m",
        MysqlConfig::new(url().replacen("mysql://", "mariadb://", 1)).with_table(&table),
    )
    .await
    .unwrap();
    b.health().await.unwrap();
    drop(b);
    drop_table(&table).await;
}
