//! [`RedisBackend`]: the `Backend` implementation on Redis.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Operation, PutOutcome, Record, Result, Version,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind as RedisKind, ServerErrorKind, Value};

use crate::config::{DEFAULT_MAX_VALUE_SIZE, RedisConfig, redact};
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
    response_timeout: Duration,
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
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .map_err(|e| map_err(e).context(format!("cannot connect to {}", redact(url))))?;
    Ok((client, conn))
}

/// Sends one command, its server error as an error (`query_async` without its boxed
/// future and conversion).
async fn send(conn: &mut ConnectionManager, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
    match conn.send_packed_command(cmd).await? {
        Value::ServerError(e) => Err(e.into()),
        reply => Ok(reply),
    }
}

/// A backend storing records in Redis.
#[derive(Clone)]
pub struct RedisBackend {
    info: BackendInfo,
    config: RedisConfig,
    conn: ConnectionManager,
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
            config.response_timeout,
        )
        .await
        .map_err(tag)?;
        Ok(RedisBackend {
            info: BackendInfo::new(name, "redis", Self::CAPABILITY),
            conn,
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
        send(&mut self.conn.clone(), &cmd).await.map_err(map_err)
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
        let mut conn = self.conn.clone();
        let cmd = self.put_cmd(record);
        let reply = match send(&mut conn, &cmd).await {
            Err(e) if e.kind() == RedisKind::Server(ServerErrorKind::NoScript) => {
                self.put.load_async(&mut conn).await.map_err(map_err)?;
                send(&mut conn, &cmd).await.map_err(map_err)?
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
        // The old layout (or an `m` older than `v`): every field, in one read.
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
            let meta = match layout::current_meta(&k, &v, &m).map_err(&tag)? {
                Some(meta) => meta,
                None => layout::old_meta(&k, [v, t, ct, tags, crc]).map_err(&tag)?,
            };
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
mod tests {
    use super::*;

    /// A backend on the Redis at `MUX_REDIS_URL` (default `redis://127.0.0.1:6379`) under
    /// `namespace`. Panics when it cannot connect: Redis is a required backend.
    async fn connect(namespace: &str) -> RedisBackend {
        let url =
            std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        RedisBackend::connect("redis", RedisConfig::new(&url).with_namespace(namespace))
            .await
            .unwrap_or_else(|e| panic!("Redis at {url} is required for this test: {e}"))
    }

    /// The conformance suite against the Redis at `MUX_REDIS_URL` (default
    /// `redis://127.0.0.1:6379`). Fails when it cannot connect: Redis is a required
    /// backend (`cargo xtask services up` starts one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let backend = connect("mux-test").await;
        let report = mux_conformance::run(std::sync::Arc::new(backend)).await;
        println!("{report}");
        assert!(report.all_passed(), "{report}");
        // This store keeps no history: only the history cases may skip.
        assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
    }

    /// A server restart empties its script cache: a single write and a batch load the
    /// put script again and go through (`SCRIPT FLUSH` stands in for the restart).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_load_the_script_again_after_the_cache_is_flushed() {
        let backend = connect(&format!("mux-noscript-{}", std::process::id())).await;
        let mut conn = backend.conn.clone();
        let flush = async |conn: &mut ConnectionManager| {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(conn)
                .await
                .unwrap();
        };
        let key = |k: &str| Key::new(k).unwrap();
        let v = |n: u64| Version::new(n, 0, 1);
        flush(&mut conn).await;
        let one = Record::new(key("noscript/a"), "one", v(1));
        assert_eq!(backend.put(&one).await.unwrap(), PutOutcome::Applied);
        assert_eq!(backend.get(&key("noscript/a")).await.unwrap().unwrap(), one);
        flush(&mut conn).await;
        let batch = [
            Record::new(key("noscript/a"), "two", v(2)),
            Record::new(key("noscript/b"), "three", v(1)),
        ];
        assert_eq!(
            backend.put_batch(&batch).await.unwrap(),
            vec![PutOutcome::Applied, PutOutcome::Applied]
        );
        assert_eq!(
            backend
                .get(&key("noscript/a"))
                .await
                .unwrap()
                .unwrap()
                .value(),
            "two"
        );
        for k in ["noscript/a", "noscript/b"] {
            assert!(backend.purge(&key(k), v(2)).await.unwrap());
        }
    }

    /// The fields of `hash`, sorted.
    async fn field_names(conn: &mut ConnectionManager, hash: &impl redis::ToRedisArgs) -> Vec<String> {
        let mut names: Vec<String> = redis::cmd("HKEYS").arg(hash).query_async(conn).await.unwrap();
        names.sort();
        names
    }

    /// The layout the put script leaves: the fields `v`, `m` and `val` whatever the
    /// record holds, and one index entry from the first write until a purge, back with the
    /// next write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_put_script_keeps_the_hash_and_its_index_entry_together() {
        let backend = connect(&format!("mux-layout-{}", std::process::id())).await;
        let mut conn = backend.conn.clone();
        let key = Key::new("layout/a").unwrap();
        let (hash, index) = (backend.record_key(key.as_str()), backend.index_key());
        let v = |n: u64| Version::new(n, 0, 1);
        let mut state = async |expect_ct: Option<&str>, indexed: bool| {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(index)
                .arg(key.as_str())
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(score.is_some(), indexed);
            let fields = field_names(&mut conn, &hash).await;
            if indexed {
                assert_eq!(fields, ["m", "v", "val"]);
                let read = backend.get(&key).await.unwrap().unwrap();
                assert_eq!(read.meta().content_type.as_deref(), expect_ct);
            } else {
                assert!(fields.is_empty(), "{fields:?}");
            }
        };

        let typed = Record::new(key.clone(), "one", v(1)).with_content_type("text/plain");
        assert_eq!(backend.put(&typed).await.unwrap(), PutOutcome::Applied);
        state(Some("text/plain"), true).await;
        // An update without a content type has none; the entry stays.
        let plain = Record::new(key.clone(), "two", v(2));
        assert_eq!(backend.put(&plain).await.unwrap(), PutOutcome::Applied);
        state(None, true).await;
        assert_eq!(backend.get(&key).await.unwrap().unwrap().value(), "two");
        let typed = Record::new(key.clone(), "three", v(3)).with_content_type("application/json");
        assert_eq!(backend.put(&typed).await.unwrap(), PutOutcome::Applied);
        state(Some("application/json"), true).await;
        // A stale write changes nothing.
        let stale = Record::new(key.clone(), "old", v(2));
        assert_eq!(
            backend.put(&stale).await.unwrap(),
            PutOutcome::Superseded { stored: v(3) }
        );
        state(Some("application/json"), true).await;
        // Purged, the hash and the entry go together; the next write brings both back.
        assert!(backend.purge(&key, v(3)).await.unwrap());
        state(None, false).await;
        assert_eq!(
            backend
                .put(&Record::new(key.clone(), "four", v(4)))
                .await
                .unwrap(),
            PutOutcome::Applied
        );
        state(None, true).await;
        let listed = backend
            .list(&ListRequest::new(mux_core::Prefix::new("layout").unwrap()))
            .await
            .unwrap();
        assert_eq!(listed.entries.len(), 1);
        let _: () = redis::cmd("DEL")
            .arg(&hash)
            .arg(index)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// A hash in the earlier six-field layout (`v`, `t`, `ct`, `tags`, `crc`, `val`), as
    /// an older mux wrote it, is read and listed; a stale write leaves it; the next write
    /// turns it into the current layout. An older mux writing the old fields over a newer
    /// hash (a rolling upgrade) is read by `v`, not by the stale `m`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_in_the_earlier_layout_read_and_convert_on_their_next_write() {
        let backend = connect(&format!("mux-oldlayout-{}", std::process::id())).await;
        let mut conn = backend.conn.clone();
        let key = Key::new("old/a").unwrap();
        let (hash, index) = (backend.record_key(key.as_str()), backend.index_key());
        let v = |n: u64| Version::new(n, 0, 1);
        let write_old = async |conn: &mut ConnectionManager, record: &Record| {
            let meta = record.meta();
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&hash)
                .arg("v")
                .arg(meta.version.to_string())
                .arg("t")
                .arg(if meta.tombstone { "1" } else { "0" })
                .arg("tags")
                .arg(serde_json::to_string(&meta.tags).unwrap())
                .arg("crc")
                .arg(meta.checksum.to_string())
                .arg("val")
                .arg(record.value().as_ref());
            if let Some(ct) = &meta.content_type {
                cmd.arg("ct").arg(ct);
            }
            let _: () = cmd.query_async(&mut *conn).await.unwrap();
            let _: () = redis::cmd("ZADD")
                .arg(index)
                .arg(0)
                .arg(key.as_str())
                .query_async(conn)
                .await
                .unwrap();
        };

        let old = Record::new(key.clone(), "old layout", v(2))
            .with_content_type("text/plain")
            .with_tag("class", "pii");
        write_old(&mut conn, &old).await;
        assert_eq!(backend.get(&key).await.unwrap().unwrap(), old);
        let listed = backend
            .list(&ListRequest::new(mux_core::Prefix::new("old").unwrap()))
            .await
            .unwrap();
        assert_eq!(listed.entries.len(), 1);
        assert_eq!(&listed.entries[0].meta, old.meta());
        assert_eq!(listed.entries[0].size, 10);
        let stale = Record::new(key.clone(), "stale", v(1));
        assert_eq!(
            backend.put(&stale).await.unwrap(),
            PutOutcome::Superseded { stored: v(2) }
        );
        assert_eq!(
            field_names(&mut conn, &hash).await,
            ["crc", "ct", "t", "tags", "v", "val"]
        );

        let new = Record::new(key.clone(), "new layout", v(3));
        assert_eq!(backend.put(&new).await.unwrap(), PutOutcome::Applied);
        assert_eq!(field_names(&mut conn, &hash).await, ["m", "v", "val"]);
        assert_eq!(backend.get(&key).await.unwrap().unwrap(), new);

        // An older node writes version 4 in the old layout over it: `m` still says 3.
        let over = Record::new(key.clone(), "older node", v(4)).with_tag("by", "old");
        write_old(&mut conn, &over).await;
        assert_eq!(backend.get(&key).await.unwrap().unwrap(), over);
        let listed = backend
            .list(&ListRequest::new(mux_core::Prefix::new("old").unwrap()))
            .await
            .unwrap();
        assert_eq!(&listed.entries[0].meta, over.meta());
        let newest = Record::tombstone(key.clone(), v(5));
        assert_eq!(backend.delete(&key, v(5)).await.unwrap(), PutOutcome::Applied);
        assert_eq!(field_names(&mut conn, &hash).await, ["m", "v", "val"]);
        assert_eq!(backend.get(&key).await.unwrap().unwrap(), newest);

        let _: () = redis::cmd("DEL")
            .arg(&hash)
            .arg(index)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
