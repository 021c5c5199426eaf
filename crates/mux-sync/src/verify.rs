//! `verify` (and `repair`): find the keys on which stores disagree, by digests.

use std::sync::Arc;

use futures_util::future::try_join_all;
use mux_core::digest::{Digest, DigestChunk, DigestRequest, KeyRange, Splits};
use mux_core::{Backend, Error, Key, ListEntry, Prefix, Result};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, Progress};
use crate::compare::{Divergence, DivergenceKind, converge};
use crate::merge::{MergedListing, Row};
use crate::throttle::Throttle;

/// How [`verify`] runs.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// How many chunks a differing range is cut into.
    pub fanout: usize,
    /// A range with at most this many entries on every store is compared by listing.
    pub leaf_size: u64,
    /// How many divergent keys the report lists in full.
    pub sample: usize,
    /// Converge the divergent keys (write the highest version to the stale stores).
    pub repair: bool,
    /// Compare by digests (`Some(true)`), by listing both sides (`Some(false)`), or by
    /// digests only when every store computes them natively (`None`, the default: a
    /// listing-based digest reads as much as the listing it replaces).
    pub use_digests: Option<bool>,
    /// The ops/s limit.
    pub throttle: Throttle,
    /// Resume from and record progress in this checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// The listing page size.
    pub page: usize,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions {
            fanout: 16,
            leaf_size: 512,
            sample: 20,
            repair: false,
            use_digests: None,
            throttle: Throttle::unlimited(),
            checkpoint: None,
            progress: Arc::new(Progress::default()),
            page: 1000,
        }
    }
}

/// What [`verify`] found (and repaired).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The stores compared, in order.
    pub backends: Vec<Arc<str>>,
    /// `digest` or `listing`.
    pub mode: &'static str,
    /// The key the run resumed after (from its checkpoint).
    pub resumed_after: Option<String>,
    /// Keys compared: those in ranges whose digests agreed plus those listed.
    pub checked: u64,
    /// Keys on which the stores disagree.
    pub divergent: u64,
    /// ... of which missing on some store.
    pub missing: u64,
    /// ... of which tombstoned on one side only.
    pub tombstone_one_side: u64,
    /// ... of which at different versions.
    pub version_differs: u64,
    /// Keys converged (every stale store written or already superseded).
    pub repaired: u64,
    /// Keys whose repair failed.
    pub repair_failed: u64,
    /// The replica lag seen, over every divergent key (not only the sample): the largest
    /// gap, in milliseconds of the versions' physical time, between a key's highest
    /// version and an older version a store still held (0 when no store held an older
    /// version: consistent, or only missing keys).
    pub max_lag_ms: u64,
    /// The first divergent keys, in full.
    pub sample: Vec<Divergence>,
    /// The first repair errors.
    pub errors: Vec<String>,
    /// Digest requests made (one per store per range compared).
    pub digest_requests: u64,
    /// Entries listed.
    pub listed: u64,
    /// Bytes read from the stores: digests and listed metadata (values are never read,
    /// except to repair).
    pub bytes_read: u64,
}

impl VerifyReport {
    /// Whether the stores held the same records (before any repair).
    pub fn is_consistent(&self) -> bool {
        self.divergent == 0
    }

    fn add(&mut self, d: Divergence, sample: usize) {
        self.divergent += 1;
        match d.kind {
            DivergenceKind::Missing => self.missing += 1,
            DivergenceKind::TombstoneOneSide => self.tombstone_one_side += 1,
            DivergenceKind::VersionDiffers => self.version_differs += 1,
        }
        self.max_lag_ms = self.max_lag_ms.max(d.lag_ms());
        if self.sample.len() < sample {
            self.sample.push(d);
        }
    }
}

/// The bytes a listed entry carries (key, version, flag, checksum, size, metadata).
pub(crate) fn entry_bytes(e: &ListEntry) -> u64 {
    let tags: usize = e.meta.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
    let ct = e.meta.content_type.as_ref().map_or(0, String::len);
    (e.key.as_str().len() + 16 + 1 + 4 + 8 + tags + ct) as u64
}

