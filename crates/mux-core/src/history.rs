//! Version history and temporal reads (`Capability::history`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Operation, Result};
use crate::key::Key;
use crate::record::Record;
use crate::version::Version;

/// The page size `history` uses when the caller has no preference.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// The largest history page; larger limits are clamped.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// The point in the past a temporal read looks at.
///
/// Versions are hybrid-logical-clock timestamps, so a time is a version bound too:
/// "as of 10:00" means the highest version issued at or before 10:00.000 (any logical
/// counter, any node). Both forms reduce to [`AsOf::bound`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// The record as it stood once this version (or the highest one below it) was
    /// written.
    Version(Version),
    /// The record as it stood at this time (milliseconds since the Unix epoch).
    UnixMillis(u64),
}

impl AsOf {
    /// A wall-clock time (times before the epoch are the epoch).
    pub fn time(at: SystemTime) -> AsOf {
        let ms = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        AsOf::UnixMillis(u64::try_from(ms.as_millis()).unwrap_or(u64::MAX))
    }

    /// The highest version this read may return.
    pub fn bound(self) -> Version {
        match self {
            AsOf::Version(v) => v,
            AsOf::UnixMillis(ms) => Version::new(ms, u32::MAX, u32::MAX),
        }
    }

    /// Whether a record at `version` existed at this point.
    pub fn admits(self, version: Version) -> bool {
        version <= self.bound()
    }
}

impl std::str::FromStr for AsOf {
    type Err = Error;

    /// A version in its text form (`0000018c2f3a1b2c-00000000-00000001`), an RFC 3339
    /// time (`2026-12-02T10:00:00Z`) or milliseconds since the Unix epoch.
    fn from_str(s: &str) -> Result<AsOf> {
        if let Ok(ms) = s.parse::<u64>() {
            return Ok(AsOf::UnixMillis(ms));
        }
        if let Ok(v) = s.parse::<Version>() {
            return Ok(AsOf::Version(v));
        }
        humantime::parse_rfc3339_weak(s)
            .map(AsOf::time)
            .map_err(|_| {
                Error::invalid_input(format!(
                    "as_of {:?} is neither a version (0000018c2f3a1b2c-00000000-00000001), \
                 an RFC 3339 time (2026-12-02T10:00:00Z) nor Unix milliseconds",
                    s.chars().take(64).collect::<String>()
                ))
            })
    }
}

/// A request for one page of a key's history, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRequest {
    /// The key.
    pub key: Key,
    /// Continue with versions strictly older than this one (the previous page's
    /// `next_cursor`).
    pub cursor: Option<Version>,
    /// The most versions to return (1..=[`MAX_HISTORY_LIMIT`]; larger values are
    /// clamped).
    pub limit: usize,
}

impl HistoryRequest {
    /// The newest page of `key`'s history with the default limit.
    pub fn new(key: Key) -> HistoryRequest {
        HistoryRequest {
            key,
            cursor: None,
            limit: DEFAULT_HISTORY_LIMIT,
        }
    }

    /// Sets the page size.
    pub fn with_limit(mut self, limit: usize) -> HistoryRequest {
        self.limit = limit;
        self
    }

    /// Continues with versions older than `cursor`.
    pub fn with_cursor(mut self, cursor: Option<Version>) -> HistoryRequest {
        self.cursor = cursor;
        self
    }

    /// The limit clamped to `1..=MAX_HISTORY_LIMIT`; zero is an error.
    pub fn effective_limit(&self) -> Result<usize> {
        if self.limit == 0 {
            return Err(Error::invalid_input("history limit must be at least 1")
                .with_operation(Operation::History));
        }
        Ok(self.limit.min(MAX_HISTORY_LIMIT))
    }

    /// Whether a version belongs on this page's range (older than the cursor).
    pub fn wants(&self, version: Version) -> bool {
        self.cursor.is_none_or(|c| version < c)
    }

    /// Builds a page from versions of this key in any order: sorts them newest
    /// first, drops those at or above the cursor (and repeats of one version), cuts the
    /// page at the limit and sets the cursor when more remain.
    pub fn page(&self, mut versions: Vec<Record>) -> Result<HistoryPage> {
        let limit = self.effective_limit()?;
        versions.retain(|r| self.wants(r.version()));
        versions.sort_by_key(|r| std::cmp::Reverse(r.version()));
        versions.dedup_by_key(|r| r.version());
        let more = versions.len() > limit;
        versions.truncate(limit);
        let next_cursor = if more {
            versions.last().map(Record::version)
        } else {
            None
        };
        Ok(HistoryPage {
            entries: versions,
            next_cursor,
        })
    }
}

/// One page of a key's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// Past and current versions of the key, newest first, tombstones included.
    pub entries: Vec<Record>,
    /// Where the next (older) page starts; `None` when the history is complete.
    pub next_cursor: Option<Version>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    fn rec(v: u64) -> Record {
        Record::new(Key::new("k").unwrap(), v.to_string(), Version::new(v, 0, 1))
    }

    #[test]
    fn a_time_bounds_every_version_of_its_millisecond() {
        let at = AsOf::UnixMillis(5);
        assert!(at.admits(Version::new(5, u32::MAX, 7)));
        assert!(!at.admits(Version::new(6, 0, 0)));
        assert_eq!("5".parse::<AsOf>().unwrap(), at);
        let v = Version::new(0x18c2f3a1b2c, 3, 1);
        assert_eq!(v.to_string().parse::<AsOf>().unwrap(), AsOf::Version(v));
        assert_eq!(
            "1970-01-01T00:00:01Z".parse::<AsOf>().unwrap(),
            AsOf::UnixMillis(1000)
        );
        let err = "yesterday".parse::<AsOf>().unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn pages_are_newest_first_and_resume_below_the_cursor() {
        let req = HistoryRequest::new(Key::new("k").unwrap()).with_limit(2);
        let all: Vec<Record> = [3, 1, 4, 2, 4].into_iter().map(rec).collect();
        let first = req.page(all.clone()).unwrap();
        let versions = |p: &HistoryPage| -> Vec<u64> {
            p.entries
                .iter()
                .map(|r| r.version().physical_ms())
                .collect()
        };
        assert_eq!(versions(&first), [4, 3]);
        let second = req
            .clone()
            .with_cursor(first.next_cursor)
            .page(all.clone())
            .unwrap();
        assert_eq!(versions(&second), [2, 1]);
        assert_eq!(second.next_cursor, None);
        assert!(req.with_limit(0).page(all).is_err());
    }
}
