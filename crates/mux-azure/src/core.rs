//! The container client with the backend's prefix: blob clients for keys, the
//! properties read that every write and purge starts with, downloads, and the
//! container checks of `connect` and `health`.

use std::num::NonZero;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use azure_core::credentials::TokenCredential;
use azure_storage_blob::models::{BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders};
use azure_storage_blob::{BlobClient, BlobClientOptions, BlobContainerClient};
use mux_core::resilience::Jitter;
use mux_core::{Error, Key, Record, Result};
use mux_object::StoredObject;

use crate::blob_name::{TRAILING_DOT_MARK, dotted_segment, escape};
use crate::client::Clients;
use crate::config::AzureConfig;
use crate::error::{is_blob_missing, is_condition_failure, map_err, status};
use crate::layout::decode_meta;
use crate::markers::MarkerCache;
use crate::redact::Redacted;

/// How often a read restarts when the blob changes under a ranged download.
const MAX_READ_ATTEMPTS: u32 = 5;

/// The clients of one backend and what its listings remember.
pub(crate) struct AzureCore {
    /// The backend's name, for logs.
    pub(crate) name: Arc<str>,
    /// The resolved config (see `AzureConfig::resolve`).
    pub(crate) config: AzureConfig,
    pub(crate) container: BlobContainerClient,
    /// The options of `container`, for blob clients built from a URL (see
    /// [`AzureCore::blob`]); they share its transport and policies.
    blob_options: BlobClientOptions,
    credential: Option<Arc<dyn TokenCredential>>,
    /// `"<prefix>/"`, or empty.
    pub(crate) root: String,
    /// Whether List Blobs may be sent `startFrom` (cleared when the service rejects or
    /// ignores it).
    pub(crate) start_from: AtomicBool,
    /// Service markers of recently handed-out cursors.
    pub(crate) markers: MarkerCache,
}

impl AzureCore {
    pub(crate) fn new(name: Arc<str>, config: AzureConfig, clients: Clients) -> AzureCore {
        let root = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", crate::blob_name::escape_prefix(&config.prefix))
        };
        AzureCore {
            name,
            config,
            container: clients.container,
            blob_options: clients.blob_options,
            credential: clients.credential,
            root,
            start_from: AtomicBool::new(true),
            markers: MarkerCache::default(),
        }
    }

    /// The blob name of `key` (see the crate docs on blob names).
    pub(crate) fn blob_name(&self, key: &Key) -> String {
        format!("{}{}", self.root, escape(key.as_str()))
    }

    /// The blob client of `key`; keys Azure cannot store apart are refused.
    pub(crate) fn blob(&self, key: &Key) -> Result<BlobClient> {
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

    /// Creates the container if asked, then checks it.
    pub(crate) async fn open(&self) -> Result<()> {
        if self.config.create_container {
            match self.container.create(None).await {
                Ok(_) => {}
                Err(e) if status(&e) == Some(409) => {} // ContainerAlreadyExists
                Err(e) => return Err(map_err(e)),
            }
        }
        self.check_container().await
    }

    pub(crate) async fn check_container(&self) -> Result<()> {
        match self.container.get_properties(None).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(map_err(e).context(format!(
                "container {} does not exist (create it, or set create_container)",
                self.config.container
            ))),
            Err(e) => Err(map_err(e)),
        }
    }

    /// The stored blob's ETag and what identifies its record; `None` when there is no
    /// blob.
    pub(crate) async fn stored(
        &self,
        blob: &BlobClient,
        key: &Key,
    ) -> Result<Option<StoredObject>> {
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
        Ok(Some(StoredObject {
            version: meta.version,
            checksum: meta.checksum,
            tombstone: meta.tombstone,
            etag: etag.to_string(),
        }))
    }

    /// One download returning the properties with the body (ranges after the first are
    /// pinned to the first response's ETag, so value and metadata always match).
    pub(crate) async fn read(&self, key: &Key) -> Result<Option<Record>> {
        let blob = self.blob(key)?;
        let policy = mux_object::backoff_policy();
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
                    let pause = policy.backoff(attempt - 1, Jitter::shared().unit());
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
    }
}
