//! Consistency checks and migration as admin jobs (`mux-sync` behind the admin API):
//! verify, repair, backfill and tombstone GC run as background tasks, watched through
//! `GET /v1/admin/jobs/{id}`; export streams JSON lines; import reads them line by
//! line. The handlers are in `admin.rs` (operators only); this module parses the
//! requests, resolves the stores, runs the jobs and keeps the last [`KEPT`] of them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mux::{Backend, ErrorKind, Key, Mux, Prefix, ReadOptions, TENANTS_ROOT, Tenant};
use mux_sync::{
    BackfillOptions, Checkpoint, GcOptions, Progress, ProgressSnapshot, Throttle, VerifyOptions,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::config::IntentLogSpec;
use crate::service::ServiceError;

mod rekey;
mod transfer;
pub(crate) use transfer::{export, import};

/// How many jobs are kept (running ones are never dropped; the oldest finished one
/// makes room for a new one).
pub(crate) const KEPT: usize = 100;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Compare the stores and report the keys on which they disagree.
    Verify,
    /// Verify, and write the highest version of each divergent key to the stale stores.
    Repair,
    /// Copy to `target` what the other stores hold at a higher version.
    Backfill,
    /// Purge tombstones older than `grace` that every store holds.
    Gc,
    /// Seal the records of encrypted routes again under each route's current key
    /// (after a rotation); with `dry_run`, only count records per key id.
    Rekey,
}

impl JobKind {
    fn name(self) -> &'static str {
        match self {
            JobKind::Verify => "verify",
            JobKind::Repair => "repair",
            JobKind::Backfill => "backfill",
            JobKind::Gc => "gc",
            JobKind::Rekey => "rekey",
        }
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Still working.
    Running,
    /// Finished: see its report (a verify that found divergent keys is `done` too,
    /// with `report.divergent` > 0).
    Done,
    /// Stopped by an error (see `error`); a checkpointed job started again with the
    /// same parameters resumes where it stopped.
    Failed,
}

/// `POST /v1/admin/jobs`: the job to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// `verify`, `repair`, `backfill`, `gc` or `rekey`.
    pub kind: JobKind,
    /// The keys under this prefix (whole segments), as stored: a tenant's keys are
    /// under `tenants/<tenant>/`.
    #[serde(default)]
    pub prefix: String,
    /// The stores, by name. Default: the backends of the route the prefix itself
    /// falls in (`tenants/<t>/<key>` routes as tenant `t`'s `<key>`). Required for
    /// the empty prefix, which spans every route.
    #[serde(default)]
    pub backends: Option<Vec<String>>,
    /// Backfill only (required): the store to fill; the other stores are the sources.
    #[serde(default)]
    pub target: Option<String>,
    /// The store operations per second the job may make (0 or absent: no limit).
    #[serde(default)]
    pub ops_per_second: u32,
    /// GC only: a tombstone younger than this is kept (`10d`, `36h`; default `10d`).
    #[serde(default)]
    pub grace: Option<String>,
    /// Verify, repair and backfill: keep a checkpoint file, so that the same job started
    /// again after a failure or a restart resumes after the last range done.
    #[serde(default)]
    pub checkpoint: bool,
    /// Rekey only: the tenant whose keys the prefix names (absent: keys outside every
    /// tenant's namespace).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Rekey only: count the records per key id without writing (`report.by_key`):
    /// the check before a key is retired.
    #[serde(default)]
    pub dry_run: bool,
}

/// The live counters of a job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobProgress {
    /// Keys compared (verify, repair, GC) or considered (backfill).
    pub checked: u64,
    /// Keys found to differ between the stores.
    pub divergent: u64,
    /// Keys written: repaired, copied or purged.
    pub written: u64,
    /// Keys left alone (already current, superseded, not yet collectable).
    pub skipped: u64,
    /// Keys that failed.
    pub failed: u64,
    /// The last key whose range is done (null: nothing yet).
    pub last_key: Option<String>,
}

impl From<ProgressSnapshot> for JobProgress {
    fn from(p: ProgressSnapshot) -> JobProgress {
        JobProgress {
            checked: p.checked,
            divergent: p.divergent,
            written: p.written,
            skipped: p.skipped,
            failed: p.failed,
            last_key: p.last_key,
        }
    }
}

