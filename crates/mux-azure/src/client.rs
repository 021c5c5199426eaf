//! Building the SDK clients: reqwest on rustls with ring, the SDK's retry options, and
//! the credential in the form the SDK takes (a per-try policy signing an account SAS, a
//! SAS in the URL, or a token credential).

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport, Url};
use azure_storage_blob::{BlobClientOptions, BlobContainerClient, BlobContainerClientOptions};
use mux_core::{Error, Result};

use crate::config::AzureConfig;
use crate::credential::AzureCredential;
use crate::redact::Redacted;
use crate::sas;

/// The Azure clients of a backend.
pub(crate) struct Clients {
    pub(crate) container: BlobContainerClient,
    /// The options of `container`, for blob clients built from a URL (see
    /// [`AzureBackend::blob`]); they share its transport and policies.
    pub(crate) blob_options: BlobClientOptions,
    pub(crate) credential: Option<Arc<dyn TokenCredential>>,
}

/// The HTTP client every Azure client of this process shares the settings of: reqwest on
/// rustls with the ring provider (the workspace's one TLS provider; reqwest's default would
/// build aws-lc). Ring becomes the process default only if nothing else was installed.
/// `ca_file` adds PEM CA certificates to the system's roots.
fn http_client(ca_file: Option<&std::path::Path>) -> Result<Arc<reqwest::Client>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        let bad =
            |e: String| Error::invalid_input(format!("Azure ca_file {}: {e}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        // Azurite (Node.js) closes a connection idle for 5 s; reusing one just as it
        // does fails with "connection reset by peer" (seen failing a suite's cleanup).
        // Dropping idle connections first costs at most a reconnect after 4 s idle.
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::invalid_input("cannot build the HTTP client").with_source(e))
}

/// The container client for a resolved `config` (see `AzureConfig::resolve`),
/// authenticated as configured.
pub(crate) fn build_client(config: &AzureConfig, endpoint: Url) -> Result<Clients> {
    let mut url = endpoint;
    url.path_segments_mut()
        .map_err(|()| Error::invalid_input("the endpoint cannot be a base URL"))?
        .pop_if_empty()
        .push(&config.container);
    // `max_retries` is 0 by default: the coordinator retries temporary errors itself.
    let retry = ExponentialRetryOptions {
        max_retries: config.max_retries,
        initial_delay: azure_core::time::Duration::milliseconds(100),
        max_delay: azure_core::time::Duration::seconds(5),
        max_total_elapsed: azure_core::time::Duration::try_from(config.timeout)
            .unwrap_or(azure_core::time::Duration::seconds(60)),
    };
    let mut client_options = ClientOptions {
        transport: Some(Transport::new(http_client(config.ca_file.as_deref())?)),
        retry: RetryOptions::exponential(retry),
        ..Default::default()
    };
    let Some(credential) = &config.credential else {
        return Err(Error::invalid_input(
            "the Azure config has no credential (validate it first)",
        ));
    };
    let credential = match credential {
        AzureCredential::AccountKey { account, key } => {
            let https_only = url.scheme() == "https";
            client_options
                .per_try_policies
                .push(Arc::new(sas::AccountKeyPolicy::new(
                    account, key, https_only,
                )));
            None
        }
        AzureCredential::Sas(token) => {
            url.set_query(Some(token));
            None
        }
        AzureCredential::Token(credential) => Some(credential.clone()),
    };
    let mut options = BlobContainerClientOptions {
        client_options: client_options.clone(),
        ..Default::default()
    };
    let mut blob_options = BlobClientOptions {
        client_options,
        ..Default::default()
    };
    if let Some(version) = &config.api_version {
        options.version = version.clone();
        blob_options.version = version.clone();
    }
    let container =
        BlobContainerClient::new(url, credential.clone(), Some(options)).map_err(|e| {
            Error::invalid_input("cannot build the Azure client").with_source(Redacted::of(&e))
        })?;
    Ok(Clients {
        container,
        blob_options,
        credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    #[test]
    fn token_credentials_build_a_client() {
        #[derive(Debug)]
        struct Fixed;
        #[async_trait]
        impl azure_core::credentials::TokenCredential for Fixed {
            async fn get_token(
                &self,
                _scopes: &[&str],
                _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
            ) -> azure_core::Result<azure_core::credentials::AccessToken> {
                Ok(azure_core::credentials::AccessToken::new(
                    "token",
                    azure_core::time::OffsetDateTime::now_utc()
                        + azure_core::time::Duration::hours(1),
                ))
            }
        }
        let config = AzureConfig::with_token_credential(
            "https://acct.blob.core.windows.net",
            "records",
            Arc::new(Fixed),
        );
        let (config, endpoint) = config.resolve().unwrap();
        let client = build_client(&config, endpoint).unwrap().container;
        assert_eq!(
            client.url().as_str(),
            "https://acct.blob.core.windows.net/records"
        );
        assert!(format!("{config:?}").contains("Token(Fixed)"));
        let http = config.with_endpoint("http://127.0.0.1:10000/devstoreaccount1");
        let err = http.validate().unwrap_err();
        assert!(err.message().contains("must use https"), "{err}");
    }

    #[test]
    fn sas_tokens_go_into_the_container_url() {
        let config = AzureConfig::from_sas_url(
            "https://acct.blob.core.windows.net/records?sv=2022-11-02&sp=racwdl&sig=abc%3D",
        )
        .unwrap();
        let (config, endpoint) = config.resolve().unwrap();
        let client = build_client(&config, endpoint).unwrap().container;
        assert_eq!(
            client.url().as_str(),
            "https://acct.blob.core.windows.net/records?sv=2022-11-02&sp=racwdl&sig=abc%3D"
        );
        assert_eq!(
            client.blob_client("a/b c").url().as_str(),
            "https://acct.blob.core.windows.net/records/a%2Fb%20c?sv=2022-11-02&sp=racwdl&sig=abc%3D"
        );
    }
}
