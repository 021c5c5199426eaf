//! muxd's TOML configuration.

use std::path::PathBuf;

use mux::{BackendSpec, Error, FeedSpec, MuxConfig, Result};
use serde::Deserialize;

/// The configuration used when `--config` is not given: fs and redb under `./data`.
pub const EMBEDDED: &str = include_str!("../examples/embedded.toml");

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_grpc_listen() -> String {
    "127.0.0.1:50051".into()
}

fn default_max_body() -> usize {
    8 << 20
}

/// Where the intent log lives.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntentLogSpec {
    /// A redb file, this node's own.
    File(PathBuf),
    /// A PostgreSQL log shared by several nodes (each claims what it owes; a dead
    /// node's entries are taken over after `lease_ms`).
    Postgres(PostgresLogSpec),
}

/// `intent_log = { kind = "postgres", url = "…", prefix = "mux", lease_ms = 30000 }`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresLogSpec {
    /// Must be `"postgres"`.
    pub kind: String,
    /// The database URL.
    pub url: String,
    /// The tables' prefix (`<prefix>_intents`, …).
    #[serde(default = "default_log_prefix")]
    pub prefix: String,
    /// How long a node's claim on an entry lasts before another node takes it over.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

impl std::fmt::Debug for PostgresLogSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLogSpec")
            .field("prefix", &self.prefix)
            .field("lease_ms", &self.lease_ms)
            .finish_non_exhaustive()
    }
}

fn default_log_prefix() -> String {
    "mux".into()
}

fn default_lease_ms() -> u64 {
    30_000
}

/// The whole server configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the REST API listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the gRPC API listens.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: String,
    /// The largest request body; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The durable intent log, for `durability = "log"`: a redb file path, or
    /// `{ kind = "postgres", url = "…" }` shared by several nodes.
    #[serde(default)]
    pub intent_log: Option<IntentLogSpec>,
    /// The change feed every write is published to and that watchers and route caches
    /// read: `[feed] kind = "memory"` (this process only; the default), `"postgres"` or
    /// `"redis"` (shared by every node).
    #[serde(default)]
    pub feed: Option<FeedSpec>,
    /// The stores: `[[backends]]` tables with `name`, `kind` and the store's own
    /// fields, opened through the registry (`mux::open`).
    pub backends: Vec<BackendSpec>,
    /// Authentication: `[auth]` with `mode = "jwt"` (and its keys) or `mode = "off"`
    /// (loopback only).
    pub auth: crate::auth::AuthConfig,
    /// Routes, node id and resilience.
    pub mux: MuxConfig,
}

impl ServerConfig {
    /// Parses a configuration; errors name the line and the field. Every backend's
    /// kind and fields are checked too (without I/O), all problems reported at once.
    pub fn from_toml(text: &str) -> Result<ServerConfig> {
        let config: ServerConfig = toml::from_str(text)
            .map_err(|e| Error::invalid_input(format!("invalid muxd configuration: {e}")))?;
        mux::check_all(&config.backends)?;
        if let Some(feed) = &config.feed {
            feed.check()?;
        }
        if let Some(IntentLogSpec::Postgres(log)) = &config.intent_log
            && log.kind != "postgres"
        {
            return Err(Error::invalid_input(format!(
                "intent_log: kind \"{}\" is not known; give a redb file path or kind = \"postgres\"",
                log.kind
            )));
        }
        Ok(config)
    }
}
