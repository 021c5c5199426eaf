//! The REST client: builds muxd URLs, sends requests with reqwest and turns every
//! answer — documented or not — into a value or a [`CliError`] that says what happened.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{CliError, chain};

/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the next bytes of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an unexpected body an error message quotes.
const EXCERPT_CHARS: usize = 200;

/// What a key segment keeps unencoded in a URL: RFC 3986's unreserved characters.
/// (Everything else is percent-encoded here rather than by the URL parser, which would
/// silently drop tabs and newlines.)
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// muxd's error body: `{"error":{"kind":…,"message":…}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    kind: String,
    message: String,
}

/// The answer to a write or a delete.
#[derive(Debug, Deserialize)]
pub struct WriteReply {
    /// The version written.
    pub version: String,
    /// The backends that applied it.
    pub applied_on: Vec<String>,
}

/// One listed key.
#[derive(Debug, Deserialize)]
pub struct ListEntry {
    /// The key.
    pub key: String,
    /// Its version.
    pub version: String,
    /// The value's size in bytes.
    pub size: u64,
}

/// A page of keys.
#[derive(Debug, Deserialize)]
pub struct ListReply {
    /// The keys of this page.
    pub entries: Vec<ListEntry>,
    /// The cursor of the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// One version in a key's history (`GET /v1/history/{key}`).
#[derive(Debug, Deserialize)]
pub struct HistoryEntry {
    /// The version.
    pub version: String,
    /// When it was written (RFC 3339).
    pub time: String,
    /// Whether it is a delete.
    pub deleted: bool,
    /// The value's length in bytes.
    pub size: u64,
    /// The value as text, when it is UTF-8.
    pub value: Option<String>,
}

/// A page of a key's history.
#[derive(Debug, Deserialize)]
pub struct HistoryReply {
    /// Versions, newest first.
    pub entries: Vec<HistoryEntry>,
    /// The cursor of the next (older) page.
    pub next_cursor: Option<String>,
}

/// The live counters of an admin job.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobProgress {
    /// Keys compared or considered.
    pub checked: u64,
    /// Keys found to differ between the stores.
    pub divergent: u64,
    /// Keys written (repaired, copied, purged).
    pub written: u64,
    /// Keys that failed.
    pub failed: u64,
}

