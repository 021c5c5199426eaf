//! The change feed: an ordered, durable, resumable stream of the writes a coordinator
//! acknowledged, so that every node's cache and every watcher learns of a change made
//! through any node.
//!
//! A [`ChangeFeed`] is an append-only log of [`ChangeEvent`]s, each at a [`Position`].
//! Positions only grow; a reader asks for the events strictly after the last position it
//! saw ([`ChangeFeed::read`]) and so sees each event once, in order, across reconnects.
//! When retention has already removed events the reader has not seen, the read fails
//! with [`ErrorKind::Gone`] (like Kubernetes' `410 Gone`): the reader must start again
//! from [`ChangeFeed::head`] after re-reading what it caches — it never silently skips.
//!
//! Implementations: [`MemoryFeed`] (one process), `mux_postgres::PostgresFeed` (a change
//! table) and `mux_redis::RedisFeed` (a Redis Stream). `mux_conformance::feed` checks
//! the contract every implementation must keep.

mod coalesce;
mod memory;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::tenant::Tenant;
use crate::version::Version;

pub use coalesce::Coalesced;
pub use memory::{DEFAULT_MEMORY_RETENTION, MemoryFeed};

/// Where an event sits in a feed: totally ordered, `major-minor` as text (a Redis Stream
/// id is `milliseconds-sequence`; a table's position is `n-0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    major: u64,
    minor: u64,
}

impl Position {
    /// Before every event: reading after it returns the oldest events still retained (or
    /// [`ErrorKind::Gone`] if any were trimmed).
    pub const ZERO: Position = Position { major: 0, minor: 0 };

    /// A position from its two parts.
    pub const fn new(major: u64, minor: u64) -> Position {
        Position { major, minor }
    }

    /// The major part (a table's sequence number, a stream id's milliseconds).
    pub fn major(self) -> u64 {
        self.major
    }

    /// The minor part (a stream id's sequence number; 0 for a table).
    pub fn minor(self) -> u64 {
        self.minor
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

impl FromStr for Position {
    type Err = Error;

    /// Parses `major-minor` or `major`.
    fn from_str(s: &str) -> Result<Position> {
        let bad = || {
            Error::invalid_input(format!(
                "bad feed position {s:?}: expected `<number>-<number>` as sent with each event"
            ))
        };
        let (major, minor) = s.split_once('-').unwrap_or((s, "0"));
        Ok(Position {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A record was written.
    Put,
    /// A tombstone was written.
    Delete,
}

impl ChangeKind {
    /// `put` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
        }
    }
}

impl FromStr for ChangeKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<ChangeKind> {
        match s {
            "put" => Ok(ChangeKind::Put),
            "delete" => Ok(ChangeKind::Delete),
            _ => Err(Error::new(
                ErrorKind::Corrupt,
                format!("bad change kind {s:?} in the feed: expected put or delete"),
            )),
        }
    }
}

/// One acknowledged write, as the coordinator publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    /// The tenant whose key changed (`None`: a raw key, written without a tenant).
    pub tenant: Option<Tenant>,
    /// The key as its writer named it (the tenant's logical key).
    pub key: Key,
    /// The version written.
    pub version: Version,
    /// Put or delete.
    pub kind: ChangeKind,
    /// The prefix of the route the write took (`""` for the default route).
    pub route: String,
}

/// The names of a change event's fields at rest (columns, stream fields): plain text
/// every feed stores the same way.
pub mod fields {
    /// The tenant (empty for none).
    pub const TENANT: &str = "tenant";
    /// The key.
    pub const KEY: &str = "key";
    /// The version, in its fixed-width hex text form.
    pub const VERSION: &str = "version";
    /// `put` or `delete`.
    pub const KIND: &str = "kind";
    /// The route's prefix.
    pub const ROUTE: &str = "route";
}

impl ChangeEvent {
    /// The key as stored (`tenants/<tenant>/<key>`, or the key itself without a tenant).
    pub fn storage_key(&self) -> Result<Key> {
        match &self.tenant {
            Some(t) => t.storage_key(&self.key),
            None => Ok(self.key.clone()),
        }
    }

    /// The event as text fields (see [`fields`]), in a fixed order.
    pub fn to_fields(&self) -> [(&'static str, String); 5] {
        [
            (
                fields::TENANT,
                self.tenant
                    .as_ref()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            (fields::KEY, self.key.as_str().to_owned()),
            (fields::VERSION, self.version.to_string()),
            (fields::KIND, self.kind.as_str().to_owned()),
            (fields::ROUTE, self.route.clone()),
        ]
    }

    /// An event from its text fields, looked up by name; a missing or malformed field
    /// is [`ErrorKind::Corrupt`].
    pub fn from_fields<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Result<ChangeEvent> {
        let get = |name: &str| {
            field(name).ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("feed event without its {name:?} field"),
                )
            })
        };
        let corrupt = |e: Error| Error::new(ErrorKind::Corrupt, format!("feed event: {e}"));
        let tenant = match get(fields::TENANT)? {
            "" => None,
            t => Some(Tenant::new(t).map_err(corrupt)?),
        };
        Ok(ChangeEvent {
            tenant,
            key: Key::new(get(fields::KEY)?).map_err(corrupt)?,
            version: get(fields::VERSION)?.parse().map_err(corrupt)?,
            kind: get(fields::KIND)?.parse()?,
            route: get(fields::ROUTE)?.to_owned(),
        })
    }
}

/// A change event at its position in the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEvent {
    /// Where the event sits; resume after it.
    pub position: Position,
    /// The change.
    pub change: ChangeEvent,
}

/// An ordered, durable, resumable log of change events, shared by every node.
///
/// The contract (checked by `mux_conformance::feed`):
/// - `publish` appends the events in the order given and returns their positions, each
///   higher than every position published before it on this feed (by any node) that a
///   reader could already have seen: a reader that has seen position `p` never later
///   finds an event below `p` it had not seen.
/// - `read(after, ..)` returns events strictly after `after`, in position order, each
///   once; with `wait > 0` and nothing there yet, it waits up to `wait` for the first.
/// - An `after` below events retention has removed fails with [`ErrorKind::Gone`].
#[async_trait]
pub trait ChangeFeed: fmt::Debug + Send + Sync + 'static {
    /// A name for logs and errors.
    fn name(&self) -> &str;

    /// Appends `events`, in order, durably; returns their positions.
    async fn publish(&self, events: &[ChangeEvent]) -> Result<Vec<Position>>;

    /// Up to `limit` events strictly after `after`, in position order. When there are
    /// none yet it waits up to `wait` for one (an empty answer means none came).
    async fn read(&self, after: Position, limit: usize, wait: Duration) -> Result<Vec<FeedEvent>>;

    /// The position of the newest event ([`Position::ZERO`] when none was ever
    /// published): reading after it returns only events published later.
    async fn head(&self) -> Result<Position>;
}

/// The error of a read whose position fell out of retention.
pub fn gone(feed: &str, after: Position, oldest: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Gone,
        format!(
            "feed {feed}: position {after} is out of retention (events up to {oldest} were \
             trimmed); re-read what you need and resume from the feed's head"
        ),
    )
}
