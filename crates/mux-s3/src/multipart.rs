//! Multipart uploads: values of `multipart_threshold` bytes or more go up in parts,
//! and only the final `CompleteMultipartUpload` carries the write's condition, so the
//! object changes at once or not at all. An upload that does not complete is aborted,
//! also when its future is dropped.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use mux_core::{Error, Record, Result};
use mux_object::Condition;

use crate::core::S3Core;
use crate::error::map_sdk;

impl S3Core {
    /// One conditional multipart write: `Ok(false)` when the precondition failed.
    pub(crate) async fn write_multipart(
        &self,
        object_key: &str,
        record: &Record,
        pairs: &[(&'static str, String)],
        content_type: &str,
        condition: &Condition,
    ) -> Result<bool> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(object_key)
            .content_type(content_type);
        for (name, value) in pairs {
            create = create.metadata(*name, value);
        }
        let upload = create.send().await.map_err(|e| map_sdk(e).error)?;
        let upload_id = upload.upload_id().ok_or_else(|| {
            Error::internal("CreateMultipartUpload answered without an upload id")
        })?;
        // Aborts the upload unless it completed — also when this future is dropped
        // (a timeout, a failed batch, a disconnected client).
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.config.bucket.clone(),
            object_key: object_key.to_owned(),
            upload_id: Some(upload_id.to_owned()),
        };
        let result = self
            .upload_parts_and_complete(object_key, upload_id, record.value(), condition)
            .await;
        if matches!(result, Ok(true)) {
            guard.upload_id = None;
        }
        drop(guard);
        result
    }

    async fn upload_parts_and_complete(
        &self,
        object_key: &str,
        upload_id: &str,
        value: &Bytes,
        condition: &Condition,
    ) -> Result<bool> {
        let part_size = self.config.part_size;
        let chunks: Vec<(i32, Bytes)> = (0..value.len().div_ceil(part_size))
            .map(|i| {
                let end = ((i + 1) * part_size).min(value.len());
                (i as i32 + 1, value.slice(i * part_size..end))
            })
            .collect();
        let parts: Vec<CompletedPart> = futures_util::stream::iter(chunks)
            .map(|(number, chunk)| async move {
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.config.bucket)
                    .key(object_key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .map_err(|e| map_sdk(e).error)?;
                Ok::<_, Error>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .build(),
                )
            })
            .buffered(self.config.concurrency)
            .try_collect()
            .await?;
        let req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.config.bucket)
            .key(object_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        let req = self.condition(
            req,
            condition,
            |r, v| r.if_match(v),
            |r, v| r.if_none_match(v),
        );
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => S3Core::precondition_or_error(map_sdk(e), condition),
        }
    }
}

/// Aborts a multipart upload when dropped while armed (`upload_id` set).
struct AbortOnDrop {
    client: Client,
    bucket: String,
    object_key: String,
    upload_id: Option<String>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(object_key = %self.object_key, upload_id, "no runtime to abort a multipart upload");
            return;
        };
        let req = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.object_key)
            .upload_id(&upload_id);
        let object_key = self.object_key.clone();
        // Best effort: a leftover upload costs storage (until a lifecycle rule with
        // AbortIncompleteMultipartUpload removes it) but never shows up as a record.
        runtime.spawn(async move {
            if let Err(e) = req.send().await {
                tracing::warn!(object_key, upload_id, error = %map_sdk(e).error, "abort of a multipart upload failed");
            }
        });
    }
}
