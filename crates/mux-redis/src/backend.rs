//! [`RedisBackend`]: the `Backend` implementation on Redis.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::resilience::CoarseTimeout;
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Metadata, Operation, PutOutcome, Record, Result, Version,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind as RedisKind, ServerErrorKind, Value};

use crate::config::{DEFAULT_MAX_VALUE_SIZE, Layout, RedisConfig, redact};
use crate::conn::Conn;
use crate::error::{map_err, parse_err};
use crate::layout::{self, FIELDS, LIST, MetaJson, READ, RecordKey, Shown};
use crate::scripts;
use crate::string_layout::{self, LIST_HEAD, Listed, RecordString};

/// A client for `url` and one multiplexed connection on it that reconnects by itself
/// after failures (shared by [`RedisBackend`] and `RedisFeed`).
pub(crate) async fn connect_manager(
    url: &str,
    ca_file: Option<&std::path::Path>,
    connection_timeout: Duration,
    response_timeout: Option<Duration>,
) -> Result<(redis::Client, ConnectionManager)> {
    let invalid = |e: redis::RedisError| {
        Error::invalid_input(format!("invalid Redis URL {}: {e}", redact(url)))
    };
    let client = match ca_file {
        None => redis::Client::open(url).map_err(invalid)?,
        Some(path) if url.starts_with("rediss://") => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::invalid_input(format!(
                    "Redis ca_file {}: cannot read it: {e}",
                    path.display()
                ))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url, certs).map_err(invalid)?
        }
        Some(path) => {
            return Err(Error::invalid_input(format!(
                "Redis ca_file {} is set but {} is not a rediss:// URL: use rediss:// for TLS",
                path.display(),
                redact(url)
            )));
        }
    };
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connection_timeout))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .map_err(|e| map_err(e).context(format!("cannot connect to {}", redact(url))))?;
    Ok((client, conn))
}

/// A backend storing records in Redis.
#[derive(Clone)]
pub struct RedisBackend {
    info: BackendInfo,
    config: RedisConfig,
    conn: Conn,
    /// The compare-and-set script of the configured layout.
    put: redis::Script,
    purge: redis::Script,
    /// `{namespace}:idx`, the sorted set of keys (made once: every write names it).
    index: String,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("name", &self.info.name)
            .field("config", &self.config)
            .finish()
    }
}

impl RedisBackend {
    /// The capability of a Redis backend. Not `durable`: whether Redis keeps data across
    /// a restart depends on its persistence settings (RDB/AOF), which mux cannot see.
    pub const CAPABILITY: Capability = Capability {
        list: true,
        batch: true,
        atomic_conditional_write: true,
        history: false,
        tags: true,
        content_type: true,
        purge: true,
        durable: false,
        digest: false,
        max_value_size: Some(DEFAULT_MAX_VALUE_SIZE),
    };

