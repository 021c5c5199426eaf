//! The `/v1/admin/*` handlers. What affects every tenant — reload, health internals,
//! every tenant's dead letters — needs an operator (an `[auth.operator]` token, or auth
//! off on loopback). A tenant token with the `admin` scope reaches only its own
//! namespace: its own dead letters, under its own key names; another tenant's dead
//! letter answers 404, as if absent.
//!
//! Consistency checks and migration — verify, repair, backfill and tombstone GC jobs,
//! export and import (`crate::jobs`, over `mux-sync`) — read and write every tenant's
//! keys as stored, so they are the operator's too.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mux::{DeadLetter, ErrorKind, Key, TENANTS_ROOT, Tenant};
use serde_json::json;

use crate::AppState;
use crate::auth::{Denied, Principal, Scope};
use crate::jobs::{self, ExportQuery, ImportQuery};
use crate::service::ServiceError;
use crate::service::http::{Path, Query};

/// The path prefix of the admin API: the only paths an operator token is accepted on
/// (an operator names no tenant, so it has no keys to read or write).
pub(crate) const PREFIX: &str = "/v1/admin/";

/// The caller, as the auth middleware found it.
type Who = axum::Extension<Principal>;

/// Who acted, as the audit trail names it, and the tenant acted for.
fn actor_of(who: &Principal) -> (String, Option<String>) {
    match who {
        Principal::Local => ("local".into(), None),
        Principal::Operator { subject } => (
            match subject {
                Some(s) => format!("operator:{s}"),
                None => "operator".into(),
            },
            None,
        ),
        Principal::Tenant(id) => (
            format!("tenant:{}", id.tenant),
            Some(id.tenant.as_str().to_owned()),
        ),
    }
}

/// Runs an admin action and records it in the audit trail with its outcome (a full
/// audit queue refuses it first, as configured).
async fn audited<T>(
    state: &AppState,
    who: &Principal,
    action: String,
    key: Option<String>,
    op: impl Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    let slot = state.audit.reserve()?;
    let result = op.await;
    let (actor, tenant) = actor_of(who);
    slot.record(crate::audit::Pending {
        actor,
        tenant,
        action,
        key,
        version: None,
        outcome: match &result {
            Ok(_) => "ok".into(),
            Err(e) => e.kind().into(),
        },
        request_id: state.audit.request_id(),
    });
    result
}

/// Refuses everyone but an operator, saying what to use or configure instead.
pub(crate) fn operator_only(
    state: &AppState,
    who: &Principal,
    what: &str,
) -> Result<(), ServiceError> {
    let Principal::Tenant(id) = who else {
        return Ok(());
    };
    let has_operator = state.live().auth.as_ref().is_some_and(|v| v.has_operator());
    let message = if has_operator {
        format!(
            "{what} affects every tenant and needs an operator token (signed with the \
             [auth.operator] key, for its audience); tenant {}'s token cannot, whatever its \
             scopes — a tenant's admin scope covers only its own dead letters",
            id.tenant
        )
    } else {
        format!(
            "{what} affects every tenant and needs an operator token, but no operator is \
             configured: add an [auth.operator] section (algorithm, its own secret, \
             public_key_pem or jwks, and audience), or reload with SIGHUP on the host"
        )
    };
    Err(ServiceError::from(Denied::Forbidden(message)))
}

/// Whose dead letters a caller may see and act on.
enum Reach {
    /// An operator: every tenant's, under their stored keys.
    All,
    /// A tenant with the `admin` scope: its own, under its own key names.
    Tenant(Tenant),
}

fn dead_letter_reach(who: &Principal) -> Result<Reach, ServiceError> {
    match who {
        Principal::Local | Principal::Operator { .. } => Ok(Reach::All),
        Principal::Tenant(id) if id.scopes.contains(&Scope::Admin) => {
            Ok(Reach::Tenant(id.tenant.clone()))
        }
        Principal::Tenant(id) => Err(ServiceError::from(Denied::Forbidden(format!(
            "tenant {} lacks the admin scope",
            id.tenant
        )))),
    }
}

/// The tenant whose namespace holds a stored key, if any.
fn tenant_of(stored: &Key) -> Option<&str> {
    let rest = stored
        .as_str()
        .strip_prefix(TENANTS_ROOT)?
        .strip_prefix('/')?;
    rest.split_once('/').map(|(tenant, _)| tenant)
}

