//! The loop against an in-memory object store that injects refused conditions and
//! lost answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

/// What the fake does with the next conditional writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Refuse the condition without writing (another writer got in between).
    Refuse,
    /// Write, then answer "precondition failed": the client retried a write whose
    /// answer was lost, and the retry found the object changed by that very write.
    WriteThenRefuse,
    /// Write, then fail with a temporary error (the answer never came).
    WriteThenLoseAnswer,
    /// Fail with a temporary error without writing.
    Unavailable,
    /// Fail with a permanent error without writing.
    Forbidden,
}

/// One object per key, ETags from a counter; each request yields first, so that
/// concurrent writers interleave between their head and their write.
#[derive(Default)]
struct FakeStore {
    objects: Mutex<HashMap<Key, (Record, String)>>,
    faults: Mutex<Vec<Fault>>,
    /// Refuse every conditional write, forever.
    always_refuse: bool,
    /// Written (unconditionally) just before the next delete: a concurrent writer.
    write_before_delete: Mutex<Option<Record>>,
    next_etag: AtomicU64,
    heads: AtomicU32,
    puts: AtomicU32,
    deletes: AtomicU32,
}

impl FakeStore {
    fn with_faults(faults: &[Fault]) -> FakeStore {
        FakeStore {
            faults: Mutex::new(faults.iter().rev().copied().collect()),
            ..FakeStore::default()
        }
    }

    fn next_fault(&self) -> Option<Fault> {
        self.faults.lock().unwrap().pop()
    }

    fn stored(&self, key: &Key) -> Option<Record> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(r, _)| r.clone())
    }

    /// Writes `record` when `condition` holds; whether it did.
    fn apply(&self, record: &Record, condition: &Condition) -> bool {
        let mut objects = self.objects.lock().unwrap();
        let current = objects.get(record.key()).map(|(_, etag)| etag.as_str());
        if current != condition.etag() {
            return false;
        }
        let etag = format!("\"{}\"", self.next_etag.fetch_add(1, Ordering::Relaxed));
        objects.insert(record.key().clone(), (record.clone(), etag));
        true
    }
}

fn temporary() -> Error {
    Error::new(ErrorKind::Timeout, "the answer was lost").temporary()
}

#[async_trait]
impl ConditionalStore for FakeStore {
    async fn head(&self, key: &Key) -> Result<Option<StoredObject>> {
        tokio::task::yield_now().await;
        self.heads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(record, etag)| StoredObject {
                version: record.version(),
                checksum: record.meta().checksum,
                tombstone: record.is_tombstone(),
                etag: etag.clone(),
            }))
    }

    async fn put_if(&self, record: &Record, condition: &Condition) -> Result<bool> {
        tokio::task::yield_now().await;
        self.puts.fetch_add(1, Ordering::Relaxed);
        if self.always_refuse {
            return Ok(false);
        }
        match self.next_fault() {
            None => Ok(self.apply(record, condition)),
            Some(Fault::Refuse) => Ok(false),
            Some(Fault::WriteThenRefuse) => {
                assert!(self.apply(record, condition));
                Ok(false)
            }
            Some(Fault::WriteThenLoseAnswer) => {
                assert!(self.apply(record, condition));
                Err(temporary())
            }
            Some(Fault::Unavailable) => Err(temporary()),
            Some(Fault::Forbidden) => Err(Error::new(ErrorKind::PermissionDenied, "no")),
        }
    }

    async fn delete_if(&self, key: &Key, etag: &str) -> Result<bool> {
        tokio::task::yield_now().await;
        self.deletes.fetch_add(1, Ordering::Relaxed);
        if self.always_refuse {
            return Ok(false);
        }
        if let Some(newer) = self.write_before_delete.lock().unwrap().take() {
            let etag = format!("\"{}\"", self.next_etag.fetch_add(1, Ordering::Relaxed));
            self.objects
                .lock()
                .unwrap()
                .insert(key.clone(), (newer, etag));
        }
        let fault = self.next_fault();
        if matches!(fault, Some(Fault::Refuse)) {
            return Ok(false);
        }
        let mut objects = self.objects.lock().unwrap();
        if objects.get(key).map(|(_, e)| e.as_str()) != Some(etag) {
            return Ok(false);
        }
        objects.remove(key);
        match fault {
            Some(Fault::WriteThenRefuse) => Ok(false),
            Some(Fault::WriteThenLoseAnswer) => Err(temporary()),
            _ => Ok(true),
        }
    }
}

fn key() -> Key {
    Key::new("tenants/acme/limits").unwrap()
}

fn record(physical: u64) -> Record {
    Record::new(
        key(),
        format!("value {physical}"),
        Version::new(physical, 0, 1),
    )
}

#[tokio::test(start_paused = true)]
async fn writes_new_and_newer_records_and_refuses_older_ones() {
    let store = FakeStore::default();
    assert_eq!(put(&store, &record(5)).await.unwrap(), PutOutcome::Applied);
    assert_eq!(put(&store, &record(7)).await.unwrap(), PutOutcome::Applied);
    let puts = store.puts.load(Ordering::Relaxed);
    assert_eq!(
        put(&store, &record(6)).await.unwrap(),
        PutOutcome::Superseded {
            stored: Version::new(7, 0, 1)
        }
    );
    assert_eq!(store.puts.load(Ordering::Relaxed), puts, "nothing written");
    // A replay of the stored record is superseded too (idempotent).
    assert!(put(&store, &record(7)).await.unwrap().is_superseded());
    assert_eq!(store.stored(&key()), Some(record(7)));
}

