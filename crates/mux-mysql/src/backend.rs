//! [`MysqlBackend`]: the `Backend` implementation on a MariaDB or MySQL table.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Metadata, Operation, PutOutcome, Record, Result, Version,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Value};

use crate::batch;
use crate::config::{MysqlConfig, redact};
use crate::error::{is_deadlock, map_err};
use crate::schema;
use crate::sql::{Sql, list_ranges};

/// What a row needs besides the value, in bytes: the key (up to 1 KiB), the tags' JSON
/// (up to 32 tags of 128 + 512 bytes, escaped), the other columns and the protocol's
/// framing. A value may use the rest of the server's `max_allowed_packet`.
pub const ROW_OVERHEAD: usize = 64 << 10;

/// The largest value [`crate::info`] declares before connecting: MariaDB's default
/// `max_allowed_packet` (16 MiB) less [`ROW_OVERHEAD`]. A connected backend declares
/// what its server allows.
pub const DEFAULT_MAX_VALUE_SIZE: usize = (16 << 20) - ROW_OVERHEAD;

/// How often a statement InnoDB rolled back to break a deadlock is run again before
/// the deadlock is reported (as a temporary error).
pub(crate) const DEADLOCK_ATTEMPTS: usize = 3;

/// A backend storing records in a MariaDB or MySQL table.
pub struct MysqlBackend {
    pub(crate) info: BackendInfo,
    config: MysqlConfig,
    pub(crate) pool: Pool,
    pub(crate) sql: Sql,
    max_allowed_packet: usize,
}

impl fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlBackend")
            .field("name", &self.info.name)
            .field("config", &self.config)
            .field("max_allowed_packet", &self.max_allowed_packet)
            .finish()
    }
}

impl Drop for MysqlBackend {
    fn drop(&mut self) {
        // Say goodbye to the server (COM_QUIT) instead of dropping the sockets.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            runtime.spawn(async move {
                let _ = pool.disconnect().await;
            });
        }
    }
}

/// The stored binary form of a version as a `Version`.
pub(crate) fn version_of(bytes: &[u8], key: &[u8]) -> Result<Version> {
    Version::from_bytes(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "record {}: invalid version: {}",
                String::from_utf8_lossy(key),
                e.message()
            ),
        )
    })
}

fn corrupt(key: &str, what: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Corrupt, format!("record {key}: {what}"))
}

/// The parameters of one written row, in the order of `sql::WRITE_COLUMNS`.
pub(crate) fn row_params(record: &Record, out: &mut Vec<Value>) {
    let m = record.meta();
    out.push(Value::Bytes(record.key().as_str().as_bytes().to_vec()));
    out.push(Value::Bytes(record.value().to_vec()));
    out.push(Value::Bytes(m.version.to_bytes().to_vec()));
    out.push(Value::from(m.tombstone));
    out.push(Value::from(m.content_type.as_deref()));
    out.push(Value::Bytes(
        serde_json::to_vec(&m.tags).expect("tags serialise"),
    ));
    out.push(Value::from(m.checksum));
}

impl MysqlBackend {
    /// The capability of a MariaDB or MySQL backend whose values may be `max_value_size`
    /// bytes.
    pub const fn capability(max_value_size: usize) -> Capability {
        Capability {
            list: true,
            batch: true,
            atomic_conditional_write: true,
            history: false,
            tags: true,
            content_type: true,
            purge: true,
            durable: true,
            digest: false,
            max_value_size: Some(max_value_size),
        }
    }

