//! Per-tenant quotas and usage metering.
//!
//! ```toml
//! [quotas]
//! reads_per_second = 1000     # per tenant: get, list, history, watch (token bucket)
//! writes_per_second = 200     # per tenant: put, delete
//! max_bytes = 1073741824      # stored value bytes per tenant
//! max_keys = 100000           # live keys per tenant
//! [quotas.tenants.acme]       # overrides, field by field
//! writes_per_second = 50
//! ```
//!
//! A tenant over its rate gets 429 with `Retry-After` (gRPC `RESOURCE_EXHAUSTED`); a
//! write that would take it over `max_bytes` or `max_keys` is refused before anything
//! is written. Operators (and auth off) are never limited. Usage — requests, bytes
//! written and read, bytes and keys stored, bytes written per backend — is counted per
//! tenant, exported as metrics and by `GET /v1/admin/tenants/{t}/usage`.
//!
//! Stored bytes and keys are counted by listing the tenant's namespace the first time
//! a limited write needs them, then kept up to date by this node's writes and deletes:
//! several nodes each count their own writes on top of that listing, and two
//! concurrent first writes of one key may both count it, so the limits are exact for
//! one node and approximate (by the other nodes' writes since the count) for several.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mux::{ListRequest, Mux, Prefix, ReadOptions, Tenant};
use serde::{Deserialize, Serialize};

use crate::service::ServiceError;

/// One tenant's limits (absent: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Reads per second (get, list, history, watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads_per_second: Option<u32>,
    /// Writes per second (put, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_per_second: Option<u32>,
    /// Stored value bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Live keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
}

/// `[quotas]`: the limits of every tenant, and per-tenant overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Reads per second of each tenant.
    #[serde(default)]
    pub reads_per_second: Option<u32>,
    /// Writes per second of each tenant.
    #[serde(default)]
    pub writes_per_second: Option<u32>,
    /// Stored value bytes of each tenant.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Live keys of each tenant.
    #[serde(default)]
    pub max_keys: Option<u64>,
    /// Overrides by tenant, field by field.
    #[serde(default)]
    pub tenants: BTreeMap<String, Limits>,
}

impl QuotaConfig {
    /// The limits of `tenant`.
    pub fn limits(&self, tenant: &str) -> Limits {
        let o = self.tenants.get(tenant).copied().unwrap_or_default();
        Limits {
            reads_per_second: o.reads_per_second.or(self.reads_per_second),
            writes_per_second: o.writes_per_second.or(self.writes_per_second),
            max_bytes: o.max_bytes.or(self.max_bytes),
            max_keys: o.max_keys.or(self.max_keys),
        }
    }
}

/// Reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Read,
    Write,
}

#[derive(Debug, Default)]
struct Usage {
    reads: AtomicU64,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
    /// (bytes, keys) stored, once counted.
    stored: Mutex<Option<(u64, u64)>>,
    by_backend: Mutex<BTreeMap<String, u64>>,
}

/// The quotas and usage of this process.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    config: QuotaConfig,
    limiters: Mutex<HashMap<(String, Class), Arc<DefaultDirectRateLimiter>>>,
    usage: Mutex<HashMap<String, Arc<Usage>>>,
}

fn exceeded(message: String, retry_after_s: Option<u64>) -> ServiceError {
    ServiceError::quota(message, retry_after_s)
}

impl Quotas {
    pub(crate) fn new(config: QuotaConfig) -> Quotas {
        Quotas {
            config,
            ..Quotas::default()
        }
    }