fn chunk_bytes(c: &DigestChunk) -> u64 {
    (8 + 16 + c.last.as_ref().map_or(0, |k| k.as_str().len())) as u64
}

/// Compares `backends` over `prefix` and reports the keys on which they disagree
/// (repairing them with [`VerifyOptions::repair`]).
///
/// By digests, ranges on which every store agrees cost one digest per store; only
/// differing ranges are cut into [`VerifyOptions::fanout`] chunks (at keys chosen by
/// the store holding most entries there) and descended into, down to ranges small
/// enough to list. Errors reading a store end the run (its checkpoint keeps what was
/// done); errors repairing a key are counted and the run goes on.
pub async fn verify(
    backends: &[Arc<dyn Backend>],
    prefix: Prefix,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    if backends.len() < 2 {
        return Err(Error::invalid_input(format!(
            "verify compares stores: give at least two (got {})",
            backends.len()
        )));
    }
    let names: Vec<Arc<str>> = backends.iter().map(|b| b.info().name.clone()).collect();
    let native = backends.iter().all(|b| b.info().capability.digest);
    let digests = options.use_digests.unwrap_or(native);
    let resume = match &options.checkpoint {
        Some(cp) => cp.load()?,
        None => None,
    };
    let mut run = Run {
        backends,
        names,
        options,
        report: VerifyReport {
            backends: backends.iter().map(|b| b.info().name.clone()).collect(),
            mode: if digests { "digest" } else { "listing" },
            resumed_after: resume.as_ref().map(|k| k.as_str().to_owned()),
            ..VerifyReport::default()
        },
    };
    let range = KeyRange::prefix(prefix).between(resume, None);
    if digests {
        run.by_digests(range).await?;
    } else {
        run.by_listing(range).await?;
    }
    if let Some(cp) = &options.checkpoint {
        cp.clear()?;
    }
    Ok(run.report)
}

struct Run<'a> {
    backends: &'a [Arc<dyn Backend>],
    names: Vec<Arc<str>>,
    options: &'a VerifyOptions,
    report: VerifyReport,
}

/// A range still to compare, with its digests on every store if already known.
struct Pending {
    range: KeyRange,
    digests: Option<Vec<Digest>>,
    depth: usize,
}

/// Deeper than this, a range is listed whatever its size (keys that share long
/// prefixes cannot loop the descent).
const MAX_DEPTH: usize = 48;

