//! [`PostgresFeed`]: a durable [`ChangeFeed`] in a PostgreSQL table.
//!
//! ## Layout (plain data at rest)
//! `<table>` (default `mux_feed`): `position bigint` primary key (from the sequence
//! `<table>_seq`), `at timestamptz` (the append's transaction time) and one `text`
//! column per [`mux_core::feed::fields`] name: `tenant`, `key`, `version`, `kind`,
//! `route`. `<table>_meta` holds one row, `trimmed_through`: every position up to it was
//! removed by retention. Positions are `n-0`.
//!
//! ## Ordering: appends serialised by an advisory lock
//! A sequence hands out values when `nextval` runs, but rows become visible when their
//! transactions commit, in any order: a reader that read position 7 could later find 6
//! committing late, and never see it. So every append takes
//! `pg_advisory_xact_lock(K)` — `K` a constant derived from the table name — *before*
//! its `nextval`, in the same transaction, and holds it through its commit. PostgreSQL
//! makes a committing transaction visible before it releases its locks, so the next
//! appender draws its positions only once every lower position is visible (or rolled
//! back, leaving a gap no one will fill): what any snapshot sees of the table is a prefix
//! of the positions, and a reader that has seen `p` never later finds a lower one.
//! The price is that appends run one at a time (lock, `nextval` × n, one `unnest` insert
//! and `pg_notify`, commit). So publishes go through one appender task per feed, which
//! sends whatever publishes queued while the last transaction ran as one transaction
//! (up to 1024 events; each caller gets its own positions, in its own order) — the
//! `mux_core::batcher::PutBatcher` idea, which itself coalesces `Record` puts only. The
//! alternative — reading only below the `pg_snapshot_xmin(pg_current_snapshot())`
//! horizon — lets appends run in parallel but holds every reader back behind the
//! oldest open transaction in the whole database, and is harder to get right.
//!
//! ## Reading and waking
//! A read is one statement (one snapshot) joining the meta row with the events after
//! the reader's position, so a concurrent trim cannot slip between the `Gone` check and
//! the select. An empty read with `wait > 0` sleeps until a wake-up or
//! `min(wait left, poll_interval)`, then reads again. Wake-ups come from this feed's own
//! publishes and from one dedicated `LISTEN` connection per feed (each append does
//! `pg_notify('<table>', '')`), reconnected in the background with backoff if it drops.
//! A notification is only a hint: polling covers lost ones, which only delay readers.
//!
//! ## Retention
//! Retention runs inside `publish` ([`PostgresFeed::trim`] runs it at once): when the
//! newest position is more than `retention_events` (plus a little slack) above the last
//! known `trimmed_through`, or once per `poll_interval`. In one transaction under the
//! same lock it deletes the positions up to `max(position) - retention_events` and those
//! older than `retention_age`, and raises `trimmed_through` to the highest deleted
//! position. (Gaps from rolled-back appends count as positions, so slightly fewer events
//! may be kept.) A read after a position below `trimmed_through` fails with
//! [`ErrorKind::Gone`](mux_core::ErrorKind).
//!
//! A publish whose commit fails with a lost connection may or may not have appended.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use mux_core::feed::{ChangeEvent, ChangeFeed, FeedEvent, Position, fields, gone};
use mux_core::{Error, ErrorKind, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::Transaction;

use crate::config::{PostgresFeedConfig, redact};
use crate::connect::Target;
use crate::error::{map_err, pool_err};
use crate::listen::{Wakeups, bump, listen};
use crate::schema::check_table_name;

mod sql;
use sql::Sql;

/// A change feed in a PostgreSQL table that every node shares (see the module docs).
pub struct PostgresFeed {
    core: Arc<Core>,
    /// Publishes waiting for the appender task, which sends whatever is queued together.
    queue: mpsc::UnboundedSender<Job>,
    tasks: [JoinHandle<()>; 2],
}

/// One publish call: its events and where its positions go.
type Job = (Vec<ChangeEvent>, oneshot::Sender<Result<Vec<Position>>>);

/// The most events the appender sends in one transaction.
const MAX_BATCH: usize = 1024;

struct Core {
    name: String,
    config: PostgresFeedConfig,
    pool: Pool,
    sql: Sql,
    shared: Arc<Wakeups>,
    /// The last `trimmed_through` this feed saw, and when it last trimmed.
    trimmed_seen: AtomicU64,
    last_trim: Mutex<Instant>,
    /// Held by the publish that trims, so concurrent publishes do not queue up trims.
    trimming: tokio::sync::Mutex<()>,
}

impl fmt::Debug for PostgresFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresFeed")
            .field("name", &self.core.name)
            .field("config", &self.core.config)
            .finish()
    }
}

