//! How to reach Parameter Store, and where records live in it.

use std::fmt;
use std::time::Duration;

use aws_sdk_ssm::types::ParameterTier;
use mux_core::{Error, Result};
use serde::{Deserialize, Deserializer};

use crate::names;

/// The parameter tier records are written in.
///
/// In TOML: `tier = "standard"` (the default) or `"advanced"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tier {
    /// Free; values up to 4 KB; at most 10,000 parameters per account and region.
    #[default]
    Standard,
    /// Charged per parameter; values up to 8 KB; up to 100,000 parameters. An advanced
    /// parameter cannot go back to the standard tier.
    Advanced,
}

impl Tier {
    /// SSM's limit on a parameter value in this tier, in bytes (4096 or 8192).
    pub const fn value_limit(self) -> usize {
        match self {
            Tier::Standard => 4096,
            Tier::Advanced => 8192,
        }
    }

    /// The largest record value mux accepts in this tier (3072 or 6144 bytes): a value
    /// that is not UTF-8 text is stored in base64, which takes 4 characters per 3 bytes,
    /// so this is the size every value fits in, whatever its bytes.
    pub const fn max_value_size(self) -> usize {
        self.value_limit() / 4 * 3
    }

    /// The tier's name in SSM's API and in errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
        }
    }

    pub(crate) fn sdk(self) -> ParameterTier {
        match self {
            Tier::Standard => ParameterTier::Standard,
            Tier::Advanced => ParameterTier::Advanced,
        }
    }
}

/// How to reach Parameter Store, and where records live in it.
///
/// Build it in code with [`SsmConfig::new`] and the `with_*` methods, or deserialize it
/// from a TOML table (unknown fields are refused; durations are integer milliseconds).
/// The connection fields have the names and meaning of `mux_s3::S3Config`'s:
///
/// ```
/// let config: mux_ssm::SsmConfig = toml::from_str(r#"
///     root_path = "/mux"
///     tier = "advanced"
///     region = "eu-west-1"
///     access_key_id = "AKIAEXAMPLE"
///     secret_access_key = "s3cr3t"
/// "#).unwrap();
/// assert_eq!(config.tier, mux_ssm::Tier::Advanced);
/// assert!(!format!("{config:?}").contains("s3cr3t"));
/// ```
///
/// `Debug` shows the access key id but never the secret access key or the session
/// token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SsmConfig {
    /// Parameters live at `<root_path>/<escaped key>`: `""` (the default) puts the key
    /// `paramconfig/acme/limits` at `/paramconfig/acme/limits`, `"/mux"` at
    /// `/mux/paramconfig/acme/limits`. Empty, or `/`-separated segments of
    /// `a-zA-Z0-9_.-` with a leading `/` and no trailing one.
    #[serde(default)]
    pub root_path: String,
    /// The tier new versions are written in (default [`Tier::Standard`]); it sets
    /// `max_value_size` ([`Tier::max_value_size`]).
    #[serde(default)]
    pub tier: Tier,
    /// The region; `None` takes it from the standard chain (`AWS_REGION`, profile, ...).
    #[serde(default)]
    pub region: Option<String>,
    /// A custom endpoint (`http://127.0.0.1:4566` for moto).
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
    /// The SDK's attempts per request. Default 1, no SDK retries: in a `Mux` the
    /// coordinator retries temporary errors itself; raise it for a backend used alone.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one request may take, SDK retries included (TOML:
    /// `operation_timeout_ms`; default 30 s).
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
    /// How long a listing's later pages are cut from the scan of the prefix its first
    /// page made, instead of reading the whole subtree again (TOML: `list_reuse_ms`;
    /// default 30 s; 0: every page reads the subtree). Those pages show the subtree as
    /// it was at the scan.
    #[serde(
        rename = "list_reuse_ms",
        default = "default_list_reuse",
        deserialize_with = "millis"
    )]
    pub list_reuse: Duration,
    /// How many puts of a `put_batch` run at once (default 4). SSM's write quota per
    /// account and region is low; past it, writes fail with a temporary `Overloaded`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_max_attempts() -> u32 {
    1
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_concurrency() -> usize {
    4
}
fn default_list_reuse() -> Duration {
    Duration::from_secs(30)
}

/// A duration written as integer milliseconds.
fn millis<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

impl fmt::Debug for SsmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("SsmConfig")
            .field("root_path", &self.root_path)
            .field("tier", &self.tier)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("max_attempts", &self.max_attempts)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("list_reuse", &self.list_reuse)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Default for SsmConfig {
    fn default() -> SsmConfig {
        SsmConfig::new()
    }
}

impl SsmConfig {
    /// No root path, the standard tier, region and credentials from the standard AWS
    /// chain, no SDK retries.
    pub fn new() -> SsmConfig {
        SsmConfig {
            root_path: String::new(),
            tier: Tier::Standard,
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            max_attempts: default_max_attempts(),
            operation_timeout: default_operation_timeout(),
            connect_timeout: default_connect_timeout(),
            ca_file: None,
            list_reuse: default_list_reuse(),
            concurrency: default_concurrency(),
        }
    }

