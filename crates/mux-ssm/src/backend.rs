//! [`SsmBackend`]: connecting, and the [`Backend`] methods.

use async_trait::async_trait;
use aws_sdk_ssm::Client;
use futures_util::{StreamExt, TryStreamExt};
use mux_core::{
    AsOf, Backend, BackendInfo, Capability, Error, ErrorKind, HistoryPage, HistoryRequest, Key,
    ListPage, ListRequest, Operation, PutOutcome, Record, Result, Version,
};

use crate::config::SsmConfig;
use crate::core::{Past, SsmCore, filter};
use crate::error::map_sdk;
use crate::layout::{describe, describe_mux, encode};
use crate::names::Names;

/// A backend storing each record as an AWS Systems Manager parameter, each write as a
/// new version of it.
#[derive(Clone)]
pub struct SsmBackend {
    info: BackendInfo,
    core: SsmCore,
}

impl std::fmt::Debug for SsmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsmBackend")
            .field("name", &self.info.name)
            .field("config", &self.core.config)
            .finish()
    }
}

impl SsmBackend {
    /// The capability for a config: history (SSM keeps each key's last 100 versions),
    /// tags and content type (in the description), purge; not
    /// `atomic_conditional_write` (SSM has no conditional write: see the README), not
    /// `batch`; `max_value_size` from the tier ([`crate::Tier::max_value_size`]).
    pub fn capability(config: &SsmConfig) -> Capability {
        Capability {
            list: true,
            batch: false,
            atomic_conditional_write: false,
            history: true,
            tags: true,
            content_type: true,
            purge: true,
            durable: true,
            digest: false,
            max_value_size: Some(config.tier.max_value_size()),
        }
    }

    /// Validates the config, builds the client and checks that Parameter Store answers.
    pub async fn connect(name: impl AsRef<str>, config: SsmConfig) -> Result<SsmBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        config.validate().map_err(tag)?;
        let shared = config.connection().load().await.map_err(tag)?;
        let region = shared.region().map(ToString::to_string).unwrap_or_default();
        let mut info = BackendInfo::new(name, crate::KIND, Self::capability(&config))
            .with_label("region", &region);
        if !config.root_path.is_empty() {
            info = info.with_label("root_path", &config.root_path);
        }
        let backend = SsmBackend {
            info,
            core: SsmCore {
                client: Client::new(&shared),
                names: Names::new(&config.root_path, &region),
                scans: Default::default(),
                config,
            },
        };
        backend.health().await.map_err(|e| {
            e.context("Parameter Store is not reachable")
                .with_operation(Operation::Open)
        })?;
        Ok(backend)
    }

    /// The SDK client, for callers that need SSM operations mux does not offer.
    pub fn client(&self) -> &Client {
        &self.core.client
    }

    /// The config.
    pub fn config(&self) -> &SsmConfig {
        &self.core.config
    }

    /// The parameter name of a mux key (see the crate docs for the escaping).
    pub fn parameter_name(&self, key: &Key) -> String {
        self.core.names.name(key.as_str())
    }

    /// The mux key a parameter name stands for; `None` for names mux does not make.
    pub fn key_of(&self, parameter_name: &str) -> Option<Key> {
        self.core.names.key(parameter_name)
    }

    /// The parameter value and description `record` is stored as (the README's
    /// *Layout*), for tools and comparisons that write parameters themselves; refused
    /// with `TooLarge` naming SSM's limit as `put` would.
    pub fn parameter(&self, record: &Record) -> Result<(String, String)> {
        let encoded = encode(record, self.core.config.tier.value_limit())?;
        Ok((encoded.value, encoded.description))
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    async fn put_one(&self, record: &Record) -> Result<PutOutcome> {
        let tier = self.core.config.tier;
        if record.value().len() > tier.max_value_size() {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "value of {} is {} bytes; the {} tier takes {} (SSM's {} less room for \
                     base64, in which values that are not text are stored){}",
                    record.key(),
                    record.value().len(),
                    tier.as_str(),
                    tier.max_value_size(),
                    tier.value_limit(),
                    if tier == crate::Tier::Standard {
                        "; tier = \"advanced\" takes 6144"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let name = self.core.names.checked_name(record.key())?;
        let encoded = encode(record, self.core.config.tier.value_limit())?;
        self.core.put_encoded(record, &name, &encoded).await
    }

    async fn get_one(&self, key: &Key) -> Result<Option<Record>> {
        let name = self.core.names.checked_name(key)?;
        let (value, described) = tokio::join!(self.core.value(&name), self.core.describe(&name));
        let (value, description) = match (value?, described?) {
            (None, _) => return Ok(None),
            (Some((v, value)), Some((d, description))) if v == d => (value, description),
            // A write landed between the two reads (or one of them lagged): take the
            // newest version from the history, which has value and description together.
            _ => match self
                .core
                .history(&name)
                .await?
                .into_iter()
                .max_by_key(|p| p.ssm_version)
            {
                None => return Ok(None),
                Some(p) => (p.value, p.description),
            },
        };
        describe_mux(description.as_deref(), &name)?
            .record(key.clone(), &value, &name)
            .map(Some)
    }

    /// Every stored mux version of `key`, tombstones included, in no order; versions
    /// that are not mux records (written by other tools) are left out with a warning.
    async fn versions(&self, key: &Key) -> Result<Vec<Record>> {
        let name = self.core.names.checked_name(key)?;
        let mut out = Vec::new();
        for Past {
            ssm_version,
            value,
            description,
        } in self.core.history(&name).await?
        {
            match describe(description.as_deref(), &name)? {
                Some(d) => out.push(d.record(key.clone(), &value, &name)?),
                None => tracing::warn!(
                    name,
                    ssm_version,
                    "leaving a version without mux metadata out of the history"
                ),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for SsmBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.put_one(record).await.map_err(self.tag(Operation::Put))
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.get_one(key).await.map_err(self.tag(Operation::Get))
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

    /// Reads the current version and deletes the parameter (with its whole history)
    /// when that version is at most `up_to`. SSM cannot delete conditionally: a write
    /// landing between the read and the delete is deleted too (see the README). A key
    /// too long or too deep for an SSM name was never stored: `false`.
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let tag = self.tag(Operation::Purge);
        let Ok(name) = self.core.names.checked_name(key) else {
            return Ok(false);
        };
        match self.core.head(&name).await.map_err(&tag)? {
            Some(head) if head.described.meta.version <= up_to => {
                self.core.delete_parameter(&name).await.map_err(tag)
            }
            _ => Ok(false),
        }
    }

    async fn health(&self) -> Result<()> {
        // A described name no key maps to ("_h" is no escape): any answer is health.
        let probe = format!("{}/_health", self.core.names.root());
        let probe = filter("Name", "Equals", &probe).map_err(self.tag(Operation::Health))?;
        self.core
            .client
            .describe_parameters()
            .parameter_filters(probe)
            .max_results(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.tag(Operation::Health)(map_sdk(e).error))
    }

    /// From `GetParameterHistory` (all pages: SSM keeps the last 100 versions, 50 per
    /// page), sorted newest first by mux version.
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        let tag = self.tag(Operation::History);
        request.effective_limit().map_err(&tag)?;
        let versions = self.versions(&request.key).await.map_err(&tag)?;
        request.page(versions).map_err(tag)
    }

    /// One read of the history, then the highest version at or below the bound.
    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        let versions = self
            .versions(key)
            .await
            .map_err(self.tag(Operation::History))?;
        Ok(versions
            .into_iter()
            .filter(|r| at.admits(r.version()))
            .max_by_key(Record::version))
    }
}
