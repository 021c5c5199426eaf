//! The service layer under REST and gRPC: scope check → tenant → options (parsed and
//! validated once) → the `Mux` call (which publishes the change to the feed) → a typed
//! result.
//!
//! The transports are thin adapters: they turn their input into the text this layer
//! takes (header values, protobuf strings), call it, and render what it returns. The
//! typed results here ([`WriteReply`], [`ListReply`], [`ErrorBody`]) are what REST
//! serializes and what the OpenAPI document describes, so the two cannot drift apart.

pub(crate) mod history;
pub(crate) mod http;
pub(crate) mod tags;
pub(crate) mod watch;

use std::collections::BTreeMap;

use bytes::Bytes;
use mux::{
    ErrorKind, Key, ListPage, ListRequest, MAX_LIST_LIMIT, Prefix, ReadOptions, ReadPolicy, Record,
    Tenant, WriteConsistency, WriteOptions, WriteReport,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Denied, Identity, Scope};

/// Why a request failed, in the terms both transports render: the kind (a `mux`
/// error kind or one of the transport-level ones), a message for people (with the
/// tenant's keys, never the stored `tenants/<t>/…` ones) and, when a write missed its
/// consistency level, each backend's outcome.
#[derive(Debug)]
pub(crate) struct ServiceError {
    failure: Failure,
    message: String,
    backends: Option<Vec<BackendOutcome>>,
}

/// The kinds of failure, each with one HTTP status and one gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An error from `mux` (or an input refused here with a `mux` kind).
    Mux(ErrorKind),
    /// No valid credentials.
    Unauthenticated,
    /// Valid credentials without the right.
    Forbidden,
    /// The path exists, the method does not.
    MethodNotAllowed,
    /// No such path.
    NoRoute,
    /// A tenant's quota (`[quotas]`): 429, with `Retry-After` seconds for a rate.
    Quota(Option<u64>),
}

impl ServiceError {
    /// An error of `failure` with `message`.
    pub(crate) fn new(failure: Failure, message: impl Into<String>) -> ServiceError {
        ServiceError {
            failure,
            message: message.into(),
            backends: None,
        }
    }

    /// A tenant over a quota (429 / `RESOURCE_EXHAUSTED`), with the seconds to wait
    /// for a rate limit.
    pub(crate) fn quota(message: impl Into<String>, retry_after_s: Option<u64>) -> ServiceError {
        ServiceError::new(Failure::Quota(retry_after_s), message)
    }

    /// An invalid-input error (400 / `INVALID_ARGUMENT`).
    pub(crate) fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::new(Failure::Mux(ErrorKind::InvalidInput), message)
    }

    /// A `mux` error as the tenant may see it: its namespace scrubbed from the message
    /// and from each backend's error.
    pub(crate) fn from_mux(e: &mux::Error, tenant: Option<&Tenant>) -> ServiceError {
        let scrub = |text: String| match tenant {
            Some(t) => t.scrub(&text),
            None => text,
        };
        ServiceError {
            failure: Failure::Mux(e.kind()),
            message: scrub(e.to_string()),
            backends: WriteReport::of(e).map(|report| backend_outcomes(report, tenant)),
        }
    }

    /// What failed.
    pub(crate) fn failure(&self) -> Failure {
        self.failure
    }

    /// The message, for people.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The kind as the JSON body names it (`invalid_input`, `not_found`, …).
    pub(crate) fn kind(&self) -> &'static str {
        match self.failure {
            Failure::Mux(kind) => kind.as_str(),
            Failure::Unauthenticated => "unauthenticated",
            Failure::Forbidden => "permission_denied",
            Failure::MethodNotAllowed => "method_not_allowed",
            Failure::NoRoute => "not_found",
            Failure::Quota(_) => "quota_exceeded",
        }
    }

    /// The documented JSON body.
    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind().to_owned(),
                message: self.message.clone(),
                backends: self.backends.clone(),
            },
        }
    }
}

impl From<mux::Error> for ServiceError {
    fn from(e: mux::Error) -> Self {
        ServiceError::from_mux(&e, None)
    }
}

