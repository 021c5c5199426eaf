//! Reaching PostgreSQL: the URL parsed once, TLS set up once, and from them the pool
//! (every store) and single dedicated connections (the feed's LISTEN connection).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use mux_core::{Error, Result};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{TlsMode, redact};
use crate::tls::rustls_connector;

/// Where to connect and how.
pub(crate) struct Target {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: Option<MakeRustlsConnect>,
}

impl Target {
    /// Parses `url` and sets up `tls`.
    pub(crate) fn new(url: &str, tls: &TlsMode) -> Result<Target> {
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::invalid_input(format!("invalid PostgreSQL URL {}: {e}", redact(url)))
        })?;
        let tls = match tls {
            TlsMode::Disable => None,
            TlsMode::Require { ca_file } => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(rustls_connector(ca_file.as_deref())?)
            }
        };
        Ok(Target { pg, tls })
    }

    /// A pool of at most `size` connections (none opened yet).
    pub(crate) fn pool(&self, size: usize) -> Result<Pool> {
        let config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            None => Manager::from_config(self.pg.clone(), NoTls, config),
            Some(tls) => Manager::from_config(self.pg.clone(), tls.clone(), config),
        };
        Pool::builder(manager)
            .max_size(size.max(1))
            .build()
            .map_err(|e| Error::invalid_input(format!("cannot build the pool: {e}")))
    }
}

/// One connection of its own, outside any pool (for a session-scoped lock, say), with
/// the same URL and TLS rules as the stores; a spawned task drives it until the client
/// is dropped. `application_name` names it in `pg_stat_activity`.
pub async fn dedicated_connection(
    url: &str,
    tls: &TlsMode,
    application_name: &str,
) -> Result<tokio_postgres::Client> {
    let mut target = Target::new(url, tls)?;
    target.pg.application_name(application_name);
    target
        .pg
        .connect_timeout(std::time::Duration::from_secs(10));
    let failed = |e: tokio_postgres::Error| {
        Error::new(
            mux_core::ErrorKind::Unavailable,
            format!("cannot connect to PostgreSQL at {}: {e}", redact(url)),
        )
    };
    let name = application_name.to_owned();
    let drive = move |e: tokio_postgres::Error| tracing::debug!(error = %e, connection = %name, "PostgreSQL connection closed");
    match target.tls {
        None => {
            let (client, connection) = target.pg.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(drive) });
            Ok(client)
        }
        Some(tls) => {
            let (client, connection) = target.pg.connect(tls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(drive) });
            Ok(client)
        }
    }
}
