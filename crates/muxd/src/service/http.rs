//! HTTP glue shared by the REST handlers (data and admin): the status of each
//! failure, [`ServiceError`] as the documented JSON body, and extractors whose
//! rejections are that body too (axum's own answer in plain text).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mux::ErrorKind;
use serde::de::DeserializeOwned;

use super::{Failure, ServiceError};

/// The HTTP status of a `mux` error kind.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        // What the key's route cannot do (history on a route without a history-keeping
        // store, say): a request this deployment does not serve, not a server fault,
        // so a 4xx; the body's kind says `unsupported`. 5xx is left to the server's own
        // failures, 503 to stores that cannot answer or consistency not met.
        ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable
        | ErrorKind::Timeout
        | ErrorKind::Overloaded
        | ErrorKind::ConsistencyNotMet => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Gone => StatusCode::GONE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ServiceError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self.failure {
            Failure::Mux(kind) => status_of(kind),
            Failure::Unauthenticated => StatusCode::UNAUTHORIZED,
            Failure::Forbidden => StatusCode::FORBIDDEN,
            Failure::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Failure::NoRoute => StatusCode::NOT_FOUND,
            Failure::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Failure::Quota(Some(seconds)) = self.failure {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// An axum rejection as the JSON body, with its status.
fn rejected(what: &str, status: StatusCode, text: String) -> ServiceError {
    let kind = if status == StatusCode::INTERNAL_SERVER_ERROR {
        ErrorKind::Internal
    } else {
        ErrorKind::InvalidInput
    };
    ServiceError::new(Failure::Mux(kind), format!("{what}: {text}"))
}

/// `axum::extract::Path`, rejecting with the JSON error body (e.g. a key that is not
/// UTF-8 once percent-decoded, or a dead-letter id that is not a number).
#[derive(Debug)]
pub(crate) struct Path<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|r| rejected("invalid path", r.status(), r.body_text()))
    }
}

/// `axum::extract::Query`, rejecting with the JSON error body (e.g. `limit=ten`).
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Query<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|r| rejected("invalid query string", r.status(), r.body_text()))
    }
}

/// The fallback for paths no route serves: 404 with the JSON body.
pub(crate) async fn no_route(uri: Uri) -> ServiceError {
    ServiceError::new(
        Failure::NoRoute,
        format!(
            "no route serves {}: the API is under /v1/kv and /v1/admin (see /openapi.json)",
            uri.path()
        ),
    )
}

/// The fallback for a method a path does not serve: 405 with the JSON body (axum adds
/// the `Allow` header).
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ServiceError {
    ServiceError::new(
        Failure::MethodNotAllowed,
        format!(
            "{} does not serve {method}: see the Allow header for the methods it serves",
            uri.path()
        ),
    )
}