impl From<Denied> for ServiceError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated(m) => ServiceError::new(Failure::Unauthenticated, m),
            Denied::Forbidden(m) => ServiceError::new(Failure::Forbidden, m),
        }
    }
}

/// Every error: `{"error":{"kind":…,"message":…}}`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid_input`, `not_found`, `too_large`, `conflict`, `unauthenticated`,
    /// `permission_denied`, `method_not_allowed`, `consistency_not_met`, `unavailable`,
    /// `timeout`, `overloaded`, `unsupported`, `corrupt`, `internal`.
    pub kind: String,
    /// For people: what was wrong and what to do.
    pub message: String,
    /// When a write missed its consistency level: each backend's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<BackendOutcome>>,
}

/// One backend's part in a write.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackendOutcome {
    /// The backend's name.
    pub backend: String,
    /// `primary`, `replica` or `async_replica`.
    pub role: String,
    /// `applied`, `superseded`, `failed` or `pending`.
    pub outcome: String,
    /// Why it failed (only with `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BackendError>,
}

/// A backend's error.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackendError {
    /// The error kind (`unavailable`, `timeout`, …).
    pub kind: String,
    /// For people.
    pub message: String,
}

/// The result of a write or a delete (the version is also in the `ETag`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WriteReply {
    /// The key, as the caller named it.
    pub key: String,
    /// The version written.
    pub version: String,
    /// The consistency level that applied.
    pub consistency: String,
    /// The backends that hold the version.
    pub applied_on: Vec<String>,
    /// Each backend of the route with its outcome.
    pub backends: Vec<BackendOutcome>,
}

/// One listed key.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ListEntry {
    /// The key.
    pub key: String,
    /// Its version.
    pub version: String,
    /// The value's length in bytes.
    pub size: u64,
    /// The value's MIME type, if the writer gave one.
    pub content_type: Option<String>,
    /// The record's tags.
    pub tags: BTreeMap<String, String>,
}

/// A page of keys.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ListReply {
    /// The entries, in byte order of their keys.
    pub entries: Vec<ListEntry>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// The outcome of a delete.
#[derive(Debug)]
pub(crate) struct Deleted {
    /// The tombstone's write.
    pub(crate) reply: WriteReply,
    /// Whether a live record existed (if not, nothing was deleted, but the tombstone
    /// is still written so that a replica that missed an earlier delete converges).
    pub(crate) found: bool,
}

pub use history::{HistoryEntry, HistoryReply};
pub use watch::WatchChange;

/// The options a request may carry, as text, as the transports receive them. Empty
/// strings count as absent (protobuf has no `None`).
#[derive(Debug, Default)]
pub(crate) struct Options<'a> {
    /// `all`, `quorum`, `one`, `primary`, `at_least:N`.
    pub(crate) consistency: Option<&'a str>,
    /// `primary`, `first_healthy`, `fastest`, `hedged`, `hedged:Nms`, `quorum`, `all`.
    pub(crate) read_policy: Option<&'a str>,
    /// Tags: the record's on a write; on a read, the ones that pick tag routes.
    pub(crate) tags: BTreeMap<String, String>,
    /// The value's MIME type (writes).
    pub(crate) content_type: Option<&'a str>,
}

/// A listing request, as text.
#[derive(Debug, Default)]
pub(crate) struct ListInput<'a> {
    /// Keys under this prefix (whole segments).
    pub(crate) prefix: &'a str,
    /// Continue after this key.
    pub(crate) cursor: Option<&'a str>,
    /// The page size: 1..=`MAX_LIST_LIMIT`; `None`: the default.
    pub(crate) limit: Option<u64>,
}

fn present(text: Option<&str>) -> Option<&str> {
    text.filter(|t| !t.is_empty())
}

