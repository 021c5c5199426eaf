//! [`DynamoDbBackend`]: connecting, and the [`Backend`] methods.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use mux_core::{
    Backend, BackendInfo, Capability, Error, Key, ListPage, ListRequest, Operation, PutOutcome,
    Record, Result, Version,
};

use crate::config::{BatchWrites, DynamoDbConfig};
use crate::core::Core;
use crate::error::map_sdk;
use crate::layout;

/// A backend storing one DynamoDB item per record.
#[derive(Clone)]
pub struct DynamoDbBackend {
    info: BackendInfo,
    core: Arc<Core>,
}

impl std::fmt::Debug for DynamoDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbBackend")
            .field("name", &self.info.name)
            .field("config", &self.core.config)
            .finish()
    }
}

impl DynamoDbBackend {
    /// The capability for a config: conditional writes are atomic (DynamoDB evaluates
    /// the condition with the write); `batch` when `put_batch` uses transactions.
    pub fn capability(config: &DynamoDbConfig) -> Capability {
        Capability {
            list: true,
            batch: config.batch_writes == BatchWrites::Transaction,
            atomic_conditional_write: true,
            history: false,
            tags: true,
            content_type: true,
            purge: true,
            durable: true,
            digest: false,
            max_value_size: Some(config.max_value_size),
        }
    }

    /// Validates the config, builds the client, checks the table (creating it when
    /// `create_table` is set, and waiting until it is `ACTIVE`) and its partition depth.
    pub async fn connect(name: impl AsRef<str>, config: DynamoDbConfig) -> Result<DynamoDbBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        config.validate().map_err(tag)?;
        let shared = config.connection().load().await.map_err(tag)?;
        let client = Client::from_conf(aws_sdk_dynamodb::config::Builder::from(&shared).build());
        let info = BackendInfo::new(name, crate::KIND, Self::capability(&config))
            .with_label("table", &config.table);
        let core = Core::new(client, config);
        core.prepare().await.map_err(tag)?;
        Ok(DynamoDbBackend {
            info,
            core: Arc::new(core),
        })
    }

    /// The SDK client, for callers that need DynamoDB operations mux does not offer.
    pub fn client(&self) -> &Client {
        &self.core.client
    }

    /// The config.
    pub fn config(&self) -> &DynamoDbConfig {
        &self.core.config
    }

    /// The item `record` is stored as (the README's *Item layout*), for tools and
    /// comparisons that write items themselves.
    pub fn item(&self, record: &Record) -> HashMap<String, AttributeValue> {
        layout::encode(record, self.core.depth())
    }

    /// The partition key (`mux_partition`) of `key`'s item.
    pub fn partition_of<'k>(&self, key: &'k Key) -> &'k str {
        layout::partition_of(key.as_str(), self.core.depth())
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    fn check(&self, record: &Record, op: Operation) -> Result<()> {
        self.info.check_value_size(record, op)?;
        record.meta().check(record.key())
    }
}

#[async_trait]
impl Backend for DynamoDbBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        let tag = self.tag(Operation::Put);
        self.check(record, Operation::Put).map_err(&tag)?;
        self.core.put_one(record).await.map_err(tag)
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let out = self
            .core
            .client
            .get_item()
            .table_name(self.core.table())
            .set_key(Some(layout::item_key(key.as_str(), self.core.depth())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.tag(Operation::Get)(map_sdk(e).error))?;
        out.item
            .map(layout::decode)
            .transpose()
            .map_err(self.tag(Operation::Get))
    }

    /// Validates every record first (nothing is written when one is too large), then
    /// writes as [`BatchWrites`] says. On error any subset may have been applied.
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        let tag = self.tag(Operation::PutBatch);
        for r in records {
            self.check(r, Operation::PutBatch).map_err(&tag)?;
        }
        self.core.put_batch(records).await.map_err(tag)
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        mux_core::partitioned::list_page(&*self.core, request)
            .await
            .map_err(self.tag(Operation::List))
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.core
            .purge(key, up_to)
            .await
            .map_err(self.tag(Operation::Purge))
    }

    /// Reads the layout item (one `GetItem`).
    async fn health(&self) -> Result<()> {
        match self.core.read_layout().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::new(
                mux_core::ErrorKind::NotFound,
                format!(
                    "DynamoDB table {:?} has lost its layout item; open the backend again",
                    self.core.table()
                ),
            )),
            Err(e) => Err(e),
        }
        .map_err(self.tag(Operation::Health))
    }
}