/// A dead letter as `reach` may see it, `None` when it is another tenant's.
fn visible(reach: &Reach, d: &DeadLetter) -> Option<serde_json::Value> {
    let stored = d.record.key();
    let (tenant, key, error) = match reach {
        Reach::All => (
            tenant_of(stored).map(str::to_owned),
            stored.clone(),
            d.error.clone(),
        ),
        Reach::Tenant(t) => (
            Some(t.as_str().to_owned()),
            t.logical_key(stored)?,
            t.scrub(&d.error),
        ),
    };
    Some(json!({
        "id": d.id, "tenant": tenant, "backend": d.backend, "key": key.as_str(),
        "version": d.record.version().to_string(), "error": error,
        "attempts": d.attempts, "failed_at_ms": d.failed_at_ms,
    }))
}

fn no_dead_letter(id: u64) -> ServiceError {
    ServiceError::from(mux::Error::new(
        ErrorKind::NotFound,
        format!("no dead letter {id}"),
    ))
}

/// Refuses (as absent) a dead letter that is not within the caller's reach.
async fn within_reach(state: &AppState, reach: &Reach, id: u64) -> Result<(), ServiceError> {
    let Reach::Tenant(t) = reach else {
        return Ok(());
    };
    let mine = state
        .mux()
        .dead_letters()
        .await?
        .iter()
        .any(|d| d.id == id && t.logical_key(d.record.key()).is_some());
    if mine {
        Ok(())
    } else {
        Err(no_dead_letter(id))
    }
}

#[utoipa::path(get, path = "/v1/admin/health",
    responses((status = 200, description = "One health report per backend (operators only)"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn health_report(
    State(state): State<AppState>,
    who: Who,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "GET /v1/admin/health")?;
    Ok(axum::Json(state.mux().health_report().await?).into_response())
}

#[utoipa::path(post, path = "/v1/admin/backends/{name}/restored", params(("name" = String, Path)),
    responses((status = 200, description = "The store is marked afresh and reads use it again \
               (after the operator refilled it; see [mux.resilience] markers)"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 404, body = crate::service::ErrorBody, description = "No backend has that name")))]
pub(crate) async fn mark_restored(
    State(state): State<AppState>,
    who: Who,
    Path(name): Path<String>,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "POST /v1/admin/backends/{name}/restored")?;
    let mux = state.mux();
    let was = crate::antientropy::staleness(&mux, &name);
    mux.mark_restored(&name).await?;
    tracing::info!(backend = %name, was = ?was, "store declared restored by an operator");
    Ok(axum::Json(json!({ "backend": name, "was_stale": was })).into_response())
}

#[utoipa::path(get, path = "/v1/admin/dead-letters",
    responses((status = 200, description = "The dead-letter queue: every tenant's for an operator, \
               the caller's own (under its own key names) for a tenant with the admin scope"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    who: Who,
) -> Result<Response, ServiceError> {
    let reach = dead_letter_reach(&who)?;
    let dead: Vec<serde_json::Value> = state
        .mux()
        .dead_letters()
        .await?
        .iter()
        .filter_map(|d| visible(&reach, d))
        .collect();
    Ok(axum::Json(json!({ "dead_letters": dead })).into_response())
}

#[utoipa::path(post, path = "/v1/admin/dead-letters/{id}/replay", params(("id" = u64, Path, minimum = 0)),
    responses((status = 200, description = "Handed to its backend again"),
              (status = 400, body = crate::service::ErrorBody, description = "The id is not a number"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 404, body = crate::service::ErrorBody, description = "No such dead letter within the caller's reach")))]
pub(crate) async fn replay_dead_letter(
    State(state): State<AppState>,
    who: Who,
    Path(id): Path<u64>,
) -> Result<Response, ServiceError> {
    let reach = dead_letter_reach(&who)?;
    within_reach(&state, &reach, id).await?;
    audited(
        &state,
        &who,
        "dead_letter_replay".into(),
        Some(id.to_string()),
        async {
            if state.mux().replay_dead_letter(id).await? {
                Ok(axum::Json(json!({"replayed": id})).into_response())
            } else {
                Err(no_dead_letter(id))
            }
        },
    )
    .await
}

