//! Who is asking: tenants and operators by JWT, scopes, and the bearer scheme.
//!
//! Two kinds of callers, told apart by the key that signed their token:
//! - a **tenant** token (verified with the `[auth]` keys) names a tenant; the coordinator
//!   keeps that tenant's keys under `tenants/<tenant>/`. Its `admin` scope administers
//!   only the tenant's own namespace (its own dead letters).
//! - an **operator** token (verified with the separate `[auth.operator]` key and its
//!   required audience) names no tenant. Only an operator may do what affects every
//!   tenant: reload the configuration, read health internals, see every dead letter.
//!
//! The two never overlap: an operator token must verify with the operator key *and*
//! carry the operator audience; a configuration whose operator secret equals the tenant
//! secret, or whose audiences are equal, is refused; and a token whose `aud` names the
//! operator audience is never accepted as a tenant token. With `mode = "off"` (loopback
//! only) there are no tokens and every caller is the operator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// The `[auth]` section: how tenant tokens are verified, and `[auth.operator]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `jwt` (default) or `off`.
    #[serde(default)]
    pub mode: AuthMode,
    /// The one accepted algorithm: `HS256`, `RS256` or `ES256` (pinned: tokens signed
    /// otherwise, `none` included, are refused).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The shared secret for HS256 (hidden in `Debug`).
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
    /// `[auth.operator]`: the operator's own key. Without it, nobody may reload over
    /// the network, read health internals or see other tenants' dead letters.
    #[serde(default)]
    pub operator: Option<OperatorConfig>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("public_key_pem", &self.public_key_pem)
            .field("jwks", &self.jwks)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("tenant_claim", &self.tenant_claim)
            .field("operator", &self.operator)
            .finish()
    }
}

/// `[auth.operator]`: the key material of operator tokens, distinct from the tenants'.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// `HS256`, `RS256` or `ES256`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The HS256 secret; must differ from the tenant secret (hidden in `Debug`).
    #[serde(default)]
    pub secret: Option<String>,
    /// A PEM public key file for RS256/ES256.
    #[serde(default)]
    pub public_key_pem: Option<PathBuf>,
    /// A JWKS file for RS256/ES256.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// The required `aud` of operator tokens (e.g. `muxd-operator`); must differ from
    /// the tenant audience.
    #[serde(default)]
    pub audience: Option<String>,
    /// The required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
}

impl std::fmt::Debug for OperatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("public_key_pem", &self.public_key_pem)
            .field("jwks", &self.jwks)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

/// What a tenant's request may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET, HEAD, list.
    Read,
    /// PUT, DELETE.
    Write,
    /// The tenant's own dead letters under `/v1/admin/dead-letters` (never what
    /// affects every tenant: that needs an operator token).
    Admin,
}

impl Scope {
    /// The scope named `read`, `write` or `admin`.
    pub fn from_name(name: &str) -> Option<Scope> {
        match name {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A tenant token's holder: the tenant and the granted scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The tenant; the coordinator keeps its keys under `tenants/<tenant>/`.
    pub tenant: Tenant,
    /// Granted scopes.
    pub scopes: BTreeSet<Scope>,
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// `[auth] mode = "off"` (loopback only): no tenants, every caller is the operator.
    Local,
    /// A verified operator token.
    Operator {
        /// Its `sub` claim, for logs.
        subject: Option<String>,
    },
    /// A verified tenant token.
    Tenant(Identity),
}

impl Principal {
    /// Whether the caller may act on every tenant (an operator token, or auth off).
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Local | Principal::Operator { .. })
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Denied {
    /// 401: no valid token.
    Unauthenticated(String),
    /// 403: a valid token without the scope.
    Forbidden(String),
}

/// The token of an `Authorization` value in the `Bearer` scheme. The scheme name is
/// case-insensitive (RFC 7235 §2.1): `Bearer`, `bearer` and `BEARER` all work.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// One set of keys and claim checks (the tenants' or the operator's).
struct TokenCheck {
    validation: Validation,
    keys: Vec<(Option<String>, DecodingKey)>,
}

/// The key material of one section, `[auth]` or `[auth.operator]`.
struct KeySource<'a> {
    section: &'static str,
    algorithm: Option<&'a str>,
    secret: Option<&'a str>,
    public_key_pem: Option<&'a Path>,
    jwks: Option<&'a Path>,
    audience: Option<&'a str>,
    issuer: Option<&'a str>,
}

fn invalid(section: &str, msg: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("invalid [{section}] configuration: {msg}"))
}

