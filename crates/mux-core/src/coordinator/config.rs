//! The coordinator's configuration: routes, roles, consistency levels, read policies.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::resilience::{
    BreakerConfig, BulkheadConfig, BulkheadLayer, CircuitBreakerLayer, InstrumentedLayer, Layers,
    RetryPolicy, TimeoutLayer,
};

/// How many backends must apply a write before it is acknowledged.
///
/// Counted over a route's *voters* (primaries and replicas; async replicas never count).
/// A backend that already holds the same or a newer version counts as applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteConsistency {
    /// Every voter.
    All,
    /// A majority of the voters.
    Quorum,
    /// At least this many voters.
    AtLeast(usize),
    /// Any one voter.
    One,
    /// The primary; the others are written asynchronously.
    Primary,
}

impl WriteConsistency {
    /// How many of `voters` must apply the write (`Primary` needs the primary: 1).
    pub fn required(self, voters: usize) -> usize {
        match self {
            WriteConsistency::All => voters,
            WriteConsistency::Quorum => voters / 2 + 1,
            WriteConsistency::AtLeast(n) => n,
            WriteConsistency::One | WriteConsistency::Primary => 1,
        }
    }
}

impl fmt::Display for WriteConsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteConsistency::All => f.write_str("all"),
            WriteConsistency::Quorum => f.write_str("quorum"),
            WriteConsistency::AtLeast(n) => write!(f, "at_least:{n}"),
            WriteConsistency::One => f.write_str("one"),
            WriteConsistency::Primary => f.write_str("primary"),
        }
    }
}

impl FromStr for WriteConsistency {
    type Err = Error;
    /// `all`, `quorum`, `one`, `primary`, or `at_least:N`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "all" => WriteConsistency::All,
            "quorum" => WriteConsistency::Quorum,
            "one" => WriteConsistency::One,
            "primary" => WriteConsistency::Primary,
            other => match other.strip_prefix("at_least:").map(str::parse::<usize>) {
                Some(Ok(n)) if n > 0 => WriteConsistency::AtLeast(n),
                _ => {
                    return Err(Error::invalid_input(format!(
                        "unknown write consistency \"{}\": use all, quorum, one, primary or at_least:N (N ≥ 1)",
                        s.escape_debug()
                    )));
                }
            },
        })
    }
}

/// How a read picks the backends it asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadPolicy {
    /// Ask the primary only.
    Primary,
    /// Ask backends one at a time in route order until one answers.
    FirstHealthy,
    /// Ask every backend at once; the first successful answer wins.
    Fastest,
    /// Ask the first backend; if it has not answered after `delay`, ask the next too,
    /// and so on; the first successful answer wins. With `delay` unset, the first
    /// backend's observed p95 read latency is used.
    Hedged {
        /// How long to wait before asking the next backend.
        delay: Option<Duration>,
    },
    /// Ask every voter; wait for a majority; the highest version wins; stale answers
    /// are repaired in the background.
    Quorum,
    /// Ask every voter; wait for all; the highest version wins; stale ones are repaired.
    All,
}

impl fmt::Display for ReadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadPolicy::Primary => f.write_str("primary"),
            ReadPolicy::FirstHealthy => f.write_str("first_healthy"),
            ReadPolicy::Fastest => f.write_str("fastest"),
            ReadPolicy::Hedged { delay: None } => f.write_str("hedged"),
            ReadPolicy::Hedged { delay: Some(d) } => write!(f, "hedged:{}ms", d.as_millis()),
            ReadPolicy::Quorum => f.write_str("quorum"),
            ReadPolicy::All => f.write_str("all"),
        }
    }
}

impl FromStr for ReadPolicy {
    type Err = Error;
    /// `primary`, `first_healthy`, `fastest`, `hedged`, `hedged:5ms`, `quorum`, `all`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "primary" => ReadPolicy::Primary,
            "first_healthy" => ReadPolicy::FirstHealthy,
            "fastest" => ReadPolicy::Fastest,
            "hedged" => ReadPolicy::Hedged { delay: None },
            "quorum" => ReadPolicy::Quorum,
            "all" => ReadPolicy::All,
            other => match other
                .strip_prefix("hedged:")
                .and_then(|d| d.strip_suffix("ms"))
                .map(str::parse::<u64>)
            {
                Some(Ok(ms)) => ReadPolicy::Hedged {
                    delay: Some(Duration::from_millis(ms)),
                },
                _ => {
                    return Err(Error::invalid_input(format!(
                        "unknown read policy \"{}\": use primary, first_healthy, fastest, hedged, hedged:<N>ms, quorum or all",
                        s.escape_debug()
                    )));
                }
            },
        })
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(WriteConsistency);
serde_via_str!(ReadPolicy);

/// A backend's role on a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Acknowledges `Primary` writes and answers `Primary` reads; counts as a voter.
    Primary,
    /// A synchronous replica; counts as a voter.
    #[default]
    Replica,
    /// Written in the background; never counted for consistency.
    AsyncReplica,
}

