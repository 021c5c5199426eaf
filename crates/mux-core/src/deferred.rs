//! [`Deferred`]: a backend whose store was unreachable when it was opened.
//!
//! A store that is down when a [`Mux`](crate::Mux) (or muxd) starts must not stop the
//! start. `Deferred` stands in for it: it knows what the store is and can do (its
//! [`BackendInfo`], known from the configuration without I/O), fails every call with a
//! temporary [`ErrorKind::Unavailable`] error naming the backend and the last connect
//! error — so the coordinator's circuit opens, health fails and hints are kept and
//! retried — while a background task tries to connect again with jittered exponential
//! backoff. Once connected, every call goes to the real backend.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mux_core::{Backend, BackendInfo, Capability, Error, ErrorKind, MemoryBackend};
//! use mux_core::deferred::{Deferred, DeferredOptions, OpenFuture, Opener};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let info = BackendInfo::new("cache", "memory", MemoryBackend::CAPABILITY);
//! let first = Error::new(ErrorKind::Unavailable, "connection refused");
//! let opener: Opener = Arc::new(|| -> OpenFuture {
//!     Box::pin(async { Ok(Arc::new(MemoryBackend::new("cache")) as Arc<dyn Backend>) })
//! });
//! let store = Deferred::spawn(info, first, opener, DeferredOptions::default());
//! assert!(!store.is_connected());
//! store.wait_connected(Duration::from_secs(5)).await.unwrap();
//! store.health().await.unwrap();
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use crate::backend::{Backend, BackendInfo, ListPage, ListRequest, PutOutcome};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{AsOf, HistoryPage, HistoryRequest};
use crate::key::Key;
use crate::record::Record;
use crate::resilience::{Jitter, RetryPolicy};
use crate::version::Version;

/// What one connect attempt returns.
pub type OpenFuture = BoxFuture<'static, Result<Arc<dyn Backend>>>;

/// Connects to the store; called once per attempt.
pub type Opener = Arc<dyn Fn() -> OpenFuture + Send + Sync>;

/// How a [`Deferred`] backend keeps trying to connect.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeferredOptions {
    /// The backoff between attempts (its `initial_backoff`, `max_backoff` and
    /// `multiplier`; attempts never stop while the backend exists).
    pub backoff: RetryPolicy,
    /// The longest one connect attempt may take before it counts as failed.
    pub attempt_timeout: Duration,
}

