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
    /// This node's own log: a directory of segment files with group commit
    /// (`mux_wal`), or a redb file when the path ends in `.redb` or is an existing file.
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
    /// TLS on both listeners: `[tls]` with `cert`, `key` and, for client certificates,
    /// `client_ca` (see `crate::tls::TlsConfig`). The files are read again on reload.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Serve plain TCP on a non-loopback address (TLS terminated in front of muxd, by
    /// an ingress or a service mesh). Without `[tls]` and without this, muxd listens
    /// only on loopback.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The largest request body; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The durable intent log, for `durability = "log"`: a directory for the segment
    /// log (`mux_wal`), a redb file path (`*.redb`), or
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
    /// Key sets for encryption at rest: `[[keys]]` tables (`name`, `kind = "keyring"`
    /// with `path`, or `kind = "kms"` with `key_id`); a route names one with
    /// `encrypt = "name"`.
    #[serde(default)]
    pub keys: Vec<mux::encrypt::KeysSpec>,
    /// Authentication: `[auth]` with `mode = "jwt"` (and its keys) or `mode = "off"`
    /// (loopback only).
    pub auth: crate::auth::AuthConfig,
    /// Routes, node id and resilience.
    pub mux: MuxConfig,
    /// Logs and traces: `[telemetry]` with `log_format`, `log_level`, `otlp_endpoint`.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Background anti-entropy and tombstone GC: `[anti_entropy]` (off by default).
    #[serde(default)]
    pub anti_entropy: AntiEntropyConfig,
    /// The audit trail: `[audit]` (off by default; see `crate::audit::AuditConfig`).
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// Per-tenant quotas: `[quotas]` (none by default; see `crate::quota::QuotaConfig`).
    #[serde(default)]
    pub quotas: crate::quota::QuotaConfig,
}

/// `[anti_entropy]`: every `interval`, compare the stores of each route that has two
/// or more (and is listed) and repair what differs (`mux_sync::verify`), then, with
/// `gc_grace`, purge the tombstones every store of the route holds
/// (`mux_sync::collect_garbage`). Off by default.
///
/// ```toml
/// [anti_entropy]
/// enabled = true
/// interval = "10m"          # between the starts of two passes
/// ops_per_second = 1000     # store operations per second a pass may make (0: no limit)
/// repair = true             # false: only count and report the divergent keys
/// gc_grace = "10d"          # optional: tombstone GC after each pass, with this grace
/// lease = "postgres"        # or "none"; default "postgres" with a PostgreSQL
///                           # intent_log or [feed], else "none"
/// exclude_prefixes = ["cache/"]   # routes (by prefix; "" is the default route) left alone
/// restore_stale = true      # backfill a store its marker finds stale, then read it again
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntiEntropyConfig {
    /// Whether passes run at all.
    #[serde(default)]
    pub enabled: bool,
    /// The time between the starts of two passes (`"10m"`); a pass that takes longer is
    /// followed by the next one a whole interval after it ends.
    #[serde(
        default = "default_anti_entropy_interval",
        deserialize_with = "anti_entropy_interval"
    )]
    pub interval: std::time::Duration,
    /// The store operations per second a pass may make, over all its stores (each digest,
    /// listing page, read or write counts once; 0: no limit).
    #[serde(default = "default_anti_entropy_ops")]
    pub ops_per_second: u32,
    /// Write the highest version of each divergent key to the stores that hold less
    /// (`false`: only count and report them).
    #[serde(default = "default_true")]
    pub repair: bool,
    /// When set, tombstone GC runs after each pass: a tombstone older than this that
    /// every store of the route holds is purged (`"10d"`). It must exceed the longest a
    /// write can stay in flight (hinted handoff, dead letters awaiting replay).
    #[serde(default, deserialize_with = "anti_entropy_gc_grace")]
    pub gc_grace: Option<std::time::Duration>,
    /// One node at a time: `"postgres"` takes a PostgreSQL advisory lock (in the
    /// database of the intent log, else of the feed) for each pass, and a node that does
    /// not get it skips the pass; `"none"` runs every node's passes. Default: `"postgres"`
    /// when the intent log or the feed is on PostgreSQL, else `"none"`.
    #[serde(default)]
    pub lease: Option<LeaseKind>,
    /// Routes left alone, by their `prefix` (`""` is the default route; every route with
    /// that prefix, whatever its tenant or tags).
    #[serde(default)]
    pub exclude_prefixes: Vec<String>,
    /// When `[mux.resilience] markers` finds a store stale (it came back empty or old),
    /// backfill it from its routes' other stores and put it back into reads (whether
    /// passes are `enabled` or not). `false`: it stays out of reads until an operator
    /// refills it and calls `POST /v1/admin/backends/{name}/restored`.
    #[serde(default = "default_true")]
    pub restore_stale: bool,
}

