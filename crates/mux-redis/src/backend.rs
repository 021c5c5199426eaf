//! [`RedisBackend`]: the `Backend` implementation on Redis.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Metadata, Operation, PutOutcome, Record, Result, Version,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind as RedisKind, ServerErrorKind, Value};

use crate::config::{DEFAULT_MAX_VALUE_SIZE, RedisConfig, redact};
use crate::error::{map_err, parse_err};

/// Compare-and-set: write the record only if its version is higher than the stored one.
/// KEYS: record hash, index. ARGV: version, tombstone, content type, has content type,
/// tags, crc, value, key. Returns nil when applied, else the stored version.
///
/// The index entry is added only with a new hash: the hash and its entry are created
/// here together and removed together by [`PURGE_SCRIPT`], so an update (most writes)
/// leaves the index alone, and `ct` is deleted only when there is one. Measured with
/// `INFO commandstats` on Redis 7.0 (1 KiB values), the server spends about 4.1 µs per
/// update instead of 5.0 with an unconditional `ZADD` and `HDEL`; an empty script with
/// the same arguments costs 2.3 µs of that, a plain `SET` 0.3 µs.
const PUT_SCRIPT: &str = r"
local found = redis.call('HMGET', KEYS[1], 'v', 'ct')
local stored = found[1]
if stored and stored >= ARGV[1] then return stored end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 't', ARGV[2], 'tags', ARGV[5], 'crc', ARGV[6], 'val', ARGV[7], 'ct', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 't', ARGV[2], 'tags', ARGV[5], 'crc', ARGV[6], 'val', ARGV[7])
  if found[2] then redis.call('HDEL', KEYS[1], 'ct') end
end
if not stored then redis.call('ZADD', KEYS[2], 0, ARGV[8]) end
return false
";

/// Remove the record if its stored version is at most ARGV[1]. KEYS: hash, index.
const PURGE_SCRIPT: &str = r"
local stored = redis.call('HGET', KEYS[1], 'v')
if stored and stored <= ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
";

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

/// An argument written into a command's buffer as `T`'s text, without a `String` of
/// its own (a read or write names several such).
struct Shown<T>(T);

impl<T: fmt::Display> redis::ToRedisArgs for Shown<T> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        // Writing into the command's Vec cannot fail.
        let _ = write!(out.writer_for_next_arg(), "{}", self.0);
    }
}

/// A record's hash, `{namespace}:r:{key}`.
struct RecordKey<'a>(&'a str, &'a str);

impl fmt::Display for RecordKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:r:{}", self.0, self.1)
    }
}

/// A record's tags as the JSON object the hash keeps, written into the command.
struct TagsJson<'a>(&'a std::collections::BTreeMap<String, String>);

impl redis::ToRedisArgs for TagsJson<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        serde_json::to_writer(out.writer_for_next_arg(), self.0).expect("tags serialise");
    }
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

    fn index_key(&self) -> &str {
        &self.index
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    /// `EVALSHA` of the compare-and-set script for one record.
    fn put_cmd(&self, record: &Record) -> redis::Cmd {
        let meta = record.meta();
        // Sized once: the value, the key twice, and the rest (hash, version, tags, …).
        let size = record.value().len()
            + 2 * record.key().as_str().len()
            + self.config.namespace.len()
            + meta.content_type.as_ref().map_or(0, String::len)
            + meta
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>()
            + 128;
        let mut cmd = redis::Cmd::with_capacity(12, size);
        cmd.arg("EVALSHA")
            .arg(self.put.get_hash())
            .arg(2)
            .arg(self.record_key(record.key().as_str()))
            .arg(self.index_key())
            .arg(Shown(meta.version))
            .arg(if meta.tombstone { "1" } else { "0" })
            .arg(meta.content_type.as_deref().unwrap_or(""))
            .arg(if meta.content_type.is_some() {
                "1"
            } else {
                "0"
            })
            .arg(TagsJson(&meta.tags))
            .arg(Shown(meta.checksum))
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

    /// The record stored as `fields` (the hash's fields named by [`FIELDS`], in that
    /// order). The value is moved, not copied.
    pub(crate) fn decode(key: Key, fields: Fields) -> Result<Record> {
        let [v, t, ct, tags, crc, val] = fields;
        let meta = decode_meta(&key, [v, t, ct, tags, crc])?;
        Record::from_parts(key, Bytes::from(val.unwrap_or_default()), meta)
    }
}

/// The metadata of `key` from the first five of [`FIELDS`] (`v`, `t`, `ct`, `tags`,
/// `crc`); every one but `ct` must be there.
fn decode_meta(key: &Key, fields: [Option<Vec<u8>>; 5]) -> Result<Metadata> {
    let [v, t, ct, tags, crc] = fields;
    let corrupt =
        |what: &str| Error::new(ErrorKind::Corrupt, format!("record {key}: invalid {what}"));
    Ok(Metadata {
        version: text(key, "v", &v)?
            .parse()
            .map_err(|_| corrupt("version"))?,
        tombstone: text(key, "t", &t)? == "1",
        content_type: match &ct {
            Some(_) => Some(text(key, "ct", &ct)?.to_owned()),
            None => None,
        },
        tags: serde_json::from_str(text(key, "tags", &tags)?).map_err(|_| corrupt("tags"))?,
        checksum: text(key, "crc", &crc)?
            .parse()
            .map_err(|_| corrupt("checksum"))?,
    })
}

/// The hash fields a read asks for (`HMGET`), in the order of [`Fields`].
pub(crate) const FIELDS: [&str; 6] = ["v", "t", "ct", "tags", "crc", "val"];

/// A record's hash as read: each field of [`FIELDS`], if the hash has it.
pub(crate) type Fields = [Option<Vec<u8>>; 6];

/// Field `name` of the hash of `key`, which must be there and be UTF-8.
fn text<'a>(key: &Key, name: &str, raw: &'a Option<Vec<u8>>) -> Result<&'a str> {
    let raw = raw.as_deref().ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key} has no field '{name}'"),
        )
    })?;
    std::str::from_utf8(raw).map_err(|_| {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key}: field '{name}' is not UTF-8"),
        )
    })
}

