//! [`MysqlConfig`]: how to reach MariaDB or MySQL and where to keep records.

pub use mux_core::TlsMode;
use std::fmt;

use serde::Deserialize;

/// How to reach MariaDB or MySQL and where to keep records. In TOML (only `url` is
/// required):
///
/// ```toml
/// [[backends]]
/// name = "maria-eu"
/// kind = "mysql"
/// url = "mysql://app:secret@db.example:3306/app"
/// table = "mux_records"
/// pool_size = 16
/// tls = { mode = "require", ca_file = "/etc/ssl/certs/db-ca.pem" }
/// ```
///
/// `Debug` shows the URL with its password replaced by `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MysqlConfig {
    /// A connection URL: `mysql://user:password@host:port/database` (`mariadb://` is
    /// accepted too). Characters such as `@`, `:` or `/` in the password are
    /// percent-encoded (`%40`). mysql_async's URL parameters (`?prefer_socket=false`, …)
    /// are honoured, except `client_found_rows`, which mux turns off (it tells writes
    /// apart by their affected-row counts).
    pub url: String,
    /// The table holding the records (letters, digits and `_`).
    #[serde(default = "default_table")]
    pub table: String,
    /// The most connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Whether to use TLS (rustls on ring). `disable` may use the server's Unix socket
    /// when mysql_async's `prefer_socket` finds one on a loopback address; `require`
    /// stays on TCP, refuses a server without TLS, and verifies its certificate against
    /// `ca_file` or the Mozilla root certificates (it must name the host connected to).
    #[serde(default)]
    pub tls: TlsMode,
}

fn default_table() -> String {
    "mux_records".into()
}

fn default_pool_size() -> usize {
    16
}

impl MysqlConfig {
    /// A config for `url`: table `mux_records`, 16 connections, no TLS.
    pub fn new(url: impl Into<String>) -> MysqlConfig {
        MysqlConfig {
            url: url.into(),
            table: default_table(),
            pool_size: default_pool_size(),
            tls: TlsMode::Disable,
        }
    }

    /// Sets the table.
    pub fn with_table(mut self, table: impl Into<String>) -> MysqlConfig {
        self.table = table.into();
        self
    }

    /// Sets the TLS mode.
    pub fn with_tls(mut self, tls: TlsMode) -> MysqlConfig {
        self.tls = tls;
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, size: usize) -> MysqlConfig {
        self.pool_size = size;
        self
    }
}

/// The URL with any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    // The authority ends at the first '/', '?' or '#'; the userinfo at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("url", &redact(&self.url))
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        for (url, shown_as) in [
            ("mysql://app:s3cret@db:3306/x", "mysql://app:***@db:3306/x"),
            // An '@' in the query string is not a userinfo separator.
            (
                "mysql://app:s3cret@db/x?socket=/a@b",
                "mysql://app:***@db/x?socket=/a@b",
            ),
            ("mysql://app@db/x", "mysql://app@db/x"),
            ("mysql://db/x", "mysql://db/x"),
        ] {
            let shown = format!("{:?}", MysqlConfig::new(url));
            assert!(
                !shown.contains("s3cret") && shown.contains(shown_as),
                "{shown}"
            );
        }
    }

    #[test]
    fn deserializes_from_toml_with_defaults_and_tls() {
        let c: MysqlConfig = toml::from_str(r#"url = "mysql://db/x""#).unwrap();
        assert_eq!(
            (c.table.as_str(), c.pool_size, &c.tls),
            ("mux_records", 16, &TlsMode::Disable)
        );
        let c: MysqlConfig = toml::from_str(
            r#"
url = "mysql://db/x"
table = "t"
pool_size = 4
tls = { mode = "require", ca_file = "/ca.pem" }
"#,
        )
        .unwrap();
        assert_eq!((c.table.as_str(), c.pool_size), ("t", 4));
        assert_eq!(
            c.tls,
            TlsMode::Require {
                ca_file: Some("/ca.pem".into())
            }
        );
        let e = toml::from_str::<MysqlConfig>("url = \"x\"\ntabel = \"t\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `tabel`"), "{e}");
        let e =
            toml::from_str::<MysqlConfig>("url = \"x\"\ntls = { mode = \"prefer\" }").unwrap_err();
        assert!(e.to_string().contains("prefer"), "{e}");
    }
}
