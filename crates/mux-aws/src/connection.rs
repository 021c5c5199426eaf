//! Building the shared `SdkConfig`.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use mux_core::{Error, Result};

/// How to reach an AWS service (or a compatible local server).
///
/// Adapters fill it from their own config table; every field but `service` has the
/// meaning of the same-named field in `mux_s3::S3Config`.
#[derive(Clone)]
pub struct Connection {
    /// The service's name in error messages (`S3`, `DynamoDB`, `SSM`).
    pub service: &'static str,
    /// The region; `None` takes it from the standard chain (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// A custom endpoint (`http://127.0.0.1:4566`).
    pub endpoint: Option<String>,
    /// Explicit credentials `(access key id, secret, session token)`; `None` takes them
    /// from the standard chain (environment, profiles, SSO, web identity, ECS, IMDS).
    pub credentials: Option<(String, String, Option<String>)>,
    /// The SDK's attempts per request (1: no SDK retries).
    pub max_attempts: u32,
    /// How long one request may take, SDK retries included.
    pub operation_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// PEM CA certificates trusted besides the system's roots, for an endpoint whose
    /// certificate a private or self-signed CA signed (verification stays on).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("service", &self.service)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field(
                "access_key_id",
                &self.credentials.as_ref().map(|(id, _, _)| id),
            )
            .field("max_attempts", &self.max_attempts)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Loads the shared SDK config: rustls on ring, the region, credentials, endpoint,
    /// retry and timeout settings. Fails with `InvalidInput` when no region is found.
    pub async fn load(&self) -> Result<SdkConfig> {
        // rustls on ring, built here so the SDK needs no default TLS stack.
        let mut trust = TrustStore::default();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::invalid_input(format!(
                    "{} ca_file {}: cannot read it: {e}",
                    self.service,
                    path.display()
                ))
            })?;
            trust = trust.with_pem_certificate(pem);
        }
        let tls = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| Error::invalid_input(format!("{} TLS settings: {e}", self.service)))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .tls_context(tls)
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            // 1 by default: the coordinator retries temporary errors (see mux-s3's README).
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_timeout(self.operation_timeout)
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret, token)) = &self.credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                id,
                secret,
                token.clone(),
                None,
                "mux",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(Error::invalid_input(format!(
                "no {} region: set it in the config, AWS_REGION or the AWS profile",
                self.service
            )));
        }
        Ok(shared)
    }
}

/// The problems of the connection fields every AWS adapter's config has (the names of
/// `mux_s3::S3Config`'s fields): an access key without its secret or the reverse, a
/// session token without them, a zero timeout, zero attempts. Each adapter's `validate`
/// adds these to its own.
pub fn connection_problems(
    access_key_id: Option<&str>,
    secret_access_key: Option<&str>,
    session_token: Option<&str>,
    timeouts: (Duration, Duration),
    max_attempts: u32,
) -> Vec<String> {
    let mut problems = Vec::new();
    match (access_key_id, secret_access_key) {
        (Some(_), None) => problems.push(
            "access_key_id is set without secret_access_key (give both, or neither for \
             the standard AWS chain)"
                .to_owned(),
        ),
        (None, Some(_)) => problems.push(
            "secret_access_key is set without access_key_id (give both, or neither for \
             the standard AWS chain)"
                .to_owned(),
        ),
        _ => {}
    }
    if session_token.is_some() && access_key_id.is_none() {
        problems.push("session_token needs access_key_id and secret_access_key".to_owned());
    }
    if timeouts.0.is_zero() || timeouts.1.is_zero() {
        problems.push("operation_timeout_ms and connect_timeout_ms must be positive".to_owned());
    }
    if max_attempts == 0 {
        problems.push("max_attempts must be at least 1".to_owned());
    }
    problems
}
