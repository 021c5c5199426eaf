//! The audit trail: every mutation and admin action as an event, hash-chained per node,
//! written through routing under a prefix (so an operator routes it to PostgreSQL,
//! InfluxDB or any store) and optionally to stdout as JSON lines.
//!
//! Requests never wait for the sink: an event takes a slot in a bounded queue before
//! the operation starts, and one task writes the queue out in order. When the queue is
//! full, `when_full` decides: `reject` (the default) refuses the operation with 503
//! before anything is done; `drop` performs it, drops its event and counts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mux::{Key, ListRequest, Mux, Prefix, ReadOptions, WriteOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::service::ServiceError;

/// `[audit]`.
///
/// ```toml
/// [audit]
/// enabled = true
/// prefix = "audit/"      # events are written through routing under <prefix><node>/<seq>
/// stdout = false         # also one JSON line per event on stdout, for log shippers
/// queue = 10000          # events waiting for the sink, at most
/// when_full = "reject"   # or "drop": perform the operation, count the lost event
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Whether events are recorded at all.
    #[serde(default)]
    pub enabled: bool,
    /// The key prefix events are written under (route it to the store that keeps them).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Also print each event as a JSON line on stdout.
    #[serde(default)]
    pub stdout: bool,
    /// The most events waiting for the sink.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// What a full queue does: `reject` (503, nothing done) or `drop`.
    #[serde(default)]
    pub when_full: WhenFull,
}

fn default_prefix() -> String {
    "audit/".into()
}
fn default_queue() -> usize {
    10_000
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            enabled: false,
            prefix: default_prefix(),
            stdout: false,
            queue: default_queue(),
            when_full: WhenFull::default(),
        }
    }
}

/// What a full audit queue does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse the operation with 503 before anything is done.
    #[default]
    Reject,
    /// Perform the operation and count the event as dropped.
    Drop,
}

/// One audit event, as stored (JSON) and returned by `GET /v1/admin/audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Its place in its node's chain, from 1.
    pub seq: u64,
    /// When (Unix milliseconds).
    pub time_ms: u64,
    /// The node (muxd's `node_id`).
    pub node: u32,
    /// Who: `tenant:<t>` for a tenant's token, `operator[:<sub>]`, or `local` (auth off).
    pub actor: String,
    /// The tenant acted for, if any.
    pub tenant: Option<String>,
    /// `put`, `delete`, `import`, `reload`, `dead_letter_replay`, `dead_letter_discard`,
    /// `job:<kind>` (verify, repair, backfill, gc, rekey).
    pub action: String,
    /// The key (a job's or an import's prefix).
    pub key: Option<String>,
    /// The version written, when there is one.
    pub version: Option<String>,
    /// `ok`, or the error kind (`unavailable`, `invalid_input`, …).
    pub outcome: String,
    /// Tells the events of one request apart.
    pub request_id: String,
    /// The previous event's hash on this node (64 zeros for the first).
    pub prev: String,
    /// SHA-256 over `prev` and this event's other fields.
    pub hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditEvent {
    /// The hash this event must carry: SHA-256 of its fields but `hash`, in order.
    pub fn expected_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.prev.as_str(),
            &self.seq.to_string(),
            &self.time_ms.to_string(),
            &self.node.to_string(),
            &self.actor,
            self.tenant.as_deref().unwrap_or("\u{0}"),
            &self.action,
            self.key.as_deref().unwrap_or("\u{0}"),
            self.version.as_deref().unwrap_or("\u{0}"),
            &self.outcome,
            &self.request_id,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// What a request reports; the writer numbers and chains it.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) actor: String,
    pub(crate) tenant: Option<String>,
    pub(crate) action: String,
    pub(crate) key: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) outcome: String,
    pub(crate) request_id: String,
}

/// A reserved place in the queue: the operation may go ahead.
#[derive(Debug)]
pub(crate) struct Slot(Option<mpsc::OwnedPermit<Pending>>);

impl Slot {
    /// Records the event.
    pub(crate) fn record(self, event: Pending) {
        if let Some(permit) = self.0 {
            permit.send(event);
        }
    }
}

/// The last event written by this node.
#[derive(Clone, Debug, Default)]
struct Head {
    seq: u64,
    hash: String,
}

