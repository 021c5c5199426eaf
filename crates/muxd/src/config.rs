//! muxd's TOML configuration.

use std::path::PathBuf;

use mux::{BackendSpec, Error, MuxConfig, Result};
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
    /// The durable intent log file (redb), for `durability = "log"`.
    #[serde(default)]
    pub intent_log: Option<PathBuf>,
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
        Ok(config)
    }
}
