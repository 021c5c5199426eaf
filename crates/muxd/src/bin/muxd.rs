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
        let server = muxd::serve(&config, state.clone()).await?;
        println!("muxd listening on http://{}", server.addr);
        run_until_shutdown(&state, args.config.as_deref()).await;
        println!("muxd: shutting down (draining requests and background writes)");
        server.shutdown(&state.mux()).await;
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

/// Serves until SIGTERM or SIGINT; on SIGHUP re-reads the config file and swaps it in
/// (an invalid one is reported and the old one keeps serving).
async fn run_until_shutdown(state: &muxd::AppState, config_path: Option<&std::path::Path>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("install the SIGHUP handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                let Some(path) = config_path else {
                    eprintln!("muxd: SIGHUP ignored: running on the embedded default config (use --config FILE)");
                    continue;
                };
                let result = match std::fs::read_to_string(path) {
                    Ok(text) => match ServerConfig::from_toml(&text) {
                        Ok(config) => state.reload(config).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(mux::Error::from(e).context(format!("cannot read {}", path.display()))),
                };
                match result {
                    Ok(()) => println!("muxd: configuration reloaded from {}", path.display()),
                    Err(e) => eprintln!("muxd: reload refused, the old configuration keeps serving: {e}"),
                }
            }
        }
    }
}
