//! Consistency checks and migration through muxd's admin API: `verify`, `repair`,
//! `backfill` and `gc` start a job and follow it (a spinner with its counts on a
//! terminal) to its report; `export` streams JSON lines to stdout; `import` uploads
//! them.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::api::{Api, Job};
use crate::error::CliError;
use crate::output;

/// How often a running job is polled.
const POLL: Duration = Duration::from_millis(200);

/// A job to start: `kind` and the fields of `POST /v1/admin/jobs`.
#[derive(Debug)]
pub struct JobSpec {
    /// `verify`, `repair`, `backfill` or `gc`.
    pub kind: &'static str,
    /// The prefix.
    pub prefix: String,
    /// The stores (empty: the prefix's route).
    pub backends: Vec<String>,
    /// Backfill: the store to fill.
    pub target: Option<String>,
    /// Store operations per second (0: no limit).
    pub rate: u32,
    /// GC: the grace period.
    pub grace: Option<String>,
    /// Keep a checkpoint on the server.
    pub checkpoint: bool,
    /// Print the job as JSON instead of a summary.
    pub json: bool,
    /// Rekey: the tenant whose keys the prefix names.
    pub tenant: Option<String>,
    /// Rekey: only count records per key id.
    pub dry_run: bool,
    /// Rekey (dry run): the key id to check is referenced by nothing.
    pub retire: Option<String>,
}

impl JobSpec {
    fn body(&self) -> Value {
        let mut body = json!({"kind": self.kind, "prefix": self.prefix});
        if !self.backends.is_empty() {
            body["backends"] = json!(self.backends);
        }
        if let Some(t) = &self.target {
            body["target"] = json!(t);
        }
        if self.rate > 0 {
            body["ops_per_second"] = json!(self.rate);
        }
        if let Some(g) = &self.grace {
            body["grace"] = json!(g);
        }
        if self.checkpoint {
            body["checkpoint"] = json!(true);
        }
        if let Some(t) = &self.tenant {
            body["tenant"] = json!(t);
        }
        if self.dry_run {
            body["dry_run"] = json!(true);
        }
        body
    }
}

fn decode(raw: &Value) -> Result<Job, CliError> {
    serde_json::from_value(raw.clone()).map_err(|e| {
        CliError::Failed(format!(
            "the server answered a job that is not muxd's documented JSON ({e})"
        ))
    })
}

fn shown(prefix: &str) -> &str {
    if prefix.is_empty() {
        "(every key)"
    } else {
        prefix
    }
}

