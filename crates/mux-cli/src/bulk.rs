//! `mux put --dir`: writes every file below a directory, a few at a time, with a
//! progress bar on a terminal and a summary line in every case.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::HeaderMap;

use crate::api::Api;
use crate::error::{CliError, chain};
use crate::output;

/// What a bulk load did.
#[derive(Debug, Default)]
struct Tally {
    written: u64,
    bytes: u64,
    failed: u64,
    /// The first failure, which decides the exit status.
    first_error: Option<CliError>,
}

/// The files below `dir` (recursively, symlinks followed), sorted, each with its key:
/// `prefix/` + its path relative to `dir`, with `/` separators.
fn keyed_files(dir: &Path, prefix: Option<&str>) -> Result<Vec<(PathBuf, String)>, CliError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| CliError::Usage(format!("--dir: {}", chain(&e))))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(dir).map_err(|_| {
            CliError::Usage(format!("{} is not below --dir", entry.path().display()))
        })?;
        let relative: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let relative = relative.join("/");
        let key = match prefix.map(|p| p.trim_end_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/{relative}"),
            _ => relative,
        };
        files.push((entry.into_path(), key));
    }
    Ok(files)
}

/// Whether a failure concerns one file only (the others may still succeed), rather
/// than the server or the credentials (then every other file would fail the same way).
fn concerns_one_file(e: &CliError) -> bool {
    match e {
        CliError::Refused(m) => !m.starts_with("not authorised"),
        CliError::NotFound { .. } | CliError::Usage(_) => true,
        CliError::Failed(_) | CliError::OutputClosed | CliError::Check(_) => false,
    }
}

/// Writes every file below `dir`, `jobs` at a time.
pub async fn put_dir(
    api: &Api,
    dir: &Path,
    prefix: Option<&str>,
    headers: &HeaderMap,
    jobs: usize,
) -> Result<(), CliError> {
    let started = Instant::now();
    let files = keyed_files(dir, prefix)?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(files.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut tally = Tally::default();
    let mut results = futures_util::stream::iter(files.iter())
        .map(|(path, key)| async move {
            let result = async {
                let value = std::fs::read(path)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
                let size = value.len() as u64;
                api.put(key, value, headers).await.map(|_| size)
            };
            (key, result.await)
        })
        .buffer_unordered(jobs.max(1));
    while let Some((key, result)) = results.next().await {
        bar.inc(1);
        match result {
            Ok(size) => {
                tally.written += 1;
                tally.bytes += size;
                bar.set_message(key.clone());
            }
            Err(e) => {
                tally.failed += 1;
                let stop = !concerns_one_file(&e);
                bar.suspend(|| output::note(format_args!("mux: {key}: {e}")));
                tally.first_error.get_or_insert(e);
                if stop {
                    break;
                }
            }
        }
    }
    drop(results);
    bar.finish_and_clear();
    let skipped = files.len() as u64 - tally.written - tally.failed;
    let mut summary = format!(
        "mux: put --dir {}: {} files written ({} bytes), {} failed",
        dir.display(),
        tally.written,
        tally.bytes,
        tally.failed
    );
    if skipped > 0 {
        summary.push_str(&format!(", {skipped} not tried"));
    }
    summary.push_str(&format!(", in {:.2} s", started.elapsed().as_secs_f64()));
    output::note(summary);
    match tally.first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("eu")).unwrap();
        std::fs::write(dir.path().join("eu/retries"), "3").unwrap();
        std::fs::write(dir.path().join("global"), "on").unwrap();
        let keys = |prefix| -> Vec<String> {
            keyed_files(dir.path(), prefix)
                .unwrap()
                .into_iter()
                .map(|(_, k)| k)
                .collect()
        };
        assert_eq!(
            keys(Some("paramconfig/")),
            ["paramconfig/eu/retries", "paramconfig/global"]
        );
        assert_eq!(keys(None), ["eu/retries", "global"]);
    }
}