    /// How to reach the service, for [`mux_aws::Connection::load`].
    pub(crate) fn connection(&self) -> mux_aws::Connection {
        mux_aws::Connection {
            service: "SSM",
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

    /// Sets the root path (`""` for none, else `/seg/seg`).
    pub fn with_root_path(mut self, root: impl Into<String>) -> SsmConfig {
        self.root_path = root.into();
        self
    }

    /// Sets the tier.
    pub fn with_tier(mut self, tier: Tier) -> SsmConfig {
        self.tier = tier;
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> SsmConfig {
        self.region = Some(region.into());
        self
    }

    /// Sets a custom endpoint.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> SsmConfig {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Uses an explicit access key instead of the standard chain.
    pub fn with_static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> SsmConfig {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self.session_token = None;
        self
    }

    /// Sets a session token (temporary credentials; with
    /// [`SsmConfig::with_static_credentials`]).
    pub fn with_session_token(mut self, token: impl Into<String>) -> SsmConfig {
        self.session_token = Some(token.into());
        self
    }

    /// Sets the SDK's attempts per request (1: no SDK retries).
    pub fn with_max_attempts(mut self, attempts: u32) -> SsmConfig {
        self.max_attempts = attempts;
        self
    }

    /// Sets the per-request and connect timeouts.
    pub fn with_timeouts(mut self, operation: Duration, connect: Duration) -> SsmConfig {
        self.operation_timeout = operation;
        self.connect_timeout = connect;
        self
    }

    /// Sets how long a listing's later pages reuse its first page's scan (zero: never).
    pub fn with_list_reuse(mut self, reuse: Duration) -> SsmConfig {
        self.list_reuse = reuse;
        self
    }

    /// Sets how many puts of a `put_batch` run at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> SsmConfig {
        self.concurrency = concurrency;
        self
    }

    /// Checks the settings, naming every problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Err(why) = names::check_root(&self.root_path) {
            problems.push(why);
        }
        problems.extend(mux_aws::connection_problems(
            self.access_key_id.as_deref(),
            self.secret_access_key.as_deref(),
            self.session_token.as_deref(),
            (self.operation_timeout, self.connect_timeout),
            self.max_attempts,
        ));
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "invalid SSM config: {}",
                problems.join("; ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_leave_room_for_base64() {
        assert_eq!(Tier::Standard.max_value_size(), 3072);
        assert_eq!(Tier::Advanced.max_value_size(), 6144);
        for tier in [Tier::Standard, Tier::Advanced] {
            // base64 of the largest value fills the tier's limit exactly.
            assert_eq!(
                aws_smithy_types::base64::encoded_length(tier.max_value_size()),
                tier.value_limit()
            );
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let c = SsmConfig::new()
            .with_static_credentials("AKIAEXAMPLE", "s3cr3t-key")
            .with_session_token("t0ken");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        assert!(!shown.contains("t0ken"), "{shown}");
    }

    #[test]
    fn validation_names_every_problem() {
        let mut c = SsmConfig::new().with_root_path("mux/");
        c.secret_access_key = Some("s".into());
        c.max_attempts = 0;
        let err = c.validate().unwrap_err().to_string();
        for needle in [
            "root_path \"mux/\"",
            "secret_access_key is set without access_key_id",
            "max_attempts",
        ] {
            assert!(err.contains(needle), "{err}");
        }
        assert!(SsmConfig::new().validate().is_ok());
        assert!(SsmConfig::new().with_root_path("/a/b-c").validate().is_ok());
    }

    #[test]
    fn deserializes_from_toml_with_defaults() {
        let c: SsmConfig = toml::from_str(
            r#"
            root_path = "/mux"
            tier = "advanced"
            region = "eu-west-1"
            endpoint = "http://127.0.0.1:4566"
            access_key_id = "AKIAEXAMPLE"
            secret_access_key = "s3cr3t-key"
            session_token = "t0ken"
            max_attempts = 3
            operation_timeout_ms = 1500
            connect_timeout_ms = 250
            list_reuse_ms = 0
            concurrency = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.root_path, "/mux");
        assert_eq!(c.tier, Tier::Advanced);
        assert_eq!(c.operation_timeout, Duration::from_millis(1500));
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.max_attempts, 3);
        assert!(c.list_reuse.is_zero());
        assert_eq!(c.concurrency, 2);
        c.validate().unwrap();
        let shown = format!("{c:?}");
        for secret in ["s3cr3t-key", "t0ken"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let d: SsmConfig = toml::from_str("").unwrap();
        assert_eq!(format!("{d:?}"), format!("{:?}", SsmConfig::new()));
        assert_eq!(d.max_attempts, 1, "no SDK retries by default");
    }

    #[test]
    fn unknown_toml_fields_are_refused_by_name() {
        let err = toml::from_str::<SsmConfig>("root = \"/x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `root`"), "{err}");
        let err = toml::from_str::<SsmConfig>("tier = \"intelligent\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("standard"), "{err}");
    }
}