    /// Connects, creates or migrates the table (under a server lock), and reads the
    /// server's `max_allowed_packet`.
    pub async fn connect(name: impl AsRef<str>, config: MysqlConfig) -> Result<MysqlBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        schema::check_table_name(&config.table).map_err(tag)?;
        let opts = options(&config).map_err(tag)?;
        let cannot_connect = |e: mysql_async::Error| {
            tag(map_err(e).context(format!("cannot connect to {}", redact(&config.url))))
        };
        // The migration runs on a connection of its own, so its lock dies with it.
        let mut conn = Conn::new(opts.clone()).await.map_err(cannot_connect)?;
        schema::migrate(&mut conn, &config.table)
            .await
            .map_err(tag)?;
        let packet: Option<u64> = conn
            .query_first("SELECT @@max_allowed_packet")
            .await
            .map_err(|e| tag(map_err(e)))?;
        let _ = conn.disconnect().await;
        let max_allowed_packet = packet.map_or(16 << 20, |p| p as usize);
        let max_value_size = max_allowed_packet.saturating_sub(ROW_OVERHEAD).max(1);
        let pool = Pool::new(opts);
        Ok(MysqlBackend {
            info: BackendInfo::new(name, crate::KIND, Self::capability(max_value_size)),
            sql: Sql::new(&config.table),
            config,
            pool,
            max_allowed_packet,
        })
    }

    /// The configuration this backend was opened with.
    pub fn config(&self) -> &MysqlConfig {
        &self.config
    }

    /// The server's `max_allowed_packet`, read at connect.
    pub fn max_allowed_packet(&self) -> usize {
        self.max_allowed_packet
    }

    /// The connection pool (for tools and tests that talk to the table directly).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    pub(crate) async fn conn(&self) -> Result<Conn> {
        self.pool.get_conn().await.map_err(map_err)
    }

    /// One conditional upsert; its affected-row count says what happened (1: inserted,
    /// 2: updated, 0: the guard kept the stored row).
    async fn put_one(&self, record: &Record) -> Result<PutOutcome> {
        let mut conn = self.conn().await?;
        let mut attempt = 1;
        loop {
            let mut params = Vec::with_capacity(crate::sql::PARAMS_PER_ROW);
            row_params(record, &mut params);
            match conn
                .exec_drop(&self.sql.upsert, mysql_async::Params::Positional(params))
                .await
            {
                Ok(()) => break,
                Err(e) if is_deadlock(&e) && attempt < DEADLOCK_ATTEMPTS => attempt += 1,
                Err(e) => return Err(map_err(e)),
            }
        }
        match conn.affected_rows() {
            1 | 2 => Ok(PutOutcome::Applied),
            0 => {
                let key = record.key().as_str().as_bytes();
                let stored: Option<Vec<u8>> = conn
                    .exec_first(&self.sql.version, (key,))
                    .await
                    .map_err(map_err)?;
                match stored.map(|s| version_of(&s, key)).transpose()? {
                    Some(stored) if stored >= record.version() => {
                        Ok(PutOutcome::Superseded { stored })
                    }
                    // Purged (and perhaps written again lower) between the two
                    // statements: the write neither landed nor lost to a stored record.
                    _ => Err(Error::new(
                        ErrorKind::Conflict,
                        "the record was purged while this write was refused; retry",
                    )
                    .temporary()),
                }
            }
            n => Err(Error::internal(format!(
                "a one-row upsert reported {n} affected rows (is CLIENT_FOUND_ROWS on?)"
            ))),
        }
    }
}

/// mysql_async's options for `config`: its pool size and TLS; `CLIENT_FOUND_ROWS` off.
fn options(config: &MysqlConfig) -> Result<mysql_async::Opts> {
    let url = match config.url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => config.url.clone(),
    };
    let parsed = mysql_async::Opts::from_url(&url).map_err(|e| {
        Error::invalid_input(format!(
            "invalid MySQL URL {}: {e} (expected mysql://user:password@host:port/database)",
            redact(&config.url)
        ))
    })?;
    if parsed.db_name().is_none_or(str::is_empty) {
        return Err(Error::invalid_input(format!(
            "the MySQL URL {} names no database: add /<database> after the host",
            redact(&config.url)
        )));
    }
    let pool_size = config.pool_size.max(1);
    let pool = mysql_async::PoolOpts::default()
        .with_constraints(mysql_async::PoolConstraints::new(0, pool_size).expect("0 <= pool size"))
        // Resetting each connection as it returns to the pool costs a round trip and
        // drops its prepared statements; mux leaves no session state behind.
        .with_reset_connection(false);
    let mut builder = mysql_async::OptsBuilder::from_opts(parsed)
        .pool_opts(pool)
        // Affected rows must count changed rows, not matched ones: that is how a
        // superseded write (0) is told from an applied one (1 or 2).
        .client_found_rows(false);
    if let Some(ssl) = crate::tls::ssl_opts(&config.tls)? {
        builder = builder.ssl_opts(ssl).prefer_socket(false);
    }
    Ok(builder.into())
}

