//! [`FsConfig`]: where an fs backend keeps its files.

use std::path::PathBuf;

use serde::Deserialize;

/// The default largest value, in bytes (64 MiB).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

/// The configuration of an fs backend, as written in TOML:
///
/// ```toml
/// [[backends]]
/// name = "local"
/// kind = "fs"
/// path = "data/fs"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FsConfig {
    /// The root directory (created when missing).
    pub path: PathBuf,
}

impl FsConfig {
    /// A config for the directory `path`.
    pub fn new(path: impl Into<PathBuf>) -> FsConfig {
        FsConfig { path: path.into() }
    }
}
