//! The table and its versioned migrations, run under a server lock.

use mux_core::{Error, Result};
use mysql_async::prelude::Queryable;

use crate::error::map_err;

/// The schema version this crate writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Where each table's schema version is recorded (one row per mux table).
pub(crate) const SCHEMA_TABLE: &str = "mux_schema";

/// How long a start waits for another process's migration, in seconds.
const LOCK_WAIT_SECS: u32 = 60;

pub(crate) fn check_table_name(table: &str) -> Result<()> {
    let ok = !table.is_empty()
        && table.len() <= 64
        && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && table != SCHEMA_TABLE;
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid table name \"{}\": use 1 to 64 lowercase letters, digits and '_', not starting with a digit (and not {SCHEMA_TABLE}, which mux keeps its schema versions in)",
            table.escape_debug()
        )))
    }
}

/// The migrations, in order: migration `i` brings a table from version `i` to `i + 1`.
fn migrations(table: &str) -> [String; 1] {
    [format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            `key`        VARBINARY(1024) NOT NULL,
            version      BINARY(16) NOT NULL,
            tombstone    BOOLEAN NOT NULL DEFAULT FALSE,
            content_type VARCHAR(256) CHARACTER SET ascii COLLATE ascii_bin NULL,
            tags         JSON NOT NULL,
            checksum     INT UNSIGNED NOT NULL,
            value        LONGBLOB NOT NULL,
            PRIMARY KEY (`key`)
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
    )]
}

/// Brings `table` to [`SCHEMA_VERSION`]. Safe to run from several processes at once:
/// each migrator holds `GET_LOCK('mux_schema:<database>')` while it reads and updates
/// `mux_schema`. `conn` is a connection of its own (not pooled), so the lock goes with
/// it should this process die mid-way. DDL commits implicitly in MariaDB and MySQL, so
/// each step is recorded right after it runs; every step is idempotent
/// (`IF NOT EXISTS`), so a step that ran but was not recorded runs again harmlessly.
pub(crate) async fn migrate(conn: &mut mysql_async::Conn, table: &str) -> Result<()> {
    let lock: Option<i64> = conn
        .exec_first(
            "SELECT GET_LOCK(CONCAT('mux_schema:', DATABASE()), ?)",
            (LOCK_WAIT_SECS,),
        )
        .await
        .map_err(map_err)?;
    if lock != Some(1) {
        return Err(Error::new(
            mux_core::ErrorKind::Timeout,
            format!(
                "another process held the schema lock for {LOCK_WAIT_SECS} s while migrating; try again"
            ),
        )
        .temporary());
    }
    let result = migrate_locked(conn, table).await;
    let released = conn
        .query_drop("DO RELEASE_LOCK(CONCAT('mux_schema:', DATABASE()))")
        .await
        .map_err(map_err);
    result.and(released)
}

async fn migrate_locked(conn: &mut mysql_async::Conn, table: &str) -> Result<()> {
    let step = |e: mysql_async::Error| map_err(e).context(format!("migrating table {table}"));
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
            table_name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
            version    INT UNSIGNED NOT NULL
        ) ENGINE = InnoDB"
    ))
    .await
    .map_err(step)?;
    let current: u32 = conn
        .exec_first(
            format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = ?"),
            (table,),
        )
        .await
        .map_err(step)?
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(Error::invalid_input(format!(
            "table {table} has schema version {current}, newer than this mux-mysql ({SCHEMA_VERSION}): upgrade mux"
        )));
    }
    for (i, sql) in migrations(table).iter().enumerate().skip(current as usize) {
        conn.query_drop(sql).await.map_err(step)?;
        conn.exec_drop(
            format!(
                "INSERT INTO {SCHEMA_TABLE} (table_name, version) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE version = VALUES(version)"
            ),
            (table, i as u32 + 1),
        )
        .await
        .map_err(step)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        for good in ["mux_records", "_x", "t1"] {
            check_table_name(good).unwrap();
        }
        for bad in [
            "",
            "1t",
            "T",
            "a-b",
            "x; drop table y",
            "mux_schema",
            &"t".repeat(65),
        ] {
            let e = check_table_name(bad).unwrap_err();
            assert!(e.message().contains("table name"), "{e}");
        }
    }

    #[test]
    fn there_is_one_migration_per_schema_version() {
        assert_eq!(migrations("t").len(), SCHEMA_VERSION as usize);
    }
}
