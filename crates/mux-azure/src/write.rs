//! Conditional writes: Azure's side of [`mux_object::ConditionalStore`], whose loop
//! (read, decide, write with `If-Match`/`If-None-Match`, retry when refused) puts and
//! purges run through.

use std::num::NonZero;

use azure_core::http::{Etag, NoFormat, RequestContent};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientUploadOptions, DeleteSnapshotsOptionType,
};
use bytes::Bytes;
use mux_core::codec::fields;
use mux_core::{Key, Record, Result};
use mux_object::{Condition, ConditionalStore, StoredObject};

use crate::core::AzureCore;
use crate::error::{is_blob_missing, is_condition_failure, map_err};
use crate::layout::encode_meta;

#[async_trait::async_trait]
impl ConditionalStore for AzureCore {
    /// Get Blob Properties.
    async fn head(&self, key: &Key) -> Result<Option<StoredObject>> {
        let blob = self.blob(key)?;
        self.stored(&blob, key).await
    }

    /// Values up to `single_upload_threshold`: one `Put Blob` with the condition.
    /// Larger ones: `Put Block` for each `block_size` slice (`parallelism` at once),
    /// then one `Put Block List` carrying the metadata and the condition, so the blob
    /// changes at the commit or not at all.
    async fn put_if(&self, record: &Record, condition: &Condition) -> Result<bool> {
        let blob = self.blob(record.key())?;
        let metadata = encode_meta(record)?;
        let content_type = record
            .meta()
            .content_type
            .clone()
            .unwrap_or_else(|| fields::DEFAULT_CONTENT_TYPE.to_owned());
        // The SDK uploads in one request up to `partition_size`, in blocks above it.
        let partition_size = if record.value().len() <= self.config.single_upload_threshold {
            self.config.single_upload_threshold
        } else {
            self.config.block_size
        };
        let mut options = BlobClientUploadOptions {
            blob_content_type: Some(content_type),
            metadata: Some(metadata),
            parallel: NonZero::new(self.config.parallelism),
            partition_size: NonZero::new(partition_size as u64),
            ..Default::default()
        };
        match condition {
            Condition::Match(etag) => options.if_match = Some(Etag::from(etag.as_str())),
            Condition::Absent => options.if_none_match = Some(Etag::from("*")),
        }
        let content: RequestContent<Bytes, NoFormat> = record.value().clone().into();
        match blob.upload(content, Some(options)).await {
            Ok(_) => Ok(true),
            // Another writer got in between (412/409), or purged the blob (404).
            Err(e) if is_condition_failure(&e) || is_blob_missing(&e) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    /// Delete Blob with `If-Match`, snapshots included.
    async fn delete_if(&self, key: &Key, etag: &str) -> Result<bool> {
        let blob = self.blob(key)?;
        let options = BlobClientDeleteOptions {
            if_match: Some(Etag::from(etag)),
            delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
            ..Default::default()
        };
        match blob.delete(Some(options)).await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) || is_blob_missing(&e) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }
}
