//! The fault cases: each arms one fault before each operation and checks what the
//! adapter answered against what its store holds afterwards.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mux_core::{
    Backend, Key, ListRequest, MemoryBackend, Mux, PutOutcome, ReadPolicy, Record, Role,
    RouteConfig, Version, WriteConsistency,
};

use super::{Fault, Faults};
use crate::cases::fail;
use crate::{CaseResult, Ctx, Failure};

/// How long one call may take under a fault before the case fails: a lost connection
/// must end the call with an error, not hang it.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// How often a failed write or read is retried without faults before the case fails.
const RETRIES: u32 = 3;

/// A fault case's future.
pub type FaultCaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// A named fault case.
#[derive(Debug, Clone, Copy)]
pub struct FaultCase {
    /// The case's name.
    pub name: &'static str,
    /// Runs the case.
    pub run: for<'a> fn(&'a Ctx, &'a Faults) -> FaultCaseFuture<'a>,
}

macro_rules! fault_cases {
    ($($name:ident),* $(,)?) => {
        /// Every fault case, in run order.
        pub const FAULT_CASES: &[FaultCase] =
            &[$(FaultCase { name: stringify!($name), run: |ctx, f| Box::pin($name(ctx, f)) }),*];
    };
}

fault_cases!(
    faults_puts_tell_the_truth,
    faults_deletes_tell_the_truth,
    faults_batches_tell_the_truth,
    faults_reads_never_lie,
    faults_lists_never_lie,
    faults_mux_all_keeps_its_promise,
    faults_mux_quorum_keeps_its_promise,
);

/// Runs `call` with `fault` armed, bounded by [`CALL_LIMIT`], and disarms.
async fn under<T>(
    faults: &Faults,
    fault: Fault,
    call: impl Future<Output = mux_core::Result<T>>,
) -> Result<mux_core::Result<T>, Failure> {
    faults.arm(fault);
    let result = tokio::time::timeout(CALL_LIMIT, call).await;
    faults.disarm();
    result.map_err(|_| {
        fail(format!(
            "a call under a {fault:?} fault did not return within {} s: a lost request or \
             response must end the call with an error",
            CALL_LIMIT.as_secs()
        ))
    })
}

/// An error a fault caused must be temporary when the fault hit the adapter's own
/// transport (the coordinator retries only temporary errors).
fn check_temporary(faults: &Faults, fault: Fault, what: &str, e: &mux_core::Error) -> CaseResult {
    if faults.beneath() && !e.is_temporary() {
        return Err(fail(format!(
            "{what} under a {fault:?} fault failed with a permanent error ({e}): a lost request \
             or response must be temporary, so that it is retried"
        )));
    }
    Ok(())
}

/// Writes `record` (a put, or a delete for a tombstone).
async fn write(backend: &dyn Backend, record: &Record) -> mux_core::Result<PutOutcome> {
    if record.is_tombstone() {
        backend.delete(record.key(), record.version()).await
    } else {
        backend.put(record).await
    }
}

/// Retries `call` without faults until it answers, at most [`RETRIES`] times, on
/// temporary errors only.
async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = mux_core::Result<T>>,
{
    let mut last = None;
    for attempt in 0..RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        match tokio::time::timeout(CALL_LIMIT, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if e.is_temporary() => last = Some(e.to_string()),
            Ok(Err(e)) => return Err(fail(format!("{what}, retried without faults: {e}"))),
            Err(_) => last = Some("no answer within the time limit".into()),
        }
    }
    Err(fail(format!(
        "{what}, retried {RETRIES} times without faults, still fails: {}",
        last.unwrap_or_default()
    )))
}

/// The store holds exactly `record` (checked without faults).
async fn holds(ctx: &Ctx, record: &Record, claim: &str) -> CaseResult {
    let key = record.key();
    let got = retry(&format!("reading back {key}"), || ctx.backend().get(key)).await?;
    let v = record.version();
    match got {
        None => Err(fail(format!(
            "{claim}, but the store holds nothing under {key}"
        ))),
        Some(got) if got.version() != v => Err(fail(format!(
            "{claim}, but the store holds version {} under {key}",
            got.version()
        ))),
        Some(got)
            if got.is_tombstone() != record.is_tombstone() || got.value() != record.value() =>
        {
            Err(fail(format!(
                "{claim}, but the store holds other contents at that version under {key}"
            )))
        }
        Some(_) => Ok(()),
    }
}

