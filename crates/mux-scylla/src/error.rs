//! Error mapping: the driver's errors and the cluster's error codes as mux errors.
//! Temporary only when a retry may succeed: unavailable replicas, timeouts, overload,
//! broken or refused connections.

use mux_core::{Error, ErrorKind};
use scylla::errors::{
    ConnectionPoolError, DbError, ExecutionError, NewSessionError, PrepareError,
    RequestAttemptError,
};

/// What a server error means for mux: its kind and whether retrying may help.
pub(crate) fn classify_db(e: &DbError) -> (ErrorKind, bool) {
    match e {
        // Too few replicas alive for the consistency level, a node still joining.
        DbError::Unavailable { .. } | DbError::IsBootstrapping => (ErrorKind::Unavailable, true),
        // Replicas did not answer in time. For a lightweight transaction (write type
        // CAS) the Paxos round may or may not have committed: a versioned write can
        // simply run again.
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => (ErrorKind::Timeout, true),
        DbError::Overloaded | DbError::RateLimitReached { .. } => (ErrorKind::Overloaded, true),
        // Replicas failed the request (e.g. a disk error on one of them): another
        // attempt may reach healthy ones.
        DbError::ReadFailure { .. } | DbError::WriteFailure { .. } => {
            (ErrorKind::Unavailable, true)
        }
        DbError::AuthenticationError | DbError::Unauthorized => {
            (ErrorKind::PermissionDenied, false)
        }
        DbError::SyntaxError | DbError::Invalid | DbError::ConfigError => {
            (ErrorKind::InvalidInput, false)
        }
        DbError::AlreadyExists { .. } => (ErrorKind::Conflict, false),
        _ => (ErrorKind::Internal, false),
    }
}

fn error(kind: ErrorKind, temporary: bool, message: String) -> Error {
    let e = Error::new(kind, message);
    if temporary {
        e.temporary()
    } else {
        e.permanent()
    }
}

/// One attempt's error as a mux error.
pub(crate) fn map_attempt(e: &RequestAttemptError) -> Error {
    match e {
        RequestAttemptError::DbError(db, message) => {
            let (kind, temporary) = classify_db(db);
            error(kind, temporary, format!("{db}: {message}"))
        }
        // The connection broke or no stream was free on it: another connection or node
        // may serve the next attempt.
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => error(
            ErrorKind::Unavailable,
            true,
            format!("connection failed: {e}"),
        ),
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_) => {
            error(ErrorKind::InvalidInput, false, e.to_string())
        }
        _ => error(ErrorKind::Internal, false, e.to_string()),
    }
}

fn map_pool(e: &ConnectionPoolError) -> Error {
    error(
        ErrorKind::Unavailable,
        true,
        format!("no connection to the cluster: {e}"),
    )
}

/// A request's error as a mux error.
pub(crate) fn map_execution(e: ExecutionError) -> Error {
    match &e {
        ExecutionError::LastAttemptError(attempt) => map_attempt(attempt),
        ExecutionError::ConnectionPoolError(pool) => map_pool(pool),
        ExecutionError::RequestTimeout(d) => error(
            ErrorKind::Timeout,
            true,
            format!(
                "no answer within the request timeout ({} ms)",
                d.as_millis()
            ),
        ),
        // No node to send to (e.g. the preferred datacenter has none up): the cluster
        // may come back.
        ExecutionError::EmptyPlan => error(ErrorKind::Unavailable, true, e.to_string()),
        ExecutionError::PrepareError(p) => map_prepare(p.clone()),
        ExecutionError::BadQuery(_) => error(ErrorKind::InvalidInput, false, e.to_string()),
        ExecutionError::SchemaAgreementError(_) | ExecutionError::MetadataError(_) => {
            error(ErrorKind::Unavailable, true, e.to_string())
        }
        _ => error(ErrorKind::Internal, false, e.to_string()),
    }
}

/// A preparation's error as a mux error.
pub(crate) fn map_prepare(e: PrepareError) -> Error {
    match &e {
        PrepareError::ConnectionPoolError(pool) => map_pool(pool),
        PrepareError::AllAttemptsFailed { first_attempt } => {
            map_attempt(first_attempt).context("cannot prepare a statement")
        }
        _ => error(ErrorKind::Internal, false, e.to_string()),
    }
}

