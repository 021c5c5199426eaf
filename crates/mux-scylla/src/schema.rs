//! The CQL this crate sends: identifiers, the schema, and the text of every prepared
//! statement (built once per table, tested without a server).

use std::collections::BTreeMap;

use mux_core::{Error, Result};

/// The longest keyspace or table name Cassandra and ScyllaDB accept.
pub const MAX_IDENTIFIER_LEN: usize = 48;

/// The schema version of the tables this crate writes, kept in the table's comment.
pub const SCHEMA_VERSION: u32 = 1;

/// The start of the comment of every table this crate created (then
/// `; partition_depth=N`).
pub(crate) const COMMENT_PREFIX: &str = "mux-scylla records v";

/// Checks a keyspace or table name: 1–48 ASCII letters, digits or `_`, starting with a
/// letter. Such names need no quoting; they are still sent double-quoted and in lower
/// case, so what the CQL shell shows is what the config says.
pub fn check_identifier(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENTIFIER_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{what} \"{name}\" is not a valid name: 1 to {MAX_IDENTIFIER_LEN} lowercase ASCII letters, digits or _, starting with a letter"
        )))
    }
}

/// `name` as a quoted CQL identifier (`"my_table"`; a `"` inside is doubled).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a CQL string literal (`'it''s'`).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The comment of a table holding records at `depth`.
pub(crate) fn comment(depth: usize) -> String {
    format!("{COMMENT_PREFIX}{SCHEMA_VERSION}; partition_depth={depth}")
}

/// The schema version and partition depth a table comment records, or `None` when the
/// table was not created by this crate.
pub(crate) fn parse_comment(comment: &str) -> Option<(u32, usize)> {
    let rest = comment.strip_prefix(COMMENT_PREFIX)?;
    let (version, depth) = rest.split_once("; partition_depth=")?;
    Some((version.parse().ok()?, depth.parse().ok()?))
}

/// `CREATE KEYSPACE IF NOT EXISTS` with `NetworkTopologyStrategy` and `replication`
/// (datacenter → replicas, or `replication_factor` → replicas in each). With
/// `without_tablets`, ScyllaDB's `AND tablets = {'enabled': false}`: ScyllaDB does not
/// run lightweight transactions in keyspaces with tablets (its default for new keyspaces
/// since 6.0), and Cassandra and older ScyllaDB versions do not know the option.
pub fn create_keyspace(
    keyspace: &str,
    replication: &BTreeMap<String, u32>,
    without_tablets: bool,
) -> String {
    let mut options = vec!["'class': 'NetworkTopologyStrategy'".to_owned()];
    options.extend(
        replication
            .iter()
            .map(|(dc, n)| format!("{}: {n}", literal(dc))),
    );
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{{}}}{}",
        quote(keyspace),
        options.join(", "),
        if without_tablets {
            " AND tablets = {'enabled': false}"
        } else {
            ""
        }
    )
}

/// `CREATE TABLE IF NOT EXISTS` for the records (see the README's *Layout*).
pub fn create_table(keyspace: &str, table: &str, depth: usize) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (\
         partition_key text, key text, version text, tombstone boolean, content_type text, \
         tags frozen<map<text, text>>, checksum bigint, size bigint, value blob, \
         PRIMARY KEY ((partition_key), key)) \
         WITH CLUSTERING ORDER BY (key ASC) AND comment = {}",
        quote(keyspace),
        quote(table),
        literal(&comment(depth))
    )
}

/// The columns of a record row, in the order of [`Statements::insert`] and of
/// `layout::Row`'s values.
pub(crate) const COLUMNS: &str =
    "partition_key, key, version, tombstone, content_type, tags, checksum, size, value";

/// The columns a listing reads (everything but the value).
pub(crate) const META_COLUMNS: &str =
    "partition_key, key, version, tombstone, content_type, tags, checksum, size";

/// The lower and upper bound operators of a clustering range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeShape {
    /// `key >= ? AND key < ?`
    FromTo,
    /// `key > ? AND key < ?`
    AfterTo,
    /// `key >= ?`
    From,
    /// `key > ?`
    After,
    /// `key = ?`
    Exactly,
}

impl RangeShape {
    /// Every shape, in a fixed order.
    pub const ALL: [RangeShape; 5] = [
        RangeShape::FromTo,
        RangeShape::AfterTo,
        RangeShape::From,
        RangeShape::After,
        RangeShape::Exactly,
    ];

    fn condition(self) -> &'static str {
        match self {
            RangeShape::FromTo => "key >= ? AND key < ?",
            RangeShape::AfterTo => "key > ? AND key < ?",
            RangeShape::From => "key >= ?",
            RangeShape::After => "key > ?",
            RangeShape::Exactly => "key = ?",
        }
    }
}

/// The text of every statement the backend prepares, for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statements {
    /// One record, value included: `(partition, key)`.
    pub get: String,
    /// A new record if the key has none: the row's nine columns.
    pub insert: String,
    /// Replaces a record if the stored version is lower: the seven non-key columns,
    /// `partition`, `key`, then the new version again.
    pub update: String,
    /// Removes a record whose version is at most the bound: `(partition, key, bound)`.
    pub purge: String,
    /// Registers a partition in the index (not a lightweight transaction: idempotent):
    /// `(index partition, partition name)`.
    pub index: String,
    /// A clustering range of one partition, without values, in key order, with a
    /// `LIMIT`: `(partition, bounds…, limit)`.
    pub scans: Vec<(RangeShape, String)>,
    /// A cheap request for health checks.
    pub ping: String,
}

