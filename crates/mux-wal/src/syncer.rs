//! The syncer thread: writes queued frames and makes them durable by group commit.
//!
//! Writers queue frames and wait; the syncer takes everything queued, writes it with
//! one `pwrite`, and calls `fdatasync` once for every writer waiting. While it syncs,
//! the next batch forms in the queue. Completions are queued without a waiter: they are
//! written with the next batch (or within [`IDLE_FLUSH`]) but never synced on their own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mux_core::Result;

use crate::Inner;
use crate::frame::{self, Body};
use crate::state::{FileId, Loc, Op, Snapshot, State, io_error, read_at};

/// How long queued completions may wait for a batch to carry them.
const IDLE_FLUSH: Duration = Duration::from_millis(20);

/// The file the next segment is prepared in.
pub(crate) const PREPARED: &str = "next-segment.tmp";

/// The syncer's own position: the open segment and how much of it is written.
pub(crate) struct Cursor {
    pub(crate) segment: u64,
    pub(crate) file: Arc<File>,
    pub(crate) written: u64,
    pub(crate) prepared: Option<JoinHandle<std::io::Result<()>>>,
}

/// Runs until the log is dropped.
pub(crate) fn run(inner: Arc<Inner>, mut cursor: Cursor) {
    loop {
        let (ops, waiters) = {
            let mut s = inner.lock();
            // Wake for a waiter; completions alone wait up to IDLE_FLUSH for company.
            while s.waiters.is_empty() && !s.shutdown {
                let (g, timeout) = inner
                    .work
                    .wait_timeout(s, IDLE_FLUSH)
                    .unwrap_or_else(|p| p.into_inner());
                s = g;
                if timeout.timed_out() && !s.queue.is_empty() {
                    break;
                }
            }
            if s.queue.is_empty() && s.waiters.is_empty() {
                if s.shutdown {
                    return;
                }
                continue;
            }
            let ops = std::mem::take(&mut s.queue);
            let waiters = std::mem::take(&mut s.waiters);
            if let Some(why) = &s.failed {
                // A failed log writes nothing more; its callers were refused already.
                let e = mux_core::Error::new(mux_core::ErrorKind::Unavailable, why.clone());
                drop(s);
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
                continue;
            }
            (ops, waiters)
        };
        let result = write(&inner, &mut cursor, ops, !waiters.is_empty());
        if let Err(e) = &result {
            inner.lock().failed = Some(e.message().to_owned());
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Writes `ops` in order; syncs the segment at the end when someone waits.
fn write(inner: &Inner, cursor: &mut Cursor, ops: Vec<Op>, sync: bool) -> Result<()> {
    let dir = &inner.dir;
    for op in ops {
        match op {
            Op::Bytes(bytes) => {
                let path = FileId::Segment(cursor.segment).path(dir);
                cursor
                    .file
                    .write_all_at(&bytes, cursor.written)
                    .map_err(|e| io_error("writing", &path, e))?;
                cursor.written += bytes.len() as u64;
            }
            Op::Rotate { to, snapshot } => {
                rotate(inner, cursor, to)?;
                if let Some(snapshot) = snapshot {
                    let stale = checkpoint(inner, to, snapshot)?;
                    drop_files(inner, cursor, stale)?;
                }
                if cursor.prepared.is_none() && !dir.join(PREPARED).exists() {
                    cursor.prepared = Some(spawn_prepare(dir, inner.limits.segment_bytes));
                }
            }
        }
    }
    if sync {
        let path = FileId::Segment(cursor.segment).path(dir);
        cursor
            .file
            .sync_data()
            .map_err(|e| io_error("syncing", &path, e))?;
        inner.syncs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Seals and syncs the current segment (so no later frame is durable before it) and
/// opens segment `to` from the spare file: a recycled segment, or a zero-filled one.
fn rotate(inner: &Inner, cursor: &mut Cursor, to: u64) -> Result<()> {
    let dir = &inner.dir;
    let old = FileId::Segment(cursor.segment);
    let seal = frame::sealed(old.crc_no(), &Body::Seal);
    cursor
        .file
        .write_all_at(&seal, cursor.written)
        .and_then(|()| cursor.file.sync_data())
        .map_err(|e| io_error("sealing", &old.path(dir), e))?;
    inner.syncs.fetch_add(1, Ordering::Relaxed);
    let spare = dir.join(PREPARED);
    let ready = match cursor.prepared.take() {
        Some(h) => h
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("panicked"))),
        None if spare.exists() => Ok(()),
        None => Err(std::io::Error::other("no spare")),
    };
    if ready.is_err() {
        prepare(&spare, inner.limits.segment_bytes)
            .map_err(|e| io_error("preparing", &spare, e))?;
    }
    let id = FileId::Segment(to);
    let path = id.path(dir);
    std::fs::rename(&spare, &path).map_err(|e| io_error("renaming", &spare, e))?;
    sync_dir(dir)?;
    let file = Arc::new(open_rw(&path)?);
    inner.lock().files.insert(id, file.clone());
    cursor.segment = to;
    cursor.file = file;
    cursor.written = 0;
    Ok(())
}

/// Deletes files a checkpoint covers; one segment is kept as the next spare instead
/// (its old frames fail the CRC under its new number), so a rotation writes no zeros.
fn drop_files(inner: &Inner, cursor: &Cursor, stale: Vec<FileId>) -> Result<()> {
    let dir = &inner.dir;
    let spare = dir.join(PREPARED);
    let mut need_spare = cursor.prepared.is_none() && !spare.exists();
    for f in stale {
        let p = f.path(dir);
        if need_spare && matches!(f, FileId::Segment(_)) {
            std::fs::rename(&p, &spare).map_err(|e| io_error("recycling", &p, e))?;
            need_spare = false;
        } else {
            std::fs::remove_file(&p).map_err(|e| io_error("deleting", &p, e))?;
        }
    }
    Ok(())
}

/// Writes checkpoint `to` from `snapshot` and moves the live entries to it; returns
/// the older files, which it makes redundant.
fn checkpoint(inner: &Inner, to: u64, snapshot: Snapshot) -> Result<Vec<FileId>> {
    let dir = &inner.dir;
    let id = FileId::Checkpoint(to);
    let crc = id.crc_no();
    let mut out = frame::sealed(
        crc,
        &Body::Meta {
            next_id: snapshot.next_id,
            next_dead: snapshot.next_dead,
        },
    );
    let mut moved: Vec<(bool, u64, Loc)> = Vec::new();
    let read = |loc: Loc| -> Result<Body> {
        let file = inner.lock().file(loc, dir)?;
        read_at(&file, loc, dir)
    };
    for (entry, loc, owed) in snapshot.entries {
        let Body::Append { record, .. } = read(loc)? else {
            return Err(frame::corrupt(
                &loc.file.path(dir),
                loc.offset,
                "not an append",
            ));
        };
        let owed = owed.iter().map(|b| b.to_string()).collect();
        let body = Body::Append {
            id: entry,
            owed,
            record,
        };
        moved.push((false, entry, place(&mut out, crc, &body, id)));
    }
    for (dead, loc) in snapshot.dead {
        let body = read(loc)?;
        moved.push((true, dead, place(&mut out, crc, &body, id)));
    }
    out.extend_from_slice(&frame::sealed(crc, &Body::End));
    let path = id.path(dir);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| io_error("creating", &tmp, e))?;
    file.write_all(&out)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error("renaming", &tmp, e))?;
    sync_dir(dir)?;
    let file = Arc::new(File::open(&path).map_err(|e| io_error("opening", &path, e))?);
    let mut s = inner.lock();
    s.files.insert(id, file);
    for (is_dead, n, loc) in moved {
        if is_dead {
            if let Some(d) = s.dead.get_mut(&n) {
                d.loc = loc;
            }
        } else if let Some(e) = s.entries.get_mut(&n) {
            e.loc = loc;
        }
    }
    let stale: Vec<FileId> = s
        .files
        .keys()
        .copied()
        .filter(|f| older_than(*f, to))
        .collect();
    for f in &stale {
        s.files.remove(f);
    }
    Ok(stale)
}

/// Whether `file` holds nothing checkpoint `to` does not.
pub(crate) fn older_than(file: FileId, to: u64) -> bool {
    match file {
        FileId::Segment(n) | FileId::Checkpoint(n) => n < to,
    }
}

fn place(out: &mut Vec<u8>, crc: u64, body: &Body, file: FileId) -> Loc {
    let offset = out.len() as u64;
    let start = out.len();
    let len = frame::encode(out, body);
    frame::seal(&mut out[start..], crc);
    Loc {
        file,
        offset,
        len: len as u32,
    }
}

/// A zero-filled, synced segment file at `path` (written, not sparse, so appends into
/// it change no file-system metadata and `fdatasync` writes only data).
pub(crate) fn prepare(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Prepares the next segment in the background.
pub(crate) fn spawn_prepare(dir: &Path, bytes: u64) -> JoinHandle<std::io::Result<()>> {
    let path: PathBuf = dir.join(PREPARED);
    std::thread::Builder::new()
        .name("mux-wal-prepare".into())
        .spawn(move || prepare(&path, bytes))
        .expect("spawn a thread")
}

pub(crate) fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_error("opening", path, e))
}

/// Makes the directory's entries (new, renamed and deleted files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing the directory", dir, e))
}

/// Wakes the syncer.
pub(crate) fn notify(inner: &Inner, s: MutexGuard<'_, State>) {
    drop(s);
    inner.work.notify_one();
}
