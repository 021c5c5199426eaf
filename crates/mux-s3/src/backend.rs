//! [`S3Backend`]: connecting, and the [`Backend`] methods.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListPage, ListRequest, Operation,
    PutOutcome, Record, Result, Version,
};

use crate::config::S3Config;
use crate::core::S3Core;
use crate::error::{S3Failure, map_sdk};
use crate::layout::{decode_meta, encode_meta};

/// A backend storing one object per record in an S3 bucket.
#[derive(Clone)]
pub struct S3Backend {
    info: BackendInfo,
    core: S3Core,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("name", &self.info.name)
            .field("config", &self.core.config)
            .finish()
    }
}

impl S3Backend {
    /// The capability for a config. `atomic_conditional_write` is `false` in both
    /// modes: with [`crate::ConditionalWrites::Etag`] a stale write never replaces a
    /// newer one whose value differs, but S3's ETag is a hash of the content, so a
    /// write racing a newer write of byte-identical value can win (see the README).
    pub fn capability(config: &S3Config) -> Capability {
        Capability {
            list: true,
            batch: false,
            // Not even with ETag conditions: S3's ETag is a hash of the body, so two
            // versions with identical values cannot be told apart (see the README).
            atomic_conditional_write: false,
            history: false,
            tags: true,
            content_type: true,
            purge: true,
            durable: true,
            digest: false,
            max_value_size: Some(config.max_value_size),
        }
    }

    /// Validates the config, builds the client and checks that the bucket is reachable
    /// (creating it when `create_bucket` is set).
    pub async fn connect(name: impl AsRef<str>, config: S3Config) -> Result<S3Backend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        config.validate().map_err(tag)?;
        let shared = config.connection().load().await.map_err(tag)?;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style())
            // Every record carries its own CRC-32, checked on read; the SDK's extra
            // checksums (aws-chunked trailers) are left to stores that require them,
            // as several S3-compatible stores do not accept them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let backend = S3Backend {
            info: BackendInfo::new(name, crate::KIND, Self::capability(&config))
                .with_label("bucket", &config.bucket),
            core: S3Core {
                client: Client::from_conf(s3),
                config,
            },
        };
        if backend.core.config.create_bucket {
            backend.ensure_bucket().await.map_err(tag)?;
        }
        backend.health().await.map_err(|e| {
            e.context(format!(
                "bucket {:?} is not reachable",
                backend.core.config.bucket
            ))
            .with_operation(Operation::Open)
        })?;
        Ok(backend)
    }

    /// The SDK client, for callers that need S3 operations mux does not offer.
    pub fn client(&self) -> &Client {
        &self.core.client
    }

    /// The config.
    pub fn config(&self) -> &S3Config {
        &self.core.config
    }

    /// The object key of a mux key.
    pub fn object_key(&self, key: &str) -> String {
        self.core.object_key(key)
    }

    async fn ensure_bucket(&self) -> Result<()> {
        let bucket = &self.core.config.bucket;
        match self.client().head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = map_sdk(e);
                if !f.is_not_found() {
                    return Err(f.error);
                }
                match self.client().create_bucket().bucket(bucket).send().await {
                    Ok(_) => Ok(()),
                    // Created concurrently by someone else: fine.
                    Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(409) => Ok(()),
                    Err(e) => Err(map_sdk(e)
                        .error
                        .context(format!("cannot create bucket {bucket:?}"))),
                }
            }
        }
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    /// A conditional write through [`mux_object::put`]; refused before any request when
    /// the value or its metadata is too large, or the key too long.
    async fn put_one(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        self.core.checked_object_key(record.key())?;
        encode_meta(record)?;
        mux_object::put(&self.core, record).await
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.put_one(record).await.map_err(self.tag(Operation::Put))
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let tag = self.tag(Operation::Get);
        let object_key = self.core.checked_object_key(key).map_err(&tag)?;
        let out = match self
            .client()
            .get_object()
            .bucket(&self.core.config.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let f = map_sdk(e);
                return if f.is_missing_object() {
                    Ok(None)
                } else {
                    Err(tag(f.error))
                };
            }
        };
        let meta = decode_meta(out.metadata(), &object_key).map_err(&tag)?;
        if meta.tombstone {
            // A tombstone's body is a marker naming its version, not a value.
            return Record::from_parts(key.clone(), Bytes::new(), meta)
                .map(Some)
                .map_err(tag);
        }
        let value = out
            .body
            .collect()
            .await
            .map_err(|e| {
                tag(
                    Error::new(ErrorKind::Unavailable, "reading the object's body failed")
                        .with_source(e)
                        .temporary(),
                )
            })?
            .into_bytes();
        Record::from_parts(key.clone(), value, meta)
            .map(Some)
            .map_err(tag)
    }

    /// Puts run concurrently (up to `concurrency` at once); each is its own
    /// conditional write, so on error any subset may have been applied.
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        // The futures are built first, so the stream holds no closure over borrows.
        let puts: Vec<_> = records.iter().map(|r| self.put_one(r)).collect();
        futures_util::stream::iter(puts)
            .buffered(self.core.config.concurrency)
            .try_collect()
            .await
            .map_err(self.tag(Operation::PutBatch))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.core
            .list_page(request)
            .await
            .map_err(self.tag(Operation::List))
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let tag = self.tag(Operation::Purge);
        self.core.checked_object_key(key).map_err(&tag)?;
        mux_object::purge(&self.core, key, up_to).await.map_err(tag)
    }

    async fn health(&self) -> Result<()> {
        self.client()
            .head_bucket()
            .bucket(&self.core.config.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.tag(Operation::Health)(map_sdk(e).error))
    }
}
