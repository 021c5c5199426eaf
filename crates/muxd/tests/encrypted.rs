//! `examples/secure.toml` as written (paths and ports substituted): values under
//! `secrets/` go through muxd's REST API and come back as written, while the files the
//! fs store keeps (its own "client": the file system) hold no plaintext; a bad key set
//! or a route naming an unknown one is refused, naming the problem.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use common::request;
use muxd::ServerConfig;

const EXAMPLE: &str = include_str!("../examples/secure.toml");

fn keyring(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    let path = dir.join("keyring.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "current = \"k1\"\n[keys]\nk1 = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\""
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn config(dir: &std::path::Path) -> String {
    EXAMPLE
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:50051", "127.0.0.1:0")
        .replace(
            "data/keyring.toml",
            &dir.join("keyring.toml").display().to_string(),
        )
        .replace("data/fs", &dir.join("fs").display().to_string())
        .replace("data/mux.redb", &dir.join("mux.redb").display().to_string())
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> (usize, bool) {
    let mut files = 0;
    let mut found = false;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                found |= bytes.windows(needle.len()).any(|w| w == needle);
            }
        }
    }
    (files, found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_read_back_through_rest() {
    let dir = tempfile::tempdir().unwrap();
    keyring(dir.path(), 0o600);
    let config = ServerConfig::from_toml(&config(dir.path())).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state).await.unwrap();
    let a = server.addr;
    let secret = b"PLAINTEXT-muxd-secret-value";
    let plain = b"PLAINTEXT-muxd-public-value";
    assert_eq!(
        request(a, "PUT", "/v1/kv/secrets/db", &[], secret)
            .await
            .status,
        200
    );
    assert_eq!(
        request(a, "PUT", "/v1/kv/public/motd", &[], plain)
            .await
            .status,
        200
    );
    let got = request(a, "GET", "/v1/kv/secrets/db", &[], b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, secret);
    // The fs store's files: the public value is there as written, the secret is not.
    let (files, found_secret) = files_contain(&dir.path().join("fs"), secret);
    assert!(files >= 2, "the fs store wrote {files} files");
    assert!(!found_secret, "the fs store holds the secret in plaintext");
    assert!(
        files_contain(&dir.path().join("fs"), plain).1,
        "the plain route is stored plain"
    );
    assert!(
        !files_contain(dir.path(), secret).1,
        "some file under the data dir holds the secret"
    );
}

#[tokio::test]
async fn bad_key_sets_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    keyring(dir.path(), 0o644);
    let open = ServerConfig::from_toml(&config(dir.path())).unwrap();
    let e = muxd::build(&open)
        .await
        .expect_err("a world-readable keyring is refused");
    assert!(e.to_string().contains("chmod 600"), "{e}");

    keyring(dir.path(), 0o600);
    let unknown = config(dir.path()).replace("encrypt = \"secrets\"", "encrypt = \"nope\"");
    let unknown = ServerConfig::from_toml(&unknown).unwrap();
    let e = muxd::build(&unknown)
        .await
        .expect_err("an unknown key set is refused");
    assert!(
        e.to_string()
            .contains("encrypted with \"nope\", which is not defined (known: \"secrets\")"),
        "{e}"
    );
    let bad_kind = config_text_with_kind(dir.path());
    let bad_kind = ServerConfig::from_toml(&bad_kind).unwrap();
    let e = muxd::build(&bad_kind)
        .await
        .expect_err("an unknown kind is refused");
    assert!(e.to_string().contains("unknown kind \"vault\""), "{e}");
}

fn config_text_with_kind(dir: &std::path::Path) -> String {
    config(dir).replace("kind = \"keyring\"", "kind = \"vault\"")
}
