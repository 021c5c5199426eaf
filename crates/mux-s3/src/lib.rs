//! # mux-s3
//!
//! A mux [`Backend`] on Amazon S3 and S3-compatible object stores (MinIO, Ceph RGW,
//! Cloudflare R2, the moto server), through the AWS SDK for Rust.
//!
//! ## Layout (readable with any S3 tool)
//! One object per record at `<prefix>/<key>` in the bucket. The object's body is the
//! value, byte for byte; its `Content-Type` is the record's content type
//! (`application/octet-stream` when it has none); the rest of the metadata is user
//! metadata (`x-amz-meta-*`) as [`mux_core::codec::fields`] lays it out:
//! `mux_version`, `mux_crc32`, `mux_tombstone` (only on tombstones, whose body is a line
//! naming their version), `mux_content_type` and `mux_tags` (a JSON object).
//!
//! ```text
//! $ aws s3api head-object --bucket B --key mux/tenantconfig/acme/limits
//! $ aws s3 cp s3://B/mux/tenantconfig/acme/limits -
//! ```
//!
//! ## Conditional writes
//! S3 has no "write if newer". A put reads the stored object's version and ETag
//! (`HeadObject`), decides, and writes with `If-Match: <etag>` (or `If-None-Match: *`
//! when there was no object). When another writer got in between, the store answers
//! `412 Precondition Failed` and the put starts again from the read, so a stale write
//! never replaces a newer one whose value differs. S3's ETag hashes the bytes only, so
//! versions with byte-identical values cannot be told apart: hence
//! `atomic_conditional_write: false` (the README explains the race). See
//! [`ConditionalWrites`] for stores without these headers.
//!
//! Values of [`S3Config::multipart_threshold`] bytes or more go up in parts
//! (`CreateMultipartUpload`, parts in parallel, `CompleteMultipartUpload` carrying the
//! same condition); an upload that does not complete is aborted, also when the put's
//! future is dropped.
//!
//! The loop itself (attempt limit, backoff, lost-response detection) is
//! [`mux_object`]'s, shared with the Azure backend.
//!
//! ## Opening from a config
//! [`S3Config`] deserializes from TOML (unknown fields are refused), and [`open`] is the
//! registry's entry point: validate, connect, and hand back a `dyn Backend` of kind
//! [`KIND`]. The SDK's own retries are off by default (`max_attempts = 1`): in a `Mux`
//! the coordinator retries temporary errors itself.
//!
//! ## Source layout
//! `config.rs` (the config), `backend.rs` (connecting, the `Backend` methods),
//! `core.rs` (client, object keys, `HeadObject`, conditions), `layout.rs` (body and user
//! metadata), `write.rs` (the conditional store under [`mux_object`]), `multipart.rs`,
//! `listing.rs`, `error.rs` (S3 errors as mux errors).
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
mod multipart;
mod write;

use std::sync::Arc;

pub use backend::S3Backend;
pub use config::{
    ConditionalWrites, DEFAULT_MAX_VALUE_SIZE, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE,
    MIN_PART_SIZE, S3Config,
};
pub use core::MAX_OBJECT_KEY_LEN;
pub use layout::MAX_USER_METADATA;

/// The kind of this backend in a store registry (`kind = "s3"`).
pub const KIND: &str = "s3";

/// What an S3 backend named `name` is and can do, known from its config without I/O
/// (the registry stands it in while the store cannot be reached).
pub fn info(name: &str, config: &S3Config) -> mux_core::BackendInfo {
    mux_core::BackendInfo::new(name, KIND, S3Backend::capability(config))
}

/// Validates `config`, connects (see [`S3Backend::connect`]) and returns the backend
/// named `name`.
///
/// ```no_run
/// # async fn run() -> mux_core::Result<()> {
/// let config: mux_s3::S3Config = toml::from_str(r#"bucket = "records""#).unwrap();
/// let backend = mux_s3::open("s3-eu", config).await?;
/// assert_eq!(backend.info().kind, mux_s3::KIND);
/// # Ok(()) }
/// ```
pub async fn open(name: &str, config: S3Config) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(S3Backend::connect(name, config).await?))
}