/// Starts the job, follows it to its end and prints its report.
pub async fn run_job(api: &Api, spec: JobSpec) -> Result<(), CliError> {
    let mut raw = api.start_job(&spec.body()).await?;
    let mut job = decode(&raw)?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    } else {
        ProgressBar::hidden()
    };
    while job.state == "running" {
        let p = &job.progress;
        bar.set_message(format!(
            "{} {}: {} checked, {} divergent, {} written, {} failed",
            job.kind,
            shown(&job.prefix),
            p.checked,
            p.divergent,
            p.written,
            p.failed
        ));
        tokio::time::sleep(POLL).await;
        raw = api.job(&job.id).await?;
        job = decode(&raw)?;
    }
    bar.finish_and_clear();
    if spec.json {
        let text = serde_json::to_string_pretty(&raw)
            .map_err(|e| CliError::Failed(format!("cannot print the job: {e}")))?;
        output::line(text)?;
    }
    if job.state == "failed" {
        return Err(CliError::Check(format!(
            "{} {} failed (job {}): {}",
            job.kind,
            shown(&job.prefix),
            job.id,
            job.error.as_deref().unwrap_or("no reason given")
        )));
    }
    if job.state != "done" {
        return Err(CliError::Failed(format!(
            "job {} is in state \"{}\", which this mux does not know",
            job.id, job.state
        )));
    }
    let report = job.report.clone().unwrap_or(Value::Null);
    let n = |field: &str| report[field].as_u64().unwrap_or(0);
    let summary = summary(&job, &report);
    if !spec.json {
        output::stdout(summary.as_bytes())?;
    }
    match job.kind.as_str() {
        "verify" if n("divergent") > 0 => Err(CliError::Check(format!(
            "{} divergent {} under {}: `mux repair` writes the highest version to the stale stores",
            n("divergent"),
            plural(n("divergent"), "key", "keys"),
            shown(&job.prefix)
        ))),
        "repair" if n("repair_failed") > 0 => Err(CliError::Check(format!(
            "{} {} could not be repaired (run mux repair again)",
            n("repair_failed"),
            plural(n("repair_failed"), "key", "keys")
        ))),
        "rekey" if n("failed") > 0 => Err(CliError::Check(format!(
            "{} {} could not be re-sealed (run mux rekey again)",
            n("failed"),
            plural(n("failed"), "record", "records")
        ))),
        "rekey" => match &spec.retire {
            None => Ok(()),
            Some(id) => {
                let records = report["by_key"][id.as_str()].as_u64().unwrap_or(0);
                let (hints, dead) = (n("hints_pending"), n("dead_letters"));
                if records + hints + dead > 0 {
                    Err(CliError::Check(format!(
                        "key {id} cannot be retired: {records} {} under {} still use it, and {hints} hints and {dead} dead letters are pending (run mux rekey, let hints land, replay or discard dead letters)",
                        plural(records, "record", "records"),
                        shown(&job.prefix)
                    )))
                } else {
                    output::line(format!(
                        "key {id}: no record under {} uses it and nothing is pending: it can be removed from the key set",
                        shown(&job.prefix)
                    ))
                }
            }
        },
        "backfill" if n("failed") > 0 => Err(CliError::Check(format!(
            "{} {} could not be copied (run mux backfill again)",
            n("failed"),
            plural(n("failed"), "key", "keys")
        ))),
        _ => Ok(()),
    }
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// The report, for people.
fn summary(job: &Job, report: &Value) -> String {
    let n = |field: &str| report[field].as_u64().unwrap_or(0);
    let on = job.backends.join(", ");
    let prefix = shown(&job.prefix);
    let mut text = match job.kind.as_str() {
        "verify" | "repair" => {
            let mut line = format!(
                "{} {prefix} on {on}: {} {} checked, {} divergent ({} missing, {} tombstoned on one side, {} at different versions)",
                job.kind,
                n("checked"),
                plural(n("checked"), "key", "keys"),
                n("divergent"),
                n("missing"),
                n("tombstone_one_side"),
                n("version_differs"),
            );
            if job.kind == "repair" {
                line.push_str(&format!(
                    ", {} repaired, {} failed",
                    n("repaired"),
                    n("repair_failed")
                ));
            }
            line.push('\n');
            for d in report["sample"].as_array().into_iter().flatten() {
                let replicas: Vec<String> = d["replicas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let name = r["backend"].as_str().unwrap_or("?");
                        match (r["version"].as_str(), r["tombstone"].as_bool()) {
                            (None, _) => format!("{name}: missing"),
                            (Some(v), Some(true)) => format!("{name}: deleted at {v}"),
                            (Some(v), _) => format!("{name}: {v}"),
                        }
                    })
                    .collect();
                line.push_str(&format!(
                    "  {}\t{}\t{}\n",
                    d["key"].as_str().unwrap_or("?"),
                    d["kind"].as_str().unwrap_or("?"),
                    replicas.join(", ")
                ));
            }
            if n("divergent") > report["sample"].as_array().map_or(0, |s| s.len() as u64) {
                line.push_str("  … (the first ones; --json has the whole report)\n");
            }
            line
        }
        "backfill" => format!(
            "backfill {} from {on} under {prefix}: {} {} considered, {} copied, {} skipped, {} failed\n",
            job.target.as_deref().unwrap_or("?"),
            n("considered"),
            plural(n("considered"), "key", "keys"),
            n("copied"),
            n("skipped"),
            n("failed"),
        ),
        "rekey" => {
            let by_key: Vec<String> = report["by_key"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, n)| {
                    let id = if id.is_empty() { "(not sealed)" } else { id };
                    format!("{id}={}", n.as_u64().unwrap_or(0))
                })
                .collect();
            format!(
                "rekey {prefix}{}: {} {} scanned, {} re-sealed, {} already current, {} on routes without encryption, {} failed; by key: {}\n",
                if report["dry_run"].as_bool() == Some(true) {
                    " (dry run)"
                } else {
                    ""
                },
                n("scanned"),
                plural(n("scanned"), "record", "records"),
                n("resealed"),
                n("current"),
                n("unencrypted_route"),
                n("failed"),
                if by_key.is_empty() {
                    "none".to_owned()
                } else {
                    by_key.join(", ")
                },
            )
        }
        "gc" => format!(
            "gc {prefix} on {on}: {} {}, {} purged, {} held back (not the same tombstone on every store), {} within the grace period\n",
            n("tombstones"),
            plural(n("tombstones"), "tombstone", "tombstones"),
            n("purged"),
            n("held_back"),
            n("young"),
        ),
        other => format!("{other} {prefix}: {report}\n"),
    };
    for e in report["errors"].as_array().into_iter().flatten() {
        text.push_str(&format!("  error: {}\n", e.as_str().unwrap_or("?")));
    }
    text
}

