//! Background anti-entropy and scheduled tombstone GC (`[anti_entropy]`).
//!
//! Read repair fixes only what is read, hinted handoff only what a node knew it owed;
//! every `interval` a pass compares the stores of each route that has two or more (and
//! is listed) by digests ([`mux_sync::verify`]), writes the highest version of each
//! divergent key to the stores that hold less (`repair`), and, with `gc_grace`, purges
//! the tombstones every store of the route holds ([`mux_sync::collect_garbage`]). A pass
//! is throttled to `ops_per_second` store operations.
//!
//! **Which keys.** A route's keys are stored under its prefix and, for tenants, under
//! `tenants/<tenant>/<prefix>`: a pass compares both (a route for one tenant, only that
//! tenant's), finding the tenants by seeking through `tenants/` on the route's stores
//! (one listing call per tenant and store). A prefix can also hold keys that another
//! route owns (a longer prefix, more tags, one tenant): comparing them on this route's
//! stores is right only when that route's stores include all of this route's or none
//! of them, so a route whose keys might be another route's on a different set of
//! stores is not compared (the pass says why), and GC runs only where every such
//! route has exactly this route's stores (a store left out might hold the deleted
//! value).
//!
//! **One node at a time.** With `lease = "postgres"` (the default when the intent log
//! or the feed is on PostgreSQL, as when several muxd share them), a pass starts by
//! taking a PostgreSQL session advisory lock ([`LEASE_KEY`]) on a dedicated connection
//! and releases it when it ends; a node that does not get it skips the pass
//! (`mux_antientropy_skipped_total{reason="lease"}`). If the node dies, its session ends
//! and PostgreSQL releases the lock. (If the lease's connection breaks during a pass,
//! another node may start one alongside: passes may overlap safely, every write being
//! versioned, only wastefully.) The key is fixed, so muxd clusters sharing a database
//! take turns with each other too.
//!
//! **Schedule.** The first pass starts one interval after muxd does; each next one an
//! interval after the previous one started (or ended, if it took longer). A reload that
//! changes `[anti_entropy]`, the routes or the stores stops the pass in progress and
//! restarts the schedule from the new configuration; shutdown stops it too.
//!
//! **Metrics**, labelled by the route's prefix (`route`, as the route cache's metrics):
//! `mux_antientropy_keys_checked_total`, `mux_antientropy_repaired_total`,
//! `mux_antientropy_repair_failed_total`, `mux_antientropy_gc_purged_total`,
//! `mux_antientropy_errors_total` (counters), `mux_antientropy_divergent_keys` (found by the
//! last pass, before repair) and `mux_antientropy_replica_lag_seconds` (the largest gap
//! the last pass saw between a key's highest version and an older one a store held, by
//! the versions' clocks) (gauges); unlabelled, `mux_antientropy_passes_total`,
//! `mux_antientropy_last_run_timestamp_seconds` and
//! `mux_antientropy_skipped_total{reason}` (`lease`, `lease_error`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mux::{Backend, Error, ErrorKind, Result, RouteConfig};
use mux_sync::{GcOptions, Throttle, VerifyOptions};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{AntiEntropyConfig, ServerConfig};
use crate::{AppState, Live};

mod lease;
mod restore;
mod scope;
pub use lease::PostgresLease;
use lease::lease_target;
pub(crate) use restore::staleness;
use scope::{ownership, scopes};

/// The PostgreSQL advisory lock key every muxd takes for a pass: FNV-1a (64 bits) of
/// `"mux-antientropy"`, as a signed 64-bit key.
pub const LEASE_KEY: i64 = fnv1a(b"mux-antientropy") as i64;

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// How many divergent keys a route's summary names.
const SAMPLE: usize = 20;

