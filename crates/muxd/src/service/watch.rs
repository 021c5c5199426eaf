//! Watching changes in the service layer: the change feed, filtered to the caller's
//! tenant and prefix, resumable from a position, merged with configuration reloads.
//! REST (Server-Sent Events) and gRPC (`Watch`) render the same items.

use std::collections::HashMap;
use std::time::Duration;

use mux::feed::{ChangeKind, FeedEvent, Position};
use mux::{ErrorKind, Prefix, Tenant};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;

use super::{Service, ServiceError, present};
use crate::Event;

/// Events read from the feed at once for one watcher.
const PAGE: usize = 256;
/// How long one read of the feed waits for new events (also how often a watcher
/// notices that its client went away while nothing changes).
const WAIT: Duration = Duration::from_secs(1);
/// The keys whose latest version one watcher remembers (to drop superseded changes);
/// past it the memory starts again.
const MAX_TRACKED_KEYS: usize = 100_000;
/// The longest pause between attempts while the feed is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One change as a watcher sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WatchChange {
    /// Where the change sits in the feed: resume after it with `resume_from`.
    pub position: String,
    /// The key, as the tenant names it.
    pub key: String,
    /// The version written.
    pub version: String,
    /// `put` or `delete`.
    pub op: String,
}

/// What a watch stream carries.
#[derive(Debug)]
pub(crate) enum WatchItem {
    /// A change under the prefix.
    Change(WatchChange),
    /// This node's configuration was reloaded.
    Config(String),
}

impl<'a> Service<'a> {
    /// Starts a watch: the changes under `prefix` (the caller's tenant's only) after
    /// `resume_from`, or after the feed's head when absent, then every later one.
    /// A position already out of the feed's retention fails at once with `Gone`; the
    /// stream ends with `Gone` if the watcher falls that far behind. While the feed is
    /// unreachable the stream waits (its position kept) and resumes when it is back.
    pub(crate) async fn watch(
        &self,
        prefix: &str,
        resume_from: Option<&str>,
    ) -> Result<mpsc::Receiver<Result<WatchItem, ServiceError>>, ServiceError> {
        let prefix = Prefix::new(prefix).map_err(|e| self.error(e))?;
        let feed = self.state.feed.clone();
        let after = match present(resume_from) {
            Some(text) => {
                let position: Position = text.parse().map_err(|e| self.error(e))?;
                // Out of retention: refuse before the stream starts (410 / OUT_OF_RANGE).
                feed.read(position, 1, Duration::ZERO)
                    .await
                    .map_err(|e| self.error(e))?;
                position
            }
            None => feed.head().await.map_err(|e| self.error(e))?,
        };
        let (tx, rx) = mpsc::channel(PAGE);
        let tenant = self.tenant.clone();
        let config = self.state.events.subscribe();
        tokio::spawn(pump(feed, after, tenant, prefix, config, tx));
        Ok(rx)
    }
}

/// The change as `tenant` sees it, if it is theirs and under `prefix`. Without a
/// tenant (auth off) every change shows under its stored key.
fn visible(event: &FeedEvent, tenant: Option<&Tenant>, prefix: &Prefix) -> Option<WatchChange> {
    let change = &event.change;
    let key = match tenant {
        Some(t) if change.tenant.as_ref() == Some(t) => change.key.clone(),
        Some(_) => return None,
        None => change.storage_key().ok()?,
    };
    prefix.matches(key.as_str()).then(|| WatchChange {
        position: event.position.to_string(),
        key: key.as_str().to_owned(),
        version: change.version.to_string(),
        op: match change.kind {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
        }
        .to_owned(),
    })
}

async fn pump(
    feed: std::sync::Arc<dyn mux::ChangeFeed>,
    mut after: Position,
    tenant: Option<Tenant>,
    prefix: Prefix,
    mut config: broadcast::Receiver<Event>,
    tx: mpsc::Sender<Result<WatchItem, ServiceError>>,
) {
    let mut backoff = Duration::from_millis(50);
    // Writes of one key made through different nodes may reach the feed out of version
    // order (each node publishes after its own write); a watcher is sent each key's
    // versions in increasing order only, an older one arriving late being superseded.
    let mut latest: HashMap<String, mux::Version> = HashMap::new();
    loop {
        let read = tokio::select! {
            read = feed.read(after, PAGE, WAIT) => read,
            event = config.recv() => {
                let item = match event {
                    Ok(Event::Config { reason }) => WatchItem::Config(reason),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        WatchItem::Config("configuration reloaded".into())
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
                continue;
            }
            () = tx.closed() => return,
        };
        match read {
            Ok(events) => {
                backoff = Duration::from_millis(50);
                for event in &events {
                    after = event.position;
                    let Some(change) = visible(event, tenant.as_ref(), &prefix) else {
                        continue;
                    };
                    let version = event.change.version;
                    if latest.get(&change.key).is_some_and(|seen| *seen >= version) {
                        continue;
                    }
                    if latest.len() >= MAX_TRACKED_KEYS {
                        latest.clear();
                    }
                    latest.insert(change.key.clone(), version);
                    if tx.send(Ok(WatchItem::Change(change))).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::Gone => {
                let _ = tx
                    .send(Err(ServiceError::from_mux(&e, tenant.as_ref())))
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, %after, "a watcher cannot read the change feed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
