//! [`PostgresBackend`]: the `Backend` implementation on a PostgreSQL table.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::digest::{DigestChunk, DigestRequest};
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Metadata, Operation, PutOutcome, Record, Result, Version, digest_by_listing,
};

use crate::batcher;
use crate::config::{DEFAULT_MAX_VALUE_SIZE, PostgresConfig, redact};
use crate::connect::Target;
use crate::digest;
use crate::error::{map_err, pool_err};
use crate::schema;
use crate::sql::{Inner, Sql};
use mux_core::batcher::PutBatcher;

/// A backend storing records in a PostgreSQL table.
pub struct PostgresBackend {
    info: BackendInfo,
    config: PostgresConfig,
    inner: Arc<Inner>,
    batcher: PutBatcher,
    /// The server aggregates digests itself (PostgreSQL 14 or later: `bit_xor`).
    native_digest: bool,
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

/// A row's metadata columns (`version`, `tombstone`, `content_type`, `tags`,
/// `checksum`) as metadata; `Corrupt` naming the key and the column when one is invalid.
pub(crate) fn meta_of(
    key: &Key,
    version: &str,
    tombstone: bool,
    content_type: Option<String>,
    tags: serde_json::Value,
    checksum: i64,
) -> Result<Metadata> {
    let corrupt = |what: String| Error::new(ErrorKind::Corrupt, format!("record {key}: {what}"));
    Ok(Metadata {
        version: version_of(version, key.as_str())?,
        tombstone,
        content_type,
        tags: serde_json::from_value(tags).map_err(|e| corrupt(format!("invalid tags: {e}")))?,
        checksum: u32::try_from(checksum)
            .map_err(|_| corrupt(format!("invalid checksum {checksum}")))?,
    })
}

/// The metadata of a `get` or `list` row, whose columns 1 to 5 are `version`,
/// `tombstone`, `content_type`, `tags` and `checksum`.
fn row_meta(key: &Key, row: &tokio_postgres::Row) -> Result<Metadata> {
    meta_of(
        key,
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    )
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
        digest: true,
        max_value_size: Some(DEFAULT_MAX_VALUE_SIZE),
    };

    /// Connects, creates or migrates the table, and starts the put batcher.
    pub async fn connect(name: impl AsRef<str>, config: PostgresConfig) -> Result<PostgresBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        schema::check_table_name(&config.table).map_err(tag)?;
        let pool = Target::new(&config.url, &config.tls)
            .and_then(|target| target.pool(config.pool_size))
            .map_err(tag)?;
        let client = pool.get().await.map_err(|e| {
            tag(pool_err(e).context(format!("cannot connect to {}", redact(&config.url))))
        })?;
        schema::migrate(&client, &config.table).await.map_err(tag)?;
        let server_version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .await
            .map_err(|e| tag(map_err(e)))?
            .get(0);
        drop(client);
        let native_digest = server_version >= digest::MIN_SERVER_VERSION;
        let capability = Capability {
            digest: native_digest,
            ..Self::CAPABILITY
        };
        let inner = Arc::new(Inner {
            pool,
            sql: Sql::new(&config.table),
        });
        let batcher = {
            let inner = inner.clone();
            PutBatcher::start(
                "postgres",
                config.max_batch,
                config.batch_concurrency,
                move |records: Vec<Record>| {
                    let inner = inner.clone();
                    async move { batcher::upsert_batch(&inner, &records).await }
                },
            )
        };
        Ok(PostgresBackend {
            info: BackendInfo::new(name, "postgres", capability),
            config,
            inner,
            batcher,
            native_digest,
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
        let meta = row_meta(key, &row).map_err(&tag)?;
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
            let meta = row_meta(&key, row).map_err(&tag)?;
            page.entries.push(ListEntry {
                meta,
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

    /// Native on PostgreSQL 14 or later: one aggregate statement, one row per chunk
    /// (see the `digest` module); the listing-based default on older servers.
    async fn digest(&self, request: &DigestRequest) -> Result<Vec<DigestChunk>> {
        if !self.native_digest {
            return digest_by_listing(self, request).await;
        }
        let tag = self.tag(Operation::Digest);
        request.check().map_err(&tag)?;
        digest::digest(&self.inner, &self.config.table, request)
            .await
            .map_err(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsMode;

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
        // This store keeps no history: only the history cases may skip.
        assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
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
