//! Conditional writes of single records, the partition index, and purge.

use std::time::Duration;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use futures_util::future::try_join_all;
use mux_core::resilience::{Jitter, RetryPolicy};
use mux_core::{Error, ErrorKind, Key, PutOutcome, Record, Result, Version};

use crate::core::Core;
use crate::error::map_sdk;
use crate::layout::{self, INDEX_PARTITION, KEY, VERSION, partition_of};

/// The condition of every record write: apply only if there is no item, or the stored
/// version is lower. Versions are stored in their fixed-width text form, which sorts
/// like the versions, so DynamoDB compares them as strings.
pub(crate) const NEWER_THAN_STORED: &str = "attribute_not_exists(mux_key) OR mux_version < :v";

/// How often a write whose condition failed without naming the stored item (a store
/// that ignores `ReturnValuesOnConditionCheckFailure`) is tried again when the item
/// has meanwhile been purged.
const MAX_ATTEMPTS: u32 = 8;

/// The pauses between attempts that met a transaction conflict: full jitter, the cap
/// doubling from 2 ms to 100 ms.
pub(crate) fn conflict_backoff() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(100),
        multiplier: 2.0,
        max_attempts: 16,
        max_age: Duration::from_secs(30),
    }
}

/// Waits before retry `retry` (0 for the first) of `policy`.
pub(crate) async fn pause(policy: &RetryPolicy, retry: u32) {
    tokio::time::sleep(policy.backoff(retry, Jitter::shared().unit())).await;
}

/// What a failed condition means, given the stored version: `Superseded` when it is at
/// least the new one; an error when it is lower, which only an item whose version is
/// not in mux's form can cause.
pub(crate) fn superseded(key: &Key, stored: Version, new: Version) -> Result<PutOutcome> {
    if stored >= new {
        return Ok(PutOutcome::Superseded { stored });
    }
    Err(Error::new(
        ErrorKind::Corrupt,
        format!(
            "{key}: DynamoDB refused version {new} over stored version {stored}: the item's \
             {VERSION} is not in mux's lowercase fixed-width form"
        ),
    ))
}

impl Core {
    /// Makes sure the index items of `partitions` exist: written (unconditionally and
    /// idempotently) the first time this process writes to a partition, before the
    /// record, so a record is never in a partition the index does not name.
    pub(crate) async fn index_partitions<'a>(
        &self,
        partitions: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let mut missing: Vec<&str> = partitions
            .into_iter()
            .filter(|p| !self.is_indexed(p))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        try_join_all(missing.into_iter().map(|partition| async move {
            self.client
                .put_item()
                .table_name(self.table())
                .set_item(Some(layout::raw_key(INDEX_PARTITION, partition)))
                .send()
                .await
                .map_err(|e| {
                    map_sdk(e)
                        .error
                        .context(format!("indexing partition {partition:?}"))
                })?;
            self.mark_indexed(partition);
            Ok::<_, Error>(())
        }))
        .await
        .map(|_| ())
    }

    /// One conditional `PutItem`: applied when the item is absent or older; a failed
    /// condition answers with the stored item (`ALL_OLD`), whose version the outcome
    /// names.
    pub(crate) async fn put_one(&self, record: &Record) -> Result<PutOutcome> {
        let key = record.key();
        self.index_partitions([partition_of(key.as_str(), self.depth())])
            .await?;
        self.put_indexed(record).await
    }

    /// [`Core::put_one`] once the partition is indexed.
    pub(crate) async fn put_indexed(&self, record: &Record) -> Result<PutOutcome> {
        let key = record.key();
        let item = layout::encode(record, self.depth());
        for _ in 0..MAX_ATTEMPTS {
            let answer = self
                .client
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression(NEWER_THAN_STORED)
                .expression_attribute_values(":v", layout::s(record.version().to_string()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let err = match answer {
                Ok(_) => return Ok(PutOutcome::Applied),
                Err(err) => err,
            };
            let old = match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => return Err(map_sdk(err).error),
            };
            let stored = match old {
                Some(item) => Some(layout::decode_version(&item)?),
                // The store did not say: read it.
                None => self.stored_version(key).await?,
            };
            match stored {
                Some(stored) => return superseded(key, stored, record.version()),
                // Purged between the condition and the read: try again.
                None => continue,
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{key}: gave up the conditional write after {MAX_ATTEMPTS} attempts, the item \
                 kept changing; it is safe to try again"
            ),
        )
        .temporary())
    }

    /// The stored version of `key` (a strongly consistent read of the version only).
    pub(crate) async fn stored_version(&self, key: &Key) -> Result<Option<Version>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(layout::item_key(key.as_str(), self.depth())))
            .projection_expression(format!("{KEY}, {VERSION}"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(e).error)?;
        out.item
            .map(|item| layout::decode_version(&item))
            .transpose()
    }

    /// A conditional `DeleteItem`: removes the item only if its version is at most
    /// `up_to`.
    pub(crate) async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let answer = self
            .client
            .delete_item()
            .table_name(self.table())
            .set_key(Some(layout::item_key(key.as_str(), self.depth())))
            .condition_expression("mux_version <= :v")
            .expression_attribute_values(":v", layout::s(up_to.to_string()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                // Absent, or newer than `up_to`.
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(map_sdk(err).error),
            },
        }
    }
}
