//! Error mapping: server, driver and I/O errors of mysql_async as mux errors.

use mux_core::{Error, ErrorKind};

/// Server error codes mux treats specially (MariaDB and MySQL share them).
pub(crate) mod code {
    /// `ER_LOCK_DEADLOCK`: InnoDB rolled the transaction back to break a deadlock.
    pub const DEADLOCK: u16 = 1213;
    /// `ER_LOCK_WAIT_TIMEOUT`: a row lock was not granted in `innodb_lock_wait_timeout`.
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
}

/// What a server error code means for mux: its kind and whether retrying may help.
pub(crate) fn classify(code: u16) -> (ErrorKind, bool) {
    match code {
        // Lock conflicts between transactions: the statement was rolled back; the same
        // (idempotent, versioned) write can simply run again.
        code::DEADLOCK => (ErrorKind::Conflict, true),
        code::LOCK_WAIT_TIMEOUT => (ErrorKind::Timeout, true),
        // ER_QUERY_TIMEOUT (MySQL max_execution_time), ER_STATEMENT_TIMEOUT (MariaDB
        // max_statement_time).
        3024 | 1969 => (ErrorKind::Timeout, true),
        // Too many connections (ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS), the
        // server shutting down, a killed connection or query, read-only (a failover in
        // progress), out of resources.
        1040 | 1203 | 1053 | 1077 | 1078 | 1079 | 1080 | 1152 | 1927 | 1317 | 1290 | 1836
        | 1041 | 1037 | 1135 => (ErrorKind::Unavailable, true),
        // Access denied (user, database, table, command).
        1044 | 1045 | 1142 | 1143 | 1227 | 1370 | 1698 => (ErrorKind::PermissionDenied, false),
        // ER_NET_PACKET_TOO_LARGE, ER_TOO_BIG_ROWSIZE, ER_DATA_TOO_LONG.
        1153 | 1118 | 1406 | 1301 => (ErrorKind::TooLarge, false),
        // Bad values: incorrect string value, constraint (the tags' JSON check), bad
        // null.
        1366 | 4025 | 3819 | 1048 | 1292 => (ErrorKind::InvalidInput, false),
        _ => (ErrorKind::Internal, false),
    }
}

/// The innermost cause of `e`: mysql_async's errors wrap each other and repeat their
/// causes' text, so the message names the root cause once.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A mysql_async error as a mux error.
pub(crate) fn map_err(e: mysql_async::Error) -> Error {
    use mysql_async::{DriverError, Error as E, IoError};
    let (kind, temporary, message) = match &e {
        E::Server(s) => {
            let (kind, temporary) = classify(s.code);
            (kind, temporary, format!("server error {}: {}", s.code, s.message))
        }
        // Data the client cannot accept: with TLS, a certificate it does not trust or
        // that names another host. Retrying will not change it.
        E::Io(IoError::Io(io)) if io.kind() == std::io::ErrorKind::InvalidData => (
            ErrorKind::Unavailable,
            false,
            format!(
                "TLS or protocol failure: {} (with TLS: check the CA file and that the certificate names the host connected to)",
                root_cause(&e)
            ),
        ),
        // The connection failed or broke (refused, reset, closed): the server may come
        // back.
        E::Io(IoError::Io(_)) => (
            ErrorKind::Unavailable,
            true,
            format!("connection failed: {}", root_cause(&e)),
        ),
        E::Io(IoError::Tls(_)) => (
            ErrorKind::Unavailable,
            false,
            format!(
                "TLS failure: {} (check the CA file and that the certificate names the host connected to)",
                root_cause(&e)
            ),
        ),
        E::Driver(DriverError::ConnectionClosed | DriverError::PoolDisconnected) => (
            ErrorKind::Unavailable,
            true,
            "the connection to the server is closed".to_owned(),
        ),
        E::Driver(DriverError::NoClientSslFlagFromServer) => (
            ErrorKind::Unavailable,
            false,
            "TLS is required but the server does not offer it (enable ssl on the server, or tls = { mode = \"disable\" })"
                .to_owned(),
        ),
        E::Driver(DriverError::PacketTooLarge) => (
            ErrorKind::TooLarge,
            false,
            "packet larger than the server's max_allowed_packet".to_owned(),
        ),
        E::Driver(d) => (ErrorKind::Internal, false, format!("driver: {d}")),
        E::Url(u) => (ErrorKind::InvalidInput, false, format!("URL: {u}")),
        E::Other(_) => (ErrorKind::Internal, false, root_cause(&e)),
    };
    // The message carries the cause's text; the source would repeat it.
    let err = Error::new(kind, message);
    if temporary {
        err.temporary()
    } else {
        err.permanent()
    }
}

/// Whether `e` is a deadlock InnoDB broke by rolling this statement back (safe to run
/// again at once).
pub(crate) fn is_deadlock(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == code::DEADLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn deadlocks_and_lock_wait_timeouts_are_temporary() {
        let e = map_err(server(
            1213,
            "Deadlock found when trying to get lock; try restarting transaction",
        ));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.is_temporary(), "{e}");
        assert!(e.message().contains("1213"), "{e}");
        let e = map_err(server(
            1205,
            "Lock wait timeout exceeded; try restarting transaction",
        ));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.is_temporary(), "{e}");
        assert!(is_deadlock(&server(1213, "")) && !is_deadlock(&server(1205, "")));
    }

    #[test]
    fn connection_errors_are_temporary_and_bad_input_is_not() {
        let refused = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let e = map_err(refused);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert!(e.message().contains("refused"), "{e}");
        // What rustls reports for an untrusted certificate: permanent.
        let untrusted = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        )));
        let e = map_err(untrusted);
        assert!(
            !e.is_temporary() && e.message().contains("UnknownIssuer"),
            "{e}"
        );
        let e = map_err(mysql_async::Error::Driver(
            mysql_async::DriverError::ConnectionClosed,
        ));
        assert!(e.is_temporary() && e.kind() == ErrorKind::Unavailable);
        for (code, kind) in [
            (1040, ErrorKind::Unavailable),
            (1053, ErrorKind::Unavailable),
            (1927, ErrorKind::Unavailable),
        ] {
            let e = map_err(server(code, "x"));
            assert_eq!((e.kind(), e.is_temporary()), (kind, true), "{code}");
        }
        for (code, kind) in [
            (1045, ErrorKind::PermissionDenied),
            (1153, ErrorKind::TooLarge),
            (4025, ErrorKind::InvalidInput),
            (1146, ErrorKind::Internal),
        ] {
            let e = map_err(server(code, "x"));
            assert_eq!((e.kind(), e.is_temporary()), (kind, false), "{code}");
        }
    }
}