/// An admin job (`GET /v1/admin/jobs/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// `verify`, `repair`, `backfill` or `gc`.
    pub kind: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The prefix.
    pub prefix: String,
    /// The stores compared (backfill: the sources).
    pub backends: Vec<String>,
    /// Backfill: the store filled.
    pub target: Option<String>,
    /// The live counters.
    pub progress: JobProgress,
    /// The report, once done.
    pub report: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What an import did (`POST /v1/admin/import`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ImportReply {
    /// Records read.
    pub records: u64,
    /// Writes applied.
    pub applied: u64,
    /// Writes refused as already current.
    pub superseded: u64,
    /// The prefix the export was taken of.
    pub prefix: Option<String>,
    /// Where the records went.
    pub targets: Vec<String>,
}

/// A muxd REST endpoint.
#[derive(Debug, Clone)]
pub struct Api {
    client: Client,
    /// Without a read timeout: an import's answer comes only once the whole upload is
    /// written, however long that takes.
    upload: Client,
    base: Url,
}

/// TLS settings for an https:// muxd beyond the system's roots.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM CA certificates trusted besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate and its key (PEM files), for mTLS.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Tls {
    /// A connector for tonic that speaks TLS (h2) to `authority` (`host:port`):
    /// the public roots and `ca_file` are trusted, `identity` is presented.
    pub fn connector(
        &self,
        authority: &str,
    ) -> Result<
        impl tower::Service<
            tonic::transport::Uri,
            Response = hyper_util::rt::TokioIo<
                tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
            >,
            Error = std::io::Error,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
        CliError,
    > {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let usage = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
            CliError::Usage(format!("{what} {}: {e}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.ca_file {
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| usage("--ca-file", path, &e))?
            {
                let cert = cert.map_err(|e| usage("--ca-file", path, &e))?;
                roots.add(cert).map_err(|e| usage("--ca-file", path, &e))?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Failed(format!("TLS settings: {e}")))?
        .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| usage("--client-cert", cert, &e))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| usage("--client-key", key, &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| usage("--client-cert", cert, &e))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let host = match authority.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => authority,
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| CliError::Usage(format!("--grpc host \"{host}\": {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let authority = authority.to_owned();
        Ok(tower::service_fn(move |_: tonic::transport::Uri| {
            let (connector, name, authority) = (connector.clone(), name.clone(), authority.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&authority).await?;
                let tls = connector.connect(name, tcp).await?;
                Ok(hyper_util::rt::TokioIo::new(tls))
            }
        }))
    }

    fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, CliError> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                CliError::Usage(format!("{what} {}: cannot read it: {e}", path.display()))
            })
        };
        if let Some(path) = &self.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(path, "--ca-file")?)
                .map_err(|e| CliError::Usage(format!("--ca-file {}: {e}", path.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &self.identity {
            let mut pem = read(cert, "--client-cert")?;
            pem.push(b'\n');
            pem.extend(read(key, "--client-key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                CliError::Usage(format!(
                    "--client-cert {} / --client-key {}: not a PEM certificate and key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

impl Api {
    /// A client for the server at `url` (http:// or https://), sending `token` as a
    /// bearer token when given, trusting `tls.ca_file` and presenting `tls.identity`.
    pub fn with_tls(url: &str, token: Option<&str>, tls: &Tls) -> Result<Api, CliError> {
        let base = Url::parse(url)
            .map_err(|e| CliError::Usage(format!("--url \"{url}\" is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(CliError::Usage(format!(
                "--url \"{url}\" is not an http:// or https:// URL"
            )));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                CliError::Usage(
                    "the token (--token or MUX_TOKEN) has characters a header cannot carry".into(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        // The workspace's one TLS provider; another part of the process may have
        // installed it already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let built = |read_timeout: Option<Duration>| {
            let mut builder = tls.apply(
                Client::builder()
                    .default_headers(headers.clone())
                    .connect_timeout(CONNECT_TIMEOUT),
            )?;
            if let Some(t) = read_timeout {
                builder = builder.read_timeout(t);
            }
            builder.build().map_err(|e| {
                CliError::Failed(format!("cannot build the HTTP client: {}", chain(&e)))
            })
        };
        let client = built(Some(READ_TIMEOUT))?;
        let upload = built(None)?;
        Ok(Api {
            client,
            upload,
            base,
        })
    }

    /// The URL of `path` (segments, each percent-encoded) below the base URL.
    fn url<'a>(&self, path: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in Api::with_tls: the URL can be a base")
            .pop_if_empty()
            .extend(path);
        url
    }

    /// The URL of a key under `/v1/kv`.
    fn key_url(&self, key: &str) -> Result<Url, CliError> {
        self.key_url_under("kv", key)
    }

    /// The URL of a key under `/v1/<root>`. Refuses `.` and `..` segments here: URLs
    /// normalise them away, so the server would see another key.
    fn key_url_under(&self, root: &str, key: &str) -> Result<Url, CliError> {
        if let Some((i, dots)) = key
            .split('/')
            .enumerate()
            .find(|(_, s)| matches!(*s, "." | ".."))
        {
            return Err(CliError::Refused(format!(
                "key \"{key}\": segment {} is '{dots}'; keys cannot contain '.' or '..' segments",
                i + 1
            )));
        }
        let mut url = self.url(["v1", root]);
        let encoded: Vec<String> = key
            .split('/')
            .map(|s| utf8_percent_encode(s, KEY_SEGMENT).to_string())
            .collect();
        let path = format!("{}/{}", url.path(), encoded.join("/"));
        url.set_path(&path);
        Ok(url)
    }

    /// `PUT /v1/kv/{key}`.
    pub async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        headers: &HeaderMap,
    ) -> Result<WriteReply, CliError> {
        let url = self.key_url(key)?;
        let body = self
            .send(Method::PUT, url, headers.clone(), value, Some(key))
            .await?;
        parse("a write reply", StatusCode::OK, &body)
    }

    /// `GET /v1/kv/{key}` (`?as_of=` when given): the value.
    pub async fn get(&self, key: &str, as_of: Option<&str>) -> Result<Vec<u8>, CliError> {
        let mut url = self.key_url(key)?;
        if let Some(at) = as_of {
            url.query_pairs_mut().append_pair("as_of", at);
        }
        self.send(Method::GET, url, HeaderMap::new(), Vec::new(), Some(key))
            .await
    }

    /// `GET /v1/history/{key}?cursor=`: one page of the key's versions, newest first.
    pub async fn history(&self, key: &str, cursor: Option<&str>) -> Result<HistoryReply, CliError> {
        let mut url = self.key_url_under("history", key)?;
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let body = self
            .send(Method::GET, url, HeaderMap::new(), Vec::new(), Some(key))
            .await?;
        parse("a page of history", StatusCode::OK, &body)
    }

    /// `DELETE /v1/kv/{key}`.
    pub async fn delete(&self, key: &str) -> Result<WriteReply, CliError> {
        let url = self.key_url(key)?;
        let body = self
            .send(Method::DELETE, url, HeaderMap::new(), Vec::new(), Some(key))
            .await
            .map_err(|e| match e {
                CliError::NotFound { key, .. } => CliError::NotFound {
                    key,
                    note: " (nothing to delete)",
                },
                other => other,
            })?;
        parse("a write reply", StatusCode::OK, &body)
    }

    /// `GET /v1/kv?prefix=&cursor=&limit=`: one page.
    pub async fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<ListReply, CliError> {
        let mut url = self.url(["v1", "kv"]);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("prefix", prefix)
                .append_pair("limit", "1000");
            if let Some(c) = cursor {
                query.append_pair("cursor", c);
            }
        }
        let body = self
            .send(Method::GET, url, HeaderMap::new(), Vec::new(), None)
            .await?;
        parse("a page of keys", StatusCode::OK, &body)
    }

    /// `GET /v1/admin/health`, as JSON.
    pub async fn health(&self) -> Result<serde_json::Value, CliError> {
        let url = self.url(["v1", "admin", "health"]);
        let body = self
            .send(Method::GET, url, HeaderMap::new(), Vec::new(), None)
            .await?;
        parse("a health report", StatusCode::OK, &body)
    }

    /// `GET /v1/admin/audit?…` (the filters given), as JSON.
    pub async fn audit(&self, filters: &[(&str, &str)]) -> Result<serde_json::Value, CliError> {
        let mut url = self.url(["v1", "admin", "audit"]);
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in filters {
                query.append_pair(k, v);
            }
        }
        let body = self
            .send(Method::GET, url, HeaderMap::new(), Vec::new(), None)
            .await?;
        parse("audit events", StatusCode::OK, &body)
    }

    /// `DELETE /v1/admin/tenants/{tenant}`: the erasure report, as JSON.
    pub async fn erase_tenant(&self, tenant: &str) -> Result<serde_json::Value, CliError> {
        let url = self.url(["v1", "admin", "tenants", tenant]);
        let body = self
            .send(Method::DELETE, url, HeaderMap::new(), Vec::new(), None)
            .await?;
        parse("an erasure report", StatusCode::OK, &body)
    }

    /// `GET /v1/admin/audit/verify`, as JSON.
    pub async fn audit_verify(&self) -> Result<serde_json::Value, CliError> {
        let url = self.url(["v1", "admin", "audit", "verify"]);
        let body = self
            .send(Method::GET, url, HeaderMap::new(), Vec::new(), None)
            .await?;
        parse("an audit verification", StatusCode::OK, &body)
    }

    /// `POST /v1/admin/jobs`: starts a job; the answer as JSON.
    pub async fn start_job(&self, job: &serde_json::Value) -> Result<serde_json::Value, CliError> {
        let url = self.url(["v1", "admin", "jobs"]);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_vec(job)
            .map_err(|e| CliError::Failed(format!("cannot encode the job: {e}")))?;
        let body = self.send(Method::POST, url, headers, body, None).await?;
        parse("a job", StatusCode::ACCEPTED, &body)
    }

    /// `GET /v1/admin/jobs/{id}`, as JSON.
    pub async fn job(&self, id: &str) -> Result<serde_json::Value, CliError> {
        let url = self.url(["v1", "admin", "jobs", id]);
        let body = self
            .send(Method::GET, url, HeaderMap::new(), Vec::new(), None)
            .await?;
        parse("a job", StatusCode::OK, &body)
    }

    /// `GET /v1/admin/export?prefix=&as_of=&backends=`: the answer, to be read as it
    /// comes.
    pub async fn export(
        &self,
        prefix: &str,
        as_of: Option<&str>,
        backends: &[String],
    ) -> Result<reqwest::Response, CliError> {
        let mut url = self.url(["v1", "admin", "export"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("prefix", prefix);
            if let Some(at) = as_of {
                query.append_pair("as_of", at);
            }
            if !backends.is_empty() {
                query.append_pair("backends", &backends.join(","));
            }
        }
        self.open(&self.client, Method::GET, url, HeaderMap::new(), Vec::new())
            .await
    }

    /// `POST /v1/admin/import?backends=` with `body` (an export, streamed).
    pub async fn import(
        &self,
        body: reqwest::Body,
        backends: &[String],
    ) -> Result<ImportReply, CliError> {
        let mut url = self.url(["v1", "admin", "import"]);
        if !backends.is_empty() {
            url.query_pairs_mut()
                .append_pair("backends", &backends.join(","));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let what = format!("POST {url}");
        let response = self
            .open(&self.upload, Method::POST, url, headers, body)
            .await?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&what, &e))?;
        parse("an import report", status, &body)
    }

    /// Sends one request and returns the answer unread when it is a success (else the
    /// [`CliError`] it says).
    async fn open(
        &self,
        client: &Client,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: impl Into<reqwest::Body>,
    ) -> Result<reqwest::Response, CliError> {
        let what = format!("{method} {url}");
        let response = client
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&what, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&what, &e))?;
        Err(error_answer(&what, status, &body, None))
    }

    /// Sends one request; a success gives the body, anything else a [`CliError`].
    /// `key`: the key the request is about, so a 404 reads "not found: <key>".
    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Vec<u8>,
        key: Option<&str>,
    ) -> Result<Vec<u8>, CliError> {
        let what = format!("{method} {url}");
        let response = self
            .client
            .request(method, url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&what, &e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&what, &e))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        Err(error_answer(&what, status, &body, key))
    }
}

