//! `export` and `import` in the [`crate::format`] format.

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mux_core::digest::KeyRange;
use mux_core::{AsOf, Backend, Error, Prefix, PutOutcome, Record, Result, Version};
use serde::Serialize;

use crate::checkpoint::Progress;
use crate::format::{self, Header, Line};
use crate::merge::MergedListing;
use crate::throttle::Throttle;

/// How [`export`] runs.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Export each key as it stood at this version (needs a store keeping history
    /// for keys changed since).
    pub as_of: Option<Version>,
    /// The ops/s limit.
    pub throttle: Throttle,
    /// Live counters.
    pub progress: Arc<Progress>,
}

/// Writes every record under `prefix` to `sink`, one line at a time (without
/// newlines): the header, the records in key order (tombstones included) and the end
/// line. Each key is read from the store of `sources` holding its highest version, so
/// exporting a route's stores exports what a read would return. Returns the number of
/// records.
pub async fn export<F, Fut>(
    sources: &[Arc<dyn Backend>],
    prefix: Prefix,
    options: &ExportOptions,
    mut sink: F,
) -> Result<u64>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if sources.is_empty() {
        return Err(Error::invalid_input("export needs a store to read from"));
    }
    let header = Header {
        mux_export: format::FORMAT_VERSION,
        prefix: prefix.as_str().to_owned(),
        as_of: options.as_of,
        exported_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    sink(format::header_line(&header)).await?;
    let mut listing = MergedListing::new(
        sources.to_vec(),
        KeyRange::prefix(prefix),
        1000,
        options.throttle.clone(),
    );
    let mut count = 0u64;
    while let Some(rows) = listing.next_rows().await? {
        options.progress.checked(rows.len() as u64);
        for row in rows {
            let mut holders: Vec<(usize, Version)> = row
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|e| (i, e.meta.version)))
                .collect();
            holders.sort_by_key(|(_, v)| std::cmp::Reverse(*v));
            let Some(record) = read(sources, &holders, &row.key, options).await? else {
                options.progress.skipped(1);
                continue;
            };
            sink(format::record_line(&record)).await?;
            count += 1;
            options.progress.written(1);
            options.progress.done_through(Some(&row.key));
        }
    }
    sink(format::end_line(count)).await?;
    Ok(count)
}

/// The record to export for `key`: the highest stored version, or with `as_of` the
/// highest at or below it.
async fn read(
    sources: &[Arc<dyn Backend>],
    holders: &[(usize, Version)],
    key: &mux_core::Key,
    options: &ExportOptions,
) -> Result<Option<Record>> {
    let Some(&(best, newest)) = holders.first() else {
        return Ok(None);
    };
    options.throttle.acquire(1).await;
    match options.as_of {
        Some(at) if newest > at => {
            let keeper = holders
                .iter()
                .find(|(i, _)| sources[*i].info().capability.history)
                .ok_or_else(|| {
                    Error::unsupported(format!(
                        "cannot export {key} as of {at}: it changed since, and none of the stores read keeps history"
                    ))
                })?;
            sources[keeper.0].get_as_of(key, AsOf::Version(at)).await
        }
        _ => {
            let got = sources[best].get(key).await?;
            Ok(got.filter(|r| options.as_of.is_none_or(|at| r.version() <= at)))
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Records read from the file.
    pub records: u64,
    /// Records the target stored.
    pub applied: u64,
    /// Records the target already held at that version or newer (a second import
    /// changes nothing).
    pub superseded: u64,
    /// The prefix the export was taken of.
    pub prefix: Option<String>,
}

/// Imports an export line by line into a store (or a `Mux` seen as one), writing each
/// record at its own version: importing twice, or over newer data, changes nothing.
#[derive(Debug)]
pub struct Importer {
    target: Arc<dyn Backend>,
    throttle: Throttle,
    batch: Vec<Record>,
    lines: u64,
    header: bool,
    end: Option<u64>,
    report: ImportReport,
}

/// Records written per batch.
const IMPORT_BATCH: usize = 256;

impl Importer {
    /// An importer writing to `target`.
    pub fn new(target: Arc<dyn Backend>, throttle: Throttle) -> Importer {
        Importer {
            target,
            throttle,
            batch: Vec::new(),
            lines: 0,
            header: false,
            end: None,
            report: ImportReport::default(),
        }
    }

    /// Takes the next line (blank lines are ignored).
    pub async fn line(&mut self, text: &str) -> Result<()> {
        self.lines += 1;
        if text.trim().is_empty() {
            return Ok(());
        }
        let n = self.lines;
        if self.end.is_some() {
            return Err(Error::invalid_input(format!(
                "export line {n}: data after the end line"
            )));
        }
        match format::parse_line(text, n)? {
            Line::Header(h) if !self.header => {
                self.header = true;
                self.report.prefix = Some(h.prefix);
            }
            Line::Header(_) => {
                return Err(Error::invalid_input(format!(
                    "export line {n}: a second header (two exports concatenated? import them one at a time)"
                )));
            }
            _ if !self.header => {
                return Err(Error::invalid_input(format!(
                    "export line {n}: the file does not start with a mux export header"
                )));
            }
            Line::Record(r) => {
                self.report.records += 1;
                self.batch.push(r);
                if self.batch.len() >= IMPORT_BATCH {
                    self.flush().await?;
                }
            }
            Line::End(count) => self.end = Some(count),
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.throttle.acquire(self.batch.len()).await;
        let outcomes = self.target.put_batch(&self.batch).await?;
        for o in outcomes {
            match o {
                PutOutcome::Applied => self.report.applied += 1,
                PutOutcome::Superseded { .. } => self.report.superseded += 1,
            }
        }
        self.batch.clear();
        Ok(())
    }

    /// Writes what is left and checks the file was complete: its end line must be
    /// there and count the records read.
    pub async fn finish(mut self) -> Result<ImportReport> {
        self.flush().await?;
        let records = self.report.records;
        match self.end {
            Some(count) if count == records => Ok(self.report),
            Some(count) => Err(Error::invalid_input(format!(
                "the export's end line counts {count} records but {records} were read: the file is damaged (the {records} records read were imported, which is safe)"
            ))),
            None => Err(Error::invalid_input(format!(
                "the export ends after {records} records without its end line: it was cut short (the records read were imported, which is safe; import the complete file again)"
            ))),
        }
    }
}
