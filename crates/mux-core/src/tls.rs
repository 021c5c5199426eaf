//! The `tls` setting of the stores that speak TLS themselves (PostgreSQL, MySQL,
//! ScyllaDB): one shape for all of them, so configurations read alike.

use serde::Deserialize;

/// TLS for a store's connections.
///
/// In TOML: `tls = { mode = "disable" }` (the default) or
/// `tls = { mode = "require", ca_file = "/etc/ssl/certs/db-ca.pem" }`. How each store
/// verifies the server (whether it also matches the host name, which roots it trusts
/// without `ca_file`) is in that store's crate documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS required (a server without TLS is refused); the server's certificate is
    /// verified against `ca_file` (PEM) or, without it, the store's default roots.
    Require {
        /// PEM file of the certificate authorities to trust.
        #[serde(default)]
        ca_file: Option<std::path::PathBuf>,
    },
}