/// A request that got no (complete, well-formed) HTTP answer.
pub fn transport_error(what: &str, e: &reqwest::Error) -> CliError {
    // reqwest's own message repeats the URL, which `what` already names.
    let cause = match std::error::Error::source(e) {
        Some(source) => chain(source),
        None => chain(e),
    };
    // TLS refusals say what to give (TLS 1.3 reports a missing client certificate
    // only after the handshake, as an alert on the first request).
    if cause.contains("CertificateRequired") || cause.contains("BadCertificate") {
        CliError::Failed(format!(
            "{what}: cannot connect: {cause} (muxd asks for a client certificate its CA \
             signed: give --client-cert and --client-key, or MUX_CLIENT_CERT and MUX_CLIENT_KEY)"
        ))
    } else if cause.contains("invalid peer certificate") {
        CliError::Failed(format!(
            "{what}: cannot connect: {cause} (muxd's certificate is not trusted: give its CA \
             with --ca-file or MUX_CA_FILE)"
        ))
    } else if e.is_connect() {
        CliError::Failed(format!(
            "{what}: cannot connect: {cause} (is muxd running there? set --url or MUX_URL)"
        ))
    } else if e.is_timeout() {
        CliError::Failed(format!("{what}: no answer in time: {cause}"))
    } else {
        CliError::Failed(format!(
            "{what}: no valid HTTP answer: {cause} (is --url a muxd REST endpoint?)"
        ))
    }
}

