//! Versions from a hybrid logical clock.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The version of a record: a hybrid logical clock timestamp.
///
/// Ordered by physical milliseconds, then the logical counter, then the node id, so
/// every two versions compare and the highest one wins everywhere (a last-writer-wins
/// register per key).
///
/// Binary form: 16 bytes, big-endian `physical_ms (u64) | logical (u32) | node (u32)`,
/// so byte order equals version order. Text form: the same three numbers as fixed-width
/// lowercase hex separated by `-` (`0000018c2f3a1b2c-00000000-00000001`), which also
/// sorts like the versions.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    physical_ms: u64,
    logical: u32,
    node: u32,
}

impl Version {
    /// The lowest version; no write carries it.
    pub const ZERO: Version = Version {
        physical_ms: 0,
        logical: 0,
        node: 0,
    };

    /// The length of the binary form.
    pub const BYTES: usize = 16;

    /// A version from its parts.
    pub const fn new(physical_ms: u64, logical: u32, node: u32) -> Version {
        Version {
            physical_ms,
            logical,
            node,
        }
    }

    /// Milliseconds since the Unix epoch of the clock that issued it.
    pub fn physical_ms(self) -> u64 {
        self.physical_ms
    }

    /// The logical counter that orders versions issued in the same millisecond.
    pub fn logical(self) -> u32 {
        self.logical
    }

    /// The id of the node whose clock issued it.
    pub fn node(self) -> u32 {
        self.node
    }

    /// The 16-byte big-endian binary form.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.physical_ms.to_be_bytes());
        out[8..12].copy_from_slice(&self.logical.to_be_bytes());
        out[12..].copy_from_slice(&self.node.to_be_bytes());
        out
    }

    /// Parses the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Version> {
        let b: &[u8; 16] = bytes.try_into().map_err(|_| {
            Error::invalid_input(format!("a binary version is 16 bytes, got {}", bytes.len()))
        })?;
        let (ms, rest) = b.split_at(8);
        let (logical, node) = rest.split_at(4);
        Ok(Version {
            physical_ms: u64::from_be_bytes(ms.try_into().expect("8 bytes")),
            logical: u32::from_be_bytes(logical.try_into().expect("4 bytes")),
            node: u32::from_be_bytes(node.try_into().expect("4 bytes")),
        })
    }

    /// The version as one `u128` (same order as the version).
    pub fn as_u128(self) -> u128 {
        u128::from_be_bytes(self.to_bytes())
    }
}

