//! The timeout layer: a call that does not answer in time fails with a temporary
//! `Timeout` error.

use std::sync::Arc;
use std::time::Duration;

use super::layer::{Layer, layer_impls};
use super::watchdog::CoarseTimeout;
use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Operation, Result};

/// Fails a call that has not answered within a duration.
///
/// A call that completes at its first poll (an in-memory store, a cached answer) never
/// arms a timer. The others share one coarse timer per layer (a [`CoarseTimeout`], no
/// tokio timer per call): a call fails between `timeout` and `timeout` plus an eighth of
/// it (at most a second more). Like a tokio timer, a call that waits needs a tokio
/// runtime with its time driver.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use mux_core::{Backend, Key, MemoryBackend};
/// use mux_core::resilience::Timeout;
///
/// let store = Timeout::new(MemoryBackend::new("mem"), Duration::from_millis(200));
/// assert!(store.get(&Key::new("a").unwrap()).await.unwrap().is_none());
/// # }
/// ```
#[derive(Debug)]
pub struct Timeout<B> {
    inner: B,
    timer: CoarseTimeout,
    name: Arc<str>,
}

impl<B: Backend> Timeout<B> {
    /// Wraps `inner`; its calls fail after `timeout`.
    pub fn new(inner: B, timeout: Duration) -> Timeout<B> {
        Timeout {
            name: inner.info().name.clone(),
            inner,
            timer: CoarseTimeout::new(timeout),
        }
    }
}

impl<B> Timeout<B> {
    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// The limit of each call.
    pub fn timeout(&self) -> Duration {
        self.timer.limit()
    }

    pub(crate) async fn around<T>(
        &self,
        op: Operation,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.timer.run(call).await {
            Ok(r) => r,
            Err(elapsed) => Err(Error::new(ErrorKind::Timeout, elapsed.to_string())
                .with_backend(&self.name)
                .with_operation(op)),
        }
    }
}

layer_impls!(Timeout);

/// Builds [`Timeout`]s.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Calls fail after `timeout`.
    pub fn new(timeout: Duration) -> TimeoutLayer {
        TimeoutLayer { timeout }
    }
}

impl<B: Backend> Layer<B> for TimeoutLayer {
    type Backend = Timeout<B>;
    fn layer(&self, inner: B) -> Timeout<B> {
        Timeout::new(inner, self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FaultConfig, FaultyBackend};
    use crate::{Key, MemoryBackend};

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_times_out_as_a_temporary_error() {
        let slow = FaultyBackend::new(MemoryBackend::new("slow"), 1).with_config(FaultConfig {
            latency: Duration::from_secs(5),
            ..Default::default()
        });
        let store = Timeout::new(slow, Duration::from_secs(1));
        let e = store.get(&Key::new("a").unwrap()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.is_temporary());
        assert_eq!(e.backend(), Some("slow"));
        assert_eq!(e.operation(), Some(Operation::Get));
    }
}
