//! [`InfluxBackend`]: the `Backend` implementation on an InfluxDB 1.x measurement.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use mux_core::batcher::PutBatcher;
use mux_core::{
    AsOf, Backend, BackendInfo, Capability, Error, ErrorKind, HistoryPage, HistoryRequest, Key,
    ListEntry, ListPage, ListRequest, Metadata, Operation, PutOutcome, Record, Result, Version,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::batch::{IN_FLIGHT, MAX_BATCH, put_many};

use crate::config::InfluxConfig;
use crate::error::{from_statement, from_status, from_transport};
use crate::influxql::{Response, Row, ident, prefix_regex, string};
use crate::line::{self, BASE64, NS_PER_MS, millis_ns};

/// InfluxDB's documented limit of a string field: 64 KB.
pub const MAX_FIELD_BYTES: usize = 64 << 10;

/// The largest value mux stores: 48 KiB, whose base64 form (values that are not UTF-8)
/// is exactly [`MAX_FIELD_BYTES`], so every value's stored field keeps within the limit.
pub const MAX_VALUE_SIZE: usize = MAX_FIELD_BYTES / 4 * 3;

/// How many of a key's newest points one read asks for before it completes the lowest
/// millisecond it saw (see [`InfluxBackend::scan`]).
const READ_BATCH: usize = 4;

/// The fields a listing reads (everything but the value).
const META_FIELDS: &str =
    r#""version","tombstone","size","checksum","content_type","tags","encoding""#;

/// The fields every point mux writes has.
const REQUIRED: [&str; 6] = [
    "version",
    "tombstone",
    "size",
    "checksum",
    "encoding",
    "tags",
];

/// How often a read that returned a point with some of [`REQUIRED`] empty is made
/// again before it fails: InfluxDB 1.x has been seen to answer, rarely and under load,
/// with a row whose fields were not all there yet; read again, the point is whole.
const PARTIAL_RETRIES: u64 = 4;

/// The missing fields of the first row of `series` that lacks some of [`REQUIRED`].
fn partial_row<'a>(
    series: impl Iterator<Item = &'a crate::influxql::Series>,
) -> Option<Vec<&'static str>> {
    for s in series {
        for row in s.rows() {
            let missing = row.missing(&REQUIRED);
            if !missing.is_empty() {
                return Some(missing);
            }
        }
    }
    None
}

fn partial_error(key: &str, missing: &[&str]) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "point of key {key}: the field(s) {} are empty, also when read again (was it \
             written by mux?)",
            missing.join(", ")
        ),
    )
}

/// How many keys one listing query asks about.
const KEYS_PER_QUERY: usize = 64;

/// A backend storing records as points of an InfluxDB 1.x measurement.
pub struct InfluxBackend {
    info: BackendInfo,
    config: InfluxConfig,
    client: reqwest::Client,
    base: String,
    /// The measurement as InfluxQL names it (with its retention policy).
    from: String,
    /// Where puts queue to go out together (`None` in the batcher's own worker).
    batcher: Option<PutBatcher>,
}

impl fmt::Debug for InfluxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxBackend")
            .field("name", &self.info.name)
            .field("config", &self.config)
            .finish()
    }
}

/// One stored point, as read back.
#[derive(Debug)]
pub(crate) struct Point {
    pub(crate) time: i64,
    pub(crate) version: Version,
    meta: Metadata,
    size: u64,
    value: Option<Bytes>,
}

impl Point {
    fn ms(&self) -> i64 {
        self.time.div_euclid(NS_PER_MS)
    }

