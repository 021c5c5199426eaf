//! Blob names: a key with `[`, `\\` and a final `.` escaped, so that every key
//! round-trips and listings keep the byte order of keys (see the crate docs).

use std::borrow::Cow;

/// The blob name of a key: `[` becomes `[[`, `\` becomes `[]`, and a key that ends with
/// `.` gets a tab appended; everything else is kept.
///
/// - Azure (and Azurite) turn `\` into `/` in blob names, so it cannot be stored as is;
///   `[` is the escape because it sorts right before `\`.
/// - Azure drops dots at the end of a blob name, so `a.` would land on `a`'s blob. The
///   tab (a control character, which no key contains) sorts before every character a
///   key can continue with, so `a.` still sorts between `a` and `a.b`.
///
/// Both keep the byte order of keys, and a prefix of a key maps (through
/// [`escape_prefix`]) to a prefix of its blob name, so listings stay ordered.
pub(crate) fn escape(key: &str) -> Cow<'_, str> {
    let name = escape_prefix(key);
    if key.ends_with('.') {
        Cow::Owned(format!("{name}{TRAILING_DOT_MARK}"))
    } else {
        name
    }
}

/// The first `/`-separated segment of `key` other than the last that ends with `.`.
///
/// Microsoft's naming rules: "No path segments should end with a dot". Azure drops such
/// dots, so `a./b` would be stored as `a/b`. Only the final segment's dot can be kept
/// (see [`escape`]); mux refuses keys (and listing prefixes) with such an inner segment.
pub(crate) fn dotted_segment(key: &str) -> Option<&str> {
    let (inner, _last) = key.rsplit_once('/')?;
    inner.split('/').find(|segment| segment.ends_with('.'))
}

/// Appended to the blob name of a key that ends with `.` (see [`escape`]).
pub(crate) const TRAILING_DOT_MARK: char = '\t';

/// The escaping of [`escape`] without the trailing-dot mark: for list prefixes, which
/// must stay prefixes of the names they match.
pub(crate) fn escape_prefix(prefix: &str) -> Cow<'_, str> {
    if !prefix.contains(['[', '\\']) {
        return Cow::Borrowed(prefix);
    }
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        match c {
            '[' => out.push_str("[["),
            '\\' => out.push_str("[]"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The key of a blob name; `None` when the name is not an escaped key (a lone `[`, a raw
/// `\`, a tab anywhere but after a final `.`, or a final `.` without one).
pub(crate) fn unescape(name: &str) -> Option<String> {
    let name = match name.strip_suffix(TRAILING_DOT_MARK) {
        Some(rest) if rest.ends_with('.') => rest,
        Some(_) => return None,
        None if name.ends_with('.') => return None,
        None => name,
    };
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' => match chars.next()? {
                '[' => out.push('['),
                ']' => out.push('\\'),
                _ => return None,
            },
            '\\' | TRAILING_DOT_MARK => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_key_order_and_round_trips() {
        let keys = [
            "a",
            "a/b",
            "a[",
            "a[[",
            "a[]",
            "a[b",
            "a\\",
            "a\\b",
            "a\\[",
            "a]",
            "aZ",
            "a\u{7f}x",
            "[",
            "\\",
            "Z",
            "]",
            "é[\\",
            "🦀\\",
            "a.",
            "a..",
            "a...",
            "a. b",
            "a.b",
            "a./b",
            "a.!",
            "a.-",
            "a.[",
            "a.\\",
            ".",
            "..x",
            "dots/.hidden/...",
            "x/.",
            "x/./y",
        ];
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort();
        let mut escaped: Vec<String> = sorted.iter().map(|k| escape(k).into_owned()).collect();
        let before = escaped.clone();
        escaped.sort();
        assert_eq!(escaped, before, "escaping must keep byte order");
        for k in keys {
            let e = escape(k);
            assert!(!e.contains('\\'), "{e:?}");
            assert!(!e.ends_with('.'), "{e:?}");
            assert_eq!(unescape(&e).as_deref(), Some(k));
            // A prefix of a key maps to a prefix of the key's blob name.
            for (i, _) in k.char_indices() {
                assert!(e.starts_with(escape_prefix(&k[..i]).as_ref()), "{k} at {i}");
            }
            assert!(e.starts_with(escape_prefix(k).as_ref()), "{k}");
        }
        assert_eq!(escape("brackets/[a]{b}<c>"), "brackets/[[a]{b}<c>");
        assert_eq!(escape("backslash/a\\b"), "backslash/a[]b");
        assert_eq!(escape("dots/.hidden/..."), "dots/.hidden/...\t");
        assert_eq!(escape("v1.2/x"), "v1.2/x");
        assert_eq!(unescape("a[x"), None);
        assert_eq!(unescape("a["), None);
        assert_eq!(unescape("a\\b"), None);
        assert_eq!(unescape("a."), None);
        assert_eq!(unescape("a\t"), None);
        assert_eq!(unescape("a.\tb"), None);
    }

    #[test]
    fn finds_inner_segments_ending_in_a_dot() {
        for (key, found) in [
            ("a./b", Some("a.")),
            ("x/./y", Some(".")),
            ("x/y../z/w.", Some("y..")),
            ("a./", Some("a.")),
            ("a.", None),
            ("x/a.", None),
            ("dots/.hidden/...", None),
            ("v1.2/x", None),
            ("a.b/c.d/e", None),
            ("plain", None),
        ] {
            assert_eq!(dotted_segment(key), found, "{key}");
        }
    }
}
