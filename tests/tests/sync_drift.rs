//! `mux_sync::verify` against drift made behind mux's back in real stores: 200 records
//! are written to two stores, then rows are edited with each store's OWN client —
//! PostgreSQL with SQL (tokio-postgres), Redis with `DEL`/`SET`/`SETRANGE` (the redis crate), S3
//! by deleting objects and replacing metadata (boto3 from the services venv, else the
//! AWS SDK client) — and verify must report exactly those keys, with their kinds;
//! verify with `repair` converges them, and a second verify finds nothing.
//!
//! Verify descends by digests (`use_digests`, small leaves), so PostgreSQL's native
//! aggregate is compared with memory's native digest and with Redis's listing-based
//! one on real data.
//!
//! PostgreSQL and Redis are required (the tests fail when they are unreachable: `cargo
//! xtask services up`); S3 (the local moto server, `MUX_S3_ENDPOINT`) is required when
//! `MUX_REQUIRE` names `s3` (as CI does) and otherwise reported skipped. Every run writes
//! under a prefix of its own (process id and time) and removes what it wrote.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use mux::postgres::{PostgresBackend, PostgresConfig};
use mux::redis::{RedisBackend, RedisConfig};
use mux::s3::S3Backend;
use mux::{Backend, BackendExt, Key, MemoryBackend, Prefix, Record, Version};
use mux_sync::{DivergenceKind, VerifyOptions, VerifyReport, verify};

/// The table the PostgreSQL test writes to (rows under its run's prefix only).
const PG_TABLE: &str = "mux_sync_drift";
/// The Redis namespace of the Redis test (keys under its run's prefix only).
const REDIS_NAMESPACE: &str = "mux-sync-drift";

/// A prefix no other run shares: the process id and the time.
fn run_prefix(store: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("drift/{store}-{}-{nanos}", std::process::id())
}

