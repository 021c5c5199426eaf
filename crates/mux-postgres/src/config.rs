//! [`PostgresConfig`]: how to reach PostgreSQL and where to keep records;
//! [`PostgresFeedConfig`]: the same for a change feed.

pub use mux_core::TlsMode;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The default largest value, in bytes (64 MiB; `bytea` allows 1 GiB).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

/// How to reach PostgreSQL and where to keep records. In TOML (only `url` is required):
///
/// ```toml
/// [[backends]]
/// name = "pg-eu"
/// kind = "postgres"
/// url = "postgres://app:secret@db.example:5432/app"
/// table = "mux_records"
/// pool_size = 16
/// max_batch = 256
/// batch_concurrency = 1
/// tls = { mode = "require", ca_file = "/etc/ssl/certs/db-ca.pem" }
/// ```
///
/// `Debug` shows the URL with its password replaced by `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// A connection URL (`postgres://user:password@host:port/db`) or key-value string.
    pub url: String,
    /// The table holding the records (letters, digits and `_`).
    #[serde(default = "default_table")]
    pub table: String,
    /// The most connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// The most single puts sent together by the transparent batcher.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How many batches of single puts may be in flight at once. Fewer means larger
    /// batches (fewer round trips and commits) under load.
    #[serde(default = "default_batch_concurrency")]
    pub batch_concurrency: usize,
    /// Whether to use TLS (rustls on ring). With `require`, the server's certificate is
    /// verified against `ca_file` or the Mozilla root certificates, and must name the
    /// host connected to.
    #[serde(default)]
    pub tls: TlsMode,
}

fn default_table() -> String {
    "mux_records".into()
}

fn default_pool_size() -> usize {
    16
}

fn default_max_batch() -> usize {
    256
}

fn default_batch_concurrency() -> usize {
    1
}

impl PostgresConfig {
    /// A config for `url`: table `mux_records`, 16 connections, batches of up to 256
    /// single puts with one batch in flight (larger batches beat parallel ones when the
    /// server is CPU-bound; raise it for a distant server).
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            table: default_table(),
            pool_size: default_pool_size(),
            max_batch: default_max_batch(),
            batch_concurrency: default_batch_concurrency(),
            tls: TlsMode::Disable,
        }
    }

    /// A config from separate fields instead of a URL.
    pub fn from_fields(
        host: &str,
        port: u16,
        user: &str,
        password: Option<&str>,
        dbname: &str,
    ) -> PostgresConfig {
        // Key-value form; values are single-quoted with `\` and `'` escaped.
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut url = format!(
            "host={} port={port} user={} dbname={}",
            q(host),
            q(user),
            q(dbname)
        );
        if let Some(p) = password {
            url.push_str(&format!(" password={}", q(p)));
        }
        PostgresConfig::new(url)
    }

    /// Sets the table.
    pub fn with_table(mut self, table: impl Into<String>) -> PostgresConfig {
        self.table = table.into();
        self
    }

    /// Sets the TLS mode.
    pub fn with_tls(mut self, tls: TlsMode) -> PostgresConfig {
        self.tls = tls;
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, size: usize) -> PostgresConfig {
        self.pool_size = size;
        self
    }

    /// How many batches of single puts may be in flight at once (at least 1).
    pub fn with_batch_concurrency(mut self, batches: usize) -> PostgresConfig {
        self.batch_concurrency = batches.max(1);
        self
    }
}

