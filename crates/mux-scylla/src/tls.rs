//! TLS to the cluster: the OpenSSL context the driver opens every connection with.

use std::path::Path;

use mux_core::{Error, Result};
use openssl::ssl::{SslContext, SslMethod, SslVerifyMode, SslVersion};

use crate::config::TlsMode;

/// The driver's TLS context for `mode` (`None` when TLS is off). Verification is always
/// on: a node whose certificate chain does not lead to `ca_file` (or, without one, to
/// the system's trusted certificates) is refused during the handshake.
pub(crate) fn context(mode: &TlsMode) -> Result<Option<SslContext>> {
    let TlsMode::Require { ca_file } = mode else {
        return Ok(None);
    };
    let failed = |what: &str, e: openssl::error::ErrorStack| {
        Error::invalid_input(format!("TLS to the cluster: {what}: {e}"))
    };
    let mut builder = SslContext::builder(SslMethod::tls_client())
        .map_err(|e| failed("cannot set up OpenSSL", e))?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| failed("cannot require TLS 1.2", e))?;
    builder.set_verify(SslVerifyMode::PEER);
    match ca_file {
        Some(path) => load_ca(&mut builder, path)?,
        None => builder
            .set_default_verify_paths()
            .map_err(|e| failed("cannot load the system's trusted certificates", e))?,
    }
    Ok(Some(builder.build()))
}

fn load_ca(builder: &mut openssl::ssl::SslContextBuilder, path: &Path) -> Result<()> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::invalid_input(format!(
            "TLS to the cluster: cannot read ca_file {}: {e}",
            path.display()
        ))
    })?;
    let certs = openssl::x509::X509::stack_from_pem(&pem).unwrap_or_default();
    if certs.is_empty() {
        return Err(Error::invalid_input(format!(
            "TLS to the cluster: ca_file {} holds no PEM certificate",
            path.display()
        )));
    }
    let store = builder.cert_store_mut();
    for cert in certs {
        store.add_cert(cert).map_err(|e| {
            Error::invalid_input(format!(
                "TLS to the cluster: cannot trust a certificate of {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_a_bad_ca_file_is_named() {
        assert!(context(&TlsMode::Disable).unwrap().is_none());
        let dir = std::env::temp_dir().join(format!("mux-scylla-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = context(&TlsMode::Require {
            ca_file: Some(missing.clone()),
        })
        .unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = context(&TlsMode::Require {
            ca_file: Some(junk.clone()),
        })
        .unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        assert!(
            context(&TlsMode::Require { ca_file: None })
                .unwrap()
                .is_some()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