/// Checks the caller's scope and gives its tenant (`None` with auth off, where
/// everything is allowed).
pub(crate) fn authorize(
    caller: Option<&Identity>,
    scope: Scope,
) -> Result<Option<&Tenant>, ServiceError> {
    match caller {
        None => Ok(None),
        Some(id) if id.scopes.contains(&scope) => Ok(Some(&id.tenant)),
        Some(id) => Err(Denied::Forbidden(format!(
            "tenant {} lacks the {} scope",
            id.tenant,
            format!("{scope:?}").to_lowercase()
        ))
        .into()),
    }
}

/// The operations, for one caller whose scope was checked.
pub(crate) struct Service<'a> {
    state: &'a AppState,
    tenant: Option<Tenant>,
}

impl<'a> Service<'a> {
    /// Checks `scope` for `caller` and returns the service acting for its tenant.
    pub(crate) fn authorize(
        state: &'a AppState,
        caller: Option<&Identity>,
        scope: Scope,
    ) -> Result<Service<'a>, ServiceError> {
        let tenant = authorize(caller, scope)?.cloned();
        if let Some(t) = &tenant {
            match scope {
                Scope::Read => state.quotas.admit(t, crate::quota::Class::Read)?,
                Scope::Write => state.quotas.admit(t, crate::quota::Class::Write)?,
                Scope::Admin => {}
            }
        }
        Ok(Service { state, tenant })
    }

    /// A `mux` error as this caller may see it.
    fn error(&self, e: mux::Error) -> ServiceError {
        ServiceError::from_mux(&e, self.tenant.as_ref())
    }

    fn key(&self, raw: &str) -> Result<Key, ServiceError> {
        if raw.is_empty() {
            return Err(ServiceError::invalid(
                "the key is empty: name one, e.g. /v1/kv/config/app",
            ));
        }
        Key::new(raw).map_err(|e| self.error(e))
    }

    fn write_options(&self, options: &Options<'_>) -> Result<WriteOptions, ServiceError> {
        let consistency = present(options.consistency)
            .map(str::parse::<WriteConsistency>)
            .transpose()
            .map_err(|e| self.error(e))?;
        Ok(WriteOptions {
            consistency,
            tenant: self.tenant.clone(),
            tags: options.tags.clone(),
            content_type: present(options.content_type).map(str::to_owned),
            ..Default::default()
        })
    }

    fn read_options(&self, options: &Options<'_>) -> Result<ReadOptions, ServiceError> {
        let policy = present(options.read_policy)
            .map(str::parse::<ReadPolicy>)
            .transpose()
            .map_err(|e| self.error(e))?;
        Ok(ReadOptions {
            policy,
            tenant: self.tenant.clone(),
            tags: options.tags.clone(),
        })
    }

    /// Writes `value` under `key`.
    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        options: &Options<'_>,
    ) -> Result<WriteReply, ServiceError> {
        let key = self.key(key)?;
        let options = self.write_options(options)?;
        let slot = self.audit_slot(&key)?;
        let len = value.len() as u64;
        let claim = self.storage_claim(&key, Some(len)).await?;
        let result = self.state.mux().write(key.clone(), value, &options).await;
        self.audited(slot, "put", &key, result.as_ref().map(|r| r.version));
        self.metered(claim, &result, len);
        let report = result.map_err(|e| self.error(e))?;
        Ok(self.write_reply(&report))
    }

    /// A tenant's room for a write of `new_len` bytes to `key` (`None`: a delete),
    /// under its storage quota; `None` when nothing is limited or counted.
    async fn storage_claim(
        &self,
        key: &Key,
        new_len: Option<u64>,
    ) -> Result<Option<(i64, i64)>, ServiceError> {
        let Some(t) = &self.tenant else {
            return Ok(None);
        };
        let quotas = &self.state.quotas;
        if !quotas.limits_storage(t) {
            return Ok(None);
        }
        let mux = self.state.mux();
        let read = ReadOptions {
            tenant: Some(t.clone()),
            ..ReadOptions::default()
        };
        let old = mux
            .get_with(key, &read)
            .await
            .map_err(|e| self.error(e))?
            .map(|r| r.value().len() as u64);
        match (new_len, old) {
            (Some(n), old) => quotas.reserve(&mux, t, old, n).await.map(Some),
            // A delete frees the record's bytes and key once it is done.
            (None, Some(o)) => Ok(Some((-(o as i64), -1))),
            (None, None) => Ok(None),
        }
    }

    /// Meters a tenant's write; gives back its storage claim when nothing was written
    /// (a delete's claim is applied when it was).
    fn metered(&self, claim: Option<(i64, i64)>, result: &mux::Result<WriteReport>, len: u64) {
        let Some(t) = &self.tenant else { return };
        let quotas = &self.state.quotas;
        let applied: Vec<&str> = match result {
            Ok(report) => report.applied_on(),
            Err(e) => WriteReport::of(e)
                .map(|r| r.applied_on())
                .unwrap_or_default(),
        };
        if let Some(delta) = claim {
            match (applied.is_empty(), delta.1 < 0) {
                // A put that wrote nothing: its room goes back.
                (true, false) => quotas.adjust(t, (-delta.0, -delta.1)),
                // A delete that happened: its bytes and key are freed.
                (false, true) => quotas.adjust(t, delta),
                _ => {}
            }
        }
        if len > 0 && !applied.is_empty() {
            quotas.wrote(t, len, &applied);
        }
    }

    /// Takes the audit slot of a mutation of `key` (refused when the queue is full
    /// and `when_full = "reject"`); keys under the audit prefix are mux's own.
    fn audit_slot(&self, key: &Key) -> Result<Option<crate::audit::Slot>, ServiceError> {
        let audit = &self.state.audit;
        if !audit.enabled() {
            return Ok(None);
        }
        if self.tenant.is_none() && key.as_str().starts_with(audit.config().prefix.as_str()) {
            return Err(ServiceError::from_mux(
                &mux::Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "{key} is under {}, where muxd keeps its audit trail: only muxd writes there",
                        audit.config().prefix
                    ),
                ),
                None,
            ));
        }
        audit.reserve().map(Some)
    }

    /// Records a mutation of `key` with its outcome.
    fn audited(
        &self,
        slot: Option<crate::audit::Slot>,
        action: &str,
        key: &Key,
        outcome: Result<mux::Version, &mux::Error>,
    ) {
        let Some(slot) = slot else { return };
        slot.record(crate::audit::Pending {
            actor: match &self.tenant {
                Some(t) => format!("tenant:{t}"),
                None => "operator".to_owned(),
            },
            tenant: self.tenant.as_ref().map(|t| t.as_str().to_owned()),
            action: action.to_owned(),
            key: Some(key.as_str().to_owned()),
            version: outcome.as_ref().ok().map(ToString::to_string),
            outcome: match &outcome {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.kind().as_str().to_owned(),
            },
            request_id: self.state.audit.request_id(),
        });
    }

    /// Reads the live record under `key` (`None`: missing or deleted).
    pub(crate) async fn get(
        &self,
        key: &str,
        options: &Options<'_>,
    ) -> Result<Option<Record>, ServiceError> {
        let key = self.key(key)?;
        let options = self.read_options(options)?;
        let record = self
            .state
            .mux()
            .get_with(&key, &options)
            .await
            .map_err(|e| self.error(e))?;
        if let (Some(t), Some(r)) = (&self.tenant, &record) {
            self.state.quotas.read(t, r.value().len() as u64);
        }
        Ok(record)
    }

    /// Deletes `key` and says whether a live record existed (looked up with the read
    /// options first). The tombstone is written either way.
    pub(crate) async fn delete(
        &self,
        key: &str,
        options: &Options<'_>,
    ) -> Result<Deleted, ServiceError> {
        let key = self.key(key)?;
        let write = self.write_options(options)?;
        let read = self.read_options(options)?;
        let store = self.state.mux();
        let slot = self.audit_slot(&key)?;
        let claim = self.storage_claim(&key, None).await?;
        let found = store
            .get_with(&key, &read)
            .await
            .map_err(|e| self.error(e))?
            .is_some();
        let result = store.delete(&key, &write).await;
        self.audited(slot, "delete", &key, result.as_ref().map(|r| r.version));
        self.metered(claim, &result, 0);
        let report = result.map_err(|e| self.error(e))?;
        Ok(Deleted {
            reply: self.write_reply(&report),
            found,
        })
    }

    /// One page of the caller's keys under a prefix.
    pub(crate) async fn list(
        &self,
        input: &ListInput<'_>,
        options: &Options<'_>,
    ) -> Result<ListReply, ServiceError> {
        let prefix = Prefix::new(input.prefix).map_err(|e| self.error(e))?;
        let mut request = ListRequest::new(prefix);
        request.cursor = present(input.cursor).map(|c| self.key(c)).transpose()?;
        if let Some(limit) = input.limit {
            request.limit = check_limit(limit)?;
        }
        let page = self
            .state
            .mux()
            .list(&request, &self.read_options(options)?)
            .await
            .map_err(|e| self.error(e))?;
        Ok(list_reply(page))
    }

    fn write_reply(&self, report: &WriteReport) -> WriteReply {
        WriteReply {
            key: report.key.as_str().to_owned(),
            version: report.version.to_string(),
            consistency: report.consistency.to_string(),
            applied_on: report.applied_on().into_iter().map(str::to_owned).collect(),
            backends: backend_outcomes(report, self.tenant.as_ref()),
        }
    }
}