fn required(name: &str) -> bool {
    std::env::var("MUX_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|b| b.trim() == name)
}

/// The key of record `i` under `prefix`: some keys are multibyte UTF-8.
fn key_of(prefix: &str, i: usize) -> Key {
    let k = if i % 10 == 3 {
        format!("{prefix}/zürich-{i:03}")
    } else {
        format!("{prefix}/k{i:03}")
    };
    Key::new(k).unwrap()
}

fn version(i: usize) -> Version {
    Version::new(1_700_000_000_000 + i as u64, (i % 3) as u32, 1)
}

/// 200 records: tagged ones, ones with a content type, and a few tombstones.
fn records(prefix: &str) -> Vec<Record> {
    (0..200)
        .map(|i| {
            let key = key_of(prefix, i);
            match i % 25 {
                0 => Record::tombstone(key, version(i)),
                1 | 7 => Record::new(key, format!("value {i}"), version(i))
                    .with_tag("class", "pii")
                    .with_tag("city", "Zürich"),
                2 => Record::new(key, format!("{{\"n\":{i}}}"), version(i))
                    .with_content_type("application/json"),
                _ => Record::new(key, format!("value {i}"), version(i)),
            }
        })
        .collect()
}

/// Digest descent down to small leaves, so the stores' digests do the finding.
fn options() -> VerifyOptions {
    VerifyOptions {
        use_digests: Some(true),
        leaf_size: 8,
        fanout: 4,
        ..VerifyOptions::default()
    }
}

/// The divergent keys a report lists, with their kinds.
fn found(report: &VerifyReport) -> BTreeMap<String, DivergenceKind> {
    report
        .sample
        .iter()
        .map(|d| (d.key.as_str().to_owned(), d.kind))
        .collect()
}

/// Verifies (by digests, then by listing: both must find exactly `expected`), repairs,
/// and verifies again.
async fn find_and_repair(
    stores: &[Arc<dyn Backend>],
    prefix: &str,
    expected: &BTreeMap<String, DivergenceKind>,
) {
    let prefix = Prefix::new(prefix).unwrap();
    let report = verify(stores, prefix.clone(), &options()).await.unwrap();
    assert_eq!(report.mode, "digest");
    assert_eq!(&found(&report), expected, "{report:#?}");
    assert_eq!(report.divergent, expected.len() as u64, "{report:#?}");
    let count = |kind| expected.values().filter(|k| **k == kind).count() as u64;
    assert_eq!(report.missing, count(DivergenceKind::Missing));
    assert_eq!(
        report.version_differs,
        count(DivergenceKind::VersionDiffers)
    );
    assert_eq!(
        report.tombstone_one_side,
        count(DivergenceKind::TombstoneOneSide)
    );
    // The digests narrowed the search: far fewer entries listed than the stores hold.
    assert!(report.listed < 200, "listed {}: {report:#?}", report.listed);

    let listing = VerifyOptions {
        use_digests: Some(false),
        ..VerifyOptions::default()
    };
    let by_listing = verify(stores, prefix.clone(), &listing).await.unwrap();
    assert_eq!(by_listing.mode, "listing");
    assert_eq!(&found(&by_listing), expected, "{by_listing:#?}");

    // Repair in the default mode: by digests when every store computes them natively
    // (memory + PostgreSQL), else by listing (a listing-based digest reads as much).
    let repair = VerifyOptions {
        repair: true,
        ..VerifyOptions::default()
    };
    let repaired = verify(stores, prefix.clone(), &repair).await.unwrap();
    assert_eq!(repaired.repaired, expected.len() as u64, "{repaired:#?}");
    assert_eq!(repaired.repair_failed, 0, "{repaired:#?}");

    let after = verify(stores, prefix.clone(), &options()).await.unwrap();
    assert!(after.is_consistent(), "{after:#?}");
    assert_eq!(after.divergent, 0);
    let after = verify(stores, prefix, &listing).await.unwrap();
    assert!(after.is_consistent(), "{after:#?}");
}

/// Runs `body`, then `cleanup` whatever happened, then re-raises any panic.
async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let outcome = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn postgres() -> Arc<PostgresBackend> {
    let config = PostgresConfig::new(mux_tests::postgres_url()).with_table(PG_TABLE);
    Arc::new(
        PostgresBackend::connect("postgres", config)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required (cargo xtask services up): {e}")),
    )
}

async fn pg_cleanup(prefix: String) {
    mux_tests::pg_client()
        .await
        .execute(
            &format!("DELETE FROM {PG_TABLE} WHERE starts_with(key, $1)"),
            &[&format!("{prefix}/")],
        )
        .await
        .expect("remove the run's rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drift_made_with_sql_is_found_and_repaired() {
    let prefix = run_prefix("pg");
    let body = {
        let prefix = prefix.clone();
        async move {
            let memory = Arc::new(MemoryBackend::new("memory"));
            let pg = postgres().await;
            let records = records(&prefix);
            memory.put_batch(&records).await.unwrap();
            pg.put_batch(&records).await.unwrap();
            let stores: Vec<Arc<dyn Backend>> = vec![memory.clone(), pg.clone()];
            // Both compute digests natively, so verify descends by digests by default.
            let clean = verify(
                &stores,
                Prefix::new(&prefix).unwrap(),
                &VerifyOptions::default(),
            )
            .await
            .unwrap();
            assert_eq!(clean.mode, "digest");
            assert!(clean.is_consistent(), "{clean:#?}");
            assert_eq!(clean.checked, 200);

            // Drift, with SQL: two rows deleted, one set back to an older version, one
            // tombstoned at a newer version (a delete only PostgreSQL saw), and one
            // tombstone row that only PostgreSQL holds.
            let k = |i| key_of(&prefix, i).as_str().to_owned();
            let extra = format!("{prefix}/only-in-postgres");
            let client = mux_tests::pg_client().await;
            let deleted = client
                .execute(
                    &format!("DELETE FROM {PG_TABLE} WHERE key = ANY($1)"),
                    &[&vec![k(17), k(123)]],
                )
                .await
                .unwrap();
            assert_eq!(deleted, 2);
            let older = Version::new(1, 0, 1).to_string();
            let n = client
                .execute(
                    &format!("UPDATE {PG_TABLE} SET version = $2 WHERE key = $1"),
                    &[&k(64), &older],
                )
                .await
                .unwrap();
            assert_eq!(n, 1);
            let newer = Version::new(1_800_000_000_000, 0, 2).to_string();
            let n = client
                .execute(
                    &format!(
                        "UPDATE {PG_TABLE} SET version = $2, tombstone = true, value = ''::bytea, \
                         checksum = 0, content_type = NULL, tags = '{{}}' WHERE key = $1"
                    ),
                    &[&k(152), &newer],
                )
                .await
                .unwrap();
            assert_eq!(n, 1);
            client
                .execute(
                    &format!(
                        "INSERT INTO {PG_TABLE} (key, value, version, tombstone, tags, checksum) \
                         VALUES ($1, ''::bytea, $2, true, '{{}}', 0)"
                    ),
                    &[&extra, &newer],
                )
                .await
                .unwrap();
            let expected = BTreeMap::from([
                (k(17), DivergenceKind::Missing),
                (k(123), DivergenceKind::Missing),
                (extra.clone(), DivergenceKind::Missing),
                (k(64), DivergenceKind::VersionDiffers),
                (k(152), DivergenceKind::TombstoneOneSide),
            ]);
            find_and_repair(&stores, &prefix, &expected).await;

            // Converged to the highest versions, on both sides.
            let row = client
                .query_one(
                    &format!("SELECT version FROM {PG_TABLE} WHERE key = $1"),
                    &[&k(64)],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, String>(0), version(64).to_string());
            let gone = memory.get(&key_of(&prefix, 152)).await.unwrap().unwrap();
            assert!(gone.is_tombstone());
            assert_eq!(gone.version().to_string(), newer);
            let extra = memory
                .get(&Key::new(&extra).unwrap())
                .await
                .unwrap()
                .unwrap();
            assert!(extra.is_tombstone());
            assert_eq!(
                pg.list_all(&Prefix::new(&prefix).unwrap())
                    .await
                    .unwrap()
                    .len(),
                201
            );
        }
    };
    with_cleanup(body, pg_cleanup(prefix)).await;
}

fn redis_record_key(key: &str) -> String {
    format!("{REDIS_NAMESPACE}:r:{key}")
}

async fn redis_cleanup(prefix: String) {
    let mut conn = mux_tests::redis_conn().await;
    let index = format!("{REDIS_NAMESPACE}:idx");
    let under = Prefix::new(format!("{prefix}/")).unwrap();
    let end = under.scan_end().expect("a prefix ending in '/' has an end");
    let keys: Vec<String> = redis::cmd("ZRANGEBYLEX")
        .arg(&index)
        .arg(format!("[{}", under.as_str()))
        .arg(format!("({end}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for k in &keys {
        let () = redis::cmd("DEL")
            .arg(redis_record_key(k))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: i64 = redis::cmd("ZREMRANGEBYLEX")
        .arg(&index)
        .arg(format!("[{}", under.as_str()))
        .arg(format!("({end}"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_drift_made_with_redis_commands_is_found_and_repaired() {
    let prefix = run_prefix("redis");
    let body = {
        let prefix = prefix.clone();
        async move {
            let pg = postgres().await;
            let redis = Arc::new(
                RedisBackend::connect(
                    "redis",
                    RedisConfig::new(mux_tests::redis_url()).with_namespace(REDIS_NAMESPACE),
                )
                .await
                .unwrap_or_else(|e| panic!("Redis is required (cargo xtask services up): {e}")),
            );
            redis
                .health()
                .await
                .expect("Redis is required (cargo xtask services up)");
            let records = records(&prefix);
            pg.put_batch(&records).await.unwrap();
            redis.put_batch(&records).await.unwrap();
            // PostgreSQL's native digests against Redis's listing-based ones.
            let stores: Vec<Arc<dyn Backend>> = vec![pg.clone(), redis.clone()];
            let clean = verify(&stores, Prefix::new(&prefix).unwrap(), &options())
                .await
                .unwrap();
            assert!(clean.is_consistent(), "{clean:#?}");
            assert_eq!(clean.checked, 200);
            assert_eq!(clean.listed, 0, "agreeing stores exchange digests only");

            // Drift, with Redis commands: a record's hash deleted (its index entry
            // stays), a version set back, a tombstone at a newer version (a delete only
            // Redis saw), and a tombstone only Redis holds.
            let k = |i| key_of(&prefix, i).as_str().to_owned();
            let extra = format!("{prefix}/only-in-redis");
            let older = Version::new(1, 0, 1).to_string();
            let newer = Version::new(1_800_000_000_000, 0, 2).to_string();
            let mut conn = mux_tests::redis_conn().await;
            let removed: i64 = redis::cmd("DEL")
                .arg(redis_record_key(&k(33)))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(removed, 1);
            // A record is one string: its metadata's JSON, whose version starts at byte
            // 12 (`{"version":"`), a newline, the value.
            let _: i64 = redis::cmd("SETRANGE")
                .arg(redis_record_key(&k(101)))
                .arg(12)
                .arg(&older)
                .query_async(&mut conn)
                .await
                .unwrap();
            let tombstone =
                format!("{{\"version\":\"{newer}\",\"tombstone\":true,\"checksum\":0}}\n");
            for at in [k(188), extra.clone()] {
                let () = redis::cmd("SET")
                    .arg(redis_record_key(&at))
                    .arg(&tombstone)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            let _: i64 = redis::cmd("ZADD")
                .arg(format!("{REDIS_NAMESPACE}:idx"))
                .arg(0)
                .arg(&extra)
                .query_async(&mut conn)
                .await
                .unwrap();
            let expected = BTreeMap::from([
                (k(33), DivergenceKind::Missing),
                (extra.clone(), DivergenceKind::Missing),
                (k(101), DivergenceKind::VersionDiffers),
                (k(188), DivergenceKind::TombstoneOneSide),
            ]);
            find_and_repair(&stores, &prefix, &expected).await;

            let v: String = redis::cmd("GETRANGE")
                .arg(redis_record_key(&k(101)))
                .arg(12)
                .arg(45)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(v, version(101).to_string());
            let restored = redis.get(&key_of(&prefix, 33)).await.unwrap().unwrap();
            assert_eq!(restored.version(), version(33));
            let gone = pg.get(&key_of(&prefix, 188)).await.unwrap().unwrap();
            assert!(gone.is_tombstone());
            assert!(pg.get(&Key::new(&extra).unwrap()).await.unwrap().is_some());
        }
    };
    let cleanup = {
        let prefix = prefix.clone();
        async move {
            redis_cleanup(prefix.clone()).await;
            pg_cleanup(prefix).await;
        }
    };
    with_cleanup(body, cleanup).await;
}

/// Deletes `deleted` and sets the `mux_version` of `stale` to `older` (boto3).
const BOTO3_DRIFT: &str = r#"
import json, sys, boto3
endpoint, region, key_id, secret, bucket, stale, older, *deleted = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                  aws_access_key_id=key_id, aws_secret_access_key=secret)
for key in deleted:
    s3.delete_object(Bucket=bucket, Key=key)
head = s3.head_object(Bucket=bucket, Key=stale)
meta = dict(head["Metadata"])
meta["mux_version"] = older
s3.copy_object(Bucket=bucket, Key=stale, CopySource={"Bucket": bucket, "Key": stale},
               Metadata=meta, MetadataDirective="REPLACE", ContentType=head["ContentType"])
print(json.dumps({"deleted": len(deleted)}))
"#;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// The same drift as [`BOTO3_DRIFT`] through the AWS SDK client (no Python here).
async fn sdk_drift(s3: &S3Backend, stale: &str, older: &str, deleted: &[String]) {
    let bucket = &s3.config().bucket;
    let client = s3.client();
    for key in deleted {
        client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    let head = client
        .head_object()
        .bucket(bucket)
        .key(stale)
        .send()
        .await
        .unwrap();
    let mut meta = head.metadata().cloned().unwrap_or_default();
    meta.insert("mux_version".into(), older.into());
    client
        .copy_object()
        .bucket(bucket)
        .key(stale)
        .copy_source(format!("{bucket}/{stale}"))
        .set_metadata(Some(meta))
        .metadata_directive("REPLACE".into())
        .content_type(head.content_type().unwrap_or("application/octet-stream"))
        .send()
        .await
        .unwrap();
}

/// Removes every object of the run's bucket, then the bucket.
async fn s3_cleanup(s3: Arc<S3Backend>) {
    let bucket = s3.config().bucket.clone();
    let client = s3.client();
    loop {
        let page = client
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .expect("list the run's bucket");
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        if keys.is_empty() {
            break;
        }
        for key in keys {
            client
                .delete_object()
                .bucket(&bucket)
                .key(key)
                .send()
                .await
                .expect("delete an object of the run");
        }
    }
    client
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete the run's bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_drift_made_with_an_s3_client_is_found_and_repaired() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bucket = format!("mux-drift-{}-{}", std::process::id(), nanos % 1_000_000_000);
    let s3 = match S3Backend::connect("s3", mux_tests::s3_config(&bucket)).await {
        Ok(s3) => Arc::new(s3),
        Err(e) if e.is_temporary() && !required("s3") => {
            println!(
                "skipped: the S3 server at {} is not reachable ({e}); start it with \
                 `cargo xtask services up` (required when MUX_REQUIRE names s3)",
                mux_tests::s3_endpoint()
            );
            return;
        }
        Err(e) => panic!(
            "the S3 server at {} is required (cargo xtask services up): {e}",
            mux_tests::s3_endpoint()
        ),
    };
    let prefix = run_prefix("s3");
    let body = {
        let s3 = s3.clone();
        async move {
            let memory = Arc::new(MemoryBackend::new("memory"));
            let records = records(&prefix);
            memory.put_batch(&records).await.unwrap();
            s3.put_batch(&records).await.unwrap();
            let stores: Vec<Arc<dyn Backend>> = vec![memory.clone(), s3.clone()];

            // Drift, with an S3 client: two objects deleted (one with a multibyte
            // key), one object's version metadata set back.
            let k = |i| key_of(&prefix, i).as_str().to_owned();
            let stale = k(90);
            let older = Version::new(1, 0, 1).to_string();
            let deleted = vec![s3.object_key(&k(13)), s3.object_key(&k(140))];
            let python = mux_tests::python();
            if std::path::Path::new(&python).exists() {
                let out = std::process::Command::new(&python)
                    .arg("-c")
                    .arg(BOTO3_DRIFT)
                    .args([
                        mux_tests::s3_endpoint(),
                        env("MUX_S3_REGION", "us-east-1"),
                        env("MUX_S3_ACCESS_KEY_ID", "test"),
                        env("MUX_S3_SECRET_ACCESS_KEY", "test"),
                        s3.config().bucket.clone(),
                        s3.object_key(&stale),
                        older.clone(),
                    ])
                    .args(&deleted)
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
                assert!(
                    out.status.success(),
                    "{python} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            } else {
                sdk_drift(&s3, &s3.object_key(&stale), &older, &deleted).await;
            }
            let expected = BTreeMap::from([
                (k(13), DivergenceKind::Missing),
                (k(140), DivergenceKind::Missing),
                (stale.clone(), DivergenceKind::VersionDiffers),
            ]);
            find_and_repair(&stores, &prefix, &expected).await;

            let back = s3.get(&key_of(&prefix, 13)).await.unwrap().unwrap();
            assert_eq!(back.version(), version(13));
            assert_eq!(back.value(), "value 13".as_bytes());
            let fixed = s3.get(&Key::new(&stale).unwrap()).await.unwrap().unwrap();
            assert_eq!(fixed.version(), version(90));
        }
    };
    with_cleanup(body, s3_cleanup(s3)).await;
}
