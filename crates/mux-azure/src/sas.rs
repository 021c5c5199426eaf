//! Account SAS tokens derived from an account key, and the pipeline policy that adds a
//! fresh one to every request.
//!
//! The Azure SDK for Rust authenticates with Entra ID tokens or a SAS only; it has no
//! Shared Key signing. With an account key, mux signs an *account SAS* itself, following
//! <https://learn.microsoft.com/rest/api/storageservices/create-account-sas> for signed
//! version 2020-12-06 and later:
//!
//! ```text
//! StringToSign = accountname + "\n" + signedpermissions + "\n" + signedservice + "\n" +
//!                signedresourcetype + "\n" + signedstart + "\n" + signedexpiry + "\n" +
//!                signedIP + "\n" + signedProtocol + "\n" + signedversion + "\n" +
//!                signedEncryptionScope + "\n"
//! sig = base64(HMAC-SHA256(base64decode(accountkey), UTF-8(StringToSign)))
//! ```
//!
//! mux omits the optional start time (`st`; an empty `signedstart` field), so a token is
//! valid as soon as it is signed whatever the clocks say, and re-signs on a monotonic
//! schedule: a wall-clock jump cannot make it keep an expired token or re-sign on every
//! request.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use azure_core::credentials::Secret;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use azure_core::time::{Duration, OffsetDateTime};
use mux_core::{Error, Result};

/// The signed version (`sv`) of the tokens mux signs. It fixes the string-to-sign format
/// only; the REST API version of each request is the SDK's `x-ms-version` header.
pub const SAS_VERSION: &str = "2022-11-02";
/// Blob service only.
const SERVICES: &str = "b";
/// Service, container and object level operations.
const RESOURCE_TYPES: &str = "sco";
/// Read, write, delete, list, add, create (in the order Azure documents).
const PERMISSIONS: &str = "rwdlac";
/// How long a token mux signs for itself is valid.
const VALIDITY: Duration = Duration::hours(1);
/// A token is re-signed once it is this old, measured on the monotonic clock (so a
/// wall-clock jump neither keeps an expired token nor re-signs on every request).
const RENEW_AFTER: StdDuration = StdDuration::from_secs(45 * 60);
/// The query parameters of an account SAS.
const SAS_PARAMS: [&str; 8] = ["sv", "ss", "srt", "sp", "st", "se", "spr", "sig"];

/// The fields of one account SAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountSas {
    pub(crate) account: String,
    /// `st`; mux leaves it out (valid from the moment it is signed, whatever the
    /// server's clock says), tests set it to check known vectors.
    pub(crate) start: Option<String>,
    pub(crate) expiry: String,
    pub(crate) protocol: &'static str,
}

impl AccountSas {
    /// A token with no start time, valid until `now + validity`.
    fn new(account: &str, now: OffsetDateTime, validity: Duration, https_only: bool) -> AccountSas {
        AccountSas {
            account: account.to_owned(),
            start: None,
            expiry: format_time(now + validity),
            protocol: if https_only { "https" } else { "https,http" },
        }
    }

    /// Microsoft's string-to-sign for an account SAS (signed version 2020-12-06+), with
    /// no IP range and no encryption scope; an omitted start time is an empty field.
    pub(crate) fn string_to_sign(&self) -> String {
        [
            self.account.as_str(),
            PERMISSIONS,
            SERVICES,
            RESOURCE_TYPES,
            self.start.as_deref().unwrap_or_default(),
            &self.expiry,
            "",
            self.protocol,
            SAS_VERSION,
            "",
            "",
        ]
        .join("\n")
    }

    /// The query parameters, signature included, not yet percent-encoded.
    pub(crate) fn params(&self, key: &Secret) -> Result<Vec<(&'static str, String)>> {
        let sig = azure_core::hmac::hmac_sha256(&self.string_to_sign(), key).map_err(|e| {
            Error::invalid_input(format!(
                "cannot sign a SAS for account {}: the account key is not valid base64",
                self.account
            ))
            .with_source(crate::redact::Redacted::of(&e))
        })?;
        let mut params = vec![
            ("sv", SAS_VERSION.to_owned()),
            ("ss", SERVICES.to_owned()),
            ("srt", RESOURCE_TYPES.to_owned()),
            ("sp", PERMISSIONS.to_owned()),
        ];
        if let Some(start) = &self.start {
            params.push(("st", start.clone()));
        }
        params.extend([
            ("se", self.expiry.clone()),
            ("spr", self.protocol.to_owned()),
            ("sig", sig),
        ]);
        Ok(params)
    }
}

