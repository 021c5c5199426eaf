//! The shared state of a backend (client, config, the partitions known to be indexed)
//! and the table itself: checking, creating, the layout item.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableDescription, TableStatus,
};
use mux_core::{Error, ErrorKind, Result};

use crate::config::DynamoDbConfig;
use crate::error::map_sdk;
use crate::layout::{self, KEY, LAYOUT_ITEM, PARTITION, PARTITION_DEPTH};

/// How many partition names a backend remembers as indexed before it starts afresh.
const KNOWN_PARTITIONS_LIMIT: usize = 65_536;
/// How long `open` waits for a table to become `ACTIVE`.
const ACTIVE_WAIT: Duration = Duration::from_secs(300);

/// What every operation of a backend needs.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) client: Client,
    pub(crate) config: DynamoDbConfig,
    /// Partitions whose index item this process has written (or seen).
    known_partitions: Mutex<HashSet<String>>,
}

impl Core {
    pub(crate) fn new(client: Client, config: DynamoDbConfig) -> Core {
        Core {
            client,
            config,
            known_partitions: Mutex::new(HashSet::new()),
        }
    }

    /// The table's name.
    pub(crate) fn table(&self) -> &str {
        &self.config.table
    }

    /// The partition depth.
    pub(crate) fn depth(&self) -> usize {
        self.config.partition_depth
    }

    /// Whether the index item of `partition` is known to exist.
    pub(crate) fn is_indexed(&self, partition: &str) -> bool {
        self.known_partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(partition)
    }

    /// Remembers that the index item of `partition` exists.
    pub(crate) fn mark_indexed(&self, partition: &str) {
        let mut known = self
            .known_partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.len() >= KNOWN_PARTITIONS_LIMIT {
            // Forgetting is safe: the index item is written again, idempotently.
            known.clear();
        }
        known.insert(partition.to_owned());
    }

