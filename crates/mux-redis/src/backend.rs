//! [`RedisBackend`]: the `Backend` implementation on Redis.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::resilience::CoarseTimeout;
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Operation, PutOutcome, Record, Result, Version,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind as RedisKind, ServerErrorKind, Value};

use crate::config::{DEFAULT_MAX_VALUE_SIZE, RedisConfig, redact};
use crate::conn::Conn;
use crate::error::{map_err, parse_err};
use crate::layout::{
    self, FIELDS, LIST, MetaJson, PURGE_SCRIPT, PUT_SCRIPT, READ, RecordKey, Shown,
};

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
            put: redis::Script::new(PUT_SCRIPT),
            purge: redis::Script::new(PURGE_SCRIPT),
            index: format!("{}:idx", config.namespace),
            config,
        })
    }

    fn record_key<'a>(&'a self, key: &'a str) -> Shown<RecordKey<'a>> {
        Shown(RecordKey(&self.config.namespace, key))
    }

    /// `HMGET` of `fields` of `key`'s hash: the command sized once and sent without
    /// `query_async`'s boxed future and conversions.
    async fn hmget(&self, key: &Key, fields: &[&str]) -> Result<Value> {
        let mut cmd = redis::Cmd::with_capacity(
            2 + fields.len(),
            self.config.namespace.len() + key.as_str().len() + 32,
        );
        cmd.arg("HMGET")
            .arg(self.record_key(key.as_str()))
            .arg(fields);
        self.conn.send(&cmd).await.map_err(map_err)
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
            .arg(Shown(meta.version))
            .arg(MetaJson(meta))
            .arg(record.value().as_ref())
            .arg(record.key().as_str());
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

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let tag = self.tag(Operation::Get);
        // `v`, `m` and `val`: the reply carries no field names, and each field arrives as
        // a buffer of its own, which is moved into the record.
        let reply = self.hmget(key, &READ).await.map_err(&tag)?;
        let Some([v, m, val]) = layout::fields_of(key, reply).map_err(&tag)? else {
            return Ok(None);
        };
        if let Some(meta) = layout::current_meta(key, &v, &m).map_err(&tag)? {
            let value = Bytes::from(val.unwrap_or_default());
            return Record::from_parts(key.clone(), value, meta)
                .map(Some)
                .map_err(tag);
        }
        // The old layout, or an `m` that does not hold `v`'s version: every field, in one
        // read, for `layout::meta` to decide.
        let reply = self.hmget(key, &FIELDS).await.map_err(&tag)?;
        match layout::fields_of(key, reply).map_err(&tag)? {
            None => Ok(None), // purged in between
            Some(fields) => layout::decode(key.clone(), fields).map(Some).map_err(tag),
        }
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
        // Fetch the metadata (not the values) of the page in one pipeline.
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HMGET")
                .arg(self.record_key(k.as_str()))
                .arg(&LIST)
                .cmd("HSTRLEN")
                .arg(self.record_key(k.as_str()))
                .arg("val");
        }
        let replies: Vec<Value> = if keys.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn)
                .await
                .map_err(|e| tag(map_err(e)))?
        };
        let mut page = ListPage::default();
        let mut replies = replies.into_iter();
        for k in keys {
            let (Some(fields), Some(size)) = (replies.next(), replies.next()) else {
                return Err(tag(Error::new(
                    ErrorKind::Corrupt,
                    "Redis answered fewer replies than the listing asked for",
                )));
            };
            let Some([v, m, t, ct, tags, crc]) = layout::fields_of(&k, fields).map_err(&tag)?
            else {
                continue; // purged since the index was read
            };
            let size: u64 = redis::from_redis_value(size).map_err(|e| tag(parse_err(e)))?;
            // The metadata alone: listings do not fetch values.
            let meta = layout::meta(&k, v, m, [t, ct, tags, crc]).map_err(&tag)?;
            page.entries.push(ListEntry { key: k, meta, size });
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

#[cfg(test)]
mod tests;
