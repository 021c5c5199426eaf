//! TLS on muxd's listeners, with a certificate authority made here (rcgen): REST and
//! gRPC over TLS, client certificates under mTLS (refused without one, identifying the
//! operator or a tenant with one), certificate rotation on reload, and plain TCP only
//! on loopback.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mux_tests::pki::Ca;
use muxd::ServerConfig;
use muxd::grpc::pb;
use muxd::grpc::pb::store_client::StoreClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn config_text(dir: &Path, tls: &str) -> String {
    let text = common::embedded_config(dir).replace(
        "[auth]\nmode = \"off\"",
        &format!(
            "[auth]\nmode = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\naudience = \"muxd\""
        ),
    );
    format!("{text}\n{tls}\n")
}

fn mtls_section(dir: &Path, client_auth: &str) -> String {
    format!(
        r#"[tls]
cert = "{dir}/server.pem"
key = "{dir}/server.key"
client_ca = "{dir}/clients-ca.pem"
client_auth = "{client_auth}"

[tls.identities]
"ops-console" = {{ operator = true }}
"acme-billing" = {{ tenant = "acme", scopes = ["read", "write"] }}
"#,
        dir = dir.display()
    )
}

fn token(tenant: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"tenant": tenant, "scope": "read write", "aud": "muxd", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A REST client trusting `ca_pem`, presenting `identity` (certificate + key PEM).
fn rest_client(ca_pem: &str, identity: Option<&str>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(20));
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// The rustls client configuration of a client trusting `ca_pem`, with `identity`.
fn client_tls(ca_pem: &str, identity: Option<&str>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A gRPC client over TLS to `addr` (tonic is built without TLS: the connector does it).
async fn grpc_client(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<StoreClient<tonic::transport::Channel>, tonic::transport::Error> {
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .connect_with_connector(connector)
            .await?;
    Ok(StoreClient::new(channel))
}

/// The leaf certificate the server at `addr` presents to a new connection.
async fn served_certificate(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: &str,
    alpn: &[u8],
) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(client_tls(ca_pem, Some(identity), alpn))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_over_mtls_identify_callers_and_refuse_clients_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new(dir.path(), "server-ca");
    server_ca.sign("server", "muxd.test", true);
    let clients = Ca::new(dir.path(), "clients-ca");
    let acme = clients.sign("acme", "acme-billing", false);
    let ops = clients.sign("ops", "ops-console", false);
    let stranger = clients.sign("stranger", "stranger", false);
    let rogue = Ca::new(dir.path(), "rogue-ca").sign("rogue", "acme-billing", false);

    let text = config_text(dir.path(), &mtls_section(dir.path(), "required"));
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    let ca = &server_ca.pem;

    // A tenant's certificate acts as the tenant: write, then read back.
    let acme_rest = rest_client(ca, Some(&acme));
    let put = acme_rest
        .put(format!("{base}/v1/kv/app/limits"))
        .body("42")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let got = acme_rest
        .get(format!("{base}/v1/kv/app/limits"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "42");
    // ... and it is the tenant's own key (namespaced), as a JWT for acme would see it.
    let as_acme_token = rest_client(ca, Some(&stranger))
        .get(format!("{base}/v1/kv/app/limits"))
        .bearer_auth(token("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_acme_token.text().await.unwrap(), "42");

    // The operator's certificate reaches the admin API, and only that.
    let ops_rest = rest_client(ca, Some(&ops));
    let health = ops_rest
        .get(format!("{base}/v1/admin/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "{}", health.text().await.unwrap());
    let data = ops_rest
        .get(format!("{base}/v1/kv/app/limits"))
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 403);

    // A certificate the CA signed but [tls.identities] does not list identifies nobody.
    let unknown = rest_client(ca, Some(&stranger))
        .get(format!("{base}/v1/kv/app/limits"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    let body = unknown.text().await.unwrap();
    assert!(
        body.contains("\\\"stranger\\\"") || body.contains("\"stranger\""),
        "{body}"
    );

    // No certificate, or one from another CA, or plain HTTP: no connection at all.
    for (what, client) in [
        ("no certificate", rest_client(ca, None)),
        ("another CA's certificate", rest_client(ca, Some(&rogue))),
    ] {
        let refused = client
            .get(format!("{base}/v1/kv/app/limits"))
            .bearer_auth(token("acme"))
            .send()
            .await;
        assert!(refused.is_err(), "{what}: {refused:?}");
    }
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", server.addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // gRPC: the same certificates, the same answers.
    let mut grpc = grpc_client(server.grpc_addr, client_tls(ca, Some(&acme), b"h2"))
        .await
        .unwrap();
    let reply = grpc
        .get(pb::GetRequest {
            key: "app/limits".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.found, reply.value.as_slice()), (true, &b"42"[..]));
    let without = match grpc_client(server.grpc_addr, client_tls(ca, None, b"h2")).await {
        Err(e) => Err(e.to_string()),
        Ok(mut c) => c
            .get(pb::GetRequest {
                key: "app/limits".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|s| s.to_string()),
    };
    assert!(
        without.is_err(),
        "a gRPC client without a certificate was served"
    );

    // Rotation: new files, a reload, and new connections get the new certificate while
    // the open gRPC connection keeps working.
    let before = served_certificate(server.addr, ca, &acme, b"http/1.1").await;
    server_ca.sign("server", "muxd.test", true);
    state
        .reload(ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap();
    let after = served_certificate(server.addr, ca, &acme, b"http/1.1").await;
    assert_ne!(before, after, "the reload did not rotate the certificate");
    let on_disk = CertificateDer::pem_file_iter(dir.path().join("server.pem"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(after, on_disk.to_vec());
    assert_eq!(
        served_certificate(server.grpc_addr, ca, &acme, b"h2").await,
        after,
        "gRPC serves the rotated certificate too"
    );
    grpc.get(pb::GetRequest {
        key: "app/limits".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // A broken key file is refused on reload, naming the file; the old one keeps serving.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    let refused = state
        .reload(ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("server.key"), "{refused}");
    assert_eq!(
        served_certificate(server.addr, ca, &acme, b"http/1.1").await,
        after
    );

    let mux = state.mux();
    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_still_accept_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new(dir.path(), "server-ca");
    server_ca.sign("server", "muxd.test", true);
    let clients = Ca::new(dir.path(), "clients-ca");
    let acme = clients.sign("acme", "acme-billing", false);
    let text = config_text(dir.path(), &mtls_section(dir.path(), "optional"));
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let base = format!("https://localhost:{}", server.addr.port());

    let put = rest_client(&server_ca.pem, None)
        .put(format!("{base}/v1/kv/app/flag"))
        .bearer_auth(token("acme"))
        .body("on")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let anonymous = rest_client(&server_ca.pem, None)
        .get(format!("{base}/v1/kv/app/flag"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let by_cert = rest_client(&server_ca.pem, Some(&acme))
        .get(format!("{base}/v1/kv/app/flag"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cert.text().await.unwrap(), "on");
    let mux = state.mux();
    server.shutdown(&mux).await;
}

#[test]
fn plain_tcp_is_allowed_only_on_loopback_unless_the_config_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let exposed = config_text(dir.path(), "").replace("127.0.0.1:0", "0.0.0.0:0");
    let e = ServerConfig::from_toml(&exposed).unwrap_err().to_string();
    assert!(
        e.contains("listen = \"0.0.0.0:0\"")
            && e.contains("grpc_listen")
            && e.contains("[tls]")
            && e.contains("allow_plaintext"),
        "{e}"
    );
    ServerConfig::from_toml(&format!("allow_plaintext = true\n{exposed}")).unwrap();
    // Identities without a client CA could never match: refused, saying why.
    let bad = config_text(
        dir.path(),
        "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[tls.identities]\n\"x\" = { tenant = \"acme\", scopes = [\"read\"] }\n\"y\" = { operator = true, tenant = \"acme\" }",
    );
    let e = ServerConfig::from_toml(&bad).unwrap_err().to_string();
    assert!(
        e.contains("needs [tls] client_ca") && e.contains("\"y\""),
        "{e}"
    );
}