    /// Connects (one multiplexed connection; it reconnects by itself after failures).
    pub async fn connect(name: impl AsRef<str>, config: RedisConfig) -> Result<RedisBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        let (_, conn) = connect_manager(
            &config.url,
            config.ca_file.as_deref(),
            config.connection_timeout,
            // Bounded by `Conn`'s coarse timer instead.
            None,
        )
        .await
        .map_err(tag)?;
        Ok(RedisBackend {
            info: BackendInfo::new(name, "redis", Self::CAPABILITY),
            conn: Conn::new(conn, CoarseTimeout::new(config.response_timeout)),
            put: redis::Script::new(match config.layout {
                Layout::String => scripts::PUT_STRING,
                Layout::Hash => scripts::PUT_HASH,
            }),
            purge: redis::Script::new(scripts::PURGE),
            index: format!("{}:idx", config.namespace),
            config,
        })
    }

    fn record_key<'a>(&'a self, key: &'a str) -> Shown<RecordKey<'a>> {
        Shown(RecordKey(&self.config.namespace, key))
    }

    /// `command` of `key`'s record with `args`: the command sized once and sent without
    /// `query_async`'s boxed future and conversions.
    async fn read(&self, command: &str, key: &Key, args: &[&str]) -> redis::RedisResult<Value> {
        let mut cmd = redis::Cmd::with_capacity(
            2 + args.len(),
            self.config.namespace.len() + key.as_str().len() + 32,
        );
        cmd.arg(command)
            .arg(self.record_key(key.as_str()))
            .arg(args);
        self.conn.send(&cmd).await
    }

    /// The record at `key` read as `layout` keeps it: `None` when Redis keeps it in the
    /// other layout (`WRONGTYPE`).
    async fn get_in(&self, key: &Key, layout: Layout) -> Result<Option<Option<Record>>> {
        match layout {
            Layout::String => self.get_string(key).await,
            Layout::Hash => self.get_hash(key).await,
        }
    }

    /// A read of a record's string: one `GET`, the value a slice of the reply.
    async fn get_string(&self, key: &Key) -> Result<Option<Option<Record>>> {
        match self.read("GET", key, &[]).await {
            Ok(Value::Nil) => Ok(Some(None)),
            Ok(Value::BulkString(bytes)) => {
                string_layout::decode(key.clone(), bytes).map(|r| Some(Some(r)))
            }
            Ok(other) => Err(Error::new(
                ErrorKind::Corrupt,
                format!("record {key}: unexpected reply to GET: {other:?}"),
            )),
            Err(e) if wrong_type(&e) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    /// A read of a record's hash: `v`, `m` and `val` (the reply carries no field names,
    /// and each field arrives as a buffer of its own, which is moved into the record).
    async fn get_hash(&self, key: &Key) -> Result<Option<Option<Record>>> {
        let reply = match self.read("HMGET", key, &READ).await {
            Err(e) if wrong_type(&e) => return Ok(None),
            other => other.map_err(map_err)?,
        };
        let Some([v, m, val]) = layout::fields_of(key, reply)? else {
            return Ok(Some(None));
        };
        if let Some(meta) = layout::current_meta(key, &v, &m)? {
            let value = Bytes::from(val.unwrap_or_default());
            return Record::from_parts(key.clone(), value, meta).map(|r| Some(Some(r)));
        }
        // The old layout, or an `m` that does not hold `v`'s version: every field, in one
        // read, for `layout::meta` to decide.
        let reply = match self.read("HMGET", key, &FIELDS).await {
            Err(e) if wrong_type(&e) => return Ok(None),
            other => other.map_err(map_err)?,
        };
        match layout::fields_of(key, reply)? {
            None => Ok(Some(None)), // purged in between
            Some(fields) => layout::decode(key.clone(), fields).map(|r| Some(Some(r))),
        }
    }

    /// The metadata and value size of the records at `keys` as `layout` keeps them, in
    /// one pipeline (the values are not read).
    async fn list_in(&self, keys: &[&Key], layout: Layout) -> Result<Vec<Fetched>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for k in keys {
            let record = self.record_key(k.as_str());
            match layout {
                Layout::String => pipe
                    .cmd("GETRANGE")
                    .arg(&record)
                    .arg(0)
                    .arg(LIST_HEAD - 1)
                    .cmd("STRLEN")
                    .arg(&record),
                Layout::Hash => pipe
                    .cmd("HMGET")
                    .arg(&record)
                    .arg(&LIST)
                    .cmd("HSTRLEN")
                    .arg(&record)
                    .arg("val"),
            };
        }
        let replies: Vec<Value> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        if replies.len() != 2 * keys.len() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "Redis answered fewer replies than the listing asked for",
            ));
        }
        let mut fetched = Vec::with_capacity(keys.len());
        let mut replies = replies.into_iter();
        for &k in keys {
            let (Some(first), Some(size)) = (replies.next(), replies.next()) else {
                unreachable!("two replies per key, counted above");
            };
            let (first, size) = match (first, size) {
                (Value::ServerError(e), _) | (_, Value::ServerError(e)) => {
                    let e = redis::RedisError::from(e);
                    if wrong_type(&e) {
                        fetched.push(Fetched::OtherLayout);
                        continue;
                    }
                    return Err(map_err(e));
                }
                pair => pair,
            };
            let size: u64 = redis::from_redis_value(size).map_err(parse_err)?;
            fetched.push(match layout {
                Layout::String => {
                    let head: Vec<u8> = redis::from_redis_value(first).map_err(parse_err)?;
                    match string_layout::listed(k, &head, size)? {
                        Listed::Entry(meta, size) => Fetched::Entry(meta, size),
                        Listed::Gone => Fetched::Gone,
                        // Metadata longer than the head: the whole string, read as a get.
                        Listed::Longer => match self.get_string(k).await? {
                            Some(Some(r)) => {
                                Fetched::Entry(r.meta().clone(), r.value().len() as u64)
                            }
                            Some(None) => Fetched::Gone,
                            None => Fetched::OtherLayout,
                        },
                    }
                }
                Layout::Hash => match layout::fields_of(k, first)? {
                    None => Fetched::Gone,
                    Some([v, m, t, ct, tags, crc]) => {
                        Fetched::Entry(layout::meta(k, v, m, [t, ct, tags, crc])?, size)
                    }
                },
            });
        }
        Ok(fetched)
    }

    fn index_key(&self) -> &str {
        &self.index
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    /// `EVALSHA` of the compare-and-set script for one record.
    fn put_cmd(&self, record: &Record) -> redis::Cmd {
        let meta = record.meta();
        // Sized once: the value, the key twice, and the rest (hash, version, metadata, …).
        let size = record.value().len()
            + 2 * record.key().as_str().len()
            + self.config.namespace.len()
            + meta.content_type.as_ref().map_or(0, String::len)
            + meta
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>()
            + 192;
        let mut cmd = redis::Cmd::with_capacity(8, size);
        cmd.arg("EVALSHA")
            .arg(self.put.get_hash())
            .arg(2)
            .arg(self.record_key(record.key().as_str()))
            .arg(self.index_key())
            .arg(Shown(meta.version));
        match self.config.layout {
            Layout::String => cmd.arg(RecordString(record)),
            Layout::Hash => cmd.arg(MetaJson(meta)).arg(record.value().as_ref()),
        };
        cmd.arg(record.key().as_str());
        cmd
    }

    /// Runs the compare-and-set script for one record, as a single command. After a
    /// server restart the script cache is empty: load it and retry.
    async fn run_put(&self, record: &Record) -> Result<PutOutcome> {
        let cmd = self.put_cmd(record);
        let reply = match self.conn.send(&cmd).await {
            Err(e) if e.kind() == RedisKind::Server(ServerErrorKind::NoScript) => {
                self.put
                    .load_async(&mut self.conn.clone())
                    .await
                    .map_err(map_err)?;
                self.conn.send(&cmd).await.map_err(map_err)?
            }
            other => other.map_err(map_err)?,
        };
        Self::outcome(redis::from_redis_value(reply).map_err(parse_err)?)
    }

    /// Runs the compare-and-set script for each record in one pipeline (one round
    /// trip), reloading the script as [`Self::run_put`] does.
    async fn run_puts(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        let mut conn = self.conn.clone();
        let build = || {
            let mut pipe = redis::pipe();
            for r in records {
                pipe.add_command(self.put_cmd(r));
            }
            pipe
        };
        let replies: Vec<Option<String>> = match build().query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) if e.kind() == RedisKind::Server(ServerErrorKind::NoScript) => {
                self.put.load_async(&mut conn).await.map_err(map_err)?;
                build().query_async(&mut conn).await.map_err(map_err)?
            }
            Err(e) => return Err(map_err(e)),
        };
        replies.into_iter().map(Self::outcome).collect()
    }

    fn outcome(reply: Option<String>) -> Result<PutOutcome> {
        match reply {
            None => Ok(PutOutcome::Applied),
            Some(v) => Ok(PutOutcome::Superseded {
                stored: v.parse().map_err(|e: Error| {
                    Error::new(
                        ErrorKind::Corrupt,
                        format!("stored version is invalid: {}", e.message()),
                    )
                })?,
            }),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        self.run_put(record).await.map_err(self.tag(Operation::Put))
    }

    /// Read in the configured layout first, and in the other when Redis answers
    /// `WRONGTYPE` (a record written before a change of layout, or by a node on the
    /// other one).
    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let mut layout = self.config.layout;
        for _ in 0..LAYOUT_TRIES {
            match self.get_in(key, layout).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => layout = layout.other(),
                Err(e) => return Err(self.tag(Operation::Get)(e)),
            }
        }
        Err(self.tag(Operation::Get)(changing_layout()))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let tag = self.tag(Operation::List);
        let limit = request.effective_limit().map_err(&tag)?;
        let mut conn = self.conn.clone();
        let base = request.prefix.scan_start();
        let mut start = match &request.cursor {
            Some(c) if c.as_str() >= base => format!("({c}"),
            _ => format!("[{base}"),
        };
        // Every key under the prefix starts with `base`, so it sorts before `scan_end`.
        let end = match request.prefix.scan_end() {
            Some(end) => format!("({end}"),
            None => "+".to_owned(),
        };
        let mut keys: Vec<Key> = Vec::new();
        let mut more = false;
        'scan: loop {
            let batch: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(self.index_key())
                .arg(&start)
                .arg(&end)
                .arg("LIMIT")
                .arg(0)
                .arg(limit + 1)
                .query_async(&mut conn)
                .await
                .map_err(|e| tag(map_err(e)))?;
            let exhausted = batch.len() <= limit;
            for k in &batch {
                if !request.wants(k) {
                    continue;
                }
                if keys.len() == limit {
                    more = true;
                    break 'scan;
                }
                keys.push(
                    Key::new(k)
                        .map_err(|e| tag(Error::new(ErrorKind::Corrupt, e.message().to_owned())))?,
                );
            }
            match batch.last() {
                Some(last) if !exhausted => start = format!("({last}"),
                _ => break,
            }
        }
        // The metadata (not the values) of the page: one pipeline, and one more for any
        // record kept in the other layout.
        let mut found: Vec<Option<(Metadata, u64)>> = vec![None; keys.len()];
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let mut layout = self.config.layout;
        for _ in 0..LAYOUT_TRIES {
            if pending.is_empty() {
                break;
            }
            let asked: Vec<&Key> = pending.iter().map(|&i| &keys[i]).collect();
            let fetched = self.list_in(&asked, layout).await.map_err(&tag)?;
            let mut again = Vec::new();
            for (i, f) in pending.into_iter().zip(fetched) {
                match f {
                    Fetched::Entry(meta, size) => found[i] = Some((meta, size)),
                    Fetched::Gone => {} // purged since the index was read
                    Fetched::OtherLayout => again.push(i),
                }
            }
            pending = again;
            layout = layout.other();
        }
        if !pending.is_empty() {
            return Err(tag(changing_layout()));
        }
        let mut page = ListPage::default();
        for (key, found) in keys.into_iter().zip(found) {
            if let Some((meta, size)) = found {
                page.entries.push(ListEntry { key, meta, size });
            }
        }
        if more {
            page.next_cursor = page.entries.last().map(|e| e.key.clone());
        }
        Ok(page)
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.run_put(&Record::tombstone(key.clone(), version))
            .await
            .map_err(self.tag(Operation::Delete))
    }

    /// One pipeline of `EVALSHA` calls: one round trip for the whole batch.
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        for r in records {
            self.info.check_value_size(r, Operation::PutBatch)?;
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.run_puts(records)
            .await
            .map_err(self.tag(Operation::PutBatch))
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let mut conn = self.conn.clone();
        let removed: i64 = self
            .purge
            .key(self.record_key(key.as_str()))
            .key(self.index_key())
            .arg(up_to.to_string())
            .arg(key.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.tag(Operation::Purge)(map_err(e)))?;
        Ok(removed == 1)
    }

    async fn health(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.tag(Operation::Health)(map_err(e)))?;
        Ok(())
    }
}

/// What a listing found of one record in one layout.
enum Fetched {
    /// Its metadata and the size of its value.
    Entry(Metadata, u64),
    /// Removed since the index was read.
    Gone,
    /// Kept in the other layout (`WRONGTYPE`).
    OtherLayout,
}

/// How many times a read tries a layout: the configured one, the other, and the
/// configured one again for a record a write converted in between.
const LAYOUT_TRIES: usize = 3;

/// Whether Redis refused a command for the key's type: the record is in the other layout.
fn wrong_type(e: &redis::RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}

/// A record that kept changing layout between a read's tries (writes converting it back
/// and forth: nodes configured with different layouts writing it at that moment).
fn changing_layout() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the record changed between Redis layouts while it was read (nodes writing it with \
         different `layout` settings); retry, and give every node the same layout",
    )
    .temporary()
}

#[cfg(test)]
mod tests;
