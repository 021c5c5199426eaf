//! The `mux` CLI against a running server: put, get, ls, rm, bulk put from a directory.

mod common;

use std::process::Command;

use muxd::ServerConfig;

async fn mux_cli(url: String, args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_mux"))
            .arg("--url")
            .arg(url)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_put_get_ls_rm_and_bulk_put() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::from_toml(&common::embedded_config(dir.path())).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let url = format!("http://{}", server.addr);

    let (ok, out, err) = mux_cli(
        url.clone(),
        args(&["put", "tenantconfig/acme/limits", "max=10"]),
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("tenantconfig/acme/limits = version"), "{out}");
    let (ok, out, _) = mux_cli(url.clone(), args(&["get", "tenantconfig/acme/limits"])).await;
    assert!(ok);
    assert_eq!(out, "max=10");
    let (ok, out, _) = mux_cli(url.clone(), args(&["put", "odd keys/with space?#%", "v"])).await;
    assert!(ok, "{out}");
    let (ok, out, _) = mux_cli(url.clone(), args(&["get", "odd keys/with space?#%"])).await;
    assert!(ok);
    assert_eq!(out, "v");

    let files = dir.path().join("bulk");
    std::fs::create_dir_all(files.join("eu")).unwrap();
    std::fs::write(files.join("eu/timeout_ms"), "1500").unwrap();
    std::fs::write(files.join("eu/retries"), "3").unwrap();
    std::fs::write(files.join("global"), "on").unwrap();
    let (ok, _, err) = mux_cli(
        url.clone(),
        args(&[
            "put",
            "--dir",
            files.to_str().unwrap(),
            "--prefix",
            "paramconfig",
        ]),
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = mux_cli(url.clone(), args(&["ls", "paramconfig"])).await;
    assert!(ok, "{err}");
    let keys: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "paramconfig/eu/retries",
            "paramconfig/eu/timeout_ms",
            "paramconfig/global"
        ]
    );
    assert!(err.contains("3 keys"), "{err}");

    let (ok, _, _) = mux_cli(url.clone(), args(&["rm", "tenantconfig/acme/limits"])).await;
    assert!(ok);
    let (ok, _, err) = mux_cli(url.clone(), args(&["get", "tenantconfig/acme/limits"])).await;
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    let (ok, _, err) = mux_cli(url.clone(), args(&["put", "a//b", "x"])).await;
    assert!(!ok);
    assert!(err.contains("segment 2 is empty"), "{err}");
    let (ok, out, _) = mux_cli(url, args(&["health"])).await;
    assert!(ok && out.contains("\"circuit\""), "{out}");
    server.shutdown(&state.mux()).await;
}
