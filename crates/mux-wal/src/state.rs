//! What the log holds, in memory: where each live entry and dead letter is on disk, and
//! the frames queued for the syncer.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use mux_core::{Error, ErrorKind, Result};
use tokio::sync::oneshot;

use crate::frame::{self, Body, Read};

/// A log file: a segment or a checkpoint, by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FileId {
    /// `seg-N.wal`.
    Segment(u64),
    /// `ckpt-N.wal`: the state as of the start of segment N.
    Checkpoint(u64),
}

impl FileId {
    /// The number the frames' CRC covers (a checkpoint's differs from its segment's).
    pub(crate) fn crc_no(self) -> u64 {
        match self {
            FileId::Segment(n) => n,
            FileId::Checkpoint(n) => n | 1 << 63,
        }
    }

    /// The file's path in `dir`.
    pub(crate) fn path(self, dir: &Path) -> PathBuf {
        match self {
            FileId::Segment(n) => dir.join(format!("seg-{n:016x}.wal")),
            FileId::Checkpoint(n) => dir.join(format!("ckpt-{n:016x}.wal")),
        }
    }

    /// The file named `name`, if it is one of the log's.
    pub(crate) fn parse(name: &str) -> Option<FileId> {
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let stem = name.strip_suffix(".wal")?;
        if let Some(n) = stem.strip_prefix("seg-") {
            return hex(n).map(FileId::Segment);
        }
        stem.strip_prefix("ckpt-")
            .and_then(hex)
            .map(FileId::Checkpoint)
    }
}

/// Where a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) file: FileId,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// A live entry: where its append frame is and who still owes it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) loc: Loc,
    pub(crate) owed: Vec<Arc<str>>,
}

/// A dead letter: where its frame (with the record) is.
#[derive(Debug)]
pub(crate) struct Dead {
    pub(crate) loc: Loc,
}

/// Work for the syncer, in log order.
#[derive(Debug)]
pub(crate) enum Op {
    /// Frames to append to the current segment.
    Bytes(Vec<u8>),
    /// Close the current segment and continue in segment `to`; with a snapshot of the
    /// state as of the start of `to`, write checkpoint `to` and drop older files.
    Rotate { to: u64, snapshot: Option<Snapshot> },
}

/// The state as of a position, for a checkpoint.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) next_id: u64,
    pub(crate) next_dead: u64,
    pub(crate) entries: Vec<(u64, Loc, Vec<Arc<str>>)>,
    pub(crate) dead: Vec<(u64, Loc)>,
}

/// The log's state, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) entries: BTreeMap<u64, Entry>,
    pub(crate) dead: BTreeMap<u64, Dead>,
    pub(crate) next_id: u64,
    pub(crate) next_dead: u64,
    /// Bytes of the frames live entries and dead letters are in.
    pub(crate) live_bytes: u64,
    /// The segment being appended to and its length with every queued frame.
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) queue: Vec<Op>,
    pub(crate) waiters: Vec<oneshot::Sender<Result<()>>>,
    /// Open files, for reading frames back.
    pub(crate) files: HashMap<FileId, Arc<File>>,
    /// Set when a write or sync failed: the log refuses everything after.
    pub(crate) failed: Option<String>,
    pub(crate) shutdown: bool,
}

/// The sizes that decide rotation and checkpoints.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) segment_bytes: u64,
    pub(crate) checkpoint_max_bytes: u64,
}

