//! Parameter names: a mux key as an SSM name and back, and SSM's limits on names.
//!
//! SSM names allow only `a-zA-Z0-9_.-` and `/` (between hierarchy levels), and names
//! starting with `aws` or `ssm` (case-insensitive, with or without a leading `/`) are
//! reserved. A mux key is any UTF-8 text without control characters, so each segment
//! is escaped byte by byte:
//!
//! - `A-Z a-z 0-9 . -` stay as they are;
//! - `_` becomes `__`;
//! - every other byte becomes `_` and two uppercase hex digits (`' '` → `_20`,
//!   `é` → `_C3_A9`);
//! - without a root path, the first byte of the first segment is escaped too when the
//!   segment starts with `aws` or `ssm` in any case (`aws/x` → `/_61ws/x`).
//!
//! The `/` between segments stays, so the parameter hierarchy mirrors the key's. The
//! escaping is a bijection between keys and the names it produces: a name is read back
//! only if escaping its decoded key gives that very name, so parameters written by
//! other tools under the root path are never mistaken for mux keys. Escaped names do
//! not sort like their keys (`_` sorts after letters, `.` before digits), so listings
//! decode and sort (see `listing.rs`).

use mux_core::{Error, ErrorKind, Key, Prefix, Result};

/// SSM's longest parameter name, counted with the ARN before it
/// (`arn:aws:ssm:<region>:<account>:parameter`).
pub const MAX_NAME_LEN: usize = 1011;
/// SSM's deepest parameter hierarchy: at most this many `/`-separated levels.
pub const MAX_DEPTH: usize = 15;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether SSM accepts `b` in a name as it is (`/` aside).
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Whether `segment` starts with a reserved word (`aws`, `ssm`, any case).
fn reserved(segment: &[u8]) -> bool {
    segment
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"aws") || p.eq_ignore_ascii_case(b"ssm"))
}

/// Appends the escaped form of one key segment to `out`.
fn escape_segment(segment: &str, name_start: bool, out: &mut String) {
    let bytes = segment.as_bytes();
    let escape_first = name_start && reserved(bytes);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            out.push_str("__");
        } else if plain(b) && !(escape_first && i == 0) {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// The bytes an escaped text stands for; `None` when it is not an escaping mux makes
/// (a character SSM allows but mux never writes raw, a lowercase or missing hex digit).
fn unescape(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' if b.get(i + 1) == Some(&b'_') => {
                out.push(b'_');
                i += 2;
            }
            b'_' => {
                let digit = |c: Option<&u8>| {
                    HEX.iter()
                        .position(|h| Some(h) == c)
                        .and_then(|d| u8::try_from(d).ok())
                };
                out.push(digit(b.get(i + 1))? << 4 | digit(b.get(i + 2))?);
                i += 3;
            }
            c if plain(c) || c == b'/' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Checks a root path: empty, or `/seg/seg` with segments of SSM's name characters,
/// the first not starting with a reserved word. The text names the problem.
pub(crate) fn check_root(root: &str) -> std::result::Result<(), String> {
    if root.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| Err(format!("root_path {root:?} {why}"));
    let Some(rest) = root.strip_prefix('/') else {
        return bad("must start with '/' (e.g. \"/mux\"), or be empty for none");
    };
    if rest.is_empty() || rest.ends_with('/') {
        return bad("must not end with '/' (use \"\" for no root path)");
    }
    if rest.split('/').any(str::is_empty) {
        return bad("has an empty segment ('//')");
    }
    if let Some(c) = rest.bytes().find(|&c| !plain(c) && c != b'_' && c != b'/') {
        return bad(&format!(
            "contains {:?}: SSM names allow only a-zA-Z0-9_.- and '/'",
            char::from(c)
        ));
    }
    if reserved(rest.as_bytes()) {
        return bad("starts with \"aws\" or \"ssm\", which SSM reserves");
    }
    if rest.split('/').count() >= MAX_DEPTH {
        return bad(&format!(
            "has {} levels: SSM allows {MAX_DEPTH} in all, and keys need at least one",
            rest.split('/').count()
        ));
    }
    Ok(())
}

/// The partition an AWS region belongs to, for the ARN length.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// The mapping between mux keys and parameter names under one root path.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    root: String,
    /// The longest name SSM accepts here: [`MAX_NAME_LEN`] less the ARN prefix.
    max_len: usize,
    /// The ARN prefix the limit counts, for errors.
    arn_prefix: String,
}

