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
//! [`PutOutcome::decide`], and uploads with `If-Match: <etag>` (or `If-None-Match: *`
//! when there was no blob). Azure checks the condition atomically, so a write that lost
//! a race fails with `412`/`409` and is retried from the read; a stale write can never
//! replace a newer one. If the read after a failed condition finds this very record
//! (same version, CRC-32 and tombstone flag), the write reports `Applied`: the SDK
//! retried an upload that had succeeded but whose response was lost. Values above the
//! single-upload threshold are staged in blocks and committed with one `Put Block List`
//! carrying the same condition.
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
#![deny(missing_docs)]

mod config;
mod error;
mod identity;
mod sas;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::num::NonZero;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{
    ClientOptions, Etag, ExponentialRetryOptions, NoFormat, RequestContent, RetryOptions,
    Transport, Url,
};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientUploadOptions, BlobContainerClientListBlobsOptions, DeleteSnapshotsOptionType,
    ListBlobsIncludeItem, ListBlobsResponse,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use mux_core::codec::fields;
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Metadata, Operation, PutOutcome, Record, Result, Version,
};

pub use config::{
    AzureConfig, AzureCredential, DEFAULT_BLOCK_SIZE, DEFAULT_MAX_VALUE_SIZE,
    DEFAULT_SINGLE_UPLOAD_THRESHOLD, DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, DEV_BLOB_ENDPOINT,
    MAX_BLOCK_SIZE, MAX_SINGLE_UPLOAD,
};
pub use sas::{SAS_VERSION, account_sas_token};

use crate::error::{Redacted, is_blob_missing, is_condition_failure, map_err, status};

/// How often a write (or purge) re-reads and retries after losing a race before it
/// gives up with a temporary `Conflict`.
pub const MAX_CONDITIONAL_ATTEMPTS: u32 = 50;

/// How often a read restarts when the blob changes under a ranged download.
const MAX_READ_ATTEMPTS: u32 = 5;

/// Azure's limit on the metadata of one blob (names plus values).
const MAX_METADATA_BYTES: usize = 8 << 10;

/// Azure's largest List Blobs page.
const MAX_LIST_PAGE: usize = 5000;

/// A backend storing records as blobs in one Azure Blob Storage container.
pub struct AzureBackend {
    info: BackendInfo,
    config: AzureConfig,
    container: BlobContainerClient,
    blob_options: BlobClientOptions,
    credential: Option<Arc<dyn TokenCredential>>,
    /// `"<prefix>/"`, or empty.
    root: String,
    /// Whether List Blobs may be sent `startFrom` (cleared when the service rejects or
    /// ignores it).
    start_from: AtomicBool,
    /// Service markers of recently handed-out cursors.
    markers: MarkerCache,
}

