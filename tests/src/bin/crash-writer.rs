//! The crash test's writer (see `tests/crash.rs`).
//!
//! `crash-writer write DIR N`: writes N records at consistency `One` to three persistent
//! backends (redb `a`, fs `b` and redb `c`, the last two slowed by 2 ms a call) with a
//! durable intent log, 32 at a time, and prints `ack KEY VERSION` after each
//! acknowledgement. Meant to be killed in the middle.
//!
//! `crash-writer recover DIR`: opens the same stores and log, replays the log, waits
//! until every hint has landed, prints `recovered HINTS`.
//!
//! `CRASH_LOG=wal` uses the segment log (`DIR/intents/`) instead of the redb one
//! (`DIR/intents.redb`); `CRASH_PREFIX` names the keys (`PREFIX/k00042`, default
//! `crash`), so several runs on one directory write keys of their own.
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mux::fs::FsBackend;
use mux::redb::{RedbBackend, RedbIntentLog};
use mux::testing::{FaultConfig, FaultyBackend};
use mux::wal::SegmentIntentLog;
use mux::{
    Backend, Durability, IntentLog, Key, Mux, ReadPolicy, ResilienceConfig, Result, Role,
    RouteConfig, WriteConsistency,
};

fn slowed(backend: Arc<dyn Backend>, slow: bool) -> Arc<dyn Backend> {
    let faulty = FaultyBackend::new(backend, 1);
    if slow {
        faulty.set_config(FaultConfig {
            latency: Duration::from_millis(2),
            ..Default::default()
        });
    }
    Arc::new(faulty)
}

/// The log `CRASH_LOG` names.
fn intent_log(dir: &Path) -> Result<Arc<dyn IntentLog>> {
    Ok(match std::env::var("CRASH_LOG").as_deref() {
        Ok("wal") => Arc::new(SegmentIntentLog::open(dir.join("intents"))?),
        _ => Arc::new(RedbIntentLog::open(dir.join("intents.redb"))?),
    })
}

/// The crash test's `Mux`: three persistent stores and a durable intent log under `dir`.
fn open(dir: &Path, slow: bool) -> Result<Mux> {
    let a: Arc<dyn Backend> = Arc::new(RedbBackend::open("a", dir.join("a.redb"))?);
    let b = slowed(Arc::new(FsBackend::open("b", dir.join("b"))?), slow);
    let c = slowed(Arc::new(RedbBackend::open("c", dir.join("c.redb"))?), slow);
    Mux::builder()
        .backend(a)
        .backend(b)
        .backend(c)
        .intent_log(intent_log(dir)?)
        .resilience(ResilienceConfig {
            durability: Durability::Log,
            ..Default::default()
        })
        .default_route(
            RouteConfig::new("")
                .backend("a", Role::Primary)
                .backend("b", Role::Replica)
                .backend("c", Role::Replica)
                .write(WriteConsistency::One)
                .read(ReadPolicy::Primary),
        )
        .build()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["write", dir, n] => {
            let n: usize = n.parse().expect("N is a number");
            let prefix = std::env::var("CRASH_PREFIX").unwrap_or_else(|_| "crash".into());
            let mux = open(Path::new(dir), true)?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let printer = std::thread::spawn(move || {
                let mut out = std::io::stdout().lock();
                while let Some(line) = rx.blocking_recv() {
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            });
            let tasks: Vec<_> = (0..32)
                .map(|t| {
                    let (mux, tx, prefix) = (mux.clone(), tx.clone(), prefix.clone());
                    tokio::spawn(async move {
                        for i in (t..n).step_by(32) {
                            let key = Key::new(format!("{prefix}/k{i:05}")).expect("valid key");
                            let report = mux
                                .put(key.clone(), format!("value {i}"))
                                .await
                                .expect("write acknowledged");
                            let _ = tx.send(format!("ack {key} {}", report.version));
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("writer task");
            }
            drop(tx);
            printer.join().expect("printer");
            mux.settle().await;
        }
        ["recover", dir] => {
            let mux = open(Path::new(dir), false)?;
            let hints = mux.recover().await?;
            mux.settle().await;
            println!("recovered {hints}");
            assert_eq!(mux.hints_pending(), 0);
            assert!(
                mux.dead_letters().await?.is_empty(),
                "nothing dead-lettered"
            );
        }
        _ => {
            eprintln!("usage: crash-writer write DIR N | crash-writer recover DIR");
            std::process::exit(2);
        }
    }
    Ok(())
}
