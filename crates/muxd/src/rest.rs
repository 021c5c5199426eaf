//! The REST API.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use mux::ErrorKind;
use serde::Deserialize;

use crate::AppState;
use crate::admin;
use crate::auth::{Denied, Identity, Principal, Scope};
use crate::service::history::HistoryInput;
use crate::service::{
    ErrorBody, HistoryReply, ListInput, ListReply, Options, Service, ServiceError, WriteReply,
    http, tags,
};

/// The caller, as the auth middleware found it (`None` with auth off).
type Caller = axum::Extension<Option<Identity>>;

async fn authenticate(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token);
    let cert = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
        .and_then(|c| c.0.cert_name.as_deref());
    let principal = match crate::auth::principal(&state.live(), token, cert) {
        Ok(principal) => principal,
        Err(d) => return denied(d),
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
    ServiceError::from(d).into_response()
}

/// Overrides the route's write consistency: `all`, `quorum`, `one`, `primary`, `at_least:N`.
pub const CONSISTENCY_HEADER: &str = "x-mux-consistency";
/// Overrides the route's read policy: `primary`, `first_healthy`, `fastest`, `hedged`, …
pub const READ_POLICY_HEADER: &str = "x-mux-read-policy";
/// Record tags: `class=pii,team=core` (percent-encoded where needed). Set on a write,
/// returned by GET/HEAD, and on reads it picks tag-matching routes.
pub const TAGS_HEADER: &str = "x-mux-tags";
/// The record's version on GET/HEAD (also quoted in `ETag`).
pub const VERSION_HEADER: &str = "x-mux-version";

pub(crate) fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let api = Router::new()
        .route("/v1/kv", get(list))
        .route(
            "/v1/kv/{*key}",
            get(get_key).head(head_key).put(put_key).delete(delete_key),
        )
        .route("/v1/kv/", any(empty_key))
        .route("/v1/history/{*key}", get(history))
        .route("/v1/watch", get(crate::sse::watch))
        .route("/v1/admin/health", get(admin::health_report))
        .route("/v1/admin/dead-letters", get(admin::dead_letters))
        .route(
            "/v1/admin/backends/{name}/restored",
            post(admin::mark_restored),
        )
        .route(
            "/v1/admin/dead-letters/{id}/replay",
            post(admin::replay_dead_letter),
        )
        .route(
            "/v1/admin/dead-letters/{id}",
            delete(admin::discard_dead_letter),
        )
        .route("/v1/admin/reload", post(admin::reload))
        .route("/v1/admin/status", get(crate::ui::status))
        .route(
            "/v1/admin/jobs",
            get(admin::list_jobs).post(admin::start_job),
        )
        .route("/v1/admin/jobs/{id}", get(admin::get_job))
        .route("/v1/admin/export", get(admin::export))
        .route("/v1/admin/import", post(admin::import))
        .route("/v1/admin/audit", get(admin::audit_events))
        .route("/v1/admin/tenants/{tenant}", delete(admin::erase_tenant))
        .route("/v1/admin/tenants/{tenant}/usage", get(admin::tenant_usage))
        .route("/v1/admin/audit/verify", get(admin::audit_verify))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(crate::readiness::readyz))
        .route("/metrics", get(metrics))
        .merge(crate::ui::pages())
        .fallback(http::no_route)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error as the documented JSON body, `{"error":{"kind","message"}}` (plus the
/// per-backend outcome when a write missed its consistency level), with the matching
/// status. Every variant renders through [`ServiceError`].
pub(crate) enum ApiError {
    Mux(mux::Error),
    Service(ServiceError),
}

impl From<mux::Error> for ApiError {
    fn from(e: mux::Error) -> Self {
        ApiError::Mux(e)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<ApiError> for ServiceError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Mux(e) => e.into(),
            ApiError::Service(e) => e,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        ServiceError::from(self).into_response()
    }
}

fn write_response(reply: WriteReply) -> Response {
    let etag = etag(&reply.version);
    let mut response = axum::Json(reply).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    response
}

fn etag(version: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("versions are ASCII")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ServiceError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ServiceError::invalid(format!(
                    "header {name} is not visible ASCII: percent-encode other bytes"
                ))
            })
        })
        .transpose()
}

