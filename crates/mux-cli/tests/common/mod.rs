//! Shared helpers: a real muxd on ephemeral ports, and the `mux` binary.
#![allow(dead_code)]

use std::process::Command;

/// What one run of `mux` did.
#[derive(Debug)]
pub struct Run {
    /// The exit status (`None`: killed by a signal, e.g. a panic's abort).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub out: String,
    /// What it printed on stderr.
    pub err: String,
}

/// Runs `mux` with `args` (stdin, stdout and stderr are not terminals).
pub async fn mux(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_mux"))
            .env_remove("MUX_URL")
            .env_remove("MUX_GRPC")
            .env_remove("MUX_TOKEN")
            .args(args)
            .output()
            .expect("the mux binary runs");
        Run {
            code: out.status.code(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("the mux run finishes")
}

/// A muxd serving the embedded config (fs + redb under a temporary directory).
pub struct Muxd {
    /// `http://127.0.0.1:<port>`: the REST endpoint.
    pub url: String,
    /// `http://127.0.0.1:<port>`: the gRPC endpoint.
    pub grpc: String,
    server: muxd::Server,
    state: muxd::AppState,
    _dir: tempfile::TempDir,
}

impl Muxd {
    /// Starts one.
    pub async fn start() -> Muxd {
        Muxd::start_with(|text| text).await
    }

    /// Starts one on the embedded config as `edit` changes it.
    pub async fn start_with(edit: impl FnOnce(String) -> String) -> Muxd {
        let dir = tempfile::tempdir().unwrap();
        let text = muxd::config::EMBEDDED
            .replace("127.0.0.1:8080", "127.0.0.1:0")
            .replace("127.0.0.1:50051", "127.0.0.1:0")
            .replace("data/fs", &dir.path().join("fs").display().to_string())
            .replace(
                "data/mux.redb",
                &dir.path().join("mux.redb").display().to_string(),
            );
        let config = muxd::ServerConfig::from_toml(&edit(text)).unwrap();
        let state = muxd::build(&config).await.unwrap();
        let server = muxd::serve(&config, state.clone()).await.unwrap();
        Muxd {
            url: format!("http://{}", server.addr),
            grpc: format!("http://{}", server.grpc_addr),
            server,
            state,
            _dir: dir,
        }
    }

    /// Stops it.
    pub async fn stop(self) {
        self.server.shutdown(&self.state.mux()).await;
    }
}
