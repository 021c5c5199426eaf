//! The statements a backend runs on its table, and the state shared with the batcher.

use deadpool_postgres::Pool;

pub(crate) struct Sql {
    pub(crate) upsert: String,
    pub(crate) upsert_batch: String,
    pub(crate) get: String,
    pub(crate) list: String,
    pub(crate) purge: String,
}

impl Sql {
    pub(crate) fn new(t: &str) -> Sql {
        let set = "value = EXCLUDED.value, version = EXCLUDED.version, tombstone = EXCLUDED.tombstone, \
                   content_type = EXCLUDED.content_type, tags = EXCLUDED.tags, checksum = EXCLUDED.checksum, \
                   updated_at = now()";
        Sql {
            upsert: format!(
                "WITH up AS (INSERT INTO {t} AS t (key, value, version, tombstone, content_type, tags, checksum) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (key) DO UPDATE SET {set} WHERE t.version < EXCLUDED.version RETURNING 1) \
                 SELECT (SELECT count(*) FROM up)::int4, (SELECT version FROM {t} WHERE key = $1)"
            ),
            upsert_batch: format!(
                "WITH input AS (SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bool[], $5::text[], $6::jsonb[], $7::int8[]) \
                   AS i(key, value, version, tombstone, content_type, tags, checksum)), \
                 up AS (INSERT INTO {t} AS t (key, value, version, tombstone, content_type, tags, checksum) \
                   SELECT key, value, version, tombstone, content_type, tags, checksum FROM input \
                   ON CONFLICT (key) DO UPDATE SET {set} WHERE t.version < EXCLUDED.version RETURNING key) \
                 SELECT i.key, (i.key IN (SELECT key FROM up)), s.version \
                 FROM input i LEFT JOIN {t} s ON s.key = i.key"
            ),
            get: format!(
                "SELECT value, version, tombstone, content_type, tags, checksum FROM {t} WHERE key = $1"
            ),
            list: format!(
                "SELECT key, version, tombstone, content_type, tags, checksum, octet_length(value)::int8 FROM {t} \
                 WHERE key >= $1 AND ($2::text IS NULL OR key < $2) AND ($3::text IS NULL OR key > $3) \
                 AND (($4 AND starts_with(key, $5)) OR (NOT $4 AND (key = $5 OR starts_with(key, $5 || '/')))) \
                 ORDER BY key LIMIT $6"
            ),
            purge: format!("DELETE FROM {t} WHERE key = $1 AND version <= $2"),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) sql: Sql,
}
