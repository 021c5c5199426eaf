//! Key sets from configuration: muxd's `[[keys]]` tables.
//!
//! ```toml
//! [[keys]]
//! name = "secrets"            # routes say encrypt = "secrets"
//! kind = "keyring"
//! path = "/etc/muxd/keyring.toml"
//!
//! [[keys]]
//! name = "pii"
//! kind = "kms"                # feature `kms`
//! key_id = "alias/mux-pii"
//! region = "eu-west-1"        # endpoint, access_key_id, secret_access_key as for S3
//! data_key_ttl_s = 300
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use mux_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::keyring::Keyring;
use crate::provider::KeyProvider;

/// One key set: a name routes use, and where its keys come from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSpec {
    /// The name routes give in `encrypt = "…"`.
    pub name: String,
    /// `keyring` (a local file) or `kms` (AWS KMS, feature `kms`).
    pub kind: String,
    /// The keyring file (`kind = "keyring"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The KMS key: id, ARN or `alias/…` (`kind = "kms"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The AWS region (`kind = "kms"`; else the standard chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A custom KMS endpoint (`http://127.0.0.1:5000` for a local moto server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// PEM CA certificates for an `endpoint` with a private CA (verification stays on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Explicit credentials (else the standard AWS chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// How long one KMS data key serves as key encryption key, in seconds (300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key_ttl_s: Option<u64>,
    /// Open values that were never sealed as they are (only while migrating a route
    /// that held plain values; see [`Envelope::accept_plaintext`]).
    #[serde(default)]
    pub accept_plaintext: bool,
    /// How many unwrapped data keys of recently read values to keep (4096; 0 turns
    /// it off; see [`Envelope::data_key_cache`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key_cache: Option<usize>,
}

impl std::fmt::Debug for KeysSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("ca_file", &self.ca_file)
            .field("access_key_id", &self.access_key_id)
            .field("accept_plaintext", &self.accept_plaintext)
            .field("data_key_cache", &self.data_key_cache)
            .finish_non_exhaustive()
    }
}

/// The kinds of key set this build can open.
pub fn kinds() -> &'static [&'static str] {
    if cfg!(feature = "kms") {
        &["keyring", "kms"]
    } else {
        &["keyring"]
    }
}

impl KeysSpec {
    /// What is wrong with it, every problem named with the key set.
    pub fn problems(&self) -> Vec<String> {
        let what = format!("key set \"{}\"", self.name);
        let mut problems = Vec::new();
        if self.name.is_empty() {
            problems.push("a key set has an empty name".to_owned());
        }
        let needs = |field: &str, set: bool, problems: &mut Vec<String>| {
            if !set {
                problems.push(format!("{what} (kind = \"{}\") needs `{field}`", self.kind));
            }
        };
        let aws_only = [
            ("key_id", self.key_id.is_some()),
            ("region", self.region.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("data_key_ttl_s", self.data_key_ttl_s.is_some()),
        ];
        match self.kind.as_str() {
            "keyring" => {
                needs("path", self.path.is_some(), &mut problems);
                for (field, set) in aws_only {
                    if set {
                        problems.push(format!(
                            "{what}: `{field}` is for kind = \"kms\", not \"keyring\""
                        ));
                    }
                }
            }
            "kms" if cfg!(feature = "kms") => {
                needs("key_id", self.key_id.is_some(), &mut problems);
                if self.path.is_some() {
                    problems.push(format!(
                        "{what}: `path` is for kind = \"keyring\", not \"kms\""
                    ));
                }
                if self.access_key_id.is_some() != self.secret_access_key.is_some() {
                    problems.push(format!(
                        "{what}: give access_key_id and secret_access_key together, or neither for the standard AWS chain"
                    ));
                }
                if self.data_key_ttl_s == Some(0) {
                    problems.push(format!("{what}: data_key_ttl_s must be at least 1"));
                }
            }
            "kms" => problems.push(format!(
                "{what}: kind \"kms\" needs mux built with the `kms` feature"
            )),
            other => problems.push(format!(
                "{what}: unknown kind \"{other}\" (known: {})",
                kinds().join(", ")
            )),
        }
        problems
    }

    /// Opens the key set as an [`Envelope`] named `name`.
    pub async fn open(&self) -> Result<Arc<Envelope>> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(Error::invalid_input(problems.join("; ")));
        }
        let provider: Arc<dyn KeyProvider> = match self.kind.as_str() {
            "keyring" => Arc::new(Keyring::open(self.path.as_ref().expect("checked"))?),
            #[cfg(feature = "kms")]
            "kms" => Arc::new(self.kms().await?),
            _ => unreachable!("problems() names every other kind"),
        };
        Ok(Arc::new(
            Envelope::new(&self.name, provider)
                .accept_plaintext(self.accept_plaintext)
                .data_key_cache(
                    self.data_key_cache
                        .unwrap_or(crate::envelope::DATA_KEY_CACHE),
                ),
        ))
    }

    #[cfg(feature = "kms")]
    async fn kms(&self) -> Result<crate::kms::KmsProvider> {
        let connection = mux_aws::Connection {
            service: "KMS",
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            credentials: self
                .access_key_id
                .clone()
                .zip(self.secret_access_key.clone())
                .map(|(id, secret)| (id, secret, None)),
            max_attempts: 3,
            operation_timeout: std::time::Duration::from_secs(10),
            connect_timeout: std::time::Duration::from_secs(3),
            ca_file: self.ca_file.clone(),
        };
        let ttl = std::time::Duration::from_secs(self.data_key_ttl_s.unwrap_or(300));
        crate::kms::KmsProvider::connect(&connection, self.key_id.as_deref().expect("checked"), ttl)
            .await
    }
}

/// Opens every key set, reporting every problem at once.
pub async fn open_all(specs: &[KeysSpec]) -> Result<Vec<Arc<Envelope>>> {
    let mut problems: Vec<String> = specs.iter().flat_map(KeysSpec::problems).collect();
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.name == s.name) {
            problems.push(format!("key set \"{}\" is defined twice", s.name));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid_input(format!(
            "invalid key sets:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        out.push(s.open().await?);
    }
    Ok(out)
}