/// An option header: absent means the route's default, empty is a mistake.
fn option_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ServiceError> {
    match header_str(headers, name)? {
        Some(v) if v.trim().is_empty() => Err(ServiceError::invalid(format!(
            "header {name} is empty: give a value or leave it out for the route's default"
        ))),
        other => Ok(other),
    }
}

/// The options a data request carries in its headers.
fn options(headers: &HeaderMap) -> Result<Options<'_>, ServiceError> {
    Ok(Options {
        consistency: option_header(headers, CONSISTENCY_HEADER)?,
        read_policy: option_header(headers, READ_POLICY_HEADER)?,
        tags: header_str(headers, TAGS_HEADER)?
            .map(tags::parse)
            .transpose()?
            .unwrap_or_default(),
        content_type: header_str(headers, header::CONTENT_TYPE.as_str())?,
    })
}

#[utoipa::path(put, path = "/v1/kv/{key}",
    params(("key" = String, Path, min_length = 1, description = "A key: `/`-separated non-empty segments (no `.` or `..` segment, no control or invisible format characters), at most 1024 bytes"),
           ("x-mux-consistency" = Option<String>, Header, nullable = false, pattern = "^(all|quorum|one|primary|at_least:[1-9][0-9]*)$",
            description = "Overrides the route's write consistency: `all`, `quorum`, `one`, `primary` or `at_least:N` (N at most the route's voters, else 400 and nothing is written)"),
           ("x-mux-tags" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*([ \t]*,[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*)*[ \t]*$",
            description = "The record's tags: `name=value` pairs separated by commas; `%`, `,`, `=`, spaces and non-ASCII percent-encoded. At most 32 tags, names up to 128 bytes, values up to 512; a malformed header is 400"),
           ("content-type" = Option<String>, Header, nullable = false, max_length = 256,
            description = "Stored with the record and returned by GET (printable ASCII, at most 256 bytes)")),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream", description = "The value (no body: an empty value)"),
    responses((status = 200, body = WriteReply, description = "Written at the consistency level",
               headers(("etag" = String, description = "The version written, quoted"))),
              (status = 400, body = ErrorBody, description = "A bad key, header, tag or content type, or a consistency level the route can never meet (nothing was written)"),
              (status = 401, body = ErrorBody, description = "No valid token (JWT auth on)"),
              (status = 403, body = ErrorBody, description = "The token lacks the write scope"),
              (status = 413, body = ErrorBody, description = "The body is over max_body_bytes or a store's limit"),
              (status = 503, body = ErrorBody, description = "The consistency level was not met: `backends` says which stores applied the write")))]
pub(crate) async fn put_key(
    State(state): State<AppState>,
    caller: Caller,
    http::Path(raw): http::Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ServiceError> {
    let service = Service::authorize(&state, caller.0.as_ref(), Scope::Write)?;
    let body = body.map_err(|rejection| {
        let kind = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorKind::TooLarge
        } else {
            ErrorKind::InvalidInput
        };
        ServiceError::from(mux::Error::new(
            kind,
            format!(
                "request body rejected: {rejection} (the limit is {} bytes)",
                state.max_body_bytes
            ),
        ))
    })?;
    let reply = service.put(&raw, body, &options(&headers)?).await?;
    Ok(write_response(reply))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    as_of: Option<String>,
}