impl Default for DeferredOptions {
    fn default() -> Self {
        DeferredOptions {
            backoff: RetryPolicy {
                initial_backoff: Duration::from_millis(250),
                max_backoff: Duration::from_secs(5),
                ..RetryPolicy::default()
            },
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl DeferredOptions {
    /// Sets the backoff between attempts.
    pub fn with_backoff(mut self, backoff: RetryPolicy) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the bound of one connect attempt.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }
}

struct Shared {
    backend: OnceLock<Arc<dyn Backend>>,
    last_error: Mutex<String>,
    connected: tokio::sync::Notify,
}

/// A backend that starts unavailable and connects in the background.
///
/// Until the store is reached, every call fails with a temporary
/// [`ErrorKind::Unavailable`] error naming the backend and the last connect error. Once
/// connected, every call (including [`Backend::info`]) is forwarded. Dropping it stops
/// the connect task.
pub struct Deferred {
    info: BackendInfo,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Deferred");
        d.field("name", &self.info.name)
            .field("kind", &self.info.kind);
        match self.shared.backend.get() {
            Some(b) => d.field("backend", b),
            None => d.field("last_error", &*self.last_error()),
        };
        d.finish()
    }
}

impl Deferred {
    /// A backend for the store `info` describes, whose first connect failed with
    /// `first_error`; `opener` is called in a background task (spawned on the current
    /// tokio runtime) until it succeeds.
    pub fn spawn(
        info: BackendInfo,
        first_error: Error,
        opener: Opener,
        options: DeferredOptions,
    ) -> Deferred {
        let shared = Arc::new(Shared {
            backend: OnceLock::new(),
            last_error: Mutex::new(first_error.to_string()),
            connected: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(connect_loop(
            info.name.clone(),
            shared.clone(),
            opener,
            options,
        ));
        Deferred { info, shared, task }
    }

    /// Whether the store has been reached (calls are forwarded).
    pub fn is_connected(&self) -> bool {
        self.shared.backend.get().is_some()
    }

    /// Waits until the store has been reached, at most `timeout`; fails with the same
    /// error a call would get when it is still unreachable.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let wait = async {
            loop {
                let notified = self.shared.connected.notified();
                if self.is_connected() {
                    return;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.unavailable(Operation::Open)),
        }
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn unavailable(&self, op: Operation) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} store not reached yet (retrying in the background); last connect error: {}",
                self.info.kind,
                self.last_error()
            ),
        )
        .temporary()
        .with_backend(&self.info.name)
        .with_operation(op)
    }

    fn backend(&self, op: Operation) -> Result<&Arc<dyn Backend>> {
        self.shared
            .backend
            .get()
            .ok_or_else(|| self.unavailable(op))
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect_loop(
    name: Arc<str>,
    shared: Arc<Shared>,
    opener: Opener,
    options: DeferredOptions,
) {
    let mut retry = 0u32;
    loop {
        let wait = options.backoff.backoff(retry, Jitter::shared().unit());
        tokio::time::sleep(wait).await;
        retry = retry.saturating_add(1);
        let attempt = tokio::time::timeout(options.attempt_timeout, opener()).await;
        let error = match attempt {
            Ok(Ok(backend)) => {
                tracing::info!(backend = %name, attempts = retry, "store reached: calls go through");
                let _ = shared.backend.set(backend);
                shared.connected.notify_waiters();
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "the connect attempt took longer than {:?}",
                options.attempt_timeout
            ),
        };
        tracing::warn!(backend = %name, attempt = retry, error = %error, "store still unreachable");
        *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Deferred {
    fn info(&self) -> &BackendInfo {
        match self.shared.backend.get() {
            Some(b) => b.info(),
            None => &self.info,
        }
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.backend(Operation::Put)?.put(record).await
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.backend(Operation::Get)?.get(key).await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.backend(Operation::List)?.list(request).await
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.backend(Operation::Delete)?.delete(key, version).await
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        self.backend(Operation::PutBatch)?.put_batch(records).await
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.backend(Operation::Purge)?.purge(key, up_to).await
    }

    async fn health(&self) -> Result<()> {
        self.backend(Operation::Health)?.health().await
    }

    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        self.backend(Operation::History)?.history(request).await
    }

    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        self.backend(Operation::GetAsOf)?.get_as_of(key, at).await
    }

    async fn digest(
        &self,
        request: &crate::digest::DigestRequest,
    ) -> Result<Vec<crate::digest::DigestChunk>> {
        self.backend(Operation::Digest)?.digest(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::memory::MemoryBackend;

    /// An opener that fails `failures` times (temporary, "refused #n"), then opens a
    /// memory backend; counts its calls.
    fn flaky(failures: u32, calls: Arc<AtomicU32>) -> Opener {
        Arc::new(move || -> OpenFuture {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                if n <= failures {
                    Err(Error::new(ErrorKind::Unavailable, format!("refused #{n}")).temporary())
                } else {
                    Ok(Arc::new(MemoryBackend::new("late")) as Arc<dyn Backend>)
                }
            })
        })
    }

    fn info() -> BackendInfo {
        BackendInfo::new("late", "memory", MemoryBackend::CAPABILITY)
    }

    #[tokio::test(start_paused = true)]
    async fn fails_temporarily_until_connected_then_forwards() {
        let calls = Arc::new(AtomicU32::new(0));
        let first = Error::new(ErrorKind::Unavailable, "refused #0").temporary();
        let store = Deferred::spawn(
            info(),
            first,
            flaky(3, calls.clone()),
            DeferredOptions::default(),
        );
        let key = Key::new("k").unwrap();
        let e = store.get(&key).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert_eq!(e.backend(), Some("late"));
        assert!(e.message().contains("refused #0"), "{e}");
        assert!(store.health().await.is_err());
        assert_eq!(store.info().name.as_ref(), "late");

        store.wait_connected(Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "three failures, then success"
        );
        let record = Record::new(key.clone(), "v", Version::new(1, 0, 1));
        assert!(store.put(&record).await.unwrap().is_applied());
        assert_eq!(
            store.get(&key).await.unwrap().unwrap().value(),
            "v".as_bytes()
        );
        store.health().await.unwrap();
        assert!(format!("{store:?}").contains("MemoryBackend"), "{store:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn reports_the_last_error_and_stops_when_dropped() {
        let calls = Arc::new(AtomicU32::new(0));
        let first = Error::new(ErrorKind::Unavailable, "refused #0").temporary();
        let options = DeferredOptions::default().with_backoff(RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        });
        let store = Deferred::spawn(info(), first, flaky(u32::MAX, calls.clone()), options);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let seen = calls.load(Ordering::SeqCst);
        assert!(seen >= 10, "retries keep going: {seen}");
        let e = store.get(&Key::new("k").unwrap()).await.unwrap_err();
        assert!(e.message().contains(&format!("refused #{seen}")), "{e}");
        drop(store);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            seen,
            "no attempt after the drop"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_is_bounded() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let opener: Opener = Arc::new(move || -> OpenFuture {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    std::future::pending::<()>().await;
                }
                Ok(Arc::new(MemoryBackend::new("late")) as Arc<dyn Backend>)
            })
        });
        let options = DeferredOptions::default().with_attempt_timeout(Duration::from_secs(1));
        let first = Error::new(ErrorKind::Timeout, "slow");
        let store = Deferred::spawn(info(), first, opener, options);
        store.wait_connected(Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the hung attempt was abandoned"
        );
    }
}
