//! Tombstone garbage collection that cannot resurrect a deleted value.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mux_core::digest::KeyRange;
use mux_core::{Backend, Error, Prefix, Result, Version};
use serde::Serialize;

use crate::checkpoint::Progress;
use crate::merge::MergedListing;
use crate::throttle::Throttle;

/// How [`collect_garbage`] runs.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// A tombstone younger than this (by its version's time) is kept.
    pub grace: Duration,
    /// The ops/s limit.
    pub throttle: Throttle,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// Now, in Unix milliseconds (`None`: the system clock); tests set it.
    pub now_ms: Option<u64>,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(10 * 24 * 3600),
            throttle: Throttle::unlimited(),
            progress: Arc::new(Progress::default()),
            now_ms: None,
        }
    }
}

/// What [`collect_garbage`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Tombstones seen (on any store).
    pub tombstones: u64,
    /// Keys purged from every store.
    pub purged: u64,
    /// Tombstones past their grace period kept because not every store holds that
    /// same tombstone (missing, older, or live somewhere): purging them could let the
    /// value they delete come back. `repair` first; the next run collects them.
    pub held_back: u64,
    /// Tombstones still inside their grace period.
    pub young: u64,
}

/// Purges, from every store in `backends`, the tombstones under `prefix` that are older
/// than the grace period **and** that every store holds at the same version — checked
/// by listing each store, never assumed. Each purge is conditional
/// (`purge(key, up_to = that version)`), so a write that lands meanwhile survives.
///
/// Give every store of the route (asynchronous replicas too): a store left out might
/// still hold the deleted value. The grace period must exceed the longest a write can
/// stay in flight (hinted handoff, dead letters awaiting replay), or a late replay of
/// an older value lands after its tombstone is gone.
pub async fn collect_garbage(
    backends: &[Arc<dyn Backend>],
    prefix: Prefix,
    options: &GcOptions,
) -> Result<GcReport> {
    if backends.is_empty() {
        return Err(Error::invalid_input(
            "tombstone GC needs the route's stores",
        ));
    }
    if let Some(b) = backends.iter().find(|b| !b.info().capability.purge) {
        return Err(Error::unsupported(format!(
            "store {} cannot purge records: tombstone GC needs every store of the route to purge, so none is purged",
            b.info().name
        )));
    }
    let now_ms = options.now_ms.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX);
    let horizon = now_ms.saturating_sub(grace_ms);
    let mut report = GcReport::default();
    let range = KeyRange::prefix(prefix);
    let mut listing = MergedListing::new(backends.to_vec(), range, 1000, options.throttle.clone());
    while let Some(rows) = listing.next_rows().await? {
        options.progress.checked(rows.len() as u64);
        for row in rows {
            let tombstones: Vec<Version> = row
                .entries
                .iter()
                .flatten()
                .filter(|e| e.meta.tombstone)
                .map(|e| e.meta.version)
                .collect();
            let Some(&version) = tombstones.iter().max() else {
                continue;
            };
            report.tombstones += 1;
            if version.physical_ms() >= horizon {
                report.young += 1;
                continue;
            }
            let everywhere = row.entries.iter().all(|e| {
                e.as_ref()
                    .is_some_and(|e| e.meta.tombstone && e.meta.version == version)
            });
            if !everywhere {
                report.held_back += 1;
                options.progress.skipped(1);
                continue;
            }
            options.throttle.acquire(backends.len()).await;
            for b in backends {
                b.purge(&row.key, version).await?;
            }
            report.purged += 1;
            options.progress.written(1);
        }
    }
    Ok(report)
}
