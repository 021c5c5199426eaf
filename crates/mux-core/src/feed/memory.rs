//! The in-process change feed: one node, and the embedded default.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{ChangeEvent, ChangeFeed, FeedEvent, Position, gone};
use crate::error::Result;

/// How many events a [`MemoryFeed`] keeps by default.
pub const DEFAULT_MEMORY_RETENTION: usize = 100_000;

/// A change feed in memory: the events of this process, the newest `retention` of them.
/// Positions are `n-0`, counting from 1. Not durable: a restarted process starts a new
/// feed, so readers holding positions of the old one must start from its head.
#[derive(Debug)]
pub struct MemoryFeed {
    name: String,
    retention: usize,
    state: Mutex<State>,
    /// The newest position, for waiting readers.
    head: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<FeedEvent>,
    next: u64,
    /// Every position up to this one was trimmed.
    trimmed_through: u64,
}

impl MemoryFeed {
    /// A feed keeping the newest [`DEFAULT_MEMORY_RETENTION`] events.
    pub fn new(name: impl Into<String>) -> MemoryFeed {
        MemoryFeed::with_retention(name, DEFAULT_MEMORY_RETENTION)
    }

    /// A feed keeping the newest `retention` events (at least one).
    pub fn with_retention(name: impl Into<String>, retention: usize) -> MemoryFeed {
        MemoryFeed {
            name: name.into(),
            retention: retention.max(1),
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            head: watch::channel(0).0,
        }
    }

    fn take(&self, after: Position, limit: usize) -> Result<Vec<FeedEvent>> {
        let state = self.state.lock().expect("feed lock");
        if after.major() < state.trimmed_through {
            return Err(gone(
                &self.name,
                after,
                Position::new(state.trimmed_through, 0),
            ));
        }
        let start = state.events.partition_point(|e| e.position <= after);
        Ok(state.events.range(start..).take(limit).cloned().collect())
    }
}

#[async_trait]
impl ChangeFeed for MemoryFeed {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, events: &[ChangeEvent]) -> Result<Vec<Position>> {
        let mut state = self.state.lock().expect("feed lock");
        let mut positions = Vec::with_capacity(events.len());
        for change in events {
            let position = Position::new(state.next, 0);
            state.next += 1;
            positions.push(position);
            state.events.push_back(FeedEvent {
                position,
                change: change.clone(),
            });
        }
        while state.events.len() > self.retention {
            let dropped = state.events.pop_front().expect("non-empty");
            state.trimmed_through = dropped.position.major();
        }
        let head = state.next - 1;
        drop(state);
        self.head.send_replace(head);
        Ok(positions)
    }

    async fn read(&self, after: Position, limit: usize, wait: Duration) -> Result<Vec<FeedEvent>> {
        let mut head = self.head.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            head.borrow_and_update();
            let events = self.take(after, limit.max(1))?;
            if !events.is_empty() {
                return Ok(events);
            }
            if tokio::time::timeout_at(deadline, head.changed())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    async fn head(&self) -> Result<Position> {
        Ok(Position::new(*self.head.borrow(), 0))
    }
}
