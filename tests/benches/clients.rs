//! `cargo xtask bench clients`: mux against what a Rust user would pick instead of it for
//! one store, and against each store's own client, on the same local servers in one run.
//!
//! For every store, 32 concurrent tasks, 1 KiB values, a fixed set of keys written before
//! the rounds (so the reads find values and the writes update existing keys), rows in
//! alternating rounds (`mux_tests::bench::alternate`):
//!
//! - Redis: mux (a `Mux` over mux-redis) against the redis crate on one multiplexed
//!   connection (`GET`/`SET` of a string) and OpenDAL's redis service; to show where the
//!   difference goes, the redis crate sending mux's commands itself (`GET` of mux's own
//!   record strings, `SET` of the same bytes); and mux writing the hash layout
//!   (`layout = "hash"`) against its default string layout;
//! - PostgreSQL: mux (mux-postgres, pool 16) against a prepared tokio-postgres
//!   `SELECT value` / upsert through a deadpool pool of the same size, and OpenDAL's
//!   postgresql service (sqlx; its default pool). The raw and OpenDAL reads read mux's
//!   own table (the same rows); their writes go to a `key, value` table of their own;
//! - S3 (moto) and Azure Blob (Azurite): mux against `object_store`; both read the same
//!   objects (mux stores the value as the object's body); object_store writes its own.
//!
//! mux runs as a user runs it: a `Mux` with one route over the store, every layer on
//! (the default configuration). Its read returns the value with its version, checksum
//! and metadata checked; its write is conditional on the stored version (where the
//! others overwrite blindly). Ratios `mux_<store>_<get|put>_vs_<alternative>`.
//!
//! Needs the servers of `cargo xtask services up`; the bench fails naming a missing one.
//! `MUX_BENCH_ONLY=redis,postgres,s3,azure` (any of them) limits the run, to profile one.

use std::sync::Arc;

use mux::{Backend, Bytes, Key, Mux, ReadPolicy, Role, RouteConfig, WriteConsistency};
use mux_tests::bench::{MakeOp, Row, alternate, write_json};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as ObjectPath};

const CONCURRENCY: usize = 32;
const ROUNDS: usize = 3;
/// Redis's rows take a tenth of a second a round: more rounds steady their medians.
const REDIS_ROUNDS: usize = 9;

/// The rows and ratios of every comparison.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    ratios: Vec<(&'static str, f64)>,
}

