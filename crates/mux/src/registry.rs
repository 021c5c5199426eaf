//! The store registry: one place that maps a `kind` to a store.
//!
//! A [`BackendSpec`] is a name, a kind and the store's own fields, exactly as in TOML:
//!
//! ```toml
//! [[backends]]
//! name = "pg-eu"
//! kind = "postgres"
//! url = "postgres://app:secret@db.example:5432/app"
//! table = "mux_records"
//! ```
//!
//! [`open`] hands the fields to the store crate (`mux_postgres::PostgresConfig` here),
//! which alone knows them: it rejects unknown fields, fills defaults and hides secrets.
//! Nothing outside a store crate re-declares a store's fields.
//!
//! A store that cannot be reached when it is opened (a temporary error, or no answer
//! within the attempt timeout) does not fail [`open`]: it comes back as a
//! [`Deferred`] backend that starts unavailable and connects in the background. Only
//! configuration errors fail.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use mux_core::deferred::{Deferred, DeferredOptions, OpenFuture, Opener};
use mux_core::{Backend, BackendInfo, Error, ErrorKind, MemoryBackend, Operation, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Every store kind mux knows, whether or not its cargo feature is on. Each kind's
/// feature of the `mux` crate has the kind's name (`memory` needs none).
pub const KINDS: &[&str] = &[
    "memory", "fs", "redb", "postgres", "mysql", "scylla", "redis", "s3", "azure", "dynamodb",
    "ssm", "influx",
];

/// The registry: one line per store whose crate follows the adapter convention
/// (`KIND`, a `Deserialize` config, `info(name, &config)` and `open(name, config)`).
macro_rules! registry {
    ($( #[cfg(feature = $feature:literal)] $krate:ident ),* $(,)?) => {
        /// The kinds this build can open.
        pub fn enabled_kinds() -> Vec<&'static str> {
            let kinds: &[Option<&'static str>] = &[
                Some("memory"),
                $(
                    #[cfg(feature = $feature)]
                    Some($krate::KIND),
                )*
            ];
            kinds.iter().flatten().copied().collect()
        }

        async fn open_registered(
            spec: &BackendSpec,
            options: &DeferredOptions,
        ) -> Result<Arc<dyn Backend>> {
            let _ = options; // unused when no store feature is on
            match spec.kind.as_str() {
                "memory" => {
                    let config = parse_fields::<MemoryConfig>(spec)?;
                    Ok(Arc::new(if config.history {
                        MemoryBackend::with_history(&spec.name)
                    } else {
                        MemoryBackend::new(&spec.name)
                    }))
                }
                $(
                    #[cfg(feature = $feature)]
                    $krate::KIND => open_store(spec, options, $krate::info, |name: String, config| async move {
                        $krate::open(&name, config).await
                    })
                    .await,
                )*
                _ => Err(not_registered(spec)),
            }
        }

        fn check_registered(spec: &BackendSpec) -> Result<()> {
            match spec.kind.as_str() {
                "memory" => parse_fields::<MemoryConfig>(spec).map(|_| ()),
                $( #[cfg(feature = $feature)] $krate::KIND => parse_with(spec, $krate::info).map(|_| ()), )*
                _ => Err(not_registered(spec)),
            }
        }

        fn debug_registered(spec: &BackendSpec) -> Option<String> {
            match spec.kind.as_str() {
                "memory" => parse_fields::<MemoryConfig>(spec).ok().map(|c| format!("{c:?}")),
                $( #[cfg(feature = $feature)] $krate::KIND => parse_with(spec, $krate::info).ok().map(|c| format!("{c:?}")), )*
                _ => None,
            }
        }
    };
}

registry! {
    #[cfg(feature = "fs")] mux_fs,
    #[cfg(feature = "redb")] mux_redb,
    #[cfg(feature = "postgres")] mux_postgres,
    #[cfg(feature = "mysql")] mux_mysql,
    #[cfg(feature = "scylla")] mux_scylla,
    #[cfg(feature = "redis")] mux_redis,
    #[cfg(feature = "s3")] mux_s3,
    #[cfg(feature = "azure")] mux_azure,
    #[cfg(feature = "dynamodb")] mux_dynamodb,
    #[cfg(feature = "ssm")] mux_ssm,
    #[cfg(feature = "influx")] mux_influx,
}

/// A store to open: its name (used in routes), its kind, and the store's own fields.
///
/// Deserialized from TOML (`name`, `kind`, then the store's fields at the same level)
/// or built in code:
///
/// ```
/// let spec = mux::BackendSpec::new("pg-eu", "postgres")
///     .with("url", "postgres://app@db.example/app")
///     .with("pool_size", 8);
/// assert_eq!(spec.kind, "postgres");
/// ```
///
/// `Debug` shows the fields through the store's own config, so secrets stay hidden; when
/// they cannot be parsed it shows only the field names.
#[derive(Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct BackendSpec {
    /// The backend's name in routes, health reports and errors.
    pub name: String,
    /// Which store: one of [`KINDS`].
    pub kind: String,
    /// The store's own fields (see the store crate's config).
    #[serde(flatten)]
    pub fields: toml::Table,
}

impl BackendSpec {
    /// A spec with no fields yet.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> BackendSpec {
        BackendSpec {
            name: name.into(),
            kind: kind.into(),
            fields: toml::Table::new(),
        }
    }

    /// Sets one of the store's fields.
    pub fn with(mut self, field: impl Into<String>, value: impl Into<toml::Value>) -> BackendSpec {
        self.fields.insert(field.into(), value.into());
        self
    }

    /// Checks the spec without any I/O: the kind is known and compiled in, and the
    /// fields are the store's.
    pub fn check(&self) -> Result<()> {
        check_registered(self)
    }
}

impl fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("BackendSpec");
        d.field("name", &self.name).field("kind", &self.kind);
        match debug_registered(self) {
            Some(config) => d.field("config", &format_args!("{config}")),
            None => d.field("fields", &self.fields.keys().collect::<Vec<_>>()),
        };
        d.finish()
    }
}