/// The fields of an `HMGET` of [`FIELDS`] from its reply, moved out of it; `None` when
/// the hash does not exist (every field nil).
fn fields_of(key: &Key, reply: Value) -> Result<Option<Fields>> {
    let unexpected = |what: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key}: unexpected reply to HMGET: {what}"),
        )
    };
    let items = match reply {
        Value::Array(items) => items,
        other => return Err(unexpected(format!("{other:?}"))),
    };
    if items.len() != FIELDS.len() {
        return Err(unexpected(format!(
            "{} fields for {}",
            items.len(),
            FIELDS.len()
        )));
    }
    let mut fields: Fields = Default::default();
    for (slot, item) in fields.iter_mut().zip(items) {
        *slot = match item {
            Value::Nil => None,
            Value::BulkString(bytes) => Some(bytes),
            Value::ServerError(e) => return Err(map_err(e.into())),
            other => return Err(unexpected(format!("{other:?}"))),
        };
    }
    Ok(fields.iter().any(Option::is_some).then_some(fields))
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
        // HMGET of the known fields: the reply carries no field names, and each field
        // arrives as a buffer of its own, which is moved into the record. The command
        // is sized once and sent without `query_async`'s boxed future and conversions.
        let mut cmd = redis::Cmd::with_capacity(
            2 + FIELDS.len(),
            self.config.namespace.len() + key.as_str().len() + 32,
        );
        cmd.arg("HMGET")
            .arg(self.record_key(key.as_str()))
            .arg(&FIELDS);
        let reply = send(&mut self.conn.clone(), &cmd)
            .await
            .map_err(|e| tag(map_err(e)))?;
        match fields_of(key, reply).map_err(&tag)? {
            None => Ok(None),
            Some(fields) => Self::decode(key.clone(), fields).map(Some).map_err(tag),
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
                .arg(&FIELDS[..5])
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
        for (k, pair) in keys.into_iter().zip(replies.chunks(2)) {
            let fields: Vec<Option<Vec<u8>>> =
                redis::from_redis_value(pair[0].clone()).map_err(|e| tag(parse_err(e)))?;
            if fields[0].is_none() {
                continue; // purged since the index was read
            }
            let size: u64 =
                redis::from_redis_value(pair[1].clone()).map_err(|e| tag(parse_err(e)))?;
            let fields: [Option<Vec<u8>>; 5] = fields.try_into().map_err(|f: Vec<_>| {
                tag(Error::new(
                    ErrorKind::Corrupt,
                    format!("record {k}: HMGET answered {} fields for 5", f.len()),
                ))
            })?;
            // The metadata alone: listings do not fetch values.
            let meta = decode_meta(&k, fields).map_err(&tag)?;
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

    /// The layout the put script leaves: `ct` only while the record has a content type,
    /// and one index entry from the first write until a purge, back with the next write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_put_script_keeps_the_hash_and_its_index_entry_together() {
        let backend = connect(&format!("mux-layout-{}", std::process::id())).await;
        let mut conn = backend.conn.clone();
        let key = Key::new("layout/a").unwrap();
        let (hash, index) = (backend.record_key(key.as_str()), backend.index_key());
        let v = |n: u64| Version::new(n, 0, 1);
        let mut state = async |expect_ct: Option<&str>, indexed: bool| {
            let ct: Option<String> = redis::cmd("HGET")
                .arg(&hash)
                .arg("ct")
                .query_async(&mut conn)
                .await
                .unwrap();
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(index)
                .arg(key.as_str())
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(ct.as_deref(), expect_ct);
            assert_eq!(score.is_some(), indexed);
        };

        let typed = Record::new(key.clone(), "one", v(1)).with_content_type("text/plain");
        assert_eq!(backend.put(&typed).await.unwrap(), PutOutcome::Applied);
        state(Some("text/plain"), true).await;
        // An update without a content type drops `ct`; the entry stays.
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
}
