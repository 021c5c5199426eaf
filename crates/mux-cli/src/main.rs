//! `mux`: the command line for a muxd server.
//!
//! It talks to muxd's REST API (`--url`) and, for `watch`, to its gRPC API (`--grpc`);
//! it opens no store itself. See `mux --help`.
#![deny(missing_docs)]

mod api;
mod audit;
mod bulk;
mod error;
mod output;
mod sync;
mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use api::Api;
use error::{CliError, EXIT_HELP};

/// What `mux --help` shows after the options.
const AFTER_HELP: &str = "\
Environment:
  MUX_URL    the REST endpoint (as --url)
  MUX_GRPC   the gRPC endpoint, for watch (as --grpc)
  MUX_TOKEN  a bearer token (JWT), when the server requires one (as --token)
  MUX_CA_FILE, MUX_CLIENT_CERT, MUX_CLIENT_KEY
             for an https:// muxd: its CA, and a client certificate and key (mTLS)

Examples:
  mux put tenantconfig/acme/limits 'max=10'
  mux put --file limits.json --content-type application/json tenantconfig/acme/limits
  mux put --dir ./configs --prefix paramconfig
  mux get tenantconfig/acme/limits
  mux ls tenantconfig
  mux rm tenantconfig/acme/limits
  mux watch tenantconfig
  MUX_URL=http://muxd.internal:8080 mux health
  mux verify --prefix tenantconfig
  mux repair --prefix tenantconfig --rate 500
  mux backfill --target redb --prefix tenantconfig
  mux gc --prefix tenantconfig --grace 10d
  mux export --prefix tenantconfig > tenantconfig.jsonl
  mux import tenantconfig.jsonl
";

