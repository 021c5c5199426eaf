//! [`RedisFeed`]: the change feed on a Redis Stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mux_core::feed::{ChangeEvent, ChangeFeed, FeedEvent, Position, gone};
use mux_core::{Error, ErrorKind, Operation, Result};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Value};
use serde::Deserialize;
use tokio::time::Instant;

use crate::backend::connect_manager;
use crate::config::{default_connection_timeout, default_response_timeout, millis, redact};
use crate::error::{map_err, parse_err};

/// The stream field holding the id of the entry added just before this one (`0-0` for
/// the first), written by [`RedisFeed`] next to the fields of `mux_core::feed::fields`.
pub const PREV_FIELD: &str = "prev";

/// Idle dedicated connections kept for blocking reads.
const MAX_IDLE_BLOCKING: usize = 4;

/// How many times a waiting read goes back to waiting after a wake-up that brought
/// nothing readable (an entry deleted in between): a bound, never reached in practice.
const MAX_WAKEUPS: usize = 64;

/// Appends each event with `XADD <stream> MAXLEN ~ <max_len> * <fields> prev <id>`, all
/// in one script (so one call's events are contiguous and in order), and returns the ids.
/// `prev` is the id added just before: for the first, the newest entry's id
/// (`XREVRANGE … COUNT 1`; `MAXLEN ~` never trims the newest entry, and mux never
/// `XDEL`s). `XINFO STREAM` would give last-generated-id too, but builds a reply with the
/// first and last entries and a dozen fields: a publish cost twice what it costs now.
/// KEYS: stream. ARGV: max_len, fields per event (a count of names and values), then
/// the names and values of every event.
const PUBLISH_SCRIPT: &str = r"
local prev = '0-0'
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 1 then prev = last[1][1] end
local n = tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV, n do
  local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
  for j = i, i + n - 1 do args[#args + 1] = ARGV[j] end
  args[#args + 1] = 'prev'
  args[#args + 1] = prev
  prev = redis.call(unpack(args))
  ids[#ids + 1] = prev
end
return ids
";

/// What a read needs, seen in one atomic step: max-deleted-entry-id (XDEL), the first
/// entry's id and `prev` (trimming), entries-added and length (for entries without
/// `prev`), and up to ARGV[2] entries strictly after ARGV[1]. KEYS: stream.
///
/// The common case costs no `XINFO STREAM`: when the entries read form an unbroken `prev`
/// chain starting at ARGV[1] (the first one's `prev` is ARGV[1], each next one's is the
/// one before), nothing after ARGV[1] was trimmed or deleted, and the script returns
/// them with the checks' fields neutral ('0-0', false, false, 0, 0).
const READ_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', false, false, 0, 0, {}} end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local expected, chained = ARGV[1], #entries > 0
for _, e in ipairs(entries) do
  local p = false
  for j = 1, #e[2], 2 do if e[2][j] == 'prev' then p = e[2][j + 1] break end end
  if p ~= expected then chained = false break end
  expected = e[1]
end
if chained then return {'0-0', false, false, 0, 0, entries} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local deleted, first, prev, added, len = '0-0', false, false, 0, 0
for i = 1, #info, 2 do
  local k, v = info[i], info[i + 1]
  if k == 'max-deleted-entry-id' then deleted = v
  elseif k == 'entries-added' then added = v
  elseif k == 'length' then len = v
  elseif k == 'first-entry' and v then
    first = v[1]
    for j = 1, #v[2], 2 do if v[2][j] == 'prev' then prev = v[2][j + 1] end end
  end
end
return {deleted, first, prev, added, len, entries}
";

/// How to reach the Redis holding a feed. In TOML (only `url` is required):
///
/// ```toml
/// [feed]
/// kind = "redis"
/// url = "redis://:secret@redis.example:6379/0"
/// stream = "mux:feed"
/// max_len = 1000000            # trimming is MAXLEN ~ max_len
/// response_timeout_ms = 5000
/// connection_timeout_ms = 2000
/// ```
///
/// `Debug` shows the URL with its password replaced by `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisFeedConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://…` for TLS.
    pub url: String,
    /// PEM CA certificates for a `rediss://` server with a private CA.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The key of the stream.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// About how many events the stream keeps (`XADD … MAXLEN ~ max_len`: Redis trims
    /// whole nodes, so it keeps at least this many and up to a node more).
    #[serde(default = "default_max_len")]
    pub max_len: u64,
    /// How long to wait for a response before the call fails as a timeout (a waiting
    /// read allows its wait on top of this).
    #[serde(
        rename = "response_timeout_ms",
        default = "default_response_timeout",
        deserialize_with = "millis"
    )]
    pub response_timeout: Duration,
    /// How long to wait for a connection to be established.
    #[serde(
        rename = "connection_timeout_ms",
        default = "default_connection_timeout",
        deserialize_with = "millis"
    )]
    pub connection_timeout: Duration,
}

