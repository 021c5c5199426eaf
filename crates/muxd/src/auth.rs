//! Tenants by JWT: verification, scopes and the per-tenant key namespace.

use std::collections::BTreeSet;
use std::path::PathBuf;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use mux::{Error, Result, Tenant};
use serde::Deserialize;

/// Whether requests must carry a JWT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every request needs `Authorization: Bearer <jwt>`.
    #[default]
    Jwt,
    /// No authentication — allowed only when muxd listens on loopback.
    Off,
}

/// The `[auth]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `jwt` (default) or `off`.
    #[serde(default)]
    pub mode: AuthMode,
    /// The one accepted algorithm: `HS256`, `RS256` or `ES256` (pinned: tokens signed
    /// otherwise, `none` included, are refused).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The shared secret for HS256.
    #[serde(default)]
    pub secret: Option<String>,
    /// A PEM public key file for RS256/ES256.
    #[serde(default)]
    pub public_key_pem: Option<PathBuf>,
    /// A JWKS file (keys chosen by `kid`) for RS256/ES256.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// The required `aud`.
    #[serde(default)]
    pub audience: Option<String>,
    /// The required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The claim naming the tenant (default `tenant`).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

/// What a request may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET, HEAD, list.
    Read,
    /// PUT, DELETE.
    Write,
    /// `/v1/admin/*`.
    Admin,
}

/// Who is asking: the tenant and the granted scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The tenant; the coordinator keeps its keys under `tenants/<tenant>/`.
    pub tenant: Tenant,
    /// Granted scopes.
    pub scopes: BTreeSet<Scope>,
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Denied {
    /// 401: no valid token.
    Unauthenticated(String),
    /// 403: a valid token without the scope.
    Forbidden(String),
}

/// Verifies tokens as configured.
pub struct Verifier {
    validation: Validation,
    keys: Vec<(Option<String>, DecodingKey)>,
    tenant_claim: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn invalid(msg: String) -> Error {
    Error::invalid_input(format!("invalid [auth] configuration: {msg}"))
}

impl Verifier {
    /// Builds a verifier from the `[auth]` section.
    pub fn new(config: &AuthConfig) -> Result<Verifier> {
        let alg = match config.algorithm.as_deref() {
            Some("HS256") => Algorithm::HS256,
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some(other) => {
                return Err(invalid(format!(
                    "algorithm \"{other}\" is not one of HS256, RS256, ES256"
                )));
            }
            None => {
                return Err(invalid(
                    "set algorithm = \"HS256\", \"RS256\" or \"ES256\"".into(),
                ));
            }
        };
        let mut keys = Vec::new();
        match alg {
            Algorithm::HS256 => {
                let secret = config
                    .secret
                    .as_ref()
                    .ok_or_else(|| invalid("HS256 needs secret".into()))?;
                if secret.len() < 32 {
                    return Err(invalid("the HS256 secret must be at least 32 bytes".into()));
                }
                keys.push((None, DecodingKey::from_secret(secret.as_bytes())));
            }
            _ => {
                if let Some(path) = &config.public_key_pem {
                    let pem = std::fs::read(path)
                        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
                    let key = if alg == Algorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem)
                    } else {
                        DecodingKey::from_ec_pem(&pem)
                    }
                    .map_err(|e| {
                        invalid(format!(
                            "{} is not a {alg:?} public key: {e}",
                            path.display()
                        ))
                    })?;
                    keys.push((None, key));
                }
                if let Some(path) = &config.jwks {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
                    let set: JwkSet = serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("{} is not a JWKS: {e}", path.display())))?;
                    for jwk in &set.keys {
                        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                            invalid(format!("a key in {} is unusable: {e}", path.display()))
                        })?;
                        keys.push((jwk.common.key_id.clone(), key));
                    }
                }
                if keys.is_empty() {
                    return Err(invalid(format!("{alg:?} needs public_key_pem or jwks")));
                }
            }
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp"]);
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Verifier {
            validation,
            keys,
            tenant_claim: config.tenant_claim.clone(),
        })
    }

    /// Verifies a bearer token and returns who it names.
    pub fn verify(&self, token: &str) -> std::result::Result<Identity, Denied> {
        let denied = |m: String| Denied::Unauthenticated(m);
        let header = decode_header(token).map_err(|e| denied(format!("malformed token: {e}")))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(denied(format!(
                "token algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let candidates: Vec<&DecodingKey> = match &header.kid {
            Some(kid) if self.keys.iter().any(|(k, _)| k.as_deref() == Some(kid)) => self
                .keys
                .iter()
                .filter(|(k, _)| k.as_deref() == Some(kid.as_str()))
                .map(|(_, key)| key)
                .collect(),
            _ => self.keys.iter().map(|(_, key)| key).collect(),
        };
        let mut last = String::from("no key");
        for key in candidates {
            match decode::<serde_json::Value>(token, key, &self.validation) {
                Ok(data) => return self.identity(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(denied(format!("token rejected: {last}")))
    }

    fn identity(&self, claims: &serde_json::Value) -> std::result::Result<Identity, Denied> {
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Denied::Unauthenticated(format!("the token has no \"{}\" claim", self.tenant_claim))
            })?;
        let tenant =
            Tenant::new(tenant).map_err(|e| Denied::Unauthenticated(e.message().to_owned()))?;
        let mut names: Vec<String> = Vec::new();
        if let Some(s) = claims.get("scope").and_then(|v| v.as_str()) {
            names.extend(s.split_whitespace().map(str::to_owned));
        }
        if let Some(list) = claims.get("scopes").and_then(|v| v.as_array()) {
            names.extend(list.iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
        let scopes = names
            .iter()
            .filter_map(|n| match n.as_str() {
                "read" => Some(Scope::Read),
                "write" => Some(Scope::Write),
                "admin" => Some(Scope::Admin),
                _ => None,
            })
            .collect();
        Ok(Identity { tenant, scopes })
    }
}
