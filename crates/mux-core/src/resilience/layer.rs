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
//! hinted handoff and dead-letter replay. It calls the stack through [`Guarded`], which
//! composes the layers' work around the one boxed call of the innermost backend, so the
//! layers cost no allocation of their own.

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Operation, Result};

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

/// A stack of layers the coordinator calls without boxing each layer's future: the
/// layers' work composes around the innermost backend's call, which the caller makes.
pub(crate) trait Guarded: Send + Sync {
    /// Runs `call` (a call of the innermost backend for `op`) through every layer.
    fn guarded<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: impl Future<Output = Result<T>> + Send + 'a,
    ) -> impl Future<Output = Result<T>> + Send + 'a;
}

impl Guarded for Arc<dyn Backend> {
    fn guarded<'a, T: Send + 'a>(
        &'a self,
        _op: Operation,
        call: impl Future<Output = Result<T>> + Send + 'a,
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        call
    }
}

/// Implements [`Backend`] and [`Guarded`] for a layer `$ty<B>` whose inherent
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
        }

        impl<B: $crate::resilience::layer::Guarded> $crate::resilience::layer::Guarded for $ty<B> {
            fn guarded<'a, T: Send + 'a>(
                &'a self,
                op: $crate::error::Operation,
                call: impl Future<Output = $crate::error::Result<T>> + Send + 'a,
            ) -> impl Future<Output = $crate::error::Result<T>> + Send + 'a {
                self.around(op, self.inner.guarded(op, call))
            }
        }
    };
}
pub(crate) use layer_impls;
