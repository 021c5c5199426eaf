//! # mux-postgres
//!
//! A mux [`Backend`] on PostgreSQL (tokio-postgres with a deadpool pool).
//!
//! ## Layout (readable with `psql`)
//! One table (default `mux_records`):
//!
//! | column | type | |
//! |---|---|---|
//! | `key` | `text COLLATE "C"` primary key | byte order, the order every mux store lists in |
//! | `value` | `bytea` | the value, exactly |
//! | `version` | `text COLLATE "C"` | fixed-width hex: compares like the versions |
//! | `tombstone` | `boolean` | |
//! | `content_type` | `text` | null when none |
//! | `tags` | `jsonb` | |
//! | `checksum` | `bigint` | CRC-32 of the value |
//! | `updated_at` | `timestamptz` | |
//!
//! A conditional write is one statement (`INSERT … ON CONFLICT (key) DO UPDATE … WHERE
//! stored version < new version`). `put_batch` is one round trip (arrays + `unnest`).
//! Concurrent single `put`s are batched transparently: whatever is queued while the pool
//! is busy goes out together, so many callers share round trips.
#![deny(missing_docs)]

mod batcher;
mod intent_log;
mod schema;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Metadata, Operation, PutOutcome, Record, Result, Version,
};
use tokio_postgres::NoTls;

pub use intent_log::PostgresIntentLog;
pub use schema::SCHEMA_VERSION;

/// The default largest value, in bytes (64 MiB; `bytea` allows 1 GiB).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

/// How to reach PostgreSQL and where to keep records.
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// A connection URL (`postgres://user:password@host:port/db`) or key-value string.
    pub url: String,
    /// The table holding the records (letters, digits and `_`).
    pub table: String,
    /// The most connections in the pool.
    pub pool_size: usize,
    /// The most single puts sent together by the transparent batcher.
    pub max_batch: usize,
    /// How many batches of single puts may be in flight at once. Fewer means larger
    /// batches (fewer round trips and commits) under load.
    pub batch_concurrency: usize,
    /// Whether to use TLS (rustls).
    pub tls: TlsMode,
}

/// TLS for the connections to PostgreSQL (rustls, ring).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS required; the server certificate is verified against `ca_file` (PEM), or the
    /// Mozilla root certificates when `None`, and must name the host connected to.
    Require {
        /// PEM file of the certificate authorities to trust.
        ca_file: Option<std::path::PathBuf>,
    },
}

impl PostgresConfig {
    /// A config for `url`: table `mux_records`, 16 connections, batches of up to 256
    /// single puts with one batch in flight (larger batches beat parallel ones when the
    /// server is CPU-bound; raise it for a distant server).
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            table: "mux_records".into(),
            pool_size: 16,
            max_batch: 256,
            batch_concurrency: 1,
            tls: TlsMode::Disable,
        }
    }

    /// A config from separate fields instead of a URL.
    pub fn from_fields(
        host: &str,
        port: u16,
        user: &str,
        password: Option<&str>,
        dbname: &str,
    ) -> PostgresConfig {
        // Key-value form; values are single-quoted with `\` and `'` escaped.
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut url = format!(
            "host={} port={port} user={} dbname={}",
            q(host),
            q(user),
            q(dbname)
        );
        if let Some(p) = password {
            url.push_str(&format!(" password={}", q(p)));
        }
        PostgresConfig::new(url)
    }

    /// Sets the table.
    pub fn with_table(mut self, table: impl Into<String>) -> PostgresConfig {
        self.table = table.into();
        self
    }

    /// Sets the TLS mode.
    pub fn with_tls(mut self, tls: TlsMode) -> PostgresConfig {
        self.tls = tls;
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, size: usize) -> PostgresConfig {
        self.pool_size = size;
        self
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => match url.find("password=") {
            // Key-value form: hide everything from the password on (quoting makes the
            // end of the value hard to find safely).
            Some(at) => format!("{}password=***", &url[..at]),
            None => url.to_owned(),
        },
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("max_batch", &self.max_batch)
            .field("batch_concurrency", &self.batch_concurrency)
            .field("tls", &self.tls)
            .finish()
    }
}

