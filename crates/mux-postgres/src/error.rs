//! Error mapping: PostgreSQL and pool errors as mux errors.

use mux_core::{Error, ErrorKind};

pub(crate) fn map_err(e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let kind = match e.code() {
        None if e.is_closed() => ErrorKind::Unavailable,
        None => ErrorKind::Unavailable,
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            ErrorKind::Conflict
        }
        // Class 28 is a refused login (28P01 a wrong password, 28000 an unknown role or
        // no pg_hba.conf entry); 42501 a missing grant.
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE || c.code().starts_with("28") => {
            ErrorKind::PermissionDenied
        }
        Some(c) if *c == SqlState::PROGRAM_LIMIT_EXCEEDED => ErrorKind::TooLarge,
        Some(c)
            if c.code().starts_with("08")
                || c.code().starts_with("57")
                || c.code().starts_with("53") =>
        {
            ErrorKind::Unavailable
        }
        Some(c) if c.code().starts_with("22") => ErrorKind::InvalidInput,
        Some(_) => ErrorKind::Internal,
    };
    let temporary = matches!(kind, ErrorKind::Unavailable | ErrorKind::Conflict);
    let err = Error::new(kind, "postgres error").with_source(e);
    if temporary { err.temporary() } else { err }
}

pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => map_err(e),
        deadpool_postgres::PoolError::Timeout(_) => {
            Error::new(ErrorKind::Timeout, "no pooled connection in time")
        }
        other => {
            Error::new(ErrorKind::Unavailable, format!("connection pool: {other}")).temporary()
        }
    }
}
