//! Conditional writes: S3's side of [`mux_object::ConditionalStore`], whose loop (read,
//! decide, write with `If-Match`/`If-None-Match`, retry when refused) puts and purges
//! run through.

use aws_sdk_s3::primitives::ByteStream;
use mux_core::codec::fields;
use mux_core::{Key, Record, Result};
use mux_object::{Condition, ConditionalStore, StoredObject};

use crate::config::ConditionalWrites;
use crate::core::S3Core;
use crate::error::{S3Failure, map_sdk};
use crate::layout::{body, encode_meta};

#[async_trait::async_trait]
impl ConditionalStore for S3Core {
    async fn head(&self, key: &Key) -> Result<Option<StoredObject>> {
        let object_key = self.checked_object_key(key)?;
        Ok(self
            .head_object(&object_key)
            .await?
            .map(|stored| StoredObject {
                version: stored.meta.version,
                checksum: stored.meta.checksum,
                tombstone: stored.meta.tombstone,
                etag: stored.etag,
            }))
    }

    /// One `PutObject`, or a multipart upload whose `CompleteMultipartUpload` carries
    /// the condition.
    async fn put_if(&self, record: &Record, condition: &Condition) -> Result<bool> {
        let object_key = self.checked_object_key(record.key())?;
        let pairs = encode_meta(record)?;
        let content_type = record
            .meta()
            .content_type
            .as_deref()
            .unwrap_or(fields::DEFAULT_CONTENT_TYPE);
        if record.value().len() >= self.config.multipart_threshold {
            return self
                .write_multipart(&object_key, record, &pairs, content_type, condition)
                .await;
        }
        let mut req = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(&object_key)
            .content_type(content_type)
            .body(ByteStream::from(body(record)));
        for (name, value) in pairs {
            req = req.metadata(name, value);
        }
        req = self.condition(
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

    /// `DeleteObject` with `If-Match` (none with [`ConditionalWrites::Unconditional`]).
    async fn delete_if(&self, key: &Key, etag: &str) -> Result<bool> {
        let object_key = self.checked_object_key(key)?;
        let req = self
            .client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(&object_key);
        let req = match self.config.conditional_writes {
            ConditionalWrites::Etag => req.if_match(etag),
            ConditionalWrites::Unconditional => req,
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let f = map_sdk(e);
                if f.is_precondition() || f.is_not_found() {
                    Ok(false)
                } else {
                    Err(f.error)
                }
            }
        }
    }
}
