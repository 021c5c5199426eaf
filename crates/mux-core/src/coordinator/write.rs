//! The write path: fan out in parallel, acknowledge at the consistency level, finish
//! the rest in the background.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tracing::Instrument;

use super::handoff::{apply_raw, op_of};
use super::{Inner, Role, Route, Slot, WriteConsistency};
use crate::backend::PutOutcome;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::key::Key;
use crate::record::Record;
use crate::tenant::Tenant;
use crate::version::Version;

/// What one backend did with a coordinated write.
#[derive(Clone, Debug)]
pub enum WriteOutcome {
    /// The backend stored the record.
    Applied,
    /// The backend already held this or a newer version.
    Superseded {
        /// The version it holds.
        stored: Version,
    },
    /// The backend failed.
    Failed(Error),
    /// Still running in the background when the write was acknowledged.
    Pending,
}

impl WriteOutcome {
    /// Whether the backend holds this version or a newer one.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            WriteOutcome::Applied | WriteOutcome::Superseded { .. }
        )
    }

    /// A short name: `applied`, `superseded`, `failed`, `pending`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WriteOutcome::Applied => "applied",
            WriteOutcome::Superseded { .. } => "superseded",
            WriteOutcome::Failed(_) => "failed",
            WriteOutcome::Pending => "pending",
        }
    }
}

impl From<Result<PutOutcome>> for WriteOutcome {
    fn from(r: Result<PutOutcome>) -> Self {
        match r {
            Ok(PutOutcome::Applied) => WriteOutcome::Applied,
            Ok(PutOutcome::Superseded { stored }) => WriteOutcome::Superseded { stored },
            Err(e) => WriteOutcome::Failed(e),
        }
    }
}

/// One backend's part in a coordinated write.
#[derive(Clone, Copy, Debug)]
pub struct BackendWrite<'a> {
    /// The backend's name.
    pub backend: &'a str,
    /// Its role on the route.
    pub role: Role,
    /// What it did (as of the acknowledgement).
    pub outcome: &'a WriteOutcome,
}

/// The result of a coordinated write: the version written and each backend's outcome.
#[derive(Clone, Debug)]
pub struct WriteReport {
    /// The key written.
    pub key: Key,
    /// The version written.
    pub version: Version,
    /// The consistency level that applied.
    pub consistency: WriteConsistency,
    /// The route's backends and roles (shared by every write on the route).
    targets: super::Names,
    /// One outcome per backend, in route order.
    pub(crate) outcomes: Vec<WriteOutcome>,
}

impl WriteReport {
    /// What each backend did with a coordinated write that missed its consistency
    /// level (applied, superseded, failed, still pending), from the error it returned.
    pub fn of(error: &Error) -> Option<&WriteReport> {
        error.detail()
    }

    /// Each backend of the route with its role and outcome, in route order.
    pub fn backends(&self) -> impl Iterator<Item = BackendWrite<'_>> {
        self.targets
            .iter()
            .zip(&self.outcomes)
            .map(|((backend, role), outcome)| BackendWrite {
                backend,
                role: *role,
                outcome,
            })
    }

    /// The backends that hold the version (applied or superseded).
    pub fn applied_on(&self) -> Vec<&str> {
        self.backends()
            .filter(|b| b.outcome.is_success())
            .map(|b| b.backend)
            .collect()
    }

    /// The backends that failed, with their errors.
    pub fn failed_on(&self) -> Vec<(&str, &Error)> {
        self.backends()
            .filter_map(|b| match b.outcome {
                WriteOutcome::Failed(e) => Some((b.backend, e)),
                _ => None,
            })
            .collect()
    }

    /// The backends still working in the background.
    pub fn pending_on(&self) -> Vec<&str> {
        self.backends()
            .filter(|b| matches!(b.outcome, WriteOutcome::Pending))
            .map(|b| b.backend)
            .collect()
    }

    /// The write as one `PutOutcome`: applied if any backend applied it, otherwise
    /// superseded by the highest version a backend reported.
    pub fn put_outcome(&self) -> PutOutcome {
        let mut stored = None;
        for outcome in &self.outcomes {
            match *outcome {
                WriteOutcome::Applied => return PutOutcome::Applied,
                WriteOutcome::Superseded { stored: s } => stored = stored.max(Some(s)),
                _ => {}
            }
        }
        match stored {
            Some(stored) => PutOutcome::Superseded { stored },
            None => PutOutcome::Applied,
        }
    }
}

