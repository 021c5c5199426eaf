//! `muxd`: serves a multiplexed store over REST.
//!
//! ```text
//! muxd                      # examples/embedded.toml: fs + redb under ./data
//! muxd --config muxd.toml
//! ```
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use muxd::ServerConfig;

/// The mux storage proxy.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The TOML configuration (default: the embedded config, fs + redb under ./data).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let text = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("muxd: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => muxd::config::EMBEDDED.to_owned(),
    };
    let result = async {
        let config = ServerConfig::from_toml(&text)?;
        let state = muxd::build(&config).await?;
        let mux = state.mux.clone();
        let server = muxd::serve(&config, state).await?;
        println!("muxd listening on http://{}", server.addr);
        shutdown_signal().await;
        println!("muxd: shutting down (draining requests and background writes)");
        server.shutdown(&mux).await;
        Ok::<_, mux::Error>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("muxd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