/// A job as `GET /v1/admin/jobs/{id}` shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// `running`, `done` or `failed`.
    pub state: JobState,
    /// The prefix.
    pub prefix: String,
    /// The stores compared (verify, repair, GC) or read (backfill: the sources).
    pub backends: Vec<String>,
    /// Backfill: the store filled.
    pub target: Option<String>,
    /// The ops/s limit (0: none).
    pub ops_per_second: u32,
    /// The checkpoint file, when the job keeps one.
    pub checkpoint: Option<String>,
    /// When it started (Unix milliseconds).
    pub started_at_ms: u64,
    /// When it ended (null while running).
    pub finished_at_ms: Option<u64>,
    /// The live counters.
    pub progress: JobProgress,
    /// The report once done: verify and repair — `backends`, `mode`, `resumed_after`,
    /// `checked`, `divergent`, `missing`, `tombstone_one_side`, `version_differs`,
    /// `repaired`, `repair_failed`, `max_lag_ms`, `sample` (the first divergent keys, each with what
    /// every store holds), `errors`, `digest_requests`, `listed`, `bytes_read`;
    /// backfill — `resumed_after`, `considered`, `copied`, `skipped`, `failed`,
    /// `errors`; GC — `tombstones`, `purged`, `held_back`, `young`.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// `GET /v1/admin/jobs`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobList {
    /// The jobs kept, oldest first (at most 100; running ones are never dropped).
    pub jobs: Vec<JobView>,
}

/// `POST /v1/admin/import`: what the import did.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct ImportReply {
    /// Records read from the file.
    pub records: u64,
    /// Writes applied (one per record per target).
    pub applied: u64,
    /// Writes a target refused because it already held that version or a newer one (a
    /// second import changes nothing).
    pub superseded: u64,
    /// The prefix the export was taken of.
    pub prefix: Option<String>,
    /// Where the records were written: `mux` (through routing) or the stores named.
    pub targets: Vec<String>,
}

/// `GET /v1/admin/export` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    #[serde(default)]
    prefix: String,
    as_of: Option<String>,
    backends: Option<String>,
}

/// `POST /v1/admin/import` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    backends: Option<String>,
}

/// A job and what it has come to.
#[derive(Debug)]
struct Job {
    id: String,
    kind: JobKind,
    prefix: String,
    backends: Vec<String>,
    target: Option<String>,
    ops_per_second: u32,
    checkpoint: Option<PathBuf>,
    started_at_ms: u64,
    progress: Arc<Progress>,
    outcome: Mutex<Option<Outcome>>,
}

#[derive(Debug)]
struct Outcome {
    finished_at_ms: u64,
    result: Result<serde_json::Value, String>,
}

impl Job {
    fn view(&self) -> JobView {
        let outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        let (state, finished_at_ms, report, error) = match &*outcome {
            None => (JobState::Running, None, None, None),
            Some(Outcome {
                finished_at_ms,
                result: Ok(report),
            }) => (
                JobState::Done,
                Some(*finished_at_ms),
                Some(report.clone()),
                None,
            ),
            Some(Outcome {
                finished_at_ms,
                result: Err(e),
            }) => (
                JobState::Failed,
                Some(*finished_at_ms),
                None,
                Some(e.clone()),
            ),
        };
        JobView {
            id: self.id.clone(),
            kind: self.kind,
            state,
            prefix: self.prefix.clone(),
            backends: self.backends.clone(),
            target: self.target.clone(),
            ops_per_second: self.ops_per_second,
            checkpoint: self.checkpoint.as_ref().map(|p| p.display().to_string()),
            started_at_ms: self.started_at_ms,
            finished_at_ms,
            progress: self.progress.snapshot().into(),
            report,
            error,
        }
    }

