//! # mux-azure
//!
//! A mux [`Backend`] on Azure Blob Storage, through Microsoft's SDK
//! (`azure_storage_blob`, `azure_core`, `azure_identity`).
//!
//! ## Layout (readable with `az storage blob` or curl)
//! - one block blob per record at `<prefix>/<key>` (or `<key>` without a prefix) in one
//!   container;
//! - the metadata as blob metadata (`x-ms-meta-*`) in the layout shared with the S3
//!   backend ([`mux_core::codec::fields`]): `mux_version`, `mux_crc32`, `mux_tombstone`,
//!   `mux_content_type`, `mux_tags`;
//! - the record's content type also as the blob's own `Content-Type`
//!   (`application/octet-stream` when the record has none);
//! - a tombstone is an empty blob with `mux_tombstone=true`.
//!
//! ## Blob names
//! The blob name is the key, with three exceptions: Azure (and Azurite) turn `\` into
//! `/`, so `\` is written as `[]`, and `[`, the escape, as `[[`; Azure drops dots at the
//! end of a blob name, so a key ending in `.` gets a tab appended (keys never contain
//! control characters). Azure also drops dots at the end of any other path segment
//! ("No path segments should end with a dot"), so `a./b` would land on `a/b`'s blob:
//! keys with a segment ending in `.` other than the last are refused with
//! `InvalidInput` (`put`, `get`, `delete`, `purge`, and listing prefixes with such a
//! segment). The mapping keeps the byte order of keys, so a service that lists in UTF-8
//! byte order (Azure's flat namespace, Azurite) lists in mux's order.
//! [`AzureBackend::blob_name`] gives the name of a key.
//!
//! Accounts with a hierarchical namespace (ADLS Gen2) are not supported: they list `A/x`
//! before `A-B`. A service sorting by UTF-16 code units would also differ, for keys
//! mixing characters U+E000–U+FFFF with characters beyond U+FFFF. `list` checks the
//! order it is given and fails with `Unsupported`, naming the two keys, rather than
//! skip keys.
//!
//! ## Writes
//! A write reads the blob's properties (ETag and `mux_version`), decides with
//! [`mux_core::PutOutcome::decide`], and uploads with `If-Match: <etag>` (or `If-None-Match: *`
//! when there was no blob). Azure checks the condition atomically, so a write that lost
//! a race fails with `412`/`409` and is retried from the read; a stale write can never
//! replace a newer one. If the read after a failed condition finds this very record
//! (same version, CRC-32 and tombstone flag), the write reports `Applied`: the SDK
//! retried an upload that had succeeded but whose response was lost. Values above the
//! single-upload threshold are staged in blocks and committed with one `Put Block List`
//! carrying the same condition. The loop itself (attempt limit, backoff, lost-response
//! detection) is [`mux_object`]'s, shared with the S3 backend.
//!
//! ## Reads and listings
//! `get` is one download (ranged and parallel for large values, every range pinned to
//! the first response's ETag) that returns the metadata with the value, so they always
//! belong together; the CRC-32 is checked. `list` is List Blobs with the prefix and
//! `include=metadata`; blobs without mux metadata are skipped with a warning. A cursor
//! is a key, not an Azure marker: the next page resumes at
//! the marker remembered when the cursor was handed out, else at the service's
//! `startFrom` (where supported), else by paging from the start of the prefix and
//! skipping keys up to the cursor.
//!
//! ## Authentication
//! An account key (mux signs an account SAS with it, see [`account_sas_token`]), a SAS
//! token or SAS URL, or any Entra ID token credential: see [`AzureCredential`].
//!
//! ## Opening from a config
//! [`AzureConfig`] deserializes from TOML (unknown fields are refused; exactly one way
//! to authenticate), and [`open`] is the registry's entry point: validate, connect, and
//! hand back a `dyn Backend` of kind [`KIND`]. The SDK's own retries are off by default
//! (`max_retries = 0`): in a `Mux` the coordinator retries temporary errors itself.
//!
//! ## Source layout
//! `config.rs` (the config; its tests in `config_tests.rs`), `backend.rs` (connecting,
//! the `Backend` methods), `core.rs` (clients, blob clients, properties, downloads),
//! `write.rs` (the conditional store under [`mux_object`]), `listing.rs`, `markers.rs`,
//! `blob_name.rs` (escaping), `layout.rs` (blob metadata), `client.rs` (building the SDK
//! clients), `credential.rs`, `connection_string.rs` (connection strings, SAS URLs),
//! `sas.rs` (account SAS signing), `identity.rs` (the Entra ID chain), `redact.rs`
//! (signatures kept out of texts), `error.rs` (Azure errors as mux errors).
#![deny(missing_docs)]

mod backend;
mod blob_name;
mod client;
mod config;
mod connection_string;
mod core;
mod credential;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod identity;
mod layout;
mod listing;
mod markers;
mod redact;
mod sas;
mod write;

use std::sync::Arc;

pub use backend::AzureBackend;
pub use config::{
    AzureConfig, DEFAULT_BLOCK_SIZE, DEFAULT_MAX_VALUE_SIZE, DEFAULT_SINGLE_UPLOAD_THRESHOLD,
    MAX_BLOCK_SIZE, MAX_SINGLE_UPLOAD,
};
pub use connection_string::{DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, DEV_BLOB_ENDPOINT};
pub use credential::AzureCredential;
pub use mux_object::MAX_ATTEMPTS as MAX_CONDITIONAL_ATTEMPTS;
pub use sas::{SAS_VERSION, account_sas_token};

/// The kind of this backend in a store registry (`kind = "azure"`).
pub const KIND: &str = "azure";

/// What an Azure backend named `name` is and can do, known from its config without I/O
/// (the registry stands it in while the store cannot be reached).
pub fn info(name: &str, config: &AzureConfig) -> mux_core::BackendInfo {
    let capability = mux_core::Capability {
        max_value_size: Some(config.max_value_size),
        ..AzureBackend::CAPABILITY
    };
    mux_core::BackendInfo::new(name, KIND, capability)
}

/// Validates `config` (exactly one way to authenticate, see [`AzureConfig`]), connects
/// (see [`AzureBackend::connect`]) and returns the backend named `name`.
///
/// ```no_run
/// # async fn run() -> mux_core::Result<()> {
/// let config: mux_azure::AzureConfig = toml::from_str(r#"
///     container = "records"
///     connection_string = "UseDevelopmentStorage=true"
///     create_container = true
/// "#).unwrap();
/// let backend = mux_azure::open("azure-dev", config).await?;
/// assert_eq!(backend.info().kind, mux_azure::KIND);
/// # Ok(()) }
/// ```
pub async fn open(name: &str, config: AzureConfig) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(AzureBackend::connect(name, config).await?))
}