/// A page size: `1..=MAX_LIST_LIMIT`.
pub(crate) fn check_limit(limit: u64) -> Result<usize, ServiceError> {
    match usize::try_from(limit) {
        Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => Ok(n),
        _ => Err(ServiceError::invalid(format!(
            "limit {limit} is out of range: use 1 to {MAX_LIST_LIMIT}"
        ))),
    }
}

fn list_reply(page: ListPage) -> ListReply {
    ListReply {
        entries: page
            .entries
            .into_iter()
            .map(|e| ListEntry {
                key: e.key.as_str().to_owned(),
                version: e.meta.version.to_string(),
                size: e.size,
                content_type: e.meta.content_type,
                tags: e.meta.tags,
            })
            .collect(),
        next_cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
    }
}

fn backend_outcomes(report: &WriteReport, tenant: Option<&Tenant>) -> Vec<BackendOutcome> {
    report
        .backends()
        .map(|b| BackendOutcome {
            backend: b.backend.to_owned(),
            role: role_name(b.role),
            outcome: b.outcome.as_str().to_owned(),
            error: match b.outcome {
                mux::WriteOutcome::Failed(e) => Some(BackendError {
                    kind: e.kind().as_str().to_owned(),
                    message: match tenant {
                        Some(t) => t.scrub(&e.to_string()),
                        None => e.to_string(),
                    },
                }),
                _ => None,
            },
        })
        .collect()
}

