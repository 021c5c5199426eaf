//! The statement layer on a real cluster: a driver session, the schema check (and
//! creation when asked), and the prepared statements of `schema::Statements`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mux_core::{Error, ErrorKind, Result};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, MaybeUnset};

use crate::config::ScyllaConfig;
use crate::cql::{Cql, Lwt, Scan};
use crate::error::{map_execution, map_new_session, map_prepare};
use crate::layout::{INDEX_PARTITION, Row};
use crate::schema::{self, RangeShape, Statements};

/// The prepared statements of one table.
struct Prepared {
    get: PreparedStatement,
    insert: PreparedStatement,
    update: PreparedStatement,
    purge: PreparedStatement,
    index: PreparedStatement,
    scans: Vec<(RangeShape, PreparedStatement)>,
    ping: PreparedStatement,
}

/// The statement layer over a driver session.
pub(crate) struct ScyllaCql {
    session: Arc<Session>,
    prepared: Prepared,
}

impl fmt::Debug for ScyllaCql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaCql")
            .field("keyspace", &self.session.get_keyspace())
            .finish_non_exhaustive()
    }
}

/// Connects to the cluster `config` names, checks (or creates) the keyspace and the
/// table, and prepares the statements. Returns the statement layer and the table's
/// partition depth.
pub(crate) async fn connect(config: &ScyllaConfig) -> Result<ScyllaCql> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_datacenter {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(config.permit_dc_failover);
    }
    let profile = ExecutionProfile::builder()
        .consistency(config.consistency.to_driver())
        .serial_consistency(Some(config.serial_consistency.to_driver()))
        .request_timeout(Some(Duration::from_millis(config.request_timeout_ms)))
        .load_balancing_policy(policy.build())
        // No retries under the coordinator's (see the README, Errors).
        .retry_policy(Arc::new(FallthroughRetryPolicy::new()))
        .build()
        .into_handle();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
        .default_execution_profile_handle(profile);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(user.clone(), password.clone());
    }
    if let Some(context) = crate::tls::context(&config.tls)? {
        builder = builder.tls_context(Some(context));
    }
    let session = builder.build().await.map_err(|e| {
        map_new_session(e).context(format!("cannot connect to {}", config.nodes.join(", ")))
    })?;
    let session = Arc::new(session);
    ensure_schema(&session, config).await?;
    let text = Statements::new(&config.keyspace, &config.table);
    let prepare = |cql: String| {
        let session = session.clone();
        async move {
            let mut p = session.prepare(cql).await.map_err(map_prepare)?;
            // Versioned writes are idempotent: the driver may send them again.
            p.set_is_idempotent(true);
            Ok::<_, Error>(p)
        }
    };
    let mut scans = Vec::new();
    for (shape, cql) in &text.scans {
        scans.push((*shape, prepare(cql.clone()).await?));
    }
    let prepared = Prepared {
        get: prepare(text.get).await?,
        insert: prepare(text.insert).await?,
        update: prepare(text.update).await?,
        purge: prepare(text.purge).await?,
        index: prepare(text.index).await?,
        scans,
        ping: prepare(text.ping).await?,
    };
    Ok(ScyllaCql { session, prepared })
}

/// Checks that the keyspace and the table exist (creating them with `create_schema`),
/// and that the table is a mux table of the configured depth.
async fn ensure_schema(session: &Session, config: &ScyllaConfig) -> Result<()> {
    let (ks, table) = (config.keyspace.as_str(), config.table.as_str());
    let depth = config.partition_depth;
    if config.create_schema {
        let cannot = |e| map_execution(e).context("cannot create the schema");
        // ScyllaDB: without tablets (no LWT with them). A server that does not know the
        // option (Cassandra, ScyllaDB before 6.0) refuses it as invalid: then plainly.
        let scylla = schema::create_keyspace(ks, &config.replication, true);
        if let Err(e) = session.query_unpaged(scylla, ()).await {
            let e = cannot(e);
            if e.kind() != ErrorKind::InvalidInput {
                return Err(e);
            }
            tracing::debug!(error = %e, "creating the keyspace without the tablets option");
            let plain = schema::create_keyspace(ks, &config.replication, false);
            session.query_unpaged(plain, ()).await.map_err(cannot)?;
        }
        let cql = schema::create_table(ks, table, depth);
        session.query_unpaged(cql, ()).await.map_err(cannot)?;
    }
    let exists = session
        .query_unpaged(schema::KEYSPACE_EXISTS, (ks,))
        .await
        .map_err(map_execution)?;
    if rows(exists)?.is_empty() {
        return Err(missing(config, format!("keyspace \"{ks}\" does not exist")));
    }
    let result = session
        .query_unpaged(schema::TABLE_COMMENT, (ks, table))
        .await
        .map_err(map_execution)?;
    let found = rows(result)?;
    let Some(comment) = found.first().and_then(|r| text(r, "comment")) else {
        return Err(missing(
            config,
            format!("table \"{ks}.{table}\" does not exist"),
        ));
    };
    match schema::parse_comment(&comment) {
        Some((version, _)) if version > schema::SCHEMA_VERSION => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "table \"{ks}.{table}\" has mux-scylla schema v{version}, newer than this crate's v{}",
                schema::SCHEMA_VERSION
            ),
        )),
        Some((_, stored)) if stored != depth => Err(Error::invalid_input(format!(
            "table \"{ks}.{table}\" has partition_depth {stored}, the config says {depth}: records would not be found"
        ))),
        Some(_) => Ok(()),
        None => Err(Error::invalid_input(format!(
            "table \"{ks}.{table}\" was not created by mux-scylla (its comment is {comment:?}); choose another table"
        ))),
    }
}

