//! The OpenAPI document served at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations.

use std::collections::BTreeMap;

use utoipa::{OpenApi, ToSchema};

/// An error.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// `invalid_input`, `not_found`, `too_large`, `unauthenticated`, `permission_denied`,
    /// `consistency_not_met`, `unavailable`, …
    kind: String,
    /// For people: what was wrong and what to do.
    message: String,
    /// When a write missed its consistency level: each backend's outcome.
    backends: Option<Vec<BackendOutcome>>,
}

/// One backend's part in a write.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BackendOutcome {
    backend: String,
    /// `primary`, `replica`, `async_replica`.
    role: String,
    /// `applied`, `superseded`, `failed`, `pending`.
    outcome: String,
}

/// The result of a write or delete (the version is also in the `ETag`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct WriteReply {
    key: String,
    version: String,
    consistency: String,
    applied_on: Vec<String>,
    backends: Vec<BackendOutcome>,
}

/// One listed key.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ListEntry {
    key: String,
    version: String,
    size: u64,
    content_type: Option<String>,
    tags: BTreeMap<String, String>,
}

/// A page of keys.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ListReply {
    entries: Vec<ListEntry>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "muxd",
        description = "The mux storage proxy: one key space over several stores."
    ),
    paths(
        crate::rest::put_key,
        crate::rest::get_key,
        crate::rest::delete_key,
        crate::rest::list,
        crate::readiness::readyz,
        crate::rest::metrics,
        crate::admin::health_report,
        crate::admin::dead_letters,
        crate::admin::replay_dead_letter,
        crate::admin::discard_dead_letter,
        crate::admin::reload,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        BackendOutcome,
        WriteReply,
        ListEntry,
        ListReply
    ))
)]
pub struct ApiDoc;