impl Report {
    /// Runs `rows` (`rounds` alternating rounds of `per` operations each) and records
    /// each `(ratio, row a, row b)` as a's throughput over b's.
    async fn compare(
        &mut self,
        rows: &[(&'static str, MakeOp)],
        rounds: usize,
        per: usize,
        ratios: &[(&'static str, usize, usize)],
    ) {
        let medians = alternate(rows, rounds, per, CONCURRENCY).await;
        for &(name, a, b) in ratios {
            self.ratios
                .push((name, medians[a].ops_per_sec / medians[b].ops_per_sec));
        }
        self.rows.extend(medians);
    }
}

/// A row whose operation is `op(i)` in every round (the keys are fixed).
fn row<F, Fut>(op: F) -> MakeOp
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    Box::new(move |_round| {
        let op = op.clone();
        Arc::new(move |i| Box::pin(op(i)))
    })
}

/// A `Mux` with one route over `store`, as a user of one store would build it.
fn single(store: Arc<dyn Backend>) -> Mux {
    let name = store.info().name.clone();
    Mux::builder()
        .backend(store)
        .default_route(
            RouteConfig::new("")
                .backend(name.to_string(), Role::Primary)
                .write(WriteConsistency::All)
                .read(ReadPolicy::Primary),
        )
        .build()
        .expect("a one-store Mux")
}

fn keys(n: usize) -> Arc<Vec<Key>> {
    Arc::new(
        (0..n)
            .map(|i| Key::new(format!("bench/clients/k{i:04}")).unwrap())
            .collect(),
    )
}

/// mux's get and put rows over `mux` on `keys` (rows 0 and 1 of every comparison).
fn mux_rows(
    store: &'static str,
    mux: &Mux,
    keys: &Arc<Vec<Key>>,
    value: &Bytes,
) -> [(&'static str, MakeOp); 2] {
    let names: [&'static str; 2] = match store {
        "redis" => ["mux_redis_get", "mux_redis_put"],
        "redis_hash" => ["mux_redis_hash_get", "mux_redis_hash_put"],
        "postgres" => ["mux_pg_get", "mux_pg_put"],
        "s3" => ["mux_s3_get", "mux_s3_put"],
        _ => ["mux_azure_get", "mux_azure_put"],
    };
    let (m, k) = (mux.clone(), keys.clone());
    let get = row(move |i| {
        let (m, key) = (m.clone(), k[i % k.len()].clone());
        async move {
            let record = m.get(&key).await.expect("mux get").expect("written");
            assert_eq!(record.value().len(), 1024);
        }
    });
    let (m, k, v) = (mux.clone(), keys.clone(), value.clone());
    let put = row(move |i| {
        let (m, key, v) = (m.clone(), k[i % k.len()].clone(), v.clone());
        async move {
            m.put(key, v).await.expect("mux put");
        }
    });
    [(names[0], get), (names[1], put)]
}

async fn fill(mux: &Mux, keys: &[Key], value: &Bytes) {
    for key in keys {
        mux.put(key.clone(), value.clone()).await.expect("fill");
    }
}

fn main() {
    // Both ring (mux) and aws-lc-rs (object_store) are built in: name the provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let mut report = Report::default();
        let value = Bytes::from(vec![b'v'; 1024]);
        let run = format!("bc{}", std::process::id());
        // `MUX_BENCH_ONLY=redis,postgres` runs some stores only (to profile one).
        let only = std::env::var("MUX_BENCH_ONLY").unwrap_or_default();
        let on = |store: &str| only.is_empty() || only.split(',').any(|s| s.trim() == store);
        if on("redis") {
            redis(&mut report, &run, &value).await;
        }
        if on("postgres") {
            postgres(&mut report, &run, &value).await;
        }
        if on("s3") {
            s3(&mut report, &value).await;
        }
        if on("azure") {
            azure(&mut report, &value).await;
        }
        write_json("clients", &report.rows, &report.ratios);
    });
}

async fn redis(report: &mut Report, run: &str, value: &Bytes) {
    const KEYS: usize = 1_000;
    let url = mux_tests::redis_url();
    let store = mux::redis::RedisBackend::connect(
        "redis",
        mux::redis::RedisConfig::new(&url).with_namespace(run),
    )
    .await
    .expect("Redis (cargo xtask services up)");
    let store: Arc<dyn Backend> = Arc::new(store);
    let mux = single(store.clone());
    let keys = keys(KEYS);
    fill(&mux, &keys, value).await;
    let hash_store = mux::redis::RedisBackend::connect(
        "redis",
        mux::redis::RedisConfig::new(&url)
            .with_namespace(format!("{run}-hash"))
            .with_layout(mux::redis::Layout::Hash),
    )
    .await
    .expect("Redis (cargo xtask services up)");
    let hash_store: Arc<dyn Backend> = Arc::new(hash_store);
    let hash_mux = single(hash_store.clone());
    fill(&hash_mux, &keys, value).await;
    let conn = mux_tests::redis_conn().await;
    let raw_keys: Arc<Vec<String>> =
        Arc::new((0..KEYS).map(|i| format!("{run}:raw:k{i:04}")).collect());
    for k in raw_keys.iter() {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(value.as_ref())
            .query_async(&mut conn.clone())
            .await
            .unwrap();
    }
    let opendal = opendal::Operator::new(
        opendal::services::Redis::default()
            .endpoint(&url.replace("redis://", "tcp://"))
            .root(&format!("/{run}-opendal/")),
    )
    .expect("OpenDAL redis");
    let od_paths: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("k{i:04}")).collect());
    for p in od_paths.iter() {
        opendal.write(p, value.clone()).await.expect("OpenDAL fill");
    }