    fn running(&self) -> bool {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    fn finish(&self, result: Result<serde_json::Value, String>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(Outcome {
            finished_at_ms: now_ms(),
            result,
        });
    }
}

/// The jobs of this process (in memory: a restart forgets them; a checkpointed job
/// started again resumes).
#[derive(Debug)]
pub(crate) struct Jobs {
    jobs: Mutex<VecDeque<Arc<Job>>>,
    next: AtomicU64,
    /// Tells this process's ids from an earlier one's.
    boot: u32,
}

impl Default for Jobs {
    fn default() -> Jobs {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
        Jobs {
            jobs: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(1),
            boot: nanos,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(message)
}

impl Jobs {
    /// Every job kept, oldest first.
    pub(crate) fn list(&self) -> JobList {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        JobList {
            jobs: jobs.iter().map(|j| j.view()).collect(),
        }
    }

    /// The job `id`.
    pub(crate) fn get(&self, id: &str) -> Result<JobView, ServiceError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .find(|j| j.id == id)
            .map(|j| j.view())
            .ok_or_else(|| {
                ServiceError::from(mux::Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no job {id} (jobs live in this muxd's memory: the last {KEPT} are kept, none across a restart)"
                    ),
                ))
            })
    }

    /// Parses, checks and starts the job `body` describes.
    pub(crate) fn start(&self, state: &AppState, body: &[u8]) -> Result<JobView, ServiceError> {
        let request: JobRequest = serde_json::from_slice(body).map_err(|e| {
            invalid(format!(
                "the job is not valid JSON of the documented shape ({e}): e.g. {{\"kind\":\"verify\",\"prefix\":\"app/\"}}"
            ))
        })?;
        if request.kind == JobKind::Rekey {
            return self.start_rekey(state, request);
        }
        if request.tenant.is_some() || request.dry_run {
            return Err(invalid("tenant and dry_run apply to rekey jobs only"));
        }
        let live = state.live();
        let mux = live.mux.clone();
        let prefix = Prefix::new(&request.prefix).map_err(ServiceError::from)?;
        let names = match &request.backends {
            Some(names) => names.clone(),
            None => route_of(&mux, &prefix)?,
        };
        if names.is_empty() {
            return Err(invalid(
                "\"backends\" is empty: name the stores, or leave it out for the prefix's route",
            ));
        }
        let stores = resolve(&mux, &live.config, &names)?;
        let kind = request.kind;
        if request.grace.is_some() && kind != JobKind::Gc {
            return Err(invalid("grace applies to gc jobs only"));
        }
        if request.target.is_some() && kind != JobKind::Backfill {
            return Err(invalid("target applies to backfill jobs only"));
        }
        if request.checkpoint && kind == JobKind::Gc {
            return Err(invalid(
                "gc keeps no checkpoint (it is safe to run again from the start)",
            ));
        }
        let throttle = Throttle::per_second(request.ops_per_second);
        let progress = Arc::new(Progress::default());
        // The stores read (backfill: the sources) and the one written.
        let (sources, target) = match kind {
            JobKind::Backfill => {
                let Some(target) = request.target.clone() else {
                    return Err(invalid(
                        "a backfill needs a \"target\": the store to fill from the others",
                    ));
                };
                let target_store = resolve(&mux, &live.config, std::slice::from_ref(&target))?;
                let sources: Vec<Named> = stores
                    .into_iter()
                    .filter(|(name, _)| *name != target)
                    .collect();
                if sources.is_empty() {
                    return Err(invalid(format!(
                        "a backfill of {target} needs another store to copy from: the backends are only {target}"
                    )));
                }
                (sources, target_store.into_iter().next())
            }
            JobKind::Verify | JobKind::Repair if stores.len() < 2 => {
                return Err(invalid(format!(
                    "{} compares stores: give at least two (the backends are {})",
                    kind.name(),
                    list(&names)
                )));
            }
            _ => (stores, None),
        };
        let grace = match &request.grace {
            Some(text) => humantime::parse_duration(text).map_err(|e| {
                invalid(format!(
                    "grace \"{text}\" is not a duration ({e}): e.g. 10d, 36h"
                ))
            })?,
            None => GcOptions::default().grace,
        };
        // Data residency: a job that writes must not move restricted data out of its
        // regions (repair writes to every store named, backfill to its target).
        let copies: Vec<(Vec<&str>, &str)> = match (&target, kind) {
            (Some((t, _)), _) => vec![(
                sources.iter().map(|(n, _)| n.as_str()).collect(),
                t.as_str(),
            )],
            (None, JobKind::Repair) => sources
                .iter()
                .map(|(t, _)| {
                    let others = sources
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .filter(|n| n != t)
                        .collect();
                    (others, t.as_str())
                })
                .collect(),
            _ => Vec::new(),
        };
        for (from, to) in copies {
            mux.check_residency_copy(&from, to)
                .map_err(ServiceError::from)?;
        }
        let source_names: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
        let target_name = target.as_ref().map(|(n, _)| n.clone());
        let checkpoint = if request.checkpoint {
            // The node is part of the job: muxd processes sharing a directory (the
            // temporary one) never resume each other's jobs.
            let description = format!(
                "{} prefix={} backends={} target={} node={} listen={}",
                kind.name(),
                prefix.as_str(),
                source_names.join(","),
                target_name.as_deref().unwrap_or("-"),
                live.config.mux.node_id,
                live.config.listen
            );
            let dir = checkpoint_dir(&live.config);
            std::fs::create_dir_all(&dir).map_err(|e| {
                ServiceError::from(mux::Error::internal(format!(
                    "cannot create the checkpoint directory {}: {e}",
                    dir.display()
                )))
            })?;
            let file = dir.join(format!(
                "{}-{:016x}.json",
                kind.name(),
                fnv1a(description.as_bytes())
            ));
            Some(Checkpoint::new(file, description))
        } else {
            None
        };
        let job = Arc::new(Job {
            id: self.next_id(),
            kind,
            prefix: prefix.as_str().to_owned(),
            backends: source_names,
            target: target_name,
            ops_per_second: request.ops_per_second,
            checkpoint: checkpoint.as_ref().map(|c| c.path().to_path_buf()),
            started_at_ms: now_ms(),
            progress: progress.clone(),
            outcome: Mutex::new(None),
        });
        self.keep(job.clone())?;
        let sources: Vec<Arc<dyn Backend>> = sources.into_iter().map(|(_, b)| b).collect();
        let work = async move {
            let report = match kind {
                JobKind::Verify | JobKind::Repair => {
                    let options = VerifyOptions {
                        repair: kind == JobKind::Repair,
                        throttle,
                        checkpoint,
                        progress,
                        ..VerifyOptions::default()
                    };
                    mux_sync::verify(&sources, prefix, &options)
                        .await
                        .map(|r| serde_json::to_value(r).unwrap_or_default())
                }
                JobKind::Backfill => {
                    let options = BackfillOptions {
                        throttle,
                        checkpoint,
                        progress,
                        ..BackfillOptions::default()
                    };
                    let (_, target) = target.expect("a backfill has a target (checked above)");
                    mux_sync::backfill(target, &sources, prefix, &options)
                        .await
                        .map(|r| serde_json::to_value(r).unwrap_or_default())
                }
                JobKind::Gc => {
                    let options = GcOptions {
                        grace,
                        throttle,
                        progress,
                        ..GcOptions::default()
                    };
                    mux_sync::collect_garbage(&sources, prefix, &options)
                        .await
                        .map(|r| serde_json::to_value(r).unwrap_or_default())
                }
                JobKind::Rekey => unreachable!("rekey jobs start in start_rekey"),
            };
            report.map_err(|e| e.to_string())
        };
        self.launch(&job, work);
        tracing::info!(job = %job.id, kind = kind.name(), prefix = %job.prefix, backends = ?job.backends, target = ?job.target, "job started");
        Ok(job.view())
    }