fn missing(config: &ScyllaConfig, what: String) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "{what}: create it as mux-scylla's README shows ({}; {}) or set create_schema = true",
            schema::create_keyspace(&config.keyspace, &config.replication, true),
            schema::create_table(&config.keyspace, &config.table, config.partition_depth)
        ),
    )
    .permanent()
}

/// A result's rows, each as column name → value.
type NamedRow = BTreeMap<String, Option<CqlValue>>;

fn rows(result: QueryResult) -> Result<Vec<NamedRow>> {
    let rows = result
        .into_rows_result()
        .map_err(|e| Error::internal(format!("the cluster answered without rows: {e}")))?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let typed = rows
        .rows::<scylla::value::Row>()
        .map_err(|e| Error::internal(format!("unexpected columns: {e}")))?;
    let mut out = Vec::new();
    for row in typed {
        let row = row.map_err(|e| Error::internal(format!("undecodable row: {e}")))?;
        out.push(names.iter().cloned().zip(row.columns).collect());
    }
    Ok(out)
}

fn text(row: &NamedRow, column: &str) -> Option<String> {
    match row.get(column)? {
        Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => Some(s.clone()),
        _ => None,
    }
}

fn bigint(row: &NamedRow, column: &str) -> Option<i64> {
    match row.get(column)? {
        Some(CqlValue::BigInt(n)) => Some(*n),
        _ => None,
    }
}

