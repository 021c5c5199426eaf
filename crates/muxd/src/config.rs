//! muxd's TOML configuration.

use std::path::PathBuf;
use std::sync::Arc;

use mux::{Backend, Error, MuxConfig, Result};
use serde::Deserialize;

/// The configuration used when `--config` is not given: fs and redb under `./data`.
pub const EMBEDDED: &str = include_str!("../examples/embedded.toml");

/// A store muxd opens.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendSpec {
    /// In memory (tests, caches).
    Memory {
        /// Its name in routes.
        name: String,
    },
    /// A local directory.
    Fs {
        /// Its name in routes.
        name: String,
        /// The directory.
        path: PathBuf,
    },
    /// A redb file.
    Redb {
        /// Its name in routes.
        name: String,
        /// The database file.
        path: PathBuf,
    },
    /// PostgreSQL.
    Postgres {
        /// Its name in routes.
        name: String,
        /// Connection URL.
        url: String,
        /// The table (default `mux_records`).
        #[serde(default)]
        table: Option<String>,
    },
    /// Redis.
    Redis {
        /// Its name in routes.
        name: String,
        /// Connection URL.
        url: String,
        /// Key namespace (default `mux`).
        #[serde(default)]
        namespace: Option<String>,
    },
    /// S3 or an S3-compatible store. Credentials come from the standard AWS chain
    /// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, SSO, web identity,
    /// instance metadata) unless `access_key_id` and `secret_access_key` are given.
    S3 {
        /// Its name in routes.
        name: String,
        /// The bucket.
        bucket: String,
        /// Objects live at `<prefix>/<key>` (default `mux`; `""` for none).
        #[serde(default)]
        prefix: Option<String>,
        /// The region (default: from the AWS chain).
        #[serde(default)]
        region: Option<String>,
        /// A custom endpoint (MinIO, Ceph, R2, moto).
        #[serde(default)]
        endpoint: Option<String>,
        /// Path-style addressing (default: on with a custom endpoint).
        #[serde(default)]
        path_style: Option<bool>,
        /// An explicit access key id.
        #[serde(default)]
        access_key_id: Option<String>,
        /// Its secret (hidden in logs).
        #[serde(default)]
        secret_access_key: Option<Secret>,
        /// Create the bucket at start when it is missing.
        #[serde(default)]
        create_bucket: bool,
    },
    /// Azure Blob Storage. Give exactly one way to authenticate: `connection_string`,
    /// `sas_url` (a container URL with a SAS), `account` + `account_key`, or
    /// `endpoint` + `entra = true` (workload identity, managed identity, then the Azure
    /// CLI).
    Azure {
        /// Its name in routes.
        name: String,
        /// The container (with `sas_url`: taken from the URL).
        #[serde(default)]
        container: Option<String>,
        /// Blobs live at `<prefix>/<key>` (default: no prefix).
        #[serde(default)]
        prefix: Option<String>,
        /// A storage connection string (hidden in logs).
        #[serde(default)]
        connection_string: Option<Secret>,
        /// A container SAS URL (hidden in logs).
        #[serde(default)]
        sas_url: Option<Secret>,
        /// The account name, with `account_key`.
        #[serde(default)]
        account: Option<String>,
        /// The account key (hidden in logs).
        #[serde(default)]
        account_key: Option<Secret>,
        /// The blob endpoint, with `entra`.
        #[serde(default)]
        endpoint: Option<String>,
        /// Authenticate with Entra ID.
        #[serde(default)]
        entra: bool,
        /// Create the container at start when it is missing.
        #[serde(default)]
        create_container: bool,
    },
}

