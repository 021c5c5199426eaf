//! The OpenAPI document served at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and from the types they serialize (in
//! [`crate::service`]), so the document describes what the server really sends.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;

pub use crate::jobs::{ImportReply, JobKind, JobList, JobProgress, JobRequest, JobState, JobView};
pub use crate::service::{
    BackendError, BackendOutcome, ErrorBody, ErrorDetail, HistoryEntry, HistoryReply, ListEntry,
    ListReply, WatchChange, WriteReply,
};

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "muxd",
        description = "The mux storage proxy: one key space over several stores. Every error is `{\"error\":{\"kind\":…,\"message\":…}}` (ErrorBody), including unknown routes (404) and methods (405)."
    ),
    paths(
        crate::rest::put_key,
        crate::rest::get_key,
        crate::rest::head_key,
        crate::rest::delete_key,
        crate::rest::list,
        crate::rest::history,
        crate::sse::watch,
        crate::rest::healthz,
        crate::readiness::readyz,
        crate::rest::metrics,
        crate::admin::health_report,
        crate::admin::mark_restored,
        crate::admin::dead_letters,
        crate::admin::replay_dead_letter,
        crate::admin::discard_dead_letter,
        crate::admin::reload,
        crate::admin::start_job,
        crate::admin::list_jobs,
        crate::admin::get_job,
        crate::admin::export,
        crate::admin::import,
        crate::admin::audit_events,
        crate::admin::audit_verify,
        crate::admin::erase_tenant,
        crate::admin::tenant_usage,
        crate::ui::status,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        BackendOutcome,
        BackendError,
        WriteReply,
        ListEntry,
        ListReply,
        HistoryEntry,
        HistoryReply,
        WatchChange,
        JobRequest,
        JobKind,
        JobState,
        JobProgress,
        JobView,
        JobList,
        ImportReply,
        crate::audit::AuditEvent,
        crate::audit::VerifyReport
    ))
)]
pub struct ApiDoc;

/// Serves `/openapi.json` (merged into the REST router by [`crate::serve`]).
pub(crate) fn router() -> Router {
    Router::new()
        .route("/openapi.json", get(document))
        .method_not_allowed_fallback(crate::service::http::method_not_allowed)
}

async fn document() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}
