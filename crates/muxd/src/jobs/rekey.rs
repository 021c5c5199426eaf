//! The rekey job: `Mux::reseal` page by page under a prefix, with progress, an ops/s
//! limit and an optional checkpoint (the same job started again resumes).

use std::sync::{Arc, Mutex};

use mux::{ListRequest, Prefix, ReadOptions, Tenant};
use mux_sync::{Checkpoint, Progress, Throttle};
use serde_json::json;

use super::{Job, JobKind, JobRequest, JobView, Jobs, checkpoint_dir, fnv1a, invalid, now_ms};
use crate::AppState;
use crate::service::ServiceError;

/// Records read per page.
const PAGE: usize = 100;
/// The failures the report keeps with their errors (all are counted).
const ERRORS_KEPT: usize = 20;

impl Jobs {
    /// Checks and starts a rekey job.
    pub(super) fn start_rekey(
        &self,
        state: &AppState,
        request: JobRequest,
    ) -> Result<JobView, ServiceError> {
        if request.backends.is_some() || request.target.is_some() || request.grace.is_some() {
            return Err(invalid(
                "a rekey goes through each key's route: backends, target and grace do not apply",
            ));
        }
        let live = state.live();
        let mux = live.mux.clone();
        let prefix = Prefix::new(&request.prefix).map_err(ServiceError::from)?;
        let tenant = request
            .tenant
            .as_deref()
            .map(Tenant::new)
            .transpose()
            .map_err(ServiceError::from)?;
        let checkpoint = request.checkpoint.then(|| {
            let description = format!(
                "rekey prefix={} tenant={} dry_run={} node={} listen={}",
                prefix.as_str(),
                tenant.as_ref().map_or("-", Tenant::as_str),
                request.dry_run,
                live.config.mux.node_id,
                live.config.listen
            );
            let dir = checkpoint_dir(&live.config);
            let file = dir.join(format!("rekey-{:016x}.json", fnv1a(description.as_bytes())));
            (dir, Checkpoint::new(file, description))
        });
        if let Some((dir, _)) = &checkpoint {
            std::fs::create_dir_all(dir).map_err(|e| {
                ServiceError::from(mux::Error::internal(format!(
                    "cannot create the checkpoint directory {}: {e}",
                    dir.display()
                )))
            })?;
        }
        let checkpoint = checkpoint.map(|(_, c)| c);
        let progress = Arc::new(Progress::default());
        let job = Arc::new(Job {
            id: self.next_id(),
            kind: JobKind::Rekey,
            prefix: prefix.as_str().to_owned(),
            backends: Vec::new(),
            target: None,
            ops_per_second: request.ops_per_second,
            checkpoint: checkpoint.as_ref().map(|c| c.path().to_path_buf()),
            started_at_ms: now_ms(),
            progress: progress.clone(),
            outcome: Mutex::new(None),
        });
        self.keep(job.clone())?;
        let throttle = Throttle::per_second(request.ops_per_second);
        let dry_run = request.dry_run;
        let work = async move {
            let options = ReadOptions {
                tenant,
                ..ReadOptions::default()
            };
            let resumed_after = match &checkpoint {
                Some(c) => c.load().map_err(|e| e.to_string())?,
                None => None,
            };
            let mut request = ListRequest::new(prefix).with_limit(PAGE);
            request.cursor = resumed_after.clone();
            let mut totals = json!({
                "dry_run": dry_run, "scanned": 0, "resealed": 0, "current": 0,
                "unencrypted_route": 0, "gone": 0, "failed": 0,
            });
            let mut by_key = serde_json::Map::new();
            let mut errors = Vec::new();
            loop {
                let page = mux
                    .reseal(&request, &options, dry_run)
                    .await
                    .map_err(|e| e.to_string())?;
                throttle.acquire(page.scanned as usize).await;
                for (field, n) in [
                    ("scanned", page.scanned),
                    ("resealed", page.resealed),
                    ("current", page.current),
                    ("unencrypted_route", page.unencrypted_route),
                    ("gone", page.gone),
                    ("failed", page.failed),
                ] {
                    totals[field] = json!(totals[field].as_u64().unwrap_or(0) + n);
                }
                for (id, n) in &page.by_key {
                    let was = by_key
                        .get(id)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    by_key.insert(id.clone(), json!(was + n));
                }
                for (key, e) in &page.errors {
                    if errors.len() < ERRORS_KEPT {
                        errors.push(json!(format!("{key}: {e}")));
                    }
                }
                progress.checked(page.scanned);
                progress.written(page.resealed);
                progress.skipped(page.current + page.unencrypted_route + page.gone);
                progress.failed(page.failed);
                match page.next_cursor {
                    Some(cursor) => {
                        progress.done_through(Some(&cursor));
                        if let Some(c) = &checkpoint {
                            c.save(Some(&cursor), &progress)
                                .map_err(|e| e.to_string())?;
                        }
                        request.cursor = Some(cursor);
                    }
                    None => break,
                }
            }
            if let Some(c) = &checkpoint {
                c.clear().map_err(|e| e.to_string())?;
            }
            totals["by_key"] = serde_json::Value::Object(by_key);
            totals["errors"] = json!(errors);
            totals["resumed_after"] = json!(resumed_after.map(|k| k.as_str().to_owned()));
            // What still holds sealed records outside the stores: a key must not be
            // retired while hints or dead letters may carry values sealed with it.
            totals["hints_pending"] = json!(mux.hints_pending());
            totals["dead_letters"] = json!(mux.dead_letters().await.map_or(0, |d| d.len()));
            Ok(totals)
        };
        self.launch(&job, work);
        tracing::info!(job = %job.id, kind = "rekey", prefix = %job.prefix, dry_run, "job started");
        Ok(job.view())
    }
}
