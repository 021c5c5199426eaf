//! How to reach a bucket.

use std::fmt;
use std::time::Duration;

use mux_core::{Error, Result};

/// The default largest value, in bytes (64 MiB). mux holds values in memory, so the
/// limit is set well below S3's 5 TiB; raise it with [`S3Config::with_max_value_size`].
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;
/// Values at least this large are uploaded in parts (default 16 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 16 << 20;
/// The size of each part of a multipart upload (default 8 MiB; S3's minimum is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Where the credentials come from.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum S3Credentials {
    /// The standard AWS chain: environment (`AWS_ACCESS_KEY_ID`, ...), the shared
    /// config and credentials files (profiles, SSO, `credential_process`), web identity,
    /// ECS container and EC2 instance metadata.
    #[default]
    Chain,
    /// An explicit access key.
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key (hidden in `Debug`).
        secret_access_key: String,
        /// A session token for temporary credentials (hidden in `Debug`).
        session_token: Option<String>,
    },
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Credentials::Chain => f.write_str("Chain"),
            S3Credentials::Static {
                access_key_id,
                session_token,
                ..
            } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"***")
                .field("session_token", &session_token.as_ref().map(|_| "***"))
                .finish(),
        }
    }
}

/// How writes guard against a concurrent newer write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Objects live at `<prefix>/<key>` (or `<key>` when empty). No leading or trailing `/`.
    pub prefix: String,
    /// The region; `None` takes it from the standard chain (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// A custom endpoint for S3-compatible stores (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Address buckets as `<endpoint>/<bucket>` instead of `<bucket>.<endpoint>`
    /// (most S3-compatible stores and local servers need this).
    pub path_style: bool,
    /// Where the credentials come from.
    pub credentials: S3Credentials,
    /// How writes guard against concurrent newer writes.
    pub conditional_writes: ConditionalWrites,
    /// Create the bucket at connect when it does not exist (development and tests).
    pub create_bucket: bool,
    /// Values at least this large are uploaded in parts.
    pub multipart_threshold: usize,
    /// The part size of multipart uploads (at least [`MIN_PART_SIZE`]).
    pub part_size: usize,
    /// The largest value accepted.
    pub max_value_size: usize,
    /// The SDK's attempts per request (its own retries of throttling and 5xx answers).
    pub max_attempts: u32,
    /// How long one request may take, retries included.
    pub operation_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How many requests one call runs at once: the object heads of a `list`
    /// (listings carry no user metadata), the puts of a `put_batch`, the parts of a
    /// multipart upload.
    pub concurrency: usize,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials)
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
    /// A config for `bucket` with prefix `mux`, credentials and region from the
    /// standard AWS chain, ETag-conditional writes.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            prefix: "mux".into(),
            region: None,
            endpoint: None,
            path_style: false,
            credentials: S3Credentials::Chain,
            conditional_writes: ConditionalWrites::Etag,
            create_bucket: false,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_attempts: 3,
            operation_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(3),
            concurrency: 16,
        }
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
        self.path_style = path_style;
        self
    }

    /// Uses an explicit access key instead of the standard chain.
    pub fn with_static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3Config {
        self.credentials = S3Credentials::Static {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        };
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
        if self.max_attempts == 0 {
            problems.push("max_attempts must be at least 1".to_owned());
        }
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
        let mut c = S3Config::new("b").with_static_credentials("AKIAEXAMPLE", "s3cr3t-key");
        if let S3Credentials::Static { session_token, .. } = &mut c.credentials {
            *session_token = Some("t0ken".into());
        }
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        assert!(!shown.contains("t0ken"), "{shown}");
    }

    #[test]
    fn validation_names_every_problem() {
        let mut c = S3Config::new("").with_prefix("/a/");
        c.part_size = 1024;
        let err = c.validate().unwrap_err().to_string();
        for needle in [
            "bucket name is empty",
            "must not start or end",
            "part_size 1024",
        ] {
            assert!(err.contains(needle), "{err}");
        }
        assert!(S3Config::new("b").with_prefix("").validate().is_ok());
    }
}
