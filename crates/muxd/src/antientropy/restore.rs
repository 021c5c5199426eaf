//! Restoring a store found stale by its marker (`[mux.resilience] markers = true`).
//!
//! The `Mux` notices a store that came back empty or old and leaves it out of reads
//! (`mux_core`'s `markers.rs`); this task refills it and puts it back. Every health
//! interval it asks for the stale stores and, for each, backfills it
//! ([`mux_sync::backfill`]) on every route it belongs to, over each of the route's
//! scopes (its prefix and each tenant's), from the route's other stores that are not
//! stale themselves, throttled to `anti_entropy.ops_per_second`. Live writes keep
//! reaching the store meanwhile and the backfill's versioned writes settle any race
//! with them. Once every scope is copied without a failure, [`mux::Mux::mark_restored`]
//! marks the store afresh and reads use it again.
//!
//! It leaves the store stale (and says why in the log, and
//! `mux_store_restore_failed_total{backend}`) when a route has no other store to copy
//! from, a route is not listed, a scope's keys may be another route's on other stores
//! (the anti-entropy ownership rule), or a copy failed; the next interval tries again.
//! `anti_entropy.restore_stale = false` turns it off: an operator then backfills the
//! store (`mux sync backfill`) and declares it restored
//! (`POST /v1/admin/backends/{name}/restored`).
//!
//! Several muxd may restore the same store at once: the copies are versioned writes,
//! so the only cost is the duplicated work.

use std::sync::Arc;
use std::time::Duration;

use mux::{Backend, Error, Result, Staleness};
use mux_sync::{BackfillOptions, Throttle};

use super::scope::{ownership, scopes};
use crate::{AppState, Live};

/// What restoring one store copied.
#[derive(Debug, Default)]
struct Restored {
    copied: u64,
    skipped: u64,
    prefixes: usize,
}

/// Runs until `shutdown` turns true.
pub(super) async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let live = state.live();
        let every = live
            .config
            .mux
            .resilience
            .health_interval
            .max(Duration::from_millis(100));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let live = state.live();
        if !live.config.mux.resilience.markers || !live.config.anti_entropy.restore_stale {
            continue;
        }
        for (name, why) in live.mux.stale_backends() {
            let outcome = tokio::select! {
                r = restore(&live, &name) => r,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match outcome {
                Ok(done) => {
                    metrics::counter!("mux_store_restored_total", "backend" => name.clone())
                        .increment(1);
                    metrics::counter!("mux_store_restore_copied_total", "backend" => name.clone())
                        .increment(done.copied);
                    tracing::info!(
                        backend = %name,
                        reason = why.label(),
                        copied = done.copied,
                        skipped = done.skipped,
                        prefixes = done.prefixes,
                        "stale store backfilled from its peers and put back into reads"
                    );
                }
                Err(e) => {
                    metrics::counter!("mux_store_restore_failed_total", "backend" => name.clone())
                        .increment(1);
                    tracing::warn!(backend = %name, reason = why.label(), error = %e, "stale store not restored; it stays out of reads");
                }
            }
        }
    }
}

/// Backfills `name` on every route it belongs to, then marks it restored.
async fn restore(live: &Live, name: &str) -> Result<Restored> {
    let mux = &live.mux;
    let target = mux
        .backend(name)
        .cloned()
        .ok_or_else(|| Error::invalid_input(format!("no backend is called {name}")))?;
    let stale: Vec<String> = mux.stale_backends().into_iter().map(|(n, _)| n).collect();
    let throttle = Throttle::per_second(live.config.anti_entropy.ops_per_second);
    let mut routes = live.config.mux.routes.clone();
    routes.push(live.config.mux.default.clone());
    let mut done = Restored::default();
    for (i, route) in routes.iter().enumerate() {
        if !route.backends.iter().any(|t| t.backend == name) {
            continue;
        }
        let mut sources: Vec<Arc<dyn Backend>> = Vec::new();
        for t in &route.backends {
            if t.backend == name
                || stale.contains(&t.backend)
                || sources.iter().any(|s| *s.info().name == *t.backend)
            {
                continue;
            }
            if let Some(b) = mux.backend(&t.backend) {
                sources.push(b.clone());
            }
        }
        if sources.is_empty() {
            return Err(Error::unsupported(format!(
                "{} has no other store that is not stale to copy from",
                route.describe()
            )));
        }
        if !route.listed {
            return Err(Error::unsupported(format!(
                "{} is not listed: its stores cannot be copied",
                route.describe()
            )));
        }
        let (scopes, error) = scopes(route, &sources, &throttle).await;
        if let Some(e) = error {
            return Err(e);
        }
        for scope in &scopes {
            let prefix = scope.prefix(route)?;
            if let Err(why) = ownership(&routes, i, scope) {
                return Err(Error::unsupported(format!(
                    "{prefix:?} of {} cannot be copied on its own: {why}",
                    route.describe()
                )));
            }
            let options = BackfillOptions {
                throttle: throttle.clone(),
                ..BackfillOptions::default()
            };
            let report =
                mux_sync::backfill(target.clone(), &sources, prefix.clone(), &options).await?;
            if report.failed > 0 {
                return Err(Error::new(
                    mux::ErrorKind::Unavailable,
                    format!(
                        "{} of {prefix:?} could not be copied: {}",
                        report.failed,
                        report.errors.join("; ")
                    ),
                ));
            }
            done.copied += report.copied;
            done.skipped += report.skipped;
            done.prefixes += 1;
        }
    }
    mux.mark_restored(name).await?;
    Ok(done)
}

/// Why `name` is stale, if it is (for the admin endpoint's answer).
pub(crate) fn staleness(mux: &mux::Mux, name: &str) -> Option<Staleness> {
    mux.stale_backends()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
}