/// What one pass did (or why it did nothing), as `last_pass` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PassSummary {
    /// The node that ran (or skipped) it (`[mux] node_id`).
    pub node_id: u32,
    /// When it started (Unix milliseconds).
    pub started_at_ms: u64,
    /// When it ended (Unix milliseconds).
    pub finished_at_ms: u64,
    /// Why it did nothing: `lease` (another node held the lease: it runs the pass) or
    /// `lease_error: …` (the lease could not be asked for); null when it ran.
    pub skipped: Option<String>,
    /// Keys compared, over every route.
    pub checked: u64,
    /// Keys on which a route's stores disagreed (before repair).
    pub divergent: u64,
    /// Keys repaired.
    pub repaired: u64,
    /// Keys whose repair failed (the next pass tries again).
    pub repair_failed: u64,
    /// The largest replica lag seen, in milliseconds of the versions' clocks.
    pub max_lag_ms: u64,
    /// Tombstones purged by GC.
    pub gc_purged: u64,
    /// Every route with two or more stores, in configuration order (the default last).
    pub routes: Vec<RoutePass>,
}

/// What a pass did on one route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoutePass {
    /// The route, as errors name it (`route "tenantconfig/"`, `the default route`).
    pub route: String,
    /// Its prefix (the `route` label of the metrics).
    pub prefix: String,
    /// Its stores.
    pub backends: Vec<String>,
    /// Why the route was left alone (`excluded`, `not listed`, …); null when compared.
    pub skipped: Option<String>,
    /// The stored prefixes compared (the route's prefix, and each tenant's).
    pub prefixes: Vec<String>,
    /// Keys compared.
    pub checked: u64,
    /// Keys on which the stores disagreed.
    pub divergent: u64,
    /// Keys repaired.
    pub repaired: u64,
    /// Keys whose repair failed.
    pub repair_failed: u64,
    /// The largest replica lag seen, in milliseconds.
    pub max_lag_ms: u64,
    /// The first divergent keys, as stored.
    pub sample: Vec<String>,
    /// Tombstone GC, when `gc_grace` is set and GC could run.
    pub gc: Option<GcPass>,
    /// Prefixes not compared (or not collected) because another route may hold keys
    /// there on other stores, and why.
    pub left_out: Vec<String>,
    /// What went wrong (a store error, a failed repair).
    pub errors: Vec<String>,
}

/// What tombstone GC did on one route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GcPass {
    /// Tombstones seen.
    pub tombstones: u64,
    /// Purged from every store.
    pub purged: u64,
    /// Past their grace but not held by every store alike (repair first; a later pass
    /// collects them).
    pub held_back: u64,
    /// Still inside their grace period.
    pub young: u64,
}

/// The anti-entropy of one muxd: what its last pass did.
#[derive(Debug, Default)]
pub struct AntiEntropy {
    last: Mutex<Option<PassSummary>>,
}

impl AntiEntropy {
    /// The summary of the last pass, run or skipped (`None` before the first one).
    pub fn last_pass(&self) -> Option<PassSummary> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, summary: PassSummary) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
    }
}

/// Checks `[anti_entropy]` against the rest of the configuration (no I/O).
pub(crate) fn check(config: &ServerConfig) -> Result<()> {
    let ae = &config.anti_entropy;
    if ae.interval.is_zero() {
        return Err(Error::invalid_input(
            "anti_entropy.interval must be longer than zero (e.g. \"10m\")",
        ));
    }
    let mut prefixes: Vec<&str> = config
        .mux
        .routes
        .iter()
        .map(|r| r.prefix.as_str())
        .collect();
    prefixes.push(config.mux.default.prefix.as_str());
    for excluded in &ae.exclude_prefixes {
        if !prefixes.contains(&excluded.as_str()) {
            let known: Vec<String> = prefixes.iter().map(|p| format!("{p:?}")).collect();
            return Err(Error::invalid_input(format!(
                "anti_entropy.exclude_prefixes: {excluded:?} is no route's prefix (the routes' prefixes are {})",
                known.join(", ")
            )));
        }
    }
    lease_target(config).map(|_| ())
}

/// Starts the background task of `state`'s server; it ends when `shutdown` turns true
/// (or its sender goes away).
pub(crate) fn spawn(
    state: AppState,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The restorer of stale stores runs beside the passes, on its own schedule.
        tokio::join!(
            run(state.clone(), shutdown.clone()),
            restore::run(state, shutdown)
        );
    })
}

