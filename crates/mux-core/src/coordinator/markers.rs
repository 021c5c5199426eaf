//! Store markers: noticing a store that came back empty or went back in time.
//!
//! Health checks, readiness and hints all look fine when a Redis without persistence
//! restarts, or a database is restored from last week's backup, while thousands of
//! keys are missing from it. With `resilience.markers` on, every store holds a small
//! record per store of the `Mux`, `_mux/markers/<store>`, and the health monitor
//! compares them every `health_interval`:
//!
//! - A store's **own** marker is written to it first and, only once it applied it, the
//!   same record (same version) is copied to its peers. So a peer can hold a newer copy
//!   of X's marker than X itself only if X lost a write it had acknowledged.
//! - A store is **stale** when its own marker is gone while a peer holds a copy or this
//!   `Mux` saw it ([`Staleness::Empty`]), when its own marker is older than a peer's copy
//!   or than the one this `Mux` saw ([`Staleness::Old`]), or when it was never marked
//!   while its peers were, on two checks in a row ([`Staleness::New`]: a store added
//!   to a marked deployment; a first start marking the stores one by one meanwhile
//!   is not one).
//!   A difference found is read again from the store itself before it counts, so a
//!   refresh landing between the reads is not taken for a loss.
//! - A store nobody has marked yet (the first start) is marked, not flagged.
//! - A store that is not stale has its marker refreshed (a new version) once it is
//!   older than twelve health intervals, so a backup older than that is noticed when
//!   it is restored.
//!
//! A stale store still receives every write, but reads leave it out (see `read.rs`)
//! while a store that is not stale can answer, and it is flagged in
//! [`Mux::health_report`] and the metrics `mux_store_stale{backend}` (a gauge) and
//! `mux_store_stale_total{backend,reason}`. Whoever refills it (muxd's restorer, or an
//! operator's backfill) then calls [`Mux::mark_restored`], which marks it afresh.
//!
//! The `_mux/` namespace is mux's own: applications cannot write there, `Mux` listings
//! leave it out, and mux-sync does not compare, copy or export it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;

use super::{Inner, Mux, Slot};
use crate::backend::{ListRequest, PutOutcome};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::key::{Key, Prefix};
use crate::record::Record;
use crate::version::Version;

/// The root of the keys mux keeps in every store for itself (`_mux/…`): applications
/// cannot write under it, and listings through a `Mux` leave it out.
pub const RESERVED_ROOT: &str = "_mux";

/// Where the markers are: `_mux/markers/<store>`.
const MARKERS: &str = "_mux/markers/";

/// How many health intervals a marker may age before it is refreshed.
const REFRESH_INTERVALS: u32 = 12;

/// Whether `key` lies in mux's own namespace (`_mux` or `_mux/…`).
pub fn is_reserved(key: &str) -> bool {
    key.strip_prefix(RESERVED_ROOT)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Why a store is taken to hold less than it should (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Staleness {
    /// Its marker is gone while its peers (or this `Mux`) saw it: the store lost its
    /// data (restarted without persistence, wiped, evicted).
    Empty,
    /// Its marker is older than the copy its peers hold (or this `Mux` saw): the store
    /// went back in time, e.g. restored from a backup.
    Old {
        /// How far behind, in milliseconds of the markers' clocks.
        behind_ms: u64,
    },
    /// It was never marked while its peers were: a store newly added (or wiped
    /// before this `Mux` first saw it).
    New,
}

impl Staleness {
    /// The metric label: `empty`, `old` or `new`.
    pub fn label(self) -> &'static str {
        match self {
            Staleness::Empty => "empty",
            Staleness::Old { .. } => "old",
            Staleness::New => "new",
        }
    }
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::Empty => f.write_str("its mux marker is gone: it lost its data"),
            Staleness::Old { behind_ms } => write!(
                f,
                "its mux marker is {behind_ms} ms older than expected: it went back in time (restored from a backup?)"
            ),
            Staleness::New => f.write_str("it was never marked while its peers were: a new store"),
        }
    }
}

/// One store's marker state, as the coordinator keeps it.
#[derive(Debug, Default)]
pub(crate) struct MarkerState {
    stale: AtomicBool,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default)]
struct Detail {
    staleness: Option<Staleness>,
    /// The newest version of this store's own marker seen on it, or written to it.
    seen: Option<Version>,
    /// The last check found it unmarked while others were marked: it is `New` if the
    /// next one does too (a first start marking the stores one by one meanwhile).
    unmarked_once: bool,
}