pub(crate) fn map_err(e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let kind = match e.code() {
        None if e.is_closed() => ErrorKind::Unavailable,
        None => ErrorKind::Unavailable,
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            ErrorKind::Conflict
        }
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE || *c == SqlState::INVALID_PASSWORD => {
            ErrorKind::PermissionDenied
        }
        Some(c) if *c == SqlState::PROGRAM_LIMIT_EXCEEDED => ErrorKind::TooLarge,
        Some(c)
            if c.code().starts_with("08")
                || c.code().starts_with("57")
                || c.code().starts_with("53") =>
        {
            ErrorKind::Unavailable
        }
        Some(c) if c.code().starts_with("22") => ErrorKind::InvalidInput,
        Some(_) => ErrorKind::Internal,
    };
    let temporary = matches!(kind, ErrorKind::Unavailable | ErrorKind::Conflict);
    let err = Error::new(kind, "postgres error").with_source(e);
    if temporary { err.temporary() } else { err }
}

pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => map_err(e),
        deadpool_postgres::PoolError::Timeout(_) => {
            Error::new(ErrorKind::Timeout, "no pooled connection in time")
        }
        other => {
            Error::new(ErrorKind::Unavailable, format!("connection pool: {other}")).temporary()
        }
    }
}

/// A rustls connector trusting `ca_file` (PEM) or the Mozilla roots.
fn rustls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                Error::invalid_input(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::invalid_input(format!("bad certificate in {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::invalid_input(format!("unusable certificate in {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

pub(crate) struct Sql {
    pub(crate) upsert: String,
    pub(crate) upsert_batch: String,
    pub(crate) get: String,
    pub(crate) list: String,
    pub(crate) purge: String,
}

impl Sql {
    fn new(t: &str) -> Sql {
        let set = "value = EXCLUDED.value, version = EXCLUDED.version, tombstone = EXCLUDED.tombstone, \
                   content_type = EXCLUDED.content_type, tags = EXCLUDED.tags, checksum = EXCLUDED.checksum, \
                   updated_at = now()";
        Sql {
            upsert: format!(
                "WITH up AS (INSERT INTO {t} AS t (key, value, version, tombstone, content_type, tags, checksum) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (key) DO UPDATE SET {set} WHERE t.version < EXCLUDED.version RETURNING 1) \
                 SELECT (SELECT count(*) FROM up)::int4, (SELECT version FROM {t} WHERE key = $1)"
            ),
            upsert_batch: format!(
                "WITH input AS (SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bool[], $5::text[], $6::jsonb[], $7::int8[]) \
                   AS i(key, value, version, tombstone, content_type, tags, checksum)), \
                 up AS (INSERT INTO {t} AS t (key, value, version, tombstone, content_type, tags, checksum) \
                   SELECT key, value, version, tombstone, content_type, tags, checksum FROM input \
                   ON CONFLICT (key) DO UPDATE SET {set} WHERE t.version < EXCLUDED.version RETURNING key) \
                 SELECT i.key, (i.key IN (SELECT key FROM up)), s.version \
                 FROM input i LEFT JOIN {t} s ON s.key = i.key"
            ),
            get: format!(
                "SELECT value, version, tombstone, content_type, tags, checksum FROM {t} WHERE key = $1"
            ),
            list: format!(
                "SELECT key, version, tombstone, content_type, tags, checksum, octet_length(value)::int8 FROM {t} \
                 WHERE key >= $1 AND ($2::text IS NULL OR key < $2) AND ($3::text IS NULL OR key > $3) \
                 AND (($4 AND starts_with(key, $5)) OR (NOT $4 AND (key = $5 OR starts_with(key, $5 || '/')))) \
                 ORDER BY key LIMIT $6"
            ),
            purge: format!("DELETE FROM {t} WHERE key = $1 AND version <= $2"),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) sql: Sql,
}

/// A backend storing records in a PostgreSQL table.
pub struct PostgresBackend {
    info: BackendInfo,
    config: PostgresConfig,
    inner: Arc<Inner>,
    batcher: batcher::Batcher,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("name", &self.info.name)
            .field("config", &self.config)
            .finish()
    }
}

fn version_of(text: &str, key: &str) -> Result<Version> {
    text.parse().map_err(|e: Error| {
        Error::new(ErrorKind::Corrupt, format!("record {key}: {}", e.message()))
    })
}

impl PostgresBackend {
    /// The capability of a PostgreSQL backend.
    pub const CAPABILITY: Capability = Capability {
        list: true,
        batch: true,
        atomic_conditional_write: true,
        history: false,
        tags: true,
        content_type: true,
        purge: true,
        durable: true,
        max_value_size: Some(DEFAULT_MAX_VALUE_SIZE),
    };

    /// Connects, creates or migrates the table, and starts the put batcher.
    pub async fn connect(name: impl AsRef<str>, config: PostgresConfig) -> Result<PostgresBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        schema::check_table_name(&config.table).map_err(tag)?;
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| {
            tag(Error::invalid_input(format!(
                "invalid PostgreSQL URL {}: {e}",
                redact(&config.url)
            )))
        })?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &config.tls {
            TlsMode::Disable => Manager::from_config(pg, NoTls, manager_config),
            TlsMode::Require { ca_file } => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = rustls_connector(ca_file.as_deref()).map_err(tag)?;
                Manager::from_config(pg, tls, manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|e| tag(Error::invalid_input(format!("cannot build the pool: {e}"))))?;
        let client = pool.get().await.map_err(|e| {
            tag(pool_err(e).context(format!("cannot connect to {}", redact(&config.url))))
        })?;
        schema::migrate(&client, &config.table).await.map_err(tag)?;
        drop(client);
        let inner = Arc::new(Inner {
            pool,
            sql: Sql::new(&config.table),
        });
        let batcher = batcher::Batcher::start(
            inner.clone(),
            config.max_batch.max(1),
            config.pool_size.max(1),
        );
        Ok(PostgresBackend {
            info: BackendInfo::new(name, "postgres", Self::CAPABILITY),
            config,
            inner,
            batcher,
        })
    }

    /// One conditional upsert, not batched (what the batcher saves round trips on).
    pub async fn put_unbatched(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| self.tag(Operation::Put)(pool_err(e)))?;
        let stmt = client
            .prepare_cached(&self.inner.sql.upsert)
            .await
            .map_err(|e| self.tag(Operation::Put)(map_err(e)))?;
        let m = record.meta();
        let tags = serde_json::to_value(&m.tags).expect("tags serialise");
        let row = client
            .query_one(
                &stmt,
                &[
                    &record.key().as_str(),
                    &record.value().as_ref(),
                    &m.version.to_string(),
                    &m.tombstone,
                    &m.content_type,
                    &tags,
                    &i64::from(m.checksum),
                ],
            )
            .await
            .map_err(|e| self.tag(Operation::Put)(map_err(e)))?;
        let applied: i32 = row.get(0);
        if applied == 1 {
            return Ok(PutOutcome::Applied);
        }
        let stored: Option<String> = row.get(1);
        match stored {
            Some(v) => Ok(PutOutcome::Superseded {
                stored: version_of(&v, record.key().as_str())?,
            }),
            // A concurrent writer committed after this statement's snapshot: read again.
            None => match self.get(record.key()).await? {
                Some(r) => Ok(PutOutcome::decide(Some(r.version()), record.version())),
                None => Err(Error::new(ErrorKind::Conflict, "concurrent write; retry").temporary()),
            },
        }
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        self.batcher
            .put(record.clone())
            .await
            .map_err(self.tag(Operation::Put))
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let tag = self.tag(Operation::Get);
        let client = self.inner.pool.get().await.map_err(|e| tag(pool_err(e)))?;
        let stmt = client
            .prepare_cached(&self.inner.sql.get)
            .await
            .map_err(|e| tag(map_err(e)))?;
        let Some(row) = client
            .query_opt(&stmt, &[&key.as_str()])
            .await
            .map_err(|e| tag(map_err(e)))?
        else {
            return Ok(None);
        };
        let value: Vec<u8> = row.get(0);
        let tags: serde_json::Value = row.get(4);
        let meta = Metadata {
            version: version_of(row.get(1), key.as_str()).map_err(&tag)?,
            tombstone: row.get(2),
            content_type: row.get(3),
            tags: serde_json::from_value(tags).map_err(|e| {
                tag(Error::new(
                    ErrorKind::Corrupt,
                    format!("record {key}: invalid tags: {e}"),
                ))
            })?,
            checksum: u32::try_from(row.get::<_, i64>(5)).map_err(|_| {
                tag(Error::new(
                    ErrorKind::Corrupt,
                    format!("record {key}: invalid checksum"),
                ))
            })?,
        };
        Record::from_parts(key.clone(), Bytes::from(value), meta)
            .map(Some)
            .map_err(tag)
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let tag = self.tag(Operation::List);
        let limit = request.effective_limit().map_err(&tag)?;
        let client = self.inner.pool.get().await.map_err(|e| tag(pool_err(e)))?;
        let stmt = client
            .prepare_cached(&self.inner.sql.list)
            .await
            .map_err(|e| tag(map_err(e)))?;
        let prefix = request.prefix.as_str();
        let below_only = prefix.is_empty() || prefix.ends_with('/');
        let rows = client
            .query(
                &stmt,
                &[
                    &request.prefix.scan_start(),
                    &request.prefix.scan_end(),
                    &request.cursor.as_ref().map(Key::as_str),
                    &below_only,
                    &prefix,
                    &((limit + 1) as i64),
                ],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        let mut page = ListPage::default();
        for row in rows.iter().take(limit) {
            let key: &str = row.get(0);
            let key = Key::new(key)
                .map_err(|e| tag(Error::new(ErrorKind::Corrupt, e.message().to_owned())))?;
            let tags: serde_json::Value = row.get(4);
            page.entries.push(ListEntry {
                meta: Metadata {
                    version: version_of(row.get(1), key.as_str()).map_err(&tag)?,
                    tombstone: row.get(2),
                    content_type: row.get(3),
                    tags: serde_json::from_value(tags).map_err(|e| {
                        tag(Error::new(
                            ErrorKind::Corrupt,
                            format!("record {key}: invalid tags: {e}"),
                        ))
                    })?,
                    checksum: row.get::<_, i64>(5) as u32,
                },
                size: row.get::<_, i64>(6) as u64,
                key,
            });
        }
        if rows.len() > limit {
            page.next_cursor = page.entries.last().map(|e| e.key.clone());
        }
        Ok(page)
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.batcher
            .put(Record::tombstone(key.clone(), version))
            .await
            .map_err(self.tag(Operation::Delete))
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        for r in records {
            self.info.check_value_size(r, Operation::PutBatch)?;
        }
        batcher::upsert_batch(&self.inner, records)
            .await
            .map_err(self.tag(Operation::PutBatch))
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let tag = self.tag(Operation::Purge);
        let client = self.inner.pool.get().await.map_err(|e| tag(pool_err(e)))?;
        let stmt = client
            .prepare_cached(&self.inner.sql.purge)
            .await
            .map_err(|e| tag(map_err(e)))?;
        let n = client
            .execute(&stmt, &[&key.as_str(), &up_to.to_string()])
            .await
            .map_err(|e| tag(map_err(e)))?;
        Ok(n > 0)
    }

    async fn health(&self) -> Result<()> {
        let tag = self.tag(Operation::Health);
        let client = self.inner.pool.get().await.map_err(|e| tag(pool_err(e)))?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| tag(map_err(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        std::env::var("MUX_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// The conformance suite against the PostgreSQL at `MUX_POSTGRES_URL`. Fails when it
    /// cannot connect: PostgreSQL is a required backend (`cargo xtask services up`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let backend = PostgresBackend::connect(
            "postgres",
            PostgresConfig::new(url()).with_table("mux_conformance"),
        )
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required for this test: {e}", url()));
        let report = mux_conformance::run(Arc::new(backend)).await;
        println!("{report}");
        assert!(report.all_passed(), "{report}");
        assert_eq!(report.skipped(), 0, "{report}");
    }

    #[tokio::test]
    async fn config_from_fields_connects() {
        let config = PostgresConfig::from_fields(
            "127.0.0.1",
            5432,
            "postgres",
            Some("it's \\ ok"),
            "postgres",
        );
        assert!(!format!("{config:?}").contains("ok'"), "{config:?}");
        let b = PostgresBackend::connect("pg", config.with_table("mux_conformance"))
            .await
            .unwrap();
        b.health().await.unwrap();
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!(
            "{:?}",
            PostgresConfig::new("postgres://app:s3cret@db:5432/x")
        );
        assert!(
            !shown.contains("s3cret") && shown.contains("app:***@db"),
            "{shown}"
        );
        let shown = format!(
            "{:?}",
            PostgresConfig::new("host=db user=app password=s3cret")
        );
        assert!(
            !shown.contains("s3cret") && shown.contains("password=***"),
            "{shown}"
        );
    }

    /// TLS against the local server: its certificate (Debian's snakeoil, for
    /// `localhost`) is trusted through `MUX_POSTGRES_TLS_CA`; an unknown CA is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_connects_and_verifies_the_server() {
        let ca = std::env::var("MUX_POSTGRES_TLS_CA")
            .unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".into());
        assert!(
            std::path::Path::new(&ca).exists(),
            "the server CA {ca} is required (cargo xtask services up --install sets up TLS)"
        );
        let url = "postgres://postgres@localhost:5432/postgres";
        let tls = TlsMode::Require {
            ca_file: Some(ca.into()),
        };
        let backend = PostgresBackend::connect(
            "pg-tls",
            PostgresConfig::new(url).with_table("mux_tls").with_tls(tls),
        )
        .await
        .expect("TLS connection to the local PostgreSQL");
        backend.health().await.unwrap();
        let client = backend.inner.pool.get().await.unwrap();
        let on: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(on, "the connection is encrypted");
        // The Mozilla roots do not include the snakeoil certificate: refused.
        let err = PostgresBackend::connect(
            "pg-tls",
            PostgresConfig::new(url)
                .with_table("mux_tls")
                .with_tls(TlsMode::Require { ca_file: None }),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_table_names_are_refused() {
        let e = PostgresBackend::connect(
            "pg",
            PostgresConfig::new(url()).with_table("x; drop table y"),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("table name"), "{e}");
    }
}

#[cfg(test)]
mod intent_log_tests {
    use std::time::Duration;

    use super::*;
    use mux_core::IntentLog;

    fn url() -> String {
        std::env::var("MUX_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn log(prefix: &str, node: &str, lease: Duration) -> PostgresIntentLog {
        PostgresIntentLog::connect(&url(), prefix, node, lease)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is required for this test: {e}", url()))
    }

    async fn reset(prefix: &str) {
        let (client, conn) = tokio_postgres::connect(&url(), NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {prefix}_intent_owed, {prefix}_intents, {prefix}_dead_letters"
            ))
            .await
            .unwrap();
    }

    fn record(i: u32) -> Record {
        Record::new(
            Key::new(format!("k{i}")).unwrap(),
            format!("v{i}"),
            Version::new(1, i, 1),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_share_hints_and_take_over_a_dead_nodes_entries() {
        let prefix = format!("mux_il_{}", std::process::id());
        reset(&prefix).await;
        let owed: Vec<Arc<str>> = vec![Arc::from("x"), Arc::from("y")];
        // Node A appends; its fresh claims keep node B away.
        let a = log(&prefix, "node-a", Duration::from_secs(60)).await;
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(a.append(&record(i), &owed).await.unwrap());
        }
        a.complete(ids[0], "x").await.unwrap();
        a.complete(ids[0], "y").await.unwrap();
        let b = log(&prefix, "node-b", Duration::from_secs(60)).await;
        assert!(
            b.pending().await.unwrap().is_empty(),
            "A's entries are held by A"
        );

        // A dies; with a short lease, B takes over everything A left: 9 entries.
        let b = log(&prefix, "node-b", Duration::ZERO).await;
        let taken = b.pending().await.unwrap();
        assert_eq!(taken.len(), 9);
        assert_eq!(taken[0].owed, ["x", "y"]);
        assert_eq!(taken[0].record, record(1));

        // Two nodes claiming at once split the work: no entry is handed to both.
        // (B's claims expire after the 200 ms lease; a fresh claim by C or D does not.)
        tokio::time::sleep(Duration::from_millis(300)).await;
        let c = log(&prefix, "node-c", Duration::from_millis(200)).await;
        let d = log(&prefix, "node-d", Duration::from_millis(200)).await;
        let (pc, pd) = tokio::join!(c.pending(), d.pending());
        let (pc, pd) = (pc.unwrap(), pd.unwrap());
        let mut seen: Vec<(u64, String)> = pc
            .iter()
            .chain(&pd)
            .flat_map(|p| p.owed.iter().map(move |o| (p.id, o.clone())))
            .collect();
        let n = seen.len();
        assert_eq!(
            n, 18,
            "the 9 entries B held, each owed to x and y, all taken over once"
        );
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "no (entry, backend) claimed twice");

        // Dead letters: a move releases the owed part; take removes it.
        for p in pc.iter().chain(&pd) {
            for o in &p.owed {
                a.complete(p.id, o).await.unwrap();
            }
        }
        let e = a.append(&record(99), &owed[..1]).await.unwrap();
        let dl = a
            .dead_letter(e, "x", &record(99), "refused", 2)
            .await
            .unwrap();
        let dead = a.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].id, dead[0].backend.as_str(), dead[0].attempts),
            (dl, "x", 2)
        );
        assert_eq!(dead[0].record, record(99));
        let zero = log(&prefix, "node-z", Duration::ZERO).await;
        assert!(
            zero.pending().await.unwrap().is_empty(),
            "everything completed or dead-lettered"
        );
        assert!(a.take_dead_letter(dl).await.unwrap().is_some());
        assert!(a.dead_letters().await.unwrap().is_empty());
        reset(&prefix).await;
    }
}