impl Names {
    /// Names under `root` (already checked) in `region` (which sets the ARN prefix that
    /// counts toward SSM's name limit).
    pub(crate) fn new(root: &str, region: &str) -> Names {
        // `arn:<partition>:ssm:<region>:<12-digit account>:parameter`, then the name
        // with its leading '/'.
        let arn_prefix = format!("arn:{}:ssm:{region}:<account>:parameter", partition(region));
        let arn_len = arn_prefix.len() - "<account>".len() + 12;
        Names {
            root: root.to_owned(),
            max_len: MAX_NAME_LEN.saturating_sub(arn_len),
            arn_prefix,
        }
    }

    /// The root path (`""` or `/seg…`).
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// The parameter name of `key` (which must follow the key rules), unchecked.
    pub(crate) fn name(&self, key: &str) -> String {
        let mut out = String::with_capacity(self.root.len() + key.len() + 8);
        out.push_str(&self.root);
        for (i, segment) in key.split('/').enumerate() {
            out.push('/');
            escape_segment(segment, i == 0 && self.root.is_empty(), &mut out);
        }
        out
    }

    /// The parameter name of `key`, refused with `InvalidInput` naming SSM's limit when
    /// it is too long or too deep.
    pub(crate) fn checked_name(&self, key: &Key) -> Result<String> {
        let name = self.name(key.as_str());
        if name.len() > self.max_len {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "key {key} is too long for SSM: its parameter name is {} characters, and \
                     SSM allows {MAX_NAME_LEN} counting the ARN prefix {} ({} here); bytes \
                     other than a-zA-Z0-9.- take 3 characters each (or 2 for '_')",
                    name.len(),
                    self.arn_prefix,
                    self.max_len
                ),
            ));
        }
        let depth = name.matches('/').count();
        if depth > MAX_DEPTH {
            return Err(Error::invalid_input(format!(
                "key {key} is too deep for SSM: as parameter {} it has {depth} hierarchy \
                 levels{}, SSM allows {MAX_DEPTH}",
                shorten(&name),
                if self.root.is_empty() {
                    String::new()
                } else {
                    format!(" (with the root path {})", self.root)
                }
            )));
        }
        Ok(name)
    }

    /// The key a parameter name stands for; `None` for names outside the root path or
    /// not made by [`Names::name`].
    pub(crate) fn key(&self, name: &str) -> Option<Key> {
        let escaped = name.strip_prefix(self.root.as_str())?.strip_prefix('/')?;
        let key = Key::new(String::from_utf8(unescape(escaped)?).ok()?).ok()?;
        (self.name(key.as_str()) == name).then_some(key)
    }

    /// Where a listing under `prefix` looks: the parameter named like the prefix itself
    /// (`None` for the empty prefix and for one ending in `/`), and the path whose
    /// subtree holds the keys below it.
    pub(crate) fn scan(&self, prefix: &Prefix) -> (Option<String>, String) {
        let text = prefix.as_str();
        let below = text.strip_suffix('/').unwrap_or(text);
        if below.is_empty() {
            let path = if self.root.is_empty() {
                "/"
            } else {
                &self.root
            };
            return (None, path.to_owned());
        }
        let path = self.name(below);
        let exact = (!text.ends_with('/')).then(|| path.clone());
        (exact, path)
    }
}

