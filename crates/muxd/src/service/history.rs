//! Temporal reads in the service layer: a key's history and the record as of a time
//! or version, served by the route's history-keeping store (`Capability::history`).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use mux::{AsOf, HistoryPage, HistoryRequest, MAX_HISTORY_LIMIT, Record, Version};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Options, Service, ServiceError, present};

/// One version in a key's history.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The version.
    pub version: String,
    /// When the version was written (RFC 3339, from the version's clock).
    pub time: String,
    /// Whether this version is a delete (a tombstone; no value).
    pub deleted: bool,
    /// The value's length in bytes.
    pub size: u64,
    /// The value as text, when it is UTF-8 (else `value_base64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in standard base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The value's MIME type, if the writer gave one.
    pub content_type: Option<String>,
    /// The record's tags.
    pub tags: BTreeMap<String, String>,
}

/// A page of a key's history, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HistoryReply {
    /// The key, as the caller named it.
    pub key: String,
    /// Versions, newest first, deletes included.
    pub entries: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next (older) page; null at the end.
    pub next_cursor: Option<String>,
}

/// A history request, as text.
#[derive(Debug, Default)]
pub(crate) struct HistoryInput<'a> {
    /// The key.
    pub(crate) key: &'a str,
    /// Continue with versions older than this one.
    pub(crate) cursor: Option<&'a str>,
    /// The page size: 1..=`MAX_HISTORY_LIMIT`; `None`: the default.
    pub(crate) limit: Option<u64>,
}

/// The RFC 3339 time of a version (millisecond precision).
pub(crate) fn version_time(version: Version) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(version.physical_ms());
    humantime::format_rfc3339_millis(at).to_string()
}

impl HistoryEntry {
    /// A record as a history entry.
    pub(crate) fn of(record: Record) -> HistoryEntry {
        let meta = record.meta();
        let (value, value_base64) = match std::str::from_utf8(record.value()) {
            _ if record.is_tombstone() => (None, None),
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(record.value())),
            ),
        };
        HistoryEntry {
            version: meta.version.to_string(),
            time: version_time(meta.version),
            deleted: meta.tombstone,
            size: record.value().len() as u64,
            value,
            value_base64,
            content_type: meta.content_type.clone(),
            tags: meta.tags.clone(),
        }
    }
}

impl HistoryReply {
    /// A page of `key`'s history as JSON.
    pub(crate) fn of(key: &str, page: HistoryPage) -> HistoryReply {
        HistoryReply {
            key: key.to_owned(),
            entries: page.entries.into_iter().map(HistoryEntry::of).collect(),
            next_cursor: page.next_cursor.map(|v| v.to_string()),
        }
    }
}

impl Service<'_> {
    /// One page of the caller's key's history (entries under the caller's key).
    pub(crate) async fn history(
        &self,
        input: &HistoryInput<'_>,
        options: &Options<'_>,
    ) -> Result<HistoryPage, ServiceError> {
        let key = self.key(input.key)?;
        let mut request = HistoryRequest::new(key);
        request.cursor = present(input.cursor)
            .map(|c| {
                c.parse::<Version>().map_err(|e| {
                    ServiceError::invalid(format!(
                        "cursor {c:?} is not a version ({}): pass the next_cursor of the previous page",
                        e.message()
                    ))
                })
            })
            .transpose()?;
        if let Some(limit) = input.limit {
            request.limit = match usize::try_from(limit) {
                Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ServiceError::invalid(format!(
                        "limit {limit} is out of range: use 1 to {MAX_HISTORY_LIMIT}"
                    )));
                }
            };
        }
        self.state
            .mux()
            .history(&request, &self.read_options(options)?)
            .await
            .map_err(|e| self.error(e))
    }

    /// The caller's live record under `key` as of `at` (a version, an RFC 3339 time or
    /// Unix milliseconds); `None`: missing or deleted then.
    pub(crate) async fn get_as_of(
        &self,
        key: &str,
        at: &str,
        options: &Options<'_>,
    ) -> Result<Option<Record>, ServiceError> {
        let key = self.key(key)?;
        let at: AsOf = at.parse().map_err(|e| self.error(e))?;
        self.state
            .mux()
            .get_as_of(&key, at, &self.read_options(options)?)
            .await
            .map_err(|e| self.error(e))
    }
}
