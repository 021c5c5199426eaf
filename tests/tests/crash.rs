//! Crash test: no acknowledged write is lost.
//!
//! A writer process writes 10,000 records at consistency `One` to three persistent
//! backends (two of them slowed), acknowledging after the fastest; it is killed with
//! SIGKILL in the middle. Restarted on the same intent log, it replays. Afterwards every
//! record acknowledged before the kill is on all three backends at its acknowledged
//! version, compared key by key. The same with the segment log, killed many times.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mux::fs::FsBackend;
use mux::redb::RedbBackend;
use mux::{Backend, Key, Version};

const WRITER: &str = env!("CARGO_BIN_EXE_crash-writer");

/// Starts the writer on `dir` with intent log `log` and keys under `prefix`, kills it
/// once `kill` says so, and returns every acknowledgement it printed.
fn write_and_kill(dir: &Path, log: &str, prefix: &str, kill: Kill) -> Vec<(Key, Version)> {
    let mut child = Command::new(WRITER)
        .args(["write", dir.to_str().unwrap(), "10000"])
        .env("CRASH_LOG", log)
        .env("CRASH_PREFIX", prefix)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().unwrap();
    let mut acked: Vec<(Key, Version)> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    match kill {
        Kill::AfterAcks(n) => {
            while acked.len() < n {
                let line = lines.next().expect("the writer stopped early").unwrap();
                acked.push(parse(&line));
            }
        }
        Kill::AfterMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
    }
    child.kill().expect("SIGKILL the writer"); // std's kill is SIGKILL on Unix
    // Acknowledgements already in the pipe were made before the kill: count them too.
    for line in lines.map_while(Result::ok) {
        if line.starts_with("ack ") && line.split(' ').count() == 3 {
            acked.push(parse(&line));
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the writer was killed, not finished: {status}"
    );
    assert!(acked.len() < 10_000, "killed in the middle");
    acked
}

/// When the writer is killed.
#[derive(Clone, Copy, Debug)]
enum Kill {
    AfterAcks(usize),
    AfterMs(u64),
}

/// Replays the log with a fresh writer process; returns what it printed.
fn recover(dir: &Path, log: &str) -> String {
    let out = Command::new(WRITER)
        .args(["recover", dir.to_str().unwrap()])
        .env("CRASH_LOG", log)
        .output()
        .expect("run the recovery");
    assert!(
        out.status.success(),
        "recovery failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every acknowledged write is on all three stores at its version (or a later one).
async fn assert_none_lost(dir: &Path, acked: &[(Key, Version)]) {
    let stores: Vec<Box<dyn Backend>> = vec![
        Box::new(RedbBackend::open("a", dir.join("a.redb")).unwrap()),
        Box::new(FsBackend::open("b", dir.join("b")).unwrap()),
        Box::new(RedbBackend::open("c", dir.join("c.redb")).unwrap()),
    ];
    let mut lost = Vec::new();
    for (key, version) in acked {
        for store in &stores {
            let got = store.get(key).await.unwrap().map(|r| r.version());
            if got.is_none_or(|g| g < *version) {
                lost.push(format!(
                    "{key} on {}: {got:?}, acknowledged {version}",
                    store.info().name
                ));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_and_kill(dir.path(), "redb", "crash", Kill::AfterAcks(3000));
    let recovered = recover(dir.path(), "redb");
    println!("{} acknowledged; {recovered}", acked.len());
    assert_none_lost(dir.path(), &acked).await;
}

/// The segment log, killed at random points again and again on one directory: by
/// acknowledgement count (mid-append under load) and by time (also during start-up
/// and recovery of the previous round's tail). `MUX_CRASH_ROUNDS` sets the rounds
/// (default 8) and `MUX_CRASH_SEED` replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_segment_log_loses_nothing_over_many_sigkills() {
    let rounds: u64 = std::env::var("MUX_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("MUX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("MUX_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for round in 0..rounds {
        let r = splitmix(seed ^ round);
        let kill = if round % 2 == 0 {
            Kill::AfterAcks(1 + (r % 2500) as usize)
        } else {
            Kill::AfterMs(100 + r % 500)
        };
        let got = write_and_kill(dir.path(), "wal", &format!("r{round}"), kill);
        println!("round {round}: killed {kill:?}, {} acknowledged", got.len());
        acked.extend(got);
        // Every other round recovers fully before the next kill; the others leave the
        // hints for the next writer (and its crash) to carry.
        if round % 2 == 1 || round + 1 == rounds {
            println!("  {}", recover(dir.path(), "wal"));
            assert_none_lost(dir.path(), &acked).await;
        }
    }
    assert!(!acked.is_empty(), "no round acknowledged anything");
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn parse(line: &str) -> (Key, Version) {
    let mut parts = line.split(' ');
    assert_eq!(parts.next(), Some("ack"), "{line}");
    let key = Key::new(parts.next().unwrap()).unwrap();
    let version = parts.next().unwrap().parse().unwrap();
    (key, version)
}