/// Turns a non-2xx answer into the error a user expects.
fn error_answer(what: &str, status: StatusCode, body: &[u8], key: Option<&str>) -> CliError {
    let detail = match error_detail(body) {
        Ok(detail) => detail,
        Err(described) => {
            return CliError::Failed(format!(
                "{what}: the server answered {status} with {described}, not muxd's JSON error \
                 (is --url a muxd REST endpoint?)"
            ));
        }
    };
    let message = detail.message;
    match status {
        StatusCode::NOT_FOUND if detail.kind == "not_found" => match key {
            Some(key) => CliError::NotFound {
                key: key.to_owned(),
                note: "",
            },
            None => CliError::Failed(format!("{what}: {status}: {message}")),
        },
        StatusCode::UNAUTHORIZED => CliError::Refused(format!(
            "not authorised: {message} (pass a valid token with --token or MUX_TOKEN)"
        )),
        StatusCode::FORBIDDEN => CliError::Refused(format!(
            "not authorised: {message} (the token does not allow this)"
        )),
        s if s.is_client_error() => CliError::Refused(message),
        s => CliError::Failed(format!("{what}: server error ({s}): {message}")),
    }
}

/// The documented error body, or a description of what the body is instead.
fn error_detail(body: &[u8]) -> Result<ErrorDetail, String> {
    let text = describe_text(body)?;
    serde_json::from_str::<ErrorBody>(text)
        .map(|b| b.error)
        .map_err(|_| format!("the body \"{}\"", excerpt(text)))
}

