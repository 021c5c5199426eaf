//! [`AzureBackend`]: connecting, and the [`Backend`] methods under the configured
//! timeout.

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use azure_core::http::Url;
use azure_storage_blob::BlobContainerClient;
use futures_util::{StreamExt, TryStreamExt};
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListPage, ListRequest, Operation,
    PutOutcome, Record, Result, Version,
};

use crate::client::build_client;
use crate::config::{AzureConfig, DEFAULT_MAX_VALUE_SIZE};
use crate::core::AzureCore;
use crate::layout::encode_meta;
use crate::redact::redact_sas;

/// A backend storing records as blobs in one Azure Blob Storage container.
pub struct AzureBackend {
    info: BackendInfo,
    core: AzureCore,
}

impl fmt::Debug for AzureBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBackend")
            .field("name", &self.info.name)
            .field("config", &self.core.config)
            .finish_non_exhaustive()
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
        digest: false,
        max_value_size: Some(DEFAULT_MAX_VALUE_SIZE),
    };

    /// Validates the config (resolving its way to authenticate), builds the client and
    /// checks that the container is reachable (creating it first when
    /// `create_container` is set).
    pub async fn connect(name: impl AsRef<str>, config: AzureConfig) -> Result<AzureBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        let (config, endpoint) = config.resolve().map_err(tag)?;
        let clients = build_client(&config, endpoint).map_err(tag)?;
        let capability = Capability {
            max_value_size: Some(config.max_value_size),
            ..Self::CAPABILITY
        };
        let info = BackendInfo::new(name, crate::KIND, capability)
            .with_label("container", &config.container);
        let backend = AzureBackend {
            core: AzureCore::new(info.name.clone(), config, clients),
            info,
        };
        backend
            .timed(Operation::Open, backend.core.open())
            .await
            .map_err(|e| {
                e.context(format!(
                    "cannot open container {} at {}",
                    backend.core.config.container,
                    redact_sas(&backend.core.config.endpoint)
                ))
            })?;
        Ok(backend)
    }

    /// The config this backend was built from, its way to authenticate resolved into
    /// `endpoint`, `container` and `credential`.
    pub fn config(&self) -> &AzureConfig {
        &self.core.config
    }

    /// The SDK's container client (authenticated like the backend), for callers that
    /// need Blob operations mux does not offer.
    pub fn container_client(&self) -> &BlobContainerClient {
        &self.core.container
    }

    /// The container's URL (without any SAS).
    pub fn container_url(&self) -> Url {
        let mut url = self.core.container.url().clone();
        url.set_query(None);
        url
    }

    /// The blob name of `key`: `<prefix>/<key>`, or `<key>` without a prefix, with `[`
    /// written as `[[`, `\` as `[]` and a tab after a final `.` (see the crate docs on
    /// blob names).
    pub fn blob_name(&self, key: &Key) -> String {
        self.core.blob_name(key)
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    /// Runs `fut` under the configured timeout and tags its error.
    async fn timed<T>(&self, op: Operation, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.core.config.timeout, fut).await {
            Ok(result) => result.map_err(self.tag(op)),
            Err(_) => Err(self.tag(op)(Error::new(
                ErrorKind::Timeout,
                format!(
                    "Azure did not finish within {:?} (AzureConfig::timeout)",
                    self.core.config.timeout
                ),
            ))),
        }
    }

    /// A conditional write through [`mux_object::put`]; refused before any request when
    /// the key cannot be stored or the metadata does not fit.
    async fn write(&self, record: &Record) -> Result<PutOutcome> {
        self.core.blob(record.key())?;
        encode_meta(record)?;
        mux_object::put(&self.core, record).await
    }
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
        self.timed(Operation::Get, self.core.read(key)).await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.timed(Operation::List, self.core.list_page(request))
            .await
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
            .buffered(self.core.config.parallelism)
            .try_collect()
            .await
    }

    /// Deletes with `If-Match` on the ETag whose version was checked, through
    /// [`mux_object::purge`].
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let purge = async {
            self.core.blob(key)?;
            mux_object::purge(&self.core, key, up_to).await
        };
        self.timed(Operation::Purge, purge).await
    }

    async fn health(&self) -> Result<()> {
        self.timed(Operation::Health, self.core.check_container())
            .await
    }
}
