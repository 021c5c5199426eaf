//! # mux-ssm
//!
//! A mux [`Backend`](mux_core::Backend) on AWS Systems Manager Parameter Store, through
//! the AWS SDK for Rust (`aws-sdk-ssm`, TLS by rustls on ring through [`mux_aws`]).
//!
//! ## Layout (readable with any SSM tool)
//! One `String` parameter per key: `paramconfig/acme/limits` is the parameter
//! `/paramconfig/acme/limits`, or `<root_path>/paramconfig/acme/limits` with
//! [`SsmConfig::root_path`]. Each write is a new version of the parameter, so SSM's
//! own version history is the record's history.
//!
//! - **Names**: each key segment is escaped to SSM's `a-zA-Z0-9_.-`: `_` becomes `__`,
//!   any other byte `_XX` (uppercase hex), and without a root path the first byte of a
//!   name starting with `aws`/`ssm` (reserved by SSM) is escaped too. The mapping is
//!   reversible; [`SsmBackend::parameter_name`] and [`SsmBackend::key_of`] apply it.
//! - **Value**: the record's value as it is when it is UTF-8 text (not empty, no
//!   `{{`); otherwise base64, `(empty)` for an empty value, `(deleted)` for a
//!   tombstone, as the description says (`mux_encoding`).
//! - **Description**: mux's metadata as one JSON object of strings: `mux_version`,
//!   `mux_crc32`, `mux_tombstone`, `mux_content_type`, `mux_tags`
//!   ([`mux_core::codec::fields`]) plus `mux_size` and `mux_encoding`.
//!   `GetParameterHistory` returns each version's description, so every past version
//!   keeps its own metadata.
//!
//! ```text
//! $ aws ssm get-parameter --name /paramconfig/acme/limits --query Parameter.Value
//! "{\"rps\":100}"
//! $ aws ssm describe-parameters --parameter-filters Key=Name,Values=/paramconfig/acme/limits
//! ```
//!
//! ## Limits
//! Values up to [`Tier::max_value_size`] (3 KiB standard, 6 KiB advanced: SSM's 4 or
//! 8 KB, less base64's overhead for values that are not text), descriptions up to 1024
//! characters, names up to 1011 characters counting the ARN before them, 15 hierarchy
//! levels. The adapter refuses what does not fit before sending anything, naming the
//! limit.
//!
//! ## Writes
//! SSM has no conditional write: `put` reads, compares and writes, then uses SSM's
//! version numbers to notice a racing write and put back a newer version it displaced
//! (`write.rs`). `Capability::atomic_conditional_write` is `false`; the README explains
//! the window and how `Quorum`/`All` reads close it.
//!
//! ## Source layout
//! `config.rs` (the config), `backend.rs` (connecting, the `Backend` methods),
//! `core.rs` (client and the SSM calls), `names.rs` (keys as parameter names),
//! `layout.rs` (value and description), `write.rs` (the conditional write),
//! `listing.rs`, `error.rs` (SSM errors as mux errors).
#![deny(missing_docs)]

mod backend;
mod config;
mod core;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod layout;
mod listing;
mod names;
mod write;

use std::sync::Arc;

pub use backend::SsmBackend;
pub use config::{SsmConfig, Tier};
pub use layout::MAX_DESCRIPTION_LEN;
pub use names::{MAX_DEPTH, MAX_NAME_LEN};

/// The kind of this backend in a store registry (`kind = "ssm"`).
pub const KIND: &str = "ssm";

/// What an SSM backend named `name` is and can do, known from its config without I/O
/// (the registry stands it in while the store cannot be reached).
pub fn info(name: &str, config: &SsmConfig) -> mux_core::BackendInfo {
    mux_core::BackendInfo::new(name, KIND, SsmBackend::capability(config))
}

/// Validates `config`, connects (see [`SsmBackend::connect`]) and returns the backend
/// named `name`.
///
/// ```no_run
/// # async fn run() -> mux_core::Result<()> {
/// let config: mux_ssm::SsmConfig = toml::from_str(r#"root_path = "/mux""#).unwrap();
/// let backend = mux_ssm::open("params", config).await?;
/// assert_eq!(backend.info().kind, mux_ssm::KIND);
/// # Ok(()) }
/// ```
pub async fn open(name: &str, config: SsmConfig) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(SsmBackend::connect(name, config).await?))
}
