//! # mux-object
//!
//! Conditional writes for object stores: the one read–ETag–decide–write loop that
//! mux's object-store backends (S3, Azure Blob) share.
//!
//! Object stores have no "write if newer". They have ETags and conditional requests:
//! a write with `If-Match: <etag>` succeeds only while the object still has that ETag,
//! one with `If-None-Match: *` only while there is no object. [`put`] builds mux's
//! versioned write on top of them:
//!
//! 1. read the stored object's version and ETag ([`ConditionalStore::head`]);
//! 2. if the stored version is at least the new one, report
//!    [`PutOutcome::Superseded`] and write nothing;
//! 3. write with [`Condition::Match`] on the ETag read, or [`Condition::Absent`] when
//!    there was no object ([`ConditionalStore::put_if`]);
//! 4. when the store refuses the condition (another writer got in between), pause
//!    briefly (full jitter from [`mux_core::resilience::Jitter::shared`], see
//!    [`backoff_policy`]) and start again at 1, at most [`MAX_ATTEMPTS`] times; then
//!    fail with a temporary [`ErrorKind::Conflict`] naming the key.
//!
//! **Lost responses.** A write can land while its answer is lost: the store's client
//! retried it and the retry failed its condition (the object was changed by that very
//! write), or the answer never came (a temporary error). So after a refused or
//! ambiguous attempt, finding this very record stored (same version, CRC-32 and
//! tombstone flag, [`StoredObject::holds`]) means it was applied, and [`put`] reports
//! [`PutOutcome::Applied`]. The price: two concurrent writers of the identical record
//! may both report `Applied`; the stored record is the same either way. A temporary
//! error after which the record is not found is returned as it is (the coordinator
//! retries it); this loop is not a transport retry.
//!
//! [`purge`] is the same loop around a delete conditional on the ETag of the version it
//! checked ([`ConditionalStore::delete_if`]).
//!
//! ```
//! use mux_core::{Key, Record, Result, Version, async_trait};
//! use mux_object::{Condition, ConditionalStore, StoredObject};
//!
//! /// A store that is always empty and refuses every write.
//! struct Closed;
//!
//! #[async_trait]
//! impl ConditionalStore for Closed {
//!     async fn head(&self, _key: &Key) -> Result<Option<StoredObject>> {
//!         Ok(None)
//!     }
//!     async fn put_if(&self, _record: &Record, _condition: &Condition) -> Result<bool> {
//!         Ok(false)
//!     }
//!     async fn delete_if(&self, _key: &Key, _etag: &str) -> Result<bool> {
//!         Ok(false)
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let record = Record::new(Key::new("k").unwrap(), "v", Version::new(1, 0, 1));
//! let err = mux_object::put(&Closed, &record).await.unwrap_err();
//! assert!(err.is_temporary());
//! assert!(err.message().contains("k:"));
//! # });
//! ```
#![deny(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use mux_core::resilience::{Jitter, RetryPolicy};
use mux_core::{Error, ErrorKind, Key, PutOutcome, Record, Result, Version};

/// How many conditional attempts [`put`] and [`purge`] make before they give up with a
/// temporary `Conflict`: enough for dozens of writers racing on one key (each round
/// lets one of them through, and the lower versions then stop as `Superseded`).
pub const MAX_ATTEMPTS: u32 = 64;

/// The pauses between conditional attempts: full jitter, the cap doubling from 1 ms to
/// 50 ms, [`MAX_ATTEMPTS`] attempts. Racing writers spread out instead of colliding
/// again; the whole loop waits about 1.5 s at worst.
pub fn backoff_policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(50),
        multiplier: 2.0,
        max_attempts: MAX_ATTEMPTS,
        ..RetryPolicy::default()
    }
}

/// The condition of one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Write only if there is no object (`If-None-Match: *`).
    Absent,
    /// Write only if the object still has this ETag (`If-Match: <etag>`).
    Match(String),
}

impl Condition {
    /// The ETag of [`Condition::Match`]; `None` for [`Condition::Absent`].
    pub fn etag(&self) -> Option<&str> {
        match self {
            Condition::Absent => None,
            Condition::Match(etag) => Some(etag),
        }
    }
}

/// What a store tells about the object of a key: the record it holds and its ETag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The stored record's version.
    pub version: Version,
    /// The stored record's CRC-32.
    pub checksum: u32,
    /// Whether the stored record is a tombstone.
    pub tombstone: bool,
    /// The object's ETag, as the store sent it (quotes included, if any).
    pub etag: String,
}

