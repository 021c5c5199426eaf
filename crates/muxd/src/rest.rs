//! The REST API.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use mux::{
    ErrorKind, Key, ListRequest, Prefix, ReadOptions, ReadPolicy, Tenant, Version,
    WriteConsistency, WriteOptions, WriteReport,
};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::admin;
use crate::auth::{Denied, Identity, Principal, Scope};

/// The caller, as the auth middleware found it (`None` with auth off).
type Caller = axum::Extension<Option<Identity>>;

async fn authenticate(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let principal = match &state.live().auth {
        None => Principal::Local,
        Some(verifier) => {
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::auth::bearer_token);
            let Some(token) = token else {
                return denied(Denied::Unauthenticated(
                    "missing Authorization: Bearer <token>".into(),
                ));
            };
            match verifier.authenticate(token) {
                Ok(principal) => principal,
                Err(d) => return denied(d),
            }
        }
    };
    // Handlers outside the admin API see the tenant (`None` with auth off); an operator
    // token names no tenant, so it reaches only the admin API.
    match &principal {
        Principal::Local => {
            request.extensions_mut().insert(None::<Identity>);
        }
        Principal::Tenant(identity) => {
            request.extensions_mut().insert(Some(identity.clone()));
        }
        Principal::Operator { .. } if !request.uri().path().starts_with(admin::PREFIX) => {
            return denied(Denied::Forbidden(format!(
                "an operator token names no tenant and is accepted only under {}; \
                 use a tenant token here",
                admin::PREFIX
            )));
        }
        Principal::Operator { .. } => {}
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn denied(d: Denied) -> Response {
    let (status, kind, message) = match d {
        Denied::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, "unauthenticated", m),
        Denied::Forbidden(m) => (StatusCode::FORBIDDEN, "permission_denied", m),
    };
    (
        status,
        axum::Json(json!({"error": {"kind": kind, "message": message}})),
    )
        .into_response()
}

/// Checks the caller's scope; with auth off everything is allowed.
fn require(caller: &Option<Identity>, scope: Scope) -> Result<Option<&Tenant>, ApiError> {
    match caller {
        None => Ok(None),
        Some(id) if id.scopes.contains(&scope) => Ok(Some(&id.tenant)),
        Some(id) => Err(ApiError::Denied(Denied::Forbidden(format!(
            "tenant {} lacks the {} scope",
            id.tenant,
            format!("{scope:?}").to_lowercase()
        )))),
    }
}

/// Overrides the route's write consistency: `all`, `quorum`, `one`, `primary`, `at_least:N`.
pub const CONSISTENCY_HEADER: &str = "x-mux-consistency";
/// Overrides the route's read policy: `primary`, `first_healthy`, `fastest`, `hedged`, …
pub const READ_POLICY_HEADER: &str = "x-mux-read-policy";
/// Record tags on a write: `class=pii,team=core`.
pub const TAGS_HEADER: &str = "x-mux-tags";

