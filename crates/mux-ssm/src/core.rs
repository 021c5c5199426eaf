//! The SSM client with its config and names: the few Parameter Store calls every
//! operation is built from.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType};
use mux_core::{Error, Result};

use crate::config::SsmConfig;
use crate::error::map_sdk;
use crate::layout::{Described, describe_mux};
use crate::names::Names;

/// The most results SSM hands out per page of `DescribeParameters` and
/// `GetParameterHistory`.
pub(crate) const PAGE: i32 = 50;
/// A bound on the pages one call reads: SSM keeps at most 100 versions (2 pages of
/// history), and a `Name` filter matches one parameter; this only stops a server that
/// keeps sending tokens.
const MAX_PAGES_ONE: usize = 64;

/// The SDK client, the config it was built from, and the key ↔ name mapping.
#[derive(Clone)]
pub(crate) struct SsmCore {
    pub(crate) client: Client,
    pub(crate) config: SsmConfig,
    pub(crate) names: Names,
    /// Recent listing scans, for the later pages of their listings.
    pub(crate) scans: crate::listing::Scans,
}

/// What `DescribeParameters` tells about a parameter's current version.
#[derive(Debug)]
pub(crate) struct Head {
    /// SSM's own version number (1, 2, ... per parameter, restarting after a delete).
    pub(crate) ssm_version: i64,
    /// The mux metadata of that version.
    pub(crate) described: Described,
}

/// One stored version from `GetParameterHistory`.
#[derive(Clone, Debug)]
pub(crate) struct Past {
    pub(crate) ssm_version: i64,
    pub(crate) value: String,
    pub(crate) description: Option<String>,
}

/// A `ParameterFilters` entry.
pub(crate) fn filter(key: &str, option: &str, value: &str) -> Result<ParameterStringFilter> {
    ParameterStringFilter::builder()
        .key(key)
        .option(option)
        .values(value)
        .build()
        .map_err(|e| Error::internal(format!("building an SSM filter: {e}")))
}

/// A server that keeps paging past any sensible bound.
pub(crate) fn endless(what: &str, name: &str) -> Error {
    Error::new(
        mux_core::ErrorKind::Unavailable,
        format!("SSM kept paging {what} of {name}"),
    )
    .temporary()
}

impl SsmCore {
    /// The current version's SSM number and description (`DescribeParameters` with a
    /// `Name` filter); `None` when there is no such parameter.
    pub(crate) async fn describe(&self, name: &str) -> Result<Option<(i64, Option<String>)>> {
        let name_filter = filter("Name", "Equals", name)?;
        let mut token = None;
        for _ in 0..MAX_PAGES_ONE {
            let out = self
                .client
                .describe_parameters()
                .parameter_filters(name_filter.clone())
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_sdk(e).error)?;
            if let Some(p) = out.parameters().iter().find(|p| p.name() == Some(name)) {
                return Ok(Some((p.version(), p.description().map(str::to_owned))));
            }
            // Results are best-effort: a page may be empty and still have a token.
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(None),
            }
        }
        Err(endless("the description", name))
    }

    /// The current version's SSM number and mux metadata; `Corrupt` when the parameter
    /// is not a mux record.
    pub(crate) async fn head(&self, name: &str) -> Result<Option<Head>> {
        match self.describe(name).await? {
            None => Ok(None),
            Some((ssm_version, description)) => Ok(Some(Head {
                ssm_version,
                described: describe_mux(description.as_deref(), name)?,
            })),
        }
    }

    /// The current version's SSM number and value (`GetParameter`); `None` when there
    /// is no such parameter.
    pub(crate) async fn value(&self, name: &str) -> Result<Option<(i64, String)>> {
        match self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(false)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .parameter()
                .map(|p| (p.version(), p.value().unwrap_or_default().to_owned()))),
            Err(e) => {
                let f = map_sdk(e);
                if f.has_code("ParameterNotFound") {
                    Ok(None)
                } else {
                    Err(f.error)
                }
            }
        }
    }

    /// Every stored version (`GetParameterHistory`, all pages; SSM keeps the last 100),
    /// in no particular order; empty when there is no such parameter.
    pub(crate) async fn history(&self, name: &str) -> Result<Vec<Past>> {
        let mut all = Vec::new();
        let mut token = None;
        for _ in 0..MAX_PAGES_ONE {
            let out = match self
                .client
                .get_parameter_history()
                .name(name)
                .with_decryption(false)
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let f = map_sdk(e);
                    return if f.has_code("ParameterNotFound") {
                        Ok(Vec::new())
                    } else {
                        Err(f.error)
                    };
                }
            };
            all.extend(out.parameters().iter().map(|p| Past {
                ssm_version: p.version(),
                value: p.value().unwrap_or_default().to_owned(),
                description: p.description().map(str::to_owned),
            }));
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(all),
            }
        }
        Err(endless("the history", name))
    }

    /// Writes a new version (`PutParameter` with `Overwrite`) and returns its SSM
    /// number.
    pub(crate) async fn put_parameter(
        &self,
        name: &str,
        value: &str,
        description: &str,
    ) -> Result<i64> {
        self.client
            .put_parameter()
            .name(name)
            .value(value)
            .description(description)
            .r#type(ParameterType::String)
            .data_type("text")
            .tier(self.config.tier.sdk())
            .overwrite(true)
            .send()
            .await
            .map(|out| out.version())
            .map_err(|e| map_sdk(e).error)
    }

    /// Deletes the parameter with all its versions; `false` when it was not there.
    pub(crate) async fn delete_parameter(&self, name: &str) -> Result<bool> {
        match self.client.delete_parameter().name(name).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let f = map_sdk(e);
                if f.has_code("ParameterNotFound") {
                    Ok(false)
                } else {
                    Err(f.error)
                }
            }
        }
    }
}
