//! The statements a backend runs on its table, and the key ranges of a listing.

use mux_core::{Key, Prefix};

/// The columns a write sets, in the order of its placeholders.
pub(crate) const WRITE_COLUMNS: &str =
    "`key`, value, version, tombstone, content_type, tags, checksum";

/// Placeholders of one written row.
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";

/// Parameters per written row.
pub(crate) const PARAMS_PER_ROW: usize = 7;

/// The data columns an update replaces. `version` is not among them: it is assigned
/// last (see [`guarded_assignments`]).
const DATA_COLUMNS: [&str; 5] = ["value", "tombstone", "content_type", "tags", "checksum"];

/// The `ON DUPLICATE KEY UPDATE` list: each column takes the new value only if the new
/// version is higher than the stored one.
///
/// MariaDB and MySQL run the assignments left to right, and a later one sees the
/// columns earlier ones have set. So `version` must come **last**: were it first, every
/// following `IF(VALUES(version) > version, …)` would compare the new version with
/// itself, keep the old value, and leave the old value under the new version.
/// `tests/mysql.rs` runs that wrong order against the server and shows the check
/// catching it.
pub(crate) fn guarded_assignments() -> String {
    let guard = "VALUES(version) > version";
    DATA_COLUMNS
        .iter()
        .chain(std::iter::once(&"version"))
        .map(|c| format!("{c} = IF({guard}, VALUES({c}), {c})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A conditional upsert of `rows` records in one statement.
pub(crate) fn upsert(table: &str, rows: usize) -> String {
    let values = vec![ROW; rows.max(1)].join(", ");
    format!(
        "INSERT INTO {table} ({WRITE_COLUMNS}) VALUES {values} ON DUPLICATE KEY UPDATE {}",
        guarded_assignments()
    )
}

/// The stored version of `rows` keys (`FOR UPDATE` when `lock`).
pub(crate) fn versions_of(table: &str, rows: usize, lock: bool) -> String {
    let keys = vec!["?"; rows.max(1)].join(", ");
    let lock = if lock { " FOR UPDATE" } else { "" };
    format!("SELECT `key`, version FROM {table} WHERE `key` IN ({keys}){lock}")
}

/// The statements of one table that do not depend on a batch size.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) table: String,
    pub(crate) upsert: String,
    pub(crate) get: String,
    pub(crate) version: String,
    pub(crate) list: String,
    pub(crate) purge: String,
}

impl Sql {
    pub(crate) fn new(t: &str) -> Sql {
        Sql {
            table: t.to_owned(),
            upsert: upsert(t, 1),
            get: format!(
                "SELECT value, version, tombstone, content_type, tags, checksum FROM {t} WHERE `key` = ?"
            ),
            version: format!("SELECT version FROM {t} WHERE `key` = ?"),
            // Two key ranges (see `list_ranges`) on the primary key; no LIKE, so no
            // escaping and no collation.
            list: format!(
                "SELECT `key`, version, tombstone, content_type, tags, checksum, LENGTH(value) FROM {t} \
                 WHERE (`key` >= ? AND `key` < ?) OR (`key` >= ? AND `key` < ?) \
                 ORDER BY `key` LIMIT ?"
            ),
            purge: format!("DELETE FROM {t} WHERE `key` = ? AND version <= ?"),
        }
    }
}

/// Above every key: keys are UTF-8, in which the byte 0xFF never occurs.
const ABOVE_ALL_KEYS: &[u8] = &[0xff];

/// The two half-open byte ranges `[from, to)` that hold exactly the keys a listing
/// wants: under `prefix` on whole segments and strictly after `cursor`. An empty range
/// has `from >= to`.
///
/// - the empty prefix: every key;
/// - `a/b/`: the keys starting with `a/b/`;
/// - `a/b`: `a/b` itself (`[a/b, a/b\0)`) and the keys starting with `a/b/`
///   (`[a/b/, a/b0)`, `0` being the byte after `/`) — never `a/bc`.
pub(crate) fn list_ranges(prefix: &Prefix, cursor: Option<&Key>) -> [(Vec<u8>, Vec<u8>); 2] {
    let p = prefix.as_str().as_bytes();
    let mut ranges = if p.is_empty() || p.ends_with(b"/") {
        let to = prefix
            .scan_end()
            .map_or_else(|| ABOVE_ALL_KEYS.to_vec(), String::into_bytes);
        [(p.to_vec(), to), (Vec::new(), Vec::new())]
    } else {
        let with = |suffix: &[u8]| [p, suffix].concat();
        [(p.to_vec(), with(b"\0")), (with(b"/"), with(b"0"))]
    };
    if let Some(cursor) = cursor {
        // The smallest byte string after the cursor.
        let after = [cursor.as_str().as_bytes(), b"\0"].concat();
        for (from, _) in &mut ranges {
            if *from < after {
                *from = after.clone();
            }
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_assigned_last() {
        let a = guarded_assignments();
        let version_at = a.find("version = IF(").expect("a version assignment");
        for c in DATA_COLUMNS {
            let at = a.find(&format!("{c} = IF(")).expect(c);
            assert!(at < version_at, "{c} must be assigned before version: {a}");
        }
        assert!(a.ends_with("version = IF(VALUES(version) > version, VALUES(version), version)"));
    }

    #[test]
    fn multi_row_upserts_have_seven_placeholders_per_row() {
        let s = upsert("t", 3);
        assert_eq!(s.matches('?').count(), 3 * PARAMS_PER_ROW, "{s}");
        assert_eq!(versions_of("t", 3, true).matches('?').count(), 3);
    }

    fn wanted(ranges: &[(Vec<u8>, Vec<u8>); 2], key: &str) -> bool {
        let k = key.as_bytes();
        ranges
            .iter()
            .any(|(from, to)| from.as_slice() <= k && k < to.as_slice())
    }

    /// The ranges select exactly what `ListRequest::wants` selects, on keys chosen to
    /// sit on every boundary.
    #[test]
    fn list_ranges_match_whole_segments_and_the_cursor() {
        let keys = [
            "a",
            "a/b",
            "a/b/c",
            "a/b/c/d",
            "a/bc",
            "a/b0",
            "a/b.",
            "a/ba",
            "a/c",
            "b",
            "a/b/\u{10FFFF}",
            "ü/x",
            "ü",
            "\u{10FFFF}",
        ];
        let prefixes = ["", "a", "a/", "a/b", "a/b/", "ü", "a/b/c"];
        let cursors = [
            None,
            Some("a"),
            Some("a/b"),
            Some("a/b/c"),
            Some("a/bc"),
            Some("z"),
        ];
        for p in prefixes {
            for c in cursors {
                let prefix = Prefix::new(p).unwrap();
                let cursor = c.map(|c| Key::new(c).unwrap());
                let request =
                    mux_core::ListRequest::new(prefix.clone()).with_cursor(cursor.clone());
                let ranges = list_ranges(&prefix, cursor.as_ref());
                for k in keys {
                    assert_eq!(
                        wanted(&ranges, k),
                        request.wants(k),
                        "prefix {p:?}, cursor {c:?}, key {k:?}"
                    );
                }
            }
        }
    }
}