/// One write under `fault`, checked: the outcome is true, an error is temporary, and
/// a retry converges to `Applied`, or to `Superseded` at the write's own version when
/// the lost attempt had landed.
async fn checked_write(ctx: &Ctx, faults: &Faults, fault: Fault, record: &Record) -> CaseResult {
    let (key, v) = (record.key(), record.version());
    let what = if record.is_tombstone() {
        format!("the delete of {key} at {v}")
    } else {
        format!("the put of {key} at {v}")
    };
    let first = under(faults, fault, write(ctx.backend(), record)).await?;
    let (outcome, retried) = match first {
        Ok(outcome) => (outcome, false),
        Err(e) => {
            check_temporary(faults, fault, &what, &e)?;
            (retry(&what, || write(ctx.backend(), record)).await?, true)
        }
    };
    let claim = match outcome {
        PutOutcome::Applied => format!("{what} reported Applied under a {fault:?} fault"),
        PutOutcome::Superseded { stored } if stored == v => format!(
            "{what} reported Superseded at its own version under a {fault:?} fault{}",
            if retried { " (on retry)" } else { "" }
        ),
        PutOutcome::Superseded { stored } => {
            return Err(fail(format!(
                "{what} reported Superseded by {stored} under a {fault:?} fault, but nothing \
                 newer was ever written"
            )));
        }
    };
    holds(ctx, record, &claim).await
}

/// Both request faults fired at least once since `before` (else the case proved
/// nothing: the faults never reached the adapter's connection).
fn both_fired(faults: &Faults, before: (u64, u64)) -> CaseResult {
    let (requests, responses) = faults.fired();
    if requests == before.0 || responses == before.1 {
        return Err(fail(
            "the armed faults never fired: the adapter sent no request through the \
             injection point (connect it through `Faults::proxy` or `Faults::wrap`)",
        ));
    }
    Ok(())
}

/// 24 puts on three keys, each under a fault (the first two lose a request and a
/// response; the rest are drawn): every outcome is true, every error temporary, every
/// retry converges.
pub async fn faults_puts_tell_the_truth(ctx: &Ctx, faults: &Faults) -> CaseResult {
    let before = faults.fired();
    let keys: Vec<Key> = (0..3).map(|i| ctx.key(&format!("fput/k{i}"))).collect();
    for n in 0..24u64 {
        let fault = match n {
            0 => Fault::LoseRequest,
            1 => Fault::LoseResponse,
            _ => faults.draw("puts", n),
        };
        let record = Record::new(
            keys[n as usize % 3].clone(),
            format!("value {n}"),
            ctx.version(),
        );
        checked_write(ctx, faults, fault, &record).await?;
    }
    both_fired(faults, before)
}

/// Puts, then deletes (tombstones) and puts again, each under a fault: a delete's
/// outcome is as true as a put's, and a lost delete never resurrects or loses a key.
pub async fn faults_deletes_tell_the_truth(ctx: &Ctx, faults: &Faults) -> CaseResult {
    let before = faults.fired();
    let keys: Vec<Key> = (0..3).map(|i| ctx.key(&format!("fdel/k{i}"))).collect();
    for n in 0..18u64 {
        let fault = match n {
            0 => Fault::LoseResponse,
            1 => Fault::LoseRequest,
            _ => faults.draw("deletes", n),
        };
        let key = keys[n as usize % 3].clone();
        let record = if (n / 3) % 2 == 1 {
            Record::tombstone(key, ctx.version())
        } else {
            Record::new(key, format!("value {n}"), ctx.version())
        };
        checked_write(ctx, faults, fault, &record).await?;
    }
    both_fired(faults, before)
}