impl Version {
    /// The text form, written into a buffer on the stack: `core::fmt`'s zero-padded hex
    /// (`{:016x}` and two `{:08x}`, each written piece by piece, so `to_string` grew its
    /// `String` several times) was a tenth of a muxd PUT's CPU, which shows a version
    /// three or four times.
    fn text(self) -> [u8; 34] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 34];
        let mut hex = |at: usize, value: u64, digits: usize| {
            for (i, byte) in out[at..at + digits].iter_mut().enumerate() {
                *byte = HEX[((value >> (4 * (digits - 1 - i))) & 0xf) as usize];
            }
        };
        hex(0, self.physical_ms, 16);
        hex(17, u64::from(self.logical), 8);
        hex(26, u64::from(self.node), 8);
        out
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One `write_str` of ASCII hex digits and dashes.
        f.write_str(std::str::from_utf8(&self.text()).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

impl std::str::FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Version> {
        let bad = || {
            Error::invalid_input(format!(
                "invalid version \"{}\": expected 16-8-8 hex digits like 0000018c2f3a1b2c-00000000-00000001",
                s.escape_debug()
            ))
        };
        let mut parts = s.split('-');
        let (Some(a), Some(b), Some(c), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if a.len() != 16 || b.len() != 8 || c.len() != 8 {
            return Err(bad());
        }
        let hex = |p: &str| p.bytes().all(|c| c.is_ascii_hexdigit());
        if !(hex(a) && hex(b) && hex(c)) {
            return Err(bad());
        }
        Ok(Version {
            physical_ms: u64::from_str_radix(a, 16).map_err(|_| bad())?,
            logical: u32::from_str_radix(b, 16).map_err(|_| bad())?,
            node: u32::from_str_radix(c, 16).map_err(|_| bad())?,
        })
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Version, D::Error> {
        /// Parses the text where the deserializer holds it: `Cow<str>` would copy it into a
        /// `String` first (serde's `Cow` is always owned), an allocation on every read of
        /// a record's metadata.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a version like 0000018c2f3a1b2c-00000000-00000001")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Version, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub type TimeSource = Arc<dyn Fn() -> u64 + Send + Sync>;

pub(crate) fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A hybrid logical clock issuing strictly increasing [`Version`]s.
///
/// `now()` follows the wall clock while it moves forward; when the wall clock stands
/// still or steps back, the logical counter advances instead, so versions never go
/// backwards. [`Clock::observe`] merges a version seen from elsewhere so that later
/// versions of this clock are higher.
pub struct Clock {
    node: u32,
    source: TimeSource,
    /// (physical ms, logical) of the last issued or observed version.
    last: Mutex<(u64, u32)>,
}

impl Clock {
    /// A clock for `node` on the system wall clock.
    pub fn new(node: u32) -> Clock {
        Clock::with_time_source(node, Arc::new(system_ms))
    }

    /// A clock for `node` on a custom time source (tests, simulations).
    pub fn with_time_source(node: u32, source: TimeSource) -> Clock {
        Clock {
            node,
            source,
            last: Mutex::new((0, 0)),
        }
    }

    /// The node id stamped into every version.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// Issues a version higher than every version issued or observed before.
    pub fn now(&self) -> Version {
        let wall = (self.source)();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if wall > last.0 {
            *last = (wall, 0);
        } else if last.1 == u32::MAX {
            *last = (last.0 + 1, 0);
        } else {
            last.1 += 1;
        }
        Version::new(last.0, last.1, self.node)
    }

    /// Merges a version from elsewhere: later versions of this clock will be higher.
    pub fn observe(&self, seen: Version) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let seen = (seen.physical_ms, seen.logical);
        if seen > *last {
            *last = seen;
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn manual(start: u64) -> (Arc<AtomicU64>, Clock) {
        let t = Arc::new(AtomicU64::new(start));
        let src = t.clone();
        (
            t,
            Clock::with_time_source(7, Arc::new(move || src.load(Ordering::SeqCst))),
        )
    }

    #[test]
    fn ordering_is_physical_then_logical_then_node() {
        let a = Version::new(10, 5, 9);
        assert!(Version::new(11, 0, 0) > a);
        assert!(Version::new(10, 6, 0) > a);
        assert!(Version::new(10, 5, 10) > a);
        assert!(Version::ZERO < Version::new(0, 0, 1));
    }

    #[test]
    fn binary_and_text_forms_round_trip_and_keep_order() {
        let vs = [
            Version::ZERO,
            Version::new(1, 0, 0),
            Version::new(1, 0, u32::MAX),
            Version::new(1, 1, 0),
            Version::new(0x18c2f3a1b2c, 3, 1),
            Version::new(u64::MAX, u32::MAX, u32::MAX),
        ];
        for w in vs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes());
            assert!(w[0].to_string() < w[1].to_string());
            assert!(w[0].as_u128() < w[1].as_u128());
        }
        for v in vs {
            assert_eq!(Version::from_bytes(&v.to_bytes()).unwrap(), v);
            assert_eq!(v.to_string().parse::<Version>().unwrap(), v);
            // The hand-written text form is core::fmt's zero-padded hex.
            let fmt = format!("{:016x}-{:08x}-{:08x}", v.physical_ms, v.logical, v.node);
            assert_eq!(v.to_string(), fmt);
        }
        assert_eq!(
            Version::new(0xfedc_ba98_7654_3210, 0x0123_4567, 0x89ab_cdef).to_string(),
            "fedcba9876543210-01234567-89abcdef"
        );
        assert_eq!(
            Version::new(0x18c2f3a1b2c, 3, 1).to_string(),
            "0000018c2f3a1b2c-00000003-00000001"
        );
        assert!("0000018c2f3a1b2c-00000003".parse::<Version>().is_err());
        assert!(
            "0000018c2f3a1b2c-0000000g-00000001"
                .parse::<Version>()
                .is_err()
        );
        assert!(
            "+000018c2f3a1b2c-00000000-00000001"
                .parse::<Version>()
                .is_err()
        );
        assert!(Version::from_bytes(&[0; 15]).is_err());
    }

    #[test]
    fn clock_is_monotonic_when_the_wall_clock_steps_back() {
        let (t, clock) = manual(1_000);
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        assert_eq!((b.physical_ms(), b.logical()), (1_000, 1));
        t.store(400, Ordering::SeqCst); // the wall clock steps back
        let c = clock.now();
        let d = clock.now();
        assert!(c > b && d > c);
        assert_eq!(c.physical_ms(), 1_000);
        t.store(2_000, Ordering::SeqCst);
        let e = clock.now();
        assert_eq!((e.physical_ms(), e.logical()), (2_000, 0));
        assert_eq!(e.node(), 7);
    }

    #[test]
    fn clock_overflows_the_logical_counter_into_physical_time() {
        let (_t, clock) = manual(5);
        clock.observe(Version::new(5, u32::MAX, 0));
        let v = clock.now();
        assert_eq!((v.physical_ms(), v.logical()), (6, 0));
    }

    #[test]
    fn observed_versions_push_the_clock_forward() {
        let (_t, clock) = manual(100);
        clock.observe(Version::new(5_000, 2, 3));
        let v = clock.now();
        assert!(v > Version::new(5_000, 2, 3));
        clock.observe(Version::new(1, 0, 0)); // an old version changes nothing
        assert!(clock.now() > v);
    }

    #[test]
    fn clock_is_monotonic_across_threads() {
        let clock = Arc::new(Clock::new(1));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = clock.clone();
                std::thread::spawn(move || (0..10_000).map(|_| c.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let vs = h.join().unwrap();
            assert!(vs.windows(2).all(|w| w[0] < w[1]));
            all.extend(vs);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "versions are unique");
    }
}
