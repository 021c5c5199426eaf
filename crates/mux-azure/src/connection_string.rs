//! The one-string ways to say where a container is and how to reach it: storage
//! connection strings and container SAS URLs.

use azure_core::http::Url;
use mux_core::{Error, Result};

use crate::credential::AzureCredential;
use crate::redact::redact_sas;

/// The account name of the local storage emulator (Azurite).
pub const DEV_ACCOUNT_NAME: &str = "devstoreaccount1";

/// The well-known, public account key of the local storage emulator (Azurite).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The blob endpoint of the local storage emulator (Azurite) on its default port.
pub const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// Parses a storage connection string into a blob endpoint and a credential.
pub(crate) fn parse_connection_string(cs: &str) -> Result<(String, AzureCredential)> {
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

/// Splits a container SAS URL,
/// `https://<account>.blob.core.windows.net/<container>?sv=…&sig=…`, into the blob
/// endpoint, the container and the SAS token. Errors never show the signature.
pub(crate) fn parse_sas_url(url: &str) -> Result<(String, String, String)> {
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
    let endpoint = parsed.as_str().trim_end_matches('/').to_owned();
    Ok((endpoint, container, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_endpoint_from_account_and_suffix() {
        let (endpoint, _) = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert_eq!(endpoint, "https://acct.blob.core.chinacloudapi.cn");
        let (endpoint, _) = parse_connection_string("AccountName=acct;AccountKey=a2V5").unwrap();
        assert_eq!(endpoint, "https://acct.blob.core.windows.net");
    }

    #[test]
    fn prefers_a_shared_access_signature() {
        let (endpoint, credential) = parse_connection_string(
            "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rl&sig=c2VjcmV0c2ln%3D",
        )
        .unwrap();
        assert_eq!(endpoint, "https://acct.blob.core.windows.net");
        match &credential {
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
            let err = parse_connection_string(cs).map(drop).unwrap_err();
            assert_eq!(err.kind(), mux_core::ErrorKind::InvalidInput);
            assert!(err.message().contains(needle), "{cs}: {err}");
            assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        }
    }

    #[test]
    fn parses_a_sas_url() {
        let (endpoint, container, _) = parse_sas_url(
            "http://127.0.0.1:10000/devstoreaccount1/records?sv=2022-11-02&sp=racwdl&sig=AbC%2Bd%3D",
        )
        .unwrap();
        assert_eq!(endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(container, "records");
        let (endpoint, container, token) = parse_sas_url(
            "https://acct.blob.core.windows.net/records?sv=2022-11-02&sr=c&sp=racwdl&sig=AbC%2Bd%3D",
        )
        .unwrap();
        assert_eq!(endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(container, "records");
        assert_eq!(token, "sv=2022-11-02&sr=c&sp=racwdl&sig=AbC%2Bd%3D");
        let err = parse_sas_url("https://acct.blob.core.windows.net/records?sv=1").unwrap_err();
        assert!(err.message().contains("no `sig`"), "{err}");
        let err = parse_sas_url("https://acct.blob.core.windows.net/?sig=x").unwrap_err();
        assert!(err.message().contains("no container"), "{err}");
    }
}