impl StoredObject {
    /// Whether the object holds `record`: the same version, CRC-32 and tombstone flag.
    pub fn holds(&self, record: &Record) -> bool {
        self.version == record.version()
            && self.checksum == record.meta().checksum
            && self.tombstone == record.is_tombstone()
    }
}

/// An object store with conditional requests, as [`put`] and [`purge`] need it.
///
/// Errors are returned as mux errors, temporary where the store's answer is (throttling,
/// 5xx, timeouts, lost connections).
#[async_trait]
pub trait ConditionalStore: Send + Sync {
    /// The object of `key`: its record's version, CRC-32 and tombstone flag, and its
    /// ETag; `None` when there is no object.
    async fn head(&self, key: &Key) -> Result<Option<StoredObject>>;

    /// Writes `record` (value, metadata, content type) under `condition`: `Ok(true)`
    /// when written, `Ok(false)` when the store refused the condition (412, a 409 for
    /// a conflicting conditional write, a 404 for an object gone meanwhile). An
    /// implementation may upload in parts or blocks, as long as the object changes
    /// only at the final, conditional request.
    async fn put_if(&self, record: &Record, condition: &Condition) -> Result<bool>;

    /// Deletes the object of `key` if its ETag is still `etag`: `Ok(true)` when
    /// deleted, `Ok(false)` when the condition failed or the object was gone.
    async fn delete_if(&self, key: &Key, etag: &str) -> Result<bool>;
}

/// Writes `record` if its version is higher than the stored one (see the crate docs).
pub async fn put<S: ConditionalStore + ?Sized>(store: &S, record: &Record) -> Result<PutOutcome> {
    let key = record.key();
    let policy = backoff_policy();
    // Whether an earlier attempt was refused: it may have been this write's own retry.
    let mut refused = false;
    for attempt in 0..policy.max_attempts {
        if attempt > 0 {
            pause(&policy, attempt).await;
        }
        let stored = store.head(key).await?;
        if refused && stored.as_ref().is_some_and(|s| s.holds(record)) {
            return Ok(PutOutcome::Applied);
        }
        let outcome = PutOutcome::decide(stored.as_ref().map(|s| s.version), record.version());
        if outcome.is_superseded() {
            return Ok(outcome);
        }
        let condition = match stored {
            Some(stored) => Condition::Match(stored.etag),
            None => Condition::Absent,
        };
        match store.put_if(record, &condition).await {
            Ok(true) => return Ok(PutOutcome::Applied),
            Ok(false) => {
                tracing::debug!(key = %key, attempt, "conditional write refused, reading again");
                refused = true;
            }
            // The write may have landed with its answer lost.
            Err(e) if e.is_temporary() => {
                return match store.head(key).await {
                    Ok(Some(stored)) if stored.holds(record) => Ok(PutOutcome::Applied),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    }
    Err(gave_up(key, policy.max_attempts, "write"))
}

/// Deletes the object of `key` if its version is at most `up_to`, conditional on the
/// ETag of the version checked; `Ok(true)` when it was removed.
///
/// When a delete was refused or its answer lost and the object is then gone, the
/// version checked was removed (by this delete, retried by the store's client, or by a
/// concurrent purge), and `purge` reports `true`.
pub async fn purge<S: ConditionalStore + ?Sized>(
    store: &S,
    key: &Key,
    up_to: Version,
) -> Result<bool> {
    let policy = backoff_policy();
    let mut refused = false;
    for attempt in 0..policy.max_attempts {
        if attempt > 0 {
            pause(&policy, attempt).await;
        }
        let Some(stored) = store.head(key).await? else {
            return Ok(refused);
        };
        if stored.version > up_to {
            return Ok(false);
        }
        match store.delete_if(key, &stored.etag).await {
            Ok(true) => return Ok(true),
            Ok(false) => refused = true,
            Err(e) if e.is_temporary() => {
                return match store.head(key).await {
                    Ok(None) => Ok(true),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    }
    Err(gave_up(key, policy.max_attempts, "purge"))
}

/// The pause before attempt `attempt` (1 for the first retry).
async fn pause(policy: &RetryPolicy, attempt: u32) {
    tokio::time::sleep(policy.backoff(attempt - 1, Jitter::shared().unit())).await;
}

fn gave_up(key: &Key, attempts: u32, what: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{key}: gave up the conditional {what} after {attempts} attempts, concurrent \
             writers kept changing the object; it is safe to try again"
        ),
    )
    .temporary()
}

#[cfg(test)]
mod tests;