#[tokio::test(start_paused = true)]
async fn a_refused_condition_reads_again_and_retries() {
    let store = FakeStore::with_faults(&[Fault::Refuse, Fault::Refuse]);
    assert_eq!(put(&store, &record(3)).await.unwrap(), PutOutcome::Applied);
    assert_eq!(store.puts.load(Ordering::Relaxed), 3);
    assert_eq!(store.heads.load(Ordering::Relaxed), 3);
    assert_eq!(store.stored(&key()), Some(record(3)));
}

#[tokio::test(start_paused = true)]
async fn racing_writers_end_with_the_highest_version() {
    for round in 0..3u64 {
        let store = Arc::new(FakeStore::default());
        // A fixed shuffle of 16 versions per round.
        let versions: Vec<u64> = (0..16u64).map(|i| 100 + (i * 7 + round * 5) % 16).collect();
        let tasks: Vec<_> = versions
            .iter()
            .map(|&v| {
                let store = store.clone();
                tokio::spawn(async move { (v, put(store.as_ref(), &record(v)).await.unwrap()) })
            })
            .collect();
        let mut applied = Vec::new();
        for task in tasks {
            let (v, outcome) = task.await.unwrap();
            if outcome == PutOutcome::Applied {
                applied.push(v);
            }
        }
        let highest = *versions.iter().max().unwrap();
        assert_eq!(store.stored(&key()), Some(record(highest)), "round {round}");
        assert!(applied.contains(&highest), "round {round}: {applied:?}");
        // The writers did collide: some conditions were refused and retried.
        assert!(
            store.puts.load(Ordering::Relaxed) > applied.len() as u32,
            "round {round}: no race happened"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_retried_after_its_answer_was_lost_is_applied() {
    // The client's retry of a write that landed fails its condition.
    let store = FakeStore::with_faults(&[Fault::WriteThenRefuse]);
    assert_eq!(put(&store, &record(9)).await.unwrap(), PutOutcome::Applied);
    assert_eq!(
        store.puts.load(Ordering::Relaxed),
        1,
        "detected, not rewritten"
    );
    assert_eq!(store.stored(&key()), Some(record(9)));
}

#[tokio::test(start_paused = true)]
async fn a_write_whose_answer_never_came_is_applied() {
    let store = FakeStore::with_faults(&[Fault::WriteThenLoseAnswer]);
    assert_eq!(put(&store, &record(9)).await.unwrap(), PutOutcome::Applied);
    assert_eq!(store.stored(&key()), Some(record(9)));
}

#[tokio::test(start_paused = true)]
async fn errors_that_did_not_write_are_returned_as_they_are() {
    let store = FakeStore::with_faults(&[Fault::Unavailable]);
    let err = put(&store, &record(9)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is_temporary());
    assert_eq!(store.puts.load(Ordering::Relaxed), 1, "no transport retry");
    assert_eq!(store.stored(&key()), None);

    let store = FakeStore::with_faults(&[Fault::Forbidden]);
    let err = put(&store, &record(9)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(store.heads.load(Ordering::Relaxed), 1, "no second read");
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_and_the_error_is_temporary_and_names_the_key() {
    let store = FakeStore {
        always_refuse: true,
        ..FakeStore::default()
    };
    let started = tokio::time::Instant::now();
    let err = put(&store, &record(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.is_temporary());
    assert!(err.message().contains("tenants/acme/limits"), "{err}");
    assert!(err.message().contains(&MAX_ATTEMPTS.to_string()), "{err}");
    assert_eq!(store.puts.load(Ordering::Relaxed), MAX_ATTEMPTS);
    // Paused between attempts, within the policy's caps.
    let waited = started.elapsed();
    let cap: Duration = (0..MAX_ATTEMPTS - 1)
        .map(|retry| backoff_policy().backoff_cap(retry))
        .sum();
    assert!(waited > Duration::ZERO && waited <= cap, "{waited:?}");

    store
        .objects
        .lock()
        .unwrap()
        .insert(key(), (record(1), "\"e\"".into()));
    let err = purge(&store, &key(), Version::new(5, 0, 0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.is_temporary());
    assert!(err.message().contains("tenants/acme/limits"), "{err}");
    assert_eq!(store.deletes.load(Ordering::Relaxed), MAX_ATTEMPTS);
}

#[tokio::test(start_paused = true)]
async fn purge_removes_only_versions_up_to_its_bound() {
    let store = FakeStore::default();
    assert!(!purge(&store, &key(), Version::new(9, 0, 0)).await.unwrap());
    put(&store, &Record::tombstone(key(), Version::new(4, 0, 1)))
        .await
        .unwrap();
    assert!(!purge(&store, &key(), Version::new(3, 0, 0)).await.unwrap());
    assert!(store.stored(&key()).is_some());
    assert!(purge(&store, &key(), Version::new(4, 0, 1)).await.unwrap());
    assert_eq!(store.stored(&key()), None);
}

#[tokio::test(start_paused = true)]
async fn purge_detects_its_own_lost_answers_and_spares_newer_writes() {
    for fault in [Fault::WriteThenRefuse, Fault::WriteThenLoseAnswer] {
        let store = FakeStore::default();
        put(&store, &record(4)).await.unwrap();
        store.faults.lock().unwrap().push(fault);
        assert!(
            purge(&store, &key(), Version::new(4, 0, 1)).await.unwrap(),
            "{fault:?}"
        );
        assert_eq!(store.stored(&key()), None);
    }
    // A newer write lands between the check and the delete: the delete is refused and
    // the newer record stays.
    let store = FakeStore::default();
    put(&store, &record(4)).await.unwrap();
    *store.write_before_delete.lock().unwrap() = Some(record(8));
    assert!(!purge(&store, &key(), Version::new(5, 0, 0)).await.unwrap());
    assert_eq!(store.stored(&key()), Some(record(8)));
    assert_eq!(store.deletes.load(Ordering::Relaxed), 1);
}
