//! Mapping Azure SDK errors to mux errors.

use azure_core::error::ErrorKind as AzureKind;
use mux_core::{Error, ErrorKind};

use crate::redact::Redacted;

/// The HTTP status of a service error.
pub(crate) fn status(e: &azure_core::Error) -> Option<u16> {
    e.http_status().map(u16::from)
}

/// The `x-ms-error-code` of a service error (`BlobNotFound`, `ConditionNotMet`, ...).
pub(crate) fn code(e: &azure_core::Error) -> Option<&str> {
    match e.kind() {
        AzureKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// Whether a conditional request lost a race: `412 Precondition Failed` (`If-Match` no
/// longer matches) or `409 BlobAlreadyExists` (`If-None-Match: *` found a blob).
pub(crate) fn is_condition_failure(e: &azure_core::Error) -> bool {
    match status(e) {
        Some(412) => true,
        Some(409) => code(e) == Some("BlobAlreadyExists"),
        _ => false,
    }
}

/// Whether the error is a 404 for the blob itself: `404 BlobNotFound`.
///
/// The error code is required: Azure sends `x-ms-error-code` on every error response,
/// HEAD (Get Blob Properties) included, and so does Azurite; a 404 without it (a
/// misrouted request, a proxy, a token endpoint) is an error, not a missing record.
pub(crate) fn is_blob_missing(e: &azure_core::Error) -> bool {
    status(e) == Some(404) && code(e) == Some("BlobNotFound")
}

/// Whether anything in the error's source chain reports a timeout.
fn timed_out(e: &azure_core::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("timed out") || text.contains("timeout") {
            return true;
        }
        current = err.source();
    }
    false
}

/// The mux error for an Azure SDK error, with its sanitised text ([`Redacted`]) as the
/// source.
///
/// | Azure | mux |
/// |---|---|
/// | 404 | `NotFound` |
/// | 401, 403, credential errors | `PermissionDenied` |
/// | 409, 412 | `Conflict` |
/// | 413 | `TooLarge` |
/// | 429 | `Overloaded` (temporary) |
/// | 408, timeouts | `Timeout` (temporary) |
/// | 500, 502, 503, 504, other 5xx, I/O and connection errors | `Unavailable` (temporary) |
/// | other 4xx | `InvalidInput` |
/// | anything else | `Internal` |
pub(crate) fn map_err(e: azure_core::Error) -> Error {
    let (kind, message) = match e.kind() {
        AzureKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = u16::from(*status);
            let kind = match code {
                404 => ErrorKind::NotFound,
                401 | 403 => ErrorKind::PermissionDenied,
                409 | 412 => ErrorKind::Conflict,
                413 => ErrorKind::TooLarge,
                429 => ErrorKind::Overloaded,
                408 => ErrorKind::Timeout,
                500..=599 => ErrorKind::Unavailable,
                400..=499 => ErrorKind::InvalidInput,
                _ => ErrorKind::Internal,
            };
            let message = match error_code {
                Some(error_code) => format!("Azure answered {code} {error_code}"),
                None => format!("Azure answered {code} {}", status.canonical_reason()),
            };
            (kind, message)
        }
        // The SDK's own text follows as the (sanitised) source.
        AzureKind::Connection => (ErrorKind::Unavailable, "cannot connect to Azure".to_owned()),
        AzureKind::Io if timed_out(&e) => (ErrorKind::Timeout, "Azure timed out".to_owned()),
        AzureKind::Io => (
            ErrorKind::Unavailable,
            "I/O error talking to Azure".to_owned(),
        ),
        AzureKind::Credential => (
            ErrorKind::PermissionDenied,
            "cannot authenticate to Azure".to_owned(),
        ),
        AzureKind::DataConversion => (
            ErrorKind::Internal,
            "unexpected response from Azure".to_owned(),
        ),
        _ => (ErrorKind::Internal, "Azure SDK error".to_owned()),
    };
    Error::new(kind, message).with_source(Redacted::of(&e))
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;
    use azure_core::http::StatusCode;

    fn http(status: u16, code: Option<&str>) -> azure_core::Error {
        azure_core::Error::with_message(
            AzureKind::HttpResponse {
                status: StatusCode::from(status),
                error_code: code.map(str::to_owned),
                raw_response: None,
            },
            "service error",
        )
    }

    #[test]
    fn maps_statuses_to_kinds() {
        for (status, kind, temporary) in [
            (404, ErrorKind::NotFound, false),
            (401, ErrorKind::PermissionDenied, false),
            (403, ErrorKind::PermissionDenied, false),
            (409, ErrorKind::Conflict, false),
            (412, ErrorKind::Conflict, false),
            (413, ErrorKind::TooLarge, false),
            (429, ErrorKind::Overloaded, true),
            (408, ErrorKind::Timeout, true),
            (500, ErrorKind::Unavailable, true),
            (502, ErrorKind::Unavailable, true),
            (503, ErrorKind::Unavailable, true),
            (504, ErrorKind::Unavailable, true),
            (400, ErrorKind::InvalidInput, false),
            (416, ErrorKind::InvalidInput, false),
        ] {
            let e = map_err(http(status, Some("SomeCode")));
            assert_eq!(e.kind(), kind, "{status}");
            assert_eq!(e.is_temporary(), temporary, "{status}");
            assert!(e.message().contains("SomeCode"), "{e}");
            assert!(std::error::Error::source(&e).is_some());
        }
        let e = map_err(azure_core::Error::with_message(
            AzureKind::Connection,
            "connection refused",
        ));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        let e = map_err(azure_core::Error::new(
            AzureKind::Io,
            std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"),
        ));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = map_err(azure_core::Error::with_message(AzureKind::Credential, "no"));
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }

    /// A connection error whose cause names the request URL, SAS included (as
    /// `reqwest::Error` does): neither `Display` nor `Debug` of the mux error shows the
    /// signature, and the source chain ends at the sanitised text.
    #[test]
    fn signatures_never_reach_the_error() {
        #[derive(Debug)]
        struct Inner;
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("tcp connect error: refused")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Request(Inner);
        impl fmt::Display for Request {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "error sending request for url (http://h/c?sv=2022-11-02&se=x&sig=TopSecret%2Bsig%3D)",
                )
            }
        }
        impl std::error::Error for Request {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = map_err(azure_core::Error::new(
            AzureKind::Connection,
            Request(Inner),
        ));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains("TopSecret"), "{shown}");
            assert!(shown.contains("sig=***"), "{shown}");
            assert!(shown.contains("tcp connect error"), "{shown}");
        }
        // The SDK error displays as its inner error: the chain shows it once.
        assert_eq!(
            e.to_string(),
            "unavailable (temporary): cannot connect to Azure: error sending request for url \
             (http://h/c?sv=2022-11-02&se=x&sig=***): tcp connect error: refused"
        );
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.source().is_none());
    }

    #[test]
    fn recognises_lost_races() {
        assert!(is_condition_failure(&http(412, Some("ConditionNotMet"))));
        assert!(is_condition_failure(&http(409, Some("BlobAlreadyExists"))));
        assert!(!is_condition_failure(&http(409, Some("LeaseIdMissing"))));
        assert!(is_blob_missing(&http(404, Some("BlobNotFound"))));
        assert!(!is_blob_missing(&http(404, None)));
        assert!(!is_blob_missing(&http(404, Some("ContainerNotFound"))));
        assert!(!is_blob_missing(&http(412, Some("BlobNotFound"))));
    }
}
