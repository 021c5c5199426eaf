//! # mux-dynamodb
//!
//! A mux [`Backend`](mux_core::Backend) on Amazon DynamoDB and DynamoDB-compatible
//! stores (ScyllaDB's Alternator), through the AWS SDK for Rust (`aws-sdk-dynamodb`, its
//! `SdkConfig` from [`mux_aws::Connection`]: rustls on ring, the standard credentials
//! chain). Meant for small, frequently written records such as tenant configuration.
//!
//! ## Layout (readable with the AWS CLI or boto3)
//! One item per record. Primary key: `mux_partition` (string, the key's first
//! [`DynamoDbConfig::partition_depth`] segments) and `mux_key` (string, the full key).
//! Attributes: `mux_version` (string, the version's fixed-width text form, which sorts
//! like the versions), `mux_crc32` (string, 8 hex digits), `mux_tombstone` (boolean),
//! `mux_size` (number), `mux_value` (binary; absent on tombstones and for empty
//! values), `mux_content_type` (string) and `mux_tags` (map of strings), the last two
//! only when set. The README shows an item as the AWS CLI prints it.
//!
//! ## Conditional writes
//! Every write is one `PutItem` with `attribute_not_exists(mux_key) OR mux_version < :v`,
//! evaluated by DynamoDB atomically with the write, so
//! `Capability::atomic_conditional_write` is `true`. A failed condition returns the
//! stored item (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), whose version the
//! `Superseded` outcome names. `put_batch` sends conditional `TransactWriteItems` of up
//! to 100 records ([`BatchWrites`]); `purge` is a `DeleteItem` with
//! `mux_version <= :up_to`.
//!
//! ## Listing
//! A prefix at least `partition_depth` segments deep is one `Query` of one partition
//! (`begins_with` on `mux_key`, paged with `LastEvaluatedKey`). A shallower prefix
//! reads the partition index — one small item per partition, written the first time a
//! process writes to it — and merges the partitions' `Query`s in byte order. See the
//! README for what each costs.
//!
//! ## Opening from a config
//! [`DynamoDbConfig`] deserializes from TOML (unknown fields are refused), and [`open`]
//! is the registry's entry point. With `create_table = true` a missing table is created
//! (on-demand billing) and waited for; otherwise a missing table fails `open` with the
//! table's name and the fix.
//!
//! ## Source layout
//! `config.rs` (the config), `backend.rs` (connecting, the `Backend` methods),
//! `core.rs` (client and table: checking, creating, the layout item), `layout.rs` (the
//! item of a record, partitions, size limits), `write.rs` (conditional puts, the
//! partition index, purge), `batch.rs` (transactions), `listing.rs` (the merge of
//! partitions), `error.rs` (DynamoDB errors as mux errors).
#![deny(missing_docs)]

mod backend;
mod batch;
mod config;
mod core;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod layout;
mod listing;
mod write;

use std::sync::Arc;

pub use backend::DynamoDbBackend;
pub use batch::{MAX_TRANSACTION_BYTES, MAX_TRANSACTION_ITEMS};
pub use config::{BatchWrites, DEFAULT_PARTITION_DEPTH, DynamoDbConfig};
pub use error::classify;
pub use layout::{
    CHECKSUM, CONTENT_TYPE, INDEX_PARTITION, KEY, LAYOUT_ITEM, MAX_ITEM_SIZE, MAX_VALUE_SIZE,
    PARTITION, PARTITION_DEPTH, RESERVED_FOR_METADATA, SIZE, TAGS, TOMBSTONE, VALUE, VERSION,
    partition_of,
};

/// The kind of this backend in a store registry (`kind = "dynamodb"`).
pub const KIND: &str = "dynamodb";

/// What a DynamoDB backend named `name` is and can do, known from its config without
/// I/O (the registry stands it in while the store cannot be reached).
pub fn info(name: &str, config: &DynamoDbConfig) -> mux_core::BackendInfo {
    mux_core::BackendInfo::new(name, KIND, DynamoDbBackend::capability(config))
}

/// Validates `config`, connects (see [`DynamoDbBackend::connect`]) and returns the
/// backend named `name`.
///
/// ```no_run
/// # async fn run() -> mux_core::Result<()> {
/// let config: mux_dynamodb::DynamoDbConfig = toml::from_str(r#"table = "mux_records""#).unwrap();
/// let backend = mux_dynamodb::open("ddb-eu", config).await?;
/// assert_eq!(backend.info().kind, mux_dynamodb::KIND);
/// # Ok(()) }
/// ```
pub async fn open(
    name: &str,
    config: DynamoDbConfig,
) -> mux_core::Result<Arc<dyn mux_core::Backend>> {
    Ok(Arc::new(DynamoDbBackend::connect(name, config).await?))
}
