//! Writing results: stdout errors are reported, never panics (`println!` panics when
//! the reader has gone, as in `mux ls | head`), and stderr notes are best-effort.

use std::io::{ErrorKind, Write};

use crate::error::CliError;

/// Writes `bytes` to stdout. A reader that has gone away (a closed pipe) ends the
/// command quietly ([`CliError::OutputClosed`]); any other failure is an error.
pub fn stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => CliError::OutputClosed,
            _ => CliError::Failed(format!("cannot write to stdout: {e}")),
        })
}

/// Writes `text` and a newline to stdout (see [`stdout`]).
pub fn line(text: impl std::fmt::Display) -> Result<(), CliError> {
    stdout(format!("{text}\n").as_bytes())
}

/// Writes `text` and a newline to stderr; a failure to do so is ignored (there is
/// nowhere left to report it).
pub fn note(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