    /// Runs `work` in the background and records its outcome on `job`.
    fn launch(
        &self,
        job: &Arc<Job>,
        work: impl Future<Output = Result<serde_json::Value, String>> + Send + 'static,
    ) {
        let handle = tokio::spawn(work);
        let watched = job.clone();
        tokio::spawn(async move {
            let result = match handle.await {
                Ok(result) => result,
                Err(e) => Err(format!("the job stopped unexpectedly: {e}")),
            };
            match &result {
                Ok(_) => {
                    tracing::info!(job = %watched.id, kind = watched.kind.name(), prefix = %watched.prefix, "job done")
                }
                Err(e) => {
                    tracing::warn!(job = %watched.id, kind = watched.kind.name(), prefix = %watched.prefix, error = %e, "job failed")
                }
            }
            watched.finish(result);
        });
    }

    fn next_id(&self) -> String {
        format!(
            "{}-{:08x}",
            self.next.fetch_add(1, Ordering::Relaxed),
            self.boot
        )
    }

    /// Keeps `job`, dropping the oldest finished job beyond [`KEPT`]. Refuses a job
    /// whose checkpoint a running job is using (the same job, started twice).
    fn keep(&self, job: Arc<Job>) -> Result<(), ServiceError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(twin) = jobs
            .iter()
            .find(|j| job.checkpoint.is_some() && j.checkpoint == job.checkpoint && j.running())
        {
            return Err(ServiceError::from(mux::Error::new(
                ErrorKind::Conflict,
                format!(
                    "job {} is running the same job with the same checkpoint: wait for it (GET /v1/admin/jobs/{})",
                    twin.id, twin.id
                ),
            )));
        }
        while jobs.len() >= KEPT {
            match jobs.iter().position(|j| !j.running()) {
                Some(i) => {
                    jobs.remove(i);
                }
                None => {
                    return Err(ServiceError::from(mux::Error::new(
                        ErrorKind::Overloaded,
                        format!(
                            "{KEPT} jobs are running: wait for one to finish before starting another"
                        ),
                    )));
                }
            }
        }
        jobs.push_back(job);
        Ok(())
    }
}

