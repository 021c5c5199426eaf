//! `put_batch`: many records in one multi-row conditional upsert, with an outcome per
//! record.
//!
//! A multi-row `INSERT … ON DUPLICATE KEY UPDATE` reports only the total of its
//! affected rows, not which rows it changed. So the batch runs in one transaction:
//!
//! 1. a plain (snapshot) read of the stored versions of the batch's keys;
//! 2. the multi-row upsert, with the same guard as a single put — which also locks
//!    every row of the batch until the commit;
//! 3. a locking read (`FOR UPDATE`) of the versions again: the rows are ours, so this is
//!    exactly what the upsert left;
//! 4. commit.
//!
//! A record is applied when its version is now stored and was not before; otherwise it
//! is superseded by what is stored. The correctness of the data never depends on these
//! reads (the guard in the statement decides); they only report. The one case they can
//! misreport: another writer storing *the very same version* of a key between steps 1
//! and 2 makes this batch report `Applied` where `Superseded` at that version would be
//! exact — both mean that version is stored.
//!
//! Keys are sent in byte order, so concurrent batches lock rows in the same order and do
//! not deadlock on each other. Records of the same key within a batch are reduced to
//! the highest version first (a statement cannot update a row twice). Large batches go
//! out in several statements (at most [`MAX_ROWS`] rows and half the server's
//! `max_allowed_packet` each), all in the one transaction.

use std::collections::HashMap;

use mux_core::{PutOutcome, Record, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Params, TxOpts, Value};

use crate::backend::{DEADLOCK_ATTEMPTS, MysqlBackend, row_params, version_of};
use crate::error::{is_deadlock, map_err};
use crate::sql::{self, PARAMS_PER_ROW};

/// The most rows in one statement (MySQL allows 65,535 placeholders).
pub(crate) const MAX_ROWS: usize = 1000;

type Versions = HashMap<Vec<u8>, Vec<u8>>;

/// Splits `records` into statements of at most [`MAX_ROWS`] rows and about `max_bytes`.
fn chunks<'a>(records: &[&'a Record], max_bytes: usize) -> Vec<Vec<&'a Record>> {
    let mut out: Vec<Vec<&Record>> = Vec::new();
    let mut bytes = 0;
    for &r in records {
        let size = r.value().len() + r.key().as_str().len() + 1024;
        match out.last_mut() {
            Some(last) if last.len() < MAX_ROWS && bytes + size <= max_bytes => {
                last.push(r);
                bytes += size;
            }
            _ => {
                out.push(vec![r]);
                bytes = size;
            }
        }
    }
    out
}

fn keys(chunk: &[&Record]) -> Params {
    Params::Positional(
        chunk
            .iter()
            .map(|r| Value::Bytes(r.key().as_str().as_bytes().to_vec()))
            .collect(),
    )
}

/// One attempt at the whole transaction: the stored versions before and after.
async fn attempt(
    backend: &MysqlBackend,
    chunks: &[Vec<&Record>],
) -> mysql_async::Result<(Versions, Versions)> {
    let table = &backend.sql.table;
    let mut conn = backend.pool.get_conn().await?;
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let mut before = Versions::new();
    for chunk in chunks {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = tx
            .exec(sql::versions_of(table, chunk.len(), false), keys(chunk))
            .await?;
        before.extend(rows);
    }
    let mut after = Versions::new();
    for chunk in chunks {
        let mut params = Vec::with_capacity(chunk.len() * PARAMS_PER_ROW);
        for r in chunk {
            row_params(r, &mut params);
        }
        tx.exec_drop(sql::upsert(table, chunk.len()), Params::Positional(params))
            .await?;
        let rows: Vec<(Vec<u8>, Vec<u8>)> = tx
            .exec(sql::versions_of(table, chunk.len(), true), keys(chunk))
            .await?;
        after.extend(rows);
    }
    tx.commit().await?;
    Ok((before, after))
}

pub(crate) async fn put_batch(
    backend: &MysqlBackend,
    records: &[Record],
) -> Result<Vec<PutOutcome>> {
    let mut winner: HashMap<&str, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let w = winner.entry(r.key().as_str()).or_insert(i);
        if records[*w].version() < r.version() {
            *w = i;
        }
    }
    let mut sent: Vec<&Record> = winner.values().map(|&i| &records[i]).collect();
    sent.sort_unstable_by(|a, b| a.key().cmp(b.key()));
    let chunks = chunks(&sent, backend.max_allowed_packet() / 2);
    let mut tries = 1;
    let (before, after) = loop {
        match attempt(backend, &chunks).await {
            Ok(found) => break found,
            Err(e) if is_deadlock(&e) && tries < DEADLOCK_ATTEMPTS => tries += 1,
            Err(e) => return Err(map_err(e)),
        }
    };
    let mut outcomes = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let key = r.key().as_str().as_bytes();
        let stored = match after.get(key) {
            Some(v) => version_of(v, key)?,
            None => {
                return Err(mux_core::Error::new(
                    mux_core::ErrorKind::Conflict,
                    format!("{} was purged during the batch; retry", r.key()),
                )
                .temporary());
            }
        };
        let was = before.get(key).map(|v| version_of(v, key)).transpose()?;
        let applied = winner[r.key().as_str()] == i && stored == r.version() && was != Some(stored);
        outcomes.push(if applied {
            PutOutcome::Applied
        } else {
            PutOutcome::Superseded { stored }
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::{Key, Version};

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let records: Vec<Record> = (0..2500)
            .map(|i| {
                Record::new(
                    Key::new(format!("k{i:05}")).unwrap(),
                    vec![0u8; 100],
                    Version::new(1, 0, 1),
                )
            })
            .collect();
        let refs: Vec<&Record> = records.iter().collect();
        let sizes: Vec<usize> = chunks(&refs, usize::MAX).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        // ~1130 bytes a row: three rows per 3,500 bytes; one row alone even if larger.
        let sizes: Vec<usize> = chunks(&refs[..7], 3500).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(chunks(&refs[..2], 10).len(), 2);
    }
}
