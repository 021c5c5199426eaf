//! Error mapping: Redis errors as mux errors.

use mux_core::{Error, ErrorKind};
use redis::{ErrorKind as RedisKind, ServerErrorKind};

/// Maps a Redis client error.
pub(crate) fn map_err(e: redis::RedisError) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        ErrorKind::Unavailable
    } else {
        match e.kind() {
            RedisKind::AuthenticationFailed => ErrorKind::PermissionDenied,
            RedisKind::InvalidClientConfig => ErrorKind::InvalidInput,
            RedisKind::Server(ServerErrorKind::BusyLoading)
            | RedisKind::Server(ServerErrorKind::TryAgain)
            | RedisKind::Server(ServerErrorKind::MasterDown)
            | RedisKind::Server(ServerErrorKind::ReadOnly) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    };
    let temporary = kind.is_temporary_by_default() || e.is_unrecoverable_error();
    let err = Error::new(kind, "redis error").with_source(e);
    if temporary { err.temporary() } else { err }
}

/// An unexpected reply.
pub(crate) fn parse_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Corrupt, "unexpected reply from Redis").with_source(e)
}