    /// Checks the table (creating it when configured to) and its layout item.
    pub(crate) async fn prepare(&self) -> Result<()> {
        let table = match self
            .client
            .describe_table()
            .table_name(self.table())
            .send()
            .await
        {
            Ok(out) => out.table.ok_or_else(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    "DynamoDB's DescribeTable answer has no table",
                )
                .temporary()
            })?,
            Err(e) => {
                let f = map_sdk(e);
                if !f.has_code("ResourceNotFoundException") {
                    return Err(f.error);
                }
                if !self.config.create_table {
                    return Err(self.missing_table(f.error));
                }
                self.create_table().await?
            }
        };
        self.check_key_schema(&table)?;
        if table.table_status() != Some(&TableStatus::Active) {
            self.wait_active().await?;
        }
        self.check_layout().await
    }

    fn missing_table(&self, cause: Error) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "DynamoDB table {:?} does not exist (region {}, endpoint {}): create it with \
                 the key schema mux_partition (HASH, string) + mux_key (RANGE, string) as \
                 mux-dynamodb's README shows, or set create_table = true",
                self.table(),
                self.config
                    .region
                    .as_deref()
                    .unwrap_or("from the AWS chain"),
                self.config.endpoint.as_deref().unwrap_or("AWS"),
            ),
        )
        .with_source(cause)
        .permanent()
    }

    async fn create_table(&self) -> Result<TableDescription> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and type are set")
        };
        let created = self
            .client
            .create_table()
            .table_name(self.table())
            .attribute_definitions(attr(PARTITION))
            .attribute_definitions(attr(KEY))
            .key_schema(key(PARTITION, KeyType::Hash))
            .key_schema(key(KEY, KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(out) => {
                tracing::info!(table = self.table(), "created the DynamoDB table");
                out.table_description.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unavailable,
                        "DynamoDB's CreateTable answer has no table",
                    )
                    .temporary()
                })
            }
            Err(e) => {
                let f = map_sdk(e);
                if !f.has_code("ResourceInUseException") {
                    return Err(f
                        .error
                        .context(format!("cannot create DynamoDB table {:?}", self.table())));
                }
                // Created concurrently by someone else: use it once it is active.
                let out = self
                    .client
                    .describe_table()
                    .table_name(self.table())
                    .send()
                    .await
                    .map_err(|e| map_sdk(e).error)?;
                Ok(out
                    .table
                    .unwrap_or_else(|| TableDescription::builder().build()))
            }
        }
    }

    /// Refuses a table whose primary key is not `mux_partition` + `mux_key`.
    fn check_key_schema(&self, table: &TableDescription) -> Result<()> {
        let schema = table.key_schema();
        if schema.is_empty() {
            return Ok(()); // not described (a concurrent creation); the writes will tell
        }
        let has = |name: &str, kind: KeyType| {
            schema
                .iter()
                .any(|k| k.attribute_name() == name && *k.key_type() == kind)
        };
        if schema.len() == 2 && has(PARTITION, KeyType::Hash) && has(KEY, KeyType::Range) {
            return Ok(());
        }
        let found: Vec<String> = schema
            .iter()
            .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
            .collect();
        Err(Error::invalid_input(format!(
            "DynamoDB table {:?} has the key schema {}, mux needs mux_partition (HASH, string) \
             + mux_key (RANGE, string): use another table (see mux-dynamodb's README)",
            self.table(),
            found.join(" + ")
        )))
    }

    async fn wait_active(&self) -> Result<()> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(self.table())
                .send()
                .await;
            let status = match out {
                Ok(out) => out.table.and_then(|t| t.table_status),
                Err(e) => {
                    let f = map_sdk(e);
                    // Eventually consistent right after CreateTable.
                    if !f.has_code("ResourceNotFoundException") {
                        return Err(f.error);
                    }
                    None
                }
            };
            match status {
                Some(TableStatus::Active | TableStatus::Updating) => return Ok(()),
                Some(TableStatus::Deleting) => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("DynamoDB table {:?} is being deleted", self.table()),
                    )
                    .permanent());
                }
                _ => {}
            }
            if started.elapsed() > ACTIVE_WAIT {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "DynamoDB table {:?} did not become ACTIVE within {} s",
                        self.table(),
                        ACTIVE_WAIT.as_secs()
                    ),
                )
                .temporary());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Reads the layout item, writing it first when the table has none, and refuses a
    /// partition depth other than the one the table was laid out with.
    async fn check_layout(&self) -> Result<()> {
        let depth = self.depth();
        let stored = match self.read_layout().await? {
            Some(stored) => stored,
            None => {
                let mut item = layout::raw_key(LAYOUT_ITEM, LAYOUT_ITEM);
                item.insert(
                    PARTITION_DEPTH.to_owned(),
                    AttributeValue::N(depth.to_string()),
                );
                let written = self
                    .client
                    .put_item()
                    .table_name(self.table())
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(mux_key)")
                    .send()
                    .await;
                match written {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        let f = map_sdk(e);
                        if !f.has_code("ConditionalCheckFailedException") {
                            return Err(f.error);
                        }
                    }
                }
                // Another process wrote it first: compare with its depth.
                self.read_layout().await?.unwrap_or(depth)
            }
        };
        if stored != depth {
            return Err(Error::invalid_input(format!(
                "DynamoDB table {:?} is laid out with partition_depth {stored}, the config says \
                 {depth}: set partition_depth = {stored} (records cannot be found under another \
                 depth), or use a new table",
                self.table()
            )));
        }
        Ok(())
    }

    /// The partition depth the layout item records (`None` when there is no item).
    pub(crate) async fn read_layout(&self) -> Result<Option<usize>> {
        let key = layout::raw_key(LAYOUT_ITEM, LAYOUT_ITEM);
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(e).error)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        match item.get(PARTITION_DEPTH).and_then(|v| v.as_n().ok()) {
            Some(n) => n.parse().map(Some).map_err(|_| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("the layout item's {PARTITION_DEPTH} is {n:?}, not a count"),
                )
            }),
            None => Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the layout item ({PARTITION} = {LAYOUT_ITEM:?}) of DynamoDB table {:?} has \
                     no number {PARTITION_DEPTH}",
                    self.table()
                ),
            )),
        }
    }
}