/// The body as text, or a description of why it is not.
fn describe_text(body: &[u8]) -> Result<&str, String> {
    if body.is_empty() {
        return Err("an empty body".into());
    }
    std::str::from_utf8(body)
        .map_err(|_| format!("a body that is not UTF-8 text ({} bytes)", body.len()))
}

/// The first [`EXCERPT_CHARS`] characters of `text`, on one line.
fn excerpt(text: &str) -> String {
    let mut short: String = text.chars().take(EXCERPT_CHARS).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short.escape_debug().to_string()
}

/// A success body as `T`, or an error naming the status and what the body is.
fn parse<T: DeserializeOwned>(
    expected: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T, CliError> {
    let text = describe_text(body).map_err(|described| {
        CliError::Failed(format!(
            "the server answered {status} with {described}, not {expected}"
        ))
    })?;
    serde_json::from_str(text).map_err(|e| {
        CliError::Failed(format!(
            "the server answered {status} with \"{}\", not {expected} ({e})",
            excerpt(text)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        Api::with_tls("http://127.0.0.1:9/base/", None, &Tls::default()).unwrap()
    }

    #[test]
    fn keys_are_percent_encoded_per_segment() {
        let url = api().key_url("odd keys/with space?#%").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/base/v1/kv/odd%20keys/with%20space%3F%23%25"
        );
        // Sent as they are, for the server to judge: not dropped, not split.
        let url = api().key_url("tab\there/a\\b/é/a//b").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/base/v1/kv/tab%09here/a%5Cb/%C3%A9/a//b"
        );
    }

    #[test]
    fn dot_segments_are_refused_before_sending() {
        let e = api().key_url("a/../b").unwrap_err();
        assert!(
            matches!(&e, CliError::Refused(m) if m.contains("segment 2 is '..'")),
            "{e}"
        );
        assert!(api().key_url("a/.hidden/..dots").is_ok());
    }

    #[test]
    fn error_answers_say_what_happened() {
        let json = br#"{"error":{"kind":"not_found","message":"no record under k"}}"#;
        let e = error_answer("GET x", StatusCode::NOT_FOUND, json, Some("k"));
        assert_eq!(e.to_string(), "not found: k");
        let e = error_answer("GET x", StatusCode::NOT_FOUND, b"", Some("k"));
        assert!(
            e.to_string().contains("404 Not Found with an empty body"),
            "{e}"
        );
        let e = error_answer("GET x", StatusCode::BAD_GATEWAY, &[0xff, 0xfe], None);
        assert!(
            e.to_string()
                .contains("502 Bad Gateway with a body that is not UTF-8"),
            "{e}"
        );
        let e = error_answer("GET x", StatusCode::BAD_REQUEST, b"<html>", None);
        assert!(matches!(e, CliError::Failed(_)), "{e}");
        let json = br#"{"error":{"kind":"unauthenticated","message":"no token"}}"#;
        let e = error_answer("GET x", StatusCode::UNAUTHORIZED, json, None);
        assert!(e.to_string().starts_with("not authorised: no token"), "{e}");
    }
}
