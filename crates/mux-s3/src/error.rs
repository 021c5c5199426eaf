//! S3 errors as mux errors.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use mux_core::{Error, ErrorKind};

/// What an S3 answer or failure means to mux.
pub(crate) struct Failure {
    /// The HTTP status, when the store answered.
    pub status: Option<u16>,
    /// The S3 error code (`NoSuchKey`, `NoSuchBucket`, ...), when the answer had a body.
    pub code: Option<String>,
    /// The mux error.
    pub error: Error,
}

impl Failure {
    /// Whether the store refused a conditional request (`412 Precondition Failed`, or
    /// `409 ConditionalRequestConflict` while another conditional write is in flight).
    pub fn is_precondition(&self) -> bool {
        matches!(self.status, Some(412 | 409))
    }

    /// Whether the answer was 404 (the object, or for HEAD requests, which carry no
    /// error code, possibly the bucket).
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Whether the object does not exist, the bucket being there: a 404 whose code is
    /// `NoSuchKey` (or, for HEAD answers without a body, no code at all).
    pub fn is_missing_object(&self) -> bool {
        self.is_not_found() && matches!(self.code.as_deref(), None | Some("NoSuchKey"))
    }
}

/// The mux kind and temporariness of an S3 error code and HTTP status.
///
/// Throttling and 5xx answers are temporary; other 4xx answers are permanent.
pub(crate) fn classify(status: u16, code: Option<&str>) -> (ErrorKind, bool) {
    match (status, code) {
        (_, Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded"))
        | (429, _) => (ErrorKind::Overloaded, true),
        (_, Some("RequestTimeout")) => (ErrorKind::Timeout, true),
        (_, Some("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired")) => {
            (ErrorKind::PermissionDenied, false)
        }
        // What stores answer for headers they do not implement (conditional writes).
        (501, _) => (ErrorKind::Unsupported, false),
        (_, Some("EntityTooLarge" | "MetadataTooLarge" | "KeyTooLongError")) | (413, _) => {
            (ErrorKind::TooLarge, false)
        }
        (404, _) => (ErrorKind::NotFound, false),
        (401 | 403, _) => (ErrorKind::PermissionDenied, false),
        (409 | 412, _) => (ErrorKind::Conflict, false),
        (500..=599, _) => (ErrorKind::Unavailable, true),
        _ => (ErrorKind::InvalidInput, false),
    }
}

/// Maps an SDK error, keeping the S3 error code and message in the text and the SDK
/// error as the source.
pub(crate) fn map_sdk<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = match &err {
        SdkError::ServiceError(ctx) => ctx.err().code().map(str::to_owned),
        _ => None,
    };
    let (kind, temporary, text) = match &err {
        SdkError::ConstructionFailure(_) => (
            ErrorKind::InvalidInput,
            false,
            "the request could not be built".to_owned(),
        ),
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, true, "the request timed out".into()),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                (ErrorKind::Timeout, true, "the request timed out".into())
            } else if d.is_user() {
                (
                    ErrorKind::InvalidInput,
                    false,
                    "the request could not be sent".into(),
                )
            } else {
                (
                    ErrorKind::Unavailable,
                    true,
                    "the store could not be reached".into(),
                )
            }
        }
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            true,
            "the store's answer could not be read".into(),
        ),
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code();
            let (kind, temporary) = classify(status, code);
            let mut text = match (code, ctx.err().message()) {
                (Some(code), Some(msg)) => format!("S3 answered {status} {code}: {msg}"),
                (Some(code), None) => format!("S3 answered {status} {code}"),
                _ => format!("S3 answered {status}"),
            };
            if status == 501 {
                text.push_str(
                    " (a store without conditional writes needs \
                     ConditionalWrites::Unconditional)",
                );
            }
            (kind, temporary, text)
        }
        _ => (ErrorKind::Internal, false, "unexpected SDK error".into()),
    };
    let error = Error::new(kind, text).with_source(err);
    Failure {
        status,
        code,
        error: if temporary {
            error.temporary()
        } else {
            error.permanent()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_5xx_are_temporary_4xx_permanent() {
        assert_eq!(
            classify(503, Some("SlowDown")),
            (ErrorKind::Overloaded, true)
        );
        assert_eq!(classify(429, None), (ErrorKind::Overloaded, true));
        assert_eq!(
            classify(500, Some("InternalError")),
            (ErrorKind::Unavailable, true)
        );
        assert_eq!(classify(502, None), (ErrorKind::Unavailable, true));
        assert_eq!(
            classify(400, Some("RequestTimeout")),
            (ErrorKind::Timeout, true)
        );
        assert_eq!(
            classify(403, Some("AccessDenied")),
            (ErrorKind::PermissionDenied, false)
        );
        assert_eq!(
            classify(404, Some("NoSuchBucket")),
            (ErrorKind::NotFound, false)
        );
        assert_eq!(
            classify(412, Some("PreconditionFailed")),
            (ErrorKind::Conflict, false)
        );
        assert_eq!(
            classify(400, Some("EntityTooLarge")),
            (ErrorKind::TooLarge, false)
        );
        assert_eq!(classify(501, None), (ErrorKind::Unsupported, false));
        assert_eq!(
            classify(400, Some("ExpiredToken")),
            (ErrorKind::PermissionDenied, false)
        );
        assert_eq!(
            classify(400, Some("InvalidArgument")),
            (ErrorKind::InvalidInput, false)
        );
    }
}
