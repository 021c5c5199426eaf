//! Consistency checks and migration for mux: how far apart are a route's stores, how to
//! bring them back together, and how to move data onto a new store without downtime.
//!
//! Read repair fixes only what is read and hinted handoff only what a node knew it owed;
//! stores still drift (a hint dead-lettered and discarded, a store restored from an old
//! backup, a row edited by hand, a store added to a route). This crate finds and fixes
//! that drift with the same versioned writes everything else in mux uses, so every job
//! here is safe to run twice, to interrupt, and to run while the application writes:
//!
//! - [`verify`]: compares replicas by digests of key ranges ([`mux_core::digest`]),
//!   descending only into ranges whose digests differ, and reports the keys whose
//!   versions differ, are missing, or are tombstoned on one side only; with
//!   [`VerifyOptions::repair`] it writes the highest version (tombstones included) to
//!   the stale stores.
//! - [`backfill`]: fills a new or wiped store from its peers while writes continue; the
//!   race with live writes resolves by version.
//! - [`collect_garbage`]: purges a tombstone only after its grace period *and* once
//!   every store given holds it (checked, not assumed).
//! - [`export`] / [`Importer`]: a documented, versioned JSON-lines format
//!   ([`format`]) holding records exactly, for seeding, backups and moves.
//!
//! Every job can be throttled ([`Throttle`]), reports progress ([`Progress`]) and
//! resumes from a [`Checkpoint`] (the last key whose range is done).
#![deny(missing_docs)]

mod backfill;
mod checkpoint;
mod compare;
pub mod format;
mod gc;
mod merge;
mod throttle;
mod transfer;
mod verify;

pub use backfill::{BackfillOptions, BackfillReport, backfill};
pub use checkpoint::{Checkpoint, Progress, ProgressSnapshot};
pub use compare::{Divergence, DivergenceKind, Replica};
pub use gc::{GcOptions, GcReport, collect_garbage};
pub use merge::{MergedListing, Row};
pub use throttle::Throttle;
pub use transfer::{ExportOptions, ImportReport, Importer, export};
pub use verify::{VerifyOptions, VerifyReport, verify};