impl Run<'_> {
    /// Asks every store but `skip` for the digests of `request` (`skip`'s entry is
    /// left empty).
    async fn digest_all(
        &mut self,
        request: &DigestRequest,
        skip: Option<usize>,
    ) -> Result<Vec<Vec<DigestChunk>>> {
        let asked = self.backends.len() - usize::from(skip.is_some());
        self.options.throttle.acquire(asked).await;
        let chunks = try_join_all(self.backends.iter().enumerate().map(|(i, b)| async move {
            if Some(i) == skip {
                Ok(Vec::new())
            } else {
                b.digest(request).await
            }
        }))
        .await?;
        self.report.digest_requests += asked as u64;
        self.report.bytes_read += chunks.iter().flatten().map(chunk_bytes).sum::<u64>();
        Ok(chunks)
    }

    async fn by_digests(&mut self, range: KeyRange) -> Result<()> {
        // A stack popped in key order: children are pushed last chunk first.
        let mut stack = vec![Pending {
            range,
            digests: None,
            depth: 0,
        }];
        while let Some(p) = stack.pop() {
            let digests = match p.digests {
                Some(d) => d,
                None => {
                    let whole = DigestRequest::whole(p.range.clone());
                    let chunks = self.digest_all(&whole, None).await?;
                    chunks.iter().map(|c| c[0].digest).collect()
                }
            };
            if digests.iter().all(|d| *d == digests[0]) {
                self.report.checked += digests[0].count;
                self.options.progress.checked(digests[0].count);
                self.done_through(p.range.until.as_ref())?;
                continue;
            }
            let (reference, most) = digests
                .iter()
                .enumerate()
                .map(|(i, d)| (i, d.count))
                .max_by_key(|(_, c)| *c)
                .unwrap_or((0, 0));
            if most <= self.options.leaf_size || p.depth >= MAX_DEPTH {
                self.by_listing(p.range).await?;
                continue;
            }
            let every = most.div_ceil(self.options.fanout.max(2) as u64);
            let cut = DigestRequest {
                range: p.range.clone(),
                splits: Splits::Every(every),
            };
            self.options.throttle.acquire(1).await;
            let ref_chunks = self.backends[reference].digest(&cut).await?;
            self.report.digest_requests += 1;
            self.report.bytes_read += ref_chunks.iter().map(chunk_bytes).sum::<u64>();
            if ref_chunks.len() < 2 {
                self.by_listing(p.range).await?;
                continue;
            }
            let splits: Vec<Key> = ref_chunks[..ref_chunks.len() - 1]
                .iter()
                .filter_map(|c| c.last.clone())
                .collect();
            let at = DigestRequest {
                range: p.range.clone(),
                splits: Splits::At(splits.clone()),
            };
            // The reference's own chunks are already known.
            let mut per_backend = self.digest_all(&at, Some(reference)).await?;
            per_backend[reference] = ref_chunks;
            let mut after = p.range.after.clone();
            let mut children = Vec::with_capacity(splits.len() + 1);
            for j in 0..=splits.len() {
                let until = splits.get(j).cloned().or_else(|| p.range.until.clone());
                children.push(Pending {
                    range: p.range.between(after.clone(), until.clone()),
                    digests: Some(per_backend.iter().map(|c| c[j].digest).collect()),
                    depth: p.depth + 1,
                });
                after = until;
            }
            stack.extend(children.into_iter().rev());
        }
        Ok(())
    }

    async fn by_listing(&mut self, range: KeyRange) -> Result<()> {
        let until = range.until.clone();
        let mut listing = MergedListing::new(
            self.backends.to_vec(),
            range,
            self.options.page,
            self.options.throttle.clone(),
        );
        while let Some(rows) = listing.next_rows().await? {
            self.compare_rows(&rows).await;
            let last = rows.last().map(|r| r.key.clone());
            // Mid-range, only the keys listed so far are done.
            self.done_through(last.as_ref())?;
        }
        self.done_through(until.as_ref())
    }

    async fn compare_rows(&mut self, rows: &[Row]) {
        let listed: u64 = rows.iter().flat_map(|r| r.entries.iter().flatten()).count() as u64;
        self.report.listed += listed;
        self.report.bytes_read += rows
            .iter()
            .flat_map(|r| r.entries.iter().flatten())
            .map(entry_bytes)
            .sum::<u64>();
        self.report.checked += rows.len() as u64;
        self.options.progress.checked(rows.len() as u64);
        for row in rows {
            let Some(d) = Divergence::of(row, &self.names) else {
                continue;
            };
            self.options.progress.divergent(1);
            if self.options.repair {
                match converge(&d, self.backends, &self.options.throttle).await {
                    Ok(n) => {
                        self.report.repaired += 1;
                        self.options.progress.written(n as u64);
                    }
                    Err(e) => {
                        self.report.repair_failed += 1;
                        self.options.progress.failed(1);
                        if self.report.errors.len() < self.options.sample {
                            self.report.errors.push(format!("{}: {e}", d.key));
                        }
                    }
                }
            }
            self.report.add(d, self.options.sample);
        }
    }

    fn done_through(&self, key: Option<&Key>) -> Result<()> {
        self.options.progress.done_through(key);
        match (&self.options.checkpoint, key) {
            (Some(cp), Some(_)) => cp.save(key, &self.options.progress),
            _ => Ok(()),
        }
    }
}
