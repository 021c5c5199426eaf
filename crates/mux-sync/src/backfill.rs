//! `backfill`: fill a new or wiped store from its peers while writes continue.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream;
use mux_core::digest::KeyRange;
use mux_core::{Backend, Error, Key, PutOutcome, Record, Result};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, Progress};
use crate::merge::MergedListing;
use crate::throttle::Throttle;

/// How [`backfill`] runs.
#[derive(Clone, Debug)]
pub struct BackfillOptions {
    /// Records written to the target per batch (and listed per page).
    pub batch: usize,
    /// Reads from the sources in flight at once.
    pub concurrency: usize,
    /// The ops/s limit.
    pub throttle: Throttle,
    /// Resume from and record progress in this checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// How many failed keys the report names.
    pub sample: usize,
}

impl Default for BackfillOptions {
    fn default() -> BackfillOptions {
        BackfillOptions {
            batch: 256,
            concurrency: 32,
            throttle: Throttle::unlimited(),
            checkpoint: None,
            progress: Arc::new(Progress::default()),
            sample: 20,
        }
    }
}

/// What [`backfill`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackfillReport {
    /// The key the run resumed after (from its checkpoint).
    pub resumed_after: Option<String>,
    /// Keys the sources hold.
    pub considered: u64,
    /// Records copied to the target.
    pub copied: u64,
    /// Keys the target already held at the sources' version or newer (a live write got
    /// there first), or that the target refused as superseded when copied.
    pub skipped: u64,
    /// Keys that could not be copied.
    pub failed: u64,
    /// The first failures.
    pub errors: Vec<String>,
}

/// Copies to `target` every record under `prefix` that the `sources` hold at a higher
/// version than it does (the highest version among the sources, tombstones included),
/// with the record's own version: the target's versioned write settles any race with
/// live writes, which the target receives from the moment it joins the route.
///
/// Resumable: with a checkpoint, each finished batch records its last key.
pub async fn backfill(
    target: Arc<dyn Backend>,
    sources: &[Arc<dyn Backend>],
    prefix: mux_core::Prefix,
    options: &BackfillOptions,
) -> Result<BackfillReport> {
    if sources.is_empty() {
        return Err(Error::invalid_input(
            "backfill needs at least one source store besides the target",
        ));
    }
    let resume = match &options.checkpoint {
        Some(cp) => cp.load()?,
        None => None,
    };
    let mut report = BackfillReport {
        resumed_after: resume.as_ref().map(|k| k.as_str().to_owned()),
        ..BackfillReport::default()
    };
    let mut all = sources.to_vec();
    all.push(target.clone());
    let t = sources.len();
    let range = KeyRange::prefix(prefix).between(resume, None);
    let mut listing = MergedListing::new(all, range, options.batch, options.throttle.clone());
    while let Some(rows) = listing.next_rows().await? {
        // (key, the source holding the highest version) for every key the target lacks.
        let mut wanted: Vec<(Key, usize)> = Vec::new();
        for row in &rows {
            let best = row.entries[..t]
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|e| (i, e.meta.version)))
                .max_by_key(|(_, v)| *v);
            let Some((source, version)) = best else {
                continue; // only the target holds it
            };
            report.considered += 1;
            match &row.entries[t] {
                Some(e) if e.meta.version >= version => report.skipped += 1,
                _ => wanted.push((row.key.clone(), source)),
            }
        }
        options.progress.checked(rows.len() as u64);
        copy(&target, sources, wanted, options, &mut report).await;
        let last = rows.last().map(|r| r.key.clone());
        options.progress.done_through(last.as_ref());
        if let (Some(cp), Some(_)) = (&options.checkpoint, &last) {
            cp.save(last.as_ref(), &options.progress)?;
        }
    }
    if let Some(cp) = &options.checkpoint {
        cp.clear()?;
    }
    Ok(report)
}

/// Reads the wanted records from their sources and writes them to the target in
/// batches.
async fn copy(
    target: &Arc<dyn Backend>,
    sources: &[Arc<dyn Backend>],
    wanted: Vec<(Key, usize)>,
    options: &BackfillOptions,
    report: &mut BackfillReport,
) {
    let reads = stream::iter(wanted)
        .map(|(key, source)| {
            let backend = sources[source].clone();
            let throttle = options.throttle.clone();
            async move {
                throttle.acquire(1).await;
                let got = backend.get(&key).await;
                (key, got)
            }
        })
        .buffered(options.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut records: Vec<Record> = Vec::with_capacity(reads.len());
    for (key, got) in reads {
        match got {
            Ok(Some(r)) => records.push(r),
            Ok(None) => report.skipped += 1, // purged at the source since it was listed
            Err(e) => fail(report, options, &key, &e),
        }
    }
    if records.is_empty() {
        return;
    }
    options.throttle.acquire(records.len()).await;
    // Writes are versioned, so a batch that failed part-way is safe to send again.
    let mut result = target.put_batch(&records).await;
    for attempt in 1..=3u32 {
        match &result {
            Err(e) if e.is_temporary() => {
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                result = target.put_batch(&records).await;
            }
            _ => break,
        }
    }
    match result {
        Ok(outcomes) => {
            for o in outcomes {
                if o == PutOutcome::Applied {
                    report.copied += 1;
                    options.progress.written(1);
                } else {
                    report.skipped += 1;
                    options.progress.skipped(1);
                }
            }
        }
        Err(e) => {
            for r in &records {
                fail(report, options, r.key(), &e);
            }
        }
    }
}

fn fail(report: &mut BackfillReport, options: &BackfillOptions, key: &Key, e: &Error) {
    report.failed += 1;
    options.progress.failed(1);
    if report.errors.len() < options.sample {
        report.errors.push(format!("{key}: {e}"));
    }
}
