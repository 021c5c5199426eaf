//! Opening a change feed from its spec: `[feed]` in muxd's TOML.
//!
//! ```toml
//! [feed]
//! kind = "postgres"            # or "redis", or "memory" (one process only; the default)
//! url = "postgres://mux@db.example/mux"
//! ```
//!
//! The fields after `kind` are the feed's own (`mux_postgres::PostgresFeedConfig`,
//! `mux_redis::RedisFeedConfig`; `memory` takes `retention`, the events kept).

use std::fmt;
use std::sync::Arc;

use mux_core::{Error, Operation, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use mux_core::feed::*;

/// Every feed kind mux knows, whether or not its cargo feature is on.
pub const FEED_KINDS: &[&str] = &["memory", "postgres", "redis"];

/// A change feed to open: its kind and the feed's own fields, as in TOML.
#[derive(Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct FeedSpec {
    /// Which feed: one of [`FEED_KINDS`].
    pub kind: String,
    /// The feed's own fields.
    #[serde(flatten)]
    pub fields: toml::Table,
}

impl Default for FeedSpec {
    /// The in-process feed.
    fn default() -> Self {
        FeedSpec::new("memory")
    }
}

impl fmt::Debug for FeedSpec {
    /// Only the field names: URLs may hold passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedSpec")
            .field("kind", &self.kind)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryFeedConfig {
    #[serde(default = "default_retention")]
    retention: usize,
}

fn default_retention() -> usize {
    mux_core::feed::DEFAULT_MEMORY_RETENTION
}

impl FeedSpec {
    /// A spec with no fields yet.
    pub fn new(kind: impl Into<String>) -> FeedSpec {
        FeedSpec {
            kind: kind.into(),
            fields: toml::Table::new(),
        }
    }

    /// Sets one of the feed's fields.
    pub fn with(mut self, field: impl Into<String>, value: impl Into<toml::Value>) -> FeedSpec {
        self.fields.insert(field.into(), value.into());
        self
    }

    fn parse<C: DeserializeOwned>(&self) -> Result<C> {
        C::deserialize(toml::Value::Table(self.fields.clone())).map_err(|e| {
            let reason = e.message().trim().replace('`', "\"");
            Error::invalid_input(format!("[feed] kind = \"{}\": {reason}", self.kind))
                .with_operation(Operation::Open)
        })
    }

    /// Checks the spec without I/O: a known, compiled-in kind with its own fields.
    pub fn check(&self) -> Result<()> {
        match self.kind.as_str() {
            "memory" => self.parse::<MemoryFeedConfig>().map(|_| ()),
            #[cfg(feature = "postgres")]
            "postgres" => self.parse::<mux_postgres::PostgresFeedConfig>().map(|_| ()),
            #[cfg(feature = "redis")]
            "redis" => self.parse::<mux_redis::RedisFeedConfig>().map(|_| ()),
            _ => Err(self.unknown()),
        }
    }

    /// Opens the feed (connecting to its server; an unreachable one is an error).
    pub async fn open(&self) -> Result<Arc<dyn ChangeFeed>> {
        Ok(match self.kind.as_str() {
            "memory" => {
                let config = self.parse::<MemoryFeedConfig>()?;
                Arc::new(MemoryFeed::with_retention("memory", config.retention))
            }
            #[cfg(feature = "postgres")]
            "postgres" => Arc::new(mux_postgres::PostgresFeed::open(self.parse()?).await?),
            #[cfg(feature = "redis")]
            // One script call per round trip carries every publish queued meanwhile.
            "redis" => Arc::new(mux_core::feed::Coalesced::new(Arc::new(
                mux_redis::RedisFeed::open(self.parse()?).await?,
            ))),
            _ => return Err(self.unknown()),
        })
    }

    fn unknown(&self) -> Error {
        let kind = &self.kind;
        let message = if FEED_KINDS.contains(&kind.as_str()) {
            format!("[feed] kind \"{kind}\" needs the mux feature \"{kind}\"")
        } else {
            format!(
                "[feed] unknown kind \"{kind}\"; the known kinds are \"memory\", \"postgres\", \"redis\""
            )
        };
        Error::invalid_input(message).with_operation(Operation::Open)
    }
}