impl Statements {
    /// The statements on `keyspace.table`. Names must have passed [`check_identifier`].
    pub fn new(keyspace: &str, table: &str) -> Statements {
        let t = format!("{}.{}", quote(keyspace), quote(table));
        let scans = RangeShape::ALL
            .iter()
            .map(|&shape| {
                (
                    shape,
                    format!(
                        "SELECT {META_COLUMNS} FROM {t} WHERE partition_key = ? AND {} \
                         ORDER BY key ASC LIMIT ?",
                        shape.condition()
                    ),
                )
            })
            .collect();
        Statements {
            get: format!("SELECT {COLUMNS} FROM {t} WHERE partition_key = ? AND key = ?"),
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
            ),
            update: format!(
                "UPDATE {t} SET version = ?, tombstone = ?, content_type = ?, tags = ?, \
                 checksum = ?, size = ?, value = ? WHERE partition_key = ? AND key = ? \
                 IF version < ?"
            ),
            purge: format!("DELETE FROM {t} WHERE partition_key = ? AND key = ? IF version <= ?"),
            index: format!("INSERT INTO {t} (partition_key, key) VALUES (?, ?)"),
            scans,
            ping: "SELECT release_version FROM system.local".to_owned(),
        }
    }

    /// The scan statement of `shape`.
    pub fn scan(&self, shape: RangeShape) -> &str {
        &self
            .scans
            .iter()
            .find(|(s, _)| *s == shape)
            .expect("every shape has a statement")
            .1
    }
}

/// The statement reading a table's comment from the schema tables:
/// `(keyspace, table)`.
pub const TABLE_COMMENT: &str =
    "SELECT comment FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?";

/// The statement telling whether a keyspace exists: `(keyspace)`.
pub const KEYSPACE_EXISTS: &str =
    "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated_and_quoted() {
        for good in ["mux", "mux_records", "t1", &"a".repeat(48)] {
            check_identifier("table", good).unwrap();
        }
        for bad in [
            "",
            "1t",
            "_t",
            "Mux",
            "a-b",
            "a b",
            "a\"b",
            "a;DROP",
            "é",
            &"a".repeat(49),
        ] {
            let e = check_identifier("table", bad).unwrap_err();
            assert!(e.message().contains("table"), "{e}");
        }
        assert_eq!(quote("mux"), "\"mux\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn schema_statements() {
        let ks = create_keyspace(
            "mux",
            &BTreeMap::from([("dc1".to_owned(), 3), ("dc2".to_owned(), 2)]),
            false,
        );
        assert_eq!(
            ks,
            "CREATE KEYSPACE IF NOT EXISTS \"mux\" WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        let scylla = create_keyspace(
            "mux",
            &BTreeMap::from([("replication_factor".to_owned(), 1)]),
            true,
        );
        assert!(
            scylla.ends_with("{'class': 'NetworkTopologyStrategy', 'replication_factor': 1} AND tablets = {'enabled': false}"),
            "{scylla}"
        );
        let t = create_table("mux", "mux_records", 2);
        assert!(
            t.starts_with("CREATE TABLE IF NOT EXISTS \"mux\".\"mux_records\" ("),
            "{t}"
        );
        assert!(t.contains("PRIMARY KEY ((partition_key), key)"), "{t}");
        assert!(t.contains("CLUSTERING ORDER BY (key ASC)"), "{t}");
        assert!(
            t.ends_with("comment = 'mux-scylla records v1; partition_depth=2'"),
            "{t}"
        );
        assert_eq!(parse_comment(&comment(3)), Some((SCHEMA_VERSION, 3)));
        assert_eq!(parse_comment("someone else's table"), None);
        assert_eq!(
            parse_comment("mux-scylla records v1; partition_depth=x"),
            None
        );
    }

    #[test]
    fn record_statements() {
        let s = Statements::new("ks", "t");
        assert_eq!(
            s.get,
            "SELECT partition_key, key, version, tombstone, content_type, tags, checksum, size, value \
             FROM \"ks\".\"t\" WHERE partition_key = ? AND key = ?"
        );
        assert!(
            s.insert
                .ends_with("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        );
        assert_eq!(s.insert.matches('?').count(), 9);
        assert!(
            s.update
                .ends_with("WHERE partition_key = ? AND key = ? IF version < ?")
        );
        assert_eq!(s.update.matches('?').count(), 10);
        assert_eq!(
            s.purge,
            "DELETE FROM \"ks\".\"t\" WHERE partition_key = ? AND key = ? IF version <= ?"
        );
        assert!(!s.index.contains(" IF "), "the index insert is no LWT");
        assert_eq!(s.scans.len(), RangeShape::ALL.len());
        assert_eq!(
            s.scan(RangeShape::AfterTo),
            "SELECT partition_key, key, version, tombstone, content_type, tags, checksum, size \
             FROM \"ks\".\"t\" WHERE partition_key = ? AND key > ? AND key < ? ORDER BY key ASC LIMIT ?"
        );
        for (shape, text) in &s.scans {
            assert!(!text.contains("value"), "{shape:?} reads no value");
            assert!(text.ends_with("LIMIT ?"));
        }
    }
}