/// The audit trail of this process.
#[derive(Debug)]
pub(crate) struct Audit {
    config: AuditConfig,
    tx: Option<mpsc::Sender<Pending>>,
    dropped: AtomicU64,
    written: Arc<Mutex<Head>>,
    requests: AtomicU64,
    boot: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key of event `seq` of `node`.
fn event_key(prefix: &str, node: u32, seq: u64) -> String {
    format!("{prefix}{node:010}/{seq:020}")
}

impl Audit {
    /// Starts the writer (when enabled); `mux` gives the `Mux` in force.
    pub(crate) fn start(
        config: AuditConfig,
        node: u32,
        mux: Arc<dyn Fn() -> Mux + Send + Sync>,
    ) -> Audit {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let written = Arc::new(Mutex::new(Head::default()));
        let tx = config.enabled.then(|| {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            tokio::spawn(writer(rx, config.clone(), node, mux, written.clone()));
            tx
        });
        Audit {
            config,
            tx,
            dropped: AtomicU64::new(0),
            written,
            requests: AtomicU64::new(0),
            boot: nanos,
        }
    }

    /// Whether events are recorded.
    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// A new request id.
    pub(crate) fn request_id(&self) -> String {
        format!(
            "{:08x}-{}",
            self.boot,
            self.requests.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Events dropped because the queue was full (`when_full = "drop"`).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The last sequence number this node wrote to the sink.
    pub(crate) fn head_seq(&self) -> u64 {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).seq
    }

    /// Takes a place in the queue before an operation; a full queue refuses it (503)
    /// or lets it go unrecorded, as configured.
    pub(crate) fn reserve(&self) -> Result<Slot, ServiceError> {
        let Some(tx) = &self.tx else {
            return Ok(Slot(None));
        };
        match tx.clone().try_reserve_owned() {
            Ok(permit) => Ok(Slot(Some(permit))),
            Err(_) if self.config.when_full == WhenFull::Drop => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("muxd_audit_dropped_total").increment(1);
                Ok(Slot(None))
            }
            Err(_) => Err(ServiceError::from_mux(
                &mux::Error::new(
                    mux::ErrorKind::Unavailable,
                    format!(
                        "the audit queue is full ({} events wait for the audit sink under {}); nothing was done: retry later",
                        self.config.queue, self.config.prefix
                    ),
                ),
                None,
            )),
        }
    }
}

/// Reads this node's last event from the sink, retrying until the sink answers.
async fn find_head(mux: &(dyn Fn() -> Mux + Send + Sync), prefix: &str, node: u32) -> Head {
    let mut wait = Duration::from_millis(100);
    loop {
        match last_event(&mux(), prefix, node).await {
            Ok(Some(e)) => {
                return Head {
                    seq: e.seq,
                    hash: e.hash,
                };
            }
            Ok(None) => {
                return Head {
                    seq: 0,
                    hash: GENESIS.into(),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit trail's last event; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn last_event(mux: &Mux, prefix: &str, node: u32) -> mux::Result<Option<AuditEvent>> {
    let events = read_events(mux, &format!("{prefix}{node:010}")).await?;
    Ok(events.into_iter().max_by_key(|e| e.seq))
}

/// Every event under `prefix` (one node's, or all), in key order. An event that does
/// not parse is returned with `outcome` = `unreadable` and seq from its key, so that
/// verification names it.
pub(crate) async fn read_events(mux: &Mux, prefix: &str) -> mux::Result<Vec<AuditEvent>> {
    let mut request = ListRequest::new(Prefix::new(prefix.trim_end_matches('/'))?).with_limit(1000);
    let mut out = Vec::new();
    loop {
        let page = mux.list(&request, &ReadOptions::default()).await?;
        for entry in &page.entries {
            let Some(record) = mux.get(&entry.key).await? else {
                continue;
            };
            out.push(serde_json::from_slice(record.value()).unwrap_or_else(|_| {
                let seq = entry
                    .key
                    .as_str()
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                AuditEvent {
                    seq,
                    time_ms: 0,
                    node: 0,
                    actor: String::new(),
                    tenant: None,
                    action: String::new(),
                    key: Some(entry.key.as_str().to_owned()),
                    version: None,
                    outcome: "unreadable".into(),
                    request_id: String::new(),
                    prev: String::new(),
                    hash: String::new(),
                }
            }));
        }
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

async fn writer(
    mut rx: mpsc::Receiver<Pending>,
    config: AuditConfig,
    node: u32,
    mux: Arc<dyn Fn() -> Mux + Send + Sync>,
    written: Arc<Mutex<Head>>,
) {
    let mut head = find_head(&*mux, &config.prefix, node).await;
    *written.lock().unwrap_or_else(|p| p.into_inner()) = head.clone();
    let options = WriteOptions {
        content_type: Some("application/json".into()),
        ..WriteOptions::default()
    };
    let (events_total, sink_errors) = (
        metrics::counter!("muxd_audit_events_total"),
        metrics::counter!("muxd_audit_sink_errors_total"),
    );
    while let Some(p) = rx.recv().await {
        let mut event = AuditEvent {
            seq: head.seq + 1,
            time_ms: now_ms(),
            node,
            actor: p.actor,
            tenant: p.tenant,
            action: p.action,
            key: p.key,
            version: p.version,
            outcome: p.outcome,
            request_id: p.request_id,
            prev: head.hash.clone(),
            hash: String::new(),
        };
        event.hash = event.expected_hash();
        let json = serde_json::to_vec(&event).expect("an event serializes");
        if config.stdout {
            println!("{}", String::from_utf8_lossy(&json));
        }
        let key = match Key::new(event_key(&config.prefix, node, event.seq)) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "the audit prefix makes no valid key; events are lost");
                continue;
            }
        };
        // The sink is retried until it takes the event: later events wait (the queue
        // fills, and its policy applies) rather than break the chain.
        let mut wait = Duration::from_millis(50);
        loop {
            match mux().write(key.clone(), json.clone(), &options).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, seq = event.seq, "the audit sink refused an event; retrying");
                    sink_errors.increment(1);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        events_total.increment(1);
        head = Head {
            seq: event.seq,
            hash: event.hash,
        };
        *written.lock().unwrap_or_else(|p| p.into_inner()) = head.clone();
    }
}

/// What `GET /v1/admin/audit/verify` found.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Whether every chain is whole.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// Nodes whose chains were checked.
    pub nodes: Vec<u32>,
    /// Each problem: a missing, altered or out-of-chain event, by node and seq.
    pub problems: Vec<String>,
}

/// Checks every node's chain under the prefix; `this_node`'s against what it wrote
/// (`head_seq`), so events removed from the end are found too.
pub(crate) async fn verify(
    mux: &Mux,
    prefix: &str,
    this_node: u32,
    head_seq: u64,
) -> mux::Result<VerifyReport> {
    let events = read_events(mux, prefix).await?;
    let mut by_node: std::collections::BTreeMap<u32, Vec<AuditEvent>> = Default::default();
    let mut problems = Vec::new();
    for e in events {
        if e.outcome == "unreadable" && e.hash.is_empty() {
            problems.push(format!(
                "the event at {} is not an audit event (altered)",
                e.key.unwrap_or_default()
            ));
            continue;
        }
        by_node.entry(e.node).or_default().push(e);
    }
    by_node.entry(this_node).or_default();
    let mut count = 0;
    for (node, events) in &mut by_node {
        events.sort_by_key(|e| e.seq);
        count += events.len() as u64;
        let mut prev_hash = GENESIS.to_owned();
        let mut expected_seq = 1;
        for e in events.iter() {
            if e.seq != expected_seq {
                problems.push(format!(
                    "node {node}: events {expected_seq}..{} are missing (removed)",
                    e.seq - 1
                ));
            } else if e.prev != prev_hash {
                problems.push(format!(
                    "node {node}: event {} does not follow event {} (its prev hash differs)",
                    e.seq,
                    e.seq - 1
                ));
            }
            if e.hash != e.expected_hash() {
                problems.push(format!(
                    "node {node}: event {} was altered (its hash does not match its fields)",
                    e.seq
                ));
            }
            prev_hash = e.hash.clone();
            expected_seq = e.seq + 1;
        }
        if *node == this_node && expected_seq <= head_seq {
            problems.push(format!(
                "node {node}: events {expected_seq}..{head_seq} are missing (this node wrote {head_seq})"
            ));
        }
    }
    Ok(VerifyReport {
        ok: problems.is_empty(),
        events: count,
        nodes: by_node.keys().copied().collect(),
        problems,
    })
}
