//! Recorded histories and a checker for mux's promises (issue 19, point 2).
//!
//! A workload records every operation it makes — invocation and completion time,
//! outcome, and the version of every write it attempted (writes carry versions the
//! workload stamped itself, so a failed write that landed somewhere is still known) —
//! and [`check`] verifies, on that history and on the final state of every store once
//! faults are healed and hints drained:
//!
//! - **lost**: a store holds an older version of a key than one acknowledged (at any
//!   level: with a durable intent log, every acknowledged write reaches every store);
//! - **resurrected**: a store holds a live value older than an acknowledged delete;
//! - **invented**: a store holds a version no operation wrote;
//! - **divergent**: the stores disagree on a key's version;
//! - **stale reads**: a `Quorum`/`All` read returned a version older than a write
//!   acknowledged at `All` before the read began (for an absent answer: unless a delete
//!   at least as new was attempted by then). `One`/`Primary` reads promise no such
//!   thing and are not checked.
//!
//! A client that cannot stamp its writes (muxd over REST picks each version) records a
//! failed write at [`UNKNOWN`]: it may have landed at a version nobody saw. On its key
//! the checker then cannot tell an invented version from that write's, and counts an
//! absent read after it as a possible delete; everything else is checked as usual.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mux::{ReadPolicy, Version, WriteConsistency};

/// The version of a write that failed before its version was known (see the module
/// documentation).
pub const UNKNOWN: Version = Version::ZERO;

/// What an operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A put at this version and level.
    Put(Version, WriteConsistency),
    /// A delete (a tombstone) at this version and level.
    Delete(Version, WriteConsistency),
    /// A read under this policy.
    Read(ReadPolicy),
}

/// How it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A write acknowledged.
    Acked,
    /// A read's answer: the live version, or `None` (absent or deleted).
    Read(Option<Version>),
    /// The operation failed (a write may still have landed somewhere).
    Failed(String),
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct Op {
    /// The key.
    pub key: String,
    /// What it was.
    pub kind: Kind,
    /// When it was invoked, since the history began.
    pub invoked: Duration,
    /// When it completed.
    pub completed: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// A history being recorded by concurrent clients.
#[derive(Debug)]
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
}