fn default_stream() -> String {
    "mux:feed".into()
}

fn default_max_len() -> u64 {
    1_000_000
}

impl RedisFeedConfig {
    /// A config for `url` with stream `mux:feed` and `max_len` 1,000,000.
    pub fn new(url: impl Into<String>) -> RedisFeedConfig {
        RedisFeedConfig {
            url: url.into(),
            ca_file: None,
            stream: default_stream(),
            max_len: default_max_len(),
            response_timeout: default_response_timeout(),
            connection_timeout: default_connection_timeout(),
        }
    }

    /// Sets the stream's key.
    pub fn with_stream(mut self, stream: impl Into<String>) -> RedisFeedConfig {
        self.stream = stream.into();
        self
    }

    /// Sets about how many events the stream keeps.
    pub fn with_max_len(mut self, max_len: u64) -> RedisFeedConfig {
        self.max_len = max_len;
        self
    }

    /// Sets the response timeout.
    pub fn with_response_timeout(mut self, timeout: Duration) -> RedisFeedConfig {
        self.response_timeout = timeout;
        self
    }
}

impl fmt::Debug for RedisFeedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFeedConfig")
            .field("url", &redact(&self.url))
            .field("stream", &self.stream)
            .field("max_len", &self.max_len)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

/// A [`ChangeFeed`] on a Redis Stream: positions are stream ids (`ms-seq`).
///
/// Publishing and non-waiting reads share one multiplexed connection that reconnects by
/// itself; a waiting read (`XREAD BLOCK`) takes a dedicated connection from a small pool
/// so it never holds up other callers.
pub struct RedisFeed {
    name: String,
    config: RedisFeedConfig,
    client: redis::Client,
    conn: ConnectionManager,
    publish: redis::Script,
    read: redis::Script,
    /// Idle connections for blocking reads.
    blocking: Mutex<Vec<MultiplexedConnection>>,
}

impl fmt::Debug for RedisFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFeed")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

fn parse_id(id: &str) -> Result<Position> {
    id.parse()
        .map_err(|e: Error| Error::new(ErrorKind::Corrupt, format!("stream id: {}", e.message())))
}

type ReadReply = (
    String,
    Option<String>,
    Option<String>,
    u64,
    u64,
    Vec<(String, HashMap<String, String>)>,
);

impl RedisFeed {
    /// Connects to the Redis holding the feed (the stream need not exist yet).
    pub async fn open(config: RedisFeedConfig) -> Result<RedisFeed> {
        let name = format!("redis:{}", config.stream);
        let tag = |e: Error| e.with_backend(&name).with_operation(Operation::Open);
        if config.max_len == 0 {
            return Err(tag(Error::invalid_input("feed max_len must be at least 1")));
        }
        let (client, conn) = connect_manager(
            &config.url,
            config.ca_file.as_deref(),
            config.connection_timeout,
            Some(config.response_timeout),
        )
        .await
        .map_err(tag)?;
        Ok(RedisFeed {
            name,
            config,
            client,
            conn,
            publish: redis::Script::new(PUBLISH_SCRIPT),
            read: redis::Script::new(READ_SCRIPT),
            blocking: Mutex::new(Vec::new()),
        })
    }

    fn fail(&self, op: &str, e: Error) -> Error {
        e.with_backend(&self.name).context(format!("feed {op}"))
    }

