//! Where key encryption keys come from.

use std::fmt;
use std::sync::Arc;

use mux_core::Result;
use ring::aead::LessSafeKey;

/// A key encryption key: wraps each record's data key.
pub struct Kek {
    id: String,
    wrapped: Vec<u8>,
    cipher: LessSafeKey,
}

impl Kek {
    /// A key encryption key `id` with its 32 bytes and the provider's wrapped form of
    /// them (stored in every record it seals; empty when the provider keeps the key
    /// itself, as a keyring does).
    pub fn new(id: impl Into<String>, key: &[u8; 32], wrapped: Vec<u8>) -> Kek {
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key)
            .expect("a 32-byte AES-256 key");
        Kek {
            id: id.into(),
            wrapped,
            cipher: LessSafeKey::new(unbound),
        }
    }

    /// Its id, stored in every record it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The provider's wrapped form of it.
    pub fn wrapped(&self) -> &[u8] {
        &self.wrapped
    }

    pub(crate) fn cipher(&self) -> &LessSafeKey {
        &self.cipher
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A source of key encryption keys: the current one for new writes, any earlier one
/// for reads. Implementations: [`Keyring`](crate::Keyring) (a local file) and, with the
/// `kms` feature, `KmsProvider` (AWS KMS).
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The key new writes are sealed with.
    async fn current(&self) -> Result<Arc<Kek>>;

    /// The key `id` whose wrapped form is `wrapped`, as a sealed value names it. An
    /// unknown or retired id is `PermissionDenied` (the data is intact, the key to
    /// read it is missing), naming the id.
    async fn kek(&self, id: &str, wrapped: &[u8]) -> Result<Arc<Kek>>;

    /// The current key when it is at hand without waiting (a keyring: always; KMS:
    /// while its data key is fresh). The default: never.
    fn current_ready(&self) -> Option<&Kek> {
        None
    }

    /// The key `id` when it is at hand without waiting, like
    /// [`current_ready`](KeyProvider::current_ready).
    fn kek_ready(&self, id: &str, wrapped: &[u8]) -> Option<&Kek> {
        let _ = (id, wrapped);
        None
    }

    /// The fixed width of its wrapped forms in a sealed value's header (shorter ones
    /// are padded): 0 when it keeps its keys itself. Keeping it fixed keeps the
    /// overhead of sealing a constant.
    fn wrapped_width(&self) -> usize;
}