/// The command line for a muxd server: reads, writes, lists, deletes and watches keys;
/// verifies, repairs, backfills, garbage-collects, exports and imports them.
///
/// mux talks to a running muxd over its REST API (--url) and, for `watch`, its gRPC API
/// (--grpc). It opens no store itself: where a key lands is muxd's routing.
#[derive(Parser, Debug)]
#[command(name = "mux", version, after_help = format!("{AFTER_HELP}\n{EXIT_HELP}"))]
struct Cli {
    /// muxd's REST endpoint.
    #[arg(
        long,
        env = "MUX_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// muxd's gRPC endpoint (used by `watch`).
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
    /// PEM CA certificates that sign an https:// muxd's certificate (private CA).
    #[arg(long, env = "MUX_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for a muxd that asks for one (mTLS); with --client-key.
    #[arg(long, env = "MUX_CLIENT_CERT", global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "MUX_CLIENT_KEY", global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a value (from the argument, `--file`, or every file of `--dir`).
    Put {
        /// The key (not with --dir).
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        key: Option<String>,
        /// The value (or use --file).
        #[arg(conflicts_with_all = ["file", "dir"])]
        value: Option<String>,
        /// Read the value from a file.
        #[arg(long, conflicts_with = "dir")]
        file: Option<PathBuf>,
        /// Write every file below this directory, keyed by its path relative to it.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// With --dir: a prefix for the keys.
        #[arg(long, requires = "dir")]
        prefix: Option<String>,
        /// With --dir: how many files to write at once.
        #[arg(long, requires = "dir", default_value_t = 8)]
        jobs: usize,
        /// Content type of the value(s).
        #[arg(long)]
        content_type: Option<String>,
        /// Write consistency: all, quorum, one, primary, at_least:N (default: the route's).
        #[arg(long)]
        consistency: Option<String>,
    },
    /// Prints a value (exit status 1 if the key has none).
    Get {
        /// The key.
        key: String,
        /// The value as it stood then: a version, an RFC 3339 time
        /// (2026-12-02T10:00:00Z) or Unix milliseconds. Needs a store of the key's route
        /// that keeps history.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Prints a key's versions, newest first: time, version, and the value (or
    /// `(deleted)`, or `(N bytes, not UTF-8)`), one per line.
    History {
        /// The key.
        key: String,
    },
    /// Deletes a key (exit status 1 if it had no live record).
    Rm {
        /// The key.
        key: String,
    },
    /// Lists keys under a prefix (every page): key, size, version, one per line.
    Ls {
        /// The prefix (whole segments).
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Prints changes under a prefix as they happen (gRPC Watch), made through any
    /// muxd node sharing the change feed, until interrupted. Each line ends with the
    /// change's feed position.
    Watch {
        /// The prefix (whole segments).
        #[arg(default_value = "")]
        prefix: String,
        /// Start after this position (the last one printed): none missed, none twice.
        #[arg(long)]
        resume_from: Option<String>,
    },
    /// Prints the backends' health report.
    Health,
    /// Compares the stores of a prefix's route (or --backends) and lists the keys on
    /// which they disagree (exit status 1 if any).
    Verify {
        #[command(flatten)]
        scope: JobScope,
        /// Keep a checkpoint on the server: the same job started again resumes.
        #[arg(long)]
        checkpoint: bool,
    },
    /// Verifies, and writes the highest version of each divergent key (tombstones
    /// included) to the stale stores.
    Repair {
        #[command(flatten)]
        scope: JobScope,
        /// Keep a checkpoint on the server: the same job started again resumes.
        #[arg(long)]
        checkpoint: bool,
    },
    /// Fills a store (a new one, or one restored from an old backup) from the other
    /// stores of the route, while writes go on.
    Backfill {
        /// The store to fill; the other stores (of the route or --backends) are read.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        scope: JobScope,
        /// Keep a checkpoint on the server: the same job started again resumes.
        #[arg(long)]
        checkpoint: bool,
    },
    /// Seals the records of encrypted routes under a prefix again with each route's
    /// current key (after a key rotation); resumable with --checkpoint.
    /// `--dry-run --retire ID` checks that no record, hint or dead letter still needs
    /// key ID (exit status 1 if one does).
    Rekey {
        /// The keys under this prefix (whole segments): a tenant's own keys with
        /// --tenant.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The tenant whose keys --prefix names.
        #[arg(long)]
        tenant: Option<String>,
        /// Only count the records per key id; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: fail unless nothing references this key id.
        #[arg(long, requires = "dry_run")]
        retire: Option<String>,
        /// Keep a checkpoint on the server: the same job started again resumes.
        #[arg(long)]
        checkpoint: bool,
        /// At most this many records per second (0: no limit).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Print the job, with its whole report, as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Erases a tenant: every record in every store (live, deleted and past versions),
    /// its dead letters, owed writes and cached entries. `mux tenant erase <tenant>`;
    /// exit status 1 if a store could not be erased (run it again: it resumes).
    Tenant {
        /// `erase`.
        #[arg(value_parser = ["erase"])]
        action: String,
        /// The tenant.
        tenant: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists audit events (`[audit]` on the server), one line each; `mux audit verify`
    /// checks every node's hash chain (exit status 1 if an event is missing or altered).
    Audit {
        /// `verify` to check the chains instead of listing.
        #[arg(value_parser = ["verify"])]
        verify: Option<String>,
        /// Only this tenant's events.
        #[arg(long)]
        tenant: Option<String>,
        /// Only events on this key.
        #[arg(long)]
        key: Option<String>,
        /// From this time (Unix milliseconds or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (Unix milliseconds or RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Purges the tombstones older than --grace that every store holds.
    Gc {
        #[command(flatten)]
        scope: JobScope,
        /// Keep tombstones younger than this (10d, 36h); it must exceed the longest a
        /// write can stay in flight (hints, dead letters awaiting replay).
        #[arg(long, default_value = "10d")]
        grace: String,
    },
    /// Writes every record under a prefix to stdout as JSON lines (tombstones and
    /// metadata included, values in base64), for `mux import`.
    Export {
        /// The prefix (whole segments), as stored: a tenant's keys are under
        /// tenants/<tenant>/. Default: every key.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Export each key as it stood then: a version, an RFC 3339 time or Unix
        /// milliseconds.
        #[arg(long)]
        as_of: Option<String>,
        /// Read these stores (a,b) instead of through muxd's routing.
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
    },
    /// Imports an export (FILE, or - for stdin), each record at its own version:
    /// importing twice changes nothing.
    Import {
        /// The export file, or - for stdin.
        file: PathBuf,
        /// Write into these stores (a,b) instead of through muxd's routing.
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What a verify, repair, backfill or gc job covers.
#[derive(clap::Args, Debug)]
struct JobScope {
    /// The keys under this prefix (whole segments), as stored: a tenant's keys are
    /// under tenants/<tenant>/.
    #[arg(long, default_value = "")]
    prefix: String,
    /// The stores, by name (a,b). Default: the backends of the prefix's route.
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// At most this many store operations per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Print the job, with its whole report, as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

impl JobScope {
    fn job(
        self,
        kind: &'static str,
        target: Option<String>,
        grace: Option<String>,
        checkpoint: bool,
    ) -> sync::JobSpec {
        sync::JobSpec {
            kind,
            prefix: self.prefix,
            backends: self.backends,
            target,
            rate: self.rate,
            grace,
            checkpoint,
            json: self.json,
            tenant: None,
            dry_run: false,
            retire: None,
        }
    }
}

/// The headers of a write.
fn write_headers(
    content_type: Option<&str>,
    consistency: Option<&str>,
) -> Result<HeaderMap, CliError> {
    let mut headers = HeaderMap::new();
    let pairs = [
        (CONTENT_TYPE, "--content-type", content_type),
        (
            HeaderName::from_static("x-mux-consistency"),
            "--consistency",
            consistency,
        ),
    ];
    for (name, option, value) in pairs {
        if let Some(v) = value {
            let v = HeaderValue::from_str(v).map_err(|_| {
                CliError::Usage(format!(
                    "{option} \"{v}\" has characters a header cannot carry"
                ))
            })?;
            headers.insert(name, v);
        }
    }
    Ok(headers)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let tls = api::Tls {
        ca_file: cli.ca_file.clone(),
        identity: cli.client_cert.clone().zip(cli.client_key.clone()),
    };
    let api = Api::with_tls(&cli.url, cli.token.as_deref(), &tls)?;
    match cli.command {
        Command::Put {
            key,
            value,
            file,
            dir,
            prefix,
            jobs,
            content_type,
            consistency,
        } => {
            let headers = write_headers(content_type.as_deref(), consistency.as_deref())?;
            if let Some(dir) = dir {
                return bulk::put_dir(&api, &dir, prefix.as_deref(), &headers, jobs).await;
            }
            let key = key.ok_or_else(|| CliError::Usage("put needs a KEY (or --dir)".into()))?;
            let bytes = match (value, file) {
                (Some(v), None) => v.into_bytes(),
                (None, Some(f)) => std::fs::read(&f)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", f.display())))?,
                _ => {
                    return Err(CliError::Usage(
                        "put needs exactly one of VALUE or --file".into(),
                    ));
                }
            };
            let reply = api.put(&key, bytes, &headers).await?;
            output::line(format_args!(
                "{key} = version {} on {}",
                reply.version,
                reply.applied_on.join(", ")
            ))?;
        }
        Command::Get { key, as_of } => {
            output::stdout(&api.get(&key, as_of.as_deref()).await?)?;
        }
        Command::History { key } => {
            let mut cursor: Option<String> = None;
            for _ in 0..100_000 {
                let page = api.history(&key, cursor.as_deref()).await?;
                let mut text = String::new();
                for e in &page.entries {
                    let value = match (&e.value, e.deleted) {
                        (_, true) => "(deleted)".to_owned(),
                        (Some(v), false) => v.escape_debug().to_string(),
                        (None, false) => format!("({} bytes, not UTF-8)", e.size),
                    };
                    text.push_str(&format!("{}\t{}\t{value}\n", e.time, e.version));
                }
                output::stdout(text.as_bytes())?;
                match page.next_cursor {
                    Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
                    Some(c) => {
                        return Err(CliError::Failed(format!(
                            "the server returned the same cursor \"{c}\" twice; stopping"
                        )));
                    }
                    None => return Ok(()),
                }
            }
            return Err(CliError::Failed(
                "more than 100000 pages of history; stopping".into(),
            ));
        }
        Command::Rm { key } => {
            let reply = api.delete(&key).await?;
            output::line(format_args!("{key} deleted at version {}", reply.version))?;
        }
        Command::Ls { prefix } => {
            let spinner = if std::io::stderr().is_terminal() {
                ProgressBar::new_spinner()
            } else {
                ProgressBar::hidden()
            };
            let mut cursor: Option<String> = None;
            let mut count = 0u64;
            loop {
                let page = api.list(&prefix, cursor.as_deref()).await?;
                let mut text = String::new();
                for e in &page.entries {
                    text.push_str(&format!("{}\t{}\t{}\n", e.key, e.size, e.version));
                }
                spinner.suspend(|| output::stdout(text.as_bytes()))?;
                count += page.entries.len() as u64;
                spinner.set_message(format!("{count} keys"));
                match page.next_cursor {
                    Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
                    Some(c) => {
                        return Err(CliError::Failed(format!(
                            "the server returned the same cursor \"{c}\" twice; stopping"
                        )));
                    }
                    None => break,
                }
            }
            spinner.finish_and_clear();
            output::note(format_args!("{count} keys"));
        }
        Command::Watch {
            prefix,
            resume_from,
        } => {
            watch::watch(&cli.grpc, cli.token.as_deref(), &tls, prefix, resume_from).await?;
        }
        Command::Health => {
            let report = api.health().await?;
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::Failed(format!("cannot print the report: {e}")))?;
            output::line(text)?;
        }
        Command::Verify { scope, checkpoint } => {
            sync::run_job(&api, scope.job("verify", None, None, checkpoint)).await?;
        }
        Command::Repair { scope, checkpoint } => {
            sync::run_job(&api, scope.job("repair", None, None, checkpoint)).await?;
        }
        Command::Backfill {
            target,
            scope,
            checkpoint,
        } => {
            sync::run_job(&api, scope.job("backfill", Some(target), None, checkpoint)).await?;
        }
        Command::Rekey {
            prefix,
            tenant,
            dry_run,
            retire,
            checkpoint,
            rate,
            json,
        } => {
            let spec = sync::JobSpec {
                kind: "rekey",
                prefix,
                backends: Vec::new(),
                target: None,
                rate,
                grace: None,
                checkpoint,
                json,
                tenant,
                dry_run,
                retire,
            };
            sync::run_job(&api, spec).await?;
        }
        Command::Tenant {
            action: _,
            tenant,
            json,
        } => {
            audit::erase(&api, &tenant, json).await?;
        }
        Command::Audit {
            verify,
            tenant,
            key,
            since,
            until,
            json,
        } => {
            audit::run(
                &api,
                verify.is_some(),
                &[
                    ("tenant", tenant),
                    ("key", key),
                    ("since", since),
                    ("until", until),
                ],
                json,
            )
            .await?;
        }
        Command::Gc { scope, grace } => {
            sync::run_job(&api, scope.job("gc", None, Some(grace), false)).await?;
        }
        Command::Export {
            prefix,
            as_of,
            backends,
        } => {
            sync::export(&api, &prefix, as_of.as_deref(), &backends).await?;
        }
        Command::Import {
            file,
            backends,
            json,
        } => {
            sync::import(&api, &file, &backends, json).await?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::OutputClosed) => CliError::OutputClosed.exit_code(),
        Err(e) => {
            output::note(format_args!("mux: {e}"));
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
