//! The native digest: range digests ([`mux_core::digest`]) computed by PostgreSQL in
//! one aggregate statement, so only one row per chunk leaves the server.
//!
//! Each row's hash is the documented one, built from the stored columns:
//!
//! ```sql
//! sha256(int4send(length(kb)) || kb                    -- kb = convert_to(key, 'UTF8')
//!        || decode(replace(version, '-', ''), 'hex')   -- the 16-byte big-endian form
//!        || CASE WHEN tombstone THEN '\x01' ELSE '\x00' END)
//! ```
//!
//! Its first 16 bytes are read as two `bigint`s and XORed with `bit_xor` (PostgreSQL 14
//! or later; on older servers the backend falls back to the listing-based default).
//! `Splits::At` buckets rows with `width_bucket` over the split keys (a binary search);
//! `Splits::Every(n)` numbers rows in key order (`row_number()`, byte order as the key
//! column is `COLLATE "C"`) and groups them by `(rn - 1) / n`. The range's bounds are
//! index conditions on the primary key, so a narrow range reads only its own rows;
//! `OFFSET 0` keeps the planner from inlining the hash into both of its halves (which
//! would compute every SHA-256 twice).

use mux_core::digest::{Digest, DigestChunk, DigestRequest, Splits};
use mux_core::{Error, ErrorKind, Key, Result};
use tokio_postgres::types::ToSql;

use crate::error::{map_err, pool_err};
use crate::sql::Inner;

/// The oldest server with `bit_xor(bigint)`.
pub(crate) const MIN_SERVER_VERSION: i32 = 140_000;

/// The SQL parameters of a statement, numbered as they are pushed.
#[derive(Default)]
struct Params<'a> {
    values: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Params<'a> {
    /// Adds a parameter and returns its placeholder (`$n`).
    fn push(&mut self, value: &'a (dyn ToSql + Sync)) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }
}

/// The owned values a statement's parameters point into.
struct Bounds {
    start: String,
    end: Option<String>,
    prefix: String,
    after: Option<String>,
    until: Option<String>,
    splits: Vec<String>,
    every: i64,
}

/// Computes `request`'s chunks (the request is already checked).
pub(crate) async fn digest(
    inner: &Inner,
    table: &str,
    request: &DigestRequest,
) -> Result<Vec<DigestChunk>> {
    let range = &request.range;
    let bounds = Bounds {
        start: range.prefix.scan_start().to_owned(),
        end: range.prefix.scan_end(),
        prefix: range.prefix.as_str().to_owned(),
        after: range.after.as_ref().map(|k| k.as_str().to_owned()),
        until: range.until.as_ref().map(|k| k.as_str().to_owned()),
        splits: match &request.splits {
            Splits::At(keys) => keys.iter().map(|k| k.as_str().to_owned()).collect(),
            Splits::Every(_) => Vec::new(),
        },
        every: match request.splits {
            Splits::Every(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Splits::At(_) => 0,
        },
    };
    let mut params = Params::default();
    let sql = statement(table, request, &bounds, &mut params);
    let client = inner.pool.get().await.map_err(pool_err)?;
    let stmt = client.prepare_cached(&sql).await.map_err(map_err)?;
    let rows = client.query(&stmt, &params.values).await.map_err(map_err)?;
    let mut found: Vec<(i64, Option<String>, Digest)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let bad: i64 = row.get(5);
        if bad > 0 {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{bad} record(s) in {} have a version that is not 32 hex digits",
                    request.range
                ),
            ));
        }
        let count: i64 = row.get(1);
        let hi: i64 = row.get(2);
        let lo: i64 = row.get(3);
        let mut hash = [0u8; 16];
        hash[..8].copy_from_slice(&hi.to_be_bytes());
        hash[8..].copy_from_slice(&lo.to_be_bytes());
        let digest = Digest {
            count: u64::try_from(count).unwrap_or(0),
            hash,
        };
        found.push((row.get(0), row.get(4), digest));
    }
    match &request.splits {
        Splits::At(keys) => {
            // One chunk per split plus the last, empty ones included.
            let mut chunks: Vec<DigestChunk> = keys
                .iter()
                .map(|k| DigestChunk {
                    last: Some(k.clone()),
                    digest: Digest::EMPTY,
                })
                .chain(std::iter::once(DigestChunk {
                    last: range.until.clone(),
                    digest: Digest::EMPTY,
                }))
                .collect();
            for (bucket, _, digest) in found {
                let chunk = usize::try_from(bucket)
                    .ok()
                    .and_then(|i| chunks.get_mut(i))
                    .ok_or_else(|| {
                        Error::internal(format!("digest bucket {bucket} is out of range"))
                    })?;
                chunk.digest = digest;
            }
            Ok(chunks)
        }
        Splits::Every(_) => {
            let mut chunks = Vec::with_capacity(found.len().max(1));
            for (_, max_key, digest) in found {
                let last = max_key
                    .map(|k| {
                        Key::new(&k)
                            .map_err(|e| Error::new(ErrorKind::Corrupt, e.message().to_owned()))
                    })
                    .transpose()?;
                chunks.push(DigestChunk { last, digest });
            }
            // As `ChunkBuilder::finish`: the last chunk (partial or exactly full) ends
            // with the range; an empty range is one empty chunk.
            match chunks.last_mut() {
                Some(last) => last.last = range.until.clone(),
                None => chunks.push(DigestChunk {
                    last: range.until.clone(),
                    digest: Digest::EMPTY,
                }),
            }
            Ok(chunks)
        }
    }
}

