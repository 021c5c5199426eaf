//! [`ScyllaConfig`]: which cluster to reach, how to talk to it, and where to keep records.

pub use mux_core::TlsMode;
use std::collections::BTreeMap;
use std::fmt;

use mux_core::{Error, Result};
use scylla::statement::{Consistency, SerialConsistency};
use serde::Deserialize;

use crate::schema::check_identifier;

/// How to reach a ScyllaDB or Cassandra cluster and where to keep records. In TOML (only
/// `nodes` is required):
///
/// ```toml
/// [[backends]]
/// name = "scylla-eu"
/// kind = "scylla"
/// nodes = ["10.0.0.1:9042", "10.0.0.2:9042"]
/// keyspace = "mux"
/// table = "mux_records"
/// partition_depth = 2
/// consistency = "local_quorum"
/// serial_consistency = "local_serial"
/// local_datacenter = "eu-west"
/// create_schema = true
/// replication = { eu-west = 3 }
/// tls = { mode = "require", ca_file = "/etc/ssl/certs/scylla-ca.pem" }
/// ```
///
/// `Debug` shows the user name but never the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (the driver discovers the rest of the cluster).
    pub nodes: Vec<String>,
    /// The keyspace (1–48 lowercase ASCII letters, digits and `_`, starting with a
    /// letter).
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// The table (same rules as the keyspace).
    #[serde(default = "default_table")]
    pub table: String,
    /// How many leading key segments form the partition key (1–16); fixed per table.
    #[serde(default = "default_partition_depth")]
    pub partition_depth: usize,
    /// The consistency level of reads, listings and the commit of writes.
    #[serde(default = "default_consistency")]
    pub consistency: ConsistencyLevel,
    /// The consistency of the Paxos round of conditional writes and purges.
    #[serde(default = "default_serial_consistency")]
    pub serial_consistency: SerialLevel,
    /// The datacenter whose nodes coordinate requests (DC-aware load balancing); `None`
    /// spreads requests over every datacenter.
    #[serde(default)]
    pub local_datacenter: Option<String>,
    /// With `local_datacenter`: whether requests may go to other datacenters when the
    /// local one has no node up (only sensible with non-`local_*` consistency levels).
    #[serde(default)]
    pub permit_dc_failover: bool,
    /// Create the keyspace and the table at open when missing (otherwise a missing one is
    /// a permanent `NotFound` naming the CQL to run).
    #[serde(default)]
    pub create_schema: bool,
    /// The keyspace's replication when `create_schema` creates it:
    /// `NetworkTopologyStrategy` with these replica counts per datacenter, or
    /// `{ replication_factor = n }` for n in every datacenter.
    #[serde(default = "default_replication")]
    pub replication: BTreeMap<String, u32>,
    /// User name for password authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for password authentication (never shown by `Debug`).
    #[serde(default)]
    pub password: Option<String>,
    /// Largest value accepted (bytes); at most [`crate::MAX_VALUE_SIZE`].
    #[serde(default = "default_max_value_size")]
    pub max_value_size: usize,
    /// The driver's bound on one request (milliseconds).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The bound on opening a connection (milliseconds).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Requests one call runs at once (the writes of a batch, the partitions a shallow
    /// listing opens).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// TLS to every node (OpenSSL, through the driver; off by default). With `require`,
    /// each node's certificate chain is verified against `ca_file` or the system's
    /// trusted certificates. Node names are not matched: the driver reaches nodes at the
    /// addresses the cluster reports, as Cassandra drivers do.
    #[serde(default)]
    pub tls: TlsMode,
}

fn default_keyspace() -> String {
    "mux".into()
}
fn default_table() -> String {
    "mux_records".into()
}
fn default_partition_depth() -> usize {
    2
}
fn default_consistency() -> ConsistencyLevel {
    ConsistencyLevel::LocalQuorum
}
fn default_serial_consistency() -> SerialLevel {
    SerialLevel::LocalSerial
}
fn default_replication() -> BTreeMap<String, u32> {
    BTreeMap::from([("replication_factor".to_owned(), 3)])
}
fn default_max_value_size() -> usize {
    crate::MAX_VALUE_SIZE
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_concurrency() -> usize {
    16
}

/// A consistency level for reads and writes (TOML: `"one"`, `"local_quorum"`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsistencyLevel {
    /// One replica.
    One,
    /// One replica in the local datacenter.
    LocalOne,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of all replicas.
    Quorum,
    /// A majority of the replicas in the local datacenter.
    LocalQuorum,
    /// A majority in every datacenter.
    EachQuorum,
    /// Every replica.
    All,
}