/// 64-bit FNV-1a: a stable name for a job's checkpoint file.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where checkpoints are kept: next to this node's intent log when it is a file (the
/// node's own state), else in the system's temporary directory.
fn checkpoint_dir(config: &crate::ServerConfig) -> PathBuf {
    match &config.intent_log {
        Some(IntentLogSpec::File(path)) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("muxd-jobs"),
        _ => std::env::temp_dir().join("muxd-jobs"),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The backends of the route `prefix` itself falls in: a stored tenant key
/// (`tenants/<t>/<key>`) routes as tenant `t`'s `<key>`.
fn route_of(mux: &Mux, prefix: &Prefix) -> Result<Vec<String>, ServiceError> {
    let text = prefix.as_str().trim_end_matches('/');
    if text.is_empty() {
        return Err(invalid(
            "the empty prefix spans every route: name the stores with \"backends\" (mux: --backends a,b)",
        ));
    }
    let tenant = text
        .strip_prefix(TENANTS_ROOT)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(t, key)| Some((Tenant::new(t).ok()?, Key::new(key).ok()?)));
    let (key, options) = match tenant {
        Some((tenant, key)) => (
            key,
            ReadOptions {
                tenant: Some(tenant),
                ..ReadOptions::default()
            },
        ),
        None => (Key::new(text)?, ReadOptions::default()),
    };
    Ok(mux
        .route_backends(&key, &options)
        .iter()
        .map(|n| n.to_string())
        .collect())
}

/// A store and its name.
type Named = (String, Arc<dyn Backend>);

/// The stores called `names` (each once).
fn resolve(
    mux: &Mux,
    config: &crate::ServerConfig,
    names: &[String],
) -> Result<Vec<Named>, ServiceError> {
    let mut stores: Vec<Named> = Vec::with_capacity(names.len());
    for name in names {
        if stores.iter().any(|(n, _)| n == name) {
            return Err(invalid(format!("backend {name} is named twice")));
        }
        let Some(backend) = mux.backend(name) else {
            let known: Vec<String> = config.backends.iter().map(|s| s.name.clone()).collect();
            return Err(invalid(format!(
                "no backend is called \"{name}\" (the backends are {})",
                list(&known)
            )));
        };
        stores.push((name.clone(), backend.clone()));
    }
    Ok(stores)
}

/// `backends=a,b` as names (empty parts ignored).
fn names(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_are_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn backend_lists_ignore_blanks() {
        assert_eq!(names("a, b,,"), ["a", "b"]);
        assert!(names("").is_empty());
    }
}
