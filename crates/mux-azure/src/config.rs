//! The configuration of an Azure backend: where the container is, how to authenticate,
//! and how values are uploaded.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::Url;
use mux_core::{Error, Key, Result};

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

/// The account name of the local storage emulator (Azurite).
pub const DEV_ACCOUNT_NAME: &str = "devstoreaccount1";

/// The well-known, public account key of the local storage emulator (Azurite).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The blob endpoint of the local storage emulator (Azurite) on its default port.
pub const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// How mux authenticates to Azure Blob Storage.
///
/// `Debug` never shows a secret: the account key is replaced by `***`, and so is the
/// signature (`sig=`) of a SAS token.
#[derive(Clone)]
#[non_exhaustive]
pub enum AzureCredential {
    /// The storage account's name and one of its access keys (base64).
    ///
    /// The Azure SDK for Rust does not sign requests with Shared Key, so mux derives an
    /// *account SAS* from the key (HMAC-SHA256, no start time, valid for one hour,
    /// re-signed after 45 minutes on the monotonic clock) and adds it to every request. The key never leaves the
    /// process.
    AccountKey {
        /// The storage account name (`mystorageaccount`).
        account: String,
        /// The account key, base64 as shown by `az storage account keys list`.
        key: String,
    },
    /// A shared access signature: the query string of a SAS URL, without the `?`
    /// (`sv=…&sp=…&sig=…`). It needs read, add, create, write, delete and list
    /// permissions on the container's blobs (and create on the container itself when
    /// `create_container` is set). mux does not renew it: once it expires every request
    /// fails with `PermissionDenied`.
    Sas(String),
    /// Microsoft Entra ID: any token credential, such as `azure_identity`'s
    /// `ManagedIdentityCredential`, `WorkloadIdentityCredential`,
    /// `ClientSecretCredential` or `DeveloperToolsCredential`. The identity needs the
    /// *Storage Blob Data Contributor* role on the container (or its account). Requires
    /// an `https` endpoint.
    Token(Arc<dyn TokenCredential>),
}

impl AzureCredential {
    /// An account name and key.
    pub fn account_key(account: impl Into<String>, key: impl Into<String>) -> AzureCredential {
        AzureCredential::AccountKey {
            account: account.into(),
            key: key.into(),
        }
    }

    /// A SAS token (a leading `?` is removed).
    pub fn sas(token: impl AsRef<str>) -> AzureCredential {
        AzureCredential::Sas(token.as_ref().trim_start_matches('?').to_owned())
    }

    /// An Entra ID token credential.
    pub fn token(credential: Arc<dyn TokenCredential>) -> AzureCredential {
        AzureCredential::Token(credential)
    }

    /// The managed identity of the Azure host (App Service, Functions, VM, AKS with
    /// pod identity); `client_id` selects a user-assigned identity, `None` the
    /// system-assigned one.
    pub fn managed_identity(client_id: Option<&str>) -> Result<AzureCredential> {
        use azure_identity::{
            ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
        };
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_owned())),
            ..Default::default()
        };
        let credential = ManagedIdentityCredential::new(Some(options))
            .map_err(|e| credential_error("managed identity", e))?;
        Ok(AzureCredential::Token(credential))
    }

    /// The signed-in user of the Azure CLI (`az login`) or the Azure Developer CLI
    /// (`azd auth login`), for development.
    pub fn developer_tools() -> Result<AzureCredential> {
        let credential = azure_identity::DeveloperToolsCredential::new(None)
            .map_err(|e| credential_error("developer tools", e))?;
        Ok(AzureCredential::Token(credential))
    }

    /// A chain for code that runs both on Azure and on a developer's machine: workload
    /// identity (when `AZURE_FEDERATED_TOKEN_FILE` is set, as on AKS), then the managed
    /// identity, then the developer tools (Azure CLI, Azure Developer CLI). The first
    /// source that returns a token is used from then on.
    pub fn default_chain() -> Result<AzureCredential> {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            let workload = azure_identity::WorkloadIdentityCredential::new(None)
                .map_err(|e| credential_error("workload identity", e))?;
            sources.push(("workload identity", workload));
        }
        if let AzureCredential::Token(managed) = Self::managed_identity(None)? {
            sources.push(("managed identity", managed));
        }
        if let AzureCredential::Token(developer) = Self::developer_tools()? {
            sources.push(("developer tools", developer));
        }
        Ok(AzureCredential::Token(Arc::new(
            crate::identity::ChainCredential::new(sources),
        )))
    }
}