#[utoipa::path(delete, path = "/v1/admin/dead-letters/{id}", params(("id" = u64, Path, minimum = 0)),
    responses((status = 200, description = "Discarded"),
              (status = 400, body = crate::service::ErrorBody, description = "The id is not a number"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 404, body = crate::service::ErrorBody, description = "No such dead letter within the caller's reach")))]
pub(crate) async fn discard_dead_letter(
    State(state): State<AppState>,
    who: Who,
    Path(id): Path<u64>,
) -> Result<Response, ServiceError> {
    let reach = dead_letter_reach(&who)?;
    within_reach(&state, &reach, id).await?;
    audited(
        &state,
        &who,
        "dead_letter_discard".into(),
        Some(id.to_string()),
        async {
            if state.mux().discard_dead_letter(id).await? {
                Ok(axum::Json(json!({"discarded": id})).into_response())
            } else {
                Err(no_dead_letter(id))
            }
        },
    )
    .await
}

/// `POST /v1/admin/reload` with a TOML configuration as the body (operators only):
/// validated and swapped in atomically; an invalid one is refused with its errors and
/// the old one keeps serving.
#[utoipa::path(post, path = "/v1/admin/reload", request_body(content = String, content_type = "application/toml"),
    responses((status = 200, description = "Swapped in"), (status = 400, body = crate::service::ErrorBody),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn reload(
    State(state): State<AppState>,
    who: Who,
    body: Bytes,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "POST /v1/admin/reload")?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ServiceError::from(mux::Error::invalid_input("the configuration is not UTF-8"))
    })?;
    let by = match &*who {
        Principal::Operator { subject } => format!(
            "operator {} over REST",
            subject.as_deref().unwrap_or("(no subject)")
        ),
        _ => "POST /v1/admin/reload (auth off, loopback)".to_owned(),
    };
    let config = crate::ServerConfig::from_toml(text).inspect_err(|e| {
        tracing::warn!(by, error = %e, "reload refused; the old configuration keeps serving");
    })?;
    // reload_by records the reload in the audit trail.
    state.reload_by(config, &by).await?;
    Ok(axum::Json(json!({"reloaded": true})).into_response())
}

/// `POST /v1/admin/jobs` (operators only): starts a verify, repair, backfill or GC job
/// in the background; poll `GET /v1/admin/jobs/{id}`.
#[utoipa::path(post, path = "/v1/admin/jobs", request_body = crate::jobs::JobRequest,
    responses((status = 202, body = crate::jobs::JobView, description = "Started (state `running`): poll `GET /v1/admin/jobs/{id}`"),
              (status = 400, body = crate::service::ErrorBody, description = "Not a valid job: bad JSON, prefix, grace, an unknown store, too few stores, a backfill without a target"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 409, body = crate::service::ErrorBody, description = "The same checkpointed job is running already"),
              (status = 503, body = crate::service::ErrorBody, description = "100 jobs are running already")))]
pub(crate) async fn start_job(
    State(state): State<AppState>,
    who: Who,
    body: Bytes,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "POST /v1/admin/jobs")?;
    let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let action = format!("job:{}", asked["kind"].as_str().unwrap_or("?"));
    let prefix = asked["prefix"].as_str().map(str::to_owned);
    audited(&state, &who, action, prefix, async {
        let view = state.jobs.start(&state, &body)?;
        Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response())
    })
    .await
}

/// `GET /v1/admin/jobs` (operators only).
#[utoipa::path(get, path = "/v1/admin/jobs",
    responses((status = 200, body = crate::jobs::JobList, description = "The jobs this muxd keeps in memory (the last 100), oldest first"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    who: Who,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "GET /v1/admin/jobs")?;
    Ok(axum::Json(state.jobs.list()).into_response())
}

/// `GET /v1/admin/jobs/{id}` (operators only).
#[utoipa::path(get, path = "/v1/admin/jobs/{id}", params(("id" = String, Path, description = "The id `POST /v1/admin/jobs` answered")),
    responses((status = 200, body = crate::jobs::JobView, description = "The job: its state, live progress and, once done, its report"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 404, body = crate::service::ErrorBody, description = "No such job (jobs are kept in memory: the last 100, none across a restart)")))]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "GET /v1/admin/jobs/{id}")?;
    Ok(axum::Json(state.jobs.get(&id)?).into_response())
}