/// The in-memory store's one field: `history = true` keeps every applied version
/// (`Capability::history`; tests and demos of temporal reads).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryConfig {
    #[serde(default)]
    history: bool,
}

/// Opens the store `spec` describes. Fails only on configuration errors; a store that
/// is unreachable now comes back as a [`Deferred`] backend (unavailable until it
/// connects in the background, with the default [`DeferredOptions`]).
pub async fn open(spec: &BackendSpec) -> Result<Arc<dyn Backend>> {
    open_with(spec, &DeferredOptions::default()).await
}

/// [`open`] with explicit options for the first attempt's bound and the background
/// reconnects.
pub async fn open_with(spec: &BackendSpec, options: &DeferredOptions) -> Result<Arc<dyn Backend>> {
    open_registered(spec, options).await
}

/// Checks a whole list of specs without I/O and reports every problem at once: unknown
/// or disabled kinds, unknown or missing fields, duplicate names.
pub fn check_all(specs: &[BackendSpec]) -> Result<()> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for spec in specs {
        if !names.insert(spec.name.as_str()) {
            problems.push(format!("backend \"{}\" is declared twice", spec.name));
        }
        if let Err(e) = spec.check() {
            problems.push(e.message().to_owned());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid backend configuration:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

/// Checks every spec ([`check_all`]), then opens them all at once ([`open`]); errors
/// (configuration errors only) are reported together.
pub async fn open_all(specs: &[BackendSpec]) -> Result<Vec<Arc<dyn Backend>>> {
    check_all(specs)?;
    let opened = futures_util::future::join_all(specs.iter().map(open)).await;
    let mut backends = Vec::with_capacity(opened.len());
    let mut problems = Vec::new();
    for result in opened {
        match result {
            Ok(b) => backends.push(b),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(backends)
    } else {
        Err(Error::invalid_input(format!(
            "cannot open the backends:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

fn not_registered(spec: &BackendSpec) -> Error {
    let (name, kind) = (&spec.name, &spec.kind);
    let message = if KINDS.contains(&kind.as_str()) {
        format!("backend \"{name}\": kind \"{kind}\" needs the mux feature \"{kind}\"")
    } else {
        format!(
            "backend \"{name}\": unknown kind \"{kind}\"; the known kinds are {} (in this build: {})",
            quoted(KINDS.iter().copied()),
            quoted(enabled_kinds().into_iter()),
        )
    };
    Error::invalid_input(message).with_operation(Operation::Open)
}

fn quoted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The store's config from the spec's fields; errors name the backend and the field.
fn parse_fields<C: DeserializeOwned>(spec: &BackendSpec) -> Result<C> {
    C::deserialize(toml::Value::Table(spec.fields.clone())).map_err(|e| {
        // serde quotes names with backticks; the rest of mux's messages use "".
        let reason = e.message().trim().replace('`', "\"");
        Error::invalid_input(format!("backend \"{}\": {reason}", spec.name))
            .with_operation(Operation::Open)
    })
}

/// [`parse_fields`], with the config type taken from the store's `info` function.
fn parse_with<C: DeserializeOwned>(
    spec: &BackendSpec,
    _info: fn(&str, &C) -> BackendInfo,
) -> Result<C> {
    parse_fields(spec)
}

/// Parses, opens within the attempt bound, and defers a store that is unreachable now.
#[cfg_attr(
    not(any(
        feature = "fs",
        feature = "redb",
        feature = "postgres",
        feature = "redis"
    )),
    allow(dead_code)
)]
async fn open_store<C, F, Fut>(
    spec: &BackendSpec,
    options: &DeferredOptions,
    info: fn(&str, &C) -> BackendInfo,
    open: F,
) -> Result<Arc<dyn Backend>>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
    F: Fn(String, C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Arc<dyn Backend>>> + Send + 'static,
{
    let config = parse_with(spec, info)?;
    let attempt = tokio::time::timeout(
        options.attempt_timeout,
        open(spec.name.clone(), config.clone()),
    )
    .await;
    let first = match attempt {
        Ok(Ok(backend)) => return Ok(backend),
        Ok(Err(e)) if !e.is_temporary() => return Err(e),
        Ok(Err(e)) => e,
        Err(_) => Error::new(
            ErrorKind::Timeout,
            format!("no connection within {:?}", options.attempt_timeout),
        )
        .with_backend(&spec.name)
        .with_operation(Operation::Open),
    };
    tracing::warn!(
        backend = %spec.name,
        kind = %spec.kind,
        error = %first,
        "store unreachable at start: it starts unavailable and connects in the background"
    );
    let name = spec.name.clone();
    let info = info(&name, &config);
    let opener: Opener =
        Arc::new(move || -> OpenFuture { Box::pin(open(name.clone(), config.clone())) });
    Ok(Arc::new(Deferred::spawn(info, first, opener, *options)))
}

#[cfg(test)]
mod tests;