/// What a pass depends on: a reload that changes it restarts the schedule.
fn schedule_inputs(config: &ServerConfig) -> (AntiEntropyConfig, &mux::MuxConfig, String) {
    (
        config.anti_entropy.clone(),
        &config.mux,
        format!("{:?}", config.backends),
    )
}

async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut events = state.events.subscribe();
    let mut lease: Option<PostgresLease> = None;
    let mut live = state.live();
    // When the next pass starts (if enabled).
    let mut next = Instant::now() + live.config.anti_entropy.interval;
    loop {
        let (enabled, at) = (live.config.anti_entropy.enabled, next);
        let due = async move {
            if enabled {
                tokio::time::sleep_until(at.into()).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = due => {}
            _ = events.recv() => {
                let new = state.live();
                if schedule_inputs(&new.config) != schedule_inputs(&live.config) {
                    next = Instant::now() + new.config.anti_entropy.interval;
                }
                live = new;
                continue;
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let started = Instant::now();
        let interrupted = tokio::select! {
            () = guarded_pass(&state, &live, &mut lease) => None,
            _ = reloaded(&mut events, &state, &live) => Some("a reload changed what it compares"),
            _ = shutdown.wait_for(|stop| *stop) => Some("muxd is stopping"),
        };
        if let Some(why) = interrupted {
            // The pass stopped anywhere, perhaps between taking the lock and noting
            // it: closing the lease's session releases whatever it holds.
            lease = None;
            tracing::info!(why, "anti-entropy pass stopped");
            if *shutdown.borrow() {
                break;
            }
            live = state.live();
            next = Instant::now() + live.config.anti_entropy.interval;
            continue;
        }
        // An interval after this pass started, or after it ended if it took longer
        // (or if a reload during the pass changed what passes compare).
        let new = state.live();
        let changed = schedule_inputs(&new.config) != schedule_inputs(&live.config);
        live = new;
        let interval = live.config.anti_entropy.interval;
        let now = Instant::now();
        next = if !changed && started + interval > now {
            started + interval
        } else {
            now + interval
        };
    }
    if let Some(lease) = &mut lease {
        lease.release().await;
    }
}

/// Resolves when a reload changes what the pass of `live` compares.
async fn reloaded(
    events: &mut tokio::sync::broadcast::Receiver<crate::Event>,
    state: &AppState,
    live: &Live,
) {
    loop {
        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = events.recv().await {
            return std::future::pending().await;
        }
        if schedule_inputs(&state.live().config) != schedule_inputs(&live.config) {
            return;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One pass under the lease (when the configuration asks for one); recorded, counted
/// and logged.
async fn guarded_pass(state: &AppState, live: &Live, lease: &mut Option<PostgresLease>) {
    let started_at_ms = now_ms();
    let node_id = live.config.mux.node_id;
    let skipped = |reason: &str, label: &'static str| {
        metrics::counter!("mux_antientropy_skipped_total", "reason" => label).increment(1);
        state.anti_entropy.record(PassSummary {
            node_id,
            started_at_ms,
            finished_at_ms: now_ms(),
            skipped: Some(reason.to_owned()),
            ..PassSummary::default()
        });
    };
    let target = match lease_target(&live.config) {
        Ok(t) => t,
        Err(e) => {
            // Checked when the configuration was loaded; kept for safety.
            tracing::warn!(error = %e, "anti-entropy pass skipped");
            skipped(&format!("lease_error: {e}"), "lease_error");
            return;
        }
    };
    match target {
        None => *lease = None,
        Some(target) => {
            if lease.as_ref().is_none_or(|l| l.target != target) {
                *lease = Some(PostgresLease::with_target(target));
            }
            let held = lease.as_mut().expect("set above");
            match held.try_acquire().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("anti-entropy pass skipped: another node holds the lease");
                    skipped("lease", "lease");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "anti-entropy pass skipped: the lease cannot be asked for");
                    skipped(&format!("lease_error: {e}"), "lease_error");
                    return;
                }
            }
        }
    }
    let began = Instant::now();
    let mut summary = pass(live).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    summary.node_id = node_id;
    summary.started_at_ms = started_at_ms;
    summary.finished_at_ms = now_ms();
    metrics::counter!("mux_antientropy_passes_total").increment(1);
    metrics::gauge!("mux_antientropy_last_run_timestamp_seconds")
        .set(summary.finished_at_ms as f64 / 1000.0);
    let compared = summary
        .routes
        .iter()
        .filter(|r| r.skipped.is_none())
        .count();
    let errors: usize = summary.routes.iter().map(|r| r.errors.len()).sum();
    tracing::info!(
        routes = compared,
        checked = summary.checked,
        divergent = summary.divergent,
        repaired = summary.repaired,
        repair_failed = summary.repair_failed,
        max_lag_ms = summary.max_lag_ms,
        gc_purged = summary.gc_purged,
        errors,
        elapsed_ms = began.elapsed().as_millis() as u64,
        "anti-entropy pass done"
    );
    state.anti_entropy.record(summary);
}

/// Compares (and repairs, and collects) every route of `live`.
async fn pass(live: &Live) -> PassSummary {
    let config = &live.config.anti_entropy;
    // Store markers are checked every health interval; a pass checks them too, so a
    // store that came back empty is flagged (and left out of reads) before it is
    // compared.
    if live.config.mux.resilience.markers {
        live.mux.check_markers().await;
    }
    let throttle = Throttle::per_second(config.ops_per_second);
    let mut routes = live.config.mux.routes.clone();
    routes.push(live.config.mux.default.clone());
    let mut summary = PassSummary::default();
    // Gauges per label: routes sharing a prefix add up.
    let mut gauges: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..routes.len() {
        let route = &routes[i];
        if route.backends.len() < 2 {
            continue;
        }
        let mut rp = RoutePass {
            route: route.describe(),
            prefix: route.prefix.clone(),
            backends: route.backends.iter().map(|t| t.backend.clone()).collect(),
            ..RoutePass::default()
        };
        if config.exclude_prefixes.contains(&route.prefix) {
            rp.skipped = Some("excluded (anti_entropy.exclude_prefixes)".into());
        } else if !route.listed {
            rp.skipped = Some("not listed: its stores cannot be compared".into());
        } else {
            compare_route(live, &routes, i, &throttle, &mut rp).await;
            let label = route.prefix.clone();
            metrics::counter!("mux_antientropy_keys_checked_total", "route" => label.clone())
                .increment(rp.checked);
            metrics::counter!("mux_antientropy_repaired_total", "route" => label.clone())
                .increment(rp.repaired);
            metrics::counter!("mux_antientropy_repair_failed_total", "route" => label.clone())
                .increment(rp.repair_failed);
            if let Some(gc) = &rp.gc {
                metrics::counter!("mux_antientropy_gc_purged_total", "route" => label.clone())
                    .increment(gc.purged);
            }
            if !rp.errors.is_empty() {
                metrics::counter!("mux_antientropy_errors_total", "route" => label.clone())
                    .increment(rp.errors.len() as u64);
            }
            let g = gauges.entry(label).or_default();
            g.0 += rp.divergent;
            g.1 = g.1.max(rp.max_lag_ms);
            summary.checked += rp.checked;
            summary.divergent += rp.divergent;
            summary.repaired += rp.repaired;
            summary.repair_failed += rp.repair_failed;
            summary.max_lag_ms = summary.max_lag_ms.max(rp.max_lag_ms);
            summary.gc_purged += rp.gc.map_or(0, |g| g.purged);
        }
        summary.routes.push(rp);
    }
    for (label, (divergent, lag_ms)) in gauges {
        metrics::gauge!("mux_antientropy_divergent_keys", "route" => label.clone())
            .set(divergent as f64);
        metrics::gauge!("mux_antientropy_replica_lag_seconds", "route" => label)
            .set(lag_ms as f64 / 1000.0);
    }
    summary
}

/// Compares one route's stores over each of its scopes, then collects its tombstones.
async fn compare_route(
    live: &Live,
    routes: &[RouteConfig],
    i: usize,
    throttle: &Throttle,
    rp: &mut RoutePass,
) {
    let config = &live.config.anti_entropy;
    let route = &routes[i];
    let mut stores: Vec<Arc<dyn Backend>> = Vec::new();
    for name in &rp.backends {
        match live.mux.backend(name) {
            Some(b) if !stores.iter().any(|s| *s.info().name == **name) => stores.push(b.clone()),
            Some(_) => {}
            None => {
                rp.skipped = Some(format!("no backend is called {name}"));
                return;
            }
        }
    }
    if stores.len() < 2 {
        rp.skipped = Some("fewer than two distinct stores".into());
        return;
    }
    let (scopes, error) = scopes(route, &stores, throttle).await;
    if let Some(e) = error {
        rp.errors.push(e.to_string());
    }
    let mut gc_prefixes = Vec::new();
    for scope in &scopes {
        let prefix = match scope.prefix(route) {
            Ok(p) => p,
            Err(e) => {
                rp.errors.push(e.to_string());
                continue;
            }
        };
        let gc_ok = match ownership(routes, i, scope) {
            Ok(gc) => gc,
            Err(why) => {
                let shown = if prefix.is_empty() {
                    "every key".to_owned()
                } else {
                    format!("{prefix}")
                };
                rp.left_out.push(format!("{shown} not compared: {why}"));
                continue;
            }
        };
        let options = VerifyOptions {
            repair: config.repair,
            throttle: throttle.clone(),
            sample: SAMPLE,
            ..VerifyOptions::default()
        };
        rp.prefixes.push(prefix.to_string());
        match mux_sync::verify(&stores, prefix.clone(), &options).await {
            Ok(report) => {
                rp.checked += report.checked;
                rp.divergent += report.divergent;
                rp.repaired += report.repaired;
                rp.repair_failed += report.repair_failed;
                rp.max_lag_ms = rp.max_lag_ms.max(report.max_lag_ms);
                for d in report.sample {
                    if rp.sample.len() < SAMPLE {
                        rp.sample.push(d.key.to_string());
                    }
                }
                rp.errors
                    .extend(report.errors.into_iter().map(|e| format!("repair {e}")));
                if gc_ok {
                    gc_prefixes.push(prefix);
                }
            }
            Err(e) => {
                tracing::warn!(route = %rp.route, prefix = %prefix, error = %e, "anti-entropy: comparing the stores failed");
                rp.errors.push(format!("{prefix}: {e}"));
            }
        }
    }
    let Some(grace) = config.gc_grace else {
        return;
    };
    if rp.prefixes.is_empty() {
        return;
    }
    if gc_prefixes.len() < rp.prefixes.len() {
        rp.left_out.push(
            "tombstone GC left out the prefixes whose keys other routes may hold on more stores"
                .into(),
        );
    }
    let mut gc = GcPass::default();
    for prefix in gc_prefixes {
        let options = GcOptions {
            grace,
            throttle: throttle.clone(),
            ..GcOptions::default()
        };
        match mux_sync::collect_garbage(&stores, prefix.clone(), &options).await {
            Ok(report) => {
                gc.tombstones += report.tombstones;
                gc.purged += report.purged;
                gc.held_back += report.held_back;
                gc.young += report.young;
            }
            Err(e) => {
                if e.kind() != ErrorKind::Unsupported {
                    tracing::warn!(route = %rp.route, prefix = %prefix, error = %e, "anti-entropy: tombstone GC failed");
                }
                rp.errors.push(format!("tombstone GC of {prefix}: {e}"));
                if e.kind() == ErrorKind::Unsupported {
                    // Every prefix would say the same.
                    return;
                }
            }
        }
    }
    rp.gc = Some(gc);
}

#[cfg(test)]
mod tests;
