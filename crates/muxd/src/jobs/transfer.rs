//! Export and import behind the admin API: the export streamed from a task through a
//! channel, the import read line by line from the request body.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use mux::{AsOf, Backend, ErrorKind, Prefix};
use mux_sync::{ExportOptions, Importer, Throttle};

use super::{ExportQuery, ImportQuery, ImportReply, Named, invalid, names, resolve};
use crate::AppState;
use crate::service::ServiceError;

/// One export line (with its newline), or the error that cut the export short.
type ExportChunk = Result<Bytes, std::io::Error>;

/// Starts an export of `query` in a task and returns its lines as they are produced.
/// An error before anything is sent (a bad prefix, an unknown store) is returned
/// here; an error later ends the stream without its end line, which is how a reader
/// knows the export is incomplete (and muxd logs why).
pub(crate) fn export(
    state: &AppState,
    query: ExportQuery,
) -> Result<tokio::sync::mpsc::Receiver<ExportChunk>, ServiceError> {
    let live = state.live();
    let prefix = Prefix::new(&query.prefix)?;
    let as_of = query
        .as_of
        .as_deref()
        .map(|text| text.parse::<AsOf>().map(AsOf::bound))
        .transpose()?;
    let sources: Vec<Arc<dyn Backend>> = match query.backends.as_deref().map(names) {
        Some(names) if !names.is_empty() => resolve(&live.mux, &live.config, &names)?
            .into_iter()
            .map(|(_, b)| b)
            .collect(),
        _ => vec![Arc::new(live.mux.as_backend())],
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<ExportChunk>(64);
    tokio::spawn(async move {
        let options = ExportOptions {
            as_of,
            ..ExportOptions::default()
        };
        let what = prefix.as_str().to_owned();
        let sink = |line: String| {
            let tx = tx.clone();
            async move {
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                tx.send(Ok(Bytes::from(bytes)))
                    .await
                    .map_err(|_| mux::Error::new(ErrorKind::Unavailable, "the reader went away"))
            }
        };
        match mux_sync::export(&sources, prefix, &options, sink).await {
            Ok(count) => tracing::info!(prefix = %what, records = count, "export done"),
            Err(e) => {
                // The status line went out with the first bytes: the stream ends with
                // an error line (an ErrorBody) in place of its end line, so the reader
                // sees why, and an import of it is refused as cut short.
                tracing::warn!(prefix = %what, error = %e, "export cut short");
                let error = ServiceError::from_mux(&e, None);
                let line = serde_json::json!({
                    "error": {"kind": error.kind(), "message": error.message()}
                });
                let _ = tx.send(Ok(Bytes::from(format!("{line}\n")))).await;
            }
        }
    });
    Ok(rx)
}

/// Imports an export read from `body` line by line (never whole: a line longer than
/// `max_line` is refused).
pub(crate) async fn import(
    state: &AppState,
    query: ImportQuery,
    body: axum::body::Body,
) -> Result<ImportReply, ServiceError> {
    let live = state.live();
    let targets: Vec<Named> = match query.backends.as_deref().map(names) {
        Some(names) if !names.is_empty() => {
            let stores = resolve(&live.mux, &live.config, &names)?;
            // An export may hold anything: a store named here must be allowed to hold
            // every restricted route's data (data residency).
            for name in &names {
                live.mux
                    .check_residency_copy(&[], name)
                    .map_err(ServiceError::from)?;
            }
            stores
        }
        _ => vec![("mux".to_owned(), Arc::new(live.mux.as_backend()))],
    };
    let mut importers: Vec<Importer> = targets
        .iter()
        .map(|(_, b)| Importer::new(b.clone(), Throttle::unlimited()))
        .collect();
    // A line holds a value in base64 (4/3 of its size) and its metadata.
    let max_line = state.max_body_bytes.saturating_mul(2).max(1 << 20);
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut line_number = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            invalid(format!(
                "the upload stopped before its end ({e}); the records read so far were imported, which is safe: import the whole file again"
            ))
        })?;
        buffer.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = buffer[start..].iter().position(|b| *b == b'\n') {
            feed(
                &mut line_number,
                &buffer[start..start + end],
                &mut importers,
            )
            .await?;
            start += end + 1;
        }
        buffer.drain(..start);
        if buffer.len() > max_line {
            return Err(invalid(format!(
                "export line {} is longer than {max_line} bytes: is this a mux export?",
                line_number + 1
            )));
        }
    }
    if !buffer.is_empty() {
        feed(&mut line_number, &buffer, &mut importers).await?;
    }
    let mut reply = ImportReply {
        targets: targets.iter().map(|(n, _)| n.clone()).collect(),
        ..ImportReply::default()
    };
    for importer in importers {
        let report = importer.finish().await?;
        reply.records = report.records;
        reply.applied += report.applied;
        reply.superseded += report.superseded;
        reply.prefix = report.prefix;
    }
    tracing::info!(records = reply.records, applied = reply.applied, superseded = reply.superseded, targets = ?reply.targets, "import done");
    Ok(reply)
}

/// Hands line `line_number + 1` to every importer.
async fn feed(
    line_number: &mut u64,
    line: &[u8],
    importers: &mut [Importer],
) -> Result<(), ServiceError> {
    *line_number += 1;
    let text = std::str::from_utf8(line).map_err(|_| {
        invalid(format!(
            "export line {line_number} is not UTF-8 text: is this a mux export?"
        ))
    })?;
    for importer in importers.iter_mut() {
        importer.line(text).await?;
    }
    Ok(())
}
