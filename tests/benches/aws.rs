//! `cargo xtask bench aws`: what mux's AWS adapters cost over the raw SDK calls, against
//! the local moto server, in alternating rounds of one run (medians). 1 KiB values.
//!
//! Ratios (throughput of the mux row over its baseline's):
//! - `dynamodb_put_vs_raw_putitem`: mux-dynamodb's conditional put (`PutItem` with
//!   `attribute_not_exists(mux_key) OR mux_version < :v`) over an unconditional
//!   `PutItem` of the same item through the same client, 16 writers (goal ≥ 0.7);
//! - `dynamodb_batch_vs_loop`: `put_batch` of 100 records (conditional
//!   `TransactWriteItems`) over a loop of 100 single puts, 4 callers (goal ≥ 2);
//! - `dynamodb_concurrent_batch_vs_loop`: the same with `batch_writes = "concurrent"`
//!   (100 conditional puts, 16 at a time), the alternative the default was chosen over;
//! - `ssm_put_vs_raw_putparameter`: mux-ssm's put (read the current version with
//!   `DescribeParameters`, compare, `PutParameter` with `Overwrite`) over a bare
//!   `PutParameter` of the same value and description through the same client, 16
//!   writers, new parameters each round (goal ≥ 0.5: SSM has no conditional write, so
//!   mux's compare costs a request of its own).
//!
//! moto runs every DynamoDB request one at a time (`xtask/assets/moto_server.py`) in one
//! Python process sharing the machine's two cores with the client, so absolute numbers
//! say little about DynamoDB; the ratios show the price of the condition and the gain
//! of fewer requests. Each service is one section (rows and ratios).

use std::sync::Arc;

use aws_sdk_ssm::types::ParameterType;
use mux::dynamodb::{BatchWrites, DynamoDbBackend};
use mux::ssm::SsmBackend;
use mux::{Backend, Bytes, Clock, Key, Record};
use mux_tests::bench::{Op, Row, measure, median, print_header, print_row, write_json};

const ROUNDS: usize = 3;
/// Single writes per round and row.
const WRITES: usize = 600;
const CONCURRENCY: usize = 16;
/// Records per `put_batch` (and per loop of single puts).
const BATCH: usize = 100;
/// Callers of `put_batch` (and of the loops) at once.
const BATCH_CALLERS: usize = 4;

/// One row: `make(round)` gives the operation run `ops` times over `tasks` tasks; each
/// operation writes `records` records (rows report records per second).
struct RowSpec {
    name: &'static str,
    ops: usize,
    tasks: usize,
    records: usize,
    make: Box<dyn Fn(usize) -> Op>,
}