impl TokenCheck {
    fn new(src: &KeySource<'_>) -> Result<TokenCheck> {
        let bad = |msg: String| invalid(src.section, msg);
        let alg = match src.algorithm {
            Some("HS256") => Algorithm::HS256,
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some(other) => {
                return Err(bad(format!(
                    "algorithm \"{other}\" is not one of HS256, RS256, ES256"
                )));
            }
            None => {
                return Err(bad(
                    "set algorithm = \"HS256\", \"RS256\" or \"ES256\"".into()
                ));
            }
        };
        let mut keys = Vec::new();
        if alg == Algorithm::HS256 {
            let secret = src.secret.ok_or_else(|| bad("HS256 needs secret".into()))?;
            if secret.len() < 32 {
                return Err(bad("the HS256 secret must be at least 32 bytes".into()));
            }
            keys.push((None, DecodingKey::from_secret(secret.as_bytes())));
        } else {
            if let Some(path) = src.public_key_pem {
                let pem = std::fs::read(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                let key = if alg == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                }
                .map_err(|e| {
                    bad(format!(
                        "{} is not a {alg:?} public key: {e}",
                        path.display()
                    ))
                })?;
                keys.push((None, key));
            }
            if let Some(path) = src.jwks {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                let set: JwkSet = serde_json::from_str(&text)
                    .map_err(|e| bad(format!("{} is not a JWKS: {e}", path.display())))?;
                for jwk in &set.keys {
                    let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                        bad(format!("a key in {} is unusable: {e}", path.display()))
                    })?;
                    keys.push((jwk.common.key_id.clone(), key));
                }
            }
            if keys.is_empty() {
                return Err(bad(format!("{alg:?} needs public_key_pem or jwks")));
            }
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 5;
        match src.audience {
            Some(aud) => {
                // jsonwebtoken accepts a token without `aud` unless it is required.
                validation.set_required_spec_claims(&["exp", "aud"]);
                validation.set_audience(&[aud]);
            }
            None => {
                validation.set_required_spec_claims(&["exp"]);
                validation.validate_aud = false;
            }
        }
        if let Some(iss) = src.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(TokenCheck { validation, keys })
    }

    /// The claims of a token signed by one of these keys, with valid times, audience
    /// and issuer.
    fn claims(&self, token: &str) -> std::result::Result<serde_json::Value, String> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(format!("token algorithm {:?} is not accepted", header.alg));
        }
        // jsonwebtoken parses `crit` but does not act on it; RFC 7515 §4.1.11 says a
        // token with a critical extension the recipient does not understand must be
        // refused, and muxd understands none.
        if let Some(crit) = &header.crit {
            return Err(format!(
                "the token header lists critical extensions {crit:?} (\"crit\"); \
                 muxd understands none, so the token is refused"
            ));
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
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("token rejected: {last}"))
    }
}

