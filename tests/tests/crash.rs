//! Crash test: no acknowledged write is lost.
//!
//! A writer process writes 10,000 records at consistency `One` to three persistent
//! backends (two of them slowed), acknowledging after the fastest; it is killed with
//! SIGKILL in the middle. Restarted on the same intent log, it replays. Afterwards every
//! record acknowledged before the kill is on all three backends at its acknowledged
//! version, compared key by key.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use mux::fs::FsBackend;
use mux::redb::RedbBackend;
use mux::{Backend, Key, Version};

const WRITER: &str = env!("CARGO_BIN_EXE_crash-writer");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(WRITER)
        .args(["write", dir.path().to_str().unwrap(), "10000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().unwrap();
    let mut acked: Vec<(Key, Version)> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < 3000 {
        let line = lines.next().expect("the writer stopped early").unwrap();
        acked.push(parse(&line));
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

    let out = Command::new(WRITER)
        .args(["recover", dir.path().to_str().unwrap()])
        .output()
        .expect("run the recovery");
    assert!(
        out.status.success(),
        "recovery failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{} acknowledged; {}",
        acked.len(),
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let stores: Vec<Box<dyn Backend>> = vec![
        Box::new(RedbBackend::open("a", dir.path().join("a.redb")).unwrap()),
        Box::new(FsBackend::open("b", dir.path().join("b")).unwrap()),
        Box::new(RedbBackend::open("c", dir.path().join("c.redb")).unwrap()),
    ];
    let mut lost = Vec::new();
    for (key, version) in &acked {
        for store in &stores {
            let got = store.get(key).await.unwrap().map(|r| r.version());
            if got != Some(*version) {
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

fn parse(line: &str) -> (Key, Version) {
    let mut parts = line.split(' ');
    assert_eq!(parts.next(), Some("ack"), "{line}");
    let key = Key::new(parts.next().unwrap()).unwrap();
    let version = parts.next().unwrap().parse().unwrap();
    (key, version)
}
