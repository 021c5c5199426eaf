//! `put_batch`: conditional `TransactWriteItems` in chunks, or concurrent conditional
//! puts ([`crate::BatchWrites`]).

use std::collections::HashSet;
use std::ops::Range;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use futures_util::{StreamExt, TryStreamExt};
use mux_core::{Error, ErrorKind, PutOutcome, Record, Result};

use crate::config::BatchWrites;
use crate::core::Core;
use crate::error::{cancellation, map_sdk};
use crate::layout::{self, partition_of};
use crate::write::{NEWER_THAN_STORED, conflict_backoff, pause, superseded};

/// DynamoDB's most actions in one transaction.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// The item bytes one transaction may carry here: DynamoDB allows 4 MB in all, and the
/// sizes counted are estimates, so some room is left.
pub const MAX_TRANSACTION_BYTES: usize = 3_800_000;

/// Splits `records` into chunks for one transaction each: at most
/// [`MAX_TRANSACTION_ITEMS`] records and [`MAX_TRANSACTION_BYTES`], and no key twice (a
/// transaction may touch an item only once).
pub(crate) fn chunks(records: &[Record]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    let mut keys = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        let size = layout::estimated_size(r);
        let full = i - start == MAX_TRANSACTION_ITEMS
            || bytes + size > MAX_TRANSACTION_BYTES
            || keys.contains(r.key().as_str());
        if full && i > start {
            out.push(start..i);
            (start, bytes) = (i, 0);
            keys.clear();
        }
        bytes += size;
        keys.insert(r.key().as_str());
    }
    if start < records.len() {
        out.push(start..records.len());
    }
    out
}

impl Core {
    /// Writes `records` as `put_batch` does, one outcome per record in order.
    pub(crate) async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        self.index_partitions(
            records
                .iter()
                .map(|r| partition_of(r.key().as_str(), self.depth())),
        )
        .await?;
        let concurrency = self.config.concurrency;
        match self.config.batch_writes {
            BatchWrites::Concurrent => {
                let puts: Vec<_> = records.iter().map(|r| self.put_indexed(r)).collect();
                futures_util::stream::iter(puts)
                    .buffered(concurrency)
                    .try_collect()
                    .await
            }
            _ => {
                let chunks: Vec<_> = chunks(records)
                    .into_iter()
                    .map(|range| self.transact(&records[range]))
                    .collect();
                let outcomes: Vec<Vec<PutOutcome>> = futures_util::stream::iter(chunks)
                    .buffered(concurrency)
                    .try_collect()
                    .await?;
                Ok(outcomes.into_iter().flatten().collect())
            }
        }
    }

    /// One chunk as conditional transactions. A transaction whose conditions fail for
    /// some records is cancelled as a whole: those records are `Superseded` (the
    /// cancellation reasons carry their stored items), and the others go again in a new
    /// transaction, until one commits. A lone record is a plain conditional put.
    async fn transact(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        let mut outcomes: Vec<Option<PutOutcome>> = vec![None; records.len()];
        let policy = conflict_backoff();
        let mut conflicts = 0;
        loop {
            let pending: Vec<usize> = (0..records.len())
                .filter(|&i| outcomes[i].is_none())
                .collect();
            match pending[..] {
                [] => break,
                [i] => {
                    outcomes[i] = Some(self.put_indexed(&records[i]).await?);
                    continue;
                }
                _ => {}
            }
            let items = pending.iter().map(|&i| self.transact_put(&records[i]));
            let answer = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.collect::<Result<_>>()?))
                .send()
                .await;
            let err = match answer {
                Ok(_) => {
                    for i in pending {
                        outcomes[i] = Some(PutOutcome::Applied);
                    }
                    break;
                }
                Err(err) => err,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
                    t.cancellation_reasons().to_vec()
                }
                _ => return Err(map_sdk(err).error),
            };
            let mut progress = false;
            let mut conflict = false;
            for (n, &i) in pending.iter().enumerate() {
                let record = &records[i];
                let Some(reason) = reasons.get(n) else {
                    break;
                };
                match reason.code() {
                    Some("ConditionalCheckFailed") => {
                        outcomes[i] = Some(match reason.item() {
                            Some(item) => superseded(
                                record.key(),
                                layout::decode_version(item)?,
                                record.version(),
                            )?,
                            None => self.put_indexed(record).await?,
                        });
                        progress = true;
                    }
                    None | Some("None") => {}
                    Some("TransactionConflict") => conflict = true,
                    Some(code) => {
                        return Err(cancellation(code, reason.message(), record.key().as_str()));
                    }
                }
            }
            if conflict {
                conflicts += 1;
                if conflicts >= policy.max_attempts {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "a transaction of {} records met concurrent transactions {conflicts} \
                             times; it is safe to try again",
                            pending.len()
                        ),
                    )
                    .temporary());
                }
                pause(&policy, conflicts - 1).await;
            } else if !progress {
                // Cancelled without a reason this code understands: one put each.
                for i in pending {
                    outcomes[i] = Some(self.put_indexed(&records[i]).await?);
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every record has an outcome"))
            .collect())
    }

    /// The conditional put of `record` inside a transaction.
    fn transact_put(&self, record: &Record) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(layout::encode(record, self.depth())))
            .condition_expression(NEWER_THAN_STORED)
            .expression_attribute_values(":v", layout::s(record.version().to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| Error::internal(format!("building a transaction item: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::{Key, Version};

    fn record(key: &str, size: usize) -> Record {
        Record::new(
            Key::new(key).unwrap(),
            vec![0u8; size],
            Version::new(1, 0, 0),
        )
    }

    #[test]
    fn chunks_respect_count_size_and_distinct_keys() {
        let many: Vec<Record> = (0..250).map(|i| record(&format!("k{i}"), 10)).collect();
        assert_eq!(chunks(&many), vec![0..100, 100..200, 200..250]);

        let big: Vec<Record> = (0..25).map(|i| record(&format!("k{i}"), 300_000)).collect();
        let got = chunks(&big);
        assert_eq!(got, vec![0..12, 12..24, 24..25]);

        let dup = vec![
            record("a", 1),
            record("b", 1),
            record("a", 1),
            record("c", 1),
        ];
        assert_eq!(chunks(&dup), vec![0..2, 2..4]);
        assert!(chunks(&[]).is_empty());
    }
}
