//! Error mapping: transport failures, HTTP statuses and InfluxQL errors as mux errors.

use mux_core::{Error, ErrorKind};

/// What an HTTP status of the API means: its kind and whether retrying may help.
pub(crate) fn classify_status(status: u16) -> (ErrorKind, bool) {
    match status {
        400 => (ErrorKind::InvalidInput, false),
        401 | 403 => (ErrorKind::PermissionDenied, false),
        404 => (ErrorKind::NotFound, false),
        408 => (ErrorKind::Timeout, true),
        413 => (ErrorKind::TooLarge, false),
        429 => (ErrorKind::Overloaded, true),
        // 500 on /write is how 1.x reports a timeout or an engine failure; like 503
        // (starting, `max-concurrent-write-limit`) it may pass.
        500..=599 => (ErrorKind::Unavailable, true),
        _ => (ErrorKind::Internal, false),
    }
}

/// An error answered by the server (`status`, the body's text).
pub(crate) fn from_status(status: u16, body: &str) -> Error {
    let (kind, temporary) = classify_status(status);
    let message = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => v
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_owned()),
        Err(_) => body.chars().take(512).collect(),
    };
    let message = format!("HTTP {status}: {}", message.trim());
    // A field type conflict: the measurement was written by something else.
    let err = if message.contains("field type conflict") {
        Error::new(ErrorKind::Corrupt, message)
    } else {
        Error::new(kind, message)
    };
    if temporary {
        err.temporary()
    } else {
        err.permanent()
    }
}

/// What 1.x answers while a shard's storage engine is being closed and reopened (seen
/// when another database is dropped at the same moment): the statement may pass when
/// sent again.
pub(crate) const ENGINE_CLOSED: &str = "engine is closed";

/// An error inside a `/query` answer of status 200.
pub(crate) fn from_statement(message: &str) -> Error {
    let kind = if message.starts_with("database not found") {
        ErrorKind::NotFound
    } else if message.contains("authoriz") {
        ErrorKind::PermissionDenied
    } else if message.contains("timeout") || message.contains("max-") {
        ErrorKind::Overloaded
    } else if message.contains(ENGINE_CLOSED) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    };
    let err = Error::new(kind, format!("InfluxQL: {message}"));
    if matches!(kind, ErrorKind::Overloaded | ErrorKind::Unavailable) {
        err.temporary()
    } else {
        err.permanent()
    }
}

/// The innermost cause of `e` (reqwest's text repeats its causes').
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A reqwest failure: refused or broken connections and timeouts are temporary.
pub(crate) fn from_transport(e: &reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::new(
            ErrorKind::Timeout,
            format!("request timed out: {}", root_cause(e)),
        )
        .temporary();
    }
    if e.is_builder() {
        return Error::new(ErrorKind::InvalidInput, format!("bad request: {e}")).permanent();
    }
    if e.is_decode() {
        return Error::new(
            ErrorKind::Internal,
            format!(
                "unreadable answer (is this InfluxDB 1.x?): {}",
                root_cause(e)
            ),
        )
        .permanent();
    }
    let cause = root_cause(e);
    if cause.contains("certificate") || cause.contains("InvalidCertificate") {
        return Error::new(ErrorKind::Unavailable, format!("TLS failure: {cause}")).permanent();
    }
    // Connect errors (refused, unreachable) and requests cut off in flight.
    Error::new(
        ErrorKind::Unavailable,
        format!("connection failed: {cause}"),
    )
    .temporary()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for (status, kind, temporary) in [
            (400, ErrorKind::InvalidInput, false),
            (401, ErrorKind::PermissionDenied, false),
            (413, ErrorKind::TooLarge, false),
            (429, ErrorKind::Overloaded, true),
            (500, ErrorKind::Unavailable, true),
            (503, ErrorKind::Unavailable, true),
        ] {
            let e = from_status(status, r#"{"error":"boom"}"#);
            assert_eq!((e.kind(), e.is_temporary()), (kind, temporary), "{status}");
            assert!(e.message().contains("boom") && e.message().contains(&status.to_string()));
        }
        let e = from_status(400, r#"{"error":"partial write: field type conflict"}"#);
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        let e = from_statement("database not found: mux");
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::NotFound, false));
        let e = from_statement("engine is closed");
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true));
    }
}