/// A session's error at connect as a mux error: no contact point answering is
/// temporary (the cluster may come up), a bad configuration is not.
pub(crate) fn map_new_session(e: NewSessionError) -> Error {
    match &e {
        NewSessionError::FailedToResolveAnyHostname(hosts) => error(
            ErrorKind::Unavailable,
            true,
            format!("cannot resolve any of the nodes {hosts:?}"),
        ),
        NewSessionError::EmptyKnownNodesList => {
            error(ErrorKind::InvalidInput, false, e.to_string())
        }
        NewSessionError::IllegalConfig(_) => error(ErrorKind::InvalidInput, false, e.to_string()),
        // Authentication failures surface through the metadata fetch.
        _ if e.to_string().contains("Authentication") => {
            error(ErrorKind::PermissionDenied, false, e.to_string())
        }
        _ => error(ErrorKind::Unavailable, true, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{BrokenConnectionErrorKind, WriteType};
    use scylla::statement::Consistency;

    fn db(e: DbError) -> Error {
        map_execution(ExecutionError::LastAttemptError(
            RequestAttemptError::DbError(e, "server says".into()),
        ))
    }

    #[test]
    fn retryable_server_errors_are_temporary() {
        let cases = [
            (
                DbError::Unavailable {
                    consistency: Consistency::LocalQuorum,
                    required: 2,
                    alive: 1,
                },
                ErrorKind::Unavailable,
            ),
            (
                DbError::WriteTimeout {
                    consistency: Consistency::LocalQuorum,
                    received: 1,
                    required: 2,
                    write_type: WriteType::Cas,
                },
                ErrorKind::Timeout,
            ),
            (
                DbError::ReadTimeout {
                    consistency: Consistency::LocalQuorum,
                    received: 1,
                    required: 2,
                    data_present: false,
                },
                ErrorKind::Timeout,
            ),
            (DbError::Overloaded, ErrorKind::Overloaded),
            (DbError::IsBootstrapping, ErrorKind::Unavailable),
        ];
        for (e, kind) in cases {
            let shown = e.to_string();
            let m = db(e);
            assert_eq!((m.kind(), m.is_temporary()), (kind, true), "{shown}");
            assert!(m.message().contains("server says"), "{m}");
        }
    }

    #[test]
    fn other_server_errors_are_permanent() {
        for (e, kind) in [
            (DbError::Unauthorized, ErrorKind::PermissionDenied),
            (DbError::AuthenticationError, ErrorKind::PermissionDenied),
            (DbError::Invalid, ErrorKind::InvalidInput),
            (DbError::SyntaxError, ErrorKind::InvalidInput),
            (DbError::ServerError, ErrorKind::Internal),
        ] {
            let m = db(e);
            assert_eq!((m.kind(), m.is_temporary()), (kind, false), "{m}");
        }
    }

    #[test]
    fn client_side_failures() {
        let m = map_execution(ExecutionError::RequestTimeout(
            std::time::Duration::from_millis(250),
        ));
        assert_eq!((m.kind(), m.is_temporary()), (ErrorKind::Timeout, true));
        assert!(m.message().contains("250 ms"), "{m}");
        let m = map_execution(ExecutionError::EmptyPlan);
        assert_eq!((m.kind(), m.is_temporary()), (ErrorKind::Unavailable, true));
        let m = map_execution(ExecutionError::ConnectionPoolError(
            ConnectionPoolError::Initializing,
        ));
        assert_eq!((m.kind(), m.is_temporary()), (ErrorKind::Unavailable, true));
        let broken = RequestAttemptError::BrokenConnectionError(
            BrokenConnectionErrorKind::ChannelError.into(),
        );
        let m = map_execution(ExecutionError::LastAttemptError(broken));
        assert_eq!((m.kind(), m.is_temporary()), (ErrorKind::Unavailable, true));
        let m = map_new_session(NewSessionError::FailedToResolveAnyHostname(vec![
            "nowhere:9042".into(),
        ]));
        assert_eq!((m.kind(), m.is_temporary()), (ErrorKind::Unavailable, true));
        assert!(m.message().contains("nowhere:9042"), "{m}");
        let m = map_new_session(NewSessionError::EmptyKnownNodesList);
        assert_eq!(
            (m.kind(), m.is_temporary()),
            (ErrorKind::InvalidInput, false)
        );
    }
}
