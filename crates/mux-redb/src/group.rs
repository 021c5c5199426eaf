//! Group commit of concurrent single writes: redb commits one write transaction at a
//! time, each with its own fsync, so puts and deletes that arrive while a commit is in
//! flight wait for it and then go out together, in one transaction and one fsync.
//!
//! There is no timer and no long-lived task: the write that finds no commit running
//! starts a blocking thread that commits whatever is queued, again and again, until the
//! queue is empty. A lone write goes out at once; under load, batches grow by themselves.

use std::sync::{Arc, Mutex};

use mux_core::{Error, PutOutcome, Record, Result};
use tokio::sync::oneshot;

/// The most records in one transaction.
pub(crate) const MAX_BATCH: usize = 256;

type Job = (Record, oneshot::Sender<Result<PutOutcome>>);

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    running: bool,
}

/// The queue of writes waiting for the next commit.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

/// Clears `running` if the committing thread panics, so a later write starts anew.
struct Running<'a>(&'a GroupCommit);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return; // ended normally: `run` cleared `running` under the lock
        }
        let mut q = self.0.lock();
        q.running = false;
        // A panic left jobs behind: they fail rather than wait forever.
        for (_, done) in q.jobs.drain(..) {
            let _ = done.send(Err(Error::internal("the redb commit thread stopped")));
        }
    }
}

impl GroupCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `record` for the next commit made by `write` and waits for its outcome.
    pub(crate) async fn write<W>(self: &Arc<Self>, record: Record, write: W) -> Result<PutOutcome>
    where
        W: Fn(&[Record]) -> Result<Vec<PutOutcome>> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let start = {
            let mut q = self.lock();
            q.jobs.push((record, done));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.run(write));
        }
        wait.await
            .map_err(|_| Error::internal("the redb commit thread stopped"))?
    }

    /// Commits batches until nothing is queued.
    fn run<W>(&self, write: W)
    where
        W: Fn(&[Record]) -> Result<Vec<PutOutcome>>,
    {
        let _running = Running(self);
        loop {
            let jobs: Vec<Job> = {
                let mut q = self.lock();
                if q.jobs.is_empty() {
                    q.running = false;
                    return;
                }
                let n = q.jobs.len().min(MAX_BATCH);
                q.jobs.drain(..n).collect()
            };
            let (records, waiters): (Vec<Record>, Vec<_>) = jobs.into_iter().unzip();
            match write(&records) {
                Ok(outcomes) => {
                    for (done, outcome) in waiters.into_iter().zip(outcomes) {
                        let _ = done.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for done in waiters {
                        let _ = done.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}
