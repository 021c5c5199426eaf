//! Concurrent publishes sent to a feed together.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{ChangeEvent, ChangeFeed, FeedEvent, Position};
use crate::error::{Error, ErrorKind, Result};

/// The most events sent to the inner feed in one `publish`.
const MAX_BATCH: usize = 1024;

/// One publish call: its events and where its positions go.
type Job = (Vec<ChangeEvent>, oneshot::Sender<Result<Vec<Position>>>);

/// A [`ChangeFeed`] that sends concurrent publishes to `inner` as one `publish`.
///
/// One task publishes; while its call runs, later publishes queue, and the next call
/// carries all of them (up to 1,024 events), each caller's events contiguous and in
/// its order, so each caller gets its own positions back. A failed call fails every
/// publish it carried. For a feed where one call costs a round trip and a script or
/// a transaction whatever its size (the Redis feed), this turns the round trips of
/// many concurrent writers into one. Reads and `head` go straight to `inner`.
///
/// Must be created inside a Tokio runtime; dropping it stops the task, and publishes
/// still queued then fail as unavailable.
pub struct Coalesced {
    inner: Arc<dyn ChangeFeed>,
    queue: mpsc::UnboundedSender<Job>,
    task: JoinHandle<()>,
}

impl Coalesced {
    /// Wraps `inner`, starting the publishing task.
    pub fn new(inner: Arc<dyn ChangeFeed>) -> Coalesced {
        let (queue, jobs) = mpsc::unbounded_channel();
        let task = tokio::spawn(publisher(inner.clone(), jobs));
        Coalesced { inner, queue, task }
    }
}

impl Drop for Coalesced {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Coalesced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesced")
            .field("inner", &self.inner)
            .finish()
    }
}

async fn publisher(inner: Arc<dyn ChangeFeed>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut count = first.0.len();
        let mut batch = vec![first];
        while count < MAX_BATCH {
            let Ok(job) = jobs.try_recv() else { break };
            count += job.0.len();
            batch.push(job);
        }
        // Each caller's count, then its events moved (not copied) into one batch.
        let counts: Vec<usize> = batch.iter().map(|(e, _)| e.len()).collect();
        let events: Vec<ChangeEvent> = batch.iter_mut().flat_map(|(e, _)| e.drain(..)).collect();
        match inner.publish(&events).await {
            Ok(positions) if positions.len() == events.len() => {
                let mut positions = positions.into_iter();
                for ((_, reply), count) in batch.into_iter().zip(counts) {
                    let _ = reply.send(Ok(positions.by_ref().take(count).collect()));
                }
            }
            Ok(positions) => {
                let e = Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "feed {} returned {} positions for {} events",
                        inner.name(),
                        positions.len(),
                        events.len()
                    ),
                );
                batch.into_iter().for_each(|(_, reply)| {
                    let _ = reply.send(Err(e.clone()));
                });
            }
            Err(e) => batch.into_iter().for_each(|(_, reply)| {
                let _ = reply.send(Err(e.clone()));
            }),
        }
    }
}

fn stopped(feed: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("feed {feed}: the publishing task stopped (is the runtime shutting down?)"),
    )
}

#[async_trait]
impl ChangeFeed for Coalesced {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn publish(&self, events: &[ChangeEvent]) -> Result<Vec<Position>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((events.to_vec(), reply))
            .map_err(|_| stopped(self.name()))?;
        answer.await.map_err(|_| stopped(self.name()))?
    }

    async fn read(&self, after: Position, limit: usize, wait: Duration) -> Result<Vec<FeedEvent>> {
        self.inner.read(after, limit, wait).await
    }

    async fn head(&self) -> Result<Position> {
        self.inner.head().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{ChangeKind, MemoryFeed};
    use crate::{Key, Version};

    fn event(n: u64) -> ChangeEvent {
        ChangeEvent {
            tenant: None,
            key: Key::new(format!("k/{n}")).unwrap(),
            version: Version::new(n + 1, 0, 0),
            kind: ChangeKind::Put,
            route: String::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_get_their_own_positions_in_their_order() {
        let feed = Arc::new(Coalesced::new(Arc::new(MemoryFeed::new("m"))));
        let callers: Vec<_> = (0..50u64)
            .map(|c| {
                let feed = feed.clone();
                tokio::spawn(async move {
                    let events: Vec<_> = (0..3).map(|i| event(c * 3 + i)).collect();
                    let positions = feed.publish(&events).await.unwrap();
                    (events, positions)
                })
            })
            .collect();
        for caller in callers {
            let (events, positions) = caller.await.unwrap();
            assert_eq!(positions.len(), 3);
            assert!(positions.windows(2).all(|p| p[0] < p[1]));
            for (event, position) in events.iter().zip(&positions) {
                let before = Position::new(position.major() - 1, 0);
                let read = feed.read(before, 1, Duration::ZERO).await.unwrap();
                assert_eq!(
                    read[0].change.key, event.key,
                    "each caller gets its own positions"
                );
            }
        }
        assert_eq!(feed.head().await.unwrap().major(), 150);
    }
}
