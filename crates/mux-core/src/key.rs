//! Validated keys and listing prefixes.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The longest key in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A validated, path-like key: `tenantconfig/acme/limits`.
///
/// Rules, each named in the error when broken:
/// - 1 to [`MAX_KEY_LEN`] bytes of UTF-8;
/// - `/`-separated segments, none empty (no leading or trailing `/`, no `//`);
/// - no `.` or `..` segment;
/// - no control characters (U+0000–U+001F, U+007F–U+009F).
///
/// Keys order by their bytes, which is the order every backend lists them in.
/// Cloning is cheap (the text is shared).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Arc<str>);

impl Key {
    /// Validates `key` and returns it as a `Key`.
    pub fn new(key: impl AsRef<str>) -> Result<Key> {
        let key = key.as_ref();
        validate(key, "key")?;
        Ok(Key(Arc::from(key)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// A key below this one: `a/b`.join(`c`) is `a/b/c`.
    pub fn join(&self, suffix: &str) -> Result<Key> {
        Key::new(format!("{}/{}", self.0, suffix))
    }
}

fn validate(key: &str, what: &str) -> Result<()> {
    let shown = || {
        let mut s: String = key.chars().take(64).collect();
        if s.len() < key.len() {
            s.push('…');
        }
        s.escape_debug().to_string()
    };
    if key.is_empty() {
        return Err(Error::invalid_input(format!(
            "invalid {what} \"\": a {what} must not be empty"
        )));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_input(format!(
            "invalid {what} \"{}\": it is {} bytes long, the limit is {MAX_KEY_LEN}",
            shown(),
            key.len()
        )));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(Error::invalid_input(format!(
            "invalid {what} \"{}\": it contains the control character U+{:04X}",
            shown(),
            c as u32
        )));
    }
    if let Some(c) = key.chars().find(|c| is_invisible_format(*c)) {
        return Err(Error::invalid_input(format!(
            "invalid {what} \"{}\": it contains the invisible format character U+{:04X} \
             (bidirectional controls, zero-width characters and the like would make two \
             keys that look the same differ)",
            shown(),
            c as u32
        )));
    }
    if key.starts_with('/') {
        return Err(Error::invalid_input(format!(
            "invalid {what} \"{}\": it must not start with '/'",
            shown()
        )));
    }
    for (i, segment) in key.split('/').enumerate() {
        match segment {
            "" => {
                return Err(Error::invalid_input(format!(
                    "invalid {what} \"{}\": segment {} is empty (no '//' and no trailing '/')",
                    shown(),
                    i + 1
                )));
            }
            "." | ".." => {
                return Err(Error::invalid_input(format!(
                    "invalid {what} \"{}\": segment {} is '{segment}', which is not allowed",
                    shown(),
                    i + 1
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Unicode's format characters (general category Cf): invisible, and able to reorder
/// what is shown (bidirectional overrides and isolates) or to make two keys that look
/// the same differ (zero-width characters, the byte-order mark, soft hyphens).
fn is_invisible_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Key> {
        Key::new(s)
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(s: &str) -> Result<Key> {
        Key::new(s)
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(s: String) -> Result<Key> {
        Key::new(s)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        Key::new(s).map_err(serde::de::Error::custom)
    }
}

/// A listing prefix, matched on whole segments.
///
/// - the empty prefix matches every key;
/// - `a/b` matches `a/b` itself and every key below it (`a/b/c`), but not `a/bc`;
/// - `a/b/` matches only the keys below `a/b`.
///
/// Apart from the optional trailing `/`, a non-empty prefix follows the [`Key`] rules.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Prefix(String);

impl Prefix {
    /// The prefix that matches every key.
    pub fn all() -> Prefix {
        Prefix(String::new())
    }

    /// Validates and returns a prefix.
    pub fn new(prefix: impl AsRef<str>) -> Result<Prefix> {
        let prefix = prefix.as_ref();
        if !prefix.is_empty() {
            validate(prefix.strip_suffix('/').unwrap_or(prefix), "prefix")?;
        }
        Ok(Prefix(prefix.to_owned()))
    }

    /// The prefix as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the empty prefix.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `key` lies under this prefix (on whole segments).
    pub fn matches(&self, key: &str) -> bool {
        match key.strip_prefix(self.0.as_str()) {
            None => false,
            Some(rest) => {
                self.0.is_empty()
                    || self.0.ends_with('/')
                    || rest.is_empty()
                    || rest.starts_with('/')
            }
        }
    }

    /// Every matching key starts with this text; in byte order the matching keys lie
    /// between this text and [`Prefix::is_past`]. Use it as a range-scan start.
    pub fn scan_start(&self) -> &str {
        &self.0
    }

    /// The smallest string that sorts (by bytes) after every key starting with
    /// [`Prefix::scan_start`]: an exclusive upper bound for range scans. `None` for the
    /// empty prefix (no bound).
    pub fn scan_end(&self) -> Option<String> {
        let mut chars: Vec<char> = self.0.chars().collect();
        while let Some(last) = chars.pop() {
            let mut next = last as u32 + 1;
            if (0xD800..=0xDFFF).contains(&next) {
                next = 0xE000;
            }
            if let Some(c) = char::from_u32(next) {
                chars.push(c);
                return Some(chars.into_iter().collect());
            }
        }
        None
    }

    /// Whether `key` sorts after every key this prefix can match, so a scan in byte
    /// order can stop.
    pub fn is_past(&self, key: &str) -> bool {
        !key.starts_with(self.0.as_str()) && key > self.0.as_str()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<&Key> for Prefix {
    fn from(k: &Key) -> Prefix {
        Prefix(k.as_str().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(key: &str, needle: &str) {
        let err = Key::new(key).expect_err(key);
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.message().contains(needle), "{key:?}: {err}");
    }

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "a",
            "tenantconfig/acme/limits",
            "with space/ü/%41/a:b?c#d",
            ".hidden/..dots/...",
            "日本/語",
        ] {
            assert_eq!(Key::new(k).unwrap().as_str(), k);
        }
        assert!(Key::new("x".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn names_the_broken_rule() {
        rejects("", "must not be empty");
        rejects(
            &"x".repeat(MAX_KEY_LEN + 1),
            "1025 bytes long, the limit is 1024",
        );
        rejects("/a", "must not start with '/'");
        rejects("a//b", "segment 2 is empty");
        rejects("a/", "segment 2 is empty");
        rejects("a/./b", "segment 2 is '.'");
        rejects("a/..", "segment 2 is '..'");
        rejects("..", "segment 1 is '..'");
        rejects("a\nb", "control character U+000A");
        rejects("a\u{7f}", "control character U+007F");
        rejects("a\u{0}", "control character U+0000");
        rejects("admin\u{202E}txt.exe", "invisible format character U+202E");
        rejects("a\u{2066}b", "invisible format character U+2066");
        rejects("a\u{200B}b", "invisible format character U+200B");
        rejects("\u{FEFF}a", "invisible format character U+FEFF");
        rejects("a\u{E0041}", "invisible format character U+E0041");
        assert!(
            Key::new("ünïcödé/日本/🦀").is_ok(),
            "visible non-ASCII is fine"
        );
    }

    #[test]
    fn keys_order_by_bytes() {
        let mut keys: Vec<Key> = ["b", "a/b", "a", "a/bc", "a/b/c", "Z", "é"]
            .iter()
            .map(|k| Key::new(k).unwrap())
            .collect();
        keys.sort();
        let got: Vec<&str> = keys.iter().map(Key::as_str).collect();
        assert_eq!(got, ["Z", "a", "a/b", "a/b/c", "a/bc", "b", "é"]);
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let p = Prefix::new("a/b").unwrap();
        assert!(p.matches("a/b"));
        assert!(p.matches("a/b/c"));
        assert!(!p.matches("a/bc"));
        assert!(!p.matches("a/b-c"));
        assert!(!p.matches("a"));
        let p = Prefix::new("a/b/").unwrap();
        assert!(!p.matches("a/b"));
        assert!(p.matches("a/b/c"));
        assert!(Prefix::all().matches("anything/at/all"));
        assert!(Prefix::new("a//").is_err());
        assert!(Prefix::new("/a").is_err());
    }

    #[test]
    fn prefix_scan_end_bounds_every_continuation() {
        let p = Prefix::new("a/b").unwrap();
        let end = p.scan_end().unwrap();
        assert_eq!(end, "a/c");
        for k in ["a/b", "a/b/c", "a/b\u{10FFFF}", "a/b🦀/x", "a/bzzz"] {
            assert!(k < end.as_str(), "{k}");
        }
        assert!("a/c" >= end.as_str());
        assert_eq!(Prefix::all().scan_end(), None);
        assert_eq!(Prefix::new("x\u{10FFFF}").unwrap().scan_end().unwrap(), "y");
    }

    #[test]
    fn prefix_scan_bounds() {
        let p = Prefix::new("a/b").unwrap();
        assert!(!p.is_past("a/b"));
        assert!(!p.is_past("a/b-x"));
        assert!(!p.is_past("a/a"));
        assert!(p.is_past("a/c"));
        assert!(p.is_past("b"));
        assert!(!Prefix::all().is_past("zzz"));
    }
}