pub(crate) fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let api = Router::new()
        .route("/v1/kv", get(list))
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/v1/admin/health", get(admin::health_report))
        .route("/v1/admin/dead-letters", get(admin::dead_letters))
        .route(
            "/v1/admin/dead-letters/{id}/replay",
            post(admin::replay_dead_letter),
        )
        .route(
            "/v1/admin/dead-letters/{id}",
            delete(admin::discard_dead_letter),
        )
        .route("/v1/admin/reload", post(admin::reload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(crate::readiness::readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error as JSON: `{"error":{"kind","message"}}` (plus the per-backend outcome when
/// a write missed its consistency level), with the matching status.
pub(crate) enum ApiError {
    Mux(mux::Error),
    Denied(Denied),
}

#[allow(non_snake_case)]
fn ApiError(e: mux::Error) -> ApiError {
    ApiError::Mux(e)
}

impl From<mux::Error> for ApiError {
    fn from(e: mux::Error) -> Self {
        ApiError::Mux(e)
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable
        | ErrorKind::Timeout
        | ErrorKind::Overloaded
        | ErrorKind::ConsistencyNotMet => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            ApiError::Mux(e) => e,
            ApiError::Denied(d) => return denied(d),
        };
        let mut body = json!({"error": {"kind": e.kind().as_str(), "message": e.to_string()}});
        if let Some(report) = WriteReport::of(&e) {
            body["error"]["backends"] = backends_json(report);
        }
        (status_of(e.kind()), axum::Json(body)).into_response()
    }
}

fn bad(message: String) -> ApiError {
    ApiError(mux::Error::invalid_input(message))
}

fn backends_json(report: &WriteReport) -> serde_json::Value {
    report
        .backends()
        .map(|b| {
            let mut v =
                json!({"backend": b.backend, "role": b.role, "outcome": b.outcome.as_str()});
            if let mux::WriteOutcome::Failed(e) = b.outcome {
                v["error"] = json!({"kind": e.kind().as_str(), "message": e.to_string()});
            }
            v
        })
        .collect()
}

/// Tells watchers about a write that went through.
pub(crate) fn publish(
    state: &AppState,
    tenant: Option<&Tenant>,
    report: &WriteReport,
    deleted: bool,
) {
    let _ = state.events.send(crate::Event::Change {
        tenant: tenant.map(|t| t.as_str().to_owned()),
        key: report.key.as_str().to_owned(),
        version: report.version,
        deleted,
    });
}

fn write_response(report: &WriteReport) -> Response {
    let body = json!({
        "key": report.key.as_str(),
        "version": report.version.to_string(),
        "consistency": report.consistency.to_string(),
        "applied_on": report.applied_on(),
        "backends": backends_json(report),
    });
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(report.version));
    response
}

fn etag(version: Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("versions are ASCII")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| bad(format!("header {name} is not valid text")))
        })
        .transpose()
}

fn key_of(raw: &str) -> Result<Key, ApiError> {
    Ok(Key::new(raw)?)
}

fn read_options(headers: &HeaderMap, tenant: Option<&Tenant>) -> Result<ReadOptions, ApiError> {
    let policy = header_str(headers, READ_POLICY_HEADER)?
        .map(str::parse::<ReadPolicy>)
        .transpose()?;
    Ok(ReadOptions {
        policy,
        tenant: tenant.cloned(),
        ..Default::default()
    })
}

#[utoipa::path(put, path = "/v1/kv/{key}",
    params(("key" = String, Path, description = "A key: `/`-separated non-empty segments, no `.`/`..`"),
           ("x-mux-consistency" = Option<String>, Header, description = "all, quorum, one, primary, at_least:N"),
           ("x-mux-tags" = Option<String>, Header, description = "name=value,…")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The value"),
    responses((status = 200, body = crate::openapi::WriteReply), (status = 400, body = crate::openapi::ErrorBody),
              (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody),
              (status = 413, body = crate::openapi::ErrorBody), (status = 503, body = crate::openapi::ErrorBody)))]
pub(crate) async fn put_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = require(&caller, Scope::Write)?;
    let key = key_of(&raw)?;
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorKind::TooLarge
        } else {
            ErrorKind::InvalidInput
        };
        ApiError(mux::Error::new(
            kind,
            format!(
                "request body rejected: {rejection} (the limit is {} bytes)",
                state.max_body_bytes
            ),
        ))
    })?;
    let consistency = header_str(&headers, CONSISTENCY_HEADER)?
        .map(str::parse::<WriteConsistency>)
        .transpose()?;
    let mut options = WriteOptions {
        consistency,
        tenant: tenant.cloned(),
        content_type: header_str(&headers, header::CONTENT_TYPE.as_str())?.map(str::to_owned),
        ..Default::default()
    };
    if let Some(tags) = header_str(&headers, TAGS_HEADER)? {
        for pair in tags.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("tag \"{pair}\" in {TAGS_HEADER} is not name=value")))?;
            options
                .tags
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    let report = state.mux().write(key, body, &options).await?;
    publish(&state, tenant, &report, false);
    Ok(write_response(&report))
}