    fn parse(key: &str, row: &Row<'_>) -> Result<Point> {
        let corrupt = |what: &str| {
            Error::new(
                ErrorKind::Corrupt,
                format!("point of key {key}: {what} (was it written by mux?)"),
            )
        };
        let time = row.i64("time").ok_or_else(|| corrupt("no time"))?;
        let version: Version = row
            .str("version")
            .ok_or_else(|| corrupt("no version field"))?
            .parse()
            .map_err(|_| corrupt("invalid version field"))?;
        let tags = match row.str("tags") {
            Some(json) => serde_json::from_str(json).map_err(|_| corrupt("invalid tags JSON"))?,
            None => BTreeMap::new(),
        };
        let value = match (row.str("value"), row.str("encoding")) {
            (None, _) => None,
            (Some(v), Some(BASE64)) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| corrupt("invalid base64 value"))?,
            )),
            (Some(v), _) => Some(Bytes::copy_from_slice(v.as_bytes())),
        };
        Ok(Point {
            time,
            version,
            meta: Metadata {
                version,
                tombstone: row.bool("tombstone").unwrap_or(false),
                content_type: row.str("content_type").map(str::to_owned),
                tags,
                checksum: match row.i64("checksum") {
                    None => 0, // not selected (a read of versions only)
                    Some(c) => u32::try_from(c).map_err(|_| corrupt("invalid checksum field"))?,
                },
            },
            size: row
                .i64("size")
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
            value,
        })
    }

    fn into_record(self, key: &Key) -> Result<Record> {
        Record::from_parts(key.clone(), self.value.unwrap_or_default(), self.meta)
    }
}

/// A query's answer, or the error it carries.
fn checked(response: Response) -> Result<Response> {
    match response.error() {
        Some(e) => Err(from_statement(e)),
        None => Ok(response),
    }
}

impl InfluxBackend {
    /// The capability of an InfluxDB backend.
    pub const fn capability() -> Capability {
        Capability {
            list: true,
            batch: false,
            atomic_conditional_write: false,
            history: true,
            tags: true,
            content_type: true,
            purge: true,
            durable: true,
            digest: false,
            max_value_size: Some(MAX_VALUE_SIZE),
        }
    }

    /// Checks the config, and creates the database (unless `create_database` is off;
    /// then only pings the server).
    pub async fn connect(name: impl AsRef<str>, config: InfluxConfig) -> Result<InfluxBackend> {
        let name = name.as_ref();
        let tag = |e: Error| e.with_backend(name).with_operation(Operation::Open);
        config.validate().map_err(tag)?;
        // ring, the workspace's one TLS provider (reqwest is built without its own).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(config.timeout());
        if let Some(path) = &config.ca_file {
            let bad = |e: String| {
                tag(Error::invalid_input(format!(
                    "InfluxDB ca_file {}: {e}",
                    path.display()
                )))
            };
            let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
            for cert in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| tag(from_transport(&e)))?;
        let from = match &config.retention_policy {
            Some(rp) => format!("{}.{}", ident(rp), ident(&config.measurement)),
            None => ident(&config.measurement),
        };
        let mut backend = InfluxBackend {
            info: BackendInfo::new(name, crate::KIND, Self::capability()),
            base: config.url.trim_end_matches('/').to_owned(),
            client,
            from,
            config,
            batcher: None,
        };
        if backend.config.create_database {
            let q = format!("CREATE DATABASE {}", ident(&backend.config.database));
            backend.query(&q).await.map_err(|e| {
                tag(e.context(format!("cannot create the database at {}", backend.base)))
            })?;
        } else {
            backend.ping().await.map_err(tag)?;
        }
        // The batcher's worker: the same client and settings, without a batcher.
        let worker = InfluxBackend {
            info: backend.info.clone(),
            config: backend.config.clone(),
            client: backend.client.clone(),
            base: backend.base.clone(),
            from: backend.from.clone(),
            batcher: None,
        };
        let worker = std::sync::Arc::new(worker);
        backend.batcher = Some(PutBatcher::start(
            "influx",
            MAX_BATCH,
            IN_FLIGHT,
            move |records: Vec<Record>| {
                let worker = worker.clone();
                async move { put_many(&worker, &records).await }
            },
        ));
        Ok(backend)
    }

    /// The configuration this backend was opened with.
    pub fn config(&self) -> &InfluxConfig {
        &self.config
    }