/// A backend on a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTarget {
    /// The backend's name.
    pub backend: String,
    /// Its role.
    #[serde(default)]
    pub role: Role,
}

impl RouteTarget {
    /// A target with a role.
    pub fn new(backend: impl Into<String>, role: Role) -> RouteTarget {
        RouteTarget {
            backend: backend.into(),
            role,
        }
    }
}

/// One route: which keys (prefix, tags, tenant) go to which backends, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The key prefix, matched on whole segments (`tenantconfig/`); empty matches all.
    #[serde(default)]
    pub prefix: String,
    /// Record tags that must all be present with these values (e.g. `class = "pii"`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Only for this tenant (`None`: any tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The backends, in preference order for reads.
    pub backends: Vec<RouteTarget>,
    /// The default write consistency.
    #[serde(default = "default_write")]
    pub write: WriteConsistency,
    /// The default read policy.
    #[serde(default = "default_read")]
    pub read: ReadPolicy,
    /// Whether the route is listed (then every backend must support `list`).
    #[serde(default = "default_listed")]
    pub listed: bool,
    /// A read cache in front of the route, kept coherent by the change feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    /// Values sealed (encrypted) at rest by the [`Sealer`](crate::seal::Sealer) of this
    /// name, given to the builder (`MuxBuilder::sealer`); muxd builds them from its
    /// `[[keys]]` tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<String>,
    /// Data residency: the regions the route's backends must all be in (empty: any).
    /// Building the `Mux` refuses a backend outside them (see `MuxConfig::regions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

/// A route's read cache (`cache = { capacity = 10000, ttl = "5m" }`): a bounded
/// in-memory cache of the route's records and of absent keys, invalidated by the change
/// feed; the TTL is only a safety net.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The most entries kept (records, absent keys and invalidation markers).
    pub capacity: u64,
    /// How long an entry lives at most, even if no change arrives (`"5m"`).
    #[serde(with = "human")]
    pub ttl: Duration,
    /// The bound on staleness: the cache serves entries only while the feed was read to
    /// its end less than this long ago; otherwise reads go to the backends (`"2s"`).
    #[serde(with = "human", default = "default_max_staleness")]
    pub max_staleness: Duration,
}

fn default_max_staleness() -> Duration {
    Duration::from_secs(2)
}

impl CacheConfig {
    /// A cache of `capacity` entries living at most `ttl`, with the default staleness
    /// bound (2 s).
    pub fn new(capacity: u64, ttl: Duration) -> CacheConfig {
        CacheConfig {
            capacity,
            ttl,
            max_staleness: default_max_staleness(),
        }
    }

    /// Sets the staleness bound.
    pub fn max_staleness(mut self, bound: Duration) -> CacheConfig {
        self.max_staleness = bound;
        self
    }
}

/// Durations as human-readable text (`"250ms"`, `"5m"`).
mod human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad duration {text:?}: {e} (write e.g. \"250ms\", \"2s\", \"5m\")"
            ))
        })
    }
}

fn default_write() -> WriteConsistency {
    WriteConsistency::Quorum
}
fn default_read() -> ReadPolicy {
    ReadPolicy::FirstHealthy
}
fn default_listed() -> bool {
    true
}

impl RouteConfig {
    /// A route for `prefix` with default consistency (quorum), read policy
    /// (first healthy), listed, and no backends yet.
    pub fn new(prefix: impl Into<String>) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            tags: BTreeMap::new(),
            tenant: None,
            backends: Vec::new(),
            write: default_write(),
            read: default_read(),
            listed: default_listed(),
            cache: None,
            encrypt: None,
            regions: Vec::new(),
        }
    }

    /// Restricts the route's backends to these regions (data residency).
    pub fn regions<S: Into<String>>(mut self, regions: impl IntoIterator<Item = S>) -> RouteConfig {
        self.regions = regions.into_iter().map(Into::into).collect();
        self
    }

    /// Seals (encrypts) the route's values with the sealer of this name.
    pub fn encrypt(mut self, sealer: impl Into<String>) -> RouteConfig {
        self.encrypt = Some(sealer.into());
        self
    }

    /// Puts a read cache in front of the route.
    pub fn cache(mut self, cache: CacheConfig) -> RouteConfig {
        self.cache = Some(cache);
        self
    }

    /// Adds a backend with a role.
    pub fn backend(mut self, name: impl Into<String>, role: Role) -> RouteConfig {
        self.backends.push(RouteTarget::new(name, role));
        self
    }

    /// Requires a tag.
    pub fn tag(mut self, name: impl Into<String>, value: impl Into<String>) -> RouteConfig {
        self.tags.insert(name.into(), value.into());
        self
    }

    /// Restricts the route to a tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> RouteConfig {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the default write consistency.
    pub fn write(mut self, level: WriteConsistency) -> RouteConfig {
        self.write = level;
        self
    }

    /// Sets the default read policy.
    pub fn read(mut self, policy: ReadPolicy) -> RouteConfig {
        self.read = policy;
        self
    }

    /// Sets whether the route is listed.
    pub fn listed(mut self, listed: bool) -> RouteConfig {
        self.listed = listed;
        self
    }

    /// A short description for errors: `route "tenantconfig/" (tenant acme, tags class=pii)`.
    pub fn describe(&self) -> String {
        let mut s = if self.prefix.is_empty() {
            "the default route".to_owned()
        } else {
            format!("route \"{}\"", self.prefix)
        };
        let mut extra = Vec::new();
        if let Some(t) = &self.tenant {
            extra.push(format!("tenant {t}"));
        }
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            extra.push(format!("tags {}", tags.join(",")));
        }
        if !extra.is_empty() {
            s.push_str(&format!(" ({})", extra.join(", ")));
        }
        s
    }
}