/// A role as its config spells it (`async_replica`).
fn role_name(role: mux::Role) -> String {
    match serde_json::to_value(role) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{role:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_the_bounds_name_them() {
        assert_eq!(check_limit(1).unwrap(), 1);
        assert_eq!(check_limit(MAX_LIST_LIMIT as u64).unwrap(), MAX_LIST_LIMIT);
        for bad in [0, MAX_LIST_LIMIT as u64 + 1, u64::MAX] {
            let e = check_limit(bad).unwrap_err();
            assert_eq!(e.kind(), "invalid_input");
            assert!(e.message().contains("use 1 to 10000"), "{}", e.message());
        }
    }

    #[test]
    fn tenant_namespaces_are_scrubbed_from_messages() {
        let acme = Tenant::new("acme").unwrap();
        let e = mux::Error::new(ErrorKind::NotFound, "no record under tenants/acme/a/b");
        let scrubbed = ServiceError::from_mux(&e, Some(&acme));
        assert!(
            scrubbed.message().ends_with("no record under a/b"),
            "{}",
            scrubbed.message()
        );
        assert_eq!(scrubbed.failure(), Failure::Mux(ErrorKind::NotFound));
    }

    #[test]
    fn roles_are_spelled_as_in_the_config() {
        assert_eq!(role_name(mux::Role::AsyncReplica), "async_replica");
        assert_eq!(role_name(mux::Role::Primary), "primary");
    }
}