/// A section: its rows, and its ratios as (name, row, baseline row).
struct Section {
    rows: Vec<RowSpec>,
    ratios: Vec<(&'static str, &'static str, &'static str)>,
    /// Runs after the measurements (drops what the section made).
    cleanup: std::pin::Pin<Box<dyn Future<Output = ()>>>,
}

fn key(row: &str, round: usize, i: usize) -> Key {
    Key::new(format!("bench/{row}/r{round}/k{i:05}")).unwrap()
}

async fn dynamodb(value: Bytes, clock: Arc<Clock>) -> Section {
    let table = format!("mux-bench-aws-{}", std::process::id());
    let connect = |mode: BatchWrites| {
        let config = mux_tests::dynamodb_config(&table).with_batch_writes(mode);
        async move {
            Arc::new(
                DynamoDbBackend::connect("dynamodb", config)
                    .await
                    .expect("the DynamoDB server (cargo xtask services up)"),
            )
        }
    };
    let ddb = connect(BatchWrites::Transaction).await;
    let concurrent = connect(BatchWrites::Concurrent).await;
    let record = {
        let (value, clock) = (value.clone(), clock.clone());
        move |row: &'static str, round: usize, i: usize| {
            Record::new(key(row, round, i), value.clone(), clock.now())
        }
    };
    let raw: Box<dyn Fn(usize) -> Op> = {
        let (ddb, record) = (ddb.clone(), record.clone());
        Box::new(move |round| {
            let (ddb, record) = (ddb.clone(), record.clone());
            Arc::new(move |i| {
                let item = ddb.item(&record("raw", round, i));
                let ddb = ddb.clone();
                Box::pin(async move {
                    ddb.client()
                        .put_item()
                        .table_name(&ddb.config().table)
                        .set_item(Some(item))
                        .send()
                        .await
                        .unwrap();
                })
            })
        })
    };
    let put: Box<dyn Fn(usize) -> Op> = {
        let (ddb, record) = (ddb.clone(), record.clone());
        Box::new(move |round| {
            let (ddb, record) = (ddb.clone(), record.clone());
            Arc::new(move |i| {
                let (ddb, r) = (ddb.clone(), record("put", round, i));
                Box::pin(async move { assert!(ddb.put(&r).await.unwrap().is_applied()) })
            })
        })
    };
    // `op(i)` writes records `i * BATCH ..`: as one batch, or one put after the other.
    let batch = |row: &'static str, backend: Arc<DynamoDbBackend>, as_batch: bool| {
        let record = record.clone();
        Box::new(move |round| {
            let (backend, record) = (backend.clone(), record.clone());
            Arc::new(move |i: usize| {
                let records: Vec<Record> = (i * BATCH..(i + 1) * BATCH)
                    .map(|n| record(row, round, n))
                    .collect();
                let backend = backend.clone();
                Box::pin(async move {
                    if as_batch {
                        let outcomes = backend.put_batch(&records).await.unwrap();
                        assert!(outcomes.iter().all(|o| o.is_applied()));
                    } else {
                        for r in &records {
                            assert!(backend.put(r).await.unwrap().is_applied());
                        }
                    }
                }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
            }) as Op
        }) as Box<dyn Fn(usize) -> Op>
    };
    let batches = WRITES / BATCH;
    let single = |name, make| RowSpec {
        name,
        ops: WRITES,
        tasks: CONCURRENCY,
        records: 1,
        make,
    };
    let batched = |name, make| RowSpec {
        name,
        ops: batches,
        tasks: BATCH_CALLERS,
        records: BATCH,
        make,
    };
    let rows = vec![
        single("dynamodb_raw_putitem", raw),
        single("mux_dynamodb_put", put),
        batched("mux_dynamodb_put_loop", batch("loop", ddb.clone(), false)),
        batched("mux_dynamodb_put_batch", batch("batch", ddb.clone(), true)),
        batched(
            "mux_dynamodb_put_batch_conc",
            batch("conc", concurrent.clone(), true),
        ),
    ];
    let ratios = vec![
        (
            "dynamodb_put_vs_raw_putitem",
            "mux_dynamodb_put",
            "dynamodb_raw_putitem",
        ),
        (
            "dynamodb_batch_vs_loop",
            "mux_dynamodb_put_batch",
            "mux_dynamodb_put_loop",
        ),
        (
            "dynamodb_concurrent_batch_vs_loop",
            "mux_dynamodb_put_batch_conc",
            "mux_dynamodb_put_loop",
        ),
    ];
    let cleanup = Box::pin(async move {
        ddb.client()
            .delete_table()
            .table_name(&ddb.config().table)
            .send()
            .await
            .unwrap();
    });
    Section {
        rows,
        ratios,
        cleanup,
    }
}

/// Single SSM writes per round and row (moto's `DescribeParameters` scans every
/// parameter of the region, so fewer than DynamoDB's).
const SSM_WRITES: usize = 300;