/// `GET /v1/admin/export` (operators only): the records under a prefix as JSON lines
/// (`mux_sync::format`), streamed as they are read.
#[utoipa::path(get, path = "/v1/admin/export",
    params(("prefix" = Option<String>, Query, nullable = false, description = "The keys under this prefix (whole segments), as stored: a tenant's are under `tenants/<tenant>/`. Default: every key"),
           ("as_of" = Option<String>, Query, nullable = false, min_length = 1, description = "Export each key as it stood then: a version, an RFC 3339 time or Unix milliseconds (keys changed since need a store keeping history)"),
           ("backends" = Option<String>, Query, nullable = false, description = "Read these stores (`a,b`; each key from the one holding its highest version) instead of muxd's routing")),
    responses((status = 200, content_type = "application/x-ndjson", body = String,
               description = "A header line, one line per record in key order (tombstones included; metadata exactly, the value in base64) and an end line counting the records. An export cut short by an error ends with an error line (an ErrorBody: `{\"error\":{\"kind\":…,\"message\":…}}`) in place of its end line"),
              (status = 400, body = crate::service::ErrorBody, description = "A bad prefix, as_of or store name"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    who: Who,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "GET /v1/admin/export")?;
    let lines = jobs::export(&state, query)?;
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(lines));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `POST /v1/admin/import` (operators only): an export, read line by line and written
/// at each record's own version.
#[utoipa::path(post, path = "/v1/admin/import",
    params(("backends" = Option<String>, Query, nullable = false, description = "Write into these stores (`a,b`) instead of through muxd's routing")),
    request_body(content = String, content_type = "application/x-ndjson", description = "An export (`GET /v1/admin/export`), streamed; not bound by max_body_bytes"),
    responses((status = 200, body = crate::jobs::ImportReply, description = "Imported: every record written at its own version (a second import changes nothing)"),
              (status = 400, body = crate::service::ErrorBody, description = "Not a mux export, damaged, or cut short (its end line missing or miscounting); the records before the problem were imported, which is safe"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 503, body = crate::service::ErrorBody, description = "A store could not take the writes")))]
pub(crate) async fn import(
    State(state): State<AppState>,
    who: Who,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "POST /v1/admin/import")?;
    audited(&state, &who, "import".into(), None, async {
        let reply = jobs::import(&state, query, body).await?;
        Ok(axum::Json(reply).into_response())
    })
    .await
}

/// `DELETE /v1/admin/tenants/{tenant}` (operators only): erases every record of the
/// tenant from every store, with its dead letters, owed writes and cached entries.
#[utoipa::path(delete, path = "/v1/admin/tenants/{tenant}", params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, description = "`{\"tenant\", \"complete\", \"stores\": [{\"backend\", \"purged\", \"error\"}], \"dead_letters\", \"owed_writes\"}`; `complete` false names the stores to erase again"),
              (status = 400, body = crate::service::ErrorBody, description = "Not a tenant name"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn erase_tenant(
    State(state): State<AppState>,
    who: Who,
    Path(tenant): Path<String>,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "DELETE /v1/admin/tenants/{tenant}")?;
    let tenant = Tenant::new(&tenant)?;
    let prefix = tenant.storage_prefix(&mux::Prefix::all())?;
    audited(
        &state,
        &who,
        "erase".into(),
        Some(tenant.as_str().to_owned()),
        async {
            let report = state
                .mux()
                .erase(&prefix, std::time::Duration::from_secs(10))
                .await?;
            tracing::warn!(tenant = %tenant, complete = report.complete, "tenant erased");
            let stores: Vec<serde_json::Value> = report
                .stores
                .iter()
                .map(|s| json!({"backend": s.backend, "purged": s.purged, "error": s.error}))
                .collect();
            Ok(axum::Json(json!({
                "tenant": tenant.as_str(),
                "complete": report.complete,
                "stores": stores,
                "dead_letters": report.dead_letters,
                "owed_writes": report.owed_writes,
            }))
            .into_response())
        },
    )
    .await
}

/// `GET /v1/admin/tenants/{tenant}/usage` (operators only): requests, bytes written
/// and read, bytes and keys stored, bytes written per backend, and the limits.
#[utoipa::path(get, path = "/v1/admin/tenants/{tenant}/usage", params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, description = "`{\"tenant\", \"requests\": {\"read\", \"write\"}, \"bytes_written\", \"bytes_read\", \"bytes_stored\", \"keys_stored\", \"bytes_written_by_backend\", \"limits\"}`"),
              (status = 400, body = crate::service::ErrorBody, description = "Not a tenant name"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody)))]
