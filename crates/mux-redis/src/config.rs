//! [`RedisConfig`]: how to reach Redis and where to keep records.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The default largest value, in bytes (64 MiB; Redis allows 512 MiB).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

/// How to reach Redis. In TOML (only `url` is required):
///
/// ```toml
/// [[backends]]
/// name = "cache-eu"
/// kind = "redis"
/// url = "redis://:secret@redis.example:6379/0"   # rediss:// for TLS
/// ca_file = "/etc/mux/redis-ca.pem"   # optional, rediss:// only: trust this CA
/// namespace = "mux"
/// layout = "string"   # or "hash": see `Layout`
/// response_timeout_ms = 5000
/// connection_timeout_ms = 2000
/// ```
///
/// `Debug` shows the URL with its password replaced by `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://…` for TLS (the server's
    /// certificate is verified against the system's roots, or `ca_file`).
    pub url: String,
    /// PEM CA certificates that sign the server's certificate, for a private or
    /// self-signed CA (`rediss://` only); without it such a server is refused.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Prefix of every Redis key mux writes (`<namespace>:r:…`, `<namespace>:idx`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// How records are written (both are always read): one string each (the default),
    /// or the hash an older mux wrote, for a rolling upgrade (see [`Layout`]).
    #[serde(default)]
    pub layout: Layout,
    /// How long to wait for a response before the call fails as a timeout (kept by a
    /// shared coarse timer: the call fails up to an eighth later, at most a second).
    #[serde(
        rename = "response_timeout_ms",
        default = "default_response_timeout",
        deserialize_with = "millis"
    )]
    pub response_timeout: Duration,
    /// How long to wait for a connection to be established.
    #[serde(
        rename = "connection_timeout_ms",
        default = "default_connection_timeout",
        deserialize_with = "millis"
    )]
    pub connection_timeout: Duration,
}

/// How a record is written to Redis. Either is read whatever this says, and a write
/// converts a record kept in the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Layout {
    /// One string per record: the metadata as one JSON line, then the value. A read is
    /// one `GET`.
    #[default]
    String,
    /// One hash per record with fields `v`, `m` and `val`, as mux wrote before strings.
    /// A node that only knows hashes fails with `WRONGTYPE` on a string: keep every node
    /// on `hash` until all of them read strings, then drop the setting.
    Hash,
}

impl Layout {
    /// The other layout (the one a `WRONGTYPE` reply points to).
    pub(crate) fn other(self) -> Layout {
        match self {
            Layout::String => Layout::Hash,
            Layout::Hash => Layout::String,
        }
    }
}

fn default_namespace() -> String {
    "mux".into()
}

pub(crate) fn default_response_timeout() -> Duration {
    Duration::from_secs(5)
}

pub(crate) fn default_connection_timeout() -> Duration {
    Duration::from_secs(2)
}

pub(crate) fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_millis(u64::deserialize(d)?))
}

impl RedisConfig {
    /// A config for `url` with namespace `mux`.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            ca_file: None,
            namespace: default_namespace(),
            layout: Layout::default(),
            response_timeout: default_response_timeout(),
            connection_timeout: default_connection_timeout(),
        }
    }

    /// Trusts the CA certificates in `path` (PEM) for a `rediss://` URL.
    pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> RedisConfig {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets how records are written (see [`Layout`]).
    pub fn with_layout(mut self, layout: Layout) -> RedisConfig {
        self.layout = layout;
        self
    }

    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> RedisConfig {
        self.namespace = namespace.into();
        self
    }
}

/// The URL with any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("ca_file", &self.ca_file)
            .field("namespace", &self.namespace)
            .field("layout", &self.layout)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let c = RedisConfig::new("redis://app:s3cret@127.0.0.1:6379/0");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("redis://app:***@127.0.0.1:6379/0"),
            "{shown}"
        );
    }

    #[test]
    fn deserializes_from_toml_with_defaults() {
        let c: RedisConfig = toml::from_str(r#"url = "redis://127.0.0.1""#).unwrap();
        assert_eq!(c.namespace, "mux");
        assert_eq!(c.layout, Layout::String);
        assert_eq!(c.response_timeout, Duration::from_secs(5));
        let c: RedisConfig = toml::from_str("url = \"redis://h\"\nlayout = \"hash\"").unwrap();
        assert_eq!(c.layout, Layout::Hash);
        let e =
            toml::from_str::<RedisConfig>("url = \"redis://h\"\nlayout = \"list\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `list`"), "{e}");
        let c: RedisConfig = toml::from_str(
            "url = \"redis://127.0.0.1\"\nnamespace = \"n\"\nresponse_timeout_ms = 250",
        )
        .unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.response_timeout),
            ("n", Duration::from_millis(250))
        );
        let e = toml::from_str::<RedisConfig>("url = \"x\"\nnamspace = \"n\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `namspace`"), "{e}");
    }
}
