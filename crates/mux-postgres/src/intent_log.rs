//! A PostgreSQL intent log that several `muxd` nodes share.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::Pool;
use mux_core::{
    DeadLetter, Error, IntentLog, IntentLogStats, Operation, PendingIntent, Record, Result, codec,
};

use crate::config::TlsMode;
use crate::connect::Target;
use crate::error::{map_err, pool_err};
use crate::schema::check_table_name;

/// The most owed entries one `pending` call claims.
const CLAIM_BATCH: i64 = 10_000;

/// An intent log in PostgreSQL, shared by several nodes.
///
/// Tables (with a configurable prefix, default `mux`): `<p>_intents` (id, record
/// envelope), `<p>_intent_owed` (id, backend, claimed_by, claimed_at) and
/// `<p>_dead_letters`. Every append is claimed by the node that made it; `pending`
/// hands a node only entries nobody holds — unclaimed, or claimed longer ago than the
/// lease (their node died) — using `FOR UPDATE SKIP LOCKED`, so nodes replaying at the
/// same time split the work instead of colliding, and a node takes over the hints of a
/// dead one once its lease runs out. A `Mux` on a shared log re-scans it every lease.
pub struct PostgresIntentLog {
    pool: Pool,
    node: String,
    lease: Duration,
    prefix: String,
    appends: AtomicU64,
}

impl fmt::Debug for PostgresIntentLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresIntentLog")
            .field("node", &self.node)
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish()
    }
}

fn tag(e: Error) -> Error {
    e.with_backend("intent-log")
}

impl PostgresIntentLog {
    /// Connects to `url` as node `node` (unique per node), with tables `<prefix>_…`;
    /// entries claimed longer than `lease` ago are taken over.
    pub async fn connect(
        url: &str,
        prefix: &str,
        node: &str,
        lease: Duration,
    ) -> Result<PostgresIntentLog> {
        check_table_name(prefix).map_err(tag)?;
        // No TLS option yet: plain connections, like before.
        let pool = Target::new(url, &TlsMode::Disable)
            .and_then(|target| target.pool(8))
            .map_err(tag)?;
        let client = pool.get().await.map_err(|e| tag(pool_err(e)))?;
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtext('mux_schema'));
                 CREATE TABLE IF NOT EXISTS {prefix}_intents (
                    id bigserial PRIMARY KEY, record bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS {prefix}_intent_owed (
                    id bigint NOT NULL REFERENCES {prefix}_intents (id) ON DELETE CASCADE,
                    backend text NOT NULL, claimed_by text, claimed_at timestamptz,
                    PRIMARY KEY (id, backend));
                 CREATE TABLE IF NOT EXISTS {prefix}_dead_letters (
                    id bigserial PRIMARY KEY, backend text NOT NULL, record bytea NOT NULL,
                    error text NOT NULL, attempts int NOT NULL, failed_at timestamptz NOT NULL DEFAULT now());
                 COMMIT;"
            ))
            .await
            .map_err(|e| tag(map_err(e).with_operation(Operation::Open)))?;
        Ok(PostgresIntentLog {
            pool,
            node: node.to_owned(),
            lease,
            prefix: prefix.to_owned(),
            appends: AtomicU64::new(0),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| tag(pool_err(e)))
    }
}

#[async_trait]
impl IntentLog for PostgresIntentLog {
    fn is_durable(&self) -> bool {
        true
    }

    /// A shared log hands out only unclaimed or expired entries, so everything it
    /// returns is fair game: no id threshold.
    fn next_id(&self) -> u64 {
        u64::MAX
    }

    fn rescan_every(&self) -> Option<Duration> {
        Some(self.lease)
    }