#[utoipa::path(get, path = "/v1/kv/{key}",
    params(("key" = String, Path, min_length = 1),
           ("as_of" = Option<String>, Query, nullable = false, min_length = 1, description = "Read the record as it stood then: a version (`0000018c2f3a1b2c-00000000-00000001`), an RFC 3339 time (`2026-12-02T10:00:00Z`) or Unix milliseconds. Served by a store of the route that keeps history; 400 (kind `unsupported`) if none does"),
           ("x-mux-read-policy" = Option<String>, Header, nullable = false, pattern = "^(primary|first_healthy|fastest|hedged|hedged:[0-9]+ms|quorum|all)$",
            description = "Overrides the route's read policy: `primary`, `first_healthy`, `fastest`, `hedged`, `hedged:Nms`, `quorum` or `all`"),
           ("x-mux-tags" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*([ \t]*,[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*)*[ \t]*$", description = "Tags that pick a tag-matching route for the read (same format as on PUT)")),
    responses((status = 200, description = "The value, with the content type it was written with", content_type = "*/*",
               headers(("etag" = String, description = "The record's version, quoted"),
                       ("x-mux-version" = String, description = "The record's version"),
                       ("x-mux-tags" = String, description = "The record's tags (absent when it has none), in the PUT format"),
                       ("content-type" = String, description = "The content type it was written with (application/octet-stream if none)"))),
              (status = 400, body = ErrorBody, description = "A bad key, header or `as_of`, or (kind `unsupported`) `as_of` on a route none of whose stores keeps history"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "No live record under the key (at `as_of`, when given)"),
              (status = 503, body = ErrorBody, description = "No store could answer")))]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    http::Path(raw): http::Path<String>,
    http::Query(q): http::Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    let service = Service::authorize(&state, caller.0.as_ref(), Scope::Read)?;
    let options = options(&headers)?;
    let record = match q.as_of.as_deref() {
        None => service.get(&raw, &options).await?,
        Some(at) => service.get_as_of(&raw, at, &options).await?,
    };
    let Some(record) = record else {
        let when = q.as_of.map(|at| format!(" as of {at}")).unwrap_or_default();
        return Err(
            mux::Error::new(ErrorKind::NotFound, format!("no record under {raw}{when}")).into(),
        );
    };
    let meta = record.meta();
    let content_type = meta
        .content_type
        .as_deref()
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let version = record.version().to_string();
    let mut response = record.value().clone().into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::ETAG, etag(&version));
    h.insert(
        VERSION_HEADER,
        HeaderValue::from_str(&version).expect("versions are ASCII"),
    );
    if let Some(tags) = tags::render(&meta.tags) {
        h.insert(
            TAGS_HEADER,
            HeaderValue::from_str(&tags).expect("rendered tags are visible ASCII"),
        );
    }
    Ok(response)
}

