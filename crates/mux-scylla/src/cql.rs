//! The statement layer: the seven requests the backend makes, as a trait. The real one
//! runs the prepared statements of `schema::Statements` on a cluster (`session.rs`);
//! [`Model`] runs the same requests on an in-memory table with CQL's semantics, so the
//! backend's own logic — partitions, the lightweight-transaction protocol of `put`,
//! the listing merge, the row mapping — runs (and is tested) without a server.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use mux_core::Result;

use crate::layout::{INDEX_PARTITION, Row};
use crate::schema::RangeShape;

/// The outcome of a lightweight transaction (`… IF …`): whether it applied, and the
/// version the condition saw when it did not (`None`: no row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lwt {
    /// CQL's `[applied]`.
    pub applied: bool,
    /// The stored `version` column returned with a refused transaction.
    pub stored_version: Option<String>,
}

/// A clustering range of one partition, read in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The partition.
    pub partition: String,
    /// The operators of the range.
    pub shape: RangeShape,
    /// The bound values, in the statement's order (two for `FromTo`/`AfterTo`, else one).
    pub bounds: Vec<String>,
    /// The most rows to return (CQL's `LIMIT`).
    pub limit: usize,
}

/// The requests of the backend. Every implementation keeps CQL's semantics, which
/// [`Model`] spells out.
#[async_trait]
pub trait Cql: Send + Sync + fmt::Debug + 'static {
    /// `SELECT … WHERE partition_key = ? AND key = ?`: the full row.
    async fn get(&self, partition: &str, key: &str) -> Result<Option<Row>>;
    /// `INSERT … IF NOT EXISTS`: refused when the row exists, with its version.
    async fn insert(&self, row: &Row) -> Result<Lwt>;
    /// `UPDATE … SET <every non-key column> … IF version < <row's version>`: refused
    /// when the stored version is not lower, or when there is no row (a condition on
    /// a missing row is false).
    async fn update(&self, row: &Row) -> Result<Lwt>;
    /// `DELETE … IF version <= ?`.
    async fn purge(&self, partition: &str, key: &str, up_to: &str) -> Result<Lwt>;
    /// `INSERT INTO … (partition_key, key) VALUES ('/partitions', ?)`: registers a
    /// partition in the index (a plain, idempotent write).
    async fn index(&self, partition: &str) -> Result<()>;
    /// A clustering range of one partition without values.
    async fn scan(&self, scan: &Scan) -> Result<Vec<Row>>;
    /// A cheap request to the cluster.
    async fn ping(&self) -> Result<()>;
}

/// An in-memory table with the semantics of the statements: partitions of rows ordered
/// by the clustering key's bytes (CQL compares `text` by its UTF-8 bytes), conditions
/// evaluated atomically with their write (as Paxos does), conditions on a missing row
/// false, and a `LIMIT` on scans.
#[derive(Default)]
pub struct Model {
    table: Mutex<BTreeMap<String, BTreeMap<String, Row>>>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.lock().expect("model lock");
        f.debug_struct("Model")
            .field("partitions", &table.len())
            .finish()
    }
}

impl Model {
    /// An empty table.
    pub fn new() -> Model {
        Model::default()
    }

    /// Every row, in partition and key order (for tests that look at the layout).
    pub fn rows(&self) -> Vec<Row> {
        let table = self.table.lock().expect("model lock");
        table.values().flat_map(|p| p.values().cloned()).collect()
    }

    /// Writes a row as is, with no condition (for tests that damage or race rows).
    pub fn put_raw(&self, row: Row) {
        let mut table = self.table.lock().expect("model lock");
        table
            .entry(row.partition.clone())
            .or_default()
            .insert(row.key.clone(), row);
    }
}

fn in_range(key: &str, shape: RangeShape, b: &[String]) -> bool {
    match shape {
        RangeShape::FromTo => key >= b[0].as_str() && key < b[1].as_str(),
        RangeShape::AfterTo => key > b[0].as_str() && key < b[1].as_str(),
        RangeShape::From => key >= b[0].as_str(),
        RangeShape::After => key > b[0].as_str(),
        RangeShape::Exactly => key == b[0],
    }
}

#[async_trait]
impl Cql for Model {
    async fn get(&self, partition: &str, key: &str) -> Result<Option<Row>> {
        let table = self.table.lock().expect("model lock");
        Ok(table.get(partition).and_then(|p| p.get(key)).cloned())
    }

    async fn insert(&self, row: &Row) -> Result<Lwt> {
        let mut table = self.table.lock().expect("model lock");
        let partition = table.entry(row.partition.clone()).or_default();
        if let Some(stored) = partition.get(&row.key) {
            return Ok(Lwt {
                applied: false,
                stored_version: stored.version.clone(),
            });
        }
        partition.insert(row.key.clone(), row.clone());
        Ok(Lwt {
            applied: true,
            stored_version: None,
        })
    }

    async fn update(&self, row: &Row) -> Result<Lwt> {
        let mut table = self.table.lock().expect("model lock");
        let stored = table
            .get_mut(&row.partition)
            .and_then(|p| p.get_mut(&row.key));
        match stored {
            // `version < ?` with a null version is false, as with no row at all.
            Some(stored) if stored.version.is_some() && stored.version < row.version => {
                *stored = row.clone();
                Ok(Lwt {
                    applied: true,
                    stored_version: None,
                })
            }
            stored => Ok(Lwt {
                applied: false,
                stored_version: stored.and_then(|s| s.version.clone()),
            }),
        }
    }

    async fn purge(&self, partition: &str, key: &str, up_to: &str) -> Result<Lwt> {
        let mut table = self.table.lock().expect("model lock");
        let Some(rows) = table.get_mut(partition) else {
            return Ok(Lwt {
                applied: false,
                stored_version: None,
            });
        };
        let stored = rows.get(key).and_then(|r| r.version.clone());
        if stored.as_deref().is_some_and(|v| v <= up_to) {
            rows.remove(key);
            Ok(Lwt {
                applied: true,
                stored_version: None,
            })
        } else {
            Ok(Lwt {
                applied: false,
                stored_version: stored,
            })
        }
    }

    async fn index(&self, partition: &str) -> Result<()> {
        let mut table = self.table.lock().expect("model lock");
        table
            .entry(INDEX_PARTITION.to_owned())
            .or_default()
            .entry(partition.to_owned())
            .or_insert_with(|| Row {
                partition: INDEX_PARTITION.to_owned(),
                key: partition.to_owned(),
                ..Row::default()
            });
        Ok(())
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<Row>> {
        let expected = match scan.shape {
            RangeShape::FromTo | RangeShape::AfterTo => 2,
            _ => 1,
        };
        assert_eq!(scan.bounds.len(), expected, "bounds of {:?}", scan.shape);
        let table = self.table.lock().expect("model lock");
        Ok(table
            .get(&scan.partition)
            .map(|rows| {
                rows.values()
                    .filter(|r| in_range(&r.key, scan.shape, &scan.bounds))
                    .take(scan.limit)
                    .map(|r| Row {
                        value: None,
                        ..r.clone()
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
