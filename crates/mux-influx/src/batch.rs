//! Batched puts (through `mux_core::batcher::PutBatcher`): whatever is queued when a
//! slot frees up goes out as one read of the keys' newest versions and one `/write` of every applied
//! point. No timer: a lone put goes out at once; under load, batches grow by themselves.

use std::collections::HashMap;

use mux_core::{PutOutcome, Record, Result, Version};

use crate::backend::InfluxBackend;
use crate::line;

/// The most puts in one batch.
pub(crate) const MAX_BATCH: usize = 64;
/// The most batches in flight at once.
pub(crate) const IN_FLIGHT: usize = 4;

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