impl MarkerState {
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether reads should leave the store out.
    pub(crate) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    pub(crate) fn staleness(&self) -> Option<Staleness> {
        self.detail().staleness
    }

    fn seen(&self) -> Option<Version> {
        self.detail().seen
    }

    /// Whether it was found unmarked among marked stores before; notes this sighting.
    fn unmarked_again(&self, unmarked: bool) -> bool {
        std::mem::replace(&mut self.detail().unmarked_once, unmarked) && unmarked
    }

    fn saw(&self, version: Version) {
        let mut d = self.detail();
        d.seen = d.seen.max(Some(version));
    }

    /// Sets the verdict; returns the previous one.
    fn set(&self, verdict: Option<Staleness>) -> Option<Staleness> {
        let mut d = self.detail();
        self.stale.store(verdict.is_some(), Ordering::Relaxed);
        std::mem::replace(&mut d.staleness, verdict)
    }
}

fn marker_key(store: &str) -> Result<Key> {
    Key::new(format!("{MARKERS}{store}")).map_err(|e| {
        Error::invalid_input(format!(
            "store {store:?} cannot have a mux marker (its name is no key segment): {e}"
        ))
    })
}

/// The live markers a store holds: store name → version.
type Copies = BTreeMap<String, Version>;

impl Inner {
    /// The markers `slot` holds, by listing (or one read per store where it cannot
    /// list). `None` when the store did not answer.
    async fn copies(&self, slot: &Slot) -> Option<Copies> {
        let result: Result<Copies> = async {
            let mut out = Copies::new();
            if slot.backend.info().capability.list {
                let prefix = Prefix::new(MARKERS)?;
                let mut cursor = None;
                // Bounded: one entry per store of this `Mux`, plus strays.
                for _ in 0..64 {
                    let request = ListRequest::new(prefix.clone()).with_cursor(cursor);
                    let page = slot
                        .guard(Operation::List, slot.backend.list(&request))
                        .await?;
                    for e in page.entries.iter().filter(|e| !e.meta.tombstone) {
                        let name = &e.key.as_str()[MARKERS.len()..];
                        out.insert(name.to_owned(), e.meta.version);
                    }
                    cursor = page.next_cursor;
                    if cursor.is_none() {
                        break;
                    }
                }
            } else {
                for s in &self.slots {
                    let key = marker_key(&s.name)?;
                    let got = slot.guard(Operation::Get, slot.backend.get(&key)).await?;
                    if let Some(r) = got.filter(|r| !r.is_tombstone()) {
                        out.insert(s.name.to_string(), r.version());
                    }
                }
            }
            Ok(out)
        }
        .await;
        match result {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(backend = %slot.name, error = %e, "reading the mux markers failed");
                None
            }
        }
    }

    /// The version of `slot`'s own marker, read from it again.
    async fn own_again(&self, slot: &Slot) -> Option<Option<Version>> {
        let key = marker_key(&slot.name).ok()?;
        match slot.guard(Operation::Get, slot.backend.get(&key)).await {
            Ok(r) => Some(r.filter(|r| !r.is_tombstone()).map(|r| r.version())),
            Err(_) => None,
        }
    }

    /// Writes a new version of store `i`'s marker to it and, once it applied, to every
    /// other store. Returns the version it holds now.
    pub(crate) async fn write_marker(&self, i: usize) -> Result<Version> {
        let s = &self.slots[i];
        let version = self.clock.now();
        let record = Record::new(
            marker_key(&s.name)?,
            format!("mux store marker of {}", s.name),
            version,
        )
        .with_content_type("text/plain");
        let held = match s.guard(Operation::Put, s.backend.put(&record)).await? {
            PutOutcome::Applied => version,
            PutOutcome::Superseded { stored } => stored,
        };
        s.marker.saw(held);
        join_all(self.slots.iter().enumerate().filter(|(j, _)| *j != i).map(
            |(_, peer)| {
                let record = &record;
                async move {
                    if let Err(e) = peer
                        .guard(Operation::Put, peer.backend.put(record))
                        .await
                    {
                        tracing::debug!(backend = %peer.name, error = %e, "copying a mux marker failed");
                    }
                }
            },
        ))
        .await;
        Ok(held)
    }

    /// Compares every store's marker with its peers' copies, flags the stale ones,
    /// marks the unmarked and refreshes the aging (see the module docs).
    pub(crate) async fn check_markers(&self) {
        let copies: Vec<Option<Copies>> = join_all(self.slots.iter().map(|s| self.copies(s))).await;
        let refresh_after = self
            .resilience
            .health_interval
            .max(Duration::from_millis(100))
            * REFRESH_INTERVALS;
        let now_ms = self.clock.now().physical_ms();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(mine) = &copies[i] else { continue };
            let name = s.name.to_string();
            let own = mine.get(&name).copied();
            let peers = copies
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, c)| c.as_ref()?.get(&name).copied())
                .max();
            let expected = peers.max(s.marker.seen());
            let others_marked = copies.iter().enumerate().any(|(j, c)| {
                j != i
                    && c.as_ref()
                        .is_some_and(|c| c.contains_key(&*self.slots[j].name))
            });
            let unmarked = own.is_none() && expected.is_none() && others_marked;
            let mut verdict = match (own, expected) {
                (None, None) if others_marked => {
                    if !s.marker.unmarked_again(unmarked) {
                        continue;
                    }
                    Some(Staleness::New)
                }
                (None, None) => {
                    // Nobody marked it yet: the first start.
                    if let Err(e) = self.write_marker(i).await {
                        tracing::debug!(backend = %s.name, error = %e, "marking a store failed");
                    }
                    continue;
                }
                (None, Some(_)) => Some(Staleness::Empty),
                (Some(v), Some(e)) if v < e => Some(Staleness::Old {
                    behind_ms: e.physical_ms().saturating_sub(v.physical_ms()),
                }),
                (Some(_), _) => None,
            };
            s.marker.unmarked_again(unmarked);
            if let (Some(Staleness::Empty | Staleness::Old { .. }), Some(e)) = (verdict, expected) {
                // Read it again: a refresh may have reached it after the first read.
                match self.own_again(s).await {
                    None => continue,
                    Some(Some(v)) if v >= e => verdict = None,
                    Some(_) => {}
                }
            }
            match verdict {
                Some(v) => self.flag(s, v),
                None => {
                    self.unflag(s);
                    let held = own.max(expected);
                    if let Some(v) = held {
                        s.marker.saw(v);
                    }
                    let age = now_ms.saturating_sub(held.map_or(0, Version::physical_ms));
                    if u128::from(age) >= refresh_after.as_millis()
                        && let Err(e) = self.write_marker(i).await
                    {
                        tracing::debug!(backend = %s.name, error = %e, "refreshing a mux marker failed");
                    }
                }
            }
        }
    }

    fn flag(&self, s: &Slot, verdict: Staleness) {
        metrics::gauge!("mux_store_stale", "backend" => s.name.to_string()).set(1.0);
        if s.marker.set(Some(verdict)).is_none() {
            metrics::counter!("mux_store_stale_total", "backend" => s.name.to_string(), "reason" => verdict.label()).increment(1);
            tracing::warn!(backend = %s.name, reason = verdict.label(), "store is stale: {verdict}; reads leave it out until it is restored");
        }
    }

    fn unflag(&self, s: &Slot) {
        metrics::gauge!("mux_store_stale", "backend" => s.name.to_string()).set(0.0);
        if let Some(was) = s.marker.set(None) {
            tracing::info!(backend = %s.name, was = was.label(), "store is no longer stale");
        }
    }
}

impl Mux {
    /// The stores found stale by their markers, with why (empty with markers off).
    pub fn stale_backends(&self) -> Vec<(String, Staleness)> {
        self.inner
            .slots
            .iter()
            .filter_map(|s| Some((s.name.to_string(), s.marker.staleness()?)))
            .collect()
    }

    /// Compares the stores' markers now (the health monitor does this every
    /// `health_interval` when `resilience.markers` is on).
    pub async fn check_markers(&self) {
        self.inner.check_markers().await;
    }

    /// Declares the store `name` whole again (after a backfill from its peers): marks
    /// it afresh and puts it back into reads.
    pub async fn mark_restored(&self, name: &str) -> Result<()> {
        let i = self
            .inner
            .slots
            .iter()
            .position(|s| &*s.name == name)
            .ok_or_else(|| {
                Error::new(ErrorKind::NotFound, format!("no backend is called {name}"))
            })?;
        self.inner.write_marker(i).await?;
        self.inner.unflag(&self.inner.slots[i]);
        Ok(())
    }
}

#[cfg(test)]
#[path = "markers_tests.rs"]
mod tests;