/// How anti-entropy passes are kept to one node at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseKind {
    /// Every node runs its passes.
    None,
    /// A PostgreSQL session advisory lock per pass.
    Postgres,
}

impl Default for AntiEntropyConfig {
    fn default() -> AntiEntropyConfig {
        AntiEntropyConfig {
            enabled: false,
            interval: default_anti_entropy_interval(),
            ops_per_second: default_anti_entropy_ops(),
            repair: true,
            gc_grace: None,
            lease: None,
            exclude_prefixes: Vec::new(),
            restore_stale: true,
        }
    }
}

fn default_anti_entropy_interval() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

fn default_anti_entropy_ops() -> u32 {
    1000
}

fn default_true() -> bool {
    true
}

fn duration_field<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &str,
) -> std::result::Result<std::time::Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "anti_entropy.{field}: bad duration {text:?}: {e} (write e.g. \"30s\", \"10m\", \"10d\")"
        ))
    })
}

fn anti_entropy_interval<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<std::time::Duration, D::Error> {
    duration_field(d, "interval")
}

fn anti_entropy_gc_grace<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<std::time::Duration>, D::Error> {
    duration_field(d, "gc_grace").map(Some)
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
                "intent_log: kind \"{}\" is not known; give a directory (segment log), a redb file path or kind = \"postgres\"",
                log.kind
            )));
        }
        crate::antientropy::check(&config)?;
        config.check_transport()?;
        Ok(config)
    }
}

impl ServerConfig {
    /// Plain TCP only on loopback unless `allow_plaintext`; `[tls]` well formed.
    pub fn check_transport(&self) -> Result<()> {
        if let Some(tls) = &self.tls {
            return tls.check();
        }
        let exposed: Vec<String> = [("listen", &self.listen), ("grpc_listen", &self.grpc_listen)]
            .into_iter()
            .filter(|(_, addr)| !crate::tls::is_loopback(addr))
            .map(|(what, addr)| format!("{what} = \"{addr}\""))
            .collect();
        if exposed.is_empty() || self.allow_plaintext {
            return Ok(());
        }
        let what = if exposed.len() == 1 {
            "is not a loopback address"
        } else {
            "are not loopback addresses"
        };
        Err(Error::invalid_input(format!(
            "{} {what} and there is no [tls]: give [tls] cert and key, \
             or set allow_plaintext = true when TLS ends in front of muxd",
            exposed.join(" and ")
        )))
    }
}

/// Whether a backend field holds a secret (its value is never logged).
fn is_secret(field: &str) -> bool {
    let field = field.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "connection_string",
        "account_key",
        "credential",
    ]
    .iter()
    .any(|s| field.contains(s))
}

/// A URL with the password of its user info replaced by `***`.
fn redact_url(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_owned();
    };
    let rest = &value[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &value[..scheme_end + 3], &rest[at..])
        }
        None => value.to_owned(),
    }
}

fn field_value(field: &str, value: &toml::Value) -> String {
    match value {
        _ if is_secret(field) => "***".into(),
        toml::Value::String(s) => format!("{:?}", redact_url(s)),
        other => other.to_string(),
    }
}