impl fmt::Debug for AzureBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBackend")
            .field("name", &self.info.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The stored blob's ETag and what identifies the record in it.
struct Stored {
    etag: Etag,
    version: Version,
    checksum: u32,
    tombstone: bool,
}

impl Stored {
    /// Whether the blob holds `record`: same version, CRC-32 and tombstone flag.
    fn holds(&self, record: &Record) -> bool {
        self.version == record.version()
            && self.checksum == record.meta().checksum
            && self.tombstone == record.is_tombstone()
    }
}

impl AzureBackend {
    /// The capability of an Azure backend with the default [`DEFAULT_MAX_VALUE_SIZE`]
    /// (`connect` declares the configured `max_value_size` instead). ETag conditions are
    /// checked atomically by Azure, hence `atomic_conditional_write`; `batch` is false
    /// (a batch is concurrent single writes, not one request).
    pub const CAPABILITY: Capability = Capability {
        list: true,
        batch: false,
        atomic_conditional_write: true,
        history: false,
        tags: true,
        content_type: true,
        purge: true,
        durable: true,
        max_value_size: Some(DEFAULT_MAX_VALUE_SIZE),
    };

    /// Validates the config, builds the client and checks that the container is
    /// reachable (creating it first when `create_container` is set).
    pub async fn connect(name: impl AsRef<str>, config: AzureConfig) -> Result<AzureBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        let endpoint = config.validate().map_err(tag)?;
        let clients = build_client(&config, endpoint).map_err(tag)?;
        let root = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", escape_prefix(&config.prefix))
        };
        let capability = Capability {
            max_value_size: Some(config.max_value_size),
            ..Self::CAPABILITY
        };
        let backend = AzureBackend {
            info: BackendInfo::new(name, "azure", capability)
                .with_label("container", &config.container),
            config,
            container: clients.container,
            blob_options: clients.blob_options,
            credential: clients.credential,
            root,
            start_from: AtomicBool::new(true),
            markers: MarkerCache::default(),
        };
        backend
            .timed(Operation::Open, backend.open())
            .await
            .map_err(|e| {
                e.context(format!(
                    "cannot open container {} at {}",
                    backend.config.container,
                    config::redact_sas(&backend.config.endpoint)
                ))
            })?;
        Ok(backend)
    }

    /// The config this backend was built from.
    pub fn config(&self) -> &AzureConfig {
        &self.config
    }

    /// The SDK's container client (authenticated like the backend), for callers that
    /// need Blob operations mux does not offer.
    pub fn container_client(&self) -> &BlobContainerClient {
        &self.container
    }

    /// The container's URL (without any SAS).
    pub fn container_url(&self) -> Url {
        let mut url = self.container.url().clone();
        url.set_query(None);
        url
    }

    /// The blob name of `key`: `<prefix>/<key>`, or `<key>` without a prefix, with `[`
    /// written as `[[`, `\` as `[]` and a tab after a final `.` (see the crate docs on
    /// blob names).
    pub fn blob_name(&self, key: &Key) -> String {
        format!("{}{}", self.root, escape(key.as_str()))
    }

    fn blob(&self, key: &Key) -> Result<BlobClient> {
        if let Some(segment) = dotted_segment(key.as_str()) {
            return Err(Error::invalid_input(format!(
                "key {key} has a path segment ending in `.` ({segment:?}) before its last \
                 one; Azure drops dots at the end of path segments (\"no path segments \
                 should end with a dot\"), so it would share a blob with another key"
            )));
        }
        let name = self.blob_name(key);
        if !name.ends_with(TRAILING_DOT_MARK) {
            return Ok(self.container.blob_client(&name));
        }
        // The `url` crate drops tabs from URLs (as the URL standard says), so the mark is
        // pushed as U+0001, which no key contains, and its escape swapped for `%09`.
        let mut url = self.container.url().clone();
        url.path_segments_mut()
            .map_err(|()| Error::internal("the container URL cannot be a base"))?
            .push(&name.replace(TRAILING_DOT_MARK, "\u{1}"));
        let path = url.path().replace("%01", "%09");
        url.set_path(&path);
        BlobClient::new(
            url,
            self.credential.clone(),
            Some(self.blob_options.clone()),
        )
        .map_err(|e| {
            Error::internal(format!("cannot build the client of {key}"))
                .with_source(Redacted::of(&e))
        })
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    /// Runs `fut` under the configured timeout and tags its error.
    async fn timed<T>(&self, op: Operation, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.config.timeout, fut).await {
            Ok(result) => result.map_err(self.tag(op)),
            Err(_) => Err(self.tag(op)(Error::new(
                ErrorKind::Timeout,
                format!(
                    "Azure did not finish within {:?} (AzureConfig::timeout)",
                    self.config.timeout
                ),
            ))),
        }
    }

    async fn open(&self) -> Result<()> {
        if self.config.create_container {
            match self.container.create(None).await {
                Ok(_) => {}
                Err(e) if status(&e) == Some(409) => {} // ContainerAlreadyExists
                Err(e) => return Err(map_err(e)),
            }
        }
        self.check_container().await
    }

    async fn check_container(&self) -> Result<()> {
        match self.container.get_properties(None).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(map_err(e).context(format!(
                "container {} does not exist (create it, or set create_container)",
                self.config.container
            ))),
            Err(e) => Err(map_err(e)),
        }
    }

    /// The stored blob's ETag and version, `None` when there is no blob.
    async fn stored(&self, blob: &BlobClient, key: &Key) -> Result<Option<Stored>> {
        let response = match blob.get_properties(None).await {
            Ok(r) => r,
            Err(e) if is_blob_missing(&e) => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        let etag = response
            .etag()
            .map_err(map_err)?
            .ok_or_else(|| Error::internal(format!("Azure returned no ETag for {key}")))?;
        let meta = decode_meta(key.as_str(), response.metadata().map_err(map_err)?)?;
        Ok(Some(Stored {
            etag,
            version: meta.version,
            checksum: meta.checksum,
            tombstone: meta.tombstone,
        }))
    }

    /// The conditional write (see the crate docs).
    async fn write(&self, record: &Record) -> Result<PutOutcome> {
        let key = record.key();
        let pairs = fields::encode(record.meta()).map_err(|e| e.context(key))?;
        let metadata_size = fields::size(&pairs);
        if metadata_size > MAX_METADATA_BYTES {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{key}: the metadata (tags included) is {metadata_size} bytes, Azure allows {MAX_METADATA_BYTES}"
                ),
            ));
        }
        let metadata: HashMap<String, String> = pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let content_type = record
            .meta()
            .content_type
            .clone()
            .unwrap_or_else(|| fields::DEFAULT_CONTENT_TYPE.to_owned());
        let len = record.value().len();
        // The SDK uploads in one request up to `partition_size`, in blocks above it.
        let partition_size = if len <= self.config.single_upload_threshold {
            self.config.single_upload_threshold
        } else {
            self.config.block_size
        };
        let blob = self.blob(key)?;
        // Whether an upload of this record failed its condition: the SDK may have retried
        // an upload that had succeeded but whose response was lost, and the retry found
        // the blob changed by that very upload.
        let mut lost_race = false;
        for attempt in 1..=MAX_CONDITIONAL_ATTEMPTS {
            let stored = self.stored(&blob, key).await?;
            if lost_race && stored.as_ref().is_some_and(|s| s.holds(record)) {
                return Ok(PutOutcome::Applied);
            }
            let outcome = PutOutcome::decide(stored.as_ref().map(|s| s.version), record.version());
            if outcome.is_superseded() {
                return Ok(outcome);
            }
            let mut options = BlobClientUploadOptions {
                blob_content_type: Some(content_type.clone()),
                metadata: Some(metadata.clone()),
                parallel: NonZero::new(self.config.parallelism),
                partition_size: NonZero::new(partition_size as u64),
                ..Default::default()
            };
            match stored {
                Some(stored) => options.if_match = Some(stored.etag),
                None => options.if_none_match = Some(Etag::from("*")),
            }
            let content: RequestContent<Bytes, NoFormat> = record.value().clone().into();
            match blob.upload(content, Some(options)).await {
                Ok(_) => return Ok(PutOutcome::Applied),
                // Another writer got in between (412/409), or purged the blob (404).
                Err(e) if is_condition_failure(&e) || is_blob_missing(&e) => {
                    tracing::debug!(key = %key, attempt, "lost a write race, retrying");
                    lost_race = true;
                    tokio::time::sleep(jitter(attempt)).await;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{key}: gave up after {MAX_CONDITIONAL_ATTEMPTS} attempts, concurrent writers kept changing the blob"
            ),
        )
        .temporary())
    }

    /// One download returning the properties with the body (ranges after the first are
    /// pinned to the first response's ETag, so value and metadata always match).
    async fn read(&self, key: &Key) -> Result<Option<Record>> {
        let blob = self.blob(key)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let options = BlobClientDownloadOptions {
                parallel: NonZero::new(self.config.parallelism),
                partition_size: NonZero::new(self.config.block_size),
                ..Default::default()
            };
            let response = match blob.download(Some(options)).await {
                Ok(r) => r,
                Err(e) if is_blob_missing(&e) => return Ok(None),
                Err(e) => return Err(map_err(e)),
            };
            let meta = decode_meta(key.as_str(), response.properties.metadata)?;
            match response.body.collect().await {
                Ok(value) => return Record::from_parts(key.clone(), value, meta).map(Some),
                // The blob changed (or went) between two ranges: read it again.
                Err(e) if is_condition_failure(&e) || is_blob_missing(&e) => {
                    if attempt == MAX_READ_ATTEMPTS {
                        return Err(map_err(e)
                            .context(format!(
                                "{key}: the blob changed during each of {MAX_READ_ATTEMPTS} reads"
                            ))
                            .temporary());
                    }
                    tokio::time::sleep(jitter(attempt)).await;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.effective_limit()?;
        let scan = request.prefix.scan_start();
        if let Some(segment) = dotted_segment(scan) {
            return Err(Error::invalid_input(format!(
                "listing prefix {scan} has a path segment ending in `.` ({segment:?}) before \
                 its last one; Azure drops dots at the end of path segments (\"no path \
                 segments should end with a dot\"), so no key under it can be stored"
            )));
        }
        let service_prefix = format!("{}{}", self.root, escape_prefix(scan));
        // The cursor is a key; Azure's marker is opaque. To continue after the cursor,
        // in order of preference: the marker remembered when the cursor was handed out,
        // the service's `startFrom` (inclusive), or paging from the start of the prefix
        // and dropping the keys up to the cursor here.
        let cursor = request.cursor.as_ref().filter(|c| c.as_str() > scan);
        let start_from = cursor.map(|c| format!("{}{}", self.root, escape(c.as_str())));
        let remembered = cursor.and_then(|c| self.markers.recall(&service_prefix, c.as_str()));
        let mut resumed = remembered.is_some();
        // Whether this page starts at (or just before) the cursor.
        let mut positioned = resumed;
        let mut marker = remembered.flatten();
        let mut entries = Vec::new();
        let mut more = false;
        // The last key the service listed in this call (skipped ones included).
        let mut previous: Option<String> = None;
        'pages: loop {
            let use_start_from = start_from.is_some()
                && !positioned
                && marker.is_none()
                && self.start_from.load(Ordering::Relaxed);
            let scanning = start_from.is_some() && !positioned && !use_start_from;
            let page_size = if scanning {
                MAX_LIST_PAGE
            } else {
                (limit + 1).min(MAX_LIST_PAGE)
            };
            let options = BlobContainerClientListBlobsOptions {
                include: Some(vec![ListBlobsIncludeItem::Metadata]),
                marker: marker.clone(),
                maxresults: Some(page_size as i32),
                prefix: (!service_prefix.is_empty()).then(|| service_prefix.clone()),
                start_from: if use_start_from {
                    start_from.clone()
                } else {
                    None
                },
                ..Default::default()
            };
            let page = match self.fetch_list_page(options).await {
                Ok(page) => page,
                Err(e) if use_start_from && status(&e) == Some(400) => {
                    tracing::info!(
                        backend = %self.info.name,
                        "the service rejected List Blobs startFrom; skipping to cursors client-side"
                    );
                    self.start_from.store(false, Ordering::Relaxed);
                    previous = None;
                    continue;
                }
                Err(e) if resumed && entries.is_empty() && status(&e) == Some(400) => {
                    // A remembered marker the service no longer takes: start over.
                    resumed = false;
                    positioned = false;
                    marker = None;
                    previous = None;
                    continue;
                }
                Err(e) => return Err(map_err(e)),
            };
            if use_start_from {
                let first = page.blob_items.first().and_then(|b| b.name.as_deref());
                if first.is_some_and(|first| Some(first) < start_from.as_deref()) {
                    // The service ignored `startFrom` (the emulator does): stop sending it.
                    tracing::debug!(backend = %self.info.name, "the service ignores List Blobs startFrom");
                    self.start_from.store(false, Ordering::Relaxed);
                } else {
                    positioned = true;
                }
            }
            for item in page.blob_items {
                let Some(name) = item.name.as_deref() else {
                    continue;
                };
                let Some(key) = name.strip_prefix(self.root.as_str()).and_then(unescape) else {
                    tracing::warn!(blob = name, "skipping a blob whose name is not a mux key");
                    continue;
                };
                check_order(previous.as_deref(), &key)?;
                previous = Some(key.clone());
                if request.prefix.is_past(&key) {
                    break 'pages;
                }
                if !request.wants(&key) {
                    continue;
                }
                let Ok(key) = Key::new(key) else {
                    tracing::warn!(blob = name, "skipping a blob whose name is not a mux key");
                    continue;
                };
                if entries.len() == limit {
                    more = true;
                    break 'pages;
                }
                let metadata = item.metadata.and_then(|m| m.values).unwrap_or_default();
                if !has_mux_metadata(&metadata) {
                    tracing::warn!(blob = name, "skipping a blob without mux metadata");
                    continue;
                }
                let meta = decode_meta(key.as_str(), metadata)?;
                let size = item
                    .properties
                    .and_then(|p| p.content_length)
                    .unwrap_or_default();
                entries.push(ListEntry { key, meta, size });
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        let next_cursor = if more {
            entries.last().map(|e: &ListEntry| e.key.clone())
        } else {
            None
        };
        // The first key after the cursor is on the page `marker` fetched: the next call
        // can start there instead of at the beginning of the prefix.
        if let Some(next) = &next_cursor {
            self.markers
                .remember(&service_prefix, next.as_str(), marker);
        }
        Ok(ListPage {
            entries,
            next_cursor,
        })
    }

    async fn fetch_list_page(
        &self,
        options: BlobContainerClientListBlobsOptions<'_>,
    ) -> azure_core::Result<ListBlobsResponse> {
        let mut pages = self.container.list_blobs(Some(options))?.into_pages();
        match pages.next().await {
            Some(page) => page?.into_model(),
            None => Ok(ListBlobsResponse::default()),
        }
    }

    async fn remove(&self, key: &Key, up_to: Version) -> Result<bool> {
        let blob = self.blob(key)?;
        // Whether a delete failed its condition (see `write`): if the blob is then gone,
        // that delete may well have been this one, retried by the SDK after a lost
        // response, so the purge reports a removal.
        let mut lost_race = false;
        for attempt in 1..=MAX_CONDITIONAL_ATTEMPTS {
            let Some(stored) = self.stored(&blob, key).await? else {
                return Ok(lost_race);
            };
            if stored.version > up_to {
                return Ok(false);
            }
            let options = BlobClientDeleteOptions {
                if_match: Some(stored.etag),
                delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
                ..Default::default()
            };
            match blob.delete(Some(options)).await {
                Ok(_) => return Ok(true),
                Err(e) if is_condition_failure(&e) || is_blob_missing(&e) => {
                    lost_race = true;
                    tokio::time::sleep(jitter(attempt)).await;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{key}: gave up purging after {MAX_CONDITIONAL_ATTEMPTS} attempts, concurrent writers kept changing the blob"
            ),
        )
        .temporary())
    }
}

/// The List Blobs markers of the last cursors `list` handed out, so that the next page
/// resumes where the previous one stopped instead of paging from the prefix's start.
#[derive(Default)]
struct MarkerCache(Mutex<VecDeque<(String, String, Option<String>)>>);

impl MarkerCache {
    /// How many cursors are remembered (a few concurrent listings each).
    const CAPACITY: usize = 64;

    /// Remembers where the page after `cursor` starts (`None`: at the beginning).
    fn remember(&self, service_prefix: &str, cursor: &str, marker: Option<String>) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == Self::CAPACITY {
            entries.pop_front();
        }
        entries.push_back((service_prefix.to_owned(), cursor.to_owned(), marker));
    }

    fn recall(&self, service_prefix: &str, cursor: &str) -> Option<Option<String>> {
        let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .rev()
            .find(|(p, c, _)| p == service_prefix && c == cursor)
            .map(|(_, _, m)| m.clone())
    }
}

/// The Azure clients of a backend.
struct Clients {
    container: BlobContainerClient,
    /// The options of `container`, for blob clients built from a URL (see
    /// [`AzureBackend::blob`]); they share its transport and policies.
    blob_options: BlobClientOptions,
    credential: Option<Arc<dyn TokenCredential>>,
}

/// The HTTP client every Azure client of this process shares the settings of: reqwest on
/// rustls with the ring provider (the workspace's one TLS provider; reqwest's default would
/// build aws-lc). Ring becomes the process default only if nothing else was installed.
fn http_client() -> Result<Arc<reqwest::Client>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .build()
        .map(Arc::new)
        .map_err(|e| Error::invalid_input("cannot build the HTTP client").with_source(e))
}

