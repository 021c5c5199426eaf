//! Throwaway certificate authorities for TLS tests (rcgen), and a TLS front: a
//! listener that ends TLS with such a certificate and forwards the bytes to a plain
//! TCP server (moto, Azurite, InfluxDB), so a store's TLS client is tested against the
//! real server behind it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority that writes what it signs under a directory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM); also written to `<dir>/<name>.pem`.
    pub pem: String,
    /// Where `<dir>/<name>.pem` is.
    pub path: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("path", &self.path).finish()
    }
}

impl Ca {
    /// A new CA called `name`, its certificate written to `<dir>/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a self-signed CA");
        let pem = cert.pem();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &pem).expect("write the CA certificate");
        Ca {
            issuer: Issuer::new(params, key),
            pem,
            path,
            dir: dir.to_owned(),
        }
    }

    /// Signs a certificate with subject Common Name `cn` and writes `<file>.pem` and
    /// `<file>.key`; a server certificate is for `localhost` and `127.0.0.1`, a client
    /// one for client authentication. Returns certificate and key PEM, joined.
    pub fn sign(&self, file: &str, cn: &str, server: bool) -> String {
        let names = if server {
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        std::fs::write(self.dir.join(format!("{file}.pem")), cert.pem()).expect("write cert");
        std::fs::write(self.dir.join(format!("{file}.key")), key.serialize_pem())
            .expect("write key");
        format!("{}{}", cert.pem(), key.serialize_pem())
    }
}

/// A TLS listener on 127.0.0.1 forwarding to a plain TCP server; stops when dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// Serves `identity` (certificate and key PEM, as [`Ca::sign`] returns) and forwards
    /// each connection to `upstream` (`host:port`).
    pub async fn start(identity: &str, upstream: &str) -> std::io::Result<TlsFront> {
        let chain = CertificateDer::pem_slice_iter(identity.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        let key =
            PrivateKeyDer::from_pem_slice(identity.as_bytes()).map_err(std::io::Error::other)?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    );
                    let Ok(Ok(mut tls)) = handshake.await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsFront { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