/// `HEAD /v1/kv/{key}`: GET's headers without the body.
#[utoipa::path(head, path = "/v1/kv/{key}",
    params(("key" = String, Path, min_length = 1),
           ("x-mux-read-policy" = Option<String>, Header, nullable = false, pattern = "^(primary|first_healthy|fastest|hedged|hedged:[0-9]+ms|quorum|all)$"),
           ("x-mux-tags" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*([ \t]*,[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*)*[ \t]*$")),
    responses((status = 200, description = "The record exists; no body",
               headers(("etag" = String), ("x-mux-version" = String), ("x-mux-tags" = String), ("content-type" = String),
                       ("content-length" = u64, description = "The value's length"))),
              (status = 400, description = "A bad key or header (no body)"),
              (status = 401, description = "No valid token (no body)"),
              (status = 403, description = "The token lacks the read scope (no body)"),
              (status = 404, description = "No live record (no body)"),
              (status = 503, description = "No store could answer (no body)")))]
pub(crate) async fn head_key(
    state: State<AppState>,
    caller: Caller,
    raw: http::Path<String>,
    query: http::Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    // axum drops the body of a HEAD answer and keeps its length.
    get_key(state, caller, raw, query, headers).await
}

#[utoipa::path(delete, path = "/v1/kv/{key}",
    params(("key" = String, Path, min_length = 1),
           ("x-mux-consistency" = Option<String>, Header, nullable = false, pattern = "^(all|quorum|one|primary|at_least:[1-9][0-9]*)$", description = "As on PUT"),
           ("x-mux-read-policy" = Option<String>, Header, nullable = false, pattern = "^(primary|first_healthy|fastest|hedged|hedged:[0-9]+ms|quorum|all)$", description = "How to look for the live record first"),
           ("x-mux-tags" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*([ \t]*,[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*)*[ \t]*$", description = "Tags that route the tombstone where the record went")),
    responses((status = 200, body = WriteReply, description = "A live record was deleted",
               headers(("etag" = String, description = "The tombstone's version, quoted"))),
              (status = 400, body = ErrorBody, description = "A bad key or header, or an unreachable consistency level"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody,
               description = "No live record existed: nothing was deleted (a tombstone is still written, so a replica that missed an earlier delete converges)"),
              (status = 503, body = ErrorBody, description = "The consistency level was not met")))]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    http::Path(raw): http::Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    let service = Service::authorize(&state, caller.0.as_ref(), Scope::Write)?;
    let deleted = service.delete(&raw, &options(&headers)?).await?;
    if !deleted.found {
        return Err(mux::Error::new(
            ErrorKind::NotFound,
            format!("no record under {raw}: nothing to delete"),
        )
        .into());
    }
    Ok(write_response(deleted.reply))
}

/// `/v1/kv/` names no key.
async fn empty_key() -> ServiceError {
    ServiceError::invalid(
        "the key is empty: name one, e.g. /v1/kv/config/app (GET /v1/kv lists keys)",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/v1/kv",
    params(("prefix" = Option<String>, Query, nullable = false, description = "Keys under this prefix, matched on whole segments"),
           ("cursor" = Option<String>, Query, nullable = false, description = "The `next_cursor` of the previous page"),
           ("limit" = Option<u64>, Query, nullable = false, minimum = 1, maximum = 10000, description = "The page size, 1 to 10000 (default 1000)"),
           ("x-mux-read-policy" = Option<String>, Header, nullable = false, pattern = "^(primary|first_healthy|fastest|hedged|hedged:[0-9]+ms|quorum|all)$"),
           ("x-mux-tags" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*([ \t]*,[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*)*[ \t]*$", description = "Tags that pick tag-matching routes")),
    responses((status = 200, body = ListReply),
              (status = 400, body = ErrorBody, description = "A bad prefix, cursor, limit or header"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "No store could answer")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    http::Query(q): http::Query<ListQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<ListReply>, ServiceError> {
    let service = Service::authorize(&state, caller.0.as_ref(), Scope::Read)?;
    let input = ListInput {
        prefix: &q.prefix,
        cursor: q.cursor.as_deref(),
        limit: q.limit,
    };
    Ok(axum::Json(service.list(&input, &options(&headers)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    cursor: Option<String>,
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/v1/history/{key}",
    params(("key" = String, Path, min_length = 1),
           ("cursor" = Option<String>, Query, nullable = false, description = "The `next_cursor` of the previous page (a version): continue with older versions"),
           ("limit" = Option<u64>, Query, nullable = false, minimum = 1, maximum = 1000, description = "The page size, 1 to 1000 (default 100)"),
           ("x-mux-tags" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*([ \t]*,[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*)*[ \t]*$", description = "Tags that pick a tag-matching route")),
    responses((status = 200, body = HistoryReply, description = "Versions newest first, deletes included, as the route's history-keeping store has them"),
              (status = 400, body = ErrorBody, description = "A bad key, cursor, limit or header, or (kind `unsupported`) no store of the key's route keeps history"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "No history-keeping store could answer")))]
pub(crate) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    http::Path(raw): http::Path<String>,
    http::Query(q): http::Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<HistoryReply>, ServiceError> {
    let service = Service::authorize(&state, caller.0.as_ref(), Scope::Read)?;
    let input = HistoryInput {
        key: &raw,
        cursor: q.cursor.as_deref(),
        limit: q.limit,
    };
    let page = service.history(&input, &options(&headers)?).await?;
    Ok(axum::Json(HistoryReply::of(&raw, page)))
}

/// `/healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "`ok`", content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
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
