//! `cargo xtask bench stores`: each store adapter against the same writes issued
//! directly with that store's own client, in alternating rounds of one run, so only
//! the ratio matters (the servers share the machine's two cores with the client).
//!
//! One function per comparison; each adds its rows and its ratio to the report:
//!
//! - `mysql_put_vs_raw_upsert`: concurrent mux-mysql `put`s (the guarded one-statement
//!   upsert, outcome from the affected rows) against the same upserts without the
//!   version guard, sent with mysql_async through a pool of the same size and options.
//!   1 KiB values, new keys, concurrency 64, pool 16, five rounds. Each write is a
//!   commit (with the server's default `innodb_flush_log_at_trx_commit = 1` an fsync),
//!   so the disk sets the pace of both rows.
//! - `influx_put_vs_raw_write`: concurrent mux-influx `put`s (a read of the key's newest
//!   version, then a `/write` of one point) against a raw `/write` of the same point
//!   with reqwest, one point per request. 1 KiB values, new keys, concurrency 16, five
//!   rounds, against `MUX_INFLUX_URL` in a database of its own, dropped afterwards.

use std::sync::Arc;

use mux::influx::{InfluxBackend, InfluxConfig};
use mux::mysql::{MysqlBackend, MysqlConfig};
use mux::{Backend, Bytes, Clock, Key, Record};
use mux_tests::bench::{Op, Row, alternate, write_json};
use mysql_async::prelude::Queryable;

/// What the comparisons add up to.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    ratios: Vec<(&'static str, f64)>,
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let mut report = Report::default();
        mysql_put_vs_raw_upsert(&mut report).await;
        influx_put_vs_raw_write(&mut report).await;
        write_json("stores", &report.rows, &report.ratios);
    });
}

async fn mysql_put_vs_raw_upsert(report: &mut Report) {
    const WRITES: usize = 15_000;
    const ROUNDS: usize = 5;
    const CONCURRENCY: usize = 64;
    const POOL: usize = 16;
    const TABLE: &str = "mux_bench_mysql";
    let url = mux_tests::mysql_url();
    let backend = Arc::new(
        MysqlBackend::connect(
            "mysql",
            MysqlConfig::new(&url)
                .with_table(TABLE)
                .with_pool_size(POOL),
        )
        .await
        .expect("MariaDB/MySQL (cargo xtask services up)"),
    );
    // The baseline's pool: the same size and options as mux-mysql's.
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url).unwrap())
        .pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(0, POOL).unwrap())
                .with_reset_connection(false),
        );
    let pool = mysql_async::Pool::new(opts);
    pool.get_conn()
        .await
        .unwrap()
        .query_drop(format!("TRUNCATE TABLE {TABLE}"))
        .await
        .unwrap();
    let upsert = Arc::new(format!(
        "INSERT INTO {TABLE} (`key`, value, version, tombstone, content_type, tags, checksum) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value), \
         version = VALUES(version), tombstone = VALUES(tombstone), \
         content_type = VALUES(content_type), tags = VALUES(tags), checksum = VALUES(checksum)"
    ));

    let value = Bytes::from(vec![7u8; 1024]);
    let clock = Arc::new(Clock::new(9));
    let per = WRITES / ROUNDS;
    let record = move |row: &str, round: usize, i: usize| {
        let key = Key::new(format!("bench/{row}/r{round}/k{i:05}")).unwrap();
        Record::new(key, value.clone(), clock.now())
    };
    let raw: Box<dyn Fn(usize) -> Op> = {
        let (pool, upsert, record) = (pool.clone(), upsert.clone(), record.clone());
        Box::new(move |round| {
            let (pool, upsert, record) = (pool.clone(), upsert.clone(), record.clone());
            Arc::new(move |i| {
                let (pool, upsert, r) = (pool.clone(), upsert.clone(), record("raw", round, i));
                Box::pin(async move {
                    let m = r.meta();
                    let mut conn = pool.get_conn().await.unwrap();
                    conn.exec_drop(
                        upsert.as_str(),
                        (
                            r.key().as_str().as_bytes(),
                            r.value().as_ref(),
                            m.version.to_bytes().to_vec(),
                            m.tombstone,
                            m.content_type.as_deref(),
                            "{}",
                            m.checksum,
                        ),
                    )
                    .await
                    .unwrap();
                })
            })
        })
    };
    let mux_put: Box<dyn Fn(usize) -> Op> = {
        let (b, record) = (backend.clone(), record.clone());
        Box::new(move |round| {
            let (b, record) = (b.clone(), record.clone());
            Arc::new(move |i| {
                let (b, r) = (b.clone(), record("mux", round, i));
                Box::pin(async move {
                    assert!(b.put(&r).await.unwrap().is_applied());
                })
            })
        })
    };
    let rows = [("mysql_raw_upsert", raw), ("mux_mysql_put", mux_put)];
    let medians = alternate(&rows, ROUNDS, per, CONCURRENCY).await;
    report.ratios.push((
        "mysql_put_vs_raw_upsert",
        medians[1].ops_per_sec / medians[0].ops_per_sec,
    ));
    report.rows.extend(medians);
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(format!("DROP TABLE {TABLE}"))
        .await
        .unwrap();
    conn.exec_drop("DELETE FROM mux_schema WHERE table_name = ?", (TABLE,))
        .await
        .unwrap();
    drop(conn);
    pool.disconnect().await.unwrap();
}

