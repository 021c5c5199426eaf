//! The one error type of mux.

use std::fmt;
use std::sync::Arc;

/// Result alias used across mux.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of the store that reported it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The key or object does not exist.
    NotFound,
    /// The caller passed something malformed (a bad key, an unknown option, ...).
    InvalidInput,
    /// The value or request is larger than the backend accepts.
    TooLarge,
    /// A concurrent modification got in the way (e.g. a failed precondition).
    Conflict,
    /// The backend cannot be reached or refused service for now.
    Unavailable,
    /// The operation did not finish in time.
    Timeout,
    /// A bulkhead or the backend itself shed the request.
    Overloaded,
    /// Authentication or authorisation failed.
    PermissionDenied,
    /// The backend does not support this operation (see its `Capability`).
    Unsupported,
    /// Stored data failed its integrity check or could not be decoded.
    Corrupt,
    /// A coordinated operation did not reach its consistency level.
    ConsistencyNotMet,
    /// A bug or an unexpected state.
    Internal,
    /// A change-feed position fell out of retention: the events after it are gone, so
    /// the reader must re-read what it needs and resume from the feed's head.
    Gone,
}

impl ErrorKind {
    /// Whether errors of this kind are worth retrying unless said otherwise.
    pub fn is_temporary_by_default(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Overloaded
        )
    }

    /// A short lowercase name, stable for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::ConsistencyNotMet => "consistency_not_met",
            ErrorKind::Internal => "internal",
            ErrorKind::Gone => "gone",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation during which an error happened.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `Backend::put`.
    Put,
    /// `Backend::get`.
    Get,
    /// `Backend::delete`.
    Delete,
    /// `Backend::list`.
    List,
    /// `Backend::put_batch`.
    PutBatch,
    /// `Backend::purge`.
    Purge,
    /// `Backend::health`.
    Health,
    /// `Backend::history`.
    History,
    /// `Backend::get_as_of`.
    GetAsOf,
    /// `Backend::digest`.
    Digest,
    /// Opening or configuring a backend.
    Open,
}

impl Operation {
    /// A short lowercase name, stable for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::PutBatch => "put_batch",
            Operation::Purge => "purge",
            Operation::Health => "health",
            Operation::History => "history",
            Operation::GetAsOf => "get_as_of",
            Operation::Digest => "digest",
            Operation::Open => "open",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// The error type of every mux API.
///
/// It carries a [`ErrorKind`], whether it is temporary (worth retrying), the backend
/// that reported it, the operation and the underlying cause. Only temporary errors
/// are retried; a retry layer that gives up marks the error permanent so nobody
/// retries it again.
///
/// Its parts are boxed: an `Error` is one pointer, so every `Result` (and every future
/// holding one) stays small on the path where nothing fails.
#[derive(Clone)]
pub struct Error(Box<Parts>);

#[derive(Clone)]
struct Parts {
    kind: ErrorKind,
    temporary: bool,
    message: String,
    backend: Option<Arc<str>>,
    operation: Option<Operation>,
    source: Option<Source>,
    /// Typed detail a layer above attaches (the coordinator's write report).
    detail: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Error {
    /// A new error; temporariness follows [`ErrorKind::is_temporary_by_default`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Parts {
            kind,
            temporary: kind.is_temporary_by_default(),
            message: message.into(),
            backend: None,
            operation: None,
            source: None,
            detail: None,
        }))
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for an [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// Marks the error as temporary: retrying may succeed.
    pub fn temporary(mut self) -> Self {
        self.0.temporary = true;
        self
    }

    /// Marks the error as permanent: retrying will not help.
    pub fn permanent(mut self) -> Self {
        self.0.temporary = false;
        self
    }

    /// Names the backend that reported the error (kept if already set).
    pub fn with_backend(mut self, backend: impl AsRef<str>) -> Self {
        if self.0.backend.is_none() {
            self.0.backend = Some(Arc::from(backend.as_ref()));
        }
        self
    }

    /// Names the operation (kept if already set).
    pub fn with_operation(mut self, operation: Operation) -> Self {
        if self.0.operation.is_none() {
            self.0.operation = Some(operation);
        }
        self
    }

    /// Prefixes the message with context: `"{context}: {message}"`.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.0.message = format!("{context}: {}", self.0.message);
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Arc::new(source));
        self
    }

    /// Attaches a typed detail, such as the coordinator's `WriteReport` of a write that
    /// missed its consistency level (read it back with [`Error::detail`]).
    pub fn with_detail<T: std::any::Any + Send + Sync>(mut self, detail: T) -> Self {
        self.0.detail = Some(Arc::new(detail));
        self
    }

    /// The detail of type `T`, if one was attached.
    pub fn detail<T: std::any::Any>(&self) -> Option<&T> {
        self.0.detail.as_deref()?.downcast_ref()
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether retrying may succeed.
    pub fn is_temporary(&self) -> bool {
        self.0.temporary
    }

    /// The human-readable message, without backend, operation or source.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The backend that reported the error, if known.
    pub fn backend(&self) -> Option<&str> {
        self.0.backend.as_deref()
    }

    /// The operation that failed, if known.
    pub fn operation(&self) -> Option<Operation> {
        self.0.operation
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.operation, &self.0.backend) {
            (Some(op), Some(b)) => write!(f, "{op} on backend '{b}': ")?,
            (Some(op), None) => write!(f, "{op}: ")?,
            (None, Some(b)) => write!(f, "backend '{b}': ")?,
            (None, None) => {}
        }
        write!(
            f,
            "{} ({}): {}",
            self.0.kind,
            if self.0.temporary {
                "temporary"
            } else {
                "permanent"
            },
            self.0.message
        )?;
        // The whole chain of causes: "handshake failed: invalid peer certificate: …".
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self
            .0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("temporary", &self.0.temporary)
            .field("message", &self.0.message);
        if let Some(b) = &self.0.backend {
            d.field("backend", b);
        }
        if let Some(op) = &self.0.operation {
            d.field("operation", op);
        }
        if let Some(s) = &self.0.source {
            d.field("source", &format_args!("{s}"));
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match e.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::InvalidInput | Io::InvalidData => ErrorKind::InvalidInput,
            Io::TimedOut => ErrorKind::Timeout,
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::Interrupted
            | Io::WouldBlock => ErrorKind::Unavailable,
            Io::StorageFull | Io::QuotaExceeded => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, "I/O error").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_backend_operation_and_kind() {
        let e = Error::new(ErrorKind::Unavailable, "connection refused")
            .with_backend("pg-main")
            .with_operation(Operation::Put);
        assert!(e.is_temporary());
        assert_eq!(
            e.to_string(),
            "put on backend 'pg-main': unavailable (temporary): connection refused"
        );
        let e = e.permanent();
        assert!(!e.is_temporary());
    }

    #[test]
    fn first_backend_and_operation_win() {
        let e = Error::invalid_input("x")
            .with_backend("inner")
            .with_backend("outer")
            .with_operation(Operation::Get)
            .with_operation(Operation::Put);
        assert_eq!(e.backend(), Some("inner"));
        assert_eq!(e.operation(), Some(Operation::Get));
        assert!(!e.is_temporary());
    }
}
