//! What can go wrong, and the exit status each outcome gives.

use std::process::ExitCode;

/// Exit statuses, as `mux --help` documents them.
pub const EXIT_HELP: &str = "\
Exit status:
  0  success
  1  not found: the key has no live record (get, rm); or verify found keys on which
     the stores disagree, or a job (verify, repair, backfill, gc) failed or left
     keys it could not repair or copy
  2  bad command line (unknown option, missing argument)
  3  refused: the server (or mux itself) rejected the request as invalid, too large
     or not authorised; repeating it unchanged fails again
  4  failed: the server could not be reached, answered with a server error (5xx),
     or answered something that is not muxd's documented JSON";

/// An error of one command, classified by what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The key has no live record.
    #[error("not found: {key}{note}")]
    NotFound {
        /// The key, as the user typed it.
        key: String,
        /// Anything to add (e.g. " (nothing to delete)").
        note: &'static str,
    },
    /// A job ran and found a problem: verify found divergent keys, a repair or backfill
    /// left keys behind, or the job failed.
    #[error("{0}")]
    Check(String),
    /// The command line is wrong in a way clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// The request is invalid, too large or not authorised.
    #[error("{0}")]
    Refused(String),
    /// The server is unreachable, failed, or answered something unexpected.
    #[error("{0}")]
    Failed(String),
    /// Whoever read our output stopped reading (`mux ls | head`): stop quietly.
    #[error("stdout was closed")]
    OutputClosed,
}

impl CliError {
    /// The process exit status for this error (see [`EXIT_HELP`]).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::OutputClosed => 0,
            CliError::NotFound { .. } | CliError::Check(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Refused(_) => 3,
            CliError::Failed(_) => 4,
        })
    }
}

/// An error and its chain of sources, joined (`reqwest` and `tonic` put the useful part
/// of a failure, e.g. "connection refused", in a source).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
