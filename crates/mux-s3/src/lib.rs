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
#![deny(missing_docs)]

mod config;
mod error;

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use mux_core::codec::fields;
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Metadata, Operation, PutOutcome, Record, Result, Version,
};

pub use config::{
    ConditionalWrites, DEFAULT_MAX_VALUE_SIZE, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE,
    MIN_PART_SIZE, S3Config, S3Credentials,
};
use error::{Failure, map_sdk};

/// S3's longest object key, in bytes.
pub const MAX_OBJECT_KEY_LEN: usize = 1024;
/// S3's limit on user metadata (names plus values), in bytes.
pub const MAX_USER_METADATA: usize = 2048;
/// How many times a put or purge starts again after a failed precondition.
const MAX_CONDITION_RETRIES: u32 = 100;

/// A backend storing one object per record in an S3 bucket.
#[derive(Clone)]
pub struct S3Backend {
    info: BackendInfo,
    config: S3Config,
    client: Client,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("name", &self.info.name)
            .field("config", &self.config)
            .finish()
    }
}

/// What `HeadObject` tells about a stored record.
struct Stored {
    etag: String,
    meta: Metadata,
    size: u64,
}

impl S3Backend {
    /// The capability for a config. `atomic_conditional_write` is `false` in both
    /// modes: with [`ConditionalWrites::Etag`] a stale write never replaces a newer one
    /// whose value differs, but S3's ETag is a hash of the content, so a write racing a
    /// newer write of byte-identical value can win (see the README).
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
            max_value_size: Some(config.max_value_size),
        }
    }

    /// Builds the client and checks that the bucket is reachable (creating it when
    /// `create_bucket` is set).
    pub async fn connect(name: impl AsRef<str>, config: S3Config) -> Result<S3Backend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        config.validate().map_err(tag)?;
        // rustls on ring, built here so the SDK needs no default TLS stack.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let S3Credentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } = &config.credentials
        {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "mux-s3",
            ));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(tag(Error::invalid_input(
                "no S3 region: set it in the config, AWS_REGION or the AWS profile",
            )));
        }
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard()
                    .with_max_attempts(config.max_attempts),
            )
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_timeout(config.operation_timeout)
                    .build(),
            )
            // Every record carries its own CRC-32, checked on read; the SDK's extra
            // checksums (aws-chunked trailers) are left to stores that require them,
            // as several S3-compatible stores do not accept them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let backend = S3Backend {
            info: BackendInfo::new(name, "s3", Self::capability(&config))
                .with_label("bucket", &config.bucket),
            client: Client::from_conf(s3),
            config,
        };
        if backend.config.create_bucket {
            backend.ensure_bucket().await.map_err(tag)?;
        }
        backend.health().await.map_err(|e| {
            e.context(format!(
                "bucket {:?} is not reachable",
                backend.config.bucket
            ))
            .with_operation(Operation::Open)
        })?;
        Ok(backend)
    }

    /// The SDK client, for callers that need S3 operations mux does not offer.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The config.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    async fn ensure_bucket(&self) -> Result<()> {
        match self
            .client
            .head_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = map_sdk(e);
                if !f.is_not_found() {
                    return Err(f.error);
                }
                match self
                    .client
                    .create_bucket()
                    .bucket(&self.config.bucket)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    // Created concurrently by someone else: fine.
                    Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(409) => Ok(()),
                    Err(e) => Err(map_sdk(e)
                        .error
                        .context(format!("cannot create bucket {:?}", self.config.bucket))),
                }
            }
        }
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    /// The object key of a mux key.
    pub fn object_key(&self, key: &str) -> String {
        if self.config.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.config.prefix)
        }
    }

    /// The mux key of an object key under the prefix.
    fn mux_key<'k>(&self, object_key: &'k str) -> Option<&'k str> {
        if self.config.prefix.is_empty() {
            Some(object_key)
        } else {
            object_key
                .strip_prefix(self.config.prefix.as_str())?
                .strip_prefix('/')
        }
    }

    fn checked_object_key(&self, key: &Key) -> Result<String> {
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
    async fn head(&self, object_key: &str) -> Result<Option<Stored>> {
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

    /// One conditional write attempt: `Ok(false)` when the precondition failed.
    async fn write(&self, object_key: &str, record: &Record, etag: Option<&str>) -> Result<bool> {
        let pairs = fields::encode(record.meta())?;
        let size = fields::size(&pairs);
        if size > MAX_USER_METADATA {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "record {}: its metadata takes {size} bytes as S3 user metadata, \
                     S3 allows {MAX_USER_METADATA} (fewer or shorter tags)",
                    record.key()
                ),
            ));
        }
        let content_type = record
            .meta()
            .content_type
            .as_deref()
            .unwrap_or(fields::DEFAULT_CONTENT_TYPE);
        if record.value().len() >= self.config.multipart_threshold {
            return self
                .write_multipart(object_key, record, &pairs, content_type, etag)
                .await;
        }
        let mut req = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(object_key)
            .content_type(content_type)
            .body(ByteStream::from(body(record)));
        for (name, value) in pairs {
            req = req.metadata(name, value);
        }
        req = self.condition(req, etag, |r, v| r.if_match(v), |r, v| r.if_none_match(v));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => self.precondition_or_error(map_sdk(e), etag),
        }
    }

    /// Adds `If-Match`/`If-None-Match` to a request when writes are conditional.
    fn condition<R>(
        &self,
        req: R,
        etag: Option<&str>,
        if_match: impl FnOnce(R, String) -> R,
        if_none_match: impl FnOnce(R, String) -> R,
    ) -> R {
        match (self.config.conditional_writes, etag) {
            (ConditionalWrites::Unconditional, _) => req,
            (ConditionalWrites::Etag, Some(etag)) => if_match(req, etag.to_owned()),
            (ConditionalWrites::Etag, None) => if_none_match(req, "*".to_owned()),
        }
    }

    /// A failed precondition is `Ok(false)` (read again and retry); so is a 404 answer
    /// to `If-Match` (the object was purged meanwhile). Anything else is an error.
    fn precondition_or_error(&self, f: Failure, etag: Option<&str>) -> Result<bool> {
        if f.is_precondition() || (etag.is_some() && f.is_not_found()) {
            Ok(false)
        } else {
            Err(f.error)
        }
    }

    async fn write_multipart(
        &self,
        object_key: &str,
        record: &Record,
        pairs: &[(&'static str, String)],
        content_type: &str,
        etag: Option<&str>,
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
            .upload_parts_and_complete(object_key, upload_id, record.value(), etag)
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
        etag: Option<&str>,
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
        let req = self.condition(req, etag, |r, v| r.if_match(v), |r, v| r.if_none_match(v));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => self.precondition_or_error(map_sdk(e), etag),
        }
    }

    async fn put_one(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        let object_key = self.checked_object_key(record.key())?;
        for attempt in 0..MAX_CONDITION_RETRIES {
            let stored = self.head(&object_key).await?;
            // After a failed attempt, finding this very record means the attempt (or the
            // SDK's retry of it, whose answer was lost) did apply it.
            if attempt > 0
                && stored.as_ref().is_some_and(|s| {
                    s.meta.version == record.meta().version
                        && s.meta.checksum == record.meta().checksum
                })
            {
                return Ok(PutOutcome::Applied);
            }
            let outcome = PutOutcome::decide(
                stored.as_ref().map(|s| s.meta.version),
                record.meta().version,
            );
            if outcome.is_superseded() {
                return Ok(outcome);
            }
            if self
                .write(
                    &object_key,
                    record,
                    stored.as_ref().map(|s| s.etag.as_str()),
                )
                .await?
            {
                return Ok(PutOutcome::Applied);
            }
            backoff(attempt).await;
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "record {}: the object changed under {MAX_CONDITION_RETRIES} attempts in a row",
                record.key()
            ),
        )
        .temporary())
    }

    async fn purge_one(&self, key: &Key, up_to: Version) -> Result<bool> {
        let object_key = self.checked_object_key(key)?;
        for attempt in 0..MAX_CONDITION_RETRIES {
            let Some(stored) = self.head(&object_key).await? else {
                return Ok(false);
            };
            if stored.meta.version > up_to {
                return Ok(false);
            }
            let req = self
                .client
                .delete_object()
                .bucket(&self.config.bucket)
                .key(&object_key);
            let req = match self.config.conditional_writes {
                ConditionalWrites::Etag => req.if_match(stored.etag),
                ConditionalWrites::Unconditional => req,
            };
            match req.send().await {
                Ok(_) => return Ok(true),
                Err(e) => {
                    let f = map_sdk(e);
                    if f.is_not_found() {
                        return Ok(false);
                    }
                    if !f.is_precondition() {
                        return Err(f.error);
                    }
                }
            }
            backoff(attempt).await;
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("record {key}: the object changed under {MAX_CONDITION_RETRIES} attempts"),
        )
        .temporary())
    }

    async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.effective_limit()?;
        let prefix = request.prefix.as_str();
        let mut keys: Vec<Key> = Vec::new();
        // The service prefix to list under. A prefix `p` without a trailing `/` matches
        // the key `p` and the keys under `p/`; listing `p` itself would walk every
        // sibling such as `p-old/…` first (`-` and `.` sort before `/`), so `p` is
        // looked up on its own and the listing starts at `p/`.
        let scan_prefix = if prefix.is_empty() {
            self.object_key("")
        } else if prefix.ends_with('/') {
            self.object_key(prefix)
        } else {
            if request.cursor.as_ref().is_none_or(|c| c.as_str() < prefix) {
                keys.push(Key::new(prefix)?);
            }
            self.object_key(&format!("{prefix}/"))
        };
        let mut start_after = request.cursor.as_ref().map(|c| self.object_key(c.as_str()));
        let mut more = false;
        'pages: loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(&scan_prefix)
                .set_start_after(start_after.clone())
                .max_keys((limit + 1).min(1000) as i32)
                .send()
                .await
                .map_err(|e| map_sdk(e).error)?;
            for object in out.contents() {
                let Some(object_key) = object.key() else {
                    continue;
                };
                start_after = Some(object_key.to_owned());
                let Some(key) = self.mux_key(object_key) else {
                    continue;
                };
                if !request.wants(key) {
                    continue;
                }
                // Not a mux key (someone else's object under the prefix): skip it.
                let Ok(key) = Key::new(key) else { continue };
                if keys.len() == limit {
                    more = true;
                    break 'pages;
                }
                keys.push(key);
            }
            if !out.is_truncated().unwrap_or(false) {
                break;
            }
        }
        // Listings carry no user metadata: head each object, a few at a time, in order.
        let heads: Vec<Option<ListEntry>> = futures_util::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let object_key = self.object_key(key.as_str());
                match self.head(&object_key).await {
                    Ok(stored) => Ok(stored.map(|s| ListEntry {
                        key,
                        meta: s.meta,
                        size: s.size,
                    })),
                    // An object without mux metadata is someone else's: skip it rather
                    // than fail every listing of its prefix.
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        tracing::warn!(object_key, error = %e, "skipping an object that is not a mux record");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffered(self.config.concurrency)
            .try_collect()
            .await?;
        let next_cursor = if more { keys.last().cloned() } else { None };
        let entries: Vec<ListEntry> = heads.into_iter().flatten().collect();
        if entries.is_empty() && next_cursor.is_some() {
            // Every key of this page vanished (purged) or was foreign: go on from the
            // last one rather than hand out an empty page.
            let next = request.clone().with_cursor(next_cursor);
            return Box::pin(self.list_page(&next)).await;
        }
        Ok(ListPage {
            // An object purged between the listing and its head is simply gone.
            entries,
            next_cursor,
        })
    }
}

