//! The feed's tables and statements (see the parent module for why they look so).

use mux_core::feed::fields;

/// The event columns, in [`mux_core::ChangeEvent::to_fields`] order.
pub(super) const COLUMNS: [&str; 5] = [
    fields::TENANT,
    fields::KEY,
    fields::VERSION,
    fields::KIND,
    fields::ROUTE,
];

/// Creates the tables of feed `t` if missing (one migrator at a time).
pub(super) fn create(t: &str) -> String {
    format!(
        "SELECT pg_advisory_xact_lock(hashtext('mux_schema'));
         CREATE SEQUENCE IF NOT EXISTS {t}_seq;
         CREATE TABLE IF NOT EXISTS {t} (position bigint PRIMARY KEY DEFAULT nextval('{t}_seq'),
            at timestamptz NOT NULL DEFAULT now(), {});
         ALTER SEQUENCE {t}_seq OWNED BY {t}.position;
         CREATE INDEX IF NOT EXISTS {t}_at ON {t} (at);
         CREATE TABLE IF NOT EXISTS {t}_meta (id int PRIMARY KEY CHECK (id = 1),
            trimmed_through bigint NOT NULL DEFAULT 0);
         INSERT INTO {t}_meta (id) VALUES (1) ON CONFLICT DO NOTHING;",
        COLUMNS.map(|c| format!("{c} text NOT NULL")).join(", ")
    )
}

/// The advisory lock key of a table's appends: FNV-1a of `mux_feed:<table>`.
fn lock_key(table: &str) -> i64 {
    let hash = format!("mux_feed:{table}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash as i64
}

/// The statements of one feed table.
pub(super) struct Sql {
    /// Takes the append lock (until the transaction ends).
    pub(super) lock: String,
    /// `$1` new positions.
    pub(super) next: String,
    /// Inserts rows (positions, then the [`COLUMNS`], as arrays) and notifies.
    pub(super) insert: String,
    /// `trimmed_through`, then the events after `$1` (at most `$2`), in one snapshot.
    pub(super) read: String,
    /// The newest position (or `trimmed_through`, or 0).
    pub(super) head: String,
    /// Keeps the newest `$1` events, none older than `$2` seconds.
    pub(super) trim: String,
}

impl Sql {
    pub(super) fn new(t: &str) -> Sql {
        let key = lock_key(t);
        let c = COLUMNS.join(", ");
        Sql {
            lock: format!("SELECT pg_advisory_xact_lock('{key}'::int8)"),
            next: format!("SELECT nextval('{t}_seq') FROM generate_series(1, $1::int4)"),
            insert: format!(
                "WITH ins AS (INSERT INTO {t} (position, {c}) SELECT * FROM unnest($1::int8[], \
                 $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])) \
                 SELECT pg_notify('{t}', '')"
            ),
            read: format!(
                "SELECT m.trimmed_through, e.position, {} FROM {t}_meta m LEFT JOIN LATERAL \
                 (SELECT * FROM {t} WHERE position > $1 ORDER BY position LIMIT $2) e ON true \
                 WHERE m.id = 1 ORDER BY e.position",
                COLUMNS.map(|c| format!("e.{c}")).join(", ")
            ),
            head: format!(
                "SELECT greatest((SELECT max(position) FROM {t}), \
                 (SELECT trimmed_through FROM {t}_meta WHERE id = 1), 0)::int8"
            ),
            trim: format!(
                "WITH cut AS (SELECT greatest((SELECT max(position) FROM {t}) - $1::int8, \
                   (SELECT max(position) FROM {t} WHERE at < now() - make_interval(secs => $2::float8))) AS c), \
                 del AS (DELETE FROM {t} WHERE position <= (SELECT c FROM cut) RETURNING position) \
                 UPDATE {t}_meta SET trimmed_through = greatest(trimmed_through, (SELECT max(position) FROM del)) \
                 WHERE id = 1 RETURNING trimmed_through"
            ),
        }
    }
}