fn credential_error(what: &str, e: azure_core::Error) -> Error {
    Error::new(
        mux_core::ErrorKind::InvalidInput,
        format!("cannot set up the {what} credential"),
    )
    .with_source(crate::error::Redacted::of(&e))
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureCredential::AccountKey { account, .. } => f
                .debug_struct("AccountKey")
                .field("account", account)
                .field("key", &"***")
                .finish(),
            AzureCredential::Sas(token) => f.debug_tuple("Sas").field(&redact_sas(token)).finish(),
            AzureCredential::Token(credential) => f.debug_tuple("Token").field(credential).finish(),
        }
    }
}

/// `text` (a query string, a URL, or any message that may quote one) with the value of
/// every `sig=` parameter replaced by `***`.
///
/// The name is matched case-insensitively wherever it occurs; the value runs up to the
/// next `&`, `)`, whitespace, quote, `<`, `>`, `#`, `\\` or the end of the text (none of
/// which a signature, base64 or percent-encoded, contains).
pub(crate) fn redact_sas(text: &str) -> String {
    const NAME: &[u8] = b"sig=";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i + NAME.len() <= bytes.len() {
        if !bytes[i..i + NAME.len()].eq_ignore_ascii_case(NAME) {
            i += 1;
            continue;
        }
        let value = i + NAME.len();
        let end = bytes[value..]
            .iter()
            .position(|&b| {
                b.is_ascii_whitespace()
                    || matches!(b, b'&' | b')' | b'"' | b'\'' | b'<' | b'>' | b'#' | b'\\')
            })
            .map_or(bytes.len(), |n| value + n);
        // `sig=` is ASCII, so `value` and `end` are character boundaries.
        out.push_str(&text[copied..value]);
        if end > value {
            out.push_str("***");
        }
        copied = end;
        i = end.max(value);
    }
    out.push_str(&text[copied..]);
    out
}