impl History {
    /// The time since the history began (take it when invoking an operation).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records an operation invoked at `invoked` that just completed.
    pub fn record(&self, key: &str, kind: Kind, invoked: Duration, outcome: Outcome) {
        let op = Op {
            key: key.to_owned(),
            kind,
            invoked,
            completed: self.now(),
            outcome,
        };
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    /// Everything recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A store's final state: per key, the version it holds (a tombstone's included) and
/// whether that is a tombstone; keys it does not hold are absent.
pub type Final = BTreeMap<String, (Version, bool)>;

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Operations in the history.
    pub ops: usize,
    /// Writes acknowledged.
    pub acked: usize,
    /// Reads checked against `All` acknowledgements.
    pub reads_checked: usize,
    /// (store, key) pairs holding less than an acknowledged write.
    pub lost: usize,
    /// (store, key) pairs holding a live value older than an acknowledged delete.
    pub resurrected: usize,
    /// (store, key) pairs holding a version no operation wrote.
    pub invented: usize,
    /// Keys on which the stores disagree.
    pub divergent: usize,
    /// Reads older than an `All` acknowledgement that preceded them.
    pub stale_reads: usize,
    /// One line per problem.
    pub problems: Vec<String>,
}

impl Verdict {
    /// Whether every promise held.
    pub fn holds(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops ({} writes acknowledged, {} reads checked): lost {}, resurrected {}, \
             invented {}, divergent {}, stale reads {}",
            self.ops,
            self.acked,
            self.reads_checked,
            self.lost,
            self.resurrected,
            self.invented,
            self.divergent,
            self.stale_reads
        )?;
        for p in self.problems.iter().take(20) {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

fn written(kind: &Kind) -> Option<(Version, WriteConsistency, bool)> {
    match *kind {
        Kind::Put(v, level) => Some((v, level, false)),
        Kind::Delete(v, level) => Some((v, level, true)),
        Kind::Read(_) => None,
    }
}

/// Checks `ops` and the stores' final states (`finals`: name and state) against mux's
/// promises. See the module docs.
pub fn check(ops: &[Op], finals: &[(String, Final)]) -> Verdict {
    let mut v = Verdict {
        ops: ops.len(),
        ..Default::default()
    };
    // Per key: the newest acknowledged write, the newest acknowledged delete, and every
    // version attempted.
    let mut newest: BTreeMap<&str, Version> = BTreeMap::new();
    let mut newest_delete: BTreeMap<&str, Version> = BTreeMap::new();
    let mut attempted: BTreeMap<&str, BTreeSet<Version>> = BTreeMap::new();
    // Keys with a failed write whose version is unknown.
    let mut unknown: BTreeSet<&str> = BTreeSet::new();
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for op in ops {
        keys.insert(&op.key);
        let Some((version, _, tombstone)) = written(&op.kind) else {
            continue;
        };
        attempted.entry(&op.key).or_default().insert(version);
        if version == UNKNOWN {
            unknown.insert(&op.key);
            continue;
        }
        if op.outcome == Outcome::Acked {
            v.acked += 1;
            let n = newest.entry(&op.key).or_insert(version);
            *n = (*n).max(version);
            if tombstone {
                let d = newest_delete.entry(&op.key).or_insert(version);
                *d = (*d).max(version);
            }
        }
    }
    for (store, state) in finals {
        keys.extend(state.keys().map(String::as_str));
        for key in &keys {
            let held = state.get(*key);
            if let Some(&acked) = newest.get(key)
                && held.is_none_or(|(h, _)| *h < acked)
            {
                v.lost += 1;
                v.problems.push(format!(
                    "{store} holds {key} at {held:?}, older than the acknowledged {acked}"
                ));
            }
            if let (Some(&deleted), Some((h, false))) = (newest_delete.get(key), held)
                && *h < deleted
            {
                v.resurrected += 1;
                v.problems.push(format!(
                    "{store} holds a live {key} at {h}, older than the acknowledged delete at {deleted}"
                ));
            }
            if let Some((h, _)) = held
                && !unknown.contains(key)
                && !attempted.get(key).is_some_and(|a| a.contains(h))
            {
                v.invented += 1;
                v.problems.push(format!(
                    "{store} holds {key} at {h}, a version no one wrote"
                ));
            }
        }
    }
    for key in &keys {
        let seen: BTreeSet<Option<Version>> = finals
            .iter()
            .map(|(_, state)| state.get(*key).map(|(h, _)| *h))
            .collect();
        if seen.len() > 1 {
            v.divergent += 1;
            v.problems
                .push(format!("the stores disagree on {key}: {seen:?}"));
        }
    }
    check_reads(ops, &mut v);
    v
}

/// Stale reads: a `Quorum`/`All` read older than an `All` acknowledgement before it.
fn check_reads(ops: &[Op], v: &mut Verdict) {
    for read in ops {
        let (Kind::Read(policy), Outcome::Read(answer)) = (&read.kind, &read.outcome) else {
            continue;
        };
        if !matches!(policy, ReadPolicy::Quorum | ReadPolicy::All) {
            continue;
        }
        v.reads_checked += 1;
        let before = ops
            .iter()
            .filter(|w| w.key == read.key && w.outcome == Outcome::Acked)
            .filter(|w| w.completed < read.invoked)
            .filter_map(|w| written(&w.kind))
            .filter(|(_, level, _)| *level == WriteConsistency::All)
            .max_by_key(|(version, _, _)| *version);
        let Some((floor, _, floor_is_delete)) = before else {
            continue;
        };
        let stale = match answer {
            Some(got) => *got < floor,
            // Absent is fine after a delete at least that new was attempted by then.
            None => {
                !floor_is_delete
                    && !ops.iter().any(|d| {
                        d.key == read.key
                            && d.invoked < read.completed
                            && matches!(d.kind, Kind::Delete(dv, _) if dv >= floor || dv == UNKNOWN)
                    })
            }
        };
        if stale {
            v.stale_reads += 1;
            v.problems.push(format!(
                "a {policy} read of {} at {:?} returned {answer:?}, older than {floor} acknowledged at all before it",
                read.key, read.invoked
            ));
        }
    }
}

/// `MUX_CHAOS_SCALE`: how many times longer (and with more operations) a scenario runs
/// than at its CI size (`cargo xtask chaos --scale K`; default 1).
pub fn scale() -> u32 {
    std::env::var("MUX_CHAOS_SCALE")
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("MUX_CHAOS_SCALE={s}: give a positive integer"))
        })
        .unwrap_or(1)
        .max(1)
}

