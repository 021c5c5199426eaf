//! The lease that lets one muxd at a time run a pass: a PostgreSQL session advisory lock.

use mux::postgres::{PostgresFeedConfig, TlsMode};
use mux::{Error, ErrorKind, Result};
use serde::Deserialize;

use super::LEASE_KEY;
use crate::config::{IntentLogSpec, LeaseKind, ServerConfig};

/// Where the lease is taken.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct LeaseTarget {
    url: String,
    tls: TlsMode,
}

impl std::fmt::Debug for LeaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTarget").finish_non_exhaustive()
    }
}

/// The PostgreSQL the configuration already uses: the intent log's, else the feed's.
fn postgres_of(config: &ServerConfig) -> Result<Option<LeaseTarget>> {
    if let Some(IntentLogSpec::Postgres(log)) = &config.intent_log {
        // The intent log connects without TLS; so does its lease.
        return Ok(Some(LeaseTarget {
            url: log.url.clone(),
            tls: TlsMode::Disable,
        }));
    }
    match &config.feed {
        Some(feed) if feed.kind == "postgres" => {
            let feed = PostgresFeedConfig::deserialize(toml::Value::Table(feed.fields.clone()))
                .map_err(|e| Error::invalid_input(format!("[feed]: {}", e.message())))?;
            Ok(Some(LeaseTarget {
                url: feed.url,
                tls: feed.tls,
            }))
        }
        _ => Ok(None),
    }
}

/// Where this configuration's passes take their lease (`None`: no lease).
pub(super) fn lease_target(config: &ServerConfig) -> Result<Option<LeaseTarget>> {
    let postgres = postgres_of(config)?;
    match (config.anti_entropy.lease, postgres) {
        (Some(LeaseKind::None), _) | (None, None) => Ok(None),
        (Some(LeaseKind::Postgres) | None, Some(target)) => Ok(Some(target)),
        (Some(LeaseKind::Postgres), None) => Err(Error::invalid_input(
            "anti_entropy.lease = \"postgres\" takes its lock in the PostgreSQL of the intent log \
             or the [feed], and neither is on PostgreSQL: configure one, or set lease = \"none\"",
        )),
    }
}

/// A PostgreSQL session advisory lock on [`LEASE_KEY`], on a connection of its own
/// (opened when first needed and again after it broke). Closing the connection, or the
/// process dying, releases the lock.
#[derive(Debug)]
pub struct PostgresLease {
    pub(super) target: LeaseTarget,
    client: Option<tokio_postgres::Client>,
    /// Whether this session holds the lock (taken and not yet released).
    held: bool,
}

impl PostgresLease {
    /// A lease in the database at `url` (no TLS), not yet connected.
    pub fn new(url: &str) -> PostgresLease {
        PostgresLease::with_target(LeaseTarget {
            url: url.to_owned(),
            tls: TlsMode::Disable,
        })
    }

    pub(super) fn with_target(target: LeaseTarget) -> PostgresLease {
        PostgresLease {
            target,
            client: None,
            held: false,
        }
    }

    async fn client(&mut self) -> Result<&tokio_postgres::Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(connect(&self.target).await?);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// Takes the lock if no other session holds it; `false` if one does.
    pub async fn try_acquire(&mut self) -> Result<bool> {
        let result = match self.client().await {
            Ok(client) => client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_KEY])
                .await
                .map(|row| row.get::<_, bool>(0))
                .map_err(|e| lease_error("take", &e)),
            Err(e) => Err(e),
        };
        match result {
            // Session locks stack: one taken twice would need two releases.
            Ok(true) if self.held => {
                self.release().await;
                self.held = true;
                Ok(true)
            }
            Ok(took) => {
                self.held = took;
                Ok(took)
            }
            Err(e) => {
                // A session in an unknown state is not reused (closing it releases
                // whatever it held).
                self.client = None;
                self.held = false;
                Err(e)
            }
        }
    }

    /// Releases the lock if held; if that fails the connection is closed, which
    /// releases it too.
    pub async fn release(&mut self) {
        if !std::mem::take(&mut self.held) {
            return;
        }
        let Some(client) = &self.client else {
            return;
        };
        let released = client
            .query_one("SELECT pg_advisory_unlock($1)", &[&LEASE_KEY])
            .await
            .map(|row| row.get::<_, bool>(0));
        match released {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "anti-entropy: the lease was no longer held when released (its connection was lost during the pass)"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "anti-entropy: cannot release the lease; closing its connection releases it");
                self.client = None;
            }
        }
    }
}

fn lease_error(what: &str, e: &tokio_postgres::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("cannot {what} the anti-entropy lease: {e}"),
    )
}

async fn connect(target: &LeaseTarget) -> Result<tokio_postgres::Client> {
    mux::postgres::dedicated_connection(&target.url, &target.tls, "muxd anti-entropy lease")
        .await
        .map_err(|e| e.context("the anti-entropy lease"))
}
