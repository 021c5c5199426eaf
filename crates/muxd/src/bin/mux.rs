//! `mux`: the command line for a muxd server.
//!
//! ```text
//! mux put tenantconfig/acme/limits 'max=10'      mux put --dir ./configs --prefix paramconfig
//! mux get tenantconfig/acme/limits               mux rm tenantconfig/acme/limits
//! mux ls tenantconfig                            mux watch tenantconfig
//! mux health
//! ```
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mux::{Error, ErrorKind, Result};
use muxd::client::{self, Reply};
use muxd::grpc::pb;

/// Talks to a muxd server.
#[derive(Parser, Debug)]
#[command(name = "mux", version, about)]
struct Cli {
    /// The REST endpoint.
    #[arg(
        long,
        env = "MUX_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// The gRPC endpoint (for `watch`).
    #[arg(
        long,
        env = "MUX_GRPC",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    grpc: String,
    /// A bearer token (JWT), when the server requires one.
    #[arg(long, env = "MUX_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a value (from the argument, `--file`, or every file of `--dir`).
    Put {
        /// The key (with --dir: ignored).
        key: Option<String>,
        /// The value.
        value: Option<String>,
        /// Read the value from a file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Write every file below this directory, keyed by its relative path.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// With --dir: a prefix for the keys.
        #[arg(long)]
        prefix: Option<String>,
        /// Content type of the value.
        #[arg(long)]
        content_type: Option<String>,
        /// Write consistency: all, quorum, one, primary, at_least:N.
        #[arg(long)]
        consistency: Option<String>,
    },
    /// Prints a value.
    Get {
        /// The key.
        key: String,
    },
    /// Deletes a key.
    Rm {
        /// The key.
        key: String,
    },
    /// Lists keys under a prefix (every page).
    Ls {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Prints changes under a prefix as they happen (gRPC Watch).
    Watch {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Prints the backends' health report.
    Health,
}

struct Api {
    authority: String,
    auth: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply> {
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(a) = &self.auth {
            headers.push(("authorization", a));
        }
        let reply = client::request(&self.authority, method, path, &headers, body).await?;
        if reply.status >= 400 {
            let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| reply.text());
            return Err(Error::new(
                ErrorKind::Internal,
                format!("{} {path}: HTTP {}: {message}", method, reply.status),
            ));
        }
        Ok(reply)
    }
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| Error::from(e).context(format!("cannot read {}", dir.display())))?
    {
        let path = entry.map_err(Error::from)?.path();
        if path.is_dir() {
            files_below(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let api = Api {
        authority: client::authority(&cli.url)?,
        auth: cli.token.as_ref().map(|t| format!("Bearer {t}")),
    };
    match cli.command {
        Command::Put {
            key,
            value,
            file,
            dir,
            prefix,
            content_type,
            consistency,
        } => {
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if let Some(ct) = &content_type {
                headers.push(("content-type", ct));
            }
            if let Some(c) = &consistency {
                headers.push(("x-mux-consistency", c));
            }
            if let Some(dir) = dir {
                let mut files = Vec::new();
                files_below(&dir, &mut files)?;
                files.sort();
                let bar = ProgressBar::new(files.len() as u64).with_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("template"),
                );
                for path in &files {
                    let rel = path
                        .strip_prefix(&dir)
                        .expect("below dir")
                        .to_string_lossy()
                        .replace('\\', "/");
                    let key = match &prefix {
                        Some(p) => format!("{}/{rel}", p.trim_end_matches('/')),
                        None => rel,
                    };
                    let bytes =
                        std::fs::read(path).map_err(|e| Error::from(e).context(path.display()))?;
                    api.call(
                        "PUT",
                        &format!("/v1/kv/{}", client::encode_path(&key)),
                        &headers,
                        &bytes,
                    )
                    .await?;
                    bar.set_message(key);
                    bar.inc(1);
                }
                bar.finish_with_message(format!("{} keys written", files.len()));
                return Ok(());
            }
            let key = key.ok_or_else(|| Error::invalid_input("put needs a KEY (or --dir)"))?;
            let bytes = match (value, file) {
                (Some(v), None) => v.into_bytes(),
                (None, Some(f)) => {
                    std::fs::read(&f).map_err(|e| Error::from(e).context(f.display()))?
                }
                _ => {
                    return Err(Error::invalid_input(
                        "put needs exactly one of VALUE or --file",
                    ));
                }
            };
            let reply = api
                .call(
                    "PUT",
                    &format!("/v1/kv/{}", client::encode_path(&key)),
                    &headers,
                    &bytes,
                )
                .await?;
            let json = reply.json();
            println!(
                "{key} = version {} on {}",
                json["version"].as_str().unwrap_or(""),
                json["applied_on"]
            );
        }
        Command::Get { key } => {
            let reply = api
                .call(
                    "GET",
                    &format!("/v1/kv/{}", client::encode_path(&key)),
                    &[],
                    b"",
                )
                .await?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&reply.body)
                .map_err(Error::from)?;
        }
        Command::Rm { key } => {
            let reply = api
                .call(
                    "DELETE",
                    &format!("/v1/kv/{}", client::encode_path(&key)),
                    &[],
                    b"",
                )
                .await?;
            println!(
                "{key} deleted at version {}",
                reply.json()["version"].as_str().unwrap_or("")
            );
        }
        Command::Ls { prefix } => {
            let spinner = ProgressBar::new_spinner();
            let mut cursor: Option<String> = None;
            let mut count = 0u64;
            loop {
                let mut path = format!("/v1/kv?limit=1000&prefix={}", client::encode_path(&prefix));
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", client::encode_path(c)));
                }
                let page = api.call("GET", &path, &[], b"").await?.json();
                for e in page["entries"].as_array().into_iter().flatten() {
                    spinner.suspend(|| {
                        println!(
                            "{}\t{}\t{}",
                            e["key"].as_str().unwrap_or(""),
                            e["size"],
                            e["version"].as_str().unwrap_or("")
                        )
                    });
                    count += 1;
                }
                spinner.set_message(format!("{count} keys"));
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            spinner.finish_and_clear();
            eprintln!("{count} keys");
        }
        Command::Watch { prefix } => {
            let mut grpc = pb::store_client::StoreClient::connect(cli.grpc.clone())
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!("cannot reach {}: {e}", cli.grpc),
                    )
                })?;
            let mut request = tonic::Request::new(pb::WatchRequest { prefix });
            if let Some(a) = &api.auth {
                request.metadata_mut().insert(
                    "authorization",
                    a.parse().map_err(|_| Error::invalid_input("bad token"))?,
                );
            }
            let mut stream = grpc
                .watch(request)
                .await
                .map_err(|s| Error::new(ErrorKind::Unavailable, format!("watch refused: {s}")))?
                .into_inner();
            while let Some(event) = stream
                .message()
                .await
                .map_err(|s| Error::new(ErrorKind::Unavailable, s.to_string()))?
            {
                match event.event {
                    Some(pb::watch_event::Event::Change(c)) => {
                        let op = if c.op == pb::change::Op::Delete as i32 {
                            "delete"
                        } else {
                            "put"
                        };
                        println!("{op}\t{}\t{}", c.key, c.version);
                    }
                    Some(pb::watch_event::Event::Config(c)) => println!("config\t{}", c.reason),
                    None => {}
                }
            }
        }
        Command::Health => {
            let reply = api.call("GET", "/v1/admin/health", &[], b"").await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&reply.json()).unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mux: {e}");
            ExitCode::FAILURE
        }
    }
}
