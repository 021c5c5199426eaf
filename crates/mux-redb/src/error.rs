//! Error mapping: redb errors as mux errors.

use mux_core::{Error, ErrorKind, Operation};

/// Maps a redb error of operation `op` on backend `name`.
pub(crate) fn map_err(name: &str, op: Operation) -> impl Fn(redb::Error) -> Error + '_ {
    move |e| {
        let kind = match &e {
            redb::Error::DatabaseAlreadyOpen => ErrorKind::Unavailable,
            redb::Error::Corrupted(_) => ErrorKind::Corrupt,
            redb::Error::ValueTooLarge(_) => ErrorKind::TooLarge,
            redb::Error::Io(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, "redb error")
            .with_source(e)
            .with_backend(name)
            .with_operation(op)
    }
}