    let [mux_get, mux_put] = mux_rows("redis", &mux, &keys, value);
    let (c, k) = (conn.clone(), raw_keys.clone());
    let raw_get = row(move |i| {
        let (mut c, key) = (c.clone(), k[i % k.len()].clone());
        async move {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(v.len(), 1024);
        }
    });
    let (c, k, v) = (conn.clone(), raw_keys.clone(), value.clone());
    let raw_set = row(move |i| {
        let (mut c, key, v) = (c.clone(), k[i % k.len()].clone(), v.clone());
        async move {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(v.as_ref())
                .query_async(&mut c)
                .await
                .unwrap();
        }
    });
    let [od_get, od_put] = opendal_rows("redis", &opendal, &od_paths, value);
    let [record_get, record_set] = record_rows(run, &conn, &keys).await;
    let [hash_get, hash_put] = mux_rows("redis_hash", &hash_mux, &keys, value);
    let rows = [
        mux_get,
        mux_put,
        ("redis_raw_get", raw_get),
        ("redis_raw_set", raw_set),
        od_get,
        od_put,
        ("redis_raw_record_get", record_get),
        ("redis_raw_record_set", record_set),
        hash_get,
        hash_put,
    ];
    report
        .compare(
            &rows,
            REDIS_ROUNDS,
            20_000,
            &[
                ("mux_redis_get_vs_raw", 0, 2),
                ("mux_redis_put_vs_raw", 1, 3),
                ("mux_redis_get_vs_opendal", 0, 4),
                ("mux_redis_put_vs_opendal", 1, 5),
                // Where the difference to the raw client goes: mux's own cost over the
                // commands it sends (a record's string is its metadata and the value),
                // and what the string layout gains over the hash one.
                ("mux_redis_get_vs_raw_record_get", 0, 6),
                ("redis_raw_record_get_vs_raw_get", 6, 2),
                ("mux_redis_put_vs_raw_record_set", 1, 7),
                ("redis_raw_record_set_vs_raw_set", 7, 3),
                ("mux_redis_get_string_vs_hash", 0, 8),
                ("mux_redis_put_string_vs_hash", 1, 9),
            ],
        )
        .await;
    // Remove this run's keys.
    let mut c = conn.clone();
    let mut doomed: Vec<String> = raw_keys.to_vec();
    doomed.extend((0..KEYS).map(|i| record_key(run, i)));
    doomed.extend(od_paths.iter().map(|p| format!("{run}-opendal/{p}")));
    for chunk in doomed.chunks(500) {
        let _: () = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    purge(&store, &keys).await;
    purge(&hash_store, &keys).await;
}

/// The key the raw record `SET` row writes for key `i`.
fn record_key(run: &str, i: usize) -> String {
    format!("{run}:raw-record:k{i:04}")
}

/// Rows of the redis crate sending mux-redis's commands itself: `GET` of mux's own
/// record strings (the command a mux read sends), and an unconditional `SET` of the
/// string mux stored for the first key, on keys of its own, where mux runs its
/// compare-and-set script. mux's ratios over these are its own cost; theirs over
/// `GET`/`SET` of the bare value are the metadata's.
async fn record_rows(
    run: &str,
    conn: &redis::aio::MultiplexedConnection,
    keys: &Arc<Vec<Key>>,
) -> [MakeOp; 2] {
    let records: Arc<Vec<String>> = Arc::new(
        keys.iter()
            .map(|k| format!("{run}:r:{}", k.as_str()))
            .collect(),
    );
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&records[0])
        .query_async(&mut conn.clone())
        .await
        .expect("mux's first record, as stored");
    let (c, r) = (conn.clone(), records.clone());
    let get = row(move |i| {
        let (mut c, record) = (c.clone(), r[i % r.len()].clone());
        async move {
            let string: Vec<u8> = redis::cmd("GET")
                .arg(record)
                .query_async(&mut c)
                .await
                .unwrap();
            assert!(string.len() > 1024);
        }
    });
    let own: Arc<Vec<String>> = Arc::new((0..keys.len()).map(|i| record_key(run, i)).collect());
    let (c, stored) = (conn.clone(), Bytes::from(stored));
    let set = row(move |i| {
        let (mut c, key, stored) = (c.clone(), own[i % own.len()].clone(), stored.clone());
        async move {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(stored.as_ref())
                .query_async(&mut c)
                .await
                .unwrap();
        }
    });
    [get, set]
}

/// Removes mux's records of `keys` from `store`.
async fn purge(store: &Arc<dyn Backend>, keys: &[Key]) {
    for key in keys {
        store
            .purge(key, mux::Version::new(u64::MAX, 0, 0))
            .await
            .expect("purge");
    }
}