/// The container client for `config`, authenticated as configured.
fn build_client(config: &AzureConfig, endpoint: Url) -> Result<Clients> {
    let mut url = endpoint;
    url.path_segments_mut()
        .map_err(|()| Error::invalid_input("the endpoint cannot be a base URL"))?
        .pop_if_empty()
        .push(&config.container);
    let mut client_options = ClientOptions {
        transport: Some(Transport::new(http_client()?)),
        ..Default::default()
    };
    let retry = ExponentialRetryOptions {
        max_retries: config.max_retries,
        initial_delay: azure_core::time::Duration::milliseconds(100),
        max_delay: azure_core::time::Duration::seconds(5),
        max_total_elapsed: azure_core::time::Duration::try_from(config.timeout)
            .unwrap_or(azure_core::time::Duration::seconds(60)),
    };
    client_options.retry = RetryOptions::exponential(retry);
    let credential = match &config.credential {
        AzureCredential::AccountKey { account, key } => {
            let https_only = url.scheme() == "https";
            client_options
                .per_try_policies
                .push(Arc::new(sas::AccountKeyPolicy::new(
                    account, key, https_only,
                )));
            None
        }
        AzureCredential::Sas(token) => {
            url.set_query(Some(token));
            None
        }
        AzureCredential::Token(credential) => Some(credential.clone()),
    };
    let mut options = BlobContainerClientOptions {
        client_options: client_options.clone(),
        ..Default::default()
    };
    let mut blob_options = BlobClientOptions {
        client_options,
        ..Default::default()
    };
    if let Some(version) = &config.api_version {
        options.version = version.clone();
        blob_options.version = version.clone();
    }
    let container =
        BlobContainerClient::new(url, credential.clone(), Some(options)).map_err(|e| {
            Error::invalid_input("cannot build the Azure client").with_source(Redacted::of(&e))
        })?;
    Ok(Clients {
        container,
        blob_options,
        credential,
    })
}

