//! `muxd`: serves a multiplexed store over REST.
//!
//! ```text
//! muxd                      # examples/embedded.toml: fs + redb under ./data
//! muxd --config muxd.toml
//! muxd --config muxd.toml token --tenant acme --scope read --scope write
//! ```
/// mimalloc: glibc's malloc spent ~30% of a REST write's CPU in arena locks when
/// buffers allocated on one worker thread are freed on another (perf, issue 17's
/// `cargo xtask bench security`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use muxd::ServerConfig;
use muxd::telemetry::LogFormat;

/// The mux storage proxy.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The TOML configuration (default: the embedded config, fs + redb under ./data).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log lines as `text` or `json` (default: `[telemetry] log_format`, else text).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Prints a token the configuration's HS256 [auth] (or [auth.operator]) accepts,
    /// for development and scripts, then exits.
    Token {
        /// The tenant (a tenant token).
        #[arg(long, required_unless_present = "operator")]
        tenant: Option<String>,
        /// A scope: read, write or admin (repeat for several; default read and write).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Sign an operator token with [auth.operator].
        #[arg(long, conflicts_with_all = ["tenant", "scopes"])]
        operator: bool,
        /// Seconds until the token expires.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// The `sub` claim.
        #[arg(long)]
        subject: Option<String>,
    },
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
    if let Some(Command::Token {
        tenant,
        scopes,
        operator,
        ttl_secs,
        subject,
    }) = args.command
    {
        let request = muxd::token::TokenRequest {
            tenant,
            scopes: if scopes.is_empty() && !operator {
                vec!["read".into(), "write".into()]
            } else {
                scopes
            },
            ttl: std::time::Duration::from_secs(ttl_secs),
            operator,
            subject,
        };
        let minted = ServerConfig::from_toml(&text)
            .and_then(|config| muxd::token::mint(&config.auth, &request));
        return match minted {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("muxd token: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match ServerConfig::from_toml(&text) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("muxd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // From here on every message is a log line (text or JSON, on stdout).
    let telemetry = match muxd::telemetry::init(&config.telemetry, args.log_format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("muxd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = args
        .config
        .as_deref()
        .map_or("the embedded default".to_owned(), |p| {
            p.display().to_string()
        });
    tracing::info!(config = %source, effective = %config.redacted(), "muxd starting");
    let result = async {
        let state = muxd::build(&config).await?;
        // serve logs `muxd listening on http://A (gRPC http://B)`.
        let server = muxd::serve(&config, state.clone()).await?;
        run_until_shutdown(&state, args.config.as_deref()).await;
        tracing::info!("muxd shutting down (draining requests and background writes)");
        server.shutdown(&state.mux()).await;
        Ok::<_, mux::Error>(())
    }
    .await;
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "muxd stopped");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
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
                    tracing::warn!("SIGHUP ignored: running on the embedded default config (use --config FILE)");
                    continue;
                };
                let by = format!("SIGHUP (re-reading {})", path.display());
                let parsed = std::fs::read_to_string(path)
                    .map_err(|e| mux::Error::from(e).context(format!("cannot read {}", path.display())))
                    .and_then(|text| ServerConfig::from_toml(&text));
                match parsed {
                    // reload_by logs the outcome, who asked and what changed.
                    Ok(config) => { let _ = state.reload_by(config, &by).await; }
                    Err(e) => tracing::warn!(by, error = %e, "reload refused; the old configuration keeps serving"),
                }
            }
        }
    }
}