impl ServerConfig {
    /// The configuration as one log line, secrets redacted: passwords in URLs, and
    /// every field named like a password, secret, token, key or connection string.
    pub fn redacted(&self) -> String {
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|b| {
                let fields: Vec<String> = b
                    .fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", field_value(k, v)))
                    .collect();
                format!("{} ({}: {})", b.name, b.kind, fields.join(", "))
            })
            .collect();
        let intent_log = match &self.intent_log {
            None => "none".to_owned(),
            Some(IntentLogSpec::File(path)) => path.display().to_string(),
            Some(IntentLogSpec::Postgres(log)) => {
                format!("postgres {} (prefix {})", redact_url(&log.url), log.prefix)
            }
        };
        format!(
            "listen={} grpc_listen={} auth={:?} intent_log={intent_log} feed={} routes={} \
             backends=[{}] telemetry={{format={:?}, otlp={}}} anti_entropy={}",
            self.listen,
            self.grpc_listen,
            self.auth.mode,
            self.feed
                .as_ref()
                .map_or("memory".to_owned(), |f| format!("{f:?}")
                    .chars()
                    .take(40)
                    .collect()),
            self.mux.routes.len() + 1,
            backends.join("; "),
            self.telemetry.log_format,
            self.telemetry.otlp_endpoint.as_deref().unwrap_or("off"),
            if self.anti_entropy.enabled {
                format!(
                    "every {}",
                    humantime::format_duration(self.anti_entropy.interval)
                )
            } else {
                "off".to_owned()
            },
        )
    }

    /// What changes from `self` to `new`, for the reload log: backends added, removed
    /// or changed (by name), and whether routes, auth or the rest changed.
    pub fn changes_to(&self, new: &ServerConfig) -> Vec<String> {
        let mut changes = Vec::new();
        for b in &new.backends {
            match self.backends.iter().find(|o| o.name == b.name) {
                None => changes.push(format!("backend {} added", b.name)),
                Some(old) if old != b => changes.push(format!("backend {} changed", b.name)),
                Some(_) => {}
            }
        }
        for b in &self.backends {
            if !new.backends.iter().any(|n| n.name == b.name) {
                changes.push(format!("backend {} removed", b.name));
            }
        }
        if self.mux != new.mux {
            changes.push("[mux] (routes, resilience, cache) changed".into());
        }
        if format!("{:?}", self.auth) != format!("{:?}", new.auth) {
            changes.push("[auth] changed".into());
        }
        if self.anti_entropy != new.anti_entropy {
            changes.push("[anti_entropy] changed".into());
        }
        if self.tls != new.tls {
            changes.push("[tls] changed".into());
        } else if new.tls.is_some() {
            changes.push("[tls] certificate files read again".into());
        }
        if changes.is_empty() {
            changes.push("nothing".into());
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_log_line() {
        let config = ServerConfig::from_toml(
            r#"
            [[backends]]
            name = "pg"
            kind = "postgres"
            url = "postgres://app:hunter2@db.internal:5432/app"
            [[backends]]
            name = "s3"
            kind = "s3"
            bucket = "b"
            secret_access_key = "wJalrXUtnFEMI"
            access_key_id = "AKIA"
            [auth]
            mode = "off"
            [mux]
            node_id = 1
            [mux.default]
            backends = [{ backend = "pg", role = "primary" }, { backend = "s3", role = "replica" }]
            "#,
        )
        .unwrap();
        let line = config.redacted();
        assert!(!line.contains("hunter2"), "{line}");
        assert!(!line.contains("wJalrXUtnFEMI"), "{line}");
        assert!(
            line.contains("postgres://app:***@db.internal:5432/app"),
            "{line}"
        );
        assert!(line.contains("access_key_id=\"AKIA\""), "{line}");
    }

    #[test]
    fn reload_changes_name_the_backends() {
        let base = |extra: &str| {
            ServerConfig::from_toml(&format!(
                r#"
                [[backends]]
                name = "a"
                kind = "memory"
                {extra}
                [auth]
                mode = "off"
                [mux]
                node_id = 1
                [mux.default]
                backends = [{{ backend = "a", role = "primary" }}]
                "#
            ))
            .unwrap()
        };
        let old = base("");
        assert_eq!(old.changes_to(&old), ["nothing"]);
        let mut new = base("");
        new.backends.push(BackendSpec::new("b", "memory"));
        assert_eq!(old.changes_to(&new), ["backend b added"]);
        assert_eq!(new.changes_to(&old), ["backend b removed"]);
    }
}
