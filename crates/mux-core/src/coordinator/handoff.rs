//! Hinted handoff: what a backend still owes is retried with backoff until it lands,
//! or moved, visibly, to the dead-letter queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::Instrument;

use tokio::time::Instant;

use super::Inner;
use crate::error::{Error, Operation, Result};
use crate::record::Record;

/// Applies a record to one backend (a tombstone as a delete).
pub(crate) async fn apply_raw(
    backend: &dyn crate::backend::Backend,
    record: &Record,
) -> Result<crate::backend::PutOutcome> {
    if record.is_tombstone() {
        backend.delete(record.key(), record.version()).await
    } else {
        backend.put(record).await
    }
}

pub(crate) fn op_of(record: &Record) -> Operation {
    if record.is_tombstone() {
        Operation::Delete
    } else {
        Operation::Put
    }
}

impl Inner {
    /// Starts the background machinery once: replay of the intent log and health probes.
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        if self.started.set(()).is_err() {
            return;
        }
        self.start_tail();
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.recovered.get_or_try_init(|| this.recover()).await {
                tracing::error!(error = %e, "replaying the intent log failed");
            }
        });
        if let Some(every) = self.log.rescan_every() {
            // A shared log: pick up what dead nodes left behind, every lease.
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.is_retired() {
                        return;
                    }
                    if let Err(e) = inner.recover().await {
                        tracing::warn!(error = %e, "rescanning the shared intent log failed");
                    }
                }
            });
        }
        if !self.resilience.health_interval.is_zero() {
            let weak = Arc::downgrade(self);
            let every = self.resilience.health_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.is_retired() {
                        return;
                    }
                    inner.probe().await;
                    if inner.resilience.markers {
                        inner.check_markers().await;
                    }
                }
            });
        }
    }

    /// Whether `record` falls under an erasure (`Mux::erase`) made after it was written.
    pub(crate) fn erased(&self, record: &Record) -> bool {
        let erased = self.erased.read().unwrap_or_else(|p| p.into_inner());
        erased.iter().any(|(prefix, upto)| {
            record.version() <= *upto && prefix.matches(record.key().as_str())
        })
    }

    /// Whether a successor took over (see `MuxBuilder::succeeding`).
    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Replays the intent log entries that predate this `Mux`; returns the hints made.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<usize> {
        let pending = self.log.pending().await?;
        let mut hints = 0;
        for intent in pending.into_iter().filter(|p| p.id < self.boot_id) {
            let record = Arc::new(intent.record);
            for backend in intent.owed {
                match self.slots.iter().position(|s| *s.name == *backend) {
                    Some(slot) => {
                        self.handoff(slot, Some(intent.id), record.clone(), None)
                            .await;
                        hints += 1;
                    }
                    None => tracing::warn!(
                        %backend, id = intent.id,
                        "intent log entry owes a backend this mux does not have; left in the log"
                    ),
                }
            }
        }
        if hints > 0 {
            tracing::info!(hints, "replaying unfinished writes from the intent log");
        }
        Ok(hints)
    }

    /// Hands what backend `slot` owes to its handoff. `intent` is the log entry (a
    /// non-durable log gets one now); `failure` is the error of the attempt already made.
    pub(crate) async fn handoff(
        self: &Arc<Self>,
        slot: usize,
        intent: Option<u64>,
        record: Arc<Record>,
        failure: Option<Error>,
    ) {
        let s = &self.slots[slot];
        let id = match intent {
            Some(id) => id,
            None => match self
                .log
                .append(&record, std::slice::from_ref(&s.name))
                .await
            {
                Ok(id) => id,
                Err(e) => {
                    self.counters
                        .background_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(backend = %s.name, key = %record.key(), error = %e, "cannot record a hint");
                    return;
                }
            },
        };
        s.hints_pending.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        self.background
            .spawn(async move { this.deliver(slot, id, record, failure).await });
    }

    async fn deliver(
        self: Arc<Self>,
        slot: usize,
        id: u64,
        record: Arc<Record>,
        failure: Option<Error>,
    ) {
        let s = &self.slots[slot];
        let policy = self.resilience.retry;
        let since = Instant::now();
        let (mut attempts, mut last) = match failure {
            Some(e) => (1, Some(e)),
            None => (0, None),
        };
        let _permit = s.handoff.acquire().await;
        loop {
            if self.erased(&record) {
                // Erased while owed: dropped, never delivered.
                if let Err(e) = self.log.complete(id, &s.name).await {
                    tracing::warn!(backend = %s.name, error = %e, "cannot drop an erased hint from the intent log");
                }
                break;
            }
            if let Some(e) = &last {
                if !e.is_temporary() || !policy.may_retry(attempts, since.elapsed()) {
                    self.dead_letter(slot, id, &record, e, attempts).await;
                    break;
                }
                let mut wait = policy.backoff(attempts - 1, self.jitter.unit());
                // Do not knock on an open circuit: wait until it lets probes through.
                if let Some(open) = s.circuit().retry_in() {
                    wait = wait.max(open + Duration::from_millis(1));
                }
                tokio::time::sleep(wait).await;
            }
            attempts += 1;
            let span = tracing::debug_span!("mux.handoff", backend = %s.name, key = %record.key(), attempt = attempts);
            match s
                .guard_attempt(
                    op_of(&record),
                    attempts,
                    apply_raw(&*s.backend, &record),
                    None,
                )
                .instrument(span)
                .await
            {
                Ok(_) => {
                    if let Err(e) = self.log.complete(id, &s.name).await {
                        tracing::warn!(backend = %s.name, error = %e, "cannot mark a hint complete; it will be replayed");
                    }
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        s.hints_pending.fetch_sub(1, Ordering::SeqCst);
    }

    async fn dead_letter(
        &self,
        slot: usize,
        id: u64,
        record: &Record,
        error: &Error,
        attempts: u32,
    ) {
        let s = &self.slots[slot];
        metrics::counter!("mux_dead_letters_total", "backend" => s.name.to_string()).increment(1);
        match self
            .log
            .dead_letter(id, &s.name, record, &error.to_string(), attempts)
            .await
        {
            Ok(dl) => tracing::warn!(
                backend = %s.name, key = %record.key(), version = %record.version(), dead_letter = dl, attempts,
                error = %error, "write moved to the dead-letter queue"
            ),
            Err(e) => tracing::error!(
                backend = %s.name, key = %record.key(), error = %e,
                "cannot dead-letter a write; it stays in the intent log and is replayed on restart"
            ),
        }
    }
}
