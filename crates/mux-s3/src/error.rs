//! S3 errors as mux errors: [`mux_aws::map_sdk`] with S3's own error codes first.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
pub(crate) use mux_aws::Failure;
use mux_core::ErrorKind;

/// What S3's answers mean beyond the codes every AWS service shares.
pub(crate) trait S3Failure {
    /// Whether the store refused a conditional request (`412 Precondition Failed`, or
    /// `409 ConditionalRequestConflict` while another conditional write is in flight).
    fn is_precondition(&self) -> bool;
    /// Whether the answer was 404 (the object, or for HEAD requests, which carry no
    /// error code, possibly the bucket).
    fn is_not_found(&self) -> bool;
    /// Whether the object does not exist, the bucket being there: a 404 whose code is
    /// `NoSuchKey` (or, for HEAD answers without a body, no code at all).
    fn is_missing_object(&self) -> bool;
}

impl S3Failure for Failure {
    fn is_precondition(&self) -> bool {
        matches!(self.status, Some(412 | 409))
    }

    fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    fn is_missing_object(&self) -> bool {
        self.is_not_found() && matches!(self.code.as_deref(), None | Some("NoSuchKey"))
    }
}

/// The mux kind and temporariness of an S3 error code and HTTP status: S3's size
/// codes, then what every AWS service shares ([`mux_aws::classify`]).
pub(crate) fn classify(status: u16, code: Option<&str>) -> (ErrorKind, bool) {
    match code {
        Some("EntityTooLarge" | "MetadataTooLarge" | "KeyTooLongError") => {
            (ErrorKind::TooLarge, false)
        }
        _ => mux_aws::classify(status, code),
    }
}

/// Maps an SDK error, keeping the S3 error code and message in the text and the SDK
/// error as the source.
pub(crate) fn map_sdk<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut failure = mux_aws::map_sdk("S3", err, classify);
    if failure.status == Some(501) {
        // What stores answer for headers they do not implement (conditional writes).
        failure.error = failure
            .error
            .context("a store without conditional writes needs ConditionalWrites::Unconditional");
    }
    failure
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