/// The blob name of a key: `[` becomes `[[`, `\` becomes `[]`, and a key that ends with
/// `.` gets a tab appended; everything else is kept.
///
/// - Azure (and Azurite) turn `\` into `/` in blob names, so it cannot be stored as is;
///   `[` is the escape because it sorts right before `\`.
/// - Azure drops dots at the end of a blob name, so `a.` would land on `a`'s blob. The
///   tab (a control character, which no key contains) sorts before every character a
///   key can continue with, so `a.` still sorts between `a` and `a.b`.
///
/// Both keep the byte order of keys, and a prefix of a key maps (through
/// [`escape_prefix`]) to a prefix of its blob name, so listings stay ordered.
fn escape(key: &str) -> Cow<'_, str> {
    let name = escape_prefix(key);
    if key.ends_with('.') {
        Cow::Owned(format!("{name}{TRAILING_DOT_MARK}"))
    } else {
        name
    }
}

/// The first `/`-separated segment of `key` other than the last that ends with `.`.
///
/// Microsoft's naming rules: "No path segments should end with a dot". Azure drops such
/// dots, so `a./b` would be stored as `a/b`. Only the final segment's dot can be kept
/// (see [`escape`]); mux refuses keys (and listing prefixes) with such an inner segment.
fn dotted_segment(key: &str) -> Option<&str> {
    let (inner, _last) = key.rsplit_once('/')?;
    inner.split('/').find(|segment| segment.ends_with('.'))
}

