//! Transparent batching of concurrent single puts, for stores where one request can
//! carry many records (a multi-row upsert, one write of many points).
//!
//! Whatever is queued when an in-flight slot frees up goes out as one batch (at most
//! `max_batch` records), handed to the store's batch write; each caller gets its own
//! record's outcome, or the batch's error. There is no timer: a lone put goes out at
//! once, and under load batches grow by themselves.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Error, PutOutcome, Record, Result};

type Job = (Record, oneshot::Sender<Result<PutOutcome>>);

/// A queue of puts that a background task sends in batches.
#[derive(Debug)]
pub struct PutBatcher {
    tx: mpsc::UnboundedSender<Job>,
    name: Arc<str>,
}

impl PutBatcher {
    /// Starts the task that sends batches through `write`: at most `max_batch` records
    /// each, at most `in_flight` at once (both at least 1). `write` must answer one
    /// outcome per record, in order. `name` appears in the error a put gets after the
    /// task stopped. The task ends when the batcher is dropped. Needs a Tokio runtime.
    pub fn start<F, Fut>(
        name: impl Into<Arc<str>>,
        max_batch: usize,
        in_flight: usize,
        write: F,
    ) -> PutBatcher
    where
        F: Fn(Vec<Record>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<PutOutcome>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let max_batch = max_batch.max(1);
        let write = Arc::new(write);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut jobs = vec![first];
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let write = write.clone();
                tokio::spawn(async move {
                    // The records move into the write; each caller keeps its sender.
                    let (records, waiters): (Vec<Record>, Vec<_>) = jobs.into_iter().unzip();
                    let count = records.len();
                    match write(records).await {
                        Ok(outcomes) if outcomes.len() == count => {
                            for (done, outcome) in waiters.into_iter().zip(outcomes) {
                                let _ = done.send(Ok(outcome));
                            }
                        }
                        Ok(outcomes) => {
                            let e = Error::internal(format!(
                                "a batch write answered {} outcomes for {count} records",
                                outcomes.len()
                            ));
                            for done in waiters {
                                let _ = done.send(Err(e.clone()));
                            }
                        }
                        Err(e) => {
                            for done in waiters {
                                let _ = done.send(Err(e.clone()));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        PutBatcher {
            tx,
            name: name.into(),
        }
    }

    /// Queues one put and waits for its outcome.
    pub async fn put(&self, record: Record) -> Result<PutOutcome> {
        let (done, wait) = oneshot::channel();
        let stopped = || Error::internal(format!("the {} batcher has stopped", self.name));
        self.tx.send((record, done)).map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Key, Version};

    fn record(i: u64) -> Record {
        Record::new(
            Key::new(format!("k/{i}")).unwrap(),
            "v",
            Version::new(i, 0, 1),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_puts_share_batches_and_get_their_own_outcomes() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(PutBatcher::start("test", 8, 1, move |records| {
            seen.lock().unwrap().push(records.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                // Even versions are "stored" higher: those records are superseded.
                Ok(records
                    .iter()
                    .map(|r| match r.version().physical_ms() % 2 {
                        0 => PutOutcome::Superseded {
                            stored: Version::new(u64::MAX, 0, 1),
                        },
                        _ => PutOutcome::Applied,
                    })
                    .collect())
            }
        }));
        let puts: Vec<_> = (0..40)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (i, batcher.put(record(i)).await.unwrap()) })
            })
            .collect();
        for put in puts {
            let (i, outcome) = put.await.unwrap();
            assert_eq!(outcome.is_applied(), i % 2 == 1, "record {i}");
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.iter().all(|&n| (1..=8).contains(&n)), "{sizes:?}");
        assert!(
            sizes.len() < 40,
            "one slot in flight: puts must share batches"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_put_and_a_short_answer_is_an_error() {
        let failing = PutBatcher::start("test", 4, 1, |_records| async {
            Err(Error::new(crate::ErrorKind::Unavailable, "down"))
        });
        assert!(failing.put(record(1)).await.is_err());
        let short = PutBatcher::start("test", 4, 1, |_records| async { Ok(Vec::new()) });
        let e = short.put(record(1)).await.unwrap_err();
        assert!(e.to_string().contains("0 outcomes for 1 records"), "{e}");
    }
}
