//! DynamoDB errors as mux errors: [`mux_aws::map_sdk`] with DynamoDB's own error codes
//! first.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
pub(crate) use mux_aws::Failure;
use mux_core::{Error, ErrorKind};

/// The mux kind and temporariness of a DynamoDB error code and HTTP status:
/// transaction conflicts are temporary `Conflict`s (another transaction holds the item:
/// trying again succeeds), a missing table `NotFound`; everything else as every AWS
/// service ([`mux_aws::classify`]: `ProvisionedThroughputExceededException`,
/// `ThrottlingException` and `RequestLimitExceeded` are temporary `Overloaded`).
pub fn classify(status: u16, code: Option<&str>) -> (ErrorKind, bool) {
    match code {
        Some(
            "TransactionConflictException"
            | "TransactionInProgressException"
            | "ReplicatedWriteConflictException",
        ) => (ErrorKind::Conflict, true),
        Some("ResourceNotFoundException") => (ErrorKind::NotFound, false),
        Some("ResourceInUseException") => (ErrorKind::Conflict, false),
        Some("ItemCollectionSizeLimitExceededException") => (ErrorKind::TooLarge, false),
        _ => mux_aws::classify(status, code),
    }
}

/// Maps an SDK error, keeping the error code and message in the text and the SDK error
/// as the source. An item over DynamoDB's size limit (a `ValidationException` naming
/// the size) becomes `TooLarge`.
pub(crate) fn map_sdk<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut failure = mux_aws::map_sdk("DynamoDB", err, classify);
    if failure.has_code("ValidationException") && is_size_message(failure.error.message()) {
        let text = failure.error.message().to_owned();
        failure.error = Error::new(ErrorKind::TooLarge, text).permanent();
    }
    failure
}

/// Whether a validation message is about an item's (or a transaction's) size.
fn is_size_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("size") && (m.contains("exceed") || m.contains("too large"))
}

/// A transaction cancellation reason as a mux error (for codes other than
/// `ConditionalCheckFailed`, `None` and `TransactionConflict`, which the batch handles).
pub(crate) fn cancellation(code: &str, message: Option<&str>, key: &str) -> Error {
    let (kind, temporary) = match code {
        "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded" => {
            (ErrorKind::Overloaded, true)
        }
        "ItemCollectionSizeLimitExceeded" => (ErrorKind::TooLarge, false),
        "ValidationError" if message.is_some_and(is_size_message) => (ErrorKind::TooLarge, false),
        _ => (ErrorKind::InvalidInput, false),
    };
    let text = match message {
        Some(m) => format!("{key}: DynamoDB cancelled the transaction: {code}: {m}"),
        None => format!("{key}: DynamoDB cancelled the transaction: {code}"),
    };
    let e = Error::new(kind, text);
    if temporary {
        e.temporary()
    } else {
        e.permanent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_temporary_overloaded() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert_eq!(
                classify(400, Some(code)),
                (ErrorKind::Overloaded, true),
                "{code}"
            );
        }
        for code in ["ThrottlingError", "ProvisionedThroughputExceeded"] {
            let e = cancellation(code, None, "k");
            assert_eq!(e.kind(), ErrorKind::Overloaded, "{code}");
            assert!(e.is_temporary(), "{code}");
        }
    }

    #[test]
    fn conflicts_are_temporary_other_4xx_permanent() {
        assert_eq!(
            classify(400, Some("TransactionConflictException")),
            (ErrorKind::Conflict, true)
        );
        assert_eq!(
            classify(400, Some("TransactionInProgressException")),
            (ErrorKind::Conflict, true)
        );
        assert_eq!(
            classify(400, Some("ResourceNotFoundException")),
            (ErrorKind::NotFound, false)
        );
        assert_eq!(
            classify(400, Some("ValidationException")),
            (ErrorKind::InvalidInput, false)
        );
        assert_eq!(
            classify(400, Some("UnrecognizedClientException")),
            (ErrorKind::PermissionDenied, false)
        );
        assert_eq!(
            classify(500, Some("InternalServerError")),
            (ErrorKind::Unavailable, true)
        );
        assert_eq!(classify(503, None), (ErrorKind::Unavailable, true));
    }

    #[test]
    fn size_messages_are_recognised() {
        assert!(is_size_message(
            "Item size has exceeded the maximum allowed size"
        ));
        assert!(!is_size_message(
            "One or more parameter values were invalid"
        ));
        let e = cancellation(
            "ValidationError",
            Some("Item size has exceeded the maximum allowed size"),
            "k",
        );
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(!e.is_temporary());
    }
}