impl Drop for PostgresFeed {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl PostgresFeed {
    /// Connects, creates the tables if missing and starts the `LISTEN` connection.
    pub async fn open(config: PostgresFeedConfig) -> Result<PostgresFeed> {
        let t = config.table.clone();
        let name = format!("postgres:{t}");
        let tag = |e: Error| e.context(format!("feed {name}"));
        check_table_name(&t).map_err(tag)?;
        if t.len() > 58 {
            return Err(tag(Error::invalid_input(
                "the feed's table name is over 58 bytes",
            )));
        }
        let target = Target::new(&config.url, &config.tls).map_err(tag)?;
        let pool = target.pool(config.pool_size).map_err(tag)?;
        let mut client = pool.get().await.map_err(|e| {
            tag(pool_err(e).context(format!("cannot connect to {}", redact(&config.url))))
        })?;
        let create = sql::create(&t);
        let tx = client.transaction().await.map_err(|e| tag(map_err(e)))?;
        tx.batch_execute(&create)
            .await
            .map_err(|e| tag(map_err(e)))?;
        tx.commit().await.map_err(|e| tag(map_err(e)))?;
        let trimmed: i64 = client
            .query_one(&format!("SELECT trimmed_through FROM {t}_meta"), &[])
            .await
            .map_err(|e| tag(map_err(e)))?
            .get(0);
        drop(client);

        let sql = Sql::new(&t);
        let shared = Arc::new(Wakeups::default());
        let mut listen_target = target;
        listen_target
            .pg
            .application_name(format!("mux-feed-listen:{t}"));
        let listener = tokio::spawn(listen(listen_target, t, shared.clone()));
        let core = Arc::new(Core {
            name,
            config,
            pool,
            sql,
            shared,
            trimmed_seen: AtomicU64::new(trimmed as u64),
            last_trim: Mutex::new(Instant::now()),
            trimming: tokio::sync::Mutex::new(()),
        });
        let (queue, jobs) = mpsc::unbounded_channel();
        let appender = tokio::spawn(append_batches(core.clone(), jobs));
        Ok(PostgresFeed {
            core,
            queue,
            tasks: [listener, appender],
        })
    }

    /// The append steps of `publish` inside the caller's transaction: take the table's
    /// append lock, draw the positions, insert, notify. Visible (and the lock released)
    /// when the caller commits.
    #[doc(hidden)]
    pub async fn append_in(
        &self,
        tx: &Transaction<'_>,
        events: &[ChangeEvent],
    ) -> Result<Vec<Position>> {
        self.core.append_in(tx, events).await
    }

    /// Runs retention now; returns the new `trimmed_through`.
    pub async fn trim(&self) -> Result<Position> {
        self.core.trim().await
    }

