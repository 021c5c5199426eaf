//! The key-to-path mapping: injective, reversible, and no key can escape the root.
//!
//! A key's segments become nested directory names and the last one a file named
//! `<segment>.rec`. Within a segment:
//! - `%`, `\`, `:`, `*`, `?`, `"`, `<`, `>`, `|` and `#` are written as `%XX` (upper-case hex);
//!   every other character (unicode included) is kept as it is;
//! - a leading `.` is written `%2E`, so no name mux makes is hidden, `.` or `..`,
//!   and names starting with `.` (temp files, the lock file) are free for mux;
//! - a segment ending in `.rec` has that dot written `%2E`, so only record files end in `.rec`;
//! - a segment longer than [`CHUNK`] bytes once escaped is split over several nested
//!   directories, each but the last ending in `%+` (a sequence escaping never produces).
//!
//! `/` never appears inside a name, and `.`/`..` segments are refused by [`Key`], so a
//! path made from a key always stays below the root.

use std::path::{Path, PathBuf};

use mux_core::Key;

/// The longest directory or file name this mapping makes, before the `.rec` suffix.
pub const CHUNK: usize = 200;

/// The suffix of record files.
pub const RECORD_SUFFIX: &str = ".rec";

fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '%' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '#'
    ) || c.is_control()
}

fn push_escaped(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
    }
}

/// The names (directories, then the final one) for one segment.
fn encode_segment(segment: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    for c in segment.chars() {
        let mut piece = String::new();
        if needs_escape(c) || (c == '.' && current.is_empty()) {
            push_escaped(&mut piece, c);
        } else {
            piece.push(c);
        }
        if current.len() + piece.len() > CHUNK {
            current.push_str("%+");
            names.push(std::mem::take(&mut current));
            piece.clear();
            if needs_escape(c) || c == '.' {
                push_escaped(&mut piece, c);
            } else {
                piece.push(c);
            }
        }
        current.push_str(&piece);
    }
    if current.ends_with(RECORD_SUFFIX) {
        let at = current.len() - RECORD_SUFFIX.len();
        current.replace_range(at..at + 1, "%2E");
    }
    names.push(current);
    names
}

/// The relative path of the directory that holds the segments' subtree.
pub fn dir_for_segments<'a>(segments: impl Iterator<Item = &'a str>) -> PathBuf {
    let mut path = PathBuf::new();
    for segment in segments {
        for name in encode_segment(segment) {
            path.push(name);
        }
    }
    path
}

/// The file that holds `key`, relative to the data root.
pub fn file_for_key(key: &Key) -> PathBuf {
    let segments: Vec<&str> = key.segments().collect();
    let (last, parents) = segments.split_last().expect("a key has a segment");
    let mut path = dir_for_segments(parents.iter().copied());
    let mut names = encode_segment(last);
    let file = names.pop().expect("one name at least");
    for name in names {
        path.push(name);
    }
    path.push(format!("{file}{RECORD_SUFFIX}"));
    path
}

fn percent_decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Recovers the key from a record file's path relative to the data root; `None` if
/// the path is not one this mapping makes.
pub fn key_for_file(relative: &Path) -> Option<Key> {
    let mut key = String::new();
    let mut names = relative.iter().peekable();
    let mut segment = String::new();
    while let Some(name) = names.next() {
        let mut name = name.to_str()?;
        let last = names.peek().is_none();
        if last {
            name = name.strip_suffix(RECORD_SUFFIX)?;
        }
        if let Some(chunk) = name.strip_suffix("%+") {
            segment.push_str(chunk);
            if last {
                return None;
            }
            continue;
        }
        segment.push_str(name);
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(&percent_decode(&segment)?);
        segment.clear();
    }
    Key::new(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    fn round_trip(key: &str) -> PathBuf {
        let key = Key::new(key).unwrap();
        let path = file_for_key(&key);
        assert!(
            path.components().all(|c| matches!(c, Component::Normal(_))),
            "{path:?} escapes"
        );
        for c in path.iter() {
            assert!(c.len() <= CHUNK + 3 + RECORD_SUFFIX.len(), "{c:?} too long");
            assert!(!c.to_str().unwrap().starts_with('.'), "{c:?} is hidden");
        }
        assert_eq!(key_for_file(&path).as_ref(), Some(&key), "{path:?}");
        path
    }

    #[test]
    fn maps_readably_and_reversibly() {
        assert_eq!(round_trip("a/b/c"), PathBuf::from("a/b/c.rec"));
        assert_eq!(
            round_trip("tenant config/ü"),
            PathBuf::from("tenant config/ü.rec")
        );
        assert_eq!(
            round_trip("a:b/c?d#e%"),
            PathBuf::from("a%3Ab/c%3Fd%23e%25.rec")
        );
        assert_eq!(
            round_trip(".hidden/...x"),
            PathBuf::from("%2Ehidden/%2E..x.rec")
        );
        assert_eq!(
            round_trip("x.rec/y.rec"),
            PathBuf::from("x%2Erec/y%2Erec.rec")
        );
        round_trip("a\\b/c*d/e|f/\"q\"/<t>");
        round_trip(&"é".repeat(500));
        round_trip(&format!("{}/{}", "%".repeat(300), ".".repeat(400)));
    }

    #[test]
    fn distinct_keys_get_distinct_paths() {
        let keys = [
            "a",
            "a/b",
            "a.rec",
            "a%2Erec",
            "a%+",
            "a/b.rec",
            "a.rec/b",
            ".a",
            "%2Ea",
            &"x".repeat(201),
            &"x".repeat(200),
            &format!("{}/x", "x".repeat(200)),
        ];
        let mut paths: Vec<PathBuf> = keys.iter().map(|k| round_trip(k)).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), keys.len());
    }

    #[test]
    fn foreign_files_are_not_keys() {
        assert_eq!(key_for_file(Path::new("a/b.txt")), None);
        assert_eq!(key_for_file(Path::new("a/%ZZ.rec")), None);
        assert_eq!(key_for_file(Path::new("a/b%+.rec")), None);
    }
}
