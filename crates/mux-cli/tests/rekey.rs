//! `mux rekey` against a real muxd whose route is encrypted with a keyring: after the
//! keyring's current key changes and muxd reloads, `--dry-run --retire` refuses to
//! clear the old key while records use it, `mux rekey` re-seals them, and then the
//! old key is clear to retire and can leave the keyring with every value readable.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use common::mux;
use mux::{Backend, Key};

const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn write_keyring(dir: &std::path::Path, current: &str, keys: &[(&str, &str)]) {
    let path = dir.join("keyring.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "current = \"{current}\"\n[keys]").unwrap();
    for (id, key) in keys {
        writeln!(f, "{id} = \"{key}\"").unwrap();
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"

[auth]
mode = "off"

[[keys]]
name = "secrets"
kind = "keyring"
path = "{}"

[[backends]]
name = "a"
kind = "memory"

[[backends]]
name = "b"
kind = "memory"

[mux]
node_id = 1

[[mux.routes]]
prefix = "secrets/"
backends = [{{ backend = "a", role = "primary" }}, {{ backend = "b", role = "replica" }}]
write = "all"
encrypt = "secrets"

[mux.default]
backends = [{{ backend = "a", role = "primary" }}]
"#,
        dir.join("keyring.toml").display()
    )
}

fn key_id(value: &[u8]) -> Option<String> {
    mux::encrypt::Envelope::key_id_of(value).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_then_retire_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    write_keyring(dir.path(), "k1", &[("k1", K1)]);
    let text = config(dir.path());
    let config = muxd::ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let url = format!("http://{}", server.addr);
    for i in 0..25 {
        state
            .mux()
            .put(
                Key::new(format!("secrets/s{i:02}")).unwrap(),
                format!("value {i}"),
            )
            .await
            .unwrap();
    }

    // Rotate: k2 becomes current; muxd reloads and reads the keyring again.
    write_keyring(dir.path(), "k2", &[("k1", K1), ("k2", K2)]);
    state
        .reload(muxd::ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap();

    let r = mux(&[
        "--url",
        &url,
        "rekey",
        "--prefix",
        "secrets",
        "--dry-run",
        "--retire",
        "k1",
    ])
    .await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.err
            .contains("key k1 cannot be retired: 25 records under secrets still use it"),
        "{r:?}"
    );
    assert!(
        r.out.contains("(dry run): 25 records scanned, 0 re-sealed"),
        "{r:?}"
    );

    let r = mux(&[
        "--url",
        &url,
        "rekey",
        "--prefix",
        "secrets",
        "--checkpoint",
    ])
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.out.contains("25 records scanned, 25 re-sealed"), "{r:?}");
    assert!(r.out.contains("by key: k1=25"), "{r:?}");
    let a = state.mux().backend("b").unwrap().clone();
    for i in 0..25 {
        let stored = a
            .get(&Key::new(format!("secrets/s{i:02}")).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            key_id(stored.value()).as_deref(),
            Some("k2"),
            "every replica re-sealed"
        );
    }

    let r = mux(&[
        "--url",
        &url,
        "rekey",
        "--prefix",
        "secrets",
        "--dry-run",
        "--retire",
        "k1",
    ])
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.out.contains("key k1: no record under secrets uses it"),
        "{r:?}"
    );

    // k1 leaves the keyring; every value still reads.
    write_keyring(dir.path(), "k2", &[("k2", K2)]);
    state
        .reload(muxd::ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap();
    for i in 0..25 {
        let got = state
            .mux()
            .get(&Key::new(format!("secrets/s{i:02}")).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.value(), format!("value {i}").as_bytes());
    }
    server.shutdown(&state.mux()).await;
}