    /// The `LISTEN` connection's backend pid, while it is up.
    #[doc(hidden)]
    pub fn listener_pid(&self) -> Option<i32> {
        Some(self.core.shared.listener_pid.load(Ordering::SeqCst)).filter(|&p| p != 0)
    }
}

/// Sends the queued publishes in batches, one transaction each (appends are serial
/// anyway), and answers each its own positions. A batch over retention is trimmed before
/// its publishers hear back.
async fn append_batches(core: Arc<Core>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let (mut events, mut waiters) = (first.0, vec![first.1]);
        let mut sizes = vec![events.len()];
        while events.len() < MAX_BATCH {
            let Ok((more, done)) = jobs.try_recv() else {
                break;
            };
            sizes.push(more.len());
            events.extend(more);
            waiters.push(done);
        }
        match core.append(&events).await {
            Ok(positions) => {
                core.maybe_trim(positions.last().map_or(0, |p| p.major()))
                    .await;
                let mut rest = &positions[..];
                for (done, size) in waiters.into_iter().zip(sizes) {
                    let (mine, tail) = rest.split_at(size);
                    rest = tail;
                    let _ = done.send(Ok(mine.to_vec()));
                }
            }
            Err(e) => waiters.into_iter().for_each(|done| {
                let _ = done.send(Err(e.clone()));
            }),
        }
    }
}