/// OpenDAL's read and write rows on `paths`.
fn opendal_rows(
    store: &'static str,
    op: &opendal::Operator,
    paths: &Arc<Vec<String>>,
    value: &Bytes,
) -> [(&'static str, MakeOp); 2] {
    let names: [&'static str; 2] = match store {
        "redis" => ["opendal_redis_read", "opendal_redis_write"],
        _ => ["opendal_pg_read", "opendal_pg_write"],
    };
    let (o, p) = (op.clone(), paths.clone());
    let get = row(move |i| {
        let (o, path) = (o.clone(), p[i % p.len()].clone());
        async move {
            let v = o.read(&path).await.expect("OpenDAL read");
            assert_eq!(v.len(), 1024);
        }
    });
    let (o, p, v) = (op.clone(), paths.clone(), value.clone());
    let put = row(move |i| {
        let (o, path, v) = (o.clone(), p[i % p.len()].clone(), v.clone());
        async move {
            o.write(&path, v).await.expect("OpenDAL write");
        }
    });
    [(names[0], get), (names[1], put)]
}

async fn postgres(report: &mut Report, run: &str, value: &Bytes) {
    const KEYS: usize = 1_000;
    const POOL: usize = 16;
    let table = format!("mux_bench_{run}");
    let own = format!("mux_bench_{run}_raw");
    let opendal_table = format!("mux_bench_{run}_opendal");
    let url = mux_tests::postgres_url();
    let store = mux::postgres::PostgresBackend::connect(
        "postgres",
        mux::postgres::PostgresConfig::new(&url)
            .with_table(&table)
            .with_pool_size(POOL),
    )
    .await
    .expect("PostgreSQL (cargo xtask services up)");
    let mux = single(Arc::new(store));
    let keys = keys(KEYS);
    fill(&mux, &keys, value).await;

    let admin = mux_tests::pg_client().await;
    for t in [&own, &opendal_table] {
        admin
            .batch_execute(&format!(
                "CREATE TABLE {t} (key text PRIMARY KEY, value bytea NOT NULL)"
            ))
            .await
            .unwrap();
    }
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(url.clone());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(POOL));
    let pool = cfg
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .unwrap();
    let select = Arc::new(format!("SELECT value FROM {table} WHERE key = $1"));
    let upsert = Arc::new(format!(
        "INSERT INTO {own} (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    ));
    let (p, s, k) = (pool.clone(), select.clone(), keys.clone());
    let raw_get = row(move |i| {
        let (p, s, key) = (p.clone(), s.clone(), k[i % k.len()].clone());
        async move {
            let client = p.get().await.unwrap();
            let stmt = client.prepare_cached(&s).await.unwrap();
            let row = client.query_one(&stmt, &[&key.as_str()]).await.unwrap();
            let v: &[u8] = row.get(0);
            assert_eq!(v.len(), 1024);
        }
    });
    let (p, u, k, v) = (pool.clone(), upsert.clone(), keys.clone(), value.clone());
    let raw_put = row(move |i| {
        let (p, u, key, v) = (p.clone(), u.clone(), k[i % k.len()].clone(), v.clone());
        async move {
            let client = p.get().await.unwrap();
            let stmt = client.prepare_cached(&u).await.unwrap();
            client
                .execute(&stmt, &[&key.as_str(), &v.as_ref()])
                .await
                .unwrap();
        }
    });
    // OpenDAL reads mux's rows (key and value columns) and writes to its own table.
    let od_read = opendal::Operator::new(
        opendal::services::Postgresql::default()
            .connection_string(&url)
            .table(&table)
            .key_field("key")
            .value_field("value"),
    )
    .expect("OpenDAL postgresql");
    let od_write = opendal::Operator::new(
        opendal::services::Postgresql::default()
            .connection_string(&url)
            .table(&opendal_table)
            .key_field("key")
            .value_field("value"),
    )
    .expect("OpenDAL postgresql");
    let paths: Arc<Vec<String>> = Arc::new(keys.iter().map(|k| k.as_str().to_owned()).collect());
    let [od_get, _] = opendal_rows("postgres", &od_read, &paths, value);
    let [_, od_put] = opendal_rows("postgres", &od_write, &paths, value);
    let [mux_get, mux_put] = mux_rows("postgres", &mux, &keys, value);
    let rows = [
        mux_get,
        mux_put,
        ("pg_raw_select", raw_get),
        ("pg_raw_upsert", raw_put),
        od_get,
        od_put,
    ];
    report
        .compare(
            &rows,
            ROUNDS,
            10_000,
            &[
                ("mux_pg_get_vs_raw", 0, 2),
                ("mux_pg_put_vs_raw", 1, 3),
                ("mux_pg_get_vs_opendal", 0, 4),
                ("mux_pg_put_vs_opendal", 1, 5),
            ],
        )
        .await;
    drop(rows);
    admin
        .batch_execute(&format!(
            "DROP TABLE {table}; DROP TABLE {own}; DROP TABLE {opendal_table}; \
             DELETE FROM mux_schema WHERE table_name = '{table}'"
        ))
        .await
        .unwrap();
}

/// object_store's get and put rows: reads of `read` (mux's objects), writes to `write`.
fn object_store_rows(
    store: &'static str,
    os: &Arc<dyn ObjectStore>,
    read: &Arc<Vec<ObjectPath>>,
    write: &Arc<Vec<ObjectPath>>,
    value: &Bytes,
) -> [(&'static str, MakeOp); 2] {
    let names: [&'static str; 2] = match store {
        "s3" => ["object_store_s3_get", "object_store_s3_put"],
        _ => ["object_store_azure_get", "object_store_azure_put"],
    };
    let (o, r) = (os.clone(), read.clone());
    let get = row(move |i| {
        let (o, path) = (o.clone(), r[i % r.len()].clone());
        async move {
            let v = o.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(v.len(), 1024);
        }
    });
    let (o, w, v) = (os.clone(), write.clone(), value.clone());
    let put = row(move |i| {
        let (o, path, v) = (o.clone(), w[i % w.len()].clone(), v.clone());
        async move {
            o.put(&path, PutPayload::from_bytes(v)).await.unwrap();
        }
    });
    [(names[0], get), (names[1], put)]
}

/// Compares mux and object_store on one object store; `name_of` gives a key's object.
async fn compare_objects(
    report: &mut Report,
    store: &'static str,
    mux_store: Arc<dyn Backend>,
    os: Arc<dyn ObjectStore>,
    name_of: impl Fn(&Key) -> String,
    value: &Bytes,
    ratios: &[(&'static str, usize, usize)],
) {
    const KEYS: usize = 300;
    let keys = keys(KEYS);
    let mux = &single(mux_store.clone());
    fill(mux, &keys, value).await;
    let read: Arc<Vec<ObjectPath>> =
        Arc::new(keys.iter().map(|k| ObjectPath::from(name_of(k))).collect());
    let write: Arc<Vec<ObjectPath>> = Arc::new(
        (0..KEYS)
            .map(|i| ObjectPath::from(format!("bench-object-store/k{i:04}")))
            .collect(),
    );
    for path in write.iter() {
        os.put(path, PutPayload::from_bytes(value.clone()))
            .await
            .unwrap();
    }
    let [mux_get, mux_put] = mux_rows(store, mux, &keys, value);
    let [os_get, os_put] = object_store_rows(store, &os, &read, &write, value);
    let rows = [mux_get, mux_put, os_get, os_put];
    report.compare(&rows, ROUNDS, 1_500, ratios).await;
    for path in write.iter() {
        os.delete(path).await.unwrap();
    }
    purge(&mux_store, &keys).await;
}

async fn s3(report: &mut Report, value: &Bytes) {
    const BUCKET: &str = "mux-bench-clients";
    let store = Arc::new(
        mux::s3::S3Backend::connect("s3", mux_tests::s3_config(BUCKET))
            .await
            .expect("the S3 server (cargo xtask services up)"),
    );
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let os: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(mux_tests::s3_endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(BUCKET)
            .with_region(var("MUX_S3_REGION", "us-east-1"))
            .with_access_key_id(var("MUX_S3_ACCESS_KEY_ID", "test"))
            .with_secret_access_key(var("MUX_S3_SECRET_ACCESS_KEY", "test"))
            .build()
            .expect("object_store S3"),
    );
    compare_objects(
        report,
        "s3",
        store.clone(),
        os,
        move |k| store.object_key(k.as_str()),
        value,
        &[
            ("mux_s3_get_vs_object_store", 0, 2),
            ("mux_s3_put_vs_object_store", 1, 3),
        ],
    )
    .await;
}

async fn azure(report: &mut Report, value: &Bytes) {
    const CONTAINER: &str = "mux-bench-clients";
    let store = Arc::new(
        mux::azure::AzureBackend::connect(
            "azure",
            mux_tests::azure_config(CONTAINER).expect("the Azure connection string"),
        )
        .await
        .expect("Azurite (cargo xtask services up)"),
    );
    let os: Arc<dyn ObjectStore> = Arc::new(
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_use_emulator(true)
            .with_allow_http(true)
            .with_account(mux::azure::DEV_ACCOUNT_NAME)
            .with_access_key(mux::azure::DEV_ACCOUNT_KEY)
            .with_container_name(CONTAINER)
            .build()
            .expect("object_store Azure"),
    );
    compare_objects(
        report,
        "azure",
        store.clone(),
        os,
        move |k| store.blob_name(k),
        value,
        &[
            ("mux_azure_get_vs_object_store", 0, 2),
            ("mux_azure_put_vs_object_store", 1, 3),
        ],
    )
    .await;
}