    /// The events after `after`, never skipping trimmed ones: one script sees the
    /// retention state and the entries at the same instant, so trimming cannot slip in
    /// between the check and the read (a check before a separate read could pass, then
    /// trimming removes events, and the read silently starts after the gap).
    ///
    /// Redis 7.0 raises `max-deleted-entry-id` only for `XDEL`, not for trimming (`MAXLEN`
    /// / `XTRIM` leave it at 0-0), so trimming is detected through `prev`: events were
    /// trimmed after `after` if the oldest entry left is above `after` and the entry
    /// added before it (its `prev`, now trimmed) is above `after` too.
    async fn read_now(&self, after: Position, limit: usize) -> Result<Vec<FeedEvent>> {
        let mut conn = self.conn.clone();
        let (deleted, first, prev, added, len, entries): ReadReply = self
            .read
            .key(&self.config.stream)
            .arg(after.to_string())
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail("read", map_err(e)))?;
        let deleted = parse_id(&deleted)?;
        if after < deleted {
            return Err(gone(&self.name, after, deleted));
        }
        let first = first.as_deref().map(parse_id).transpose()?;
        let prev = prev.as_deref().map(parse_id).transpose()?;
        match (first, prev) {
            (Some(first), Some(prev)) if after < first && after < prev => {
                return Err(gone(&self.name, after, prev));
            }
            // An oldest entry not written by this feed: trust the counts instead.
            (Some(first), None) if after < first && added > len => {
                return Err(gone(&self.name, after, format!("before {first}")));
            }
            _ => {}
        }
        entries
            .into_iter()
            .map(|(id, fields)| {
                Ok(FeedEvent {
                    position: parse_id(&id)?,
                    change: ChangeEvent::from_fields(|n| fields.get(n).map(String::as_str))?,
                })
            })
            .collect::<Result<_>>()
            .map_err(|e| self.fail("read", e))
    }

    /// An idle dedicated connection, or a new one; `true` when reused.
    async fn take_blocking(&self) -> Result<(MultiplexedConnection, bool)> {
        let idle = self.blocking.lock().expect("pool lock").pop();
        if let Some(conn) = idle {
            return Ok((conn, true));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connection_timeout))
            .set_response_timeout(Some(self.config.response_timeout));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.fail("read", map_err(e)))?;
        Ok((conn, false))
    }

    /// Waits up to `wait` for an entry after `after` (`XREAD BLOCK` on a dedicated
    /// connection, with a client-side timeout of the wait plus the response timeout).
    /// Only a wake-up: the entries are then read by [`RedisFeed::read_now`].
    async fn wait_for_entry(&self, after: Position, wait: Duration) -> Result<()> {
        let block_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(after.to_string());
        let mut retried = false;
        loop {
            let (mut conn, reused) = self.take_blocking().await?;
            conn.set_response_timeout(wait.saturating_add(self.config.response_timeout));
            match cmd.query_async::<Value>(&mut conn).await {
                Ok(_) => {
                    let mut idle = self.blocking.lock().expect("pool lock");
                    if idle.len() < MAX_IDLE_BLOCKING {
                        idle.push(conn);
                    }
                    return Ok(());
                }
                Err(e) => {
                    // The idle connections are likely as dead as this one (a restarted
                    // server): drop them all, and retry once on a fresh connection.
                    self.blocking.lock().expect("pool lock").clear();
                    if reused && !retried && (e.is_connection_dropped() || e.is_io_error()) {
                        retried = true;
                        continue;
                    }
                    return Err(self.fail("read", map_err(e)));
                }
            }
        }
    }
}

#[async_trait]
impl ChangeFeed for RedisFeed {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, events: &[ChangeEvent]) -> Result<Vec<Position>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.publish.key(&self.config.stream);
        invocation.arg(self.config.max_len).arg(10);
        for event in events {
            for (name, value) in event.to_fields() {
                invocation.arg(name).arg(value);
            }
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail("publish", map_err(e)))?;
        ids.iter().map(|id| parse_id(id)).collect()
    }

    async fn read(&self, after: Position, limit: usize, wait: Duration) -> Result<Vec<FeedEvent>> {
        let limit = limit.max(1);
        // Capped so that the deadline cannot overflow.
        let deadline = Instant::now() + wait.min(Duration::from_secs(365 * 86_400));
        for _ in 0..MAX_WAKEUPS {
            let events = self.read_now(after, limit).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !events.is_empty() || left.is_zero() {
                return Ok(events);
            }
            self.wait_for_entry(after, left).await?;
        }
        Ok(Vec::new())
    }

    async fn head(&self) -> Result<Position> {
        let mut conn = self.conn.clone();
        let reply: redis::RedisResult<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.config.stream)
            .query_async(&mut conn)
            .await;
        let info = match reply {
            Ok(info) => info,
            Err(e)
                if e.code() == Some("ERR")
                    && e.detail().is_some_and(|d| d.contains("no such key")) =>
            {
                return Ok(Position::ZERO);
            }
            Err(e) => return Err(self.fail("head", map_err(e))),
        };
        let id = info.get("last-generated-id").ok_or_else(|| {
            self.fail(
                "head",
                Error::new(ErrorKind::Corrupt, "XINFO STREAM without last-generated-id"),
            )
        })?;
        let id: String = redis::from_redis_value(id.clone()).map_err(parse_err)?;
        parse_id(&id)
    }
}
