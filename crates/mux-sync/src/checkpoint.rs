//! Where a job got to: live progress counters and a resumable checkpoint file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mux_core::{Error, ErrorKind, Key, Result};
use serde::{Deserialize, Serialize};

/// Live counters of a running job, shared with whoever shows progress (the CLI's
/// progress bar, muxd's admin API). All counts only grow.
#[derive(Debug, Default)]
pub struct Progress {
    checked: AtomicU64,
    divergent: AtomicU64,
    written: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    last_key: Mutex<Option<Key>>,
}

/// A copy of [`Progress`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressSnapshot {
    /// Keys compared (verify, GC) or considered (backfill, export, import).
    pub checked: u64,
    /// Keys found to differ between stores.
    pub divergent: u64,
    /// Keys written (repaired, copied, purged, imported, exported).
    pub written: u64,
    /// Keys left alone (already current, superseded, not yet collectable).
    pub skipped: u64,
    /// Keys that failed.
    pub failed: u64,
    /// The last key whose range is done (`None`: nothing yet).
    pub last_key: Option<String>,
}

impl Progress {
    /// Counts keys checked. (Jobs outside mux-sync, such as muxd's rekey, report through it too.)
    pub fn checked(&self, n: u64) {
        self.checked.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts divergent keys. (Jobs outside mux-sync, such as muxd's rekey, report through it too.)
    pub fn divergent(&self, n: u64) {
        self.divergent.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts keys written. (Jobs outside mux-sync, such as muxd's rekey, report through it too.)
    pub fn written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts keys left alone. (Jobs outside mux-sync, such as muxd's rekey, report through it too.)
    pub fn skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts keys that failed. (Jobs outside mux-sync, such as muxd's rekey, report through it too.)
    pub fn failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
    }
    /// Records that every key up to `key` is done.
    pub fn done_through(&self, key: Option<&Key>) {
        if let Some(key) = key {
            *self.last_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            checked: self.checked.load(Ordering::Relaxed),
            divergent: self.divergent.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_key: self
                .last_key
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|k| k.as_str().to_owned()),
        }
    }
}

/// A job's checkpoint: a small JSON file naming the job and the last key whose range
/// is done. A job given a checkpoint resumes after that key and rewrites the file (by
/// an atomic rename) each time it finishes a range; a checkpoint of another job or
/// prefix is refused, so a resume never skips keys it was not asked about.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    path: PathBuf,
    job: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    job: String,
    last_key: Option<String>,
    progress: ProgressSnapshot,
}

impl Checkpoint {
    /// A checkpoint at `path` for the job described by `job` (e.g.
    /// `verify prefix=a/ backends=pg,redis`): resuming checks it matches.
    pub fn new(path: impl Into<PathBuf>, job: impl Into<String>) -> Checkpoint {
        Checkpoint {
            path: path.into(),
            job: job.into(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key to resume after (`None`: start from the beginning; also when there is
    /// no file yet).
    pub fn load(&self) -> Result<Option<Key>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("cannot read the checkpoint {}: {e}", self.path.display()),
                ));
            }
        };
        let saved: Saved = serde_json::from_str(&text).map_err(|e| {
            Error::invalid_input(format!(
                "the checkpoint {} is not a mux checkpoint ({e}): delete it to start over",
                self.path.display()
            ))
        })?;
        if saved.job != self.job {
            return Err(Error::invalid_input(format!(
                "the checkpoint {} belongs to another job (\"{}\", this is \"{}\"): delete it or give another path",
                self.path.display(),
                saved.job,
                self.job
            )));
        }
        saved.last_key.map(Key::new).transpose()
    }

    /// Records that every key up to `last_key` is done.
    pub fn save(&self, last_key: Option<&Key>, progress: &Progress) -> Result<()> {
        let saved = Saved {
            job: self.job.clone(),
            last_key: last_key.map(|k| k.as_str().to_owned()),
            progress: progress.snapshot(),
        };
        let text =
            serde_json::to_string_pretty(&saved).map_err(|e| Error::internal(e.to_string()))?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot write the checkpoint {}: {e}", self.path.display()),
                )
            })
    }

    /// Removes the file (the job finished).
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::new(
                ErrorKind::Internal,
                format!("cannot remove the checkpoint {}: {e}", self.path.display()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_refuses_another_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let cp = Checkpoint::new(&path, "verify a/");
        assert_eq!(cp.load().unwrap(), None);
        let p = Progress::default();
        p.checked(3);
        cp.save(Some(&Key::new("a/3").unwrap()), &p).unwrap();
        assert_eq!(cp.load().unwrap(), Some(Key::new("a/3").unwrap()));
        let other = Checkpoint::new(&path, "backfill a/");
        let err = other.load().unwrap_err().to_string();
        assert!(err.contains("another job"), "{err}");
        cp.clear().unwrap();
        assert_eq!(cp.load().unwrap(), None);
    }
}
