//! The frame format: every change to the log is one frame, checked by a CRC.
//!
//! ```text
//! frame  = len:u32 crc:u32 body[len]          (little-endian)
//! crc    = CRC-32 (IEEE) of file_no:u64 ‖ len:u32 ‖ body
//! body   = kind:u8 fields…
//! ```
//!
//! The CRC covers the number of the file the frame was written to, so a frame left
//! over in a reused (recycled) or misplaced file never passes as one of this file. A
//! segment the log moved on from ends with a seal frame; zeros or a frame of another
//! file end the newest one.

use bytes::Bytes;
use mux_core::{Error, ErrorKind, Record, Result, codec};

/// The bytes before a frame's body.
pub(crate) const HEADER: usize = 8;

/// The largest body accepted when reading (a bound against a corrupt length).
pub(crate) const MAX_BODY: u32 = 1 << 30;

/// What a frame records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// Entry `id`: `owed` must apply the record.
    Append {
        id: u64,
        owed: Vec<String>,
        record: Bytes,
    },
    /// `backend` applied entry `id`.
    Complete { id: u64, backend: String },
    /// `backend`'s part of entry `id` became dead letter `dead`.
    Dead {
        dead: u64,
        id: u64,
        backend: String,
        error: String,
        attempts: u32,
        failed_at_ms: u64,
        record: Bytes,
    },
    /// Dead letter `dead` was taken (replayed or discarded).
    Take { dead: u64 },
    /// A checkpoint's first frame: the ids the log hands out next.
    Meta { next_id: u64, next_dead: u64 },
    /// A checkpoint's last frame.
    End,
    /// A segment's last frame: the log continues in the next segment (bytes after it
    /// are left over from the file's earlier use).
    Seal,
}

const APPEND: u8 = 1;
const COMPLETE: u8 = 2;
const DEAD: u8 = 3;
const TAKE: u8 = 4;
const META: u8 = 5;
const END: u8 = 6;
const SEAL: u8 = 7;

/// The length of a seal frame (a segment keeps room for it).
pub(crate) const SEAL_LEN: u64 = HEADER as u64 + 1;

/// The encoded record of an append or dead letter.
pub(crate) fn record_bytes(record: &Record) -> Bytes {
    Bytes::from(codec::encode(record))
}

/// Decodes (and checks) a record stored in a frame.
pub(crate) fn decode_record(bytes: Bytes) -> Result<Record> {
    codec::decode(bytes)
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_str32(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends the frame of `body` to `out`, its CRC not yet set (see [`seal`]); returns
/// the frame's length.
pub(crate) fn encode(out: &mut Vec<u8>, body: &Body) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    match body {
        Body::Append { id, owed, record } => {
            out.push(APPEND);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(owed.len() as u16).to_le_bytes());
            for b in owed {
                put_str16(out, b);
            }
            out.extend_from_slice(record);
        }
        Body::Complete { id, backend } => {
            out.push(COMPLETE);
            out.extend_from_slice(&id.to_le_bytes());
            put_str16(out, backend);
        }
        Body::Dead {
            dead,
            id,
            backend,
            error,
            attempts,
            failed_at_ms,
            record,
        } => {
            out.push(DEAD);
            out.extend_from_slice(&dead.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&attempts.to_le_bytes());
            out.extend_from_slice(&failed_at_ms.to_le_bytes());
            put_str16(out, backend);
            put_str32(out, error);
            out.extend_from_slice(record);
        }
        Body::Take { dead } => {
            out.push(TAKE);
            out.extend_from_slice(&dead.to_le_bytes());
        }
        Body::Meta { next_id, next_dead } => {
            out.push(META);
            out.extend_from_slice(&next_id.to_le_bytes());
            out.extend_from_slice(&next_dead.to_le_bytes());
        }
        Body::End => out.push(END),
        Body::Seal => out.push(SEAL),
    }
    let len = (out.len() - start - HEADER) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out.len() - start
}

/// Sets the CRC of the encoded `frame` for file `file_no`, the file it is written to.
pub(crate) fn seal(frame: &mut [u8], file_no: u64) {
    let len = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes"));
    let crc = checksum(file_no, len, &frame[HEADER..]);
    frame[4..HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes and seals one frame for file `file_no`.
pub(crate) fn sealed(file_no: u64, body: &Body) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, body);
    seal(&mut out, file_no);
    out
}

