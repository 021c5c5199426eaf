//! TLS on muxd's listeners (`[tls]`): rustls with the certificate read from files on
//! every start and reload, optional client certificates (mTLS) verified against a CA
//! file, and client certificates that identify the operator or a tenant.
//!
//! ```toml
//! [tls]
//! cert = "/etc/muxd/tls/server.pem"      # the chain, leaf first
//! key = "/etc/muxd/tls/server.key"       # PKCS#8, PKCS#1 or SEC1 PEM
//! client_ca = "/etc/muxd/tls/clients.pem" # optional: ask for client certificates
//! client_auth = "required"               # or "optional" (a token still works without one)
//!
//! # A verified client certificate whose subject Common Name is listed here acts as
//! # that principal when the request carries no bearer token.
//! [tls.identities]
//! "ops-console" = { operator = true }
//! "acme-billing" = { tenant = "acme", scopes = ["read", "write"] }
//! ```
//!
//! Handshakes run in their own tasks (a slow or silent client holds up nobody) and are
//! bounded by [`HANDSHAKE_TIMEOUT`]; each new connection uses the configuration in
//! force when it arrives, so a reload rotates the certificate for new connections while
//! open ones keep theirs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mux::{Error, Result, Tenant};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::auth::{Identity, Principal, Scope};

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a client certificate is required when `client_ca` is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A connection without a certificate the CA signed is refused in the handshake.
    #[default]
    Required,
    /// A certificate is asked for and verified if sent; without one, a bearer token.
    Optional,
}

/// What a client certificate's Common Name stands for (`[tls.identities]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertIdentity {
    /// The certificate's holder is the operator (every tenant, the admin API).
    #[serde(default)]
    pub operator: bool,
    /// The tenant the holder acts for.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The tenant's granted scopes: `read`, `write`, `admin`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The `[tls]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that sign client certificates; set to ask for them (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// `required` (default) or `optional`; only with `client_ca`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Client certificate Common Name → who its holder is.
    #[serde(default)]
    pub identities: BTreeMap<String, CertIdentity>,
}

impl TlsConfig {
    /// Checks the identities table: each names the operator or a valid tenant, not both.
    pub fn check(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.client_ca.is_none() && !self.identities.is_empty() {
            problems.push(
                "[tls.identities] needs [tls] client_ca: without it no client certificate is asked for"
                    .to_owned(),
            );
        }
        for (name, id) in &self.identities {
            if let Err(e) = principal_of(id) {
                problems.push(format!("[tls.identities] \"{name}\": {}", e.message()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_input(problems.join("; ")))
        }
    }

    /// The principal a verified client certificate with Common Name `name` stands for.
    pub fn principal(&self, name: &str) -> Option<Principal> {
        self.identities
            .get(name)
            .and_then(|id| principal_of(id).ok())
            .map(|p| match p {
                Principal::Operator { .. } => Principal::Operator {
                    subject: Some(format!("cert:{name}")),
                },
                other => other,
            })
    }
}

fn principal_of(id: &CertIdentity) -> Result<Principal> {
    match (&id.tenant, id.operator) {
        (Some(_), true) => Err(Error::invalid_input(
            "an identity is either the operator or a tenant, not both",
        )),
        (None, true) => Ok(Principal::Operator { subject: None }),
        (None, false) => Err(Error::invalid_input(
            "give tenant = \"…\" (with scopes) or operator = true",
        )),
        (Some(tenant), false) => {
            let tenant = Tenant::new(tenant)?;
            let mut scopes = std::collections::BTreeSet::new();
            for s in &id.scopes {
                scopes.insert(Scope::from_name(s).ok_or_else(|| {
                    Error::invalid_input(format!("unknown scope \"{s}\": use read, write or admin"))
                })?);
            }
            Ok(Principal::Tenant(Identity { tenant, scopes }))
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::invalid_input(format!("[tls] {what}: cannot read {}: {e}", path.display()))
    })
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::invalid_input(format!("[tls] {what}: {} is not PEM: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(Error::invalid_input(format!(
            "[tls] {what}: {} holds no CERTIFICATE block",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the files `config` names and builds the rustls configuration; every problem
/// names the file and what is wrong with it. `alpn` is offered in this order.
pub fn server_config(config: &TlsConfig, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
    let chain = certs(&config.cert, "cert")?;
    let pem = read(&config.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        Error::invalid_input(format!(
            "[tls] key: {} holds no usable PRIVATE KEY block: {e}",
            config.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid_input(format!("[tls]: {e}")))?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca, "client_ca")? {
                roots.add(cert).map_err(|e| {
                    Error::invalid_input(format!("[tls] client_ca: {}: {e}", ca.display()))
                })?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = match config.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            }
            .build()
            .map_err(|e| Error::invalid_input(format!("[tls] client_ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        Error::invalid_input(format!(
            "[tls] cert and key do not make a usable pair ({} / {}): {e}",
            config.cert.display(),
            config.key.display()
        ))
    })?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(server))
}

/// The client certificate's subject Common Name, if it has one.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN)
        .and_then(|atv| {
            use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
}

/// Who is at the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The verified client certificate's Common Name (mTLS), if one was presented.
    pub cert_name: Option<String>,
}

/// One accepted TLS connection.
pub struct Conn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("peer", &self.peer).finish()
    }
}

impl Conn {
    /// Who is at the other end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// The configuration a new connection is served with (read per connection: reloads
/// rotate certificates).
pub type Current = Arc<dyn Fn() -> Option<Arc<rustls::ServerConfig>> + Send + Sync>;

/// A TCP listener whose connections are TLS: accepts, runs each handshake in a task of
/// its own, and hands on the finished ones.
pub struct TlsListener {
    addr: SocketAddr,
    rx: tokio::sync::mpsc::Receiver<Conn>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsListener {
    /// Starts accepting on `listener`; `what` names the API in logs.
    pub fn new(listener: TcpListener, current: Current, what: &'static str) -> Result<Self> {
        let addr = listener.local_addr().map_err(Error::from)?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and the like: wait instead of spinning.
                        tracing::warn!(error = %e, what, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(config) = current() else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let cert_name = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(common_name);
                            let peer = Peer { addr, cert_name };
                            let _ = tx.send(Conn { stream, peer }).await;
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("muxd_tls_handshake_failures_total", "api" => what)
                                .increment(1);
                            tracing::debug!(%addr, error = %e, what, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!("muxd_tls_handshake_failures_total", "api" => what)
                                .increment(1);
                            tracing::debug!(%addr, what, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(TlsListener { addr, rx, task })
    }

    /// The connections, for tonic.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = std::result::Result<Conn, std::io::Error>> + Send + 'static
    {
        futures_util::stream::unfold(self, |mut l| async move {
            let conn = l.rx.recv().await?;
            Some((Ok(conn), l))
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Conn;
    type Addr = Peer;

    async fn accept(&mut self) -> (Conn, Peer) {
        match self.rx.recv().await {
            Some(conn) => {
                let peer = conn.peer.clone();
                (conn, peer)
            }
            // The accept task ended only if it was aborted: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.addr,
            cert_name: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        stream.remote_addr().clone()
    }
}

/// Whether `listen` is a loopback address (plain TCP is allowed there).
pub fn is_loopback(listen: &str) -> bool {
    listen
        .parse::<SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(listen.starts_with("localhost:"))
}
