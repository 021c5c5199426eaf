//! Resilience as layers: each protection is a [`Backend`] that wraps a `Backend`.
//!
//! [`Timeout`], [`Bulkhead`], [`CircuitBreaker`] and [`Instrumented`] each forward every
//! method of the trait, with their work around the call. They have tower's shape: a
//! wrapper `Foo<B>` with `new`, `get_ref` and `into_inner`, a `FooLayer` that builds it,
//! and [`Layers`], a small builder that stacks them (the first layer added is the
//! outermost). State that others read — a circuit's state, latency percentiles, calls
//! in flight — lives in an `Arc` handle the wrapper hands out, never reached by
//! downcasting.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mux_core::Error> {
//! use std::time::Duration;
//! use mux_core::{Backend, Key, MemoryBackend, Record, Version};
//! use mux_core::resilience::{
//!     BreakerConfig, BulkheadConfig, BulkheadLayer, CircuitBreakerLayer, InstrumentedLayer,
//!     Layers, TimeoutLayer,
//! };
//!
//! let store = Layers::new()
//!     .layer(BulkheadLayer::new(BulkheadConfig::default()))
//!     .layer(CircuitBreakerLayer::new(BreakerConfig::default()))
//!     .layer(InstrumentedLayer)
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .build(MemoryBackend::new("mem"));
//! let key = Key::new("a")?;
//! store.put(&Record::new(key.clone(), "1", Version::new(1, 0, 1))).await?;
//! let breaker = store.get_ref();
//! assert_eq!(breaker.circuit().state(), mux_core::resilience::CircuitState::Closed);
//! assert_eq!(breaker.get_ref().stats().calls(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! The coordinator builds one such stack per backend from its `ResilienceConfig`
//! (bulkhead, circuit breaker, instrumentation, timeout, outermost first) and sends every
//! call it makes through it: writes, reads, read repair, listing, purge, health probes,
//! hinted handoff and dead-letter replay. It calls the stack's `guarded`: one state
//! machine over the stack's own parts (gate, circuit, stats, timeout) around the one
//! boxed call of the innermost backend, so the layers cost no allocation and no nesting
//! of their own.

use tokio::time::Instant;

use crate::backend::Backend;
use crate::coordinator::ResilienceStack;
use crate::error::{Error, Operation, Result};

/// Builds a wrapper around a backend (tower's `Layer`).
pub trait Layer<B> {
    /// The wrapped backend.
    type Backend: Backend;
    /// Wraps `inner`.
    fn layer(&self, inner: B) -> Self::Backend;
}

/// The layer that adds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<B: Backend> Layer<B> for Identity {
    type Backend = B;
    fn layer(&self, inner: B) -> B {
        inner
    }
}

/// Two layers, `outer` around `inner`.
#[derive(Clone, Debug)]
pub struct Stack<Inner, Outer> {
    inner: Inner,
    outer: Outer,
}

impl<B, I, O> Layer<B> for Stack<I, O>
where
    I: Layer<B>,
    O: Layer<I::Backend>,
{
    type Backend = O::Backend;
    fn layer(&self, inner: B) -> O::Backend {
        self.outer.layer(self.inner.layer(inner))
    }
}

/// Stacks layers; the first one added is the outermost (as in tower's `ServiceBuilder`).
#[derive(Clone, Debug, Default)]
pub struct Layers<L>(L);

impl Layers<Identity> {
    /// An empty stack.
    pub fn new() -> Layers<Identity> {
        Layers(Identity)
    }
}

impl<L> Layers<L> {
    /// Adds a layer inside the ones added before.
    pub fn layer<N>(self, layer: N) -> Layers<Stack<N, L>> {
        Layers(Stack {
            inner: layer,
            outer: self.0,
        })
    }

    /// Wraps `backend` in every layer.
    pub fn build<B>(&self, backend: B) -> L::Backend
    where
        L: Layer<B>,
    {
        self.0.layer(backend)
    }
}