#[async_trait]
impl Backend for MysqlBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        self.put_one(record).await.map_err(self.tag(Operation::Put))
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let tag = self.tag(Operation::Get);
        let mut conn = self.conn().await.map_err(&tag)?;
        type Row = (Vec<u8>, Vec<u8>, bool, Option<String>, String, u32);
        let row: Option<Row> = conn
            .exec_first(&self.sql.get, (key.as_str().as_bytes(),))
            .await
            .map_err(|e| tag(map_err(e)))?;
        let Some((value, version, tombstone, content_type, tags, checksum)) = row else {
            return Ok(None);
        };
        let meta = Metadata {
            version: version_of(&version, key.as_str().as_bytes()).map_err(&tag)?,
            tombstone,
            content_type,
            tags: serde_json::from_str(&tags)
                .map_err(|e| tag(corrupt(key.as_str(), format_args!("invalid tags: {e}"))))?,
            checksum,
        };
        Record::from_parts(key.clone(), Bytes::from(value), meta)
            .map(Some)
            .map_err(tag)
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let tag = self.tag(Operation::List);
        let limit = request.effective_limit().map_err(&tag)?;
        let [(from1, to1), (from2, to2)] = list_ranges(&request.prefix, request.cursor.as_ref());
        let mut conn = self.conn().await.map_err(&tag)?;
        type Row = (Vec<u8>, Vec<u8>, bool, Option<String>, String, u32, u64);
        let rows: Vec<Row> = conn
            .exec(&self.sql.list, (from1, to1, from2, to2, limit as u64 + 1))
            .await
            .map_err(|e| tag(map_err(e)))?;
        let more = rows.len() > limit;
        let mut page = ListPage::default();
        for (key, version, tombstone, content_type, tags, checksum, size) in
            rows.into_iter().take(limit)
        {
            let version = version_of(&version, &key).map_err(&tag)?;
            let key = String::from_utf8(key)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Corrupt,
                        format!("a stored key is not UTF-8: {e}"),
                    )
                })
                .and_then(Key::new)
                .map_err(|e| tag(Error::new(ErrorKind::Corrupt, e.message().to_owned())))?;
            page.entries.push(ListEntry {
                meta: Metadata {
                    version,
                    tombstone,
                    content_type,
                    tags: serde_json::from_str(&tags).map_err(|e| {
                        tag(corrupt(key.as_str(), format_args!("invalid tags: {e}")))
                    })?,
                    checksum,
                },
                size,
                key,
            });
        }
        if more {
            page.next_cursor = page.entries.last().map(|e| e.key.clone());
        }
        Ok(page)
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.put_one(&Record::tombstone(key.clone(), version))
            .await
            .map_err(self.tag(Operation::Delete))
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        for r in records {
            self.info.check_value_size(r, Operation::PutBatch)?;
        }
        let tag = self.tag(Operation::PutBatch);
        match records {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![self.put_one(one).await.map_err(tag)?]),
            _ => batch::put_batch(self, records).await.map_err(tag),
        }
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let tag = self.tag(Operation::Purge);
        let mut conn = self.conn().await.map_err(&tag)?;
        conn.exec_drop(
            &self.sql.purge,
            (key.as_str().as_bytes(), up_to.to_bytes().to_vec()),
        )
        .await
        .map_err(|e| tag(map_err(e)))?;
        Ok(conn.affected_rows() > 0)
    }

    async fn health(&self) -> Result<()> {
        let tag = self.tag(Operation::Health);
        let mut conn = self.conn().await.map_err(&tag)?;
        conn.ping().await.map_err(|e| tag(map_err(e)))
    }
}