/// Rebuilds metadata from S3 user metadata (whose names S3 lowercases).
fn decode_meta(
    metadata: Option<&std::collections::HashMap<String, String>>,
    object_key: &str,
) -> Result<Metadata> {
    let empty = std::collections::HashMap::new();
    let metadata = metadata.unwrap_or(&empty);
    fields::decode(|name| {
        metadata
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    })
    .map_err(|e| e.context(format!("object {object_key} is not a mux record")))
}

/// Whether two user-metadata names are the same: S3 lowercases names, and some
/// S3-compatible stores and proxies turn `_` into `-`.
fn same_name(stored: &str, wanted: &str) -> bool {
    stored.len() == wanted.len()
        && stored.bytes().zip(wanted.bytes()).all(|(a, b)| {
            let norm = |c: u8| {
                if c == b'-' {
                    b'_'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(a) == norm(b)
        })
}

/// The object body of a record: the value, byte for byte; for a tombstone, a line
/// naming its version. S3's ETag is a hash of the body, and `If-Match` compares ETags:
/// if every tombstone had the same (empty) body, racing deletes could not be told
/// apart and a lower tombstone could replace a higher one.
fn body(record: &Record) -> Bytes {
    if record.is_tombstone() {
        Bytes::from(format!("mux tombstone {}\n", record.meta().version))
    } else {
        record.value().clone()
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

/// A short random pause after a failed precondition (full jitter, 1 ms doubling to 64 ms),
/// so racing writers spread out.
async fn backoff(attempt: u32) {
    let cap_ms = 1u64 << attempt.min(6);
    let jitter = RandomState::new().hash_one(attempt) % (cap_ms * 1000);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
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
        let object_key = self.checked_object_key(key).map_err(&tag)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.config.bucket)
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
            .buffered(self.config.concurrency)
            .try_collect()
            .await
            .map_err(self.tag(Operation::PutBatch))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.list_page(request)
            .await
            .map_err(self.tag(Operation::List))
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.purge_one(key, up_to)
            .await
            .map_err(self.tag(Operation::Purge))
    }

    async fn health(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.tag(Operation::Health)(map_sdk(e).error))
    }
}