impl fmt::Display for WriteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} ({}):",
            self.key, self.version, self.consistency
        )?;
        for b in self.backends() {
            write!(f, " {}={}", b.backend, b.outcome.as_str())?;
        }
        Ok(())
    }
}

type Call = Pin<Box<dyn Future<Output = (usize, Result<PutOutcome>)> + Send>>;

/// One backend write of a fan-out started at `since`, behind the slot's guards. (A
/// plain function returning the guard's future: an `async fn` around it would hold
/// that future twice.)
fn apply<'a>(
    slot: &'a Slot,
    record: &'a Record,
    since: Instant,
) -> impl Future<Output = Result<PutOutcome>> + Send + 'a {
    slot.guard_since(op_of(record), since, apply_raw(&*slot.backend, record))
}

fn call(slot: Arc<Slot>, position: usize, record: Arc<Record>, since: Instant) -> Call {
    Box::pin(async move { (position, apply(&slot, &record, since).await) })
}

impl Inner {
    /// Writes a versioned record to its route's backends.
    pub(crate) async fn write(
        self: &Arc<Self>,
        record: Record,
        consistency: Option<WriteConsistency>,
        tenant: Option<&Tenant>,
    ) -> Result<WriteReport> {
        self.ensure_started();
        self.info.check_value_size(&record, op_of(&record))?;
        record
            .meta()
            .check(record.key())
            .map_err(|e| e.with_operation(op_of(&record)))?;
        if super::is_reserved(record.key().as_str()) {
            return Err(Error::invalid_input(format!(
                "{} is in mux's own namespace ({}/…, where it keeps store markers); choose a key outside it",
                record.key(),
                super::RESERVED_ROOT
            ))
            .with_operation(op_of(&record)));
        }
        // Routes match the tenant's key; the record is stored under its namespace.
        let route = self.route_for(record.key().as_str(), &record.meta().tags, tenant);
        let level = consistency.unwrap_or(route.config.write);
        // A level the route can never meet is refused before anything is written.
        if let WriteConsistency::AtLeast(n) = level
            && n > route.voters.len()
        {
            return Err(Error::invalid_input(format!(
                "write consistency at_least:{n} cannot be met: {} has {} voters (primaries and replicas); nothing was written",
                route.config.describe(),
                route.voters.len()
            ))
            .with_operation(op_of(&record)));
        }
        super::residency::check_write(
            route,
            record.key(),
            &record.meta().tags,
            self.tenant_allowed(tenant, record.key()),
            op_of(&record),
        )?;
        let span = tracing::debug_span!("mux.write", key = %record.key(), version = %record.version(), %level, route = %route.config.describe());
        let logical = record.key().clone();
        let mut record = match tenant {
            Some(t) => {
                let stored = t.storage_key(&logical)?;
                record.with_key(stored)
            }
            None => record,
        };
        // Sealed once, under the stored key: every backend, the intent log and the
        // hints hold the same sealed bytes.
        if let Some(sealer) = route.sealer()
            && !record.is_tombstone()
        {
            let op = op_of(&record);
            let sealed = match sealer.try_seal(record) {
                Ok(sealed) => sealed,
                Err(record) => sealer.seal(record).await,
            };
            record = sealed.map_err(|e| e.with_operation(op))?;
            self.info.check_value_size(&record, op)?;
        }
        // The stored key is kept only to announce the write on the route's feed.
        let stored = self.feed.is_some().then(|| record.key().clone());
        let (version, tombstone) = (record.version(), record.is_tombstone());
        let result = self
            .fan_out(route, record, logical, level)
            .instrument(span)
            .await;
        // Boxed: most routes have no feed, and inline this future would grow every
        // write's state machine.
        if let Some(stored) = &stored
            && super::changes::will_land(&result)
        {
            Box::pin(self.announce(super::changes::Written {
                route,
                tenant,
                stored,
                version,
                tombstone,
            }))
            .await;
        }
        result
    }

