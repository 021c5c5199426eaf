//! How to reach a bucket.

use std::fmt;
use std::time::Duration;

use mux_core::{Error, Result};
use serde::{Deserialize, Deserializer};

/// The default largest value, in bytes (64 MiB). mux holds values in memory, so the
/// limit is set well below S3's 5 TiB; raise it with [`S3Config::with_max_value_size`].
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;
/// Values at least this large are uploaded in parts (default 16 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 16 << 20;
/// The size of each part of a multipart upload (default 8 MiB; S3's minimum is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// How writes guard against a concurrent newer write.
///
/// In TOML: `conditional_writes = "etag"` (the default) or `"unconditional"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConditionalWrites {
    /// Every write carries `If-Match: <etag of the version read>` (or `If-None-Match: *`
    /// when there was no object) and is retried from the read when the store answers
    /// "precondition failed" (AWS S3, MinIO, Ceph RGW and R2 evaluate these headers
    /// atomically). Safe against racing writers except when a racing write carries the
    /// very bytes already stored: S3's ETag hashes the bytes, not the version, so
    /// `Capability::atomic_conditional_write` stays `false` (see the README).
    #[default]
    Etag,
    /// For stores that ignore or reject conditional headers: read, compare, write.
    /// When two writers of one key
    /// overlap (between one's read and its write), the lower version can replace the
    /// higher. The `Mux` coordinator's read repair restores the highest version from
    /// the other replicas; on its own such a store is last-writer-wins under races.
    Unconditional,
}

