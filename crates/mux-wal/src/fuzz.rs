//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API.
//!
//! Input: a mode byte, then bytes. Mode 0 reads the bytes as a segment file (frames
//! one after another, as recovery does); any other mode takes them as one frame's body
//! and gives it a valid header and CRC first, so the fuzzer reaches the body parser
//! without having to forge CRCs.

use bytes::Bytes;
use mux_core::Record;

use crate::frame::{Body, HEADER, Read, decode, decode_record, record_bytes, seal, sealed};

/// A segment holding one frame of each kind, carrying `record` (a seed).
pub fn seed(record: &Record) -> Vec<u8> {
    let bodies = [
        Body::Meta {
            next_id: 7,
            next_dead: 2,
        },
        Body::Append {
            id: 7,
            owed: vec!["redis".into(), "pg".into()],
            record: record_bytes(record),
        },
        Body::Complete {
            id: 7,
            backend: "redis".into(),
        },
        Body::Dead {
            dead: 1,
            id: 7,
            backend: "pg".into(),
            error: "refused".into(),
            attempts: 3,
            failed_at_ms: 1_700_000_000_000,
            record: record_bytes(record),
        },
        Body::Take { dead: 1 },
        Body::End,
        Body::Seal,
    ];
    let mut out = vec![0];
    for body in &bodies {
        out.extend(sealed(0, body));
    }
    out
}

/// Reads the input as described in the module's documentation. Panics when a frame
/// that decodes does not encode back to the same bytes.
pub fn frames(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode == 0 {
        Bytes::copy_from_slice(rest)
    } else {
        let mut frame = (rest.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&[0; HEADER - 4]);
        frame.extend_from_slice(rest);
        seal(&mut frame, 0);
        Bytes::from(frame)
    };
    let mut at = 0;
    while at < bytes.len() {
        match decode(&bytes.slice(at..), 0) {
            Read::Frame { body, len } => {
                assert_eq!(
                    sealed(0, &body),
                    bytes[at..at + len],
                    "a decoded frame encodes differently: {body:?}"
                );
                if let Body::Append { record, .. } | Body::Dead { record, .. } = body {
                    let _ = decode_record(record);
                }
                at += len;
            }
            Read::End | Read::Bad(_) => return,
        }
    }
}