/// `MUX_CHAOS_SEED` (decimal or 0x-hex), else a fresh seed; a scenario prints it so a
/// run's sequence of operations can be replayed.
pub fn seed() -> u64 {
    match std::env::var("MUX_CHAOS_SEED") {
        Ok(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("MUX_CHAOS_SEED={s}: give a number"))
        }
        Err(_) => splitmix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        ),
    }
}

/// SplitMix64: a workload's operations from its seed.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, kind: Kind, at: (u64, u64), outcome: Outcome) -> Op {
        Op {
            key: key.into(),
            kind,
            invoked: Duration::from_millis(at.0),
            completed: Duration::from_millis(at.1),
            outcome,
        }
    }

    fn ver(n: u64) -> Version {
        Version::new(n, 0, 1)
    }

    fn state(entries: &[(&str, u64, bool)]) -> Final {
        entries
            .iter()
            .map(|(k, n, t)| ((*k).to_owned(), (ver(*n), *t)))
            .collect()
    }

    #[test]
    fn a_clean_history_holds() {
        let ops = vec![
            op(
                "a",
                Kind::Put(ver(1), WriteConsistency::All),
                (0, 1),
                Outcome::Acked,
            ),
            op(
                "a",
                Kind::Read(ReadPolicy::Quorum),
                (2, 3),
                Outcome::Read(Some(ver(1))),
            ),
            op(
                "b",
                Kind::Delete(ver(2), WriteConsistency::Quorum),
                (0, 1),
                Outcome::Acked,
            ),
            op(
                "c",
                Kind::Put(ver(3), WriteConsistency::All),
                (0, 1),
                Outcome::Failed("x".into()),
            ),
        ];
        let finals = vec![
            ("x".to_owned(), state(&[("a", 1, false), ("b", 2, true)])),
            ("y".to_owned(), state(&[("a", 1, false), ("b", 2, true)])),
        ];
        let v = check(&ops, &finals);
        assert!(v.holds(), "{v}");
        assert_eq!((v.ops, v.acked, v.reads_checked), (4, 2, 1));
    }

    #[test]
    fn each_broken_promise_is_found() {
        let ops = vec![
            op(
                "a",
                Kind::Put(ver(5), WriteConsistency::All),
                (0, 1),
                Outcome::Acked,
            ),
            op(
                "a",
                Kind::Read(ReadPolicy::All),
                (2, 3),
                Outcome::Read(Some(ver(4))),
            ),
            op(
                "a",
                Kind::Read(ReadPolicy::Quorum),
                (2, 3),
                Outcome::Read(None),
            ),
            // A One read promises nothing.
            op(
                "a",
                Kind::Read(ReadPolicy::FirstHealthy),
                (2, 3),
                Outcome::Read(None),
            ),
            op(
                "b",
                Kind::Put(ver(1), WriteConsistency::Quorum),
                (0, 1),
                Outcome::Acked,
            ),
            op(
                "b",
                Kind::Delete(ver(2), WriteConsistency::Quorum),
                (2, 3),
                Outcome::Acked,
            ),
        ];
        let finals = vec![
            // x lost a's acknowledged version and resurrected b.
            (
                "x".to_owned(),
                state(&[("a", 4, false), ("b", 1, false), ("z", 9, false)]),
            ),
            ("y".to_owned(), state(&[("a", 5, false), ("b", 2, true)])),
        ];
        let v = check(&ops, &finals);
        assert_eq!(v.lost, 2, "{v}");
        assert_eq!(v.resurrected, 1, "{v}");
        // a at 4 and z at 9 were never written.
        assert_eq!(v.invented, 2, "{v}");
        assert_eq!(v.divergent, 3, "{v}");
        assert_eq!((v.reads_checked, v.stale_reads), (2, 2), "{v}");
    }

    #[test]
    fn a_write_of_unknown_version_explains_only_its_own_key() {
        let ops = vec![
            op(
                "a",
                Kind::Put(ver(1), WriteConsistency::All),
                (0, 1),
                Outcome::Acked,
            ),
            op(
                "a",
                Kind::Put(UNKNOWN, WriteConsistency::Quorum),
                (2, 3),
                Outcome::Failed("cut".into()),
            ),
            op(
                "b",
                Kind::Put(ver(1), WriteConsistency::All),
                (0, 1),
                Outcome::Acked,
            ),
        ];
        let finals = vec![("s".to_owned(), state(&[("a", 7, false), ("b", 7, false)]))];
        let v = check(&ops, &finals);
        assert_eq!((v.invented, v.lost), (1, 0), "{v}");
        assert!(v.problems[0].contains("holds b at"), "{v}");
    }
}
