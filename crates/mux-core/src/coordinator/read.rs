//! The read path: read policies, hedging and read repair.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tracing::Instrument;

use super::handoff::{apply_raw, op_of};
use super::{Inner, ReadOptions, ReadPolicy, Route, Slot};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::key::Key;
use crate::record::Record;
use crate::resilience::CircuitState;

/// The hedge delay when the policy names none and the first backend has no history.
const DEFAULT_HEDGE_DELAY: Duration = Duration::from_millis(10);
/// The shortest automatic hedge delay.
const MIN_HEDGE_DELAY: Duration = Duration::from_micros(500);

type Answer = (usize, Result<Option<Record>>);
type Call = Pin<Box<dyn Future<Output = Answer> + Send>>;

async fn fetch(slot: &Slot, key: &Key) -> Result<Option<Record>> {
    let result = slot.guard(Operation::Get, slot.backend.get(key)).await;
    if let Err(e) = &result
        && e.kind() == ErrorKind::Corrupt
    {
        // A copy that fails its checksum or cannot be decoded: the read treats it as
        // stale (another replica answers, and repairs it); operators see it counted.
        slot.stats().corrupt_read();
        tracing::warn!(backend = %slot.name, %key, error = %e, "corrupt copy read");
    }
    result
}

/// What a read could not use: the errors, and the positions whose copy was corrupt
/// (they are repaired once a good copy is found).
#[derive(Default)]
struct Misses {
    errors: Vec<Error>,
    corrupt: Vec<usize>,
}

impl Misses {
    fn push(&mut self, position: usize, e: Error) {
        if e.kind() == ErrorKind::Corrupt {
            self.corrupt.push(position);
        }
        self.errors.push(e);
    }
}

fn call(slot: Arc<Slot>, position: usize, key: Key) -> Call {
    Box::pin(async move { (position, fetch(&slot, &key).await) })
}

fn version_of(r: &Option<Record>) -> Option<crate::version::Version> {
    r.as_ref().map(Record::version)
}

impl Inner {
    /// Reads `key` under its route's policy (or the override); tombstones included.
    pub(crate) async fn read(
        self: &Arc<Self>,
        key: &Key,
        options: &ReadOptions,
    ) -> Result<Option<Record>> {
        self.ensure_started();
        let route = self.route_for(key.as_str(), &options.tags, options.tenant.as_ref());
        let policy = options.policy.unwrap_or(route.config.read);
        let span =
            tracing::debug_span!("mux.read", %key, %policy, route = %route.config.describe());
        let stored = match &options.tenant {
            Some(tenant) => Cow::Owned(tenant.storage_key(key)?),
            None => Cow::Borrowed(key),
        };
        // A cached route serves reads with its own policy; an explicit policy asks
        // the backends.
        // The cache's and the sealer's futures are boxed: inline, they would make every
        // read's future (moved, and boxed by many callers) larger on routes without them.
        let record = if let (Some(cache), None) = (&route.cache, options.policy) {
            Box::pin(cache.read(&self.feed_state, &stored, || {
                self.read_stored(route, &stored, policy)
            }))
            .instrument(span)
            .await?
        } else {
            self.read_stored(route, &stored, policy)
                .instrument(span)
                .await?
        };
        // Sealed values are opened under the key they are stored under; a tenant's
        // record is handed back under its own key.
        let record = match route.sealer() {
            Some(sealer) => Box::pin(crate::seal::open(Some(sealer), &stored, record)).await?,
            None => record,
        };
        Ok(match options.tenant {
            Some(_) => record.map(|r| r.with_key(key.clone())),
            None => record,
        })
    }