/// Verifies tenant tokens and, when `[auth.operator]` is set, operator tokens.
pub struct Verifier {
    tenants: TokenCheck,
    tenant_claim: String,
    /// The operator's keys and audience.
    operator: Option<(TokenCheck, String)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.tenants.validation.algorithms)
            .field("keys", &self.tenants.keys.len())
            .field("operator", &self.operator.as_ref().map(|(_, aud)| aud))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier from the `[auth]` section (and `[auth.operator]`).
    pub fn new(config: &AuthConfig) -> Result<Verifier> {
        let tenants = TokenCheck::new(&KeySource {
            section: "auth",
            algorithm: config.algorithm.as_deref(),
            secret: config.secret.as_deref(),
            public_key_pem: config.public_key_pem.as_deref(),
            jwks: config.jwks.as_deref(),
            audience: config.audience.as_deref(),
            issuer: config.issuer.as_deref(),
        })?;
        let operator = match &config.operator {
            None => None,
            Some(op) => Some(Self::operator(config, op)?),
        };
        Ok(Verifier {
            tenants,
            tenant_claim: config.tenant_claim.clone(),
            operator,
        })
    }

    fn operator(config: &AuthConfig, op: &OperatorConfig) -> Result<(TokenCheck, String)> {
        const SECTION: &str = "auth.operator";
        let audience = op.audience.clone().ok_or_else(|| {
            invalid(
                SECTION,
                "set audience = \"…\" (e.g. \"muxd-operator\"): operator tokens must carry \
                 their own audience",
            )
        })?;
        if config.audience.as_deref() == Some(audience.as_str()) {
            return Err(invalid(
                SECTION,
                format!(
                    "audience \"{audience}\" is also the tenant audience in [auth]; \
                     give operators an audience of their own (e.g. \"muxd-operator\")"
                ),
            ));
        }
        if op.secret.is_some() && op.secret == config.secret {
            return Err(invalid(
                SECTION,
                "secret equals the tenant secret in [auth]: whoever can sign tenant tokens \
                 could then sign operator tokens; give the operator a different secret",
            ));
        }
        let check = TokenCheck::new(&KeySource {
            section: SECTION,
            algorithm: op.algorithm.as_deref(),
            secret: op.secret.as_deref(),
            public_key_pem: op.public_key_pem.as_deref(),
            jwks: op.jwks.as_deref(),
            audience: Some(&audience),
            issuer: op.issuer.as_deref(),
        })?;
        Ok((check, audience))
    }

    /// Whether `[auth.operator]` is configured.
    pub fn has_operator(&self) -> bool {
        self.operator.is_some()
    }

    /// Verifies a tenant token and returns who it names. Operator tokens are refused.
    pub fn verify(&self, token: &str) -> std::result::Result<Identity, Denied> {
        let claims = self
            .tenants
            .claims(token)
            .map_err(Denied::Unauthenticated)?;
        if let Some((_, audience)) = &self.operator
            && audiences(&claims).any(|a| a == audience)
        {
            return Err(Denied::Unauthenticated(format!(
                "the token is for the operator audience \"{audience}\", not a tenant token"
            )));
        }
        self.identity(&claims)
    }

    /// Verifies a bearer token as a tenant's or, failing that, as an operator's.
    pub fn authenticate(&self, token: &str) -> std::result::Result<Principal, Denied> {
        let as_tenant = match self.verify(token) {
            Ok(identity) => return Ok(Principal::Tenant(identity)),
            Err(Denied::Unauthenticated(m) | Denied::Forbidden(m)) => m,
        };
        let Some((check, _)) = &self.operator else {
            return Err(Denied::Unauthenticated(as_tenant));
        };
        match check.claims(token) {
            Ok(claims) => Ok(Principal::Operator {
                subject: claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .map(str::to_owned),
            }),
            Err(as_operator) => Err(Denied::Unauthenticated(format!(
                "{as_tenant} (nor is it an operator token: {as_operator})"
            ))),
        }
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
        let scopes = names.iter().filter_map(|n| Scope::from_name(n)).collect();
        Ok(Identity { tenant, scopes })
    }
}

/// Who is asking, from the bearer token if there is one, else from a verified client
/// certificate listed in `[tls.identities]`, else the local caller when auth is off.
pub(crate) fn principal(
    live: &crate::Live,
    token: Option<&str>,
    cert_name: Option<&str>,
) -> std::result::Result<Principal, Denied> {
    if let (Some(token), Some(verifier)) = (token, &live.auth) {
        return verifier.authenticate(token);
    }
    if token.is_none()
        && let (Some(name), Some(tls)) = (cert_name, &live.config.tls)
        && let Some(principal) = tls.principal(name)
    {
        return Ok(principal);
    }
    match (&live.auth, cert_name) {
        (None, _) => Ok(Principal::Local),
        (Some(_), Some(name)) => Err(Denied::Unauthenticated(format!(
            "the client certificate \"{name}\" is not in [tls.identities] and there is no \
             Authorization: Bearer <token>"
        ))),
        (Some(_), None) => Err(Denied::Unauthenticated(
            "missing Authorization: Bearer <token>".into(),
        )),
    }
}

/// The `aud` claim's values (a string or an array of strings).
fn audiences(claims: &serde_json::Value) -> impl Iterator<Item = &str> {
    let aud = claims.get("aud");
    let one = aud.and_then(|a| a.as_str());
    let many = aud
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str());
    one.into_iter().chain(many)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc", ""] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }

    #[test]
    fn tokens_for_the_operator_audience_are_never_tenant_tokens() {
        let claims = serde_json::json!({"aud": ["muxd", "muxd-operator"]});
        assert_eq!(
            audiences(&claims).collect::<Vec<_>>(),
            ["muxd", "muxd-operator"]
        );
        let claims = serde_json::json!({"aud": "muxd-operator"});
        assert_eq!(audiences(&claims).collect::<Vec<_>>(), ["muxd-operator"]);
        assert_eq!(audiences(&serde_json::json!({})).count(), 0);
    }
}