/// How to reach a bucket, and how to lay records out in it.
///
/// Build it in code with [`S3Config::new`] and the `with_*` methods, or deserialize it
/// from a TOML table (unknown fields are refused; durations are integer milliseconds):
///
/// ```
/// let config: mux_s3::S3Config = toml::from_str(r#"
///     bucket = "records"
///     endpoint = "http://127.0.0.1:9000"
///     access_key_id = "minio"
///     secret_access_key = "minio-secret"
///     operation_timeout_ms = 5000
/// "#).unwrap();
/// assert_eq!(config.prefix, "mux");
/// assert!(config.path_style());
/// assert!(!format!("{config:?}").contains("minio-secret"));
/// ```
///
/// `Debug` shows the access key id but never the secret access key or the session
/// token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Objects live at `<prefix>/<key>` (or `<key>` when empty). No leading or trailing
    /// `/`. Default `mux`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The region; `None` takes it from the standard chain (`AWS_REGION`, profile, ...).
    #[serde(default)]
    pub region: Option<String>,
    /// A custom endpoint for S3-compatible stores (`http://127.0.0.1:9000`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Address buckets as `<endpoint>/<bucket>` instead of `<bucket>.<endpoint>`.
    /// `None` (the default): path-style with a custom `endpoint` (most S3-compatible
    /// stores and local servers need it), virtual-host on AWS. See
    /// [`S3Config::path_style`].
    #[serde(default)]
    pub path_style: Option<bool>,
    /// An explicit access key id; `None` (the default) takes credentials from the
    /// standard AWS chain: environment (`AWS_ACCESS_KEY_ID`, ...), the shared config and
    /// credentials files (profiles, SSO, `credential_process`), web identity, ECS
    /// container and EC2 instance metadata.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id` (required with it; hidden in `Debug`).
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// A session token for temporary credentials (with `access_key_id`; hidden in
    /// `Debug`).
    #[serde(default)]
    pub session_token: Option<String>,
    /// How writes guard against concurrent newer writes (default
    /// [`ConditionalWrites::Etag`]).
    #[serde(default)]
    pub conditional_writes: ConditionalWrites,
    /// Create the bucket at connect when it does not exist (development and tests;
    /// default `false`).
    #[serde(default)]
    pub create_bucket: bool,
    /// Values at least this large are uploaded in parts (default 16 MiB).
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: usize,
    /// The part size of multipart uploads (at least [`MIN_PART_SIZE`]; default 8 MiB).
    #[serde(default = "default_part_size")]
    pub part_size: usize,
    /// The largest value accepted (default [`DEFAULT_MAX_VALUE_SIZE`]).
    #[serde(default = "default_max_value_size")]
    pub max_value_size: usize,
    /// The SDK's attempts per request (its own retries of throttling and 5xx answers).
    /// Default 1, no SDK retries: in a `Mux` the coordinator retries temporary errors
    /// itself (see the README); raise it for an `S3Backend` used on its own.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one request may take, SDK retries included (TOML:
    /// `operation_timeout_ms`; default 60 s).
    #[serde(
        rename = "operation_timeout_ms",
        default = "default_operation_timeout",
        deserialize_with = "millis"
    )]
    pub operation_timeout: Duration,
    /// How long connecting may take (TOML: `connect_timeout_ms`; default 3 s).
    #[serde(
        rename = "connect_timeout_ms",
        default = "default_connect_timeout",
        deserialize_with = "millis"
    )]
    pub connect_timeout: Duration,
    /// PEM CA certificates trusted besides the system's roots, for an `endpoint`
    /// whose certificate a private or self-signed CA signed (without it such an
    /// endpoint is refused: verification is always on).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// How many requests one call runs at once: the object heads of a `list`
    /// (listings carry no user metadata), the puts of a `put_batch`, the parts of a
    /// multipart upload (default 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_prefix() -> String {
    "mux".to_owned()
}
fn default_multipart_threshold() -> usize {
    DEFAULT_MULTIPART_THRESHOLD
}
fn default_part_size() -> usize {
    DEFAULT_PART_SIZE
}
fn default_max_value_size() -> usize {
    DEFAULT_MAX_VALUE_SIZE
}
fn default_max_attempts() -> u32 {
    1
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_concurrency() -> usize {
    16
}

/// A duration written as integer milliseconds.
fn millis<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("conditional_writes", &self.conditional_writes)
            .field("create_bucket", &self.create_bucket)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("max_value_size", &self.max_value_size)
            .field("max_attempts", &self.max_attempts)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl S3Config {
    /// How to reach the service, for [`mux_aws::Connection::load`].
    pub(crate) fn connection(&self) -> mux_aws::Connection {
        mux_aws::Connection {
            service: "S3",
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            credentials: self
                .access_key_id
                .clone()
                .zip(self.secret_access_key.clone())
                .map(|(id, secret)| (id, secret, self.session_token.clone())),
            max_attempts: self.max_attempts,
            operation_timeout: self.operation_timeout,
            connect_timeout: self.connect_timeout,
            ca_file: self.ca_file.clone(),
        }
    }

    /// A config for `bucket` with prefix `mux`, credentials and region from the
    /// standard AWS chain, ETag-conditional writes, no SDK retries.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            prefix: default_prefix(),
            region: None,
            endpoint: None,
            path_style: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            conditional_writes: ConditionalWrites::Etag,
            create_bucket: false,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_attempts: default_max_attempts(),
            operation_timeout: default_operation_timeout(),
            connect_timeout: default_connect_timeout(),
            ca_file: None,
            concurrency: default_concurrency(),
        }
    }

    /// Whether buckets are addressed path-style: [`S3Config::path_style`] when set,
    /// else with a custom endpoint.
    pub fn path_style(&self) -> bool {
        self.path_style.unwrap_or(self.endpoint.is_some())
    }

    /// Sets the key prefix (`""` for none).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> S3Config {
        self.prefix = prefix.into();
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> S3Config {
        self.region = Some(region.into());
        self
    }

    /// Sets a custom endpoint and path-style addressing (S3-compatible stores).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>, path_style: bool) -> S3Config {
        self.endpoint = Some(endpoint.into());
        self.path_style = Some(path_style);
        self
    }

    /// Uses an explicit access key instead of the standard chain.
    pub fn with_static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3Config {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self.session_token = None;
        self
    }

    /// Sets a session token (temporary credentials; with
    /// [`S3Config::with_static_credentials`]).
    pub fn with_session_token(mut self, token: impl Into<String>) -> S3Config {
        self.session_token = Some(token.into());
        self
    }

    /// Sets the SDK's attempts per request (1: no SDK retries).
    pub fn with_max_attempts(mut self, attempts: u32) -> S3Config {
        self.max_attempts = attempts;
        self
    }

    /// Sets the per-request and connect timeouts.
    pub fn with_timeouts(mut self, operation: Duration, connect: Duration) -> S3Config {
        self.operation_timeout = operation;
        self.connect_timeout = connect;
        self
    }

    /// Sets how many requests one call runs at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> S3Config {
        self.concurrency = concurrency;
        self
    }

    /// Sets how writes guard against concurrent newer writes.
    pub fn with_conditional_writes(mut self, mode: ConditionalWrites) -> S3Config {
        self.conditional_writes = mode;
        self
    }

    /// Creates the bucket at connect when it is missing.
    pub fn with_create_bucket(mut self, create: bool) -> S3Config {
        self.create_bucket = create;
        self
    }

    /// Sets the multipart threshold and part size.
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> S3Config {
        self.multipart_threshold = threshold;
        self.part_size = part_size;
        self
    }

    /// Sets the largest value accepted.
    pub fn with_max_value_size(mut self, max: usize) -> S3Config {
        self.max_value_size = max;
        self
    }

    /// Checks the settings, naming every problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.bucket.is_empty() {
            problems.push("the bucket name is empty".to_owned());
        }
        if self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            problems.push(format!(
                "prefix {:?} must not start or end with '/'",
                self.prefix
            ));
        }
        if self.prefix.contains("//") {
            problems.push(format!(
                "prefix {:?} contains an empty segment",
                self.prefix
            ));
        }
        if self.part_size < MIN_PART_SIZE {
            problems.push(format!(
                "part_size {} is below S3's minimum part of {MIN_PART_SIZE} bytes",
                self.part_size
            ));
        }
        if self.multipart_threshold == 0 {
            problems.push("multipart_threshold must be at least 1".to_owned());
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".to_owned());
        }
        problems.extend(mux_aws::connection_problems(
            self.access_key_id.as_deref(),
            self.secret_access_key.as_deref(),
            self.session_token.as_deref(),
            (self.operation_timeout, self.connect_timeout),
            self.max_attempts,
        ));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "invalid S3 config: {}",
                problems.join("; ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = S3Config::new("b")
            .with_static_credentials("AKIAEXAMPLE", "s3cr3t-key")
            .with_session_token("t0ken");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        assert!(!shown.contains("t0ken"), "{shown}");
    }

    #[test]
    fn validation_names_every_problem() {
        let mut c = S3Config::new("").with_prefix("/a/");
        c.part_size = 1024;
        c.secret_access_key = Some("s".into());
        let err = c.validate().unwrap_err().to_string();
        for needle in [
            "bucket name is empty",
            "must not start or end",
            "part_size 1024",
            "secret_access_key is set without access_key_id",
        ] {
            assert!(err.contains(needle), "{err}");
        }
        assert!(!err.contains("\"s\""), "{err}");
        assert!(S3Config::new("b").with_prefix("").validate().is_ok());
    }

    #[test]
    fn deserializes_from_toml_with_defaults() {
        let c: S3Config = toml::from_str(
            r#"
            bucket = "records"
            prefix = "app"
            region = "eu-west-1"
            endpoint = "http://127.0.0.1:4566"
            path_style = false
            access_key_id = "AKIAEXAMPLE"
            secret_access_key = "s3cr3t-key"
            session_token = "t0ken"
            create_bucket = true
            conditional_writes = "unconditional"
            multipart_threshold = 10485760
            part_size = 5242880
            max_value_size = 1048576
            max_attempts = 3
            operation_timeout_ms = 1500
            connect_timeout_ms = 250
            concurrency = 4
            "#,
        )
        .unwrap();
        assert_eq!(c.bucket, "records");
        assert_eq!(c.prefix, "app");
        assert!(!c.path_style());
        assert_eq!(c.conditional_writes, ConditionalWrites::Unconditional);
        assert_eq!(c.operation_timeout, Duration::from_millis(1500));
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!((c.max_attempts, c.concurrency), (3, 4));
        c.validate().unwrap();
        let shown = format!("{c:?}");
        for secret in ["s3cr3t-key", "t0ken"] {
            assert!(!shown.contains(secret), "{shown}");
        }

        let d: S3Config = toml::from_str(r#"bucket = "b""#).unwrap();
        assert_eq!(format!("{d:?}"), format!("{:?}", S3Config::new("b")));
        assert_eq!(d.max_attempts, 1, "no SDK retries by default");
        assert!(!d.path_style(), "virtual-host on AWS");
        let e: S3Config = toml::from_str("bucket = \"b\"\nendpoint = \"http://h\"").unwrap();
        assert!(e.path_style(), "path-style with a custom endpoint");
    }

    #[test]
    fn unknown_toml_fields_are_refused_by_name() {
        let err = toml::from_str::<S3Config>("bucket = \"b\"\nbukcet_prefix = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bukcet_prefix`"), "{err}");
        let err = toml::from_str::<S3Config>("operation_timeout = 5").unwrap_err();
        assert!(err.to_string().contains("operation_timeout"), "{err}");
    }
}