/// `2024-01-01T00:00:00Z`: ISO 8601 in UTC, whole seconds, as Azure expects in `st`/`se`.
fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(azure_core::time::OffsetDateTime::UNIX_EPOCH.offset());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Signs an account SAS for the blob service of `account`, valid for `validity` (no
/// start time: valid at once, whatever the server's clock says), with permissions
/// `rwdlac` on service, container and object level, for https and http.
///
/// This is the token mux signs for itself when it is given an account key; it is public
/// so that tools and tests can build a SAS URL (`<container URL>?<token>`) from a key.
/// Treat the result like the key: anyone holding it can read and write the account's
/// blobs until it expires.
///
/// ```
/// let token = mux_azure::account_sas_token(
///     mux_azure::DEV_ACCOUNT_NAME,
///     mux_azure::DEV_ACCOUNT_KEY,
///     std::time::Duration::from_secs(3600),
/// )?;
/// assert!(token.starts_with("sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se="));
/// assert!(token.contains("&sig="));
/// # Ok::<(), mux_core::Error>(())
/// ```
pub fn account_sas_token(account: &str, key: &str, validity: StdDuration) -> Result<String> {
    let validity = Duration::try_from(validity)
        .map_err(|_| Error::invalid_input("the SAS validity is too long"))?;
    let sas = AccountSas::new(account, OffsetDateTime::now_utc(), validity, false);
    let params = sas.params(&Secret::new(key.to_owned()))?;
    Ok(encode_query(&params))
}

fn encode_query(params: &[(&str, String)]) -> String {
    let mut url = azure_core::http::Url::parse("http://x/").expect("a valid URL");
    url.query_pairs_mut().extend_pairs(params);
    url.query().unwrap_or_default().to_owned()
}

/// A signed token and when it was signed (monotonic clock).
struct Signed {
    params: Arc<Vec<(&'static str, String)>>,
    signed_at: Instant,
}

/// A per-try pipeline policy that adds a current account SAS to the request URL,
/// re-signing it after 45 minutes of its hour ([`RENEW_AFTER`]).
pub(crate) struct AccountKeyPolicy {
    account: String,
    key: Secret,
    https_only: bool,
    current: Mutex<Option<Signed>>,
}

impl AccountKeyPolicy {
    pub(crate) fn new(account: &str, key: &str, https_only: bool) -> AccountKeyPolicy {
        AccountKeyPolicy {
            account: account.to_owned(),
            key: Secret::new(key.to_owned()),
            https_only,
            current: Mutex::new(None),
        }
    }

    /// The parameters of a token signed less than [`RENEW_AFTER`] ago.
    fn params(&self) -> Result<Arc<Vec<(&'static str, String)>>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(signed) = current
            .as_ref()
            .filter(|s| s.signed_at.elapsed() < RENEW_AFTER)
        {
            return Ok(signed.params.clone());
        }
        let signed_at = Instant::now();
        let sas = AccountSas::new(
            &self.account,
            OffsetDateTime::now_utc(),
            VALIDITY,
            self.https_only,
        );
        let params = Arc::new(sas.params(&self.key)?);
        *current = Some(Signed {
            params: params.clone(),
            signed_at,
        });
        Ok(params)
    }
}

impl fmt::Debug for AccountKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKeyPolicy")
            .field("account", &self.account)
            .field("key", &"***")
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Policy for AccountKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let params = self.params().map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                e.message().to_owned(),
            )
        })?;
        // The retry policy sends the same request again: drop the token of an earlier
        // try before adding the current one.
        let url = request.url_mut();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| !SAS_PARAMS.contains(&name.as_ref()))
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        {
            let mut query = url.query_pairs_mut();
            query.extend_pairs(kept);
            query.extend_pairs(params.iter().map(|(n, v)| (*n, v.as_str())));
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::ErrorKind;

    /// Vectors computed by Azurite's own implementation
    /// (`generateAccountSASSignature` in `dist/src/common/authentication/
    /// IAccountSASSignatureValues.js`, Azurite 3.35) for the emulator's well-known key:
    /// with an explicit start time, and without one (as mux signs), where the start is
    /// an empty field of the string-to-sign and no `st` parameter.
    #[test]
    fn signature_matches_an_independent_implementation() {
        let mut sas = AccountSas {
            account: "devstoreaccount1".into(),
            start: Some("2024-01-01T00:00:00Z".into()),
            expiry: "2024-01-01T01:00:00Z".into(),
            protocol: "https,http",
        };
        let key = Secret::new(crate::connection_string::DEV_ACCOUNT_KEY);
        assert_eq!(
            sas.string_to_sign(),
            "devstoreaccount1\nrwdlac\nb\nsco\n2024-01-01T00:00:00Z\n2024-01-01T01:00:00Z\n\nhttps,http\n2022-11-02\n\n"
        );
        let params = sas.params(&key).unwrap();
        let sig = params.iter().find(|(n, _)| *n == "sig").unwrap();
        assert_eq!(sig.1, "bK7QJRrgzv3Uvz0swCMxjyYNrWaAFIcwDUQkyTE26k4=");
        let query = encode_query(&params);
        assert_eq!(
            query,
            "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&st=2024-01-01T00%3A00%3A00Z&se=2024-01-01T01%3A00%3A00Z&spr=https%2Chttp&sig=bK7QJRrgzv3Uvz0swCMxjyYNrWaAFIcwDUQkyTE26k4%3D"
        );

        sas.start = None;
        assert_eq!(
            sas.string_to_sign(),
            "devstoreaccount1\nrwdlac\nb\nsco\n\n2024-01-01T01:00:00Z\n\nhttps,http\n2022-11-02\n\n"
        );
        let query = encode_query(&sas.params(&key).unwrap());
        assert_eq!(
            query,
            "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2024-01-01T01%3A00%3A00Z&spr=https%2Chttp&sig=LGKl0xCCFj8wG%2BPFH%2B4PdWUdx0wjTGPi6VapU%2BZanGo%3D"
        );
    }

    #[test]
    fn times_are_whole_seconds_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_704_067_200).unwrap()
            + Duration::milliseconds(999);
        assert_eq!(format_time(t), "2024-01-01T00:00:00Z");
        let sas = AccountSas::new("a", t, VALIDITY, true);
        assert_eq!(sas.start, None);
        assert_eq!(sas.expiry, "2024-01-01T01:00:00Z");
        assert_eq!(sas.protocol, "https");
    }

    #[test]
    fn the_policy_reuses_then_renews_its_token() {
        let policy = AccountKeyPolicy::new(
            "devstoreaccount1",
            crate::connection_string::DEV_ACCOUNT_KEY,
            false,
        );
        let first = policy.params().unwrap();
        assert!(Arc::ptr_eq(&first, &policy.params().unwrap()));
        assert!(first.iter().all(|(n, _)| *n != "st"));
        // Pretend the token was signed 44 minutes ago: still reused.
        let set_age = |minutes: u64| {
            let age = StdDuration::from_secs(minutes * 60);
            if let Some(then) = Instant::now().checked_sub(age) {
                policy.current.lock().unwrap().as_mut().unwrap().signed_at = then;
                true
            } else {
                false // a monotonic clock that started less than `age` ago
            }
        };
        if set_age(44) {
            assert!(Arc::ptr_eq(&first, &policy.params().unwrap()));
        }
        // 46 minutes ago: re-signed.
        if set_age(46) {
            let renewed = policy.params().unwrap();
            assert!(!Arc::ptr_eq(&first, &renewed));
            assert!(Arc::ptr_eq(&renewed, &policy.params().unwrap()));
        }
        assert!(!format!("{policy:?}").contains("Eby8"));
        let bad = AccountKeyPolicy::new("a", "not base64!", true);
        assert_eq!(bad.params().unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