#[utoipa::path(get, path = "/v1/kv/{key}",
    params(("key" = String, Path), ("x-mux-read-policy" = Option<String>, Header, description = "primary, first_healthy, fastest, hedged, hedged:Nms, quorum, all")),
    responses((status = 200, description = "The value; the version in ETag and X-Mux-Version", content_type = "application/octet-stream"),
              (status = 404, body = crate::openapi::ErrorBody), (status = 400, body = crate::openapi::ErrorBody)))]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = require(&caller, Scope::Read)?;
    let asked = key_of(&raw)?;
    let Some(record) = state
        .mux()
        .get_with(&asked, &read_options(&headers, tenant)?)
        .await?
    else {
        return Err(ApiError(mux::Error::new(
            ErrorKind::NotFound,
            format!("no record under {asked}"),
        )));
    };
    let content_type = record
        .meta()
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut response = record.value().clone().into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::ETAG, etag(record.version()));
    h.insert(
        "x-mux-version",
        HeaderValue::from_str(&record.version().to_string()).expect("ASCII"),
    );
    Ok(response)
}

#[utoipa::path(delete, path = "/v1/kv/{key}",
    params(("key" = String, Path), ("x-mux-consistency" = Option<String>, Header),
           ("x-mux-read-policy" = Option<String>, Header, description = "how to look for the live record first")),
    responses((status = 200, body = crate::openapi::WriteReply, description = "A live record was deleted"),
              (status = 404, body = crate::openapi::ErrorBody,
               description = "No live record existed: nothing was deleted (a tombstone is still written, so a replica that missed an earlier delete converges)"),
              (status = 400, body = crate::openapi::ErrorBody)))]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = require(&caller, Scope::Write)?;
    let key = key_of(&raw)?;
    let consistency = header_str(&headers, CONSISTENCY_HEADER)?
        .map(str::parse::<WriteConsistency>)
        .transpose()?;
    let options = WriteOptions {
        consistency,
        tenant: tenant.cloned(),
        ..Default::default()
    };
    let store = state.mux();
    let existed = store
        .get_with(&key, &read_options(&headers, tenant)?)
        .await?
        .is_some();
    let report = store.delete(&key, &options).await?;
    publish(&state, tenant, &report, true);
    if !existed {
        return Err(ApiError(mux::Error::new(
            ErrorKind::NotFound,
            format!("no record under {key}: nothing to delete"),
        )));
    }
    Ok(write_response(&report))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/kv",
    params(("prefix" = Option<String>, Query, description = "matched on whole segments"),
           ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = crate::openapi::ListReply), (status = 400, body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = require(&caller, Scope::Read)?;
    let mut request = ListRequest::new(Prefix::new(&q.prefix)?);
    request.cursor = q.cursor.as_deref().map(Key::new).transpose()?;
    if let Some(limit) = q.limit {
        request.limit = limit;
    }
    let page = state
        .mux()
        .list(&request, &read_options(&headers, tenant)?)
        .await?;
    let entries: Vec<serde_json::Value> = page
        .entries
        .iter()
        .map(|e| {
            json!({
                "key": e.key.as_str(),
                "version": e.meta.version.to_string(),
                "size": e.size,
                "content_type": e.meta.content_type,
                "tags": e.meta.tags,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "entries": entries,
        "next_cursor": page.next_cursor.as_ref().map(Key::as_str),
    }))
    .into_response())
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    // Gauges that are states rather than events: refreshed at scrape time.
    if let Ok(reports) = state.mux().health_report().await {
        for r in reports {
            let circuit = match r.circuit {
                mux::resilience::CircuitState::Closed => 0.0,
                mux::resilience::CircuitState::HalfOpen => 1.0,
                mux::resilience::CircuitState::Open => 2.0,
            };
            metrics::gauge!("mux_circuit_state", "backend" => r.backend.clone()).set(circuit);
            metrics::gauge!("mux_hints_pending", "backend" => r.backend.clone())
                .set(r.hints_pending as f64);
            metrics::gauge!("mux_dead_letters", "backend" => r.backend.clone())
                .set(r.dead_letters as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    use utoipa::OpenApi;
    axum::Json(crate::openapi::ApiDoc::openapi()).into_response()
}
