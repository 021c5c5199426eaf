//! Sealing: a route's values transformed on their way into the stores and back
//! (encryption at rest is the one use; `mux-encrypt` implements it).
//!
//! The coordinator seals a live record once, after choosing its route and stamping its
//! version, before anything is written — so every backend of the route, the intent log
//! and the hints hold the same sealed bytes — and opens what a read returns just before
//! handing it to the caller. Read repair, hinted handoff, anti-entropy and backfill move
//! sealed records between stores untouched. Tombstones carry no value and are never
//! sealed. Keys and metadata stay plain: routing, listing and digests need them.

use std::fmt;

use crate::error::Result;
use crate::key::Key;
use crate::record::Record;

/// Transforms a route's values at rest (a route names one with `encrypt = "…"`).
#[async_trait::async_trait]
pub trait Sealer: Send + Sync + fmt::Debug {
    /// The name routes use for it.
    fn name(&self) -> &str;

    /// The most bytes sealing adds to a value (the coordinator checks the sealed size
    /// against its backends' `max_value_size`).
    fn overhead(&self) -> usize;

    /// The plain size of a value stored as `stored` bytes (a listing reports sizes
    /// without reading values). The default: unchanged.
    fn listed_size(&self, stored: u64) -> u64 {
        stored
    }

    /// Seals a live record: the same key (as stored, tenant namespace included), version
    /// and metadata, its value replaced. The key, version and tombstone flag must be
    /// bound to the sealed value, so a sealed value moved to another key or version
    /// fails to open.
    async fn seal(&self, record: Record) -> Result<Record>;

    /// Seals without waiting when it can (the keys are at hand): `Ok` with the
    /// outcome, or `Err(record)` handed back for [`seal`](Sealer::seal). The
    /// coordinator tries it first, so the common case costs no boxed future. The
    /// default: never.
    fn try_seal(&self, record: Record) -> std::result::Result<Result<Record>, Record> {
        Err(record)
    }

    /// Opens without waiting when it can, like [`try_seal`](Sealer::try_seal).
    fn try_open(
        &self,
        stored: &Key,
        record: Record,
    ) -> std::result::Result<Result<Record>, Record> {
        let _ = stored;
        Err(record)
    }

    /// The id of the key a stored value was sealed with (`None`: not sealed, or the
    /// sealer has no key ids). `Mux::reseal` counts records by it.
    fn key_id(&self, value: &[u8]) -> Option<String> {
        let _ = value;
        None
    }

    /// Whether a stored value should be sealed again: sealed under another key than
    /// the current one, or not sealed at all. The default: never.
    async fn needs_reseal(&self, value: &[u8]) -> Result<bool> {
        let _ = value;
        Ok(false)
    }

    /// Opens a sealed live record read back from a store under `stored` (the key the
    /// store holds it under). A value that does not open is `ErrorKind::Corrupt`: never
    /// wrong data.
    async fn open(&self, stored: &Key, record: Record) -> Result<Record>;
}

/// Opens `record` (read under `stored`) if it is live and a sealer applies.
pub(crate) async fn open(
    sealer: Option<&dyn Sealer>,
    stored: &Key,
    record: Option<Record>,
) -> Result<Option<Record>> {
    match (sealer, record) {
        (Some(s), Some(r)) if !r.is_tombstone() => match s.try_open(stored, r) {
            Ok(opened) => opened.map(Some),
            Err(r) => s.open(stored, r).await.map(Some),
        },
        (_, r) => Ok(r),
    }
}
