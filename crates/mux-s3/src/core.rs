//! The S3 client with its bucket and prefix: object keys, the one read every write,
//! purge and listing starts with (`HeadObject`), and how requests carry a write's
//! condition.

use aws_sdk_s3::Client;
use mux_core::{Error, ErrorKind, Key, Metadata, Result};
use mux_object::Condition;

use crate::config::{ConditionalWrites, S3Config};
use crate::error::{Failure, S3Failure, map_sdk};
use crate::layout::decode_meta;

/// S3's longest object key, in bytes.
pub const MAX_OBJECT_KEY_LEN: usize = 1024;

/// The SDK client and the config it was built from.
#[derive(Clone)]
pub(crate) struct S3Core {
    pub(crate) client: Client,
    pub(crate) config: S3Config,
}

/// What `HeadObject` tells about a stored record.
pub(crate) struct Stored {
    pub(crate) etag: String,
    pub(crate) meta: Metadata,
    pub(crate) size: u64,
}

impl S3Core {
    /// The object key of a mux key.
    pub(crate) fn object_key(&self, key: &str) -> String {
        if self.config.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.config.prefix)
        }
    }

    /// The mux key of an object key under the prefix.
    pub(crate) fn mux_key<'k>(&self, object_key: &'k str) -> Option<&'k str> {
        if self.config.prefix.is_empty() {
            Some(object_key)
        } else {
            object_key
                .strip_prefix(self.config.prefix.as_str())?
                .strip_prefix('/')
        }
    }

    /// The object key of `key`, refused when S3 cannot hold it.
    pub(crate) fn checked_object_key(&self, key: &Key) -> Result<String> {
        let object_key = self.object_key(key.as_str());
        if object_key.len() > MAX_OBJECT_KEY_LEN {
            return Err(Error::invalid_input(format!(
                "key {key} is too long for S3: with the prefix {:?} the object key is {} bytes, \
                 S3 allows {MAX_OBJECT_KEY_LEN}",
                self.config.prefix,
                object_key.len()
            )));
        }
        Ok(object_key)
    }

    /// Reads the stored record's ETag and metadata; `None` when there is no object.
    pub(crate) async fn head_object(&self, object_key: &str) -> Result<Option<Stored>> {
        let out = match self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(object_key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let f = map_sdk(e);
                return if f.is_not_found() {
                    Ok(None)
                } else {
                    Err(f.error)
                };
            }
        };
        let meta = decode_meta(out.metadata(), object_key)?;
        // A tombstone's body is a marker, not a value.
        let size = if meta.tombstone {
            0
        } else {
            out.content_length().unwrap_or(0).max(0) as u64
        };
        let etag = out.e_tag().map(str::to_owned).ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!("object {object_key}: the store sent no ETag"),
            )
        })?;
        Ok(Some(Stored { etag, meta, size }))
    }

    /// Adds `If-Match`/`If-None-Match` to a request when writes are conditional.
    pub(crate) fn condition<R>(
        &self,
        req: R,
        condition: &Condition,
        if_match: impl FnOnce(R, String) -> R,
        if_none_match: impl FnOnce(R, String) -> R,
    ) -> R {
        match (self.config.conditional_writes, condition) {
            (ConditionalWrites::Unconditional, _) => req,
            (ConditionalWrites::Etag, Condition::Match(etag)) => if_match(req, etag.clone()),
            (ConditionalWrites::Etag, Condition::Absent) => if_none_match(req, "*".to_owned()),
        }
    }

    /// A failed precondition is `Ok(false)` (read again and retry); so is a 404 answer
    /// to `If-Match` (the object was purged meanwhile). Anything else is an error.
    pub(crate) fn precondition_or_error(f: Failure, condition: &Condition) -> Result<bool> {
        if f.is_precondition() || (condition.etag().is_some() && f.is_not_found()) {
            Ok(false)
        } else {
            Err(f.error)
        }
    }
}