    fn usage(&self, tenant: &str) -> Arc<Usage> {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_owned())
            .or_default()
            .clone()
    }

    /// Counts a request of `tenant` and checks its rate.
    pub(crate) fn admit(&self, tenant: &Tenant, class: Class) -> Result<(), ServiceError> {
        let t = tenant.as_str();
        let usage = self.usage(t);
        let (counter, what) = match class {
            Class::Read => (&usage.reads, "read"),
            Class::Write => (&usage.writes, "write"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("muxd_tenant_requests_total", "tenant" => t.to_owned(), "class" => what)
            .increment(1);
        let limits = self.config.limits(t);
        let rate = match class {
            Class::Read => limits.reads_per_second,
            Class::Write => limits.writes_per_second,
        };
        let Some(rate) = rate else { return Ok(()) };
        let Some(per_second) = NonZeroU32::new(rate) else {
            return Err(exceeded(
                format!("tenant {t} may make no {what}s (its quota is 0 per second)"),
                None,
            ));
        };
        let limiter = self
            .limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((t.to_owned(), class))
            .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_second(per_second))))
            .clone();
        match limiter.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                metrics::counter!("muxd_tenant_throttled_total", "tenant" => t.to_owned(), "class" => what)
                    .increment(1);
                Err(exceeded(
                    format!(
                        "tenant {t} is over its quota of {rate} {what}s per second: retry in {} ms",
                        wait.as_millis()
                    ),
                    Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                ))
            }
        }
    }

    /// Whether `tenant` has a storage limit.
    pub(crate) fn limits_storage(&self, tenant: &Tenant) -> bool {
        let l = self.config.limits(tenant.as_str());
        l.max_bytes.is_some() || l.max_keys.is_some()
    }

    /// Takes room for a write of `new_len` bytes over `old_len` (`None`: a new key),
    /// refusing the write that would cross a limit. The room is given back with
    /// [`Quotas::adjust`] if the write fails.
    pub(crate) async fn reserve(
        &self,
        mux: &Mux,
        tenant: &Tenant,
        old_len: Option<u64>,
        new_len: u64,
    ) -> Result<(i64, i64), ServiceError> {
        let t = tenant.as_str();
        let usage = self.usage(t);
        self.count_stored(mux, tenant, &usage).await?;
        let limits = self.config.limits(t);
        let delta = (
            new_len as i64 - old_len.unwrap_or(0) as i64,
            i64::from(old_len.is_none()),
        );
        let mut stored = usage.stored.lock().unwrap_or_else(|p| p.into_inner());
        let (bytes, keys) = stored.unwrap_or_default();
        let (after_bytes, after_keys) = (
            bytes.saturating_add_signed(delta.0),
            keys.saturating_add_signed(delta.1),
        );
        if let Some(max) = limits.max_bytes
            && delta.0 > 0
            && after_bytes > max
        {
            return Err(exceeded(
                format!(
                    "tenant {t} stores {bytes} bytes; this write would make it {after_bytes}, over its quota of {max}: nothing was written (delete data or raise [quotas] max_bytes)"
                ),
                None,
            ));
        }
        if let Some(max) = limits.max_keys
            && delta.1 > 0
            && after_keys > max
        {
            return Err(exceeded(
                format!(
                    "tenant {t} has {keys} keys, its quota: nothing was written (delete keys or raise [quotas] max_keys)"
                ),
                None,
            ));
        }
        *stored = Some((after_bytes, after_keys));
        self.stored_gauges(t, after_bytes, after_keys);
        Ok(delta)
    }

    /// Adds `delta` (bytes, keys) to what `tenant` stores: a delete's negative delta, or
    /// the negation of what [`Quotas::reserve`] took for a write that wrote nothing.
    pub(crate) fn adjust(&self, tenant: &Tenant, delta: (i64, i64)) {
        let t = tenant.as_str();
        let usage = self.usage(t);
        let mut stored = usage.stored.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bytes, keys)) = *stored {
            let after = (
                bytes.saturating_add_signed(delta.0),
                keys.saturating_add_signed(delta.1),
            );
            *stored = Some(after);
            self.stored_gauges(t, after.0, after.1);
        }
    }

    fn stored_gauges(&self, t: &str, bytes: u64, keys: u64) {
        metrics::gauge!("muxd_tenant_bytes_stored", "tenant" => t.to_owned()).set(bytes as f64);
        metrics::gauge!("muxd_tenant_keys_stored", "tenant" => t.to_owned()).set(keys as f64);
    }

    /// Counts the tenant's stored bytes and keys by listing its namespace, once.
    async fn count_stored(
        &self,
        mux: &Mux,
        tenant: &Tenant,
        usage: &Usage,
    ) -> Result<(), ServiceError> {
        if usage
            .stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let options = ReadOptions {
            tenant: Some(tenant.clone()),
            ..ReadOptions::default()
        };
        let mut request = ListRequest::new(Prefix::all()).with_limit(1000);
        let (mut bytes, mut keys) = (0u64, 0u64);
        loop {
            let page = mux
                .list(&request, &options)
                .await
                .map_err(|e| ServiceError::from_mux(&e, Some(tenant)))?;
            for e in &page.entries {
                bytes += e.size;
                keys += 1;
            }
            match page.next_cursor {
                Some(c) => request.cursor = Some(c),
                None => break,
            }
        }
        let mut stored = usage.stored.lock().unwrap_or_else(|p| p.into_inner());
        if stored.is_none() {
            *stored = Some((bytes, keys));
        }
        Ok(())
    }

    /// Meters a write of `len` bytes applied on `backends`.
    pub(crate) fn wrote(&self, tenant: &Tenant, len: u64, backends: &[&str]) {
        let t = tenant.as_str();
        let usage = self.usage(t);
        usage.bytes_written.fetch_add(len, Ordering::Relaxed);
        metrics::counter!("muxd_tenant_bytes_written_total", "tenant" => t.to_owned())
            .increment(len);
        let mut by = usage.by_backend.lock().unwrap_or_else(|p| p.into_inner());
        for b in backends {
            *by.entry((*b).to_owned()).or_default() += len;
            metrics::counter!("muxd_tenant_backend_bytes_written_total", "tenant" => t.to_owned(), "backend" => (*b).to_owned())
                .increment(len);
        }
    }

    /// Meters a read of `len` bytes.
    pub(crate) fn read(&self, tenant: &Tenant, len: u64) {
        let t = tenant.as_str();
        self.usage(t).bytes_read.fetch_add(len, Ordering::Relaxed);
        metrics::counter!("muxd_tenant_bytes_read_total", "tenant" => t.to_owned()).increment(len);
    }

    /// `GET /v1/admin/tenants/{t}/usage`.
    pub(crate) async fn report(
        &self,
        mux: &Mux,
        tenant: &Tenant,
    ) -> Result<serde_json::Value, ServiceError> {
        let t = tenant.as_str();
        let usage = self.usage(t);
        self.count_stored(mux, tenant, &usage).await?;
        let (bytes, keys) = usage
            .stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_default();
        let by_backend = usage
            .by_backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(serde_json::json!({
            "tenant": t,
            "requests": {
                "read": usage.reads.load(Ordering::Relaxed),
                "write": usage.writes.load(Ordering::Relaxed),
            },
            "bytes_written": usage.bytes_written.load(Ordering::Relaxed),
            "bytes_read": usage.bytes_read.load(Ordering::Relaxed),
            "bytes_stored": bytes,
            "keys_stored": keys,
            "bytes_written_by_backend": by_backend,
            "limits": self.config.limits(t),
        }))
    }
}