/// `mux export`: the export to stdout, as it comes; checks it ends with its end line.
pub async fn export(
    api: &Api,
    prefix: &str,
    as_of: Option<&str>,
    backends: &[String],
) -> Result<(), CliError> {
    let response = api.export(prefix, as_of, backends).await?;
    let mut body = response.bytes_stream();
    // The last non-blank line (to check the end line) and the line being read.
    let mut last_line: Vec<u8> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            CliError::Failed(format!(
                "the export stopped before its end ({}); what was written is incomplete (muxd's log says why)",
                crate::error::chain(&e)
            ))
        })?;
        output::stdout(&chunk)?;
        let mut rest = &chunk[..];
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            partial.extend_from_slice(&rest[..i]);
            if partial.iter().all(u8::is_ascii_whitespace) {
                partial.clear();
            } else {
                last_line = std::mem::take(&mut partial);
            }
            rest = &rest[i + 1..];
        }
        partial.extend_from_slice(rest);
    }
    if !partial.iter().all(u8::is_ascii_whitespace) {
        last_line = partial;
    }
    let last: Value = std::str::from_utf8(&last_line)
        .ok()
        .and_then(|t| serde_json::from_str(t.trim()).ok())
        .unwrap_or(Value::Null);
    if let Some(message) = last["error"]["message"].as_str() {
        return Err(CliError::Failed(format!(
            "the export stopped before its end: {message}; what was written is incomplete"
        )));
    }
    match (last["end"].as_bool(), last["records"].as_u64()) {
        (Some(true), Some(records)) => {
            output::note(format_args!(
                "{records} {} exported under {}",
                plural(records, "record", "records"),
                shown(prefix)
            ));
            Ok(())
        }
        _ => Err(CliError::Failed(
            "the export ended without its end line: what was written is incomplete (muxd's log says why)"
                .into(),
        )),
    }
}

/// How much of the file is sent at a time.
const CHUNK: usize = 256 * 1024;

/// `mux import FILE` (`-`: stdin): uploads the export as it is read.
pub async fn import(
    api: &Api,
    file: &Path,
    backends: &[String],
    json_out: bool,
) -> Result<(), CliError> {
    let mut reader: Box<dyn Read + Send> = if file == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?,
        )
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let name = file.display().to_string();
    std::thread::spawn(move || {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot read {name}: {e}"),
                    )));
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let reply = api
        .import(reqwest::Body::wrap_stream(stream), backends)
        .await?;
    if json_out {
        let text = serde_json::to_string_pretty(&reply)
            .map_err(|e| CliError::Failed(format!("cannot print the report: {e}")))?;
        return output::line(text);
    }
    output::line(format_args!(
        "imported {} {} (export of {}) into {}: {} applied, {} already current",
        reply.records,
        plural(reply.records, "record", "records"),
        shown(reply.prefix.as_deref().unwrap_or("")),
        reply.targets.join(", "),
        reply.applied,
        reply.superseded
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_bodies_carry_only_what_was_given() {
        let spec = JobSpec {
            kind: "verify",
            prefix: "app/".into(),
            backends: vec![],
            target: None,
            rate: 0,
            grace: None,
            checkpoint: false,
            json: false,
            tenant: None,
            dry_run: false,
            retire: None,
        };
        assert_eq!(spec.body(), json!({"kind": "verify", "prefix": "app/"}));
        let spec = JobSpec {
            kind: "backfill",
            backends: vec!["a".into(), "b".into()],
            target: Some("b".into()),
            rate: 100,
            checkpoint: true,
            ..spec
        };
        assert_eq!(
            spec.body(),
            json!({"kind": "backfill", "prefix": "app/", "backends": ["a", "b"], "target": "b",
                   "ops_per_second": 100, "checkpoint": true})
        );
        let spec = JobSpec {
            kind: "rekey",
            backends: vec![],
            target: None,
            tenant: Some("acme".into()),
            dry_run: true,
            retire: Some("k1".into()),
            ..spec
        };
        assert_eq!(
            spec.body(),
            json!({"kind": "rekey", "prefix": "app/", "ops_per_second": 100, "checkpoint": true,
                   "tenant": "acme", "dry_run": true})
        );
    }
}
