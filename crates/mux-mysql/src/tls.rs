//! TLS for the connections: mysql_async's rustls support, on ring.

use mux_core::{Error, Result};

use crate::config::TlsMode;

/// mysql_async's TLS options for `mode` (`None`: no TLS). A CA file replaces the Mozilla
/// roots; it is checked here, so a missing or unreadable file is a configuration error
/// at start rather than a connection failure later.
pub(crate) fn ssl_opts(mode: &TlsMode) -> Result<Option<mysql_async::SslOpts>> {
    match mode {
        TlsMode::Disable => Ok(None),
        TlsMode::Require { ca_file: None } => Ok(Some(mysql_async::SslOpts::default())),
        TlsMode::Require {
            ca_file: Some(path),
        } => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::invalid_input(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            if !pem
                .windows(b"-----BEGIN CERTIFICATE-----".len())
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
            {
                return Err(Error::invalid_input(format!(
                    "the CA file {} holds no PEM certificate",
                    path.display()
                )));
            }
            Ok(Some(
                mysql_async::SslOpts::default()
                    .with_root_certs(vec![pem.into()])
                    .with_disable_built_in_roots(true),
            ))
        }
    }
}
