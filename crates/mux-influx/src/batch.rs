//! Transparent batching of concurrent puts: whatever is queued when a slot frees up
//! goes out as one read of the keys' newest versions and one `/write` of every applied
//! point. No timer: a lone put goes out at once; under load, batches grow by themselves.

use std::collections::HashMap;
use std::sync::Arc;

use mux_core::{Error, PutOutcome, Record, Result, Version};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::backend::InfluxBackend;
use crate::line;

type Job = (Record, oneshot::Sender<Result<PutOutcome>>);

/// The most puts in one batch.
pub(crate) const MAX_BATCH: usize = 64;
/// The most batches in flight at once.
pub(crate) const IN_FLIGHT: usize = 4;

/// The queue of a backend's puts.
#[derive(Debug)]
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts the task that sends `worker`'s batches (it ends when the batcher drops).
    pub(crate) fn start(worker: Arc<InfluxBackend>) -> Batcher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let worker = worker.clone();
                tokio::spawn(async move {
                    let records: Vec<Record> = jobs.iter().map(|(r, _)| r.clone()).collect();
                    match put_many(&worker, &records).await {
                        Ok(outcomes) => {
                            for ((_, done), outcome) in jobs.into_iter().zip(outcomes) {
                                let _ = done.send(Ok(outcome));
                            }
                        }
                        Err(e) => {
                            for (_, done) in jobs {
                                let _ = done.send(Err(e.clone()));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Batcher { tx }
    }

    /// Queues one put and waits for its outcome.
    pub(crate) async fn put(&self, record: Record) -> Result<PutOutcome> {
        let (done, wait) = oneshot::channel();
        let stopped = || Error::internal("the influx batcher has stopped");
        self.tx.send((record, done)).map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

/// Writes `records` (keys already checked): one read of every key's newest
/// millisecond, then the applied points in one `/write`. Records of one key are decided
/// in order, each against the highest version before it, with slots of their own.
pub(crate) async fn put_many(
    backend: &InfluxBackend,
    records: &[Record],
) -> Result<Vec<PutOutcome>> {
    let mut keys: Vec<String> = records
        .iter()
        .map(|r| r.key().as_str().to_owned())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let newest = backend.newest_points(&keys, "\"version\"").await?;
    let mut state: HashMap<&str, (Option<Version>, Vec<i64>)> = HashMap::new();
    for (key, points) in &newest {
        let stored = points.iter().map(|p| p.version).max();
        state.insert(
            key.as_str(),
            (stored, points.iter().map(|p| p.time).collect()),
        );
    }
    let mut lines = String::new();
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        let (stored, taken) = state.entry(record.key().as_str()).or_default();
        match *stored {
            Some(s) if s >= record.version() => outcomes.push(PutOutcome::Superseded { stored: s }),
            _ => {
                let time = line::timestamp(record.version(), taken)?;
                lines.push_str(&line::point(&backend.config().measurement, record, time)?);
                taken.push(time);
                *stored = Some(record.version());
                outcomes.push(PutOutcome::Applied);
            }
        }
    }
    if !lines.is_empty() {
        backend.write(lines).await?;
    }
    Ok(outcomes)
}
