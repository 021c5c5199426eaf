//! [`InfluxConfig`]: where the records live (server, database, measurement) and how to
//! reach it.

use std::fmt;
use std::time::Duration;

use mux_core::{Error, Result};
use serde::Deserialize;

/// The configuration of an InfluxDB 1.x backend.
///
/// In TOML (`kind = "influx"` in a muxd config):
///
/// ```toml
/// url = "http://127.0.0.1:8086"
/// database = "mux"
/// measurement = "mux_records"
/// # username = "mux", password = "…", retention_policy = "autogen"
/// ```
///
/// `Debug` hides the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InfluxConfig {
    /// The server's HTTP API: `http://host:8086` (or `https://`, verified against the
    /// Mozilla roots).
    pub url: String,
    /// The database (letters, digits, `_` and `-`).
    #[serde(default = "default_database")]
    pub database: String,
    /// The measurement holding the records (letters, digits, `_` and `-`): one per mux
    /// namespace.
    #[serde(default = "default_measurement")]
    pub measurement: String,
    /// The retention policy written to and read from; the database's default when
    /// `None`.
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// The user, when the server has `auth-enabled`.
    #[serde(default)]
    pub username: Option<String>,
    /// The user's password.
    #[serde(default)]
    pub password: Option<String>,
    /// Whether `connect` runs `CREATE DATABASE` (idempotent; needs admin rights when
    /// authentication is on).
    #[serde(default = "default_true")]
    pub create_database: bool,
    /// The most time one HTTP request may take, in milliseconds (the coordinator's own
    /// call timeout usually fires first).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM CA certificates trusted besides the system's roots, for an `https://` server
    /// whose certificate a private or self-signed CA signed (verification is always on).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_database() -> String {
    "mux".into()
}

fn default_measurement() -> String {
    "mux_records".into()
}

fn default_true() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    30_000
}

impl InfluxConfig {
    /// A config for the server at `url`: database `mux`, measurement `mux_records`, the
    /// default retention policy, no authentication, the database created at connect.
    pub fn new(url: impl Into<String>) -> InfluxConfig {
        InfluxConfig {
            url: url.into(),
            database: default_database(),
            measurement: default_measurement(),
            retention_policy: None,
            username: None,
            password: None,
            create_database: true,
            timeout_ms: default_timeout_ms(),
            ca_file: None,
        }
    }

    /// Sets the database.
    pub fn with_database(mut self, database: impl Into<String>) -> InfluxConfig {
        self.database = database.into();
        self
    }

    /// Sets the measurement.
    pub fn with_measurement(mut self, measurement: impl Into<String>) -> InfluxConfig {
        self.measurement = measurement.into();
        self
    }

    /// Sets the retention policy.
    pub fn with_retention_policy(mut self, policy: impl Into<String>) -> InfluxConfig {
        self.retention_policy = Some(policy.into());
        self
    }

    /// Sets the credentials.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> InfluxConfig {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Sets whether `connect` creates the database.
    pub fn with_create_database(mut self, create: bool) -> InfluxConfig {
        self.create_database = create;
        self
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// Checks the names and the URL; names are restricted so that they never need
    /// quoting beyond InfluxQL's double quotes.
    pub fn validate(&self) -> Result<()> {
        check_name("database", &self.database)?;
        check_name("measurement", &self.measurement)?;
        if let Some(rp) = &self.retention_policy {
            check_name("retention_policy", rp)?;
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(Error::invalid_input(format!(
                "the InfluxDB url {:?} must start with http:// or https://",
                self.url
            )));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(Error::invalid_input(
                "the InfluxDB config has a password but no username",
            ));
        }
        Ok(())
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid InfluxDB {what} {name:?}: use 1 to 128 letters, digits, '_' or '-'"
        )))
    }
}

impl fmt::Debug for InfluxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("measurement", &self.measurement)
            .field("retention_policy", &self.retention_policy)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("create_database", &self.create_database)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_with_defaults_and_hides_the_password() {
        let c: InfluxConfig = toml::from_str(r#"url = "http://db:8086""#).unwrap();
        assert_eq!(
            (c.database.as_str(), c.measurement.as_str()),
            ("mux", "mux_records")
        );
        assert!(c.create_database && c.validate().is_ok());
        let c: InfluxConfig =
            toml::from_str("url = \"http://db:8086\"\nusername = \"u\"\npassword = \"s3cret\"")
                .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("***"),
            "{shown}"
        );
        let e = toml::from_str::<InfluxConfig>("url = \"x\"\ndatabse = \"d\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `databse`"), "{e}");
    }

    #[test]
    fn names_that_would_need_escaping_are_refused() {
        for bad in ["", "a b", "a\"b", "a,b", "ä", "x;DROP"] {
            let c = InfluxConfig::new("http://db:8086").with_measurement(bad);
            assert!(c.validate().is_err(), "{bad:?}");
        }
        assert!(InfluxConfig::new("db:8086").validate().is_err());
        assert!(
            InfluxConfig::new("http://db:8086")
                .with_database("mux-test_1")
                .validate()
                .is_ok()
        );
    }
}