    fn tag(&self, op: Operation) -> impl Fn(Error) -> Error + '_ {
        move |e| e.with_backend(&self.info.name).with_operation(op)
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.username {
            Some(user) => request.basic_auth(user, self.config.password.as_ref()),
            None => request,
        }
    }

    async fn ping(&self) -> Result<()> {
        let response = self
            .auth(self.client.get(format!("{}/ping", self.base)))
            .send()
            .await
            .map_err(|e| from_transport(&e))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            s => Err(from_status(s, &response.text().await.unwrap_or_default())),
        }
    }

    /// Runs InfluxQL statements (POST `/query`, times as integer nanoseconds). A
    /// statement refused because a shard's engine was closing is sent again, up to
    /// three times (every statement mux sends is idempotent: reads and deletes).
    pub(crate) async fn query(&self, q: &str) -> Result<Response> {
        let mut attempt = 0u32;
        loop {
            match self.query_once(q).await {
                Err(e) if attempt < 3 && e.message().contains(crate::error::ENGINE_CLOSED) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn query_once(&self, q: &str) -> Result<Response> {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let mut body = format!("db={}&epoch=ns&q={}", enc(&self.config.database), enc(q));
        if let Some(rp) = &self.config.retention_policy {
            body.push_str(&format!("&rp={}", enc(rp)));
        }
        let response = self
            .auth(self.client.post(format!("{}/query", self.base)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| from_transport(&e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| from_transport(&e))?;
        if !(200..300).contains(&status) {
            return Err(from_status(status, &text));
        }
        let parsed: Response = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("unreadable /query answer (is this InfluxDB 1.x?): {e}"),
            )
        })?;
        checked(parsed)
    }

    /// Writes line-protocol points (POST `/write`, nanosecond precision).
    pub(crate) async fn write(&self, lines: String) -> Result<()> {
        let mut url = format!(
            "{}/write?precision=ns&db={}",
            self.base, self.config.database
        );
        if let Some(rp) = &self.config.retention_policy {
            url.push_str(&format!("&rp={rp}"));
        }
        let response = self
            .auth(self.client.post(url))
            .body(lines)
            .send()
            .await
            .map_err(|e| from_transport(&e))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            s => Err(from_status(s, &response.text().await.unwrap_or_default())),
        }
    }

    /// The points of `key` below `upper` (nanoseconds, exclusive), newest millisecond
    /// first, that `keep` admits: at least `want` of them when there are, and always
    /// every point of each millisecond returned. Within a millisecond the points'
    /// order is not their versions' (see `line::timestamp`), so a millisecond is never
    /// cut: when a batch ends inside one, that millisecond is read whole.
    async fn scan(
        &self,
        key: &Key,
        mut upper: Option<i64>,
        fields: &str,
        keep: impl Fn(Version) -> bool,
        want: usize,
    ) -> Result<Vec<Point>> {
        let batch = want.max(READ_BATCH);
        let select = format!(
            "SELECT {fields} FROM {} WHERE \"key\" = {}",
            self.from,
            string(key.as_str())
        );
        let mut found = Vec::new();
        loop {
            let bound = upper
                .map(|u| format!(" AND time < {u}"))
                .unwrap_or_default();
            let q = format!("{select}{bound} ORDER BY time DESC LIMIT {batch}");
            let mut points = self.points(key, &q).await?;
            let Some(last) = points.last() else { break };
            let full = points.len() == batch;
            if full {
                let low = last.ms();
                points.retain(|p| p.ms() > low);
                let q = format!(
                    "{select} AND time >= {} AND time < {}",
                    low * NS_PER_MS,
                    (low + 1) * NS_PER_MS
                );
                points.extend(self.points(key, &q).await?);
                upper = Some(low * NS_PER_MS);
            }
            found.extend(points.into_iter().filter(|p| keep(p.version)));
            if !full || found.len() >= want {
                break;
            }
        }
        Ok(found)
    }

    async fn points(&self, key: &Key, q: &str) -> Result<Vec<Point>> {
        let mut attempt = 0;
        loop {
            let response = self.query(q).await?;
            let partial = partial_row(response.results.iter().flat_map(|r| &r.series));
            match partial {
                Some(_) if attempt < PARTIAL_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                    continue;
                }
                Some(missing) => return Err(partial_error(key.as_str(), &missing)),
                None => {}
            }
            let mut out = Vec::new();
            for result in &response.results {
                for series in &result.series {
                    for row in series.rows() {
                        out.push(Point::parse(key.as_str(), &row)?);
                    }
                }
            }
            return Ok(out);
        }
    }

    /// The newest version of `key` and the times taken in its millisecond.
    async fn newest(&self, key: &Key, fields: &str) -> Result<Option<Point>> {
        let points = self.scan(key, None, fields, |_| true, 1).await?;
        Ok(points.into_iter().max_by_key(|p| p.version))
    }

    async fn put_one(&self, record: &Record) -> Result<PutOutcome> {
        // Refuse what cannot be written before reading anything.
        line::escape_tag(record.key().as_str())?;
        let version = record.version();
        let points = self
            .scan(record.key(), None, "\"version\"", |_| true, 1)
            .await?;
        if let Some(stored) = points.iter().map(|p| p.version).max()
            && stored >= version
        {
            return Ok(PutOutcome::Superseded { stored });
        }
        let ms = i64::try_from(version.physical_ms()).unwrap_or(i64::MAX);
        let taken: Vec<i64> = points
            .iter()
            .filter(|p| p.ms() == ms)
            .map(|p| p.time)
            .collect();
        let time = line::timestamp(version, &taken)?;
        self.write(line::point(&self.config.measurement, record, time)?)
            .await?;
        Ok(PutOutcome::Applied)
    }

    /// The newest version's metadata of each of `keys` that has one.
    async fn newest_of(&self, keys: &[String]) -> Result<BTreeMap<String, Point>> {
        let points = self.newest_points(keys, META_FIELDS).await?;
        Ok(points
            .into_iter()
            .filter_map(|(k, p)| p.into_iter().max_by_key(|p| p.version).map(|p| (k, p)))
            .collect())
    }

    /// Each of `keys`' points in its newest millisecond at least (see [`Self::scan`]),
    /// one query per [`KEYS_PER_QUERY`] keys; keys without points are absent.
    pub(crate) async fn newest_points(
        &self,
        keys: &[String],
        fields: &str,
    ) -> Result<BTreeMap<String, Vec<Point>>> {
        let mut out = BTreeMap::new();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let any: Vec<String> = chunk
                .iter()
                .map(|k| format!("\"key\" = {}", string(k)))
                .collect();
            let q = format!(
                "SELECT {fields} FROM {} WHERE ({}) GROUP BY \"key\" ORDER BY time DESC LIMIT {READ_BATCH}",
                self.from,
                any.join(" OR ")
            );
            let mut attempt = 0;
            let response = loop {
                let response = self.query(&q).await?;
                match partial_row(response.results.iter().flat_map(|r| &r.series)) {
                    Some(_) if attempt < PARTIAL_RETRIES => {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                    }
                    Some(missing) => return Err(partial_error(&chunk.join(" or "), &missing)),
                    None => break response,
                }
            };
            for series in response.results.iter().flat_map(|r| &r.series) {
                let Some(name) = series.tags.get("key") else {
                    continue;
                };
                let key = Key::new(name)?;
                let mut points = Vec::new();
                for row in series.rows() {
                    points.push(Point::parse(name, &row)?);
                }
                if points.len() == READ_BATCH {
                    // Perhaps a millisecond cut short: read this key properly.
                    points = self.scan(&key, None, fields, |_| true, 1).await?;
                }
                if !points.is_empty() {
                    out.insert(name.clone(), points);
                }
            }
        }
        Ok(out)
    }

    /// Deletes `key`'s versions older than `older_than`, never its newest one (history
    /// retention for one key; see the README for retention policies).
    pub async fn trim_history(&self, key: &Key, older_than: Version) -> Result<()> {
        let tag = self.tag(Operation::Purge);
        let Some(newest) = self.newest(key, "\"version\"").await.map_err(&tag)? else {
            return Ok(());
        };
        let before =
            millis_ns(older_than.physical_ms().min(newest.version.physical_ms())).map_err(&tag)?;
        let q = format!(
            "DELETE FROM {} WHERE \"key\" = {} AND time < {before}",
            ident(&self.config.measurement),
            string(key.as_str())
        );
        self.query(&q).await.map(|_| ()).map_err(&tag)
    }

    /// Drops the whole measurement (every record of this backend); for tests and
    /// decommissioning.
    pub async fn drop_measurement(&self) -> Result<()> {
        let q = format!("DROP MEASUREMENT {}", ident(&self.config.measurement));
        match self.query(&q).await {
            Err(e) if e.message().contains("measurement not found") => Ok(()),
            other => other.map(|_| ()),
        }
        .map_err(self.tag(Operation::Purge))
    }
}