    pub(crate) async fn read_stored(
        &self,
        route: &Route,
        key: &Key,
        policy: ReadPolicy,
    ) -> Result<Option<Record>> {
        // Only the primary read is inline; the other policies' futures are boxed, so a
        // primary read's future is no larger than its one call.
        match policy {
            ReadPolicy::Primary => {
                // A primary found stale by its marker gives way to the next in order.
                let primary = self.slot(route, route.primary);
                let p = if primary.marker.is_stale() {
                    self.read_order(route)[0]
                } else {
                    route.primary
                };
                match fetch(self.slot(route, p), key).await {
                    // A corrupt primary copy is a stale one: the next healthy replica
                    // answers instead, and its copy repairs the primary.
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        let mut misses = Misses::default();
                        misses.push(p, e);
                        Box::pin(self.first_healthy(route, key, misses)).await
                    }
                    other => other,
                }
            }
            ReadPolicy::FirstHealthy => {
                Box::pin(self.first_healthy(route, key, Misses::default())).await
            }
            ReadPolicy::Fastest => Box::pin(self.fastest(route, key)).await,
            ReadPolicy::Hedged { delay } => Box::pin(self.hedged(route, key, delay)).await,
            ReadPolicy::Quorum => {
                let n = route.voters.len();
                Box::pin(self.gather(route, key, n / 2 + 1)).await
            }
            ReadPolicy::All => Box::pin(self.gather(route, key, route.voters.len())).await,
        }
    }

    pub(super) fn slot(&self, route: &Route, position: usize) -> &Arc<Slot> {
        &self.slots[route.targets[position].0]
    }

    /// The route's read order, with backends whose circuit is open moved to the end,
    /// and without those found stale by their markers (unless all of them are).
    pub(super) fn read_order<'r>(&self, route: &'r Route) -> Cow<'r, [usize]> {
        let open = |p: &usize| self.slot(route, *p).circuit().state() == CircuitState::Open;
        let stale = |p: &usize| self.slot(route, *p).marker.is_stale();
        let any_stale = route.read_order.iter().any(stale);
        if !any_stale && !route.read_order.iter().any(open) {
            return Cow::Borrowed(&route.read_order);
        }
        let whole: Vec<usize> = if any_stale && !route.read_order.iter().all(stale) {
            route
                .read_order
                .iter()
                .copied()
                .filter(|p| !stale(p))
                .collect()
        } else {
            route.read_order.clone()
        };
        let (mut healthy, down): (Vec<usize>, Vec<usize>) =
            whole.into_iter().partition(|p| !open(p));
        healthy.extend(down);
        Cow::Owned(healthy)
    }

    /// The voters a gathering read asks, and how many answers it needs: voters found
    /// stale by their markers are left out (their answer could be the stale one), and
    /// it needs at most as many answers as the others can give.
    fn gathering<'r>(&self, route: &'r Route, required: usize) -> (Cow<'r, [usize]>, usize) {
        let stale = |p: &usize| self.slot(route, *p).marker.is_stale();
        if !route.voters.iter().any(stale) || route.voters.iter().all(stale) {
            return (Cow::Borrowed(&route.voters), required);
        }
        let whole: Vec<usize> = route.voters.iter().copied().filter(|p| !stale(p)).collect();
        let n = whole.len();
        (Cow::Owned(whole), required.min(n))
    }

    /// Asks the backends one at a time in read order, skipping those already in
    /// `misses`, and returns the first answer.
    async fn first_healthy(
        &self,
        route: &Route,
        key: &Key,
        mut misses: Misses,
    ) -> Result<Option<Record>> {
        let order = self.read_order(route);
        let asked = misses.corrupt.clone();
        for &p in order.iter().filter(|p| !asked.contains(p)) {
            match fetch(self.slot(route, p), key).await {
                Ok(r) => return Ok(self.mend(route, &misses, r)),
                Err(e) => misses.push(p, e),
            }
        }
        Err(no_answer(route, key, misses.errors))
    }

    /// The answer `r` of a read that also met corrupt copies: they are repaired with it.
    fn mend(&self, route: &Route, misses: &Misses, r: Option<Record>) -> Option<Record> {
        if !misses.corrupt.is_empty() {
            self.repair_corrupt(route, &misses.corrupt, r.as_ref());
        }
        r
    }

    async fn fastest(&self, route: &Route, key: &Key) -> Result<Option<Record>> {
        let mut calls: FuturesUnordered<Call> = self
            .read_order(route)
            .iter()
            .map(|&p| call(self.slot(route, p).clone(), p, key.clone()))
            .collect();
        let mut misses = Misses::default();
        while let Some((p, result)) = calls.next().await {
            match result {
                Ok(r) => return Ok(self.mend(route, &misses, r)),
                Err(e) => misses.push(p, e),
            }
        }
        Err(no_answer(route, key, misses.errors))
    }

    async fn hedged(
        &self,
        route: &Route,
        key: &Key,
        delay: Option<Duration>,
    ) -> Result<Option<Record>> {
        let order = self.read_order(route);
        let delay = delay.unwrap_or_else(|| {
            self.slot(route, order[0])
                .stats()
                .get_p95()
                .map_or(DEFAULT_HEDGE_DELAY, |p| p.max(MIN_HEDGE_DELAY))
        });
        let mut calls: FuturesUnordered<Call> = FuturesUnordered::new();
        calls.push(call(
            self.slot(route, order[0]).clone(),
            order[0],
            key.clone(),
        ));
        let mut next = 1;
        let mut misses = Misses::default();
        loop {
            let launch_next = if next < order.len() {
                tokio::select! {
                    biased;
                    answer = calls.next() => match answer {
                        Some((_, Ok(r))) => return Ok(self.mend(route, &misses, r)),
                        Some((p, Err(e))) => { misses.push(p, e); true }
                        None => true,
                    },
                    () = tokio::time::sleep(delay) => {
                        self.counters.hedged_requests.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("mux_hedged_requests_total").increment(1);
                        true
                    }
                }
            } else {
                match calls.next().await {
                    Some((_, Ok(r))) => return Ok(self.mend(route, &misses, r)),
                    Some((p, Err(e))) => {
                        misses.push(p, e);
                        false
                    }
                    None => return Err(no_answer(route, key, misses.errors)),
                }
            };
            if launch_next {
                let p = order[next];
                let slot = self.slot(route, p).clone();
                let hedge = tracing::debug_span!("mux.hedge", backend = %slot.name, after = ?delay);
                calls.push(Box::pin(call(slot, p, key.clone()).instrument(hedge)));
                next += 1;
            }
        }
    }

    /// Asks every voter, waits for `required` answers, returns the highest version and
    /// repairs the answers that were stale.
    ///
    /// A voter whose copy is corrupt answered, but with a copy of unknown version: it
    /// counts toward `required` only once at least half the voters (rounded up) gave
    /// good answers, since those meet every majority that acknowledged a write. So an
    /// `All` read of three voters with one corrupt copy returns the other two's best
    /// and repairs the corrupt one, while a `Quorum` read waits for a second good copy.
    async fn gather(&self, route: &Route, key: &Key, required: usize) -> Result<Option<Record>> {
        let (voters, required) = self.gathering(route, required);
        let enough_good = (voters.len() - voters.len() / 2).clamp(1, required.max(1));
        let mut calls: FuturesUnordered<Call> = voters
            .iter()
            .map(|&p| call(self.slot(route, p).clone(), p, key.clone()))
            .collect();
        let mut answers: Vec<(usize, Option<Record>)> = Vec::new();
        let mut misses = Misses::default();
        let met = |good: usize, corrupt: usize| {
            good >= required || (good >= enough_good && good + corrupt >= required)
        };
        while !met(answers.len(), misses.corrupt.len()) {
            match calls.next().await {
                Some((p, Ok(r))) => answers.push((p, r)),
                Some((p, Err(e))) => {
                    misses.push(p, e);
                    if answers.len() + misses.corrupt.len() + calls.len() < required {
                        break;
                    }
                }
                None => break,
            }
        }
        if !met(answers.len(), misses.corrupt.len()) {
            return Err(not_met(key, required, answers.len(), misses.errors));
        }
        let best = answers
            .iter()
            .max_by_key(|(_, r)| version_of(r))
            .and_then(|(_, r)| r.clone());
        if let Some(best) = &best {
            self.repair(
                route,
                answers
                    .iter()
                    .filter(|(_, r)| version_of(r) < Some(best.version()))
                    .map(|(p, _)| *p),
                best,
            );
        }
        Ok(self.mend(route, &misses, best))
    }

    /// Writes `best` to the stale backends at `positions`, in the background.
    fn repair(&self, route: &Route, positions: impl Iterator<Item = usize>, best: &Record) {
        for p in positions {
            self.rewrite(self.slot(route, p), best, false);
        }
    }

    /// Overwrites the corrupt copies at `positions` with `best`, in the background. A
    /// corrupt copy may carry the very version of `best` (a damaged value), which a
    /// conditional write would keep, so it is purged first (up to `best`'s version:
    /// a newer write that lands meanwhile stays). With no good copy to write (the good
    /// answers say the key is absent), the corrupt copies are left for anti-entropy.
    fn repair_corrupt(&self, route: &Route, positions: &[usize], best: Option<&Record>) {
        for &p in positions {
            let slot = self.slot(route, p);
            match best {
                Some(best) => self.rewrite(slot, best, true),
                None => {
                    tracing::warn!(backend = %slot.name, "corrupt copy of a key the other replicas do not hold: left for anti-entropy")
                }
            }
        }
    }

    /// One read repair: `record` written to `slot` in the background (purged up to its
    /// version first when the stored copy is `corrupt` and the store can purge).
    fn rewrite(&self, slot: &Arc<Slot>, record: &Record, corrupt: bool) {
        let slot = slot.clone();
        let record = record.clone();
        self.counters.read_repairs.fetch_add(1, Ordering::Relaxed);
        slot.stats().read_repaired();
        tracing::debug!(backend = %slot.name, key = %record.key(), version = %record.version(), corrupt, "read repair");
        let span = tracing::debug_span!("mux.read_repair", backend = %slot.name, key = %record.key(), version = %record.version(), corrupt);
        self.background.spawn(
            async move {
                if corrupt && slot.backend.info().capability.purge {
                    let purged = slot
                        .guard(
                            Operation::Purge,
                            slot.backend.purge(record.key(), record.version()),
                        )
                        .await;
                    if let Err(e) = purged {
                        tracing::warn!(backend = %slot.name, key = %record.key(), error = %e, "purging a corrupt copy failed");
                    }
                }
                let result = slot
                    .guard(op_of(&record), apply_raw(&*slot.backend, &record))
                    .await;
                if let Err(e) = result {
                    tracing::warn!(backend = %slot.name, key = %record.key(), error = %e, corrupt, "read repair failed");
                }
            }
            .instrument(span),
        );
    }
}

