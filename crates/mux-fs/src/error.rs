//! Error plumbing: mux errors carried through `io::Result` and back.

use std::fmt;
use std::io;

use mux_core::Error;

/// Carries a mux error through `io::Result` plumbing.
#[derive(Debug)]
pub(crate) struct MuxIo(Error);

impl fmt::Display for MuxIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for MuxIo {}

pub(crate) fn to_io(e: Error) -> io::Error {
    io::Error::other(MuxIo(e))
}

pub(crate) fn from_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<MuxIo>()) {
        let inner = e.into_inner().expect("checked");
        return inner.downcast::<MuxIo>().expect("checked").0;
    }
    Error::from(e)
}