async fn ssm(clock: Arc<Clock>) -> Section {
    let root = format!("/mux-bench-aws-{}", std::process::id());
    let ssm = Arc::new(
        SsmBackend::connect("ssm", mux_tests::ssm_config(&root))
            .await
            .expect("the SSM server (cargo xtask services up)"),
    );
    // Text, as parameters usually are (other bytes are stored as base64).
    let value = Bytes::from(vec![b'x'; 1024]);
    let record = move |row: &'static str, round: usize, i: usize| {
        Record::new(key(row, round, i), value.clone(), clock.now())
    };
    let raw: Box<dyn Fn(usize) -> Op> = {
        let (ssm, record) = (ssm.clone(), record.clone());
        Box::new(move |round| {
            let (ssm, record) = (ssm.clone(), record.clone());
            Arc::new(move |i| {
                let r = record("raw", round, i);
                let (value, description) = ssm.parameter(&r).unwrap();
                let (ssm, name) = (ssm.clone(), ssm.parameter_name(r.key()));
                Box::pin(async move {
                    ssm.client()
                        .put_parameter()
                        .name(name)
                        .value(value)
                        .description(description)
                        .r#type(ParameterType::String)
                        .data_type("text")
                        .overwrite(true)
                        .send()
                        .await
                        .unwrap();
                })
            })
        })
    };
    let put: Box<dyn Fn(usize) -> Op> = {
        let ssm = ssm.clone();
        Box::new(move |round| {
            let (ssm, record) = (ssm.clone(), record.clone());
            Arc::new(move |i| {
                let (ssm, r) = (ssm.clone(), record("put", round, i));
                Box::pin(async move { assert!(ssm.put(&r).await.unwrap().is_applied()) })
            })
        })
    };
    let single = |name, make| RowSpec {
        name,
        ops: SSM_WRITES,
        tasks: CONCURRENCY,
        records: 1,
        make,
    };
    let rows = vec![
        single("ssm_raw_putparameter", raw),
        single("mux_ssm_put", put),
    ];
    let ratios = vec![(
        "ssm_put_vs_raw_putparameter",
        "mux_ssm_put",
        "ssm_raw_putparameter",
    )];
    let cleanup = Box::pin(async move {
        let names: Vec<String> = ["raw", "put"]
            .into_iter()
            .flat_map(|row| (0..ROUNDS).map(move |round| (row, round)))
            .flat_map(|(row, round)| (0..SSM_WRITES).map(move |i| key(row, round, i)))
            .map(|k| ssm.parameter_name(&k))
            .collect();
        for chunk in names.chunks(10) {
            ssm.client()
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap();
        }
    });
    Section {
        rows,
        ratios,
        cleanup,
    }
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let value = Bytes::from(vec![7u8; 1024]);
        let clock = Arc::new(Clock::new(9));
        // One section per service.
        let sections = vec![
            dynamodb(value.clone(), clock.clone()).await,
            ssm(clock.clone()).await,
        ];
        let rows: Vec<&RowSpec> = sections.iter().flat_map(|s| &s.rows).collect();

        print_header();
        let mut results: Vec<Vec<Row>> = vec![Vec::new(); rows.len()];
        for round in 0..ROUNDS {
            for (n, spec) in rows.iter().enumerate() {
                let op = (spec.make)(round);
                let mut row = measure(spec.name, spec.ops, spec.tasks, move |i| op(i)).await;
                row.ops_per_sec *= spec.records as f64;
                results[n].push(row);
            }
        }
        println!("medians over {ROUNDS} alternating rounds (records/s; latency per call):");
        let medians: Vec<Row> = results.into_iter().map(median).collect();
        for r in &medians {
            print_row(r);
        }
        let throughput = |name: &str| {
            medians
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("no row {name}"))
                .ops_per_sec
        };
        let ratios: Vec<(&str, f64)> = sections
            .iter()
            .flat_map(|s| &s.ratios)
            .map(|&(name, row, base)| (name, throughput(row) / throughput(base)))
            .collect();
        write_json("aws", &medians, &ratios);
        for section in sections {
            section.cleanup.await;
        }
    });
}