impl ConsistencyLevel {
    /// The driver's value.
    pub fn to_driver(self) -> Consistency {
        match self {
            ConsistencyLevel::One => Consistency::One,
            ConsistencyLevel::LocalOne => Consistency::LocalOne,
            ConsistencyLevel::Two => Consistency::Two,
            ConsistencyLevel::Three => Consistency::Three,
            ConsistencyLevel::Quorum => Consistency::Quorum,
            ConsistencyLevel::LocalQuorum => Consistency::LocalQuorum,
            ConsistencyLevel::EachQuorum => Consistency::EachQuorum,
            ConsistencyLevel::All => Consistency::All,
        }
    }
}

/// The serial consistency of lightweight transactions (TOML: `"serial"` or
/// `"local_serial"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialLevel {
    /// Linearizable across the whole cluster (Paxos over every datacenter).
    Serial,
    /// Linearizable within the local datacenter (cheaper; concurrent writers in two
    /// datacenters are then not serialised against each other).
    LocalSerial,
}

impl SerialLevel {
    /// The driver's value.
    pub fn to_driver(self) -> SerialConsistency {
        match self {
            SerialLevel::Serial => SerialConsistency::Serial,
            SerialLevel::LocalSerial => SerialConsistency::LocalSerial,
        }
    }
}

impl ScyllaConfig {
    /// A config for the cluster reached through `nodes`: keyspace `mux`, table
    /// `mux_records`, depth 2, `local_quorum` / `local_serial`, no schema creation.
    pub fn new(nodes: impl IntoIterator<Item = impl Into<String>>) -> ScyllaConfig {
        ScyllaConfig {
            nodes: nodes.into_iter().map(Into::into).collect(),
            keyspace: default_keyspace(),
            table: default_table(),
            partition_depth: default_partition_depth(),
            consistency: default_consistency(),
            serial_consistency: default_serial_consistency(),
            local_datacenter: None,
            permit_dc_failover: false,
            create_schema: false,
            replication: default_replication(),
            username: None,
            password: None,
            max_value_size: default_max_value_size(),
            request_timeout_ms: default_request_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            concurrency: default_concurrency(),
            tls: TlsMode::Disable,
        }
    }

    /// Sets TLS to the nodes.
    pub fn with_tls(mut self, tls: TlsMode) -> ScyllaConfig {
        self.tls = tls;
        self
    }

    /// Sets the keyspace.
    pub fn with_keyspace(mut self, keyspace: impl Into<String>) -> ScyllaConfig {
        self.keyspace = keyspace.into();
        self
    }

    /// Sets the table.
    pub fn with_table(mut self, table: impl Into<String>) -> ScyllaConfig {
        self.table = table.into();
        self
    }

    /// Sets the partition depth.
    pub fn with_partition_depth(mut self, depth: usize) -> ScyllaConfig {
        self.partition_depth = depth;
        self
    }

    /// Sets the consistency levels of requests and of lightweight transactions.
    pub fn with_consistency(
        mut self,
        level: ConsistencyLevel,
        serial: SerialLevel,
    ) -> ScyllaConfig {
        self.consistency = level;
        self.serial_consistency = serial;
        self
    }

    /// Prefers the nodes of `datacenter` (DC-aware load balancing).
    pub fn with_local_datacenter(mut self, datacenter: impl Into<String>) -> ScyllaConfig {
        self.local_datacenter = Some(datacenter.into());
        self
    }

    /// Creates the keyspace (with `replication`) and the table at open when missing.
    pub fn with_create_schema(mut self, replication: BTreeMap<String, u32>) -> ScyllaConfig {
        self.create_schema = true;
        self.replication = replication;
        self
    }

    /// Sets the credentials for password authentication.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> ScyllaConfig {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Sets the largest value accepted.
    pub fn with_max_value_size(mut self, bytes: usize) -> ScyllaConfig {
        self.max_value_size = bytes;
        self
    }

