//! A layer that loses requests or responses and slows calls as [`Faults`] says.

use std::future::Future;
use std::sync::Arc;

use mux_core::{
    AsOf, Backend, BackendInfo, Error, ErrorKind, HistoryPage, HistoryRequest, Key, ListPage,
    ListRequest, Operation, PutOutcome, Record, Result, Version, async_trait,
};

use super::{Faults, Injected};

/// Wraps a backend: a lost request fails before the inner call (temporary
/// `Unavailable`), a lost response fails after it, once the inner backend has done the
/// work (temporary `Timeout`), and a slow call waits first.
#[derive(Debug)]
pub struct FaultLayer {
    inner: Arc<dyn Backend>,
    faults: Faults,
}

impl FaultLayer {
    /// Wraps `inner`, driven by `faults`.
    pub fn new(inner: Arc<dyn Backend>, faults: Faults) -> FaultLayer {
        FaultLayer { inner, faults }
    }

    async fn call<T, F>(&self, op: Operation, inner: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let state = self.faults.state();
        state.delay().await;
        let name = &self.inner.info().name;
        match state.take_request_fault() {
            None => inner.await,
            Some(Injected::LoseRequest) => Err(Error::new(
                ErrorKind::Unavailable,
                "injected fault: the request was lost before it reached the store",
            )
            .with_backend(name)
            .with_operation(op)),
            Some(Injected::LoseResponse) => {
                let _lost = inner.await;
                Err(Error::new(
                    ErrorKind::Timeout,
                    "injected fault: the store carried out the request, its response was lost",
                )
                .with_backend(name)
                .with_operation(op))
            }
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for FaultLayer {
    fn info(&self) -> &BackendInfo {
        self.inner.info()
    }
    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.call(Operation::Put, self.inner.put(record)).await
    }
    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.call(Operation::Get, self.inner.get(key)).await
    }
    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.call(Operation::List, self.inner.list(request)).await
    }
    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.call(Operation::Delete, self.inner.delete(key, version))
            .await
    }
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        self.call(Operation::PutBatch, self.inner.put_batch(records))
            .await
    }
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.call(Operation::Purge, self.inner.purge(key, up_to))
            .await
    }
    async fn health(&self) -> Result<()> {
        self.call(Operation::Health, self.inner.health()).await
    }
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        self.call(Operation::History, self.inner.history(request))
            .await
    }
    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        self.call(Operation::GetAsOf, self.inner.get_as_of(key, at))
            .await
    }

    async fn digest(
        &self,
        request: &mux_core::digest::DigestRequest,
    ) -> Result<Vec<mux_core::digest::DigestChunk>> {
        self.call(Operation::Digest, self.inner.digest(request))
            .await
    }
}
