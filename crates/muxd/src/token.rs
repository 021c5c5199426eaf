//! `muxd token`: mints a token that this configuration's `[auth]` (or
//! `[auth.operator]`) accepts, for development, tests and scripts. Only HS256
//! sections can sign: with RS256/ES256 muxd holds public keys only, and tokens come
//! from the identity provider that holds the private key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mux::{Error, Result, Tenant};
use serde_json::{Map, Value, json};

use crate::auth::{AuthConfig, AuthMode};

/// What the token says.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The tenant (required for a tenant token; ignored for an operator token).
    pub tenant: Option<String>,
    /// Scopes for a tenant token: `read`, `write`, `admin`.
    pub scopes: Vec<String>,
    /// How long the token is valid.
    pub ttl: Duration,
    /// Sign with `[auth.operator]` instead of `[auth]`.
    pub operator: bool,
    /// The `sub` claim (who the holder is), if any.
    pub subject: Option<String>,
}

/// Signs a token `auth` accepts; errors name what is missing.
pub fn mint(auth: &AuthConfig, request: &TokenRequest) -> Result<String> {
    if auth.mode == AuthMode::Off {
        return Err(Error::invalid_input(
            "this configuration has [auth] mode = \"off\": requests need no token",
        ));
    }
    let (section, algorithm, secret, audience, issuer) = if request.operator {
        let op = auth.operator.as_ref().ok_or_else(|| {
            Error::invalid_input("no [auth.operator] section: operator tokens are refused")
        })?;
        (
            "[auth.operator]",
            &op.algorithm,
            &op.secret,
            &op.audience,
            &op.issuer,
        )
    } else {
        (
            "[auth]",
            &auth.algorithm,
            &auth.secret,
            &auth.audience,
            &auth.issuer,
        )
    };
    let secret = match (algorithm.as_deref(), secret) {
        (Some("HS256"), Some(secret)) => secret,
        (alg, _) => {
            return Err(Error::invalid_input(format!(
                "{section} uses {}: muxd can sign only with an HS256 secret; tokens for \
                 RS256/ES256 come from the holder of the private key",
                alg.unwrap_or("no algorithm")
            )));
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::invalid_input(format!("the clock is before 1970: {e}")))?
        .as_secs();
    let mut claims = Map::new();
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + request.ttl.as_secs().max(1)));
    if let Some(aud) = audience {
        claims.insert("aud".into(), json!(aud));
    }
    if let Some(iss) = issuer {
        claims.insert("iss".into(), json!(iss));
    }
    if let Some(sub) = &request.subject {
        claims.insert("sub".into(), json!(sub));
    }
    if !request.operator {
        let tenant = request.tenant.as_deref().ok_or_else(|| {
            Error::invalid_input("a tenant token needs --tenant (or use --operator)")
        })?;
        Tenant::new(tenant)?;
        for scope in &request.scopes {
            if !matches!(scope.as_str(), "read" | "write" | "admin") {
                return Err(Error::invalid_input(format!(
                    "scope {scope:?} is not one of read, write, admin"
                )));
            }
        }
        claims.insert(auth.tenant_claim.clone(), json!(tenant));
        claims.insert("scope".into(), json!(request.scopes.join(" ")));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Value::Object(claims),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::invalid_input(format!("cannot sign the token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Principal, Scope, Verifier};

    fn auth(text: &str) -> AuthConfig {
        toml::from_str(text).unwrap()
    }

    const HS256: &str = r#"
        mode = "jwt"
        algorithm = "HS256"
        secret = "a tenant secret of at least thirty-two bytes"
        audience = "muxd"
        [operator]
        algorithm = "HS256"
        secret = "an operator secret of at least thirty-two bytes"
        audience = "muxd-operator"
    "#;

    fn request(tenant: Option<&str>, scopes: &[&str], operator: bool) -> TokenRequest {
        TokenRequest {
            tenant: tenant.map(str::to_owned),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ttl: Duration::from_secs(60),
            operator,
            subject: Some("ops".into()),
        }
    }

    #[test]
    fn minted_tokens_pass_the_verifier_as_what_they_claim() {
        let config = auth(HS256);
        let verifier = Verifier::new(&config).unwrap();
        let token = mint(&config, &request(Some("acme"), &["read"], false)).unwrap();
        match verifier.authenticate(&token).unwrap() {
            Principal::Tenant(id) => {
                assert_eq!(id.tenant.as_str(), "acme");
                assert_eq!(id.scopes.iter().copied().collect::<Vec<_>>(), [Scope::Read]);
            }
            other => panic!("{other:?}"),
        }
        let token = mint(&config, &request(None, &[], true)).unwrap();
        assert!(matches!(
            verifier.authenticate(&token).unwrap(),
            Principal::Operator { subject: Some(s) } if s == "ops"
        ));
    }

    #[test]
    fn what_cannot_be_signed_is_named() {
        let config = auth(HS256);
        let e = mint(&config, &request(Some("acme"), &["root"], false)).unwrap_err();
        assert!(e.message().contains("not one of read, write, admin"), "{e}");
        let e = mint(&config, &request(None, &["read"], false)).unwrap_err();
        assert!(e.message().contains("--tenant"), "{e}");
        let es = auth("mode = \"jwt\"\nalgorithm = \"ES256\"\njwks = \"keys.json\"");
        let e = mint(&es, &request(Some("acme"), &["read"], false)).unwrap_err();
        assert!(e.message().contains("only with an HS256 secret"), "{e}");
        let e = mint(&es, &request(None, &[], true)).unwrap_err();
        assert!(e.message().contains("[auth.operator]"), "{e}");
        let off = auth("mode = \"off\"");
        let e = mint(&off, &request(Some("acme"), &["read"], false)).unwrap_err();
        assert!(e.message().contains("no token"), "{e}");
    }
}