/// Eight batches of four (new keys and overwrites), each under a fault: one true
/// outcome per record, and a retried batch converges record by record.
pub async fn faults_batches_tell_the_truth(ctx: &Ctx, faults: &Faults) -> CaseResult {
    let before = faults.fired();
    for n in 0..8u64 {
        let fault = match n {
            0 => Fault::LoseRequest,
            1 => Fault::LoseResponse,
            _ => faults.draw("batches", n),
        };
        let records: Vec<Record> = (0..4u64)
            .map(|i| {
                let key = ctx.key(&format!("fbatch/k{}", (n * 2 + i) % 10));
                Record::new(key, format!("batch {n} record {i}"), ctx.version())
            })
            .collect();
        let what = format!("batch {n}");
        let outcomes = match under(faults, fault, ctx.backend().put_batch(&records)).await? {
            Ok(outcomes) => outcomes,
            Err(e) => {
                check_temporary(faults, fault, &what, &e)?;
                retry(&what, || ctx.backend().put_batch(&records)).await?
            }
        };
        if outcomes.len() != records.len() {
            return Err(fail(format!(
                "{what} under a {fault:?} fault: {} outcomes for {} records",
                outcomes.len(),
                records.len()
            )));
        }
        for (record, outcome) in records.iter().zip(outcomes) {
            let claim = match outcome {
                PutOutcome::Superseded { stored } if stored != record.version() => {
                    return Err(fail(format!(
                        "{what}: {} reported Superseded by {stored}, but nothing newer was \
                         ever written",
                        record.key()
                    )));
                }
                outcome => format!(
                    "{what}: {} at {} reported {outcome:?} under a {fault:?} fault",
                    record.key(),
                    record.version()
                ),
            };
            holds(ctx, record, &claim).await?;
        }
    }
    both_fired(faults, before)
}

/// Writes `count` keys without faults (every fourth a tombstone, one value of 64 KiB
/// or the store's largest, so that it spans many packets) and returns them in key order.
async fn seed_keys(ctx: &Ctx, dir: &str, count: usize) -> Result<Vec<Record>, Failure> {
    let large = ctx
        .capability()
        .max_value_size
        .unwrap_or(usize::MAX)
        .min(64 << 10);
    let mut records = Vec::new();
    for i in 0..count {
        let key = ctx.key(&format!("{dir}/k{i:02}"));
        let record = if i % 4 == 3 {
            Record::tombstone(key, ctx.version())
        } else if i == 0 {
            Record::new(key, vec![b'x'; large], ctx.version())
        } else {
            Record::new(key, format!("value {i}"), ctx.version())
        };
        retry("seeding a key", || write(ctx.backend(), &record)).await?;
        records.push(record);
    }
    records.sort_by(|a, b| a.key().cmp(b.key()));
    Ok(records)
}

