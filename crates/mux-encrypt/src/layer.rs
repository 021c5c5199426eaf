//! `Encrypt<B>`: one store's values sealed at rest, as a layer.
//!
//! The coordinator seals a route's values once for all its backends (`encrypt = "…"` on
//! the route); this layer is for a library user with one store, or a store shared
//! outside a `Mux`. Keys and metadata pass through plain.

use std::sync::Arc;

use mux_core::digest::{DigestChunk, DigestRequest};
use mux_core::seal::Sealer;
use mux_core::{
    AsOf, Backend, BackendInfo, HistoryPage, HistoryRequest, Key, ListPage, ListRequest,
    PutOutcome, Record, Result, Version,
};

/// A backend whose live values are sealed by a [`Sealer`] (e.g. [`Envelope`](crate::Envelope)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mux_core::Result<()> {
/// use std::sync::Arc;
/// use mux_core::{Backend, Key, MemoryBackend, Record, Version};
/// use mux_encrypt::{Encrypt, Envelope, Keyring};
///
/// let keys = Keyring::from_keys("k1", [("k1".to_owned(), [7u8; 32])])?;
/// let store = Encrypt::new(MemoryBackend::new("mem"), Arc::new(Envelope::new("k", Arc::new(keys))));
/// let key = Key::new("a")?;
/// store.put(&Record::new(key.clone(), "secret", Version::new(1, 0, 1))).await?;
/// assert_eq!(store.get(&key).await?.unwrap().value(), "secret".as_bytes());
/// assert_ne!(store.get_ref().get(&key).await?.unwrap().value(), "secret".as_bytes());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Encrypt<B> {
    inner: B,
    sealer: Arc<dyn Sealer>,
    info: BackendInfo,
}

impl<B: Backend> Encrypt<B> {
    /// Wraps `inner`; its largest value shrinks by the sealer's overhead.
    pub fn new(inner: B, sealer: Arc<dyn Sealer>) -> Encrypt<B> {
        let mut info = inner.info().clone();
        info.capability.max_value_size = info
            .capability
            .max_value_size
            .map(|m| m.saturating_sub(sealer.overhead()));
        Encrypt {
            inner,
            sealer,
            info,
        }
    }

    /// The wrapped backend (it holds sealed values).
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }

    async fn seal(&self, record: &Record) -> Result<Record> {
        match record.is_tombstone() {
            true => Ok(record.clone()),
            false => match self.sealer.try_seal(record.clone()) {
                Ok(sealed) => sealed,
                Err(record) => self.sealer.seal(record).await,
            },
        }
    }

    async fn open(&self, record: Option<Record>) -> Result<Option<Record>> {
        match record {
            Some(r) if !r.is_tombstone() => {
                let key = r.key().clone();
                match self.sealer.try_open(&key, r) {
                    Ok(opened) => opened.map(Some),
                    Err(r) => self.sealer.open(&key, r).await.map(Some),
                }
            }
            other => Ok(other),
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait::async_trait]
impl<B: Backend> Backend for Encrypt<B> {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info
            .check_value_size(record, mux_core::Operation::Put)?;
        self.inner.put(&self.seal(record).await?).await
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let record = self.inner.get(key).await?;
        self.open(record).await
    }

    /// Listed live entries report the plain size; their checksum stays the stored
    /// (sealed) value's: a listing never reads values.
    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let mut page = self.inner.list(request).await?;
        for e in &mut page.entries {
            if !e.meta.tombstone {
                e.size = self.sealer.listed_size(e.size);
            }
        }
        Ok(page)
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.inner.delete(key, version).await
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        let mut sealed = Vec::with_capacity(records.len());
        for r in records {
            self.info
                .check_value_size(r, mux_core::Operation::PutBatch)?;
            sealed.push(self.seal(r).await?);
        }
        self.inner.put_batch(&sealed).await
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.inner.purge(key, up_to).await
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        let mut page = self.inner.history(request).await?;
        let mut opened = Vec::with_capacity(page.entries.len());
        for entry in page.entries.drain(..) {
            opened.push(
                self.open(Some(entry))
                    .await?
                    .expect("a record opens to a record"),
            );
        }
        page.entries = opened;
        Ok(page)
    }

    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        let record = self.inner.get_as_of(key, at).await?;
        self.open(record).await
    }

    async fn digest(&self, request: &DigestRequest) -> Result<Vec<DigestChunk>> {
        self.inner.digest(request).await
    }
}
