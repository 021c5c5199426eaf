//! Start-up: the newest checkpoint, then every segment after it, frame by frame.
//!
//! A segment before the newest is complete: it was sealed and synced before the next
//! one was created, so damage in it (or a missing seal) is corruption and start-up
//! refuses it; bytes after its seal are left over from the file's earlier use. The
//! newest segment may end in a torn append (a crash mid-write): everything from the
//! first frame that is cut short or fails its CRC is unacknowledged (an acknowledged
//! frame was synced with everything before it), so it is zeroed and appending
//! continues there.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use mux_core::Result;

use crate::frame::{self, Body, Read};
use crate::state::{FileId, Limits, Loc, State, io_error};
use crate::syncer::{self, PREPARED};

/// What start-up found: the state and where appending continues.
pub(crate) struct Recovered {
    pub(crate) state: State,
    pub(crate) file: Arc<File>,
}

/// Reads the log in `dir` (creating it when new) into memory.
pub(crate) fn recover(dir: &Path, limits: Limits) -> Result<Recovered> {
    let mut files = BTreeSet::new();
    let listing = std::fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            // An unfinished checkpoint or segment: never renamed, so never used.
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| io_error("deleting", &p, e))?;
        } else if let Some(id) = FileId::parse(&name) {
            files.insert(id);
        }
    }
    let checkpoint = files
        .iter()
        .filter_map(|f| match f {
            FileId::Checkpoint(n) => Some(*n),
            FileId::Segment(_) => None,
        })
        .max();
    let mut state = State::default();
    let first = checkpoint.unwrap_or_else(|| {
        files
            .iter()
            .find_map(|f| match f {
                FileId::Segment(n) => Some(*n),
                FileId::Checkpoint(_) => None,
            })
            .unwrap_or(0)
    });
    if let Some(n) = checkpoint {
        let id = FileId::Checkpoint(n);
        read_checkpoint(dir, id, &mut state)?;
    }
    // Files the checkpoint covers are leftovers of a crash before they were deleted.
    for f in files.iter().filter(|f| syncer::older_than(**f, first)) {
        let p = f.path(dir);
        std::fs::remove_file(&p).map_err(|e| io_error("deleting", &p, e))?;
    }
    let segments: Vec<u64> = files
        .iter()
        .filter_map(|f| match f {
            FileId::Segment(n) if *n >= first => Some(*n),
            _ => None,
        })
        .collect();
    for pair in segments.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(frame::corrupt(
                &FileId::Segment(pair[0] + 1).path(dir),
                0,
                "this segment is missing between two others",
            ));
        }
    }
    let last = segments.last().copied().unwrap_or(first);
    if segments.is_empty() {
        let path = FileId::Segment(last).path(dir);
        let prepared = dir.join(PREPARED);
        syncer::prepare(&prepared, limits.segment_bytes)
            .map_err(|e| io_error("preparing", &prepared, e))?;
        std::fs::rename(&prepared, &path).map_err(|e| io_error("renaming", &prepared, e))?;
        syncer::sync_dir(dir)?;
    }
    let mut tail = 0;
    let mut sealed = false;
    for &n in segments.iter().chain(segments.is_empty().then_some(&last)) {
        let id = FileId::Segment(n);
        let path = id.path(dir);
        let file = Arc::new(syncer::open_rw(&path)?);
        let bytes = read_all(&file, &path)?;
        let end = replay(&bytes, id, &mut state);
        sealed = end.sealed;
        if n != last && !end.sealed {
            let what = end.bad.unwrap_or_else(|| "it ends without a seal".into());
            return Err(frame::corrupt(&path, end.at, &what));
        }
        let rest = &bytes[end.at as usize..];
        if n == last && !end.sealed && rest.iter().any(|b| *b != 0) {
            // A torn append, or frames left from the file's earlier use: zeroed, so
            // nothing after the frames written next can pass as theirs.
            zero_from(&file, end.at, bytes.len() as u64, &path)?;
        }
        state.files.insert(id, file);
        tail = end.at;
    }
    let mut last = last;
    if sealed {
        // The newest segment was sealed, and the crash came before the next existed.
        last += 1;
        let id = FileId::Segment(last);
        let path = id.path(dir);
        let prepared = dir.join(PREPARED);
        syncer::prepare(&prepared, limits.segment_bytes)
            .map_err(|e| io_error("preparing", &prepared, e))?;
        std::fs::rename(&prepared, &path).map_err(|e| io_error("renaming", &prepared, e))?;
        syncer::sync_dir(dir)?;
        state.files.insert(id, Arc::new(syncer::open_rw(&path)?));
        tail = 0;
    }
    if let Some(n) = checkpoint {
        let id = FileId::Checkpoint(n);
        let path = id.path(dir);
        let file = File::open(&path).map_err(|e| io_error("opening", &path, e))?;
        state.files.insert(id, Arc::new(file));
    }
    state.segment = last;
    state.offset = tail;
    let file = state.files[&FileId::Segment(last)].clone();
    Ok(Recovered { state, file })
}