/// The coordinator's configuration (TOML or built in code).
///
/// ```
/// let config = mux_core::MuxConfig::from_toml(r#"
///     node_id = 1
///
///     [[routes]]
///     prefix = "tenantconfig/"
///     backends = [{ backend = "redis", role = "primary" }, { backend = "pg" }]
///     write = "quorum"
///     read = "hedged:5ms"
///
///     [default]
///     backends = [{ backend = "pg", role = "primary" }]
///     write = "all"
///     read = "primary"
/// "#).unwrap();
/// assert_eq!(config.routes.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuxConfig {
    /// The node id stamped into versions (unique per writer node).
    #[serde(default = "default_node")]
    pub node_id: u32,
    /// The routes, matched by longest prefix, then most tags, then tenant.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The route for keys no other route matches (its prefix must be empty).
    pub default: RouteConfig,
    /// Retries, circuit breakers, bulkheads, health probes, durability.
    #[serde(default)]
    pub resilience: ResilienceConfig,
    /// Where each backend keeps its data: `[mux.regions] pg-eu = "eu"` (a backend's
    /// `region` label when it is not listed here). Used by data residency.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, String>,
    /// Tenants whose data must stay in some regions: `[mux.tenant_regions] acme =
    /// ["eu"]`. Every route such a tenant can reach must keep its backends there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenant_regions: BTreeMap<String, Vec<String>>,
}

/// Whether what a write still owes after its acknowledgement survives a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every write is appended to a durable intent log before it fans out; unfinished
    /// entries are replayed on start. Needs `MuxBuilder::intent_log`.
    Log,
    /// Hints are kept in memory: they survive backend outages, not a crash of the process.
    #[default]
    None,
}

/// The fault-tolerance settings of a `Mux`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// `log` or `none`.
    pub durability: Durability,
    /// How hints are retried.
    pub retry: RetryPolicy,
    /// The timeout of each backend call (the `Timeout` layer), in milliseconds: its own
    /// setting, separate from how often and how long hints are retried.
    #[serde(with = "crate::resilience::millis")]
    pub call_timeout: Duration,
    /// Per-backend circuit breakers.
    pub breaker: BreakerConfig,
    /// Per-backend bulkheads.
    pub bulkhead: BulkheadConfig,
    /// How many hints are delivered to one backend at once.
    pub handoff_concurrency: usize,
    /// How often each backend is probed with `health` (0 turns probing off).
    #[serde(with = "crate::resilience::millis")]
    pub health_interval: Duration,
    /// Store markers: every `health_interval`, notice a store that came back empty or
    /// old (restarted without persistence, restored from a backup) by the `_mux/markers/`
    /// records mux keeps in every store, and leave it out of reads until it is restored
    /// (see `Mux::mark_restored`). Needs `health_interval` above zero. Off by default.
    pub markers: bool,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            durability: Durability::None,
            retry: RetryPolicy::default(),
            call_timeout: Duration::from_secs(10),
            breaker: BreakerConfig::default(),
            bulkhead: BulkheadConfig::default(),
            handoff_concurrency: 32,
            health_interval: Duration::from_secs(5),
            markers: false,
        }
    }
}

/// The layers the coordinator puts around every backend, outermost first.
pub type ResilienceStack<B> = crate::resilience::Bulkhead<
    crate::resilience::CircuitBreaker<
        crate::resilience::Instrumented<crate::resilience::Timeout<B>>,
    >,
>;

impl ResilienceConfig {
    /// Wraps `backend` in the stack the coordinator uses: bulkhead, circuit breaker,
    /// instrumentation and timeout, outermost first.
    pub fn stack<B: Backend>(&self, backend: B) -> ResilienceStack<B> {
        Layers::new()
            .layer(BulkheadLayer::new(self.bulkhead))
            .layer(CircuitBreakerLayer::new(self.breaker))
            .layer(InstrumentedLayer)
            .layer(TimeoutLayer::new(self.call_timeout))
            .build(backend)
    }
}

fn default_node() -> u32 {
    1
}

impl MuxConfig {
    /// Parses a TOML configuration; errors name the offending line and field.
    pub fn from_toml(text: &str) -> Result<MuxConfig> {
        toml::from_str(text)
            .map_err(|e| Error::invalid_input(format!("invalid mux configuration: {e}")))
    }
}