    async fn fan_out(
        self: &Arc<Self>,
        route: &Route,
        record: Record,
        logical: Key,
        level: WriteConsistency,
    ) -> Result<WriteReport> {
        let n = route.targets.len();
        let counted = |p: usize| match level {
            WriteConsistency::Primary => p == route.primary,
            _ => route.targets[p].1 != Role::AsyncReplica,
        };
        let required = level.required(route.voters.len());
        let mut outcomes: Vec<WriteOutcome> = vec![WriteOutcome::Pending; n];

        // With a durable log, what every backend owes is on disk before any of them
        // is asked: a crash from here on is repaired by replay.
        let intent = if self.log.is_durable() {
            let append = self
                .log
                .append(&record, &route.owed)
                .instrument(tracing::debug_span!(
                    "mux.intent_log.append",
                    owed = route.owed.len()
                ));
            Some(append.await.map_err(|e| {
                e.context(format!(
                    "the write of {} was not attempted: the intent log refused it",
                    record.key()
                ))
            })?)
        } else {
            None
        };

        // The record moves into an `Arc` only when something outlives this call (a call
        // finishing in the background, a hint); otherwise it is lent.
        let version = record.version();
        let mut shared: Option<Arc<Record>> = None;
        let mut owned: Option<Record> = None;
        // The calls start together: one reading of the clock times them all.
        let since = Instant::now();
        if n == 1 {
            // One backend: no fan-out machinery.
            outcomes[0] = apply(&self.slots[route.targets[0].0], &record, since)
                .await
                .into();
            owned = Some(record);
        } else if required == n && (0..n).all(counted) {
            // Every backend must answer anyway: join borrowed futures, nothing to finish
            // in the background. (join_all keeps them on the heap: joined in place they
            // would make this future, moved on every call, several times larger.)
            let results = join_all(
                route
                    .targets
                    .iter()
                    .map(|(slot, _)| apply(&self.slots[*slot], &record, since)),
            )
            .await;
            for (outcome, result) in outcomes.iter_mut().zip(results) {
                *outcome = result.into();
            }
            owned = Some(record);
        } else {
            let record = shared.insert(Arc::new(record)).clone();
            let mut calls: FuturesUnordered<Call> = route
                .targets
                .iter()
                .enumerate()
                .map(|(p, (slot, _))| call(self.slots[*slot].clone(), p, record.clone(), since))
                .collect();
            let mut ok = 0;
            let mut counted_pending = (0..n).filter(|&p| counted(p)).count();
            while ok < required && ok + counted_pending >= required {
                let Some((p, result)) = calls.next().await else {
                    break;
                };
                if counted(p) {
                    counted_pending -= 1;
                    ok += usize::from(result.is_ok());
                }
                outcomes[p] = result.into();
            }
            if !calls.is_empty() {
                self.finish_in_background(calls, route, record, intent, ok >= required);
            }
        }

        // Settle what is known now: completions go to the log, failures to the handoff.
        // A permanent refusal (bad input, permission) of a write that is not
        // acknowledged is the caller's to fix, and the caller is told: no hint for it.
        let acknowledged = (0..n)
            .filter(|&p| counted(p) && outcomes[p].is_success())
            .count()
            >= required;
        for (p, outcome) in outcomes.iter().enumerate() {
            let slot = route.targets[p].0;
            match outcome {
                WriteOutcome::Failed(e) if acknowledged || e.is_temporary() => {
                    let record = shared
                        .get_or_insert_with(|| {
                            Arc::new(owned.take().expect("the record is lent or shared"))
                        })
                        .clone();
                    Box::pin(self.handoff(slot, intent, record, Some(e.clone()))).await;
                }
                WriteOutcome::Pending => {}
                _ => {
                    if let Some(id) = intent {
                        self.complete(id, slot).await;
                    }
                }
            }
        }

        let report = WriteReport {
            key: logical,
            version,
            consistency: level,
            targets: route.names_here(),
            outcomes,
        };
        let ok = (0..n)
            .filter(|&p| counted(p) && report.outcomes[p].is_success())
            .count();
        if ok >= required {
            Ok(report)
        } else {
            Err(not_met(report, required))
        }
    }