/// A secret from the configuration: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl BackendSpec {
    /// Opens the store.
    pub async fn open(&self) -> Result<Arc<dyn Backend>> {
        Ok(match self {
            BackendSpec::Memory { name } => Arc::new(mux::MemoryBackend::new(name)),
            BackendSpec::Fs { name, path } => Arc::new(mux::fs::FsBackend::open(name, path)?),
            BackendSpec::Redb { name, path } => Arc::new(mux::redb::RedbBackend::open(name, path)?),
            BackendSpec::Postgres { name, url, table } => {
                let mut config = mux::postgres::PostgresConfig::new(url);
                if let Some(t) = table {
                    config = config.with_table(t);
                }
                Arc::new(mux::postgres::PostgresBackend::connect(name, config).await?)
            }
            BackendSpec::Redis {
                name,
                url,
                namespace,
            } => {
                let mut config = mux::redis::RedisConfig::new(url);
                if let Some(ns) = namespace {
                    config = config.with_namespace(ns);
                }
                Arc::new(mux::redis::RedisBackend::connect(name, config).await?)
            }
            BackendSpec::S3 {
                name,
                bucket,
                prefix,
                region,
                endpoint,
                path_style,
                access_key_id,
                secret_access_key,
                create_bucket,
            } => {
                let mut config = mux::s3::S3Config::new(bucket).with_create_bucket(*create_bucket);
                if let Some(p) = prefix {
                    config = config.with_prefix(p);
                }
                if let Some(r) = region {
                    config = config.with_region(r);
                }
                if let Some(e) = endpoint {
                    config = config.with_endpoint(e, path_style.unwrap_or(true));
                } else if let Some(p) = path_style {
                    config.path_style = *p;
                }
                match (access_key_id, secret_access_key) {
                    (Some(id), Some(secret)) => {
                        config = config.with_static_credentials(id, &secret.0);
                    }
                    (None, None) => {}
                    _ => {
                        return Err(Error::invalid_input(format!(
                            "backend {name}: give both access_key_id and secret_access_key, \
                             or neither (the standard AWS chain)"
                        )));
                    }
                }
                Arc::new(mux::s3::S3Backend::connect(name, config).await?)
            }
            BackendSpec::Azure {
                name,
                container,
                prefix,
                connection_string,
                sas_url,
                account,
                account_key,
                endpoint,
                entra,
                create_container,
            } => {
                use mux::azure::{AzureConfig, AzureCredential};
                let need_container = || {
                    container.clone().ok_or_else(|| {
                        Error::invalid_input(format!("backend {name}: `container` is missing"))
                    })
                };
                let mut config = match (connection_string, sas_url, account, account_key, entra) {
                    (Some(cs), None, None, None, false) => {
                        AzureConfig::from_connection_string(&cs.0, need_container()?)?
                    }
                    (None, Some(url), None, None, false) => AzureConfig::from_sas_url(&url.0)?,
                    (None, None, Some(account), Some(key), false) => {
                        let mut c =
                            AzureConfig::with_account_key(account, &key.0, need_container()?);
                        if let Some(e) = endpoint {
                            c = c.with_endpoint(e);
                        }
                        c
                    }
                    (None, None, None, None, true) => AzureConfig::new(
                        endpoint.clone().ok_or_else(|| {
                            Error::invalid_input(format!(
                                "backend {name}: `entra = true` needs `endpoint`"
                            ))
                        })?,
                        need_container()?,
                        AzureCredential::default_chain()?,
                    ),
                    _ => {
                        return Err(Error::invalid_input(format!(
                            "backend {name}: give exactly one of `connection_string`, `sas_url`, \
                             `account` + `account_key`, or `entra = true`"
                        )));
                    }
                };
                if let Some(p) = prefix {
                    config = config.with_prefix(p);
                }
                config = config.with_create_container(*create_container);
                Arc::new(mux::azure::AzureBackend::connect(name, config).await?)
            }
        })
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_grpc_listen() -> String {
    "127.0.0.1:50051".into()
}

fn default_max_body() -> usize {
    8 << 20
}

/// The whole server configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the REST API listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the gRPC API listens.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: String,
    /// The largest request body; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The durable intent log file (redb), for `durability = "log"`.
    #[serde(default)]
    pub intent_log: Option<PathBuf>,
    /// The stores.
    pub backends: Vec<BackendSpec>,
    /// Authentication: `[auth]` with `mode = "jwt"` (and its keys) or `mode = "off"`
    /// (loopback only).
    pub auth: crate::auth::AuthConfig,
    /// Routes, node id and resilience.
    pub mux: MuxConfig,
}

impl ServerConfig {
    /// Parses a configuration; errors name the line and the field.
    pub fn from_toml(text: &str) -> Result<ServerConfig> {
        toml::from_str(text)
            .map_err(|e| Error::invalid_input(format!("invalid muxd configuration: {e}")))
    }
}