/// Twenty reads of stored keys (and tombstones) under faults: each returns the stored
/// record or a temporary error — never "missing", never another version.
pub async fn faults_reads_never_lie(ctx: &Ctx, faults: &Faults) -> CaseResult {
    let records = seed_keys(ctx, "fread", 10).await?;
    for n in 0..20u64 {
        let fault = match n {
            0 => Fault::LoseRequest,
            1 => Fault::LoseResponse,
            _ => faults.draw("reads", n),
        };
        let record = &records[n as usize % records.len()];
        let key = record.key();
        match under(faults, fault, ctx.backend().get(key)).await? {
            Err(e) => check_temporary(faults, fault, &format!("reading {key}"), &e)?,
            Ok(None) => {
                return Err(fail(format!(
                    "reading {key} under a {fault:?} fault answered \"missing\", but it holds \
                     version {}: a lost connection must be an error, not a missing key",
                    record.version()
                )));
            }
            Ok(Some(got)) => {
                if got.version() != record.version()
                    || got.is_tombstone() != record.is_tombstone()
                    || got.value() != record.value()
                {
                    return Err(fail(format!(
                        "reading {key} under a {fault:?} fault returned version {} (tombstone: \
                         {}), but it holds version {} (tombstone: {})",
                        got.version(),
                        got.is_tombstone(),
                        record.version(),
                        record.is_tombstone()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A listing in pages of four, each page under a fault and retried on a temporary
/// error: the pages together hold every key once, in order, at its version.
pub async fn faults_lists_never_lie(ctx: &Ctx, faults: &Faults) -> CaseResult {
    if !ctx.capability().list {
        return Err(Failure::Skipped("needs the `list` capability".into()));
    }
    let records = seed_keys(ctx, "flist", 14).await?;
    let prefix = ctx.prefix("flist");
    let mut listed: Vec<(Key, Version)> = Vec::new();
    let mut cursor: Option<Key> = None;
    for n in 0..20u64 {
        let fault = faults.draw("lists", n);
        let request = ListRequest::new(prefix.clone())
            .with_limit(4)
            .with_cursor(cursor.clone());
        let what = format!("listing page {n}");
        let page = match under(faults, fault, ctx.backend().list(&request)).await? {
            Ok(page) => page,
            Err(e) => {
                check_temporary(faults, fault, &what, &e)?;
                retry(&what, || ctx.backend().list(&request)).await?
            }
        };
        listed.extend(page.entries.into_iter().map(|e| (e.key, e.meta.version)));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<(Key, Version)> = records
        .iter()
        .map(|r| (r.key().clone(), r.version()))
        .collect();
    if listed != expected {
        return Err(fail(format!(
            "a listing under faults returned {} entries, expected {} (every key once, in \
             order, at its version): {listed:?}",
            listed.len(),
            expected.len()
        )));
    }
    Ok(())
}

/// Sixteen writes through a `Mux` over the adapter (primary) and two memory backends
/// at `level`, each under a fault on the adapter: every acknowledged write is on at
/// least `need` of the three stores, and a quorum read through the `Mux` sees it.
async fn mux_keeps(ctx: &Ctx, faults: &Faults, level: WriteConsistency, need: usize) -> CaseResult {
    let adapter = ctx.backend_arc();
    let name = adapter.info().name.to_string();
    let replicas: Vec<Arc<dyn Backend>> = ["mux-conformance-a", "mux-conformance-b"]
        .into_iter()
        .map(|n| Arc::new(MemoryBackend::new(n)) as Arc<dyn Backend>)
        .collect();
    let mux = Mux::builder()
        .backend(adapter.clone())
        .backend(replicas[0].clone())
        .backend(replicas[1].clone())
        .default_route(
            RouteConfig::new("")
                .backend(name, Role::Primary)
                .backend("mux-conformance-a", Role::Replica)
                .backend("mux-conformance-b", Role::Replica)
                .write(level)
                // A majority read overlaps every acknowledged write at All or Quorum,
                // and still answers while the adapter's circuit is open.
                .read(ReadPolicy::Quorum),
        )
        .build()?;
    let front = mux.as_backend();
    let mut acknowledged = 0;
    for n in 0..16u64 {
        let fault = match n {
            0 => Fault::LoseRequest,
            1 => Fault::LoseResponse,
            _ => faults.draw("mux", n),
        };
        let record = Record::new(
            ctx.key(&format!("fmux/k{}", n % 4)),
            format!("value {n}"),
            ctx.version(),
        );
        let v = record.version();
        match under(faults, fault, front.put(&record)).await? {
            Err(_) => continue, // not acknowledged: no promise to check
            Ok(PutOutcome::Superseded { stored }) if stored != v => {
                return Err(fail(format!(
                    "the Mux at {level:?} reported {} at {v} Superseded by {stored} under a \
                     {fault:?} fault, but nothing newer was written",
                    record.key()
                )));
            }
            Ok(_) => acknowledged += 1,
        }
        let mut holding = 0;
        for store in std::iter::once(&adapter).chain(&replicas) {
            let got = retry("reading back a store", || store.get(record.key())).await?;
            if got.is_some_and(|r| r.version() == v && r.value() == record.value()) {
                holding += 1;
            }
        }
        if holding < need {
            return Err(fail(format!(
                "the Mux acknowledged {} at {v} at {level:?} under a {fault:?} fault, but only \
                 {holding} of 3 stores hold it (the promise is {need})",
                record.key()
            )));
        }
        let read = retry("a quorum read through the Mux", || front.get(record.key())).await?;
        if read.as_ref().map(Record::version) != Some(v) {
            return Err(fail(format!(
                "after the Mux acknowledged {} at {v} at {level:?}, a read through it returned \
                 {:?}",
                record.key(),
                read.map(|r| r.version())
            )));
        }
    }
    if acknowledged == 0 {
        return Err(fail(format!(
            "the Mux acknowledged none of 16 writes at {level:?}: nothing was checked"
        )));
    }
    Ok(())
}

/// A `Mux` writing at `All` over the adapter and two memory backends: every write it
/// acknowledges under a fault on the adapter is on all three.
pub async fn faults_mux_all_keeps_its_promise(ctx: &Ctx, faults: &Faults) -> CaseResult {
    mux_keeps(ctx, faults, WriteConsistency::All, 3).await
}

/// The same at `Quorum`: every acknowledged write is on at least two of the three.
pub async fn faults_mux_quorum_keeps_its_promise(ctx: &Ctx, faults: &Faults) -> CaseResult {
    mux_keeps(ctx, faults, WriteConsistency::Quorum, 2).await
}