/// Where a [`PostgresFeed`](crate::PostgresFeed) lives and what it keeps. In TOML (only `url` is required):
///
/// ```toml
/// [feed]
/// kind = "postgres"
/// url = "postgres://app:secret@db.example:5432/app"
/// table = "mux_feed"
/// retention_events = 1000000
/// retention_age = "24h"
/// poll_interval_ms = 1000
/// pool_size = 4
/// tls = { mode = "require", ca_file = "/etc/ssl/certs/db-ca.pem" }
/// ```
///
/// `Debug` shows the URL with its password replaced by `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresFeedConfig {
    /// A connection URL (`postgres://user:password@host:port/db`) or key-value string.
    pub url: String,
    /// The events table (letters, digits and `_`, at most 58); `<table>_meta` beside it.
    #[serde(default = "default_feed_table")]
    pub table: String,
    /// How many of the newest events retention keeps (at least 1).
    #[serde(default = "default_retention_events")]
    pub retention_events: u64,
    /// How long retention keeps an event (`"24h"`, `"90m"`, …).
    #[serde(
        default = "default_retention_age",
        deserialize_with = "humantime_duration"
    )]
    pub retention_age: Duration,
    /// How often a waiting reader reads again without a notification, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The most pooled connections (the `LISTEN` connection is extra).
    #[serde(default = "default_feed_pool_size")]
    pub pool_size: usize,
    /// Whether to use TLS, as for the backend.
    #[serde(default)]
    pub tls: TlsMode,
}

fn default_feed_table() -> String {
    "mux_feed".into()
}
fn default_retention_events() -> u64 {
    1_000_000
}
fn default_retention_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_feed_pool_size() -> usize {
    4
}

fn humantime_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("invalid duration {text:?} (like \"24h\"): {e}"))
    })
}

impl PostgresFeedConfig {
    /// A config for `url` with every default: table `mux_feed`, the newest 1,000,000
    /// events up to 24 h old, polling every second, 4 connections, no TLS.
    pub fn new(url: impl Into<String>) -> PostgresFeedConfig {
        PostgresFeedConfig {
            url: url.into(),
            table: default_feed_table(),
            retention_events: default_retention_events(),
            retention_age: default_retention_age(),
            poll_interval_ms: default_poll_interval_ms(),
            pool_size: default_feed_pool_size(),
            tls: TlsMode::Disable,
        }
    }

    /// Sets the table.
    pub fn with_table(mut self, table: impl Into<String>) -> PostgresFeedConfig {
        self.table = table.into();
        self
    }

    /// Sets retention: the newest `events`, none older than `age`.
    pub fn with_retention(mut self, events: u64, age: Duration) -> PostgresFeedConfig {
        (self.retention_events, self.retention_age) = (events, age);
        self
    }

    /// Sets the poll interval.
    pub fn with_poll_interval(mut self, every: Duration) -> PostgresFeedConfig {
        self.poll_interval_ms = every.as_millis() as u64;
        self
    }

    /// Sets the TLS mode.
    pub fn with_tls(mut self, tls: TlsMode) -> PostgresFeedConfig {
        self.tls = tls;
        self
    }
}

impl fmt::Debug for PostgresFeedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresFeedConfig")
            .field("url", &redact(&self.url))
            .field("table", &self.table)
            .field("retention_events", &self.retention_events)
            .field("retention_age", &self.retention_age)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The URL (or key-value string) with any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => match url.find("password=") {
            // Key-value form: hide everything from the password on (quoting makes the
            // end of the value hard to find safely).
            Some(at) => format!("{}password=***", &url[..at]),
            None => url.to_owned(),
        },
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("max_batch", &self.max_batch)
            .field("batch_concurrency", &self.batch_concurrency)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let shown = format!(
            "{:?}",
            PostgresConfig::new("postgres://app:s3cret@db:5432/x")
        );
        assert!(
            !shown.contains("s3cret") && shown.contains("app:***@db"),
            "{shown}"
        );
        let shown = format!(
            "{:?}",
            PostgresConfig::new("host=db user=app password=s3cret")
        );
        assert!(
            !shown.contains("s3cret") && shown.contains("password=***"),
            "{shown}"
        );
    }

    #[test]
    fn deserializes_from_toml_with_defaults_and_tls() {
        let c: PostgresConfig = toml::from_str(r#"url = "postgres://db/x""#).unwrap();
        assert_eq!(
            (
                c.table.as_str(),
                c.pool_size,
                c.max_batch,
                c.batch_concurrency,
                &c.tls
            ),
            ("mux_records", 16, 256, 1, &TlsMode::Disable)
        );
        let c: PostgresConfig = toml::from_str(
            r#"
url = "postgres://db/x"
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
        let e = toml::from_str::<PostgresConfig>("url = \"x\"\ntabel = \"t\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `tabel`"), "{e}");
    }
}