impl Core {
    /// Appends `events` in a transaction of its own and wakes this feed's readers.
    async fn append(&self, events: &[ChangeEvent]) -> Result<Vec<Position>> {
        let mut client = self.pool.get().await.map_err(|e| self.tag(pool_err(e)))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.tag(map_err(e)))?;
        let positions = self.append_in(&tx, events).await?;
        tx.commit().await.map_err(|e| self.tag(map_err(e)))?;
        self.shared.wake.send_modify(bump);
        Ok(positions)
    }

    async fn append_in(
        &self,
        tx: &Transaction<'_>,
        events: &[ChangeEvent],
    ) -> Result<Vec<Position>> {
        let tag = |e| self.tag(map_err(e));
        tx.execute(&self.sql.lock, &[]).await.map_err(tag)?;
        let n = i32::try_from(events.len())
            .map_err(|_| Error::invalid_input("too many events in one publish"))?;
        let rows = tx.query(&self.sql.next, &[&n]).await.map_err(tag)?;
        let mut positions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        positions.sort_unstable();
        let mut columns: [Vec<String>; 5] = Default::default();
        for event in events {
            for (column, (_, value)) in columns.iter_mut().zip(event.to_fields()) {
                column.push(value);
            }
        }
        let [c0, c1, c2, c3, c4] = &columns;
        tx.execute(&self.sql.insert, &[&positions, c0, c1, c2, c3, c4])
            .await
            .map_err(tag)?;
        Ok(positions
            .into_iter()
            .map(|p| Position::new(p as u64, 0))
            .collect())
    }

    async fn trim(&self) -> Result<Position> {
        let tag = |e| self.tag(map_err(e));
        *self.last_trim.lock().expect("trim clock") = Instant::now();
        let mut client = self.pool.get().await.map_err(|e| self.tag(pool_err(e)))?;
        let tx = client.transaction().await.map_err(tag)?;
        tx.execute(&self.sql.lock, &[]).await.map_err(tag)?;
        let keep = self.config.retention_events.max(1) as i64;
        let age = self.config.retention_age.as_secs_f64();
        let row = tx
            .query_one(&self.sql.trim, &[&keep, &age])
            .await
            .map_err(tag)?;
        tx.commit().await.map_err(tag)?;
        let trimmed = row.get::<_, i64>(0) as u64;
        self.trimmed_seen.fetch_max(trimmed, Ordering::Relaxed);
        Ok(Position::new(trimmed, 0))
    }

    fn tag(&self, e: Error) -> Error {
        e.context(format!("feed {}", self.name))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.config.poll_interval_ms.max(10))
    }

    /// Trims if the feed grew past retention (with some slack, so a full feed does not
    /// trim on every publish) or a poll interval passed since the last trim.
    async fn maybe_trim(&self, newest: u64) {
        let keep = self.config.retention_events.max(1);
        let slack = (keep / 16).clamp(1, 256);
        let grown = newest > self.trimmed_seen.load(Ordering::Relaxed) + keep + slack;
        let due = self.last_trim.lock().expect("trim clock").elapsed() >= self.poll_interval();
        if (grown || due)
            && let Ok(_trimming) = self.trimming.try_lock()
            && let Err(e) = self.trim().await
        {
            tracing::warn!(feed = %self.name, error = %e, "feed retention failed; will retry");
        }
    }

    async fn fetch(&self, after: Position, limit: usize) -> Result<Vec<FeedEvent>> {
        let client = self.pool.get().await.map_err(|e| self.tag(pool_err(e)))?;
        let stmt = client
            .prepare_cached(&self.sql.read)
            .await
            .map_err(|e| self.tag(map_err(e)))?;
        let after_n = i64::try_from(after.major()).unwrap_or(i64::MAX);
        let rows = client
            .query(&stmt, &[&after_n, &(limit as i64)])
            .await
            .map_err(|e| self.tag(map_err(e)))?;
        let trimmed: i64 = rows
            .first()
            .ok_or_else(|| Error::internal(format!("feed {}: no meta row", self.name)))?
            .get(0);
        self.trimmed_seen
            .fetch_max(trimmed as u64, Ordering::Relaxed);
        if after_n < trimmed {
            return Err(gone(&self.name, after, Position::new(trimmed as u64, 0)));
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(position) = row.get::<_, Option<i64>>(1) else {
                continue;
            };
            let column = |name: &str| match name {
                fields::TENANT => Some(2),
                fields::KEY => Some(3),
                fields::VERSION => Some(4),
                fields::KIND => Some(5),
                fields::ROUTE => Some(6),
                _ => None,
            };
            let change = ChangeEvent::from_fields(|name| column(name).map(|i| row.get(i)))
                .map_err(|e| e.context(format!("feed {} at {position}", self.name)))?;
            events.push(FeedEvent {
                position: Position::new(position as u64, 0),
                change,
            });
        }
        Ok(events)
    }

    async fn read(&self, after: Position, limit: usize, wait: Duration) -> Result<Vec<FeedEvent>> {
        let mut wake = self.shared.wake.subscribe();
        let now = Instant::now();
        let deadline = now
            .checked_add(wait)
            .unwrap_or(now + Duration::from_secs(1 << 30));
        loop {
            wake.borrow_and_update();
            let events = self.fetch(after, limit.max(1)).await?;
            let now = Instant::now();
            if !events.is_empty() || now >= deadline {
                return Ok(events);
            }
            let nap = (deadline - now).min(self.poll_interval());
            if let Ok(Err(_)) = tokio::time::timeout(nap, wake.changed()).await {
                tokio::time::sleep(nap).await;
            }
        }
    }

    async fn head(&self) -> Result<Position> {
        let client = self.pool.get().await.map_err(|e| self.tag(pool_err(e)))?;
        let row = client
            .query_one(&self.sql.head, &[])
            .await
            .map_err(|e| self.tag(map_err(e)))?;
        Ok(Position::new(row.get::<_, i64>(0) as u64, 0))
    }
}

#[async_trait]
impl ChangeFeed for PostgresFeed {
    fn name(&self) -> &str {
        &self.core.name
    }

    async fn publish(&self, events: &[ChangeEvent]) -> Result<Vec<Position>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (done, answer) = oneshot::channel();
        let closed = || {
            Error::new(
                ErrorKind::Unavailable,
                format!("feed {}: closed", self.core.name),
            )
        };
        self.queue
            .send((events.to_vec(), done))
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn read(&self, after: Position, limit: usize, wait: Duration) -> Result<Vec<FeedEvent>> {
        self.core.read(after, limit, wait).await
    }

    async fn head(&self) -> Result<Position> {
        self.core.head().await
    }
}