/// How many of `errors` report a corrupt copy.
fn corrupt_count(errors: &[Error]) -> usize {
    errors
        .iter()
        .filter(|e| e.kind() == ErrorKind::Corrupt)
        .count()
}

/// `errors` as one list for a message: "[get on backend 'a': …; get on backend 'b': …]".
fn listed(errors: &[Error]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("[{}]", list.join("; "))
}

/// The error when no backend of a route gave a usable answer. Backends that returned
/// corrupt copies did answer, so the message says so (and names them, in the list);
/// when every failure was a corrupt copy the error is `Corrupt`, not `Unavailable`.
pub(super) fn no_answer(route: &Route, key: &Key, errors: Vec<Error>) -> Error {
    let temporary = errors.is_empty() || errors.iter().any(Error::is_temporary);
    let corrupt = corrupt_count(&errors);
    let route = route.config.describe();
    let (kind, message) = match corrupt {
        0 => (
            ErrorKind::Unavailable,
            format!(
                "no backend of {route} answered for {key}: {}",
                listed(&errors)
            ),
        ),
        c if c == errors.len() => (
            ErrorKind::Corrupt,
            format!(
                "every backend of {route} that answered for {key} returned a corrupt copy \
                 (run mux-sync verify with repair, or rewrite the key): {}",
                listed(&errors)
            ),
        ),
        c => (
            ErrorKind::Unavailable,
            format!(
                "no backend of {route} gave a usable copy of {key} ({c} returned corrupt \
                 data, the others failed): {}",
                listed(&errors)
            ),
        ),
    };
    let e = Error::new(kind, message).with_operation(Operation::Get);
    if temporary {
        e.temporary()
    } else {
        e.permanent()
    }
}

/// The error of a gathering read that got `good` usable answers of the `required`.
fn not_met(key: &Key, required: usize, good: usize, errors: Vec<Error>) -> Error {
    let corrupt = corrupt_count(&errors);
    let corrupt = if corrupt > 0 {
        format!(" and {corrupt} corrupt copies")
    } else {
        String::new()
    };
    let e = Error::new(
        ErrorKind::ConsistencyNotMet,
        format!(
            "read of {key} needed {required} answers, got {good} usable{corrupt}; \
             failures: {}",
            listed(&errors)
        ),
    )
    .with_operation(Operation::Get);
    // Worth retrying when a cause is (an outage, an open circuit), as for writes.
    if errors.is_empty() || errors.iter().any(Error::is_temporary) {
        e.temporary()
    } else {
        e.permanent()
    }
}
