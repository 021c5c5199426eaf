//! AWS SDK errors as mux errors.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use mux_core::{Error, ErrorKind};

/// What an AWS answer or failure means to mux.
#[derive(Debug)]
pub struct Failure {
    /// The HTTP status, when the service answered.
    pub status: Option<u16>,
    /// The service's error code (`NoSuchKey`, `ConditionalCheckFailedException`,
    /// `ParameterNotFound`, ...), when the answer had one.
    pub code: Option<String>,
    /// The mux error.
    pub error: Error,
}

impl Failure {
    /// Whether the service answered with `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// The mux kind and temporariness of an error code and HTTP status that every AWS
/// service shares: throttling, timeouts and 5xx answers are temporary; expired tokens,
/// 401/403 and other 4xx answers permanent. Adapters check their own codes first and
/// fall back to this.
pub fn classify(status: u16, code: Option<&str>) -> (ErrorKind, bool) {
    match (status, code) {
        (
            _,
            Some(
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "TooManyUpdates"
                | "RequestLimitExceeded"
                | "ProvisionedThroughputExceededException"
                | "LimitExceededException",
            ),
        )
        | (429, _) => (ErrorKind::Overloaded, true),
        (_, Some("RequestTimeout" | "RequestTimeoutException")) => (ErrorKind::Timeout, true),
        (_, Some("ExpiredToken" | "ExpiredTokenException" | "InvalidToken")) => {
            (ErrorKind::PermissionDenied, false)
        }
        (_, Some("TokenRefreshRequired" | "UnrecognizedClientException")) => {
            (ErrorKind::PermissionDenied, false)
        }
        (_, Some("AccessDenied" | "AccessDeniedException")) => (ErrorKind::PermissionDenied, false),
        (_, Some("InternalError" | "InternalServerError" | "ServiceUnavailable")) => {
            (ErrorKind::Unavailable, true)
        }
        (501, _) => (ErrorKind::Unsupported, false),
        (413, _) => (ErrorKind::TooLarge, false),
        (404, _) => (ErrorKind::NotFound, false),
        (401 | 403, _) => (ErrorKind::PermissionDenied, false),
        (409 | 412, _) => (ErrorKind::Conflict, false),
        (500..=599, _) => (ErrorKind::Unavailable, true),
        _ => (ErrorKind::InvalidInput, false),
    }
}

/// Maps an SDK error of `service`, classifying a service answer with `classify_answer`
/// (status, code → kind, temporary), keeping the error code and message in the text and
/// the SDK error as the source. Transport failures: timeouts and unreachable services
/// are temporary; a request that could not be built is permanent.
pub fn map_sdk<E>(
    service: &str,
    err: SdkError<E, HttpResponse>,
    classify_answer: impl Fn(u16, Option<&str>) -> (ErrorKind, bool),
) -> Failure
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
                    format!("{service} could not be reached"),
                )
            }
        }
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            true,
            format!("{service}'s answer could not be read"),
        ),
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code();
            let (kind, temporary) = classify_answer(status, code);
            let text = match (code, ctx.err().message()) {
                (Some(code), Some(msg)) => format!("{service} answered {status} {code}: {msg}"),
                (Some(code), None) => format!("{service} answered {status} {code}"),
                _ => format!("{service} answered {status}"),
            };
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
    fn throttling_timeouts_and_5xx_are_temporary_other_4xx_permanent() {
        let cases = [
            (
                400,
                Some("ThrottlingException"),
                ErrorKind::Overloaded,
                true,
            ),
            (
                400,
                Some("ProvisionedThroughputExceededException"),
                ErrorKind::Overloaded,
                true,
            ),
            (400, Some("TooManyUpdates"), ErrorKind::Overloaded, true),
            (429, None, ErrorKind::Overloaded, true),
            (503, Some("SlowDown"), ErrorKind::Overloaded, true),
            (400, Some("RequestTimeout"), ErrorKind::Timeout, true),
            (
                500,
                Some("InternalServerError"),
                ErrorKind::Unavailable,
                true,
            ),
            (502, None, ErrorKind::Unavailable, true),
            (
                400,
                Some("ExpiredTokenException"),
                ErrorKind::PermissionDenied,
                false,
            ),
            (
                400,
                Some("AccessDeniedException"),
                ErrorKind::PermissionDenied,
                false,
            ),
            (403, None, ErrorKind::PermissionDenied, false),
            (404, None, ErrorKind::NotFound, false),
            (412, None, ErrorKind::Conflict, false),
            (413, None, ErrorKind::TooLarge, false),
            (501, None, ErrorKind::Unsupported, false),
            (
                400,
                Some("ValidationException"),
                ErrorKind::InvalidInput,
                false,
            ),
        ];
        for (status, code, kind, temporary) in cases {
            assert_eq!(
                classify(status, code),
                (kind, temporary),
                "{status} {code:?}"
            );
        }
    }
}
