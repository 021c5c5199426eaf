//! The one-round-trip batch upsert, which also serves concurrent single puts through
//! `mux_core::batcher::PutBatcher` (whatever is queued when a connection frees up goes
//! out as one `unnest` upsert).

use std::collections::HashMap;

use mux_core::{Error, ErrorKind, PutOutcome, Record, Result, Version};

use crate::error::{map_err, pool_err};
use crate::sql::Inner;

/// Upserts `records` in one statement; one outcome per record, in order. Records of
/// the same key within the batch are reduced to the highest version first (a statement
/// cannot update a row twice).
pub(crate) async fn upsert_batch(inner: &Inner, records: &[Record]) -> Result<Vec<PutOutcome>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut winner: HashMap<&str, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let e = winner.entry(r.key().as_str()).or_insert(i);
        if records[*e].version() < r.version() {
            *e = i;
        }
    }
    let mut order: Vec<usize> = winner.values().copied().collect();
    order.sort_unstable();
    let sent: Vec<&Record> = order.iter().map(|&i| &records[i]).collect();
    let keys: Vec<&str> = sent.iter().map(|r| r.key().as_str()).collect();
    let values: Vec<&[u8]> = sent.iter().map(|r| r.value().as_ref()).collect();
    let versions: Vec<String> = sent.iter().map(|r| r.version().to_string()).collect();
    let tombstones: Vec<bool> = sent.iter().map(|r| r.is_tombstone()).collect();
    let content_types: Vec<Option<&str>> = sent
        .iter()
        .map(|r| r.meta().content_type.as_deref())
        .collect();
    let tags: Vec<serde_json::Value> = sent
        .iter()
        .map(|r| serde_json::to_value(&r.meta().tags).expect("tags serialise"))
        .collect();
    let checksums: Vec<i64> = sent.iter().map(|r| i64::from(r.meta().checksum)).collect();

    let client = inner.pool.get().await.map_err(pool_err)?;
    let stmt = client
        .prepare_cached(&inner.sql.upsert_batch)
        .await
        .map_err(map_err)?;
    let rows = client
        .query(
            &stmt,
            &[
                &keys,
                &values,
                &versions,
                &tombstones,
                &content_types,
                &tags,
                &checksums,
            ],
        )
        .await
        .map_err(map_err)?;
    let mut result: HashMap<String, (bool, Option<String>)> = HashMap::new();
    for row in rows {
        result.insert(row.get(0), (row.get(1), row.get(2)));
    }
    let parse = |v: &str| -> Result<Version> {
        v.parse().map_err(|e: Error| {
            Error::new(
                ErrorKind::Corrupt,
                format!("stored version: {}", e.message()),
            )
        })
    };
    let mut outcomes = Vec::with_capacity(records.len());
    for r in records {
        let (applied, stored) = result
            .get(r.key().as_str())
            .cloned()
            .ok_or_else(|| Error::internal(format!("no result for {} in the batch", r.key())))?;
        let w = &records[winner[r.key().as_str()]];
        let outcome = if std::ptr::eq(w, r) && applied {
            PutOutcome::Applied
        } else if applied {
            // Another record of the same batch won; it is what is stored now.
            PutOutcome::decide(Some(w.version()), r.version())
        } else {
            match stored {
                // Not applied: the committed row is at least this version, even if the
                // statement's snapshot showed an older one.
                Some(s) => PutOutcome::Superseded {
                    stored: parse(&s)?.max(r.version()),
                },
                // A concurrent writer committed the row after this statement's
                // snapshot (the upsert waited for it and lost to it): read the
                // committed version now.
                None => {
                    let get = client
                        .prepare_cached(&inner.sql.get)
                        .await
                        .map_err(map_err)?;
                    let row = client
                        .query_opt(&get, &[&r.key().as_str()])
                        .await
                        .map_err(map_err)?;
                    match row {
                        Some(row) => PutOutcome::Superseded {
                            stored: parse(row.get::<_, &str>(1))?.max(r.version()),
                        },
                        None => {
                            return Err(Error::new(ErrorKind::Conflict, "concurrent write; retry")
                                .temporary());
                        }
                    }
                }
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