/// Where the frames of a file end.
struct End {
    /// The offset after the last frame applied.
    at: u64,
    /// The frames ended with a seal.
    sealed: bool,
    /// They ended at a bad frame (rather than at zeros, a seal or the file's end).
    bad: Option<String>,
}

/// Applies the frames of one file up to its first zeros, seal or bad frame.
fn replay(bytes: &Bytes, id: FileId, state: &mut State) -> End {
    let mut at = 0usize;
    let end = |at: usize, sealed, bad| End {
        at: at as u64,
        sealed,
        bad,
    };
    while at < bytes.len() {
        match frame::decode(&bytes.slice(at..), id.crc_no()) {
            Read::Frame {
                body: Body::Seal,
                len,
            } => return end(at + len, true, None),
            Read::Frame { body, len } => {
                let loc = Loc {
                    file: id,
                    offset: at as u64,
                    len: len as u32,
                };
                state.apply(&body, loc);
                at += len;
            }
            Read::End => return end(at, false, None),
            Read::Bad(what) => return end(at, false, Some(what)),
        }
    }
    end(at, false, None)
}

fn read_checkpoint(dir: &Path, id: FileId, state: &mut State) -> Result<()> {
    let path = id.path(dir);
    let file = File::open(&path).map_err(|e| io_error("opening", &path, e))?;
    let bytes = read_all(&file, &path)?;
    let first_is_meta = matches!(
        frame::decode(&bytes, id.crc_no()),
        Read::Frame {
            body: Body::Meta { .. },
            ..
        }
    );
    let End { at: end, bad, .. } = replay(&bytes, id, state);
    let ended = end as usize == bytes.len()
        && bytes.len() > frame::HEADER
        && matches!(
            frame::decode(&bytes.slice(bytes.len() - frame::HEADER - 1..), id.crc_no()),
            Read::Frame {
                body: Body::End,
                ..
            }
        );
    match bad {
        Some(what) => Err(frame::corrupt(&path, end, &what)),
        None if !first_is_meta || !ended => Err(frame::corrupt(
            &path,
            end,
            "a checkpoint must start with its ids and end with an end frame",
        )),
        None => Ok(()),
    }
}

fn read_all(file: &File, path: &Path) -> Result<Bytes> {
    let len = file
        .metadata()
        .map_err(|e| io_error("reading", path, e))?
        .len();
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| io_error("reading", path, e))?;
    Ok(Bytes::from(buf))
}

/// Zeroes `file` from `from` to `to` and syncs it, so no remnant of a torn append is
/// read after frames written later.
fn zero_from(file: &File, from: u64, to: u64, path: &Path) -> Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| io_error("zeroing the torn end of", path, e))?;
        at += n as u64;
    }
    file.sync_data().map_err(|e| io_error("syncing", path, e))
}
