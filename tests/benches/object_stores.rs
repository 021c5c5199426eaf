//! `cargo xtask bench object-stores`: what the conditional write costs on the object
//! stores, against the local S3 server (moto) and Azurite, in alternating rounds of one
//! run. 1 KiB values, concurrency 16.
//!
//! Rows: a raw unconditional `PutObject` / `Put Blob` through the same SDK client (the
//! baseline); mux-s3 / mux-azure writing new keys (head → 404, write with
//! `If-None-Match: *`); the same updating existing keys (head, write with `If-Match`);
//! and `get`. Ratios: `*_put_vs_raw`, `*_update_vs_raw`. The servers are emulators (one
//! Python, one Node process sharing the machine's two cores with the client), so the
//! absolute numbers say little about AWS or Azure; the ratios show the price of the
//! extra request each conditional write makes.

use std::sync::Arc;

use mux::azure::AzureBackend;
use mux::s3::S3Backend;
use mux::{Backend, Bytes, Clock, Key, Record};
use mux_tests::bench::{Op, Row, measure, median, print_header, print_row, write_json};

const WRITES: usize = 1_500;
const ROUNDS: usize = 3;
const CONCURRENCY: usize = 16;

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let s3 = Arc::new(
            S3Backend::connect("s3", mux_tests::s3_config("mux-bench"))
                .await
                .expect("the S3 server (cargo xtask services up)"),
        );
        let azure = Arc::new(
            AzureBackend::connect("azure", mux_tests::azure_config("mux-bench").unwrap())
                .await
                .expect("Azurite (cargo xtask services up)"),
        );
        let value = Bytes::from(vec![7u8; 1024]);
        let clock = Arc::new(Clock::new(9));
        let per = WRITES / ROUNDS;
        // Keys are fresh per round for the "put" rows, and the put rows' keys for the
        // "update" rows (written again at a higher version).
        let key = |row: &str, round: usize, i: usize| {
            Key::new(format!("bench/{row}/r{round}/k{i:05}")).unwrap()
        };

        // Per store: the raw write baseline, then mux's put of new keys, its update of
        // those keys at a higher version, and its get of them.
        type MakeOp = Box<dyn Fn(usize) -> Op>;
        let mut rows: Vec<(&'static str, MakeOp)> = Vec::new();
        let raw_s3: MakeOp = {
            let (s3, v) = (s3.clone(), value.clone());
            Box::new(move |round| {
                let (s3, v) = (s3.clone(), v.clone());
                Arc::new(move |i| {
                    let (s3, v) = (s3.clone(), v.clone());
                    let object = s3.object_key(key("raw", round, i).as_str());
                    Box::pin(async move {
                        s3.client()
                            .put_object()
                            .bucket(&s3.config().bucket)
                            .key(object)
                            .body(v.into())
                            .send()
                            .await
                            .unwrap();
                    })
                })
            })
        };
        let raw_azure: MakeOp = {
            let (az, v) = (azure.clone(), value.clone());
            Box::new(move |round| {
                let (az, v) = (az.clone(), v.clone());
                Arc::new(move |i| {
                    let blob = az
                        .container_client()
                        .blob_client(&az.blob_name(&key("raw", round, i)));
                    let v = v.clone();
                    Box::pin(async move {
                        blob.upload(v.into(), None).await.unwrap();
                    })
                })
            })
        };
        let stores: [(Arc<dyn Backend>, MakeOp, [&'static str; 4]); 2] = [
            (
                s3.clone(),
                raw_s3,
                [
                    "s3_raw_put_object",
                    "mux_s3_put_new",
                    "mux_s3_update",
                    "mux_s3_get",
                ],
            ),
            (
                azure.clone(),
                raw_azure,
                [
                    "azure_raw_put_blob",
                    "mux_azure_put_new",
                    "mux_azure_update",
                    "mux_azure_get",
                ],
            ),
        ];
        for (store, raw, [raw_name, put_name, update_name, get_name]) in stores {
            rows.push((raw_name, raw));
            // The put and update rows write the same keys; the update row comes second.
            for name in [put_name, update_name] {
                let (b, v, c) = (store.clone(), value.clone(), clock.clone());
                rows.push((
                    name,
                    Box::new(move |round| {
                        let (b, v, c) = (b.clone(), v.clone(), c.clone());
                        Arc::new(move |i| {
                            let (b, r) = (
                                b.clone(),
                                Record::new(key("put", round, i), v.clone(), c.now()),
                            );
                            Box::pin(async move {
                                assert!(b.put(&r).await.unwrap().is_applied());
                            })
                        })
                    }),
                ));
            }
            let b = store.clone();
            rows.push((
                get_name,
                Box::new(move |round| {
                    let b = b.clone();
                    Arc::new(move |i| {
                        let (b, k) = (b.clone(), key("put", round, i));
                        Box::pin(async move {
                            b.get(&k).await.unwrap().unwrap();
                        })
                    })
                }),
            ));
        }

        print_header();
        let mut results: Vec<Vec<Row>> = vec![Vec::new(); rows.len()];
        for round in 0..ROUNDS {
            for (n, (name, make)) in rows.iter().enumerate() {
                let op = make(round);
                results[n].push(measure(name, per, CONCURRENCY, move |i| op(i)).await);
            }
        }
        println!("medians over {ROUNDS} alternating rounds:");
        let medians: Vec<Row> = results.into_iter().map(median).collect();
        for r in &medians {
            print_row(r);
        }
        let ratio = |a: usize, b: usize| medians[a].ops_per_sec / medians[b].ops_per_sec;
        let ratios = [
            ("s3_put_vs_raw", ratio(1, 0)),
            ("s3_update_vs_raw", ratio(2, 0)),
            ("azure_put_vs_raw", ratio(5, 4)),
            ("azure_update_vs_raw", ratio(6, 4)),
        ];
        write_json("object-stores", &medians, &ratios);
        // Leave the in-memory servers small: the raw objects, then mux's records.
        for round in 0..ROUNDS {
            for i in 0..per {
                let k = key("raw", round, i);
                s3.client()
                    .delete_object()
                    .bucket(&s3.config().bucket)
                    .key(s3.object_key(k.as_str()))
                    .send()
                    .await
                    .unwrap();
                azure
                    .container_client()
                    .blob_client(&azure.blob_name(&k))
                    .delete(None)
                    .await
                    .unwrap();
            }
        }
        for b in [
            s3.clone() as Arc<dyn Backend>,
            azure.clone() as Arc<dyn Backend>,
        ] {
            for round in 0..ROUNDS {
                for i in 0..per {
                    b.purge(&key("put", round, i), mux::Version::new(u64::MAX, 0, 0))
                        .await
                        .unwrap();
                }
            }
        }
    });
}
