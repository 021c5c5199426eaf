//! Changes in and out: publishing each coordinated write to the change feed, and the
//! tail that applies the feed's events to this node's route caches.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::write::{WriteOutcome, WriteReport};
use super::{Inner, Route};
use crate::error::{ErrorKind, Result};
use crate::feed::{ChangeEvent, ChangeFeed, ChangeKind, FeedEvent, Position};
use crate::key::Key;
use crate::tenant::Tenant;
use crate::version::Version;

/// Events read from the feed at once.
const PAGE: usize = 512;
/// How often a publish that failed is tried again, in the background.
const REPUBLISH_ATTEMPTS: u32 = 8;
/// The longest wait between reconnection attempts of the tail.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What `Inner::write` knows of a write when it is over.
pub(crate) struct Written<'a> {
    pub(crate) route: &'a Route,
    pub(crate) tenant: Option<&'a Tenant>,
    pub(crate) stored: &'a Key,
    pub(crate) version: Version,
    pub(crate) tombstone: bool,
}

/// Whether a write changes what a backend holds: applied, pending, or hinted (a
/// temporary failure). A write refused everywhere for good, or superseded everywhere
/// (every store already held this version or a newer one), changed nothing and is not
/// published.
pub(crate) fn will_land(result: &Result<WriteReport>) -> bool {
    let report = match result {
        Ok(report) => report,
        Err(e) => match WriteReport::of(e) {
            Some(report) => report,
            None => return false,
        },
    };
    report.outcomes.iter().any(|o| match o {
        WriteOutcome::Failed(e) => e.is_temporary(),
        WriteOutcome::Superseded { .. } => false,
        WriteOutcome::Applied | WriteOutcome::Pending => true,
    })
}

impl Inner {
    /// After a write: this node's caches drop the key at once (read-your-writes here),
    /// and the change is published so every other node's caches and watchers hear of
    /// it. A publish that fails is retried in the background and counted; until it
    /// lands, other nodes rely on their TTL for this key.
    pub(crate) async fn announce(self: &Arc<Self>, written: Written<'_>) {
        // No feed means no cache either (a cached route gets a memory feed): nothing
        // to do on the write path.
        let Some(feed) = self.feed.clone() else {
            return;
        };
        let event = ChangeEvent {
            tenant: written.tenant.cloned(),
            key: match written.tenant {
                Some(t) => t
                    .logical_key(written.stored)
                    .unwrap_or(written.stored.clone()),
                None => written.stored.clone(),
            },
            version: written.version,
            kind: if written.tombstone {
                ChangeKind::Delete
            } else {
                ChangeKind::Put
            },
            route: written.route.config.prefix.clone(),
        };
        self.invalidate_caches(&event, written.stored);
        let Err(e) = feed.publish(std::slice::from_ref(&event)).await else {
            return;
        };
        self.counters
            .feed_publish_failures
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mux_feed_publish_failures_total").increment(1);
        tracing::warn!(error = %e, key = %event.key, "publishing a change failed; retrying in the background");
        let counters = self.counters.clone();
        let jitter_seed = self.jitter.unit();
        self.background.spawn(async move {
            for attempt in 1..=REPUBLISH_ATTEMPTS {
                let wait = Duration::from_millis(50 << attempt.min(6)).mul_f64(0.5 + jitter_seed);
                tokio::time::sleep(wait).await;
                if feed.publish(std::slice::from_ref(&event)).await.is_ok() {
                    return;
                }
            }
            counters.feed_publish_lost.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("mux_feed_publish_lost_total").increment(1);
            tracing::error!(key = %event.key, version = %event.version,
                "a change was never published: other nodes' caches rely on their TTL for it");
        });
    }

    /// Applies a change to every route cache that may hold its key.
    fn invalidate_caches(&self, event: &ChangeEvent, stored: &Key) {
        let tenant = event.tenant.as_ref().map(Tenant::as_str);
        for route in self.routes.iter().chain(std::iter::once(&self.default)) {
            let Some(cache) = &route.cache else { continue };
            let tenant_ok = route
                .config
                .tenant
                .as_deref()
                .is_none_or(|t| Some(t) == tenant);
            if tenant_ok && route.prefix.matches(event.key.as_str()) {
                cache.invalidate(&self.feed_state, stored, event.version);
            }
        }
    }

    fn apply(&self, event: &FeedEvent) {
        match event.change.storage_key() {
            Ok(stored) => self.invalidate_caches(&event.change, &stored),
            Err(e) => {
                tracing::warn!(error = %e, position = %event.position, "ignoring a malformed change")
            }
        }
        let lag_ms = crate::version::system_ms().saturating_sub(event.change.version.physical_ms());
        metrics::gauge!("mux_feed_lag_seconds").set(lag_ms as f64 / 1000.0);
    }

    fn flush_caches(&self) {
        self.feed_state.flush();
        for route in self.routes.iter().chain(std::iter::once(&self.default)) {
            if let Some(cache) = &route.cache {
                cache.clear();
            }
        }
        metrics::counter!("mux_cache_flushes_total").increment(1);
    }

    /// Starts the tail of the feed when a route has a cache.
    pub(crate) fn start_tail(self: &Arc<Self>) {
        let bound = self
            .routes
            .iter()
            .chain(std::iter::once(&self.default))
            .filter_map(|r| r.config.cache.map(|c| c.max_staleness))
            .min();
        let (Some(bound), Some(feed)) = (bound, self.feed.clone()) else {
            return;
        };
        let wait = (bound / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::spawn(tail(Arc::downgrade(self), feed, wait));
    }
}

/// Reads the feed for as long as the `Mux` lives, applying each event to the caches.
/// A read that reaches the feed's end marks the caches fresh as of when it started; an
/// error flushes them (they are bypassed until the feed is read again); a position out
/// of retention flushes them and starts again from the head.
async fn tail(inner: Weak<Inner>, feed: Arc<dyn ChangeFeed>, wait: Duration) {
    let mut after: Option<Position> = None;
    let mut backoff = Duration::from_millis(20);
    let mut catching_up = true;
    loop {
        let started = Instant::now();
        let (result, reached_end) = match after {
            Some(after) => {
                let wait = if catching_up { Duration::ZERO } else { wait };
                let result = feed.read(after, PAGE, wait).await;
                let full = result.as_ref().is_ok_and(|events| events.len() == PAGE);
                (result, !full)
            }
            // Where to start: the next read (at once) reaches the end.
            None => (
                feed.head().await.map(|head| {
                    after = Some(head);
                    Vec::new()
                }),
                false,
            ),
        };
        let Some(inner) = inner.upgrade() else { return };
        match result {
            Ok(events) => {
                for event in &events {
                    inner.apply(event);
                    after = Some(event.position);
                }
                // Every event published before `started` has now been applied.
                if reached_end {
                    inner.feed_state.alive_since(started);
                }
                catching_up = !reached_end;
                backoff = Duration::from_millis(20);
            }
            Err(e) => {
                inner.flush_caches();
                if e.kind() == ErrorKind::Gone {
                    tracing::warn!(error = %e, "the feed trimmed events this node had not read; caches flushed");
                    after = None;
                } else {
                    tracing::warn!(error = %e, "reading the change feed failed; caches bypassed until it is back");
                    drop(inner);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                catching_up = true;
            }
        }
    }
}