fn checksum(file_no: u64, len: u32, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&file_no.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// What is found at an offset of a file.
#[derive(Debug)]
pub(crate) enum Read {
    /// A valid frame of `len` bytes in all.
    Frame { body: Body, len: usize },
    /// Zeros: nothing was written here.
    End,
    /// A frame cut short or damaged (a torn write or corruption), with what is wrong.
    Bad(String),
}

/// Reads the frame at the start of `bytes`, which were read from file `file_no`.
pub(crate) fn decode(bytes: &Bytes, file_no: u64) -> Read {
    if bytes.len() < HEADER {
        return if bytes.iter().all(|b| *b == 0) {
            Read::End
        } else {
            Read::Bad("a frame header cut short".into())
        };
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if len == 0 && crc == 0 {
        return Read::End;
    }
    if len == 0 || len > MAX_BODY || HEADER + len as usize > bytes.len() {
        return Read::Bad(format!("a frame of {len} bytes does not fit"));
    }
    let body = bytes.slice(HEADER..HEADER + len as usize);
    if checksum(file_no, len, &body) != crc {
        return Read::Bad("a frame fails its CRC".into());
    }
    match parse(body) {
        Ok(body) => Read::Frame {
            body,
            len: HEADER + len as usize,
        },
        Err(what) => Read::Bad(format!("a frame with a valid CRC is malformed: {what}")),
    }
}

struct Cursor {
    bytes: Bytes,
    at: usize,
}

impl Cursor {
    fn take(&mut self, n: usize) -> std::result::Result<Bytes, &'static str> {
        if self.at + n > self.bytes.len() {
            return Err("too short");
        }
        let out = self.bytes.slice(self.at..self.at + n);
        self.at += n;
        Ok(out)
    }
    fn u8(&mut self) -> std::result::Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> std::result::Result<u16, &'static str> {
        Ok(u16::from_le_bytes(self.take(2)?[..].try_into().expect("2")))
    }
    fn u32(&mut self) -> std::result::Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?[..].try_into().expect("4")))
    }
    fn u64(&mut self) -> std::result::Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?[..].try_into().expect("8")))
    }
    fn string(&mut self, n: usize) -> std::result::Result<String, &'static str> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8")
    }
    fn rest(&mut self) -> Bytes {
        let out = self.bytes.slice(self.at..);
        self.at = self.bytes.len();
        out
    }
    fn done(&self) -> std::result::Result<(), &'static str> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }
}

fn parse(bytes: Bytes) -> std::result::Result<Body, &'static str> {
    let mut c = Cursor { bytes, at: 0 };
    let body = match c.u8()? {
        APPEND => {
            let id = c.u64()?;
            let n = c.u16()?;
            let mut owed = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let len = c.u16()?;
                owed.push(c.string(usize::from(len))?);
            }
            Body::Append {
                id,
                owed,
                record: c.rest(),
            }
        }
        COMPLETE => {
            let id = c.u64()?;
            let len = c.u16()?;
            Body::Complete {
                id,
                backend: c.string(usize::from(len))?,
            }
        }
        DEAD => {
            let dead = c.u64()?;
            let id = c.u64()?;
            let attempts = c.u32()?;
            let failed_at_ms = c.u64()?;
            let len = c.u16()?;
            let backend = c.string(usize::from(len))?;
            let len = c.u32()?;
            let error = c.string(len as usize)?;
            Body::Dead {
                dead,
                id,
                backend,
                error,
                attempts,
                failed_at_ms,
                record: c.rest(),
            }
        }
        TAKE => Body::Take { dead: c.u64()? },
        META => Body::Meta {
            next_id: c.u64()?,
            next_dead: c.u64()?,
        },
        END => Body::End,
        SEAL => Body::Seal,
        _ => return Err("unknown frame kind"),
    };
    c.done()?;
    Ok(body)
}

/// An error naming a damaged log file.
pub(crate) fn corrupt(path: &std::path::Path, offset: u64, what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "intent log file {} is damaged at byte {offset}: {what}; it is not the torn end \
             of the newest segment, so entries after it cannot be trusted — restore the \
             directory from a backup or move the file away to start without its entries",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(body: Body) {
        let out = sealed(7, &body);
        let n = out.len();
        match decode(&Bytes::from(out.clone()), 7) {
            Read::Frame { body: got, len } => {
                assert_eq!(got, body);
                assert_eq!(len, n);
            }
            other => panic!("{other:?}"),
        }
        // The same bytes read as another file's fail the CRC.
        assert!(matches!(decode(&Bytes::from(out), 8), Read::Bad(_)));
    }

    #[test]
    fn every_kind_round_trips() {
        roundtrip(Body::Append {
            id: 3,
            owed: vec!["a".into(), "bb".into()],
            record: Bytes::from_static(b"{}\nxyz"),
        });
        roundtrip(Body::Complete {
            id: u64::MAX,
            backend: "redis".into(),
        });
        roundtrip(Body::Dead {
            dead: 1,
            id: 2,
            backend: "s3".into(),
            error: "timed out".into(),
            attempts: 5,
            failed_at_ms: 99,
            record: Bytes::from_static(b"r"),
        });
        roundtrip(Body::Take { dead: 4 });
        roundtrip(Body::Meta {
            next_id: 1,
            next_dead: 2,
        });
        roundtrip(Body::End);
        roundtrip(Body::Seal);
    }

    #[test]
    fn zeros_end_and_every_cut_or_flip_is_caught() {
        assert!(matches!(decode(&Bytes::from(vec![0u8; 64]), 1), Read::End));
        assert!(matches!(decode(&Bytes::new(), 1), Read::End));
        let out = sealed(
            1,
            &Body::Complete {
                id: 9,
                backend: "b".into(),
            },
        );
        for cut in 1..out.len() {
            let r = decode(&Bytes::copy_from_slice(&out[..cut]), 1);
            assert!(matches!(r, Read::Bad(_)), "cut at {cut}: {r:?}");
        }
        for at in 0..out.len() {
            let mut bad = out.clone();
            bad[at] ^= 0x40;
            let r = decode(&Bytes::from(bad), 1);
            assert!(matches!(r, Read::Bad(_)), "flip at {at}: {r:?}");
        }
    }
}