/// A long name cut for messages.
fn shorten(name: &str) -> String {
    if name.len() <= 80 {
        name.to_owned()
    } else {
        format!("{}…", &name[..80])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(root: &str) -> Names {
        Names::new(root, "us-east-1")
    }

    /// Deterministic pseudo-random keys: segments of ASCII letters, the name-special
    /// characters, spaces, `%`, `:` and multi-byte characters.
    fn keys(count: usize) -> Vec<String> {
        const PIECES: &[&str] = &[
            "a", "Z", "0", "9", "_", "__", "-", ".", " ", "%", ":", "é", "日本", "🦀", "aws",
            "SSM", "_41", "~", "+", "\\", "'", "\"", "x", "ssmx", "Aws",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut out = Vec::new();
        while out.len() < count {
            let segments = 1 + next(4);
            let key: Vec<String> = (0..segments)
                .map(|_| {
                    (0..1 + next(5))
                        .map(|_| PIECES[next(PIECES.len())])
                        .collect()
                })
                .collect();
            let key = key.join("/");
            if Key::new(&key).is_ok() {
                out.push(key);
            }
        }
        out
    }

    #[test]
    fn every_key_round_trips_through_its_name() {
        for root in ["", "/mux", "/a/b_c"] {
            let n = names(root);
            for key in keys(5000) {
                let name = n.name(&key);
                assert!(
                    name.bytes().all(|b| plain(b) || b == b'_' || b == b'/'),
                    "{name}"
                );
                assert!(name.starts_with(&format!("{root}/")), "{name}");
                assert!(!reserved(name.trim_start_matches('/').as_bytes()), "{name}");
                assert_eq!(
                    n.key(&name).map(|k| k.as_str().to_owned()),
                    Some(key.clone()),
                    "{name}"
                );
                // The hierarchy mirrors the key's segments.
                assert_eq!(
                    name.matches('/').count(),
                    root.matches('/').count() + key.matches('/').count() + 1
                );
            }
        }
    }

    #[test]
    fn distinct_keys_get_distinct_names() {
        let n = names("");
        let mut all: Vec<(String, String)> =
            keys(5000).into_iter().map(|k| (n.name(&k), k)).collect();
        all.sort();
        all.dedup();
        for pair in all.windows(2) {
            assert!(
                pair[0].0 != pair[1].0,
                "{:?} and {:?} share a name",
                pair[0].1,
                pair[1].1
            );
        }
    }

    #[test]
    fn edge_cases() {
        let n = names("");
        for (key, name) in [
            ("paramconfig/acme/limits", "/paramconfig/acme/limits"),
            ("a b/c_d", "/a_20b/c__d"),
            ("aws/x", "/_61ws/x"),
            ("SSM-config", "/_53SM-config"),
            ("x/aws", "/x/aws"),
            ("aw/ss", "/aw/ss"),
            ("é", "/_C3_A9"),
            ("dots/.hidden/...", "/dots/.hidden/..."),
            ("_", "/__"),
            ("%41", "/_2541"),
        ] {
            assert_eq!(n.name(key), name, "{key}");
            assert_eq!(n.key(name).unwrap().as_str(), key, "{name}");
        }
        // With a root path, a key's first segment is not at the start of the name.
        assert_eq!(names("/mux").name("aws/x"), "/mux/aws/x");
        // Names mux never writes are not keys: lowercase hex, stray or short escapes,
        // a reserved word escaped where it need not be, '_' escaped as hex, other roots.
        for foreign in [
            "/_c3_a9", "/a_", "/a_4", "/a_G0", "/_61b", "/_5F", "/x//y", "/a b", "x",
        ] {
            assert_eq!(n.key(foreign), None, "{foreign}");
        }
        assert_eq!(names("/mux").key("/muxer/a"), None);
        assert_eq!(names("/mux").key("/other/a"), None);
    }

    #[test]
    fn limits_are_named_in_errors() {
        let n = names("/mux");
        let long = Key::new("k".repeat(1000)).unwrap();
        let err = n.checked_name(&long).unwrap_err().to_string();
        assert!(err.contains("1011") && err.contains("too long"), "{err}");
        // us-east-1: "arn:aws:ssm:us-east-1:123456789012:parameter" is 44 characters.
        let fits = Key::new("k".repeat(1011 - 44 - "/mux/".len())).unwrap();
        assert_eq!(n.checked_name(&fits).unwrap().len(), 1011 - 44);
        let over = Key::new("k".repeat(1011 - 44 - "/mux/".len() + 1)).unwrap();
        assert!(n.checked_name(&over).is_err());
        let deep = Key::new(vec!["d"; 15].join("/")).unwrap();
        let err = n.checked_name(&deep).unwrap_err().to_string();
        assert!(
            err.contains("16 hierarchy levels") && err.contains("15"),
            "{err}"
        );
        assert!(names("").checked_name(&deep).is_ok());
        assert_eq!(
            Names::new("", "cn-north-1").max_len,
            1011 - "arn:aws-cn:ssm:cn-north-1:123456789012:parameter".len()
        );
    }

    #[test]
    fn roots_are_checked() {
        for ok in ["", "/mux", "/a/b.c/d-e_f"] {
            assert!(check_root(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("mux", "must start with '/'"),
            ("/", "must not end"),
            ("/mux/", "must not end"),
            ("/a//b", "empty segment"),
            ("/a b", "contains ' '"),
            ("/AWS", "reserves"),
            ("/ssm-x", "reserves"),
        ] {
            let err = check_root(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let deep = format!("/{}", vec!["l"; 15].join("/"));
        assert!(check_root(&deep).unwrap_err().contains("levels"));
    }

    #[test]
    fn scans_cover_the_prefix_and_its_subtree() {
        let n = names("/mux");
        let p = |s: &str| Prefix::new(s).unwrap();
        assert_eq!(
            n.scan(&p("a b/c")),
            (Some("/mux/a_20b/c".to_owned()), "/mux/a_20b/c".to_owned())
        );
        assert_eq!(n.scan(&p("a/")), (None, "/mux/a".to_owned()));
        assert_eq!(n.scan(&Prefix::all()), (None, "/mux".to_owned()));
        assert_eq!(names("").scan(&Prefix::all()), (None, "/".to_owned()));
    }
}
