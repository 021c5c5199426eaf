//! [`ScyllaBackend`]: the `Backend` implementation over the statement layer.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListPage, ListRequest, Operation,
    PutOutcome, Record, Result, Version,
};

use crate::config::ScyllaConfig;
use crate::cql::Cql;
use crate::layout::{Row, parse_version, partition_of};

/// How many partition names a backend remembers as registered in the index; past it
/// the set starts again (registering is idempotent, only a write more).
pub(crate) const INDEX_CACHE: usize = 65_536;

/// How often `put` goes round insert-if-absent / update-if-older when a purge keeps
/// removing the row between the two, before reporting a temporary conflict.
pub(crate) const WRITE_ROUNDS: usize = 8;

/// A backend storing records in a ScyllaDB or Cassandra table.
pub struct ScyllaBackend {
    pub(crate) info: BackendInfo,
    pub(crate) config: ScyllaConfig,
    pub(crate) cql: Arc<dyn Cql>,
    registered: Mutex<HashSet<String>>,
}

impl fmt::Debug for ScyllaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaBackend")
            .field("name", &self.info.name)
            .field("config", &self.config)
            .field("cql", &self.cql)
            .finish()
    }
}

impl ScyllaBackend {
    /// The capability of a ScyllaDB backend whose values may be `max_value_size` bytes.
    pub const fn capability(max_value_size: usize) -> Capability {
        Capability {
            list: true,
            batch: false,
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

    /// Connects to the cluster, checks (or, with `create_schema`, creates) the keyspace
    /// and the table, and prepares the statements.
    pub async fn connect(name: impl AsRef<str>, config: ScyllaConfig) -> Result<ScyllaBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        config.validate().map_err(tag)?;
        let cql = crate::session::connect(&config).await.map_err(tag)?;
        Ok(ScyllaBackend::with_cql(name, config, Arc::new(cql)))
    }

    /// A backend over any implementation of the statement layer (the in-memory
    /// [`Model`](crate::testing::Model) in tests). The config is used for its table
    /// layout (`partition_depth`), sizes and concurrency; nothing connects.
    pub(crate) fn with_cql(name: &str, config: ScyllaConfig, cql: Arc<dyn Cql>) -> ScyllaBackend {
        ScyllaBackend {
            info: crate::info(name, &config),
            config,
            cql,
            registered: Mutex::new(HashSet::new()),
        }
    }

    /// The configuration this backend was opened with.
    pub fn config(&self) -> &ScyllaConfig {
        &self.config
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    /// Adds `partition` to the partition index unless this backend did already.
    async fn register(&self, partition: &str) -> Result<()> {
        if self.registered.lock().expect("lock").contains(partition) {
            return Ok(());
        }
        self.cql.index(partition).await?;
        let mut set = self.registered.lock().expect("lock");
        if set.len() >= INDEX_CACHE {
            set.clear();
        }
        set.insert(partition.to_owned());
        Ok(())
    }

    /// The conditional write (README, *Writes*): `INSERT … IF NOT EXISTS`, and when a
    /// row exists with a lower version, `UPDATE … IF version < new`. A refused
    /// transaction returns the stored version, which becomes `Superseded { stored }`.
    async fn write(&self, record: &Record) -> Result<PutOutcome> {
        let row = Row::of(record, self.config.partition_depth);
        let new = record.version();
        self.register(&row.partition).await?;
        for _ in 0..WRITE_ROUNDS {
            let inserted = self.cql.insert(&row).await?;
            if inserted.applied {
                return Ok(PutOutcome::Applied);
            }
            let Some(stored) = inserted.stored_version else {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "record {}: a row without a version is in the way (not written by mux?)",
                        row.key
                    ),
                ));
            };
            let stored = parse_version(&row.key, &stored)?;
            if stored >= new {
                return Ok(PutOutcome::Superseded { stored });
            }
            let updated = self.cql.update(&row).await?;
            if updated.applied {
                return Ok(PutOutcome::Applied);
            }
            // No stored version: purged between the two transactions, so insert
            // again. A stored version lower than ours cannot refuse `IF version < new`;
            // should it happen, go round again rather than trust it.
            if let Some(stored) = updated.stored_version {
                let stored = parse_version(&row.key, &stored)?;
                if stored >= new {
                    return Ok(PutOutcome::Superseded { stored });
                }
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "record {}: the row kept disappearing between the write's transactions (concurrent purges); retry",
                row.key
            ),
        )
        .temporary())
    }
}

#[async_trait]
impl Backend for ScyllaBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        self.write(record).await.map_err(self.tag(Operation::Put))
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let tag = self.tag(Operation::Get);
        let k = key.as_str();
        let row = self
            .cql
            .get(partition_of(k, self.config.partition_depth), k)
            .await
            .map_err(&tag)?;
        row.map(Row::into_record).transpose().map_err(tag)
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        mux_core::partitioned::list_page(self, request)
            .await
            .map_err(self.tag(Operation::List))
    }

    /// One conditional write per record, `concurrency` at a time, outcomes in order;
    /// the whole batch is refused first when a value is too large (nothing written).
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        for r in records {
            self.info.check_value_size(r, Operation::PutBatch)?;
        }
        // Boxed up front: a lazily mapped iterator of `async fn` futures trips the
        // `Send` check of the trait's boxed future.
        let writes: Vec<futures_util::future::BoxFuture<'_, Result<PutOutcome>>> = records
            .iter()
            .map(|r| Box::pin(self.write(r)) as _)
            .collect();
        futures_util::stream::iter(writes)
            .buffered(self.config.concurrency.max(1))
            .try_collect()
            .await
            .map_err(self.tag(Operation::PutBatch))
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.write(&Record::tombstone(key.clone(), version))
            .await
            .map_err(self.tag(Operation::Delete))
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let k = key.as_str();
        let lwt = self
            .cql
            .purge(
                partition_of(k, self.config.partition_depth),
                k,
                &up_to.to_string(),
            )
            .await
            .map_err(self.tag(Operation::Purge))?;
        Ok(lwt.applied)
    }

    async fn health(&self) -> Result<()> {
        self.cql.ping().await.map_err(self.tag(Operation::Health))
    }
}
