//! `mux` against a muxd serving TLS with client certificates (a CA made in the test):
//! `--ca-file`, `--client-cert` and `--client-key` reach it (REST and `watch`); without them the connection is refused.

mod common;

use common::{Muxd, mux};
use mux_tests::pki::Ca;
use tokio::io::AsyncBufReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_an_mtls_muxd_with_its_ca_and_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "ca");
    ca.sign("server", "muxd.test", true);
    ca.sign("acme", "acme-billing", false);
    let dir = pki.path().display().to_string();
    let server = Muxd::start_with(|text| {
        format!(
            "{text}\n[tls]\ncert = \"{dir}/server.pem\"\nkey = \"{dir}/server.key\"\nclient_ca = \"{dir}/ca.pem\"\n[tls.identities]\n\"acme-billing\" = {{ tenant = \"acme\", scopes = [\"read\", \"write\"] }}\n"
        )
    })
    .await;
    let url = server.url.replace("http://127.0.0.1", "https://localhost");
    let ca_file = format!("{dir}/ca.pem");
    let (cert, key) = (format!("{dir}/acme.pem"), format!("{dir}/acme.key"));
    let tls = [
        "--ca-file",
        &ca_file,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
    ];

    let put = mux(&[&["--url", &url][..], &tls, &["put", "app/mode", "blue"]].concat()).await;
    assert_eq!(put.code, Some(0), "{put:?}");
    let get = mux(&[&["--url", &url][..], &tls, &["get", "app/mode"]].concat()).await;
    assert_eq!((get.code, get.out.as_str()), (Some(0), "blue"), "{get:?}");

    // Without a client certificate the server ends the handshake; without the CA the
    // client refuses the server's certificate. Either way nothing is read.
    for (args, hint) in [
        (
            vec!["--url", &url, "--ca-file", &ca_file, "get", "app/mode"],
            "give --client-cert and --client-key",
        ),
        (
            vec![
                "--url",
                &url,
                "--client-cert",
                &cert,
                "--client-key",
                &key,
                "get",
                "app/mode",
            ],
            "give its CA with --ca-file",
        ),
    ] {
        let r = mux(&args).await;
        assert_ne!(r.code, Some(0), "{args:?}: {r:?}");
        assert!(
            r.out.is_empty() && r.err.contains("cannot connect") && r.err.contains(hint),
            "{args:?}: {r:?}"
        );
    }
    // watch over gRPC with TLS: a change made above streams back.
    let grpc = server.grpc.replace("http://127.0.0.1", "https://localhost");
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_mux"))
        .args([&["--grpc", &grpc][..], &tls, &["watch", "app/"]].concat())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = None;
    while seen.is_none() && tokio::time::Instant::now() < deadline {
        // Writes until the watcher (which connects in the background) sees one.
        let put = mux(&[&["--url", &url][..], &tls, &["put", "app/watched", "x"]].concat()).await;
        assert_eq!(put.code, Some(0), "{put:?}");
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(std::time::Duration::from_millis(500), lines.next_line()).await
        {
            seen = Some(line);
        }
    }
    let seen = seen.expect("mux watch over TLS printed no event in 20 s");
    assert!(seen.starts_with("put\tapp/watched\t"), "{seen}");
    watch.kill().await.unwrap();

    // A --client-cert without its --client-key is a usage error.
    let r = mux(&["--url", &url, "--client-cert", &cert, "get", "app/mode"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    server.stop().await;
}
