//! Comparing one key across stores, and converging it.

use std::sync::Arc;

use mux_core::{Backend, ErrorKind, Key, PutOutcome, Result, Version};
use serde::Serialize;

use crate::merge::Row;
use crate::throttle::Throttle;

/// How a key differs between stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// Some stores do not hold the key at all.
    Missing,
    /// Some stores hold a tombstone where others hold a live value.
    TombstoneOneSide,
    /// Every store holds the key, at different versions.
    VersionDiffers,
}

/// What one store holds for a divergent key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replica {
    /// The store's name.
    pub backend: Arc<str>,
    /// The version it holds (`None`: it does not hold the key).
    pub version: Option<Version>,
    /// Whether that version is a tombstone.
    pub tombstone: bool,
}

/// A key on which the stores disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The key.
    pub key: Key,
    /// How it differs.
    pub kind: DivergenceKind,
    /// What each store holds, in the order the stores were given.
    pub replicas: Vec<Replica>,
}

impl Divergence {
    /// The divergence in `row`, if the stores disagree on it.
    pub fn of(row: &Row, names: &[Arc<str>]) -> Option<Divergence> {
        let first = row.entries.first()?;
        let same = row.entries.iter().all(|e| match (e, first) {
            (Some(a), Some(b)) => {
                a.meta.version == b.meta.version && a.meta.tombstone == b.meta.tombstone
            }
            _ => false,
        });
        if same {
            return None;
        }
        let replicas: Vec<Replica> = row
            .entries
            .iter()
            .zip(names)
            .map(|(e, name)| Replica {
                backend: name.clone(),
                version: e.as_ref().map(|e| e.meta.version),
                tombstone: e.as_ref().is_some_and(|e| e.meta.tombstone),
            })
            .collect();
        let kind = if replicas.iter().any(|r| r.version.is_none()) {
            DivergenceKind::Missing
        } else if replicas.iter().any(|r| r.tombstone) && replicas.iter().any(|r| !r.tombstone) {
            DivergenceKind::TombstoneOneSide
        } else {
            DivergenceKind::VersionDiffers
        };
        Some(Divergence {
            key: row.key.clone(),
            kind,
            replicas,
        })
    }

    /// The highest version any store holds.
    pub fn highest(&self) -> Option<Version> {
        self.replicas.iter().filter_map(|r| r.version).max()
    }

    /// How far behind the most stale store that holds the key is: the highest version's
    /// physical time minus the oldest held version's, in milliseconds (a store without
    /// the key has no version to measure, so it counts for nothing).
    pub fn lag_ms(&self) -> u64 {
        let held = || self.replicas.iter().filter_map(|r| r.version);
        match (held().max(), held().min()) {
            (Some(high), Some(low)) => high.physical_ms().saturating_sub(low.physical_ms()),
            _ => 0,
        }
    }
}

/// Converges `d` by writing the highest version (a tombstone included) to every store
/// that holds less, through the stores' versioned write: a store that meanwhile got a
/// newer version answers `Superseded` and keeps it. The record is read back from a
/// store holding the highest version; one that returns corrupt data is skipped for the
/// next. Returns how many stores were written.
pub(crate) async fn converge(
    d: &Divergence,
    backends: &[Arc<dyn Backend>],
    throttle: &Throttle,
) -> Result<usize> {
    let mut holders: Vec<usize> = (0..d.replicas.len())
        .filter(|&i| d.replicas[i].version.is_some())
        .collect();
    holders.sort_by_key(|&i| std::cmp::Reverse(d.replicas[i].version));
    let mut last_err = None;
    let mut record = None;
    for i in holders {
        throttle.acquire(1).await;
        match backends[i].get(&d.key).await {
            Ok(Some(r)) => {
                record = Some(r);
                break;
            }
            // Purged or corrupt on this store since it was listed: try the next.
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    let Some(record) = record else {
        return match last_err {
            Some(e) => Err(e),
            None => Ok(0),
        };
    };
    let mut written = 0;
    for (i, replica) in d.replicas.iter().enumerate() {
        if replica.version.is_some_and(|v| v >= record.version()) {
            continue;
        }
        throttle.acquire(1).await;
        if backends[i].put(&record).await? == PutOutcome::Applied {
            written += 1;
        }
    }
    Ok(written)
}