#[async_trait]
impl Backend for InfluxBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        if record.value().len() > MAX_VALUE_SIZE {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "value of {} is {} bytes, the limit is {MAX_VALUE_SIZE}: InfluxDB string \
                     fields are limited to 64 KB ({MAX_FIELD_BYTES} bytes) and values that are \
                     not UTF-8 are stored as base64",
                    record.key(),
                    record.value().len()
                ),
            ))
            .map_err(self.tag(Operation::Put));
        }
        let tag = self.tag(Operation::Put);
        // Refuse what cannot be written before it joins a batch.
        line::escape_tag(record.key().as_str()).map_err(&tag)?;
        line::millis_ns(record.version().physical_ms()).map_err(&tag)?;
        match &self.batcher {
            Some(batcher) => batcher.put(record.clone()).await.map_err(tag),
            None => self.put_one(record).await.map_err(tag),
        }
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let tag = self.tag(Operation::Get);
        let newest = self.newest(key, "*").await.map_err(&tag)?;
        newest.map(|p| p.into_record(key)).transpose().map_err(tag)
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let tag = self.tag(Operation::List);
        let limit = request.effective_limit().map_err(&tag)?;
        let mut q = format!(
            "SHOW TAG VALUES FROM {} WITH KEY = \"key\"",
            ident(&self.config.measurement)
        );
        let start = request.prefix.scan_start();
        if !start.is_empty() {
            q.push_str(&format!(" WHERE \"key\" =~ {}", prefix_regex(start)));
        }
        let response = self.query(&q).await.map_err(&tag)?;
        let mut keys: Vec<String> = response
            .results
            .iter()
            .flat_map(|r| &r.series)
            .flat_map(|s| s.rows().filter_map(|r| r.str("value").map(str::to_owned)))
            .filter(|k| request.wants(k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let newest = self.newest_of(&keys).await.map_err(&tag)?;
        let mut page = ListPage::default();
        for (name, point) in newest {
            page.entries.push(ListEntry {
                key: Key::new(&name).map_err(&tag)?,
                meta: point.meta,
                size: point.size,
            });
        }
        if more {
            page.next_cursor = Some(Key::new(&keys[limit - 1]).map_err(&tag)?);
        }
        Ok(page)
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let tag = self.tag(Operation::Purge);
        match self.newest(key, "\"version\"").await.map_err(&tag)? {
            Some(p) if p.version <= up_to => {
                let q = format!(
                    "DROP SERIES FROM {} WHERE \"key\" = {}",
                    ident(&self.config.measurement),
                    string(key.as_str())
                );
                self.query(&q).await.map_err(&tag)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn health(&self) -> Result<()> {
        self.ping().await.map_err(self.tag(Operation::Health))
    }

    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        let tag = self.tag(Operation::History);
        let limit = request.effective_limit().map_err(&tag)?;
        let upper = request.cursor.and_then(|c| {
            millis_ns(c.physical_ms())
                .ok()
                .and_then(|t| t.checked_add(NS_PER_MS))
        });
        let points = self
            .scan(&request.key, upper, "*", |v| request.wants(v), limit + 1)
            .await
            .map_err(&tag)?;
        let records = points
            .into_iter()
            .map(|p| p.into_record(&request.key))
            .collect::<Result<Vec<_>>>()
            .map_err(&tag)?;
        request.page(records).map_err(tag)
    }

    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        let tag = self.tag(Operation::GetAsOf);
        let bound = at.bound();
        let upper = millis_ns(bound.physical_ms())
            .ok()
            .and_then(|t| t.checked_add(NS_PER_MS));
        let points = self
            .scan(key, upper, "*", |v| v <= bound, 1)
            .await
            .map_err(&tag)?;
        let newest = points.into_iter().max_by_key(|p| p.version);
        newest.map(|p| p.into_record(key)).transpose().map_err(tag)
    }
}
