use std::sync::Arc;

use mux_core::{ErrorKind, IntentLog, Key, Record, Version};

use super::*;

fn record(n: u64) -> Record {
    Record::new(
        Key::new(format!("k/{n}")).unwrap(),
        format!("value {n}"),
        Version::new(1_700_000_000_000 + n, 0, 1),
    )
}

fn owed(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|n| Arc::from(*n)).collect()
}

fn small() -> SegmentLogOptions {
    SegmentLogOptions {
        segment_bytes: 4096,
        checkpoint_max_bytes: 1 << 20,
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_a_reopen_until_every_backend_completes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentIntentLog::open(dir.path()).unwrap();
        let a = log.append(&record(1), &owed(&["a", "b"])).await.unwrap();
        let b = log.append(&record(2), &owed(&["a"])).await.unwrap();
        log.complete(a, "a").await.unwrap();
        log.complete(b, "a").await.unwrap();
        assert!(log.stats().syncs >= 1);
    }
    let log = SegmentIntentLog::open(dir.path()).unwrap();
    let pending = log.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].record, record(1));
    assert_eq!(pending[0].owed, vec!["b".to_string()]);
    assert!(log.next_id() > pending[0].id + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_durable_and_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentIntentLog::open(dir.path()).unwrap();
        let id = log.append(&record(1), &owed(&["a", "b"])).await.unwrap();
        log.complete(id, "a").await.unwrap();
        let d = log
            .dead_letter(id, "b", &record(1), "timed out", 5)
            .await
            .unwrap();
        assert!(log.pending().await.unwrap().is_empty());
        let letters = log.dead_letters().await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].id, d);
        assert_eq!(letters[0].error, "timed out");
        assert_eq!(letters[0].attempts, 5);
        log.dead_letter(id, "b", &record(2), "again", 1)
            .await
            .unwrap();
    }
    let log = SegmentIntentLog::open(dir.path()).unwrap();
    let letters = log.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 2);
    let taken = log.take_dead_letter(letters[0].id).await.unwrap().unwrap();
    assert_eq!(taken.record, record(1));
    assert!(log.take_dead_letter(letters[0].id).await.unwrap().is_none());
    drop(log);
    let log = SegmentIntentLog::open(dir.path()).unwrap();
    let left = log.dead_letters().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].record, record(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_checkpoints_and_deletes_what_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let mut kept = Vec::new();
    {
        let log = SegmentIntentLog::open_with(dir.path(), small()).unwrap();
        for n in 0..400u64 {
            let id = log.append(&record(n), &owed(&["a", "b"])).await.unwrap();
            log.complete(id, "a").await.unwrap();
            if n % 7 == 0 {
                kept.push(n); // "b" never completes these
            } else {
                log.complete(id, "b").await.unwrap();
            }
            if n == 50 {
                log.dead_letter(id, "x", &record(n), "gone", 3)
                    .await
                    .unwrap();
            }
        }
        log.flush().await.unwrap();
        let names = files(dir.path());
        // ~100 bytes a frame: about 40 segments were used; only the newest is left,
        // with its checkpoint.
        assert!(names.len() <= 3, "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("ckpt-")), "{names:?}");
        // The next segment is a recycled one, not a new file of zeros.
        let spare = std::fs::read(dir.path().join(syncer::PREPARED)).unwrap();
        assert!(spare.iter().any(|b| *b != 0), "a recycled segment");
        let pending = log.pending().await.unwrap();
        let got: Vec<u64> = pending
            .iter()
            .map(|p| p.record.version().physical_ms() - 1_700_000_000_000)
            .collect();
        assert_eq!(got, kept);
    }
    let log = SegmentIntentLog::open_with(dir.path(), small()).unwrap();
    let pending = log.pending().await.unwrap();
    assert_eq!(pending.len(), kept.len());
    assert!(pending.iter().all(|p| p.owed == vec!["b".to_string()]));
    assert_eq!(log.dead_letters().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_live_set_keeps_its_segments_instead_of_copying_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentLogOptions {
        segment_bytes: 4096,
        checkpoint_max_bytes: 1024,
    };
    {
        let log = SegmentIntentLog::open_with(dir.path(), options).unwrap();
        for n in 0..200u64 {
            log.append(&record(n), &owed(&["down"])).await.unwrap();
        }
    }
    assert!(files(dir.path()).len() > 3);
    let log = SegmentIntentLog::open_with(dir.path(), options).unwrap();
    assert_eq!(log.pending().await.unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SegmentIntentLog::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for n in 0..20 {
                    let id = log
                        .append(&record(t * 100 + n), &owed(&["a"]))
                        .await
                        .unwrap();
                    log.complete(id, "a").await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.appends, 64 * 20);
    assert!(stats.syncs < stats.appends, "{stats:?}");
    assert!(log.pending().await.unwrap().is_empty());
}

#[test]
fn a_second_process_on_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = SegmentIntentLog::open(dir.path()).unwrap();
    let e = SegmentIntentLog::open(dir.path()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("in use"), "{e}");
}

/// Writes entries 0..3 (synced), then a fourth frame, and returns the segment's bytes
/// and where the fourth frame starts and ends.
async fn three_and_a_torn_one(dir: &Path) -> (Vec<u8>, usize, usize) {
    let log = SegmentIntentLog::open_with(dir, small()).unwrap();
    for n in 0..3 {
        log.append(&record(n), &owed(&["a"])).await.unwrap();
    }
    let start = log.inner.lock().offset as usize;
    log.append(&record(3), &owed(&["a"])).await.unwrap();
    let end = log.inner.lock().offset as usize;
    drop(log);
    let seg = state::FileId::Segment(0).path(dir);
    (std::fs::read(seg).unwrap(), start, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_damaged_tail_is_cut_and_nothing_before_it_is_lost() {
    let src = tempfile::tempdir().unwrap();
    let (bytes, start, end) = three_and_a_torn_one(src.path()).await;
    // Every way the last append can be torn (cut at each byte: the rest never reached
    // the disk) or damaged (one byte flipped).
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for cut in start..end {
        let mut b = bytes.clone();
        b[cut..end].fill(0);
        cases.push(b);
    }
    for flip in start..end {
        let mut b = bytes.clone();
        b[flip] ^= 0x5a;
        cases.push(b);
    }
    for (n, damaged) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let seg = state::FileId::Segment(0).path(dir.path());
        std::fs::write(&seg, &damaged).unwrap();
        let log = SegmentIntentLog::open_with(dir.path(), small()).unwrap();
        let pending = log.pending().await.unwrap();
        assert_eq!(pending.len(), 3, "case {n}");
        // Appending over the cut leaves a log that reads back whole.
        log.append(&record(9), &owed(&["a"])).await.unwrap();
        drop(log);
        let log = SegmentIntentLog::open_with(dir.path(), small()).unwrap();
        assert_eq!(log.pending().await.unwrap().len(), 4, "case {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_before_the_newest_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let options = SegmentLogOptions {
            segment_bytes: 4096,
            checkpoint_max_bytes: 0,
        };
        let log = SegmentIntentLog::open_with(dir.path(), options).unwrap();
        for n in 0..100 {
            log.append(&record(n), &owed(&["a"])).await.unwrap();
        }
    }
    let seg = state::FileId::Segment(0).path(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let e = SegmentIntentLog::open_with(dir.path(), small()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.message().contains("seg-0000000000000000.wal"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_sealing_a_segment_and_starting_the_next_continues_in_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentIntentLog::open_with(dir.path(), small()).unwrap();
        for n in 0..3 {
            log.append(&record(n), &owed(&["a"])).await.unwrap();
        }
        let at = log.inner.lock().offset;
        drop(log);
        // The seal reached the disk; the rename of the next segment did not.
        let seal = frame::sealed(state::FileId::Segment(0).crc_no(), &frame::Body::Seal);
        let seg = state::FileId::Segment(0).path(dir.path());
        let file = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &seal, at).unwrap();
    }
    let log = SegmentIntentLog::open_with(dir.path(), small()).unwrap();
    assert_eq!(log.pending().await.unwrap().len(), 3);
    log.append(&record(3), &owed(&["a"])).await.unwrap();
    drop(log);
    assert!(files(dir.path()).contains(&"seg-0000000000000001.wal".to_string()));
    let log = SegmentIntentLog::open_with(dir.path(), small()).unwrap();
    assert_eq!(log.pending().await.unwrap().len(), 4);
}