/// Where and how an [`crate::AzureBackend`] stores records.
///
/// Build one with [`AzureConfig::from_connection_string`], [`AzureConfig::from_sas_url`],
/// [`AzureConfig::with_account_key`], [`AzureConfig::with_token_credential`] or
/// [`AzureConfig::new`], then adjust it with the `with_*` methods:
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
#[derive(Clone)]
#[non_exhaustive]
pub struct AzureConfig {
    /// The blob service endpoint: `https://<account>.blob.core.windows.net`, or
    /// `http://127.0.0.1:10000/devstoreaccount1` for Azurite.
    pub endpoint: String,
    /// The container holding the records (3–63 lowercase letters, digits and hyphens).
    pub container: String,
    /// How to authenticate.
    pub credential: AzureCredential,
    /// Blob name prefix: a record lives at `<prefix>/<key>`, or at `<key>` when the
    /// prefix is empty (the default). No leading or trailing `/`.
    pub prefix: String,
    /// Create the container on connect if it does not exist (default `false`).
    pub create_container: bool,
    /// Values up to this many bytes are written with one `Put Blob` request; larger ones
    /// are staged in blocks of [`AzureConfig::block_size`] and committed with one
    /// `Put Block List` (default 8 MiB).
    pub single_upload_threshold: usize,
    /// The block size of staged uploads, and the range size of parallel downloads
    /// (default 4 MiB).
    pub block_size: usize,
    /// How many blocks (or ranges) move at once for one large value, and how many
    /// records of a `put_batch` are written at once (default 4).
    pub parallelism: usize,
    /// The largest value accepted (default [`DEFAULT_MAX_VALUE_SIZE`]).
    pub max_value_size: usize,
    /// How long one backend operation may take, retries included, before it fails as a
    /// timeout (default 60 s).
    pub timeout: Duration,
    /// How often the SDK retries a request that failed with a transient error
    /// (connection errors, 408, 429, 5xx) before mux sees the error (default 3).
    pub max_retries: u32,
    /// The REST API version sent as `x-ms-version`; `None` (the default) sends the SDK's
    /// own (2026-04-06 for `azure_storage_blob` 1.1). Pin an older one for emulators or
    /// Azure Stack that do not know the SDK's.
    pub api_version: Option<String>,
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
            credential,
            prefix: String::new(),
            create_container: false,
            single_upload_threshold: DEFAULT_SINGLE_UPLOAD_THRESHOLD,
            block_size: DEFAULT_BLOCK_SIZE,
            parallelism: 4,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            api_version: None,
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
        let endpoint = format!("https://{account}.blob.core.windows.net");
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
        let bad =
            |why: &str| Error::invalid_input(format!("invalid SAS URL {}: {why}", redact_sas(url)));
        let mut parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let token = parsed
            .query()
            .filter(|q| !q.is_empty())
            .ok_or_else(|| bad("it has no query string (the SAS token)"))?
            .to_owned();
        if !token.split('&').any(|p| p.starts_with("sig=")) {
            return Err(bad("the query string has no `sig` parameter"));
        }
        parsed.set_query(None);
        parsed.set_fragment(None);
        let mut segments: Vec<String> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let container = segments
            .pop()
            .ok_or_else(|| bad("the path names no container"))?;
        parsed.set_path(&segments.join("/"));
        Ok(AzureConfig::new(
            parsed.as_str(),
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

    /// Checks every setting; `connect` calls it. Returns the parsed endpoint.
    pub(crate) fn validate(&self) -> Result<Url> {
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
        if matches!(self.credential, AzureCredential::Token(_)) && endpoint.scheme() != "https" {
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
        if let AzureCredential::AccountKey { account, key } = &self.credential {
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
        f.debug_struct("AzureConfig")
            .field("endpoint", &redact_sas(&self.endpoint))
            .field("container", &self.container)
            .field("credential", &self.credential)
            .field("prefix", &self.prefix)
            .field("create_container", &self.create_container)
            .field("single_upload_threshold", &self.single_upload_threshold)
            .field("block_size", &self.block_size)
            .field("parallelism", &self.parallelism)
            .field("max_value_size", &self.max_value_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// Parses a storage connection string into a blob endpoint and a credential.
fn parse_connection_string(cs: &str) -> Result<(String, AzureCredential)> {
    let mut account = None;
    let mut key = None;
    let mut sas = None;
    let mut blob_endpoint = None;
    let mut protocol = None;
    let mut suffix = None;
    let mut development = false;
    for (i, part) in cs.split(';').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once('=') else {
            return Err(Error::invalid_input(format!(
                "invalid connection string: setting {} has no '='",
                i + 1
            )));
        };
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "accountname" => account = Some(value),
            "accountkey" => key = Some(value),
            "sharedaccesssignature" => sas = Some(value),
            "blobendpoint" => blob_endpoint = Some(value),
            "defaultendpointsprotocol" => protocol = Some(value),
            "endpointsuffix" => suffix = Some(value),
            "usedevelopmentstorage" => development = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    if development {
        account.get_or_insert_with(|| DEV_ACCOUNT_NAME.to_owned());
        if sas.is_none() {
            key.get_or_insert_with(|| DEV_ACCOUNT_KEY.to_owned());
        }
        blob_endpoint.get_or_insert_with(|| DEV_BLOB_ENDPOINT.to_owned());
    }
    let endpoint = match (blob_endpoint, &account) {
        (Some(endpoint), _) => endpoint,
        (None, Some(account)) => {
            let protocol = protocol.unwrap_or_else(|| "https".to_owned());
            if !matches!(protocol.as_str(), "http" | "https") {
                return Err(Error::invalid_input(format!(
                    "invalid connection string: DefaultEndpointsProtocol is {protocol:?}, expected http or https"
                )));
            }
            let suffix = suffix.unwrap_or_else(|| "core.windows.net".to_owned());
            format!("{protocol}://{account}.blob.{suffix}")
        }
        (None, None) => {
            return Err(Error::invalid_input(
                "invalid connection string: it has neither BlobEndpoint nor AccountName",
            ));
        }
    };
    let credential = match (sas, key, account) {
        (Some(sas), _, _) => AzureCredential::sas(sas),
        (None, Some(key), Some(account)) => AzureCredential::AccountKey { account, key },
        (None, Some(_), None) => {
            return Err(Error::invalid_input(
                "invalid connection string: it has an AccountKey but no AccountName",
            ));
        }
        (None, None, _) => {
            return Err(Error::invalid_input(
                "invalid connection string: it has neither AccountKey nor SharedAccessSignature",
            ));
        }
    };
    Ok((endpoint.trim_end_matches('/').to_owned(), credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

    #[test]
    fn parses_the_azurite_connection_string() {
        let c = AzureConfig::from_connection_string(AZURITE, "records").unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(c.container, "records");
        match &c.credential {
            AzureCredential::AccountKey { account, key } => {
                assert_eq!(account, DEV_ACCOUNT_NAME);
                assert_eq!(key, DEV_ACCOUNT_KEY);
            }
            other => panic!("unexpected credential {other:?}"),
        }
        c.validate().unwrap();
        let dev =
            AzureConfig::from_connection_string("UseDevelopmentStorage=true", "records").unwrap();
        assert_eq!(dev.endpoint, DEV_BLOB_ENDPOINT);
        assert!(matches!(dev.credential, AzureCredential::AccountKey { .. }));
    }

    #[test]
    fn builds_the_endpoint_from_account_and_suffix() {
        let c = AzureConfig::from_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
            "box",
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://acct.blob.core.chinacloudapi.cn");
        let c =
            AzureConfig::from_connection_string("AccountName=acct;AccountKey=a2V5", "box").unwrap();
        assert_eq!(c.endpoint, "https://acct.blob.core.windows.net");
    }

    #[test]
    fn prefers_a_shared_access_signature() {
        let c = AzureConfig::from_connection_string(
            "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rl&sig=c2VjcmV0c2ln%3D",
            "box",
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://acct.blob.core.windows.net");
        match &c.credential {
            AzureCredential::Sas(token) => assert!(token.starts_with("sv=2022-11-02&")),
            other => panic!("unexpected credential {other:?}"),
        }
    }

    #[test]
    fn rejects_incomplete_connection_strings_without_echoing_them() {
        for (cs, needle) in [
            (
                "AccountKey=c2VjcmV0",
                "neither BlobEndpoint nor AccountName",
            ),
            (
                "AccountName=acct",
                "neither AccountKey nor SharedAccessSignature",
            ),
            (
                "BlobEndpoint=https://x.example;AccountKey=c2VjcmV0",
                "AccountKey but no AccountName",
            ),
            ("AccountName=acct;garbage", "setting 2 has no '='"),
        ] {
            let err = AzureConfig::from_connection_string(cs, "box").unwrap_err();
            assert_eq!(err.kind(), mux_core::ErrorKind::InvalidInput);
            assert!(err.message().contains(needle), "{cs}: {err}");
            assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        }
    }

    #[test]
    fn parses_a_sas_url() {
        let c = AzureConfig::from_sas_url(
            "http://127.0.0.1:10000/devstoreaccount1/records?sv=2022-11-02&sp=racwdl&sig=AbC%2Bd%3D",
        )
        .unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(c.container, "records");
        let c = AzureConfig::from_sas_url(
            "https://acct.blob.core.windows.net/records?sv=2022-11-02&sr=c&sp=racwdl&sig=AbC%2Bd%3D",
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(c.container, "records");
        match &c.credential {
            AzureCredential::Sas(token) => {
                assert_eq!(token, "sv=2022-11-02&sr=c&sp=racwdl&sig=AbC%2Bd%3D")
            }
            other => panic!("unexpected credential {other:?}"),
        }
        let err = AzureConfig::from_sas_url("https://acct.blob.core.windows.net/records?sv=1")
            .unwrap_err();
        assert!(err.message().contains("no `sig`"), "{err}");
        let err =
            AzureConfig::from_sas_url("https://acct.blob.core.windows.net/?sig=x").unwrap_err();
        assert!(err.message().contains("no container"), "{err}");
    }

    #[test]
    fn redacts_signatures_in_any_text() {
        for (text, expected) in [
            ("sv=1&sig=abc%3D&se=2", "sv=1&sig=***&se=2"),
            ("https://a/c?sv=1&SIG=abc+/=", "https://a/c?sv=1&SIG=***"),
            (
                "error sending request for url (http://h/c?restype=container&sig=a%2Bb%3D): refused",
                "error sending request for url (http://h/c?restype=container&sig=***): refused",
            ),
            (
                "query: Some(\"sv=1&sig=abc\")",
                "query: Some(\"sv=1&sig=***\")",
            ),
            ("sig=abc sig=def\tsig=", "sig=*** sig=***\tsig="),
            ("no signature here", "no signature here"),
            ("é sig=é", "é sig=***"),
        ] {
            assert_eq!(redact_sas(text), expected, "{text}");
        }
    }

    #[test]
    fn debug_hides_every_secret() {
        let shown = format!(
            "{:?}",
            AzureConfig::from_connection_string(AZURITE, "records").unwrap()
        );
        assert!(!shown.contains("Eby8vdM02x"), "{shown}");
        assert!(shown.contains("devstoreaccount1"), "{shown}");
        assert!(shown.contains("key: \"***\""), "{shown}");

        let sas = AzureConfig::from_sas_url(
            "https://acct.blob.core.windows.net/records?sv=2022-11-02&sp=racwdl&sig=TopSecretSig%3D",
        )
        .unwrap();
        let shown = format!("{sas:?}");
        assert!(!shown.contains("TopSecretSig"), "{shown}");
        assert!(shown.contains("sp=racwdl&sig=***"), "{shown}");

        let err = AzureConfig::from_sas_url("ftp://acct/records?sv=1&sig=TopSecretSig").map(|_| ());
        if let Err(e) = err {
            assert!(!e.to_string().contains("TopSecretSig"), "{e}");
        }
        let err = AzureConfig::from_sas_url("https://acct.blob.core.windows.net/?sig=TopSecretSig")
            .unwrap_err();
        assert!(!err.to_string().contains("TopSecretSig"), "{err}");

        let via_cs = AzureConfig::from_connection_string(
            "BlobEndpoint=https://a.example;SharedAccessSignature=sv=1&sig=TopSecretSig",
            "records",
        )
        .unwrap();
        assert!(!format!("{via_cs:?}").contains("TopSecretSig"));
    }

    #[test]
    fn validates_settings() {
        let ok = AzureConfig::new(
            "https://acct.blob.core.windows.net/",
            "records",
            AzureCredential::account_key("acct", "a2V5"),
        );
        assert_eq!(ok.endpoint, "https://acct.blob.core.windows.net");
        ok.validate().unwrap();
        ok.clone().with_prefix("mux/app").validate().unwrap();
        let fails = |c: AzureConfig, needle: &str| {
            let err = c.validate().unwrap_err();
            assert_eq!(err.kind(), mux_core::ErrorKind::InvalidInput);
            assert!(err.message().contains(needle), "{err}");
        };
        fails(
            ok.clone().with_prefix("/mux"),
            "must not start or end with '/'",
        );
        fails(
            ok.clone().with_prefix("mux/"),
            "must not start or end with '/'",
        );
        fails(ok.clone().with_prefix("a//b"), "segment 2 is empty");
        fails(ok.clone().with_prefix("v1./x"), "drops dots");
        fails(ok.clone().with_block_size(0), "block_size");
        fails(ok.clone().with_parallelism(0), "parallelism");
        fails(ok.clone().with_endpoint("not a url"), "invalid endpoint");
        let mut bad = ok.clone();
        bad.container = "Records".into();
        fails(bad, "lowercase");
        let mut bad = ok.clone();
        bad.container = "a--b".into();
        fails(bad, "'--'");
        let mut bad = ok.clone();
        bad.credential = AzureCredential::account_key("acct", "not base64!");
        fails(bad, "not valid base64");
    }
}