/// Appended to the blob name of a key that ends with `.` (see [`escape`]).
const TRAILING_DOT_MARK: char = '\t';

/// The escaping of [`escape`] without the trailing-dot mark: for list prefixes, which
/// must stay prefixes of the names they match.
fn escape_prefix(prefix: &str) -> Cow<'_, str> {
    if !prefix.contains(['[', '\\']) {
        return Cow::Borrowed(prefix);
    }
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        match c {
            '[' => out.push_str("[["),
            '\\' => out.push_str("[]"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The key of a blob name; `None` when the name is not an escaped key (a lone `[`, a raw
/// `\`, a tab anywhere but after a final `.`, or a final `.` without one).
fn unescape(name: &str) -> Option<String> {
    let name = match name.strip_suffix(TRAILING_DOT_MARK) {
        Some(rest) if rest.ends_with('.') => rest,
        Some(_) => return None,
        None if name.ends_with('.') => return None,
        None => name,
    };
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' => match chars.next()? {
                '[' => out.push('['),
                ']' => out.push('\\'),
                _ => return None,
            },
            '\\' | TRAILING_DOT_MARK => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Fails when the service listed `key` after `previous` although it sorts before it in
/// byte order (names are compared as unescaped keys; escaping keeps their order).
///
/// mux's cursors and early stops rely on the service listing in UTF-8 byte order. Two
/// known cases break it: hierarchical-namespace (ADLS Gen2) accounts list `A/x` before
/// `A-B`, and accounts that sort by UTF-16 code units put characters U+E000–U+FFFF
/// after characters beyond U+FFFF. Keys would be skipped silently; failing names them.
fn check_order(previous: Option<&str>, key: &str) -> Result<()> {
    match previous {
        Some(previous) if key < previous => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "Azure listed {key:?} after {previous:?}, which sorts after it in byte order; \
                 mux needs listings in byte order of keys. Likely causes: a storage account \
                 with hierarchical namespace (ADLS Gen2), which mux does not support, or \
                 keys mixing characters U+E000..U+FFFF with characters beyond U+FFFF on a \
                 service that sorts by UTF-16 code units"
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether blob metadata has any `mux_` field: blobs without are not mux's (written by
/// another tool into the container) and are left out of listings.
fn has_mux_metadata(metadata: &HashMap<String, String>) -> bool {
    metadata.keys().any(|name| {
        name.as_bytes()
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"mux_"))
    })
}

/// Rebuilds metadata from blob metadata (names compared case-insensitively).
fn decode_meta(key: &str, metadata: HashMap<String, String>) -> Result<Metadata> {
    let lower: HashMap<String, String> = metadata
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    fields::decode(|name| lower.get(name).map(String::as_str))
        .map_err(|e| e.context(format!("blob of {key}")))
}

/// A short random pause before retrying a lost race: up to 1 ms on the first retry,
/// growing by 2 ms per attempt to at most 50 ms.
fn jitter(attempt: u32) -> Duration {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let mut x = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let cap_micros = u64::from((1 + 2 * attempt.saturating_sub(1)).min(50)) * 1000;
    Duration::from_micros(x % cap_micros)
}

#[async_trait]
impl Backend for AzureBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        self.timed(Operation::Put, self.write(record)).await
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.timed(Operation::Get, self.read(key)).await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.timed(Operation::List, self.list_page(request)).await
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        let tombstone = Record::tombstone(key.clone(), version);
        self.timed(Operation::Delete, self.write(&tombstone)).await
    }

    /// Writes up to `parallelism` records at once; outcomes come back in order.
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        for r in records {
            self.info.check_value_size(r, Operation::PutBatch)?;
        }
        let writes: Vec<_> = records
            .iter()
            .map(|r| self.timed(Operation::PutBatch, self.write(r)))
            .collect();
        futures_util::stream::iter(writes)
            .buffered(self.config.parallelism)
            .try_collect()
            .await
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.timed(Operation::Purge, self.remove(key, up_to)).await
    }

    async fn health(&self) -> Result<()> {
        self.timed(Operation::Health, self.check_container()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_key_order_and_round_trips() {
        let keys = [
            "a",
            "a/b",
            "a[",
            "a[[",
            "a[]",
            "a[b",
            "a\\",
            "a\\b",
            "a\\[",
            "a]",
            "aZ",
            "a\u{7f}x",
            "[",
            "\\",
            "Z",
            "]",
            "é[\\",
            "🦀\\",
            "a.",
            "a..",
            "a...",
            "a. b",
            "a.b",
            "a./b",
            "a.!",
            "a.-",
            "a.[",
            "a.\\",
            ".",
            "..x",
            "dots/.hidden/...",
            "x/.",
            "x/./y",
        ];
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort();
        let mut escaped: Vec<String> = sorted.iter().map(|k| escape(k).into_owned()).collect();
        let before = escaped.clone();
        escaped.sort();
        assert_eq!(escaped, before, "escaping must keep byte order");
        for k in keys {
            let e = escape(k);
            assert!(!e.contains('\\'), "{e:?}");
            assert!(!e.ends_with('.'), "{e:?}");
            assert_eq!(unescape(&e).as_deref(), Some(k));
            // A prefix of a key maps to a prefix of the key's blob name.
            for (i, _) in k.char_indices() {
                assert!(e.starts_with(escape_prefix(&k[..i]).as_ref()), "{k} at {i}");
            }
            assert!(e.starts_with(escape_prefix(k).as_ref()), "{k}");
        }
        assert_eq!(escape("brackets/[a]{b}<c>"), "brackets/[[a]{b}<c>");
        assert_eq!(escape("backslash/a\\b"), "backslash/a[]b");
        assert_eq!(escape("dots/.hidden/..."), "dots/.hidden/...\t");
        assert_eq!(escape("v1.2/x"), "v1.2/x");
        assert_eq!(unescape("a[x"), None);
        assert_eq!(unescape("a["), None);
        assert_eq!(unescape("a\\b"), None);
        assert_eq!(unescape("a."), None);
        assert_eq!(unescape("a\t"), None);
        assert_eq!(unescape("a.\tb"), None);
    }

    #[test]
    fn finds_inner_segments_ending_in_a_dot() {
        for (key, found) in [
            ("a./b", Some("a.")),
            ("x/./y", Some(".")),
            ("x/y../z/w.", Some("y..")),
            ("a./", Some("a.")),
            ("a.", None),
            ("x/a.", None),
            ("dots/.hidden/...", None),
            ("v1.2/x", None),
            ("a.b/c.d/e", None),
            ("plain", None),
        ] {
            assert_eq!(dotted_segment(key), found, "{key}");
        }
    }

    #[test]
    fn listing_order_is_checked() {
        assert!(check_order(None, "a").is_ok());
        assert!(check_order(Some("a"), "b").is_ok());
        assert!(check_order(Some("a"), "a/b").is_ok());
        // Hierarchical namespace: `A/x` before `A-B`.
        let err = check_order(Some("A/x"), "A-B").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(!err.is_temporary());
        assert!(err.message().contains("\"A-B\" after \"A/x\""), "{err}");
        assert!(err.message().contains("hierarchical namespace"), "{err}");
        // UTF-16 order: a character beyond U+FFFF (surrogates, 0xD8xx) before U+E000.
        let err = check_order(Some("k/\u{1F980}"), "k/\u{E000}").unwrap_err();
        assert!(err.message().contains("U+E000"), "{err}");
        assert!(check_order(Some("k/\u{E000}"), "k/\u{1F980}").is_ok());
    }

    #[test]
    fn recognises_mux_metadata() {
        let meta = |names: &[&str]| -> HashMap<String, String> {
            names.iter().map(|n| (n.to_string(), "x".into())).collect()
        };
        assert!(has_mux_metadata(&meta(&["mux_version"])));
        assert!(has_mux_metadata(&meta(&["other", "MUX_CRC32"])));
        assert!(!has_mux_metadata(&meta(&[])));
        assert!(!has_mux_metadata(&meta(&["owner", "mux", "é"])));
    }

    #[test]
    fn jitter_stays_small() {
        for attempt in 1..100 {
            let j = jitter(attempt);
            assert!(j <= Duration::from_millis(50), "{attempt}: {j:?}");
        }
        assert!(jitter(1) <= Duration::from_millis(1));
    }

    #[test]
    fn decodes_metadata_case_insensitively() {
        let record = Record::new(Key::new("a").unwrap(), "v", Version::new(3, 0, 1))
            .with_tag("class", "pii")
            .with_content_type("text/plain");
        let stored: HashMap<String, String> = fields::encode(record.meta())
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_uppercase(), v))
            .collect();
        assert_eq!(&decode_meta("a", stored).unwrap(), record.meta());
        let err = decode_meta("a", HashMap::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().starts_with("blob of a: "), "{err}");
    }

    /// An Entra ID config builds a client without any network call; an http endpoint is
    /// refused (bearer tokens need TLS).
    #[test]
    fn token_credentials_build_a_client() {
        #[derive(Debug)]
        struct Fixed;
        #[async_trait]
        impl azure_core::credentials::TokenCredential for Fixed {
            async fn get_token(
                &self,
                _scopes: &[&str],
                _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
            ) -> azure_core::Result<azure_core::credentials::AccessToken> {
                Ok(azure_core::credentials::AccessToken::new(
                    "token",
                    azure_core::time::OffsetDateTime::now_utc()
                        + azure_core::time::Duration::hours(1),
                ))
            }
        }
        let config = AzureConfig::with_token_credential(
            "https://acct.blob.core.windows.net",
            "records",
            Arc::new(Fixed),
        );
        let endpoint = config.validate().unwrap();
        let client = build_client(&config, endpoint).unwrap().container;
        assert_eq!(
            client.url().as_str(),
            "https://acct.blob.core.windows.net/records"
        );
        assert!(format!("{config:?}").contains("Token(Fixed)"));
        let http = config.with_endpoint("http://127.0.0.1:10000/devstoreaccount1");
        let err = http.validate().unwrap_err();
        assert!(err.message().contains("must use https"), "{err}");
    }

    #[test]
    fn sas_tokens_go_into_the_container_url() {
        let config = AzureConfig::from_sas_url(
            "https://acct.blob.core.windows.net/records?sv=2022-11-02&sp=racwdl&sig=abc%3D",
        )
        .unwrap();
        let client = build_client(&config, config.validate().unwrap())
            .unwrap()
            .container;
        assert_eq!(
            client.url().as_str(),
            "https://acct.blob.core.windows.net/records?sv=2022-11-02&sp=racwdl&sig=abc%3D"
        );
        assert_eq!(
            client.blob_client("a/b c").url().as_str(),
            "https://acct.blob.core.windows.net/records/a%2Fb%20c?sv=2022-11-02&sp=racwdl&sig=abc%3D"
        );
    }
}
