//! [`RedbConfig`]: where a redb backend keeps its database.

use std::path::PathBuf;

use serde::Deserialize;

/// The default largest value, in bytes.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

/// The configuration of a redb backend, as written in TOML:
///
/// ```toml
/// [[backends]]
/// name = "local"
/// kind = "redb"
/// path = "data/mux.redb"
/// max_value_size = 1048576   # optional, bytes (default 64 MiB)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedbConfig {
    /// The database file (created, with its parent directories, when missing).
    pub path: PathBuf,
    /// The largest value accepted, in bytes.
    #[serde(default = "default_max_value_size")]
    pub max_value_size: usize,
}

fn default_max_value_size() -> usize {
    DEFAULT_MAX_VALUE_SIZE
}

impl RedbConfig {
    /// A config for the database file `path`, with the default value limit.
    pub fn new(path: impl Into<PathBuf>) -> RedbConfig {
        RedbConfig {
            path: path.into(),
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
        }
    }

    /// Sets the largest value accepted, in bytes.
    pub fn with_max_value_size(mut self, max: usize) -> RedbConfig {
        self.max_value_size = max;
        self
    }
}