pub(crate) async fn tenant_usage(
    State(state): State<AppState>,
    who: Who,
    Path(tenant): Path<String>,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "GET /v1/admin/tenants/{tenant}/usage")?;
    let tenant = Tenant::new(&tenant)?;
    let report = state.quotas.report(&state.mux(), &tenant).await?;
    Ok(axum::Json(report).into_response())
}

/// `GET /v1/admin/audit` query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    tenant: Option<String>,
    key: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// A time bound: Unix milliseconds or RFC 3339.
fn millis(what: &str, text: &str) -> Result<u64, ServiceError> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .ok_or_else(|| {
            ServiceError::invalid(format!(
                "{what} \"{text}\" is neither Unix milliseconds nor an RFC 3339 time (2026-12-04T10:00:00Z)"
            ))
        })
}

fn audit_on(state: &AppState) -> Result<&crate::audit::AuditConfig, ServiceError> {
    if state.audit.enabled() {
        Ok(state.audit.config())
    } else {
        Err(ServiceError::from(mux::Error::new(
            ErrorKind::NotFound,
            "the audit trail is off: set [audit] enabled = true",
        )))
    }
}

/// `GET /v1/admin/audit` (operators only): the events every node wrote, by node and
/// sequence number, filtered.
#[utoipa::path(get, path = "/v1/admin/audit",
    params(("tenant" = Option<String>, Query, nullable = false, description = "Only this tenant's events"),
           ("key" = Option<String>, Query, nullable = false, description = "Only events on this key"),
           ("since" = Option<String>, Query, nullable = false, description = "Unix milliseconds or RFC 3339"),
           ("until" = Option<String>, Query, nullable = false, description = "Unix milliseconds or RFC 3339")),
    responses((status = 200, description = "`{\"events\": [AuditEvent…], \"dropped\": n}`"),
              (status = 400, body = crate::service::ErrorBody), (status = 401, body = crate::service::ErrorBody),
              (status = 403, body = crate::service::ErrorBody),
              (status = 404, body = crate::service::ErrorBody, description = "The audit trail is off")))]
pub(crate) async fn audit_events(
    State(state): State<AppState>,
    who: Who,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "GET /v1/admin/audit")?;
    let config = audit_on(&state)?;
    let since = query
        .since
        .as_deref()
        .map(|t| millis("since", t))
        .transpose()?;
    let until = query
        .until
        .as_deref()
        .map(|t| millis("until", t))
        .transpose()?;
    let mut events = crate::audit::read_events(&state.mux(), &config.prefix).await?;
    events.retain(|e| {
        query
            .tenant
            .as_ref()
            .is_none_or(|t| e.tenant.as_ref() == Some(t))
            && query.key.as_ref().is_none_or(|k| e.key.as_ref() == Some(k))
            && since.is_none_or(|s| e.time_ms >= s)
            && until.is_none_or(|u| e.time_ms <= u)
    });
    events.sort_by_key(|e| (e.node, e.seq));
    Ok(axum::Json(json!({"events": events, "dropped": state.audit.dropped()})).into_response())
}

/// `GET /v1/admin/audit/verify` (operators only): checks each node's hash chain.
#[utoipa::path(get, path = "/v1/admin/audit/verify",
    responses((status = 200, body = crate::audit::VerifyReport, description = "`ok` false names each missing or altered event"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 404, body = crate::service::ErrorBody, description = "The audit trail is off")))]
pub(crate) async fn audit_verify(
    State(state): State<AppState>,
    who: Who,
) -> Result<Response, ServiceError> {
    operator_only(&state, &who, "GET /v1/admin/audit/verify")?;
    let config = audit_on(&state)?;
    let live = state.live();
    let report = crate::audit::verify(
        &live.mux,
        &config.prefix,
        live.config.mux.node_id,
        state.audit.head_seq(),
    )
    .await?;
    Ok(axum::Json(report).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_of_a_stored_key() {
        let key = |k: &str| Key::new(k).unwrap();
        assert_eq!(tenant_of(&key("tenants/acme/a/b")), Some("acme"));
        assert_eq!(tenant_of(&key("tenants/acme")), None);
        assert_eq!(tenant_of(&key("tenantsx/acme/a")), None);
        assert_eq!(tenant_of(&key("plain/key")), None);
    }
}
