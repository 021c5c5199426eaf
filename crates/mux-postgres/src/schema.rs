//! The table and its idempotent, versioned migration.

use deadpool_postgres::Client;
use mux_core::{Error, Result};

use crate::error::map_err;

/// The schema version this crate writes.
pub const SCHEMA_VERSION: i32 = 1;

pub(crate) fn check_table_name(table: &str) -> Result<()> {
    let ok = !table.is_empty()
        && table.len() <= 63
        && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid table name \"{}\": use 1 to 63 lowercase letters, digits and '_', not starting with a digit",
            table.escape_debug()
        )))
    }
}

/// Brings the table to [`SCHEMA_VERSION`]; safe to run from several processes at once.
pub(crate) async fn migrate(client: &Client, table: &str) -> Result<()> {
    let migrations: [String; 1] = [format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            key text COLLATE \"C\" PRIMARY KEY,
            value bytea NOT NULL,
            version text COLLATE \"C\" NOT NULL,
            tombstone boolean NOT NULL DEFAULT false,
            content_type text,
            tags jsonb NOT NULL DEFAULT '{{}}',
            checksum bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"
    )];
    client.batch_execute("BEGIN").await.map_err(map_err)?;
    let result = async {
        // One migrator at a time (concurrent CREATE TABLE IF NOT EXISTS can fail).
        client
            .batch_execute(
                "SELECT pg_advisory_xact_lock(hashtext('mux_schema'));
                 CREATE TABLE IF NOT EXISTS mux_schema (table_name text PRIMARY KEY, version int NOT NULL)",
            )
            .await?;
        let current: i32 = client
            .query_opt(
                "SELECT version FROM mux_schema WHERE table_name = $1",
                &[&table],
            )
            .await?
            .map_or(0, |r| r.get(0));
        for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
            client.batch_execute(sql).await?;
            client
                .execute(
                    "INSERT INTO mux_schema (table_name, version) VALUES ($1, $2)
                     ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version",
                    &[&table, &(i as i32 + 1)],
                )
                .await?;
        }
        Ok::<_, tokio_postgres::Error>(current)
    }
    .await;
    match result {
        Ok(current) if current > SCHEMA_VERSION => {
            client.batch_execute("ROLLBACK").await.map_err(map_err)?;
            Err(Error::invalid_input(format!(
                "table {table} has schema version {current}, newer than this mux-postgres ({SCHEMA_VERSION}): upgrade mux"
            )))
        }
        Ok(_) => client.batch_execute("COMMIT").await.map_err(map_err),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(map_err(e).context(format!("migrating table {table}")))
        }
    }
}