    /// Checks the configuration without I/O, naming every problem at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.nodes.is_empty() {
            problems.push("nodes is empty: name at least one contact point (host:port)".into());
        }
        for node in &self.nodes {
            if node.trim().is_empty() || node.contains('/') {
                problems.push(format!("node \"{node}\" is not host:port"));
            }
        }
        for (what, name) in [("keyspace", &self.keyspace), ("table", &self.table)] {
            if let Err(e) = check_identifier(what, name) {
                problems.push(e.message().to_owned());
            }
        }
        if !(1..=crate::layout::MAX_PARTITION_DEPTH).contains(&self.partition_depth) {
            problems.push(format!(
                "partition_depth {} is outside 1..={}",
                self.partition_depth,
                crate::layout::MAX_PARTITION_DEPTH
            ));
        }
        if self.max_value_size == 0 || self.max_value_size > crate::MAX_VALUE_SIZE {
            problems.push(format!(
                "max_value_size {} is outside 1..={} (see mux-scylla's README, Sizes)",
                self.max_value_size,
                crate::MAX_VALUE_SIZE
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            problems.push("username and password go together".into());
        }
        if self.create_schema {
            if self.replication.is_empty() {
                problems.push("replication is empty".into());
            }
            for (dc, n) in &self.replication {
                if dc.is_empty()
                    || !dc
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    problems.push(format!(
                        "replication: datacenter name \"{dc}\" is not plain"
                    ));
                }
                if *n == 0 {
                    problems.push(format!("replication: {dc} = 0"));
                }
            }
        }
        if self.permit_dc_failover && self.local_datacenter.is_none() {
            problems.push("permit_dc_failover needs local_datacenter".into());
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".into());
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            problems.push("timeouts must be at least 1 ms".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "invalid ScyllaDB config: {}",
                problems.join("; ")
            )))
        }
    }
}

impl fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("table", &self.table)
            .field("partition_depth", &self.partition_depth)
            .field("consistency", &self.consistency)
            .field("serial_consistency", &self.serial_consistency)
            .field("local_datacenter", &self.local_datacenter)
            .field("permit_dc_failover", &self.permit_dc_failover)
            .field("create_schema", &self.create_schema)
            .field("replication", &self.replication)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("max_value_size", &self.max_value_size)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("concurrency", &self.concurrency)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_from_toml_with_defaults() {
        let c: ScyllaConfig = toml::from_str(r#"nodes = ["127.0.0.1:9042"]"#).unwrap();
        assert_eq!(
            (c.keyspace.as_str(), c.table.as_str(), c.partition_depth),
            ("mux", "mux_records", 2)
        );
        assert_eq!(c.consistency, ConsistencyLevel::LocalQuorum);
        assert_eq!(c.serial_consistency, SerialLevel::LocalSerial);
        assert!(!c.create_schema && c.local_datacenter.is_none());
        assert_eq!(c.max_value_size, crate::MAX_VALUE_SIZE);
        c.validate().unwrap();
        let c: ScyllaConfig = toml::from_str(
            r#"
nodes = ["a:9042", "b:9042"]
keyspace = "app"
table = "t1"
partition_depth = 3
consistency = "quorum"
serial_consistency = "serial"
local_datacenter = "dc1"
permit_dc_failover = true
create_schema = true
replication = { dc1 = 3, dc2 = 2 }
username = "app"
password = "s3cret"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.consistency.to_driver(), Consistency::Quorum);
        assert_eq!(c.serial_consistency.to_driver(), SerialConsistency::Serial);
        assert_eq!(c.replication.get("dc2"), Some(&2));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("***"),
            "{shown}"
        );
        let e = toml::from_str::<ScyllaConfig>("nodes = []\ntabel = \"t\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `tabel`"), "{e}");
        let e = toml::from_str::<ScyllaConfig>("nodes = []\nconsistency = \"most\"").unwrap_err();
        assert!(e.to_string().contains("most"), "{e}");
    }

    #[test]
    fn validation_names_every_problem() {
        let mut c = ScyllaConfig::new(Vec::<String>::new())
            .with_keyspace("bad-name")
            .with_table("1table")
            .with_partition_depth(0)
            .with_max_value_size(crate::MAX_VALUE_SIZE + 1);
        c.username = Some("u".into());
        let e = c.validate().unwrap_err().message().to_owned();
        for part in [
            "nodes is empty",
            "keyspace",
            "table",
            "partition_depth 0",
            "max_value_size",
            "username and password",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
    }
}
