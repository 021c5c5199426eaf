//! The configuration of an Azure backend: where the container is, how to authenticate,
//! and how values are uploaded.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::Url;
use mux_core::{Error, Key, Result};
use serde::{Deserialize, Deserializer};

use crate::connection_string::{parse_connection_string, parse_sas_url};
use crate::credential::AzureCredential;
use crate::redact::redact_sas;

/// The largest value an Azure backend accepts by default (64 MiB).
///
/// Azure itself takes block blobs of up to ~190 TiB; the limit is mux's, because a record
/// is held in memory while it is written and read. Raise it with
/// [`AzureConfig::with_max_value_size`].
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

/// Values up to this size are written with one `Put Blob` request by default (8 MiB).
pub const DEFAULT_SINGLE_UPLOAD_THRESHOLD: usize = 8 << 20;

/// The block size of larger values by default (4 MiB).
pub const DEFAULT_BLOCK_SIZE: usize = 4 << 20;

/// The largest block Azure accepts (4000 MiB).
pub const MAX_BLOCK_SIZE: usize = 4000 << 20;

/// The largest single `Put Blob` Azure accepts (5000 MiB).
pub const MAX_SINGLE_UPLOAD: usize = 5000 << 20;

/// Where and how an [`crate::AzureBackend`] stores records.
///
/// Build one in code with [`AzureConfig::from_connection_string`],
/// [`AzureConfig::from_sas_url`], [`AzureConfig::with_account_key`],
/// [`AzureConfig::with_token_credential`] or [`AzureConfig::new`], then adjust it with
/// the `with_*` methods:
///
/// ```
/// use mux_azure::AzureConfig;
/// let config = AzureConfig::from_connection_string(
///     "DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey=a2V5;EndpointSuffix=core.windows.net",
///     "records",
/// )?
/// .with_prefix("mux");
/// assert_eq!(config.endpoint, "https://myaccount.blob.core.windows.net");
/// assert!(!format!("{config:?}").contains("a2V5"));
/// # Ok::<(), mux_core::Error>(())
/// ```
///
/// Or deserialize it from a TOML table (unknown fields are refused, durations are
/// integer milliseconds) with exactly one way to authenticate: `connection_string`,
/// `sas_url` (a container URL with a SAS), `account` + `account_key` (optionally with an
/// `endpoint`), or `entra = true` with an `endpoint` (workload identity, managed
/// identity, then the Azure CLI; see [`AzureCredential::default_chain`]):
///
/// ```
/// let config: mux_azure::AzureConfig = toml::from_str(r#"
///     container = "records"
///     account = "myaccount"
///     account_key = "a2V5"
///     prefix = "mux"
///     timeout_ms = 30000
/// "#).unwrap();
/// config.validate()?;
/// assert!(!format!("{config:?}").contains("a2V5"));
/// # Ok::<(), mux_core::Error>(())
/// ```
///
/// `Debug` never shows a secret: the account key and the connection string are `***`,
/// and so is the signature (`sig=`) of any SAS.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AzureConfig {
    /// The blob service endpoint: `https://<account>.blob.core.windows.net`, or
    /// `http://127.0.0.1:10000/devstoreaccount1` for Azurite. Empty (the TOML default):
    /// taken from `connection_string`, `sas_url` or `account`.
    #[serde(default)]
    pub endpoint: String,
    /// The container holding the records (3–63 lowercase letters, digits and hyphens).
    /// Empty with `sas_url`: taken from the URL.
    #[serde(default)]
    pub container: String,
    /// How to authenticate, when built in code (the constructors set it). In TOML, one
    /// of the fields below stands for it.
    #[serde(skip)]
    pub credential: Option<AzureCredential>,
    /// A storage connection string (see [`AzureConfig::from_connection_string`];
    /// hidden in `Debug`).
    #[serde(default)]
    pub connection_string: Option<String>,
    /// A container SAS URL (see [`AzureConfig::from_sas_url`]; its signature is hidden
    /// in `Debug`).
    #[serde(default)]
    pub sas_url: Option<String>,
    /// The storage account name, with `account_key`.
    #[serde(default)]
    pub account: Option<String>,
    /// The account key, base64 (with `account`; hidden in `Debug`).
    #[serde(default)]
    pub account_key: Option<String>,
    /// Authenticate with Microsoft Entra ID ([`AzureCredential::default_chain`]); needs
    /// an `https` `endpoint`.
    #[serde(default)]
    pub entra: bool,
    /// Blob name prefix: a record lives at `<prefix>/<key>`, or at `<key>` when the
    /// prefix is empty (the default). No leading or trailing `/`.
    #[serde(default)]
    pub prefix: String,
    /// Create the container on connect if it does not exist (default `false`).
    #[serde(default)]
    pub create_container: bool,
    /// Values up to this many bytes are written with one `Put Blob` request; larger ones
    /// are staged in blocks of [`AzureConfig::block_size`] and committed with one
    /// `Put Block List` (default 8 MiB).
    #[serde(default = "default_single_upload_threshold")]
    pub single_upload_threshold: usize,
    /// The block size of staged uploads, and the range size of parallel downloads
    /// (default 4 MiB).
    #[serde(default = "default_block_size")]
    pub block_size: usize,
    /// How many blocks (or ranges) move at once for one large value, and how many
    /// records of a `put_batch` are written at once (default 4).
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// The largest value accepted (default [`DEFAULT_MAX_VALUE_SIZE`]).
    #[serde(default = "default_max_value_size")]
    pub max_value_size: usize,
    /// How long one backend operation may take, SDK retries included, before it fails
    /// as a timeout (TOML: `timeout_ms`; default 60 s).
    #[serde(
        rename = "timeout_ms",
        default = "default_timeout",
        deserialize_with = "millis"
    )]
    pub timeout: Duration,
    /// How often the SDK retries a request that failed with a transient error
    /// (connection errors, 408, 429, 5xx) before mux sees the error. Default 0: in a
    /// `Mux` the coordinator retries temporary errors itself (see the README); raise it
    /// for an `AzureBackend` used on its own.
    #[serde(default)]
    pub max_retries: u32,
    /// The REST API version sent as `x-ms-version`; `None` (the default) sends the SDK's
    /// own (2026-04-06 for `azure_storage_blob` 1.1). Pin an older one for emulators or
    /// Azure Stack that do not know the SDK's.
    #[serde(default)]
    pub api_version: Option<String>,
    /// PEM CA certificates trusted besides the system's roots, for an `endpoint` whose
    /// certificate a private or self-signed CA signed (verification is always on).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_single_upload_threshold() -> usize {
    DEFAULT_SINGLE_UPLOAD_THRESHOLD
}
fn default_block_size() -> usize {
    DEFAULT_BLOCK_SIZE
}
fn default_parallelism() -> usize {
    4
}
fn default_max_value_size() -> usize {
    DEFAULT_MAX_VALUE_SIZE
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A duration written as integer milliseconds.
fn millis<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

impl AzureConfig {
    /// A config for `container` at `endpoint` with `credential` and default settings.
    pub fn new(
        endpoint: impl Into<String>,
        container: impl Into<String>,
        credential: AzureCredential,
    ) -> AzureConfig {
        AzureConfig {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            container: container.into(),
            credential: Some(credential),
            connection_string: None,
            sas_url: None,
            account: None,
            account_key: None,
            entra: false,
            prefix: String::new(),
            create_container: false,
            single_upload_threshold: DEFAULT_SINGLE_UPLOAD_THRESHOLD,
            block_size: DEFAULT_BLOCK_SIZE,
            parallelism: default_parallelism(),
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            timeout: default_timeout(),
            max_retries: 0,
            api_version: None,
            ca_file: None,
        }
    }

    /// A config for `container` in the public-cloud account `account`, authenticated
    /// with its account key (see [`AzureCredential::AccountKey`]).
    pub fn with_account_key(
        account: impl Into<String>,
        key: impl Into<String>,
        container: impl Into<String>,
    ) -> AzureConfig {
        let account = account.into();
        let endpoint = public_endpoint(&account);
        AzureConfig::new(
            endpoint,
            container,
            AzureCredential::account_key(account, key),
        )
    }

    /// A config for `container` at `endpoint` (which must be `https`), authenticated
    /// with an Entra ID token credential.
    pub fn with_token_credential(
        endpoint: impl Into<String>,
        container: impl Into<String>,
        credential: Arc<dyn TokenCredential>,
    ) -> AzureConfig {
        AzureConfig::new(endpoint, container, AzureCredential::Token(credential))
    }

    /// A config from a storage connection string, as shown by the portal or
    /// `az storage account show-connection-string`.
    ///
    /// Understood settings: `AccountName`, `AccountKey`, `SharedAccessSignature`,
    /// `BlobEndpoint`, `DefaultEndpointsProtocol`, `EndpointSuffix` and
    /// `UseDevelopmentStorage=true` (Azurite on its default port); others (the queue,
    /// table and file endpoints) are ignored. The blob endpoint is `BlobEndpoint`, or
    /// `<protocol>://<AccountName>.blob.<EndpointSuffix>` (`https`, `core.windows.net`
    /// by default). A `SharedAccessSignature` wins over an `AccountKey`.
    ///
    /// Errors name the missing or malformed setting, never the string itself.
    pub fn from_connection_string(
        connection_string: &str,
        container: impl Into<String>,
    ) -> Result<AzureConfig> {
        let (endpoint, credential) = parse_connection_string(connection_string)?;
        Ok(AzureConfig::new(endpoint, container, credential))
    }

    /// A config from a container SAS URL:
    /// `https://<account>.blob.core.windows.net/<container>?sv=…&sig=…`.
    pub fn from_sas_url(url: &str) -> Result<AzureConfig> {
        let (endpoint, container, token) = parse_sas_url(url)?;
        Ok(AzureConfig::new(
            endpoint,
            container,
            AzureCredential::Sas(token),
        ))
    }

    /// Sets the blob name prefix (no leading or trailing `/`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> AzureConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets whether `connect` creates the container when it is missing.
    pub fn with_create_container(mut self, create: bool) -> AzureConfig {
        self.create_container = create;
        self
    }

    /// Sets the size up to which a value is written with one request.
    pub fn with_single_upload_threshold(mut self, bytes: usize) -> AzureConfig {
        self.single_upload_threshold = bytes;
        self
    }

    /// Sets the block size of staged uploads (and the range size of downloads).
    pub fn with_block_size(mut self, bytes: usize) -> AzureConfig {
        self.block_size = bytes;
        self
    }

    /// Sets how many transfers run at once for one value or one batch.
    pub fn with_parallelism(mut self, parallelism: usize) -> AzureConfig {
        self.parallelism = parallelism;
        self
    }

    /// Sets the largest value accepted.
    pub fn with_max_value_size(mut self, bytes: usize) -> AzureConfig {
        self.max_value_size = bytes;
        self
    }

    /// Sets how long one operation may take.
    pub fn with_timeout(mut self, timeout: Duration) -> AzureConfig {
        self.timeout = timeout;
        self
    }

    /// Sets how often the SDK retries transient failures.
    pub fn with_max_retries(mut self, retries: u32) -> AzureConfig {
        self.max_retries = retries;
        self
    }

    /// Pins the REST API version (`x-ms-version`) of every request.
    pub fn with_api_version(mut self, version: impl Into<String>) -> AzureConfig {
        self.api_version = Some(version.into());
        self
    }

    /// Replaces the endpoint (for sovereign clouds, private endpoints or an emulator).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> AzureConfig {
        self.endpoint = endpoint.into().trim_end_matches('/').to_owned();
        self
    }

    /// Checks every setting, naming what is wrong; [`crate::open`] and
    /// [`crate::AzureBackend::connect`] call it.
    pub fn validate(&self) -> Result<()> {
        self.resolve().map(drop)
    }

    /// This config with its way to authenticate resolved (the TOML fields turned into
    /// `endpoint`, `container` and `credential`) and checked, and the parsed endpoint.
    pub(crate) fn resolve(&self) -> Result<(AzureConfig, Url)> {
        let mut given = Vec::new();
        if self.credential.is_some() {
            given.push("a credential set in code");
        }
        if self.connection_string.is_some() {
            given.push("`connection_string`");
        }
        if self.sas_url.is_some() {
            given.push("`sas_url`");
        }
        if self.account.is_some() || self.account_key.is_some() {
            given.push("`account` + `account_key`");
        }
        if self.entra {
            given.push("`entra = true`");
        }
        if given.len() != 1 {
            let found = if given.is_empty() {
                "none".to_owned()
            } else {
                given.join(", ")
            };
            return Err(Error::invalid_input(format!(
                "invalid Azure config: give exactly one way to authenticate: \
                 `connection_string`, `sas_url`, `account` + `account_key`, or `entra = true` \
                 with an `endpoint` (found: {found})"
            )));
        }
        let mut resolved = self.clone();
        resolved.connection_string = None;
        resolved.sas_url = None;
        resolved.account = None;
        resolved.account_key = None;
        resolved.entra = false;
        let (endpoint, credential) = if let Some(credential) = &self.credential {
            (String::new(), credential.clone())
        } else if let Some(cs) = &self.connection_string {
            parse_connection_string(cs)?
        } else if let Some(url) = &self.sas_url {
            let (endpoint, container, token) = parse_sas_url(url)?;
            if self.container.is_empty() {
                resolved.container = container;
            } else if self.container != container {
                return Err(Error::invalid_input(format!(
                    "invalid Azure config: `container` is {:?} but `sas_url` names container \
                     {container:?}; leave `container` out with `sas_url`",
                    self.container
                )));
            }
            (endpoint, AzureCredential::Sas(token))
        } else if self.entra {
            if self.endpoint.is_empty() {
                return Err(Error::invalid_input(
                    "invalid Azure config: `entra = true` needs `endpoint` \
                     (https://<account>.blob.core.windows.net)",
                ));
            }
            (String::new(), AzureCredential::default_chain()?)
        } else {
            match (&self.account, &self.account_key) {
                (Some(account), Some(key)) => (
                    public_endpoint(account),
                    AzureCredential::account_key(account.clone(), key.clone()),
                ),
                _ => {
                    return Err(Error::invalid_input(
                        "invalid Azure config: `account` and `account_key` go together; give both",
                    ));
                }
            }
        };
        // An explicit endpoint wins over the one derived from the credential source.
        if resolved.endpoint.is_empty() {
            resolved.endpoint = endpoint.trim_end_matches('/').to_owned();
        }
        resolved.credential = Some(credential);
        if resolved.endpoint.is_empty() {
            return Err(Error::invalid_input(
                "invalid Azure config: `endpoint` is empty",
            ));
        }
        let url = resolved.check()?;
        Ok((resolved, url))
    }

    /// Checks the settings of a resolved config; returns the parsed endpoint.
    fn check(&self) -> Result<Url> {
        let endpoint = Url::parse(&self.endpoint).map_err(|e| {
            Error::invalid_input(format!(
                "invalid endpoint {}: {e}",
                redact_sas(&self.endpoint)
            ))
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.cannot_be_a_base() {
            return Err(Error::invalid_input(format!(
                "invalid endpoint {}: it must be an http or https URL",
                redact_sas(&self.endpoint)
            )));
        }
        if endpoint.query().is_some() {
            return Err(Error::invalid_input(
                "invalid endpoint: it must not carry a query string (pass a SAS as the credential)",
            ));
        }
        if matches!(self.credential, Some(AzureCredential::Token(_)))
            && endpoint.scheme() != "https"
        {
            return Err(Error::invalid_input(format!(
                "endpoint {} must use https with an Entra ID credential",
                self.endpoint
            )));
        }
        validate_container(&self.container)?;
        if !self.prefix.is_empty() {
            if self.prefix.starts_with('/') || self.prefix.ends_with('/') {
                return Err(Error::invalid_input(format!(
                    "invalid prefix {:?}: it must not start or end with '/'",
                    self.prefix
                )));
            }
            Key::new(&self.prefix).map_err(|e| {
                Error::invalid_input(format!("invalid prefix {:?}: {}", self.prefix, e.message()))
            })?;
            if self.prefix.split('/').any(|segment| segment.ends_with('.')) {
                return Err(Error::invalid_input(format!(
                    "invalid prefix {:?}: Azure drops dots at the end of a path segment",
                    self.prefix
                )));
            }
        }
        let in_range = |name: &str, value: usize, max: usize| {
            if value == 0 || value > max {
                Err(Error::invalid_input(format!(
                    "{name} is {value}; it must be between 1 and {max}"
                )))
            } else {
                Ok(())
            }
        };
        in_range("block_size", self.block_size, MAX_BLOCK_SIZE)?;
        in_range(
            "single_upload_threshold",
            self.single_upload_threshold,
            MAX_SINGLE_UPLOAD,
        )?;
        in_range("parallelism", self.parallelism, 64)?;
        in_range("max_value_size", self.max_value_size, usize::MAX)?;
        if self.timeout.is_zero() {
            return Err(Error::invalid_input("timeout must be positive"));
        }
        if let Some(AzureCredential::AccountKey { account, key }) = &self.credential {
            if account.is_empty() {
                return Err(Error::invalid_input("the account name is empty"));
            }
            azure_core::base64::decode(key).map_err(|_| {
                Error::invalid_input(format!("the key of account {account} is not valid base64"))
            })?;
        }
        Ok(endpoint)
    }
}

/// Azure's container naming rules.
fn validate_container(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid_input(format!(
            "invalid container name {name:?}: {why}"
        )))
    };
    if !(3..=63).contains(&name.len()) {
        return bad("it must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("only lowercase letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return bad("it must start and end with a letter or digit, with no '--'");
    }
    Ok(())
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("AzureConfig")
            .field("endpoint", &redact_sas(&self.endpoint))
            .field("container", &self.container)
            .field("credential", &self.credential)
            .field("connection_string", &hidden(&self.connection_string))
            .field("sas_url", &self.sas_url.as_deref().map(redact_sas))
            .field("account", &self.account)
            .field("account_key", &hidden(&self.account_key))
            .field("entra", &self.entra)
            .field("prefix", &self.prefix)
            .field("create_container", &self.create_container)
            .field("single_upload_threshold", &self.single_upload_threshold)
            .field("block_size", &self.block_size)
            .field("parallelism", &self.parallelism)
            .field("max_value_size", &self.max_value_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("api_version", &self.api_version)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The blob endpoint of a public-cloud storage account.
fn public_endpoint(account: &str) -> String {
    format!("https://{account}.blob.core.windows.net")
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
