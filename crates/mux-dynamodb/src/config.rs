//! How to reach a table, and how records are laid out in it.

use std::fmt;
use std::time::Duration;

use mux_core::{Error, Result};
use serde::{Deserialize, Deserializer};

use crate::layout::MAX_VALUE_SIZE;

/// The default partition depth: `tenants/<tenant>/…` keys get one partition per tenant.
pub const DEFAULT_PARTITION_DEPTH: usize = 2;

/// How `put_batch` writes.
///
/// In TOML: `batch_writes = "transaction"` (the default) or `"concurrent"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BatchWrites {
    /// Conditional `TransactWriteItems` of up to 100 records (and 4 MB). A transaction
    /// whose conditions fail for some records is cancelled as a whole; those records are
    /// `Superseded` (the answer names their stored versions) and the rest are sent again
    /// in a new transaction. Each record costs two write units instead of one (see the
    /// README). `Capability::batch` is `true`.
    #[default]
    Transaction,
    /// One conditional `PutItem` per record, `concurrency` at a time: one write unit per
    /// record, as many requests as records. `Capability::batch` is `false`.
    Concurrent,
}

/// How to reach a DynamoDB table (or a DynamoDB-compatible store such as ScyllaDB's
/// Alternator), and how to lay records out in it.
///
/// Built in code with [`DynamoDbConfig::new`] and the `with_*` methods, or deserialized
/// from a TOML table (unknown fields are refused; durations are integer milliseconds).
/// The connection fields have the names and meaning of `mux_s3::S3Config`'s:
///
/// ```
/// let config: mux_dynamodb::DynamoDbConfig = toml::from_str(r#"
///     table = "mux_records"
///     endpoint = "http://127.0.0.1:4566"
///     region = "us-east-1"
///     access_key_id = "test"
///     secret_access_key = "dynamo-secret"
///     create_table = true
/// "#).unwrap();
/// assert_eq!(config.partition_depth, 2);
/// assert!(!format!("{config:?}").contains("dynamo-secret"));
/// ```
///
/// `Debug` shows the access key id but never the secret access key or the session
/// token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DynamoDbConfig {
    /// The table.
    pub table: String,
    /// How many leading key segments form the partition key (default
    /// [`DEFAULT_PARTITION_DEPTH`]): `tenants/acme/limits` lives in partition
    /// `tenants/acme` at depth 2. Listing a prefix at least this deep reads one
    /// partition; a shallower prefix reads the partition index first (see the README).
    /// Fixed when the table is first used: opening it with another depth is refused.
    #[serde(default = "default_partition_depth")]
    pub partition_depth: usize,
    /// Create the table at open when it does not exist (on-demand billing), and wait
    /// until it is `ACTIVE` (default `false`).
    #[serde(default)]
    pub create_table: bool,
    /// How `put_batch` writes (default [`BatchWrites::Transaction`]).
    #[serde(default)]
    pub batch_writes: BatchWrites,
    /// The region; `None` takes it from the standard chain (`AWS_REGION`, profile, ...).
    #[serde(default)]
    pub region: Option<String>,
    /// A custom endpoint (`http://127.0.0.1:4566`, ScyllaDB Alternator's `http://host:8000`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// An explicit access key id; `None` (the default) takes credentials from the
    /// standard AWS chain (environment, profiles, SSO, web identity, ECS, EC2 metadata).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id` (required with it; hidden in `Debug`).
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// A session token for temporary credentials (with `access_key_id`; hidden in
    /// `Debug`).
    #[serde(default)]
    pub session_token: Option<String>,
    /// The largest value accepted (default and upper bound [`MAX_VALUE_SIZE`]: what a
    /// 400 KB item holds beside the largest key and metadata).
    #[serde(default = "default_max_value_size")]
    pub max_value_size: usize,
    /// The SDK's attempts per request (its own retries of throttling and 5xx answers).
    /// Default 1, no SDK retries: in a `Mux` the coordinator retries temporary errors.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one request may take, SDK retries included (TOML:
    /// `operation_timeout_ms`; default 10 s).
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
    /// How many requests one call runs at once: the puts of a concurrent `put_batch`,
    /// the transactions of a transactional one (default 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_partition_depth() -> usize {
    DEFAULT_PARTITION_DEPTH
}
fn default_max_value_size() -> usize {
    MAX_VALUE_SIZE
}
fn default_max_attempts() -> u32 {
    1
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(10)
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

impl fmt::Debug for DynamoDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("DynamoDbConfig")
            .field("table", &self.table)
            .field("partition_depth", &self.partition_depth)
            .field("create_table", &self.create_table)
            .field("batch_writes", &self.batch_writes)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("max_value_size", &self.max_value_size)
            .field("max_attempts", &self.max_attempts)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl DynamoDbConfig {
    /// How to reach the service, for [`mux_aws::Connection::load`].
    pub(crate) fn connection(&self) -> mux_aws::Connection {
        mux_aws::Connection {
            service: "DynamoDB",
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

    /// A config for `table`: partition depth 2, credentials and region from the
    /// standard AWS chain, transactional batches, no SDK retries, no table creation.
    pub fn new(table: impl Into<String>) -> DynamoDbConfig {
        DynamoDbConfig {
            table: table.into(),
            partition_depth: DEFAULT_PARTITION_DEPTH,
            create_table: false,
            batch_writes: BatchWrites::Transaction,
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            max_value_size: MAX_VALUE_SIZE,
            max_attempts: default_max_attempts(),
            operation_timeout: default_operation_timeout(),
            connect_timeout: default_connect_timeout(),
            ca_file: None,
            concurrency: default_concurrency(),
        }
    }

    /// Sets the partition depth.
    pub fn with_partition_depth(mut self, depth: usize) -> DynamoDbConfig {
        self.partition_depth = depth;
        self
    }

    /// Creates the table at open when it is missing.
    pub fn with_create_table(mut self, create: bool) -> DynamoDbConfig {
        self.create_table = create;
        self
    }

    /// Sets how `put_batch` writes.
    pub fn with_batch_writes(mut self, mode: BatchWrites) -> DynamoDbConfig {
        self.batch_writes = mode;
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> DynamoDbConfig {
        self.region = Some(region.into());
        self
    }

    /// Sets a custom endpoint (a local server, Alternator).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> DynamoDbConfig {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Uses an explicit access key instead of the standard chain.
    pub fn with_static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> DynamoDbConfig {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self.session_token = None;
        self
    }

    /// Sets a session token (temporary credentials; with
    /// [`DynamoDbConfig::with_static_credentials`]).
    pub fn with_session_token(mut self, token: impl Into<String>) -> DynamoDbConfig {
        self.session_token = Some(token.into());
        self
    }

    /// Sets the largest value accepted (at most [`MAX_VALUE_SIZE`]).
    pub fn with_max_value_size(mut self, max: usize) -> DynamoDbConfig {
        self.max_value_size = max;
        self
    }

    /// Sets the SDK's attempts per request (1: no SDK retries).
    pub fn with_max_attempts(mut self, attempts: u32) -> DynamoDbConfig {
        self.max_attempts = attempts;
        self
    }

    /// Sets the per-request and connect timeouts.
    pub fn with_timeouts(mut self, operation: Duration, connect: Duration) -> DynamoDbConfig {
        self.operation_timeout = operation;
        self.connect_timeout = connect;
        self
    }

    /// Sets how many requests one call runs at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> DynamoDbConfig {
        self.concurrency = concurrency;
        self
    }

    /// Checks the settings, naming every problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        // DynamoDB's table name rule (Alternator's is the same, shorter).
        let name_ok = (3..=255).contains(&self.table.len())
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            problems.push(format!(
                "table name {:?} must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'",
                self.table
            ));
        }
        if self.partition_depth == 0 {
            problems.push("partition_depth must be at least 1".to_owned());
        }
        if self.max_value_size == 0 || self.max_value_size > MAX_VALUE_SIZE {
            problems.push(format!(
                "max_value_size {} must be between 1 and {MAX_VALUE_SIZE} bytes (a 400 KB \
                 item less the key and metadata)",
                self.max_value_size
            ));
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
                "invalid DynamoDB config: {}",
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
        let c = DynamoDbConfig::new("records")
            .with_static_credentials("AKIAEXAMPLE", "s3cr3t-key")
            .with_session_token("t0ken");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        assert!(!shown.contains("t0ken"), "{shown}");
    }

    #[test]
    fn validation_names_every_problem() {
        let mut c = DynamoDbConfig::new("a b").with_partition_depth(0);
        c.secret_access_key = Some("s".into());
        c.max_value_size = MAX_VALUE_SIZE + 1;
        c.concurrency = 0;
        let err = c.validate().unwrap_err().to_string();
        for needle in [
            "table name \"a b\"",
            "partition_depth must be at least 1",
            "max_value_size",
            "concurrency",
            "secret_access_key is set without access_key_id",
        ] {
            assert!(err.contains(needle), "{err}");
        }
        assert!(!err.contains("\"s\""), "{err}");
        assert!(DynamoDbConfig::new("mux.records-1").validate().is_ok());
    }

    #[test]
    fn deserializes_from_toml_with_defaults() {
        let c: DynamoDbConfig = toml::from_str(
            r#"
            table = "records"
            partition_depth = 3
            create_table = true
            batch_writes = "concurrent"
            region = "eu-west-1"
            endpoint = "http://127.0.0.1:4566"
            access_key_id = "AKIAEXAMPLE"
            secret_access_key = "s3cr3t-key"
            session_token = "t0ken"
            max_value_size = 1024
            max_attempts = 3
            operation_timeout_ms = 1500
            connect_timeout_ms = 250
            concurrency = 4
            "#,
        )
        .unwrap();
        assert_eq!(c.table, "records");
        assert_eq!(c.partition_depth, 3);
        assert!(c.create_table);
        assert_eq!(c.batch_writes, BatchWrites::Concurrent);
        assert_eq!(c.max_value_size, 1024);
        assert_eq!(c.operation_timeout, Duration::from_millis(1500));
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!((c.max_attempts, c.concurrency), (3, 4));
        c.validate().unwrap();
        let shown = format!("{c:?}");
        for secret in ["s3cr3t-key", "t0ken"] {
            assert!(!shown.contains(secret), "{shown}");
        }

        let d: DynamoDbConfig = toml::from_str(r#"table = "records""#).unwrap();
        assert_eq!(
            format!("{d:?}"),
            format!("{:?}", DynamoDbConfig::new("records"))
        );
        assert_eq!(d.max_attempts, 1, "no SDK retries by default");
    }

    #[test]
    fn unknown_toml_fields_are_refused_by_name() {
        let err = toml::from_str::<DynamoDbConfig>("table = \"t\"\npartition_dept = 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `partition_dept`"), "{err}");
    }
}