impl State {
    /// Fails when an earlier write or sync failed.
    pub(crate) fn usable(&self, dir: &Path) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the intent log in {} stopped after a failed write or sync ({why}); \
                     restart the process to recover it from disk",
                    dir.display()
                ),
            )),
        }
    }

    /// Queues `frame` (encoded, not sealed) at the end of the log, rotating first when
    /// it does not fit the current segment; returns where it goes.
    pub(crate) fn push(&mut self, mut frame: Vec<u8>, limits: Limits) -> Loc {
        let len = frame.len() as u64;
        if self.offset > 0 && self.offset + len + frame::SEAL_LEN > limits.segment_bytes {
            self.rotate(limits);
        }
        let file = FileId::Segment(self.segment);
        frame::seal(&mut frame, file.crc_no());
        let loc = Loc {
            file,
            offset: self.offset,
            len: len as u32,
        };
        self.offset += len;
        match self.queue.last_mut() {
            Some(Op::Bytes(buf)) => buf.extend_from_slice(&frame),
            _ => self.queue.push(Op::Bytes(frame)),
        }
        loc
    }

    /// Starts the next segment; snapshots the state for a checkpoint when it is small
    /// enough to copy (otherwise the older segments stay until a later rotation).
    fn rotate(&mut self, limits: Limits) {
        self.segment += 1;
        self.offset = 0;
        let snapshot = (self.live_bytes <= limits.checkpoint_max_bytes).then(|| Snapshot {
            next_id: self.next_id,
            next_dead: self.next_dead,
            entries: self
                .entries
                .iter()
                .map(|(id, e)| (*id, e.loc, e.owed.clone()))
                .collect(),
            dead: self.dead.iter().map(|(id, d)| (*id, d.loc)).collect(),
        });
        self.queue.push(Op::Rotate {
            to: self.segment,
            snapshot,
        });
    }

    /// Applies a frame read back (start-up replay) found at `loc`.
    pub(crate) fn apply(&mut self, body: &Body, loc: Loc) {
        match body {
            Body::Append { id, owed, .. } => {
                if let Some(old) = self.entries.remove(id) {
                    self.live_bytes -= u64::from(old.loc.len);
                }
                if !owed.is_empty() {
                    self.live_bytes += u64::from(loc.len);
                    let owed = owed.iter().map(|b| Arc::from(b.as_str())).collect();
                    self.entries.insert(*id, Entry { loc, owed });
                }
                self.next_id = self.next_id.max(id + 1);
            }
            Body::Complete { id, backend } => self.complete(*id, backend),
            Body::Dead {
                dead, id, backend, ..
            } => {
                self.complete(*id, backend);
                self.live_bytes += u64::from(loc.len);
                self.dead.insert(*dead, Dead { loc });
                self.next_dead = self.next_dead.max(dead + 1);
            }
            Body::Take { dead } => self.take(*dead).map_or((), |_| ()),
            Body::Meta { next_id, next_dead } => {
                self.next_id = self.next_id.max(*next_id);
                self.next_dead = self.next_dead.max(*next_dead);
            }
            Body::End | Body::Seal => {}
        }
    }

    /// `backend` applied entry `id`; the entry goes once nobody owes it.
    pub(crate) fn complete(&mut self, id: u64, backend: &str) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.owed.retain(|b| &**b != backend);
            if entry.owed.is_empty() {
                let len = entry.loc.len;
                self.entries.remove(&id);
                self.live_bytes -= u64::from(len);
            }
        }
    }

    /// Removes dead letter `id`.
    pub(crate) fn take(&mut self, id: u64) -> Option<Dead> {
        let dead = self.dead.remove(&id)?;
        self.live_bytes -= u64::from(dead.loc.len);
        Some(dead)
    }

    /// The open file holding `loc`.
    pub(crate) fn file(&self, loc: Loc, dir: &Path) -> Result<Arc<File>> {
        self.files.get(&loc.file).cloned().ok_or_else(|| {
            Error::internal(format!(
                "intent log file {} is not open",
                loc.file.path(dir).display()
            ))
        })
    }
}

/// Reads the frame at `loc` back from `file`.
pub(crate) fn read_at(file: &File, loc: Loc, dir: &Path) -> Result<Body> {
    let mut buf = vec![0u8; loc.len as usize];
    file.read_exact_at(&mut buf, loc.offset)
        .map_err(|e| io_error("reading", &loc.file.path(dir), e))?;
    match frame::decode(&Bytes::from(buf), loc.file.crc_no()) {
        Read::Frame { body, .. } => Ok(body),
        Read::End => Err(frame::corrupt(
            &loc.file.path(dir),
            loc.offset,
            "a frame the log wrote reads back as zeros",
        )),
        Read::Bad(what) => Err(frame::corrupt(&loc.file.path(dir), loc.offset, &what)),
    }
}

/// An I/O error on a log file, naming it.
pub(crate) fn io_error(doing: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("intent log: {doing} {} failed: {e}", path.display()),
    )
    .with_source(e)
}
