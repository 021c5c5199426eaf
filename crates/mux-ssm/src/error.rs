//! SSM errors as mux errors: [`mux_aws::map_sdk`] with Parameter Store's own error
//! codes first.

use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
pub(crate) use mux_aws::Failure;
use mux_core::ErrorKind;

/// The mux kind and temporariness of an SSM error code and HTTP status: Parameter
/// Store's codes, then what every AWS service shares ([`mux_aws::classify`]).
pub(crate) fn classify(status: u16, code: Option<&str>) -> (ErrorKind, bool) {
    match code {
        Some("ParameterNotFound" | "ParameterVersionNotFound") => (ErrorKind::NotFound, false),
        // The account's parameter quota for the tier is used up.
        Some("ParameterLimitExceeded") => (ErrorKind::TooLarge, false),
        // The oldest of the 100 versions carries a label, so SSM keeps it and refuses
        // new versions.
        Some("ParameterMaxVersionLimitExceeded") => (ErrorKind::Conflict, false),
        Some(
            "HierarchyLevelLimitExceededException"
            | "HierarchyTypeMismatchException"
            | "ParameterPatternMismatchException"
            | "UnsupportedParameterType"
            | "InvalidFilterKey"
            | "InvalidFilterOption"
            | "InvalidFilterValue"
            | "InvalidNextToken"
            | "ValidationException",
        ) => (ErrorKind::InvalidInput, false),
        _ => mux_aws::classify(status, code),
    }
}

/// Maps an SDK error, keeping the SSM error code and message in the text and the SDK
/// error as the source, with a hint where the fix is known.
pub(crate) fn map_sdk<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut failure = mux_aws::map_sdk("SSM", err, classify);
    let hint = match failure.code.as_deref() {
        Some("ParameterLimitExceeded") => Some(
            "the account's parameter quota is reached (10,000 standard parameters per \
             region): purge unused keys, or use tier = \"advanced\"",
        ),
        Some("ParameterMaxVersionLimitExceeded") => Some(
            "the oldest of the parameter's 100 versions has a label, so SSM keeps it: \
             remove the label (aws ssm unlabel-parameter-version)",
        ),
        _ => None,
    };
    if let Some(hint) = hint {
        failure.error = failure.error.context(hint);
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_store_codes_first_then_the_shared_ones() {
        let cases = [
            (400, Some("ParameterNotFound"), ErrorKind::NotFound, false),
            (
                400,
                Some("ParameterLimitExceeded"),
                ErrorKind::TooLarge,
                false,
            ),
            (
                400,
                Some("ParameterMaxVersionLimitExceeded"),
                ErrorKind::Conflict,
                false,
            ),
            (
                400,
                Some("HierarchyLevelLimitExceededException"),
                ErrorKind::InvalidInput,
                false,
            ),
            (400, Some("TooManyUpdates"), ErrorKind::Overloaded, true),
            (
                400,
                Some("ThrottlingException"),
                ErrorKind::Overloaded,
                true,
            ),
            (
                500,
                Some("InternalServerError"),
                ErrorKind::Unavailable,
                true,
            ),
            (
                400,
                Some("AccessDeniedException"),
                ErrorKind::PermissionDenied,
                false,
            ),
        ];
        for (status, code, kind, temporary) in cases {
            assert_eq!(classify(status, code), (kind, temporary), "{code:?}");
        }
    }
}