/// A named row as a record row (columns that are absent or null are `None`).
pub(crate) fn decode(row: &NamedRow) -> Row {
    let tags = match row.get("tags") {
        Some(Some(CqlValue::Map(pairs))) => Some(
            pairs
                .iter()
                .filter_map(|(k, v)| match (k, v) {
                    (CqlValue::Text(k), CqlValue::Text(v)) => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    };
    Row {
        partition: text(row, "partition_key").unwrap_or_default(),
        key: text(row, "key").unwrap_or_default(),
        version: text(row, "version"),
        tombstone: match row.get("tombstone") {
            Some(Some(CqlValue::Boolean(b))) => Some(*b),
            _ => None,
        },
        content_type: text(row, "content_type"),
        tags,
        checksum: bigint(row, "checksum"),
        size: bigint(row, "size"),
        value: match row.get("value") {
            Some(Some(CqlValue::Blob(b))) => Some(b.clone()),
            _ => None,
        },
    }
}

/// The outcome of a lightweight transaction from its one row: `[applied]`, and the
/// `version` column a refused one returns (Cassandra returns the columns of the
/// condition, ScyllaDB every column; both name them).
pub(crate) fn lwt(rows: &[NamedRow]) -> Result<Lwt> {
    let row = rows
        .first()
        .ok_or_else(|| Error::internal("a lightweight transaction returned no row"))?;
    let applied = match row.get("[applied]") {
        Some(Some(CqlValue::Boolean(b))) => *b,
        _ => {
            return Err(Error::internal(
                "a lightweight transaction returned no [applied] column",
            ));
        }
    };
    Ok(Lwt {
        applied,
        stored_version: if applied { None } else { text(row, "version") },
    })
}

impl ScyllaCql {
    async fn run(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<NamedRow>> {
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(map_execution)?;
        if result.is_rows() {
            rows(result)
        } else {
            Ok(Vec::new())
        }
    }
}

/// `Unset` for `None`: the column is not written at all.
fn unset_if_none<T>(value: Option<T>) -> MaybeUnset<T> {
    value.map_or(MaybeUnset::Unset, MaybeUnset::Set)
}

#[async_trait]
impl Cql for ScyllaCql {
    async fn get(&self, partition: &str, key: &str) -> Result<Option<Row>> {
        let rows = self.run(&self.prepared.get, (partition, key)).await?;
        Ok(rows.first().map(decode))
    }

    async fn insert(&self, row: &Row) -> Result<Lwt> {
        // A new row: absent optional columns are left unset rather than bound to null,
        // which would write a cell tombstone for each.
        let values = (
            &row.partition,
            &row.key,
            &row.version,
            row.tombstone,
            unset_if_none(row.content_type.as_ref()),
            unset_if_none(row.tags.as_ref()),
            row.checksum,
            row.size,
            &row.value,
        );
        lwt(&self.run(&self.prepared.insert, values).await?)
    }

    async fn update(&self, row: &Row) -> Result<Lwt> {
        let values = (
            &row.version,
            row.tombstone,
            &row.content_type,
            &row.tags,
            row.checksum,
            row.size,
            &row.value,
            &row.partition,
            &row.key,
            &row.version,
        );
        lwt(&self.run(&self.prepared.update, values).await?)
    }

    async fn purge(&self, partition: &str, key: &str, up_to: &str) -> Result<Lwt> {
        lwt(&self
            .run(&self.prepared.purge, (partition, key, up_to))
            .await?)
    }

    async fn index(&self, partition: &str) -> Result<()> {
        self.run(&self.prepared.index, (INDEX_PARTITION, partition))
            .await
            .map(drop)
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<Row>> {
        let statement = &self
            .prepared
            .scans
            .iter()
            .find(|(s, _)| *s == scan.shape)
            .expect("every shape is prepared")
            .1;
        let limit = i32::try_from(scan.limit).unwrap_or(i32::MAX);
        let p = scan.partition.as_str();
        let rows = match scan.bounds.as_slice() {
            [a] => self.run(statement, (p, a, limit)).await?,
            [a, b] => self.run(statement, (p, a, b, limit)).await?,
            _ => return Err(Error::internal("a scan has one or two bounds")),
        };
        Ok(rows.iter().map(decode).collect())
    }

    async fn ping(&self) -> Result<()> {
        self.run(&self.prepared.ping, ()).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_schema_names_the_cql_to_run() {
        let config = ScyllaConfig::new(["db:9042"]);
        let e = missing(&config, "table \"mux.mux_records\" does not exist".into());
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::NotFound, false));
        for part in [
            "table \"mux.mux_records\" does not exist",
            "CREATE KEYSPACE IF NOT EXISTS \"mux\"",
            "tablets = {'enabled': false}",
            "CREATE TABLE IF NOT EXISTS \"mux\".\"mux_records\"",
            "partition_depth=2",
            "or set create_schema = true",
        ] {
            assert!(e.message().contains(part), "{part}: {e}");
        }
    }

    #[test]
    fn lightweight_transaction_results_are_read_by_column_name() {
        let refused: NamedRow = BTreeMap::from([
            ("[applied]".to_owned(), Some(CqlValue::Boolean(false))),
            ("key".to_owned(), Some(CqlValue::Text("a".into()))),
            ("version".to_owned(), Some(CqlValue::Text("v9".into()))),
        ]);
        assert_eq!(
            lwt(&[refused]).unwrap(),
            Lwt {
                applied: false,
                stored_version: Some("v9".into())
            }
        );
        // A refused UPDATE … IF on a missing row: version null.
        let missing: NamedRow = BTreeMap::from([
            ("[applied]".to_owned(), Some(CqlValue::Boolean(false))),
            ("version".to_owned(), None),
        ]);
        assert_eq!(lwt(&[missing]).unwrap().stored_version, None);
        let applied: NamedRow =
            BTreeMap::from([("[applied]".to_owned(), Some(CqlValue::Boolean(true)))]);
        assert!(lwt(&[applied]).unwrap().applied);
        assert!(lwt(&[]).is_err());
        assert!(lwt(&[BTreeMap::new()]).is_err());
    }

    #[test]
    fn rows_decode_by_column_name_with_nulls() {
        let row: NamedRow = BTreeMap::from([
            (
                "partition_key".to_owned(),
                Some(CqlValue::Text("a/b".into())),
            ),
            ("key".to_owned(), Some(CqlValue::Text("a/b/c".into()))),
            ("version".to_owned(), Some(CqlValue::Text("v".into()))),
            ("tombstone".to_owned(), Some(CqlValue::Boolean(true))),
            ("content_type".to_owned(), None),
            (
                "tags".to_owned(),
                Some(CqlValue::Map(vec![(
                    CqlValue::Text("class".into()),
                    CqlValue::Text("pii".into()),
                )])),
            ),
            ("checksum".to_owned(), Some(CqlValue::BigInt(7))),
            ("size".to_owned(), Some(CqlValue::BigInt(0))),
            ("value".to_owned(), Some(CqlValue::Blob(vec![]))),
        ]);
        let r = decode(&row);
        assert_eq!((r.partition.as_str(), r.key.as_str()), ("a/b", "a/b/c"));
        assert_eq!(r.tombstone, Some(true));
        assert_eq!(r.content_type, None);
        assert_eq!(
            r.tags.unwrap().get("class").map(String::as_str),
            Some("pii")
        );
        assert_eq!((r.checksum, r.size), (Some(7), Some(0)));
        assert_eq!(r.value, Some(vec![]));
        let bare = decode(&BTreeMap::from([(
            "key".to_owned(),
            Some(CqlValue::Text("k".into())),
        )]));
        assert_eq!(bare.version, None);
        assert_eq!(bare.value, None);
    }
}