    async fn append(&self, record: &Record, owed: &[Arc<str>]) -> Result<u64> {
        let p = &self.prefix;
        let client = self.client().await?;
        let owed: Vec<&str> = owed.iter().map(|s| &**s).collect();
        let row = client
            .query_one(
                &format!(
                    "WITH i AS (INSERT INTO {p}_intents (record) VALUES ($1) RETURNING id),
                          o AS (INSERT INTO {p}_intent_owed (id, backend, claimed_by, claimed_at)
                                SELECT i.id, b, $3, now() FROM i, unnest($2::text[]) AS b)
                     SELECT id FROM i"
                ),
                &[&codec::encode(record), &owed, &self.node],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        self.appends.fetch_add(1, Ordering::Relaxed);
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn complete(&self, id: u64, backend: &str) -> Result<()> {
        let p = &self.prefix;
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "WITH d AS (DELETE FROM {p}_intent_owed WHERE id = $1 AND backend = $2 RETURNING id)
                     DELETE FROM {p}_intents WHERE id IN (SELECT id FROM d)
                       AND NOT EXISTS (SELECT 1 FROM {p}_intent_owed o WHERE o.id = $1 AND o.backend <> $2)"
                ),
                &[&(id as i64), &backend],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        Ok(())
    }

    /// Claims (for this node) the owed entries nobody holds and returns them.
    async fn pending(&self) -> Result<Vec<PendingIntent>> {
        let p = &self.prefix;
        let client = self.client().await?;
        let claimed = client
            .query(
                &format!(
                    "WITH c AS (SELECT id, backend FROM {p}_intent_owed
                                WHERE claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $2)
                                ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     UPDATE {p}_intent_owed o SET claimed_by = $1, claimed_at = now()
                     FROM c WHERE o.id = c.id AND o.backend = c.backend
                     RETURNING o.id, o.backend"
                ),
                &[&self.node, &self.lease.as_secs_f64(), &CLAIM_BATCH],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        let mut owed: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for row in claimed {
            owed.entry(row.get(0)).or_default().push(row.get(1));
        }
        let ids: Vec<i64> = owed.keys().copied().collect();
        let rows = client
            .query(
                &format!("SELECT id, record FROM {p}_intents WHERE id = ANY($1)"),
                &[&ids],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let record = codec::decode(Bytes::from(row.get::<_, Vec<u8>>(1)))?;
            let mut backends = owed.remove(&id).unwrap_or_default();
            backends.sort();
            out.push(PendingIntent {
                id: id as u64,
                record,
                owed: backends,
            });
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    async fn dead_letter(
        &self,
        id: u64,
        backend: &str,
        record: &Record,
        error: &str,
        attempts: u32,
    ) -> Result<u64> {
        let p = &self.prefix;
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "WITH dl AS (INSERT INTO {p}_dead_letters (backend, record, error, attempts)
                                 VALUES ($2, $3, $4, $5) RETURNING id),
                          d AS (DELETE FROM {p}_intent_owed WHERE id = $1 AND backend = $2 RETURNING id),
                          i AS (DELETE FROM {p}_intents WHERE id IN (SELECT id FROM d)
                                AND NOT EXISTS (SELECT 1 FROM {p}_intent_owed o WHERE o.id = $1 AND o.backend <> $2))
                     SELECT id FROM dl"
                ),
                &[&(id as i64), &backend, &codec::encode(record), &error, &(attempts as i32)],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let p = &self.prefix;
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT id, backend, record, error, attempts, (extract(epoch FROM failed_at) * 1000)::int8
                     FROM {p}_dead_letters ORDER BY id"
                ),
                &[],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        rows.into_iter().map(dead_from_row).collect()
    }

    async fn take_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        let p = &self.prefix;
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "DELETE FROM {p}_dead_letters WHERE id = $1
                     RETURNING id, backend, record, error, attempts, (extract(epoch FROM failed_at) * 1000)::int8"
                ),
                &[&(id as i64)],
            )
            .await
            .map_err(|e| tag(map_err(e)))?;
        row.map(dead_from_row).transpose()
    }

    fn stats(&self) -> IntentLogStats {
        let appends = self.appends.load(Ordering::Relaxed);
        IntentLogStats {
            appends,
            syncs: appends,
        }
    }
}

fn dead_from_row(row: tokio_postgres::Row) -> Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.get::<_, i64>(0) as u64,
        backend: row.get(1),
        record: codec::decode(Bytes::from(row.get::<_, Vec<u8>>(2)))?,
        error: row.get(3),
        attempts: row.get::<_, i32>(4) as u32,
        failed_at_ms: row.get::<_, i64>(5) as u64,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use mux_core::{IntentLog, Key, Record, Version};
    use tokio_postgres::NoTls;

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