    pub(crate) async fn complete(&self, id: u64, slot: usize) {
        if let Err(e) = self.log.complete(id, &self.slots[slot].name).await {
            tracing::warn!(error = %e, "cannot mark an intent complete; it will be replayed");
        }
    }

    /// Lets the backends still working after the acknowledgement finish; what fails is
    /// handed off.
    fn finish_in_background(
        self: &Arc<Self>,
        mut calls: FuturesUnordered<Call>,
        route: &Route,
        record: Arc<Record>,
        intent: Option<u64>,
        acknowledged: bool,
    ) {
        let slots: Vec<usize> = route.targets.iter().map(|(slot, _)| *slot).collect();
        let this = self.clone();
        self.background.spawn(async move {
            while let Some((p, result)) = calls.next().await {
                match result {
                    Ok(_) => {
                        if let Some(id) = intent {
                            this.complete(id, slots[p]).await;
                        }
                    }
                    Err(e) if !acknowledged && !e.is_temporary() => {
                        if let Some(id) = intent {
                            this.complete(id, slots[p]).await;
                        }
                    }
                    Err(e) => {
                        this.counters.background_failures.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("mux_background_write_failures_total").increment(1);
                        tracing::warn!(backend = %this.slots[slots[p]].name, key = %record.key(), error = %e, "background write failed; handed off");
                        this.handoff(slots[p], intent, record.clone(), Some(e)).await;
                    }
                }
            }
        });
    }
}

fn not_met(report: WriteReport, required: usize) -> Error {
    let failed = report.failed_on();
    // When every failure is the caller's fault in the same way (too large, invalid),
    // say so rather than blaming availability.
    let same_kind = failed.first().map(|(_, e)| e.kind()).filter(|k| {
        matches!(
            k,
            ErrorKind::TooLarge
                | ErrorKind::InvalidInput
                | ErrorKind::PermissionDenied
                | ErrorKind::Unsupported
        ) && failed.iter().all(|(_, e)| e.kind() == *k)
    });
    let temporary = failed.iter().any(|(_, e)| e.is_temporary());
    let applied = report.applied_on();
    let failures: Vec<String> = failed.iter().map(|(b, e)| format!("{b}: {e}")).collect();
    let pending = report.pending_on();
    let mut msg = format!(
        "write of {} at {} needed {} ({required} backend{}); applied on [{}]",
        report.key,
        report.version,
        report.consistency,
        if required == 1 { "" } else { "s" },
        applied.join(", "),
    );
    if !failures.is_empty() {
        msg.push_str(&format!("; failed on [{}]", failures.join("; ")));
    }
    if !pending.is_empty() {
        msg.push_str(&format!("; still pending on [{}]", pending.join(", ")));
    }
    msg.push_str(". The write is not confirmed, not rolled back: backends that applied it keep it, and it converges if retried");
    let mut e = Error::new(same_kind.unwrap_or(ErrorKind::ConsistencyNotMet), msg)
        .with_operation(Operation::Put)
        .with_detail(report);
    e = if temporary {
        e.temporary()
    } else {
        e.permanent()
    };
    e
}