/// The statement for `request`: only the bounds the range has become conditions (so
/// each is an index condition, never an `IS NULL OR …` filter).
fn statement<'a>(
    table: &str,
    request: &DigestRequest,
    b: &'a Bounds,
    params: &mut Params<'a>,
) -> String {
    let mut conds = Vec::new();
    if !b.start.is_empty() {
        conds.push(format!("key >= {}", params.push(&b.start)));
    }
    if let Some(end) = &b.end {
        conds.push(format!("key < {}", params.push(end)));
    }
    // Whole segments, as the listing: `a/b` matches `a/b` and `a/b/…`, not `a/bc`.
    if !b.prefix.is_empty() && !b.prefix.ends_with('/') {
        let p = params.push(&b.prefix);
        conds.push(format!("(key = {p} OR starts_with(key, {p} || '/'))"));
    }
    if let Some(after) = &b.after {
        conds.push(format!("key > {}", params.push(after)));
    }
    if let Some(until) = &b.until {
        conds.push(format!("key <= {}", params.push(until)));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let hashed = format!(
        "SELECT key, h, length(vb) <> 16 AS bad, \
           ('x' || encode(substr(h, 1, 8), 'hex'))::bit(64)::bigint AS hi, \
           ('x' || encode(substr(h, 9, 8), 'hex'))::bit(64)::bigint AS lo \
         FROM (SELECT key, vb, \
                 sha256(int4send(length(kb)) || kb || vb || \
                        CASE WHEN tombstone THEN '\\x01'::bytea ELSE '\\x00'::bytea END) AS h \
               FROM (SELECT key, convert_to(key, 'UTF8') AS kb, \
                       decode(replace(version, '-', ''), 'hex') AS vb, tombstone \
                     FROM {table} {filter}) AS r OFFSET 0) AS e"
    );
    let aggregates =
        "count(*), bit_xor(hi), bit_xor(lo), max(key), count(*) FILTER (WHERE bad)".to_owned();
    match &request.splits {
        Splits::At(keys) if keys.is_empty() => format!(
            "SELECT 0::int8 AS bucket, {aggregates} FROM ({hashed}) AS d HAVING count(*) > 0"
        ),
        Splits::At(_) => {
            // width_bucket counts the splits <= key; a key equal to a split belongs to
            // that split's chunk (splits are inclusive ends), so it counts one less.
            let s = params.push(&b.splits);
            format!(
                "SELECT bucket, {aggregates} FROM ( \
                   SELECT *, (wb - (wb > 0 AND ({s}::text[])[wb] = key)::int)::int8 AS bucket \
                   FROM (SELECT *, width_bucket(key COLLATE \"C\", {s}::text[]) AS wb \
                         FROM ({hashed}) AS h0) AS h1) AS d \
                 GROUP BY bucket ORDER BY bucket"
            )
        }
        Splits::Every(_) => {
            let n = params.push(&b.every);
            format!(
                "SELECT (rn - 1) / {n}::int8 AS bucket, {aggregates} FROM ( \
                   SELECT *, row_number() OVER (ORDER BY key) AS rn FROM ({hashed}) AS h0) AS d \
                 GROUP BY bucket ORDER BY bucket"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::Prefix;
    use mux_core::digest::KeyRange;

    fn bounds(request: &DigestRequest) -> Bounds {
        Bounds {
            start: request.range.prefix.scan_start().to_owned(),
            end: request.range.prefix.scan_end(),
            prefix: request.range.prefix.as_str().to_owned(),
            after: request.range.after.as_ref().map(|k| k.to_string()),
            until: request.range.until.as_ref().map(|k| k.to_string()),
            splits: Vec::new(),
            every: 3,
        }
    }

    #[test]
    fn only_the_bounds_a_range_has_become_conditions() {
        let all = DigestRequest::whole(KeyRange::prefix(Prefix::all()));
        let b = bounds(&all);
        let mut params = Params::default();
        let sql = statement("t", &all, &b, &mut params);
        assert!(params.values.is_empty(), "{sql}");
        assert!(!sql.contains("FROM t WHERE"), "{sql}");

        let some = DigestRequest {
            range: KeyRange::prefix(Prefix::new("a/b").unwrap())
                .between(Some(Key::new("a/b/1").unwrap()), None),
            splits: Splits::Every(3),
        };
        let b = bounds(&some);
        let mut params = Params::default();
        let sql = statement("t", &some, &b, &mut params);
        // start, end, the prefix, after, n.
        assert_eq!(params.values.len(), 5, "{sql}");
        assert!(sql.contains("FROM t WHERE key >= $1 AND key < $2"), "{sql}");
        assert!(sql.contains("key > $4"), "{sql}");
        assert!(!sql.contains("key <="), "{sql}");
    }
}