impl<B: Backend> ResilienceStack<B> {
    /// Runs `call` (a call of the innermost backend for `op`) through every layer of the
    /// coordinator's stack without boxing each layer's future: one state machine over
    /// the stack's own parts — its bulkhead's gate, its breaker's circuit, its stats and
    /// its timeout — in the same order and under the same rules as the layers' `Backend`
    /// impls.
    ///
    /// The outcome (`ok` or the error kind) is recorded on `span` when it is enabled.
    /// The call's latency is measured from `since` when given (calls of one fan-out
    /// share one reading of the clock) unless it had to wait for a bulkhead slot, else
    /// from when it is let through.
    pub(crate) async fn guarded<T>(
        &self,
        op: Operation,
        call: impl Future<Output = Result<T>>,
        span: tracing::Span,
        since: Option<Instant>,
    ) -> Result<T> {
        let breaker = self.get_ref();
        let instrumented = breaker.get_ref();
        let name = instrumented.name();
        let tag = |e: Error| e.with_backend(name).with_operation(op);
        // The uncontended slot is taken without a future; waiting for one is boxed, so
        // this state machine (moved on every call) stays small.
        let (_permit, since) = match self.gate().try_take() {
            Some(permit) => (permit, since),
            None => (Box::pin(self.gate().acquire()).await.map_err(tag)?, None),
        };
        // Dropped unreported if this future is cancelled mid-call: a half-open probe's
        // slot then goes back (see `CallPermit`).
        let permit = breaker.circuit().try_acquire().map_err(tag)?;
        let started = since.unwrap_or_else(Instant::now);
        let result = instrumented.get_ref().around(op, call).await.map_err(tag);
        let elapsed = started.elapsed();
        permit.record(result.as_ref().is_err_and(Error::is_temporary), elapsed);
        instrumented.stats().record(op, elapsed, result.is_ok());
        if !span.is_disabled() {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.kind().as_str(),
            };
            span.record("outcome", outcome);
        }
        result
    }
}

/// Implements [`Backend`] for a layer `$ty<B>` whose inherent
/// `around(op, call)` does its work around one call of `self.inner`.
macro_rules! layer_impls {
    ($ty:ident) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<B: $crate::backend::Backend> $crate::backend::Backend for $ty<B> {
            fn info(&self) -> &$crate::backend::BackendInfo {
                self.inner.info()
            }
            async fn put(
                &self,
                record: &$crate::record::Record,
            ) -> $crate::error::Result<$crate::backend::PutOutcome> {
                self.around($crate::error::Operation::Put, self.inner.put(record))
                    .await
            }
            async fn get(
                &self,
                key: &$crate::key::Key,
            ) -> $crate::error::Result<Option<$crate::record::Record>> {
                self.around($crate::error::Operation::Get, self.inner.get(key))
                    .await
            }
            async fn list(
                &self,
                request: &$crate::backend::ListRequest,
            ) -> $crate::error::Result<$crate::backend::ListPage> {
                self.around($crate::error::Operation::List, self.inner.list(request))
                    .await
            }
            async fn delete(
                &self,
                key: &$crate::key::Key,
                version: $crate::version::Version,
            ) -> $crate::error::Result<$crate::backend::PutOutcome> {
                self.around(
                    $crate::error::Operation::Delete,
                    self.inner.delete(key, version),
                )
                .await
            }
            async fn put_batch(
                &self,
                records: &[$crate::record::Record],
            ) -> $crate::error::Result<Vec<$crate::backend::PutOutcome>> {
                self.around(
                    $crate::error::Operation::PutBatch,
                    self.inner.put_batch(records),
                )
                .await
            }
            async fn purge(
                &self,
                key: &$crate::key::Key,
                up_to: $crate::version::Version,
            ) -> $crate::error::Result<bool> {
                self.around(
                    $crate::error::Operation::Purge,
                    self.inner.purge(key, up_to),
                )
                .await
            }
            async fn health(&self) -> $crate::error::Result<()> {
                self.around($crate::error::Operation::Health, self.inner.health())
                    .await
            }
            async fn history(
                &self,
                request: &$crate::history::HistoryRequest,
            ) -> $crate::error::Result<$crate::history::HistoryPage> {
                self.around(
                    $crate::error::Operation::History,
                    self.inner.history(request),
                )
                .await
            }
            async fn get_as_of(
                &self,
                key: &$crate::key::Key,
                at: $crate::history::AsOf,
            ) -> $crate::error::Result<Option<$crate::record::Record>> {
                self.around(
                    $crate::error::Operation::GetAsOf,
                    self.inner.get_as_of(key, at),
                )
                .await
            }
            async fn digest(
                &self,
                request: &$crate::digest::DigestRequest,
            ) -> $crate::error::Result<Vec<$crate::digest::DigestChunk>> {
                self.around($crate::error::Operation::Digest, self.inner.digest(request))
                    .await
            }
        }
    };
}
pub(crate) use layer_impls;