async fn influx_put_vs_raw_write(report: &mut Report) {
    const WRITES: usize = 5_000;
    const ROUNDS: usize = 5;
    const CONCURRENCY: usize = 16;
    const DB: &str = "mux_bench_influx";
    let url = mux_tests::influx_url();
    let backend = Arc::new(
        InfluxBackend::connect("influx", InfluxConfig::new(&url).with_database(DB))
            .await
            .expect("InfluxDB 1.x (cargo xtask services up)"),
    );
    // The baseline's client: reqwest as mux-influx builds it (connect installed ring).
    let client = reqwest::Client::new();
    let write_url = Arc::new(format!("{url}/write?precision=ns&db={DB}"));

    let value = Bytes::from(vec![b'x'; 1024]);
    let clock = Arc::new(Clock::new(9));
    let per = WRITES / ROUNDS;
    let record = move |row: &str, round: usize, i: usize| {
        let key = Key::new(format!("bench/{row}/r{round}/k{i:05}")).unwrap();
        Record::new(key, value.clone(), clock.now())
    };
    let raw: Box<dyn Fn(usize) -> Op> = {
        let (client, write_url, record) = (client.clone(), write_url.clone(), record.clone());
        Box::new(move |round| {
            let (client, write_url, record) = (client.clone(), write_url.clone(), record.clone());
            Arc::new(move |i| {
                let (client, write_url) = (client.clone(), write_url.clone());
                let r = record("raw", round, i);
                let time = i64::try_from(r.version().physical_ms()).unwrap() * 1_000_000;
                let line = mux::influx::testing::point("mux_records", &r, time);
                Box::pin(async move {
                    let response = client
                        .post(write_url.as_str())
                        .body(line)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                })
            })
        })
    };
    let mux_put: Box<dyn Fn(usize) -> Op> = {
        let (b, record) = (backend.clone(), record.clone());
        Box::new(move |round| {
            let (b, record) = (b.clone(), record.clone());
            Arc::new(move |i| {
                let (b, r) = (b.clone(), record("mux", round, i));
                Box::pin(async move {
                    assert!(b.put(&r).await.unwrap().is_applied());
                })
            })
        })
    };
    let rows = [("influx_raw_write", raw), ("mux_influx_put", mux_put)];
    let medians = alternate(&rows, ROUNDS, per, CONCURRENCY).await;
    report.ratios.push((
        "influx_put_vs_raw_write",
        medians[1].ops_per_sec / medians[0].ops_per_sec,
    ));
    report.rows.extend(medians);
    let response = client
        .post(format!("{url}/query?q=DROP%20DATABASE%20%22{DB}%22"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}
