//! The envelope: a record's value encrypted under a fresh data key, the data key wrapped
//! by a key encryption key, both bound to the record's key, version and tombstone flag.
//!
//! # Layout of a sealed value (what the store keeps)
//!
//! ```text
//! "MXE1"                       4 bytes, the format
//! key id length                1 byte (1–96)
//! key id                       the key encryption key's id (UTF-8), zero-padded to 96 bytes
//! wrapped KEK width            2 bytes, big-endian: the provider's fixed width W (0 for a keyring)
//! wrapped KEK length           2 bytes, big-endian (at most W)
//! wrapped KEK                  the provider's wrapped form of the KEK (KMS's ciphertext
//!                              blob), zero-padded to W bytes
//! DEK nonce                    12 bytes
//! wrapped DEK                  48 bytes: the 32-byte data key under the KEK, AES-256-GCM, + tag
//! value nonce                  12 bytes
//! ciphertext + tag             the value under the data key, AES-256-GCM, + 16-byte tag
//! ```
//!
//! Both AES-256-GCM operations take the same associated data: `"mux-enc/1"`, the stored
//! key's length (2 bytes) and bytes, the version's 16-byte binary form and the tombstone
//! flag. A sealed value copied to another key or version fails to open (`Corrupt`),
//! and so does any altered byte.
//!
//! The header has a fixed size per provider (193 bytes + W: 193 with a keyring), so a
//! listing, which never reads values, can still report each value's plain size.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use mux_core::seal::Sealer;
use mux_core::{Error, ErrorKind, Key, Record, Result, Version};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
use zeroize::Zeroize;

use crate::provider::{Kek, KeyProvider};

/// The first bytes of every sealed value.
pub const MAGIC: &[u8; 4] = b"MXE1";
const TAG_LEN: usize = 16;
const DEK_LEN: usize = 32;
const WRAPPED_DEK_LEN: usize = DEK_LEN + TAG_LEN;
const AAD_DOMAIN: &[u8] = b"mux-enc/1";
/// The width of the key id field: the longest key id a provider may hand out.
pub const KEY_ID_WIDTH: usize = 96;

/// Envelope encryption of a route's values: a [`Sealer`] over a [`KeyProvider`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mux_core::Result<()> {
/// use std::sync::Arc;
/// use mux_core::seal::Sealer;
/// use mux_core::{Key, Record, Version};
/// use mux_encrypt::{Envelope, Keyring};
///
/// let keys = Keyring::from_keys("k1", [("k1".to_owned(), [7u8; 32])])?;
/// let envelope = Envelope::new("secrets", Arc::new(keys));
/// let key = Key::new("tenantconfig/acme/db-password")?;
/// let record = Record::new(key.clone(), "hunter2", Version::new(1, 0, 1));
/// let sealed = envelope.seal(record.clone()).await?;
/// assert!(!sealed.value().windows(7).any(|w| w == b"hunter2"));
/// assert_eq!(envelope.open(&key, sealed).await?, record);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Envelope {
    name: String,
    provider: Arc<dyn KeyProvider>,
    accept_plaintext: bool,
    data_keys: DataKeys,
}

/// How many opened data keys an envelope keeps by default (see
/// [`Envelope::data_key_cache`]).
pub const DATA_KEY_CACHE: usize = 4096;

/// The data keys of recently opened values, unwrapped and ready to decrypt, by the
/// exact header bytes they were read from. Unwrapping a data key and expanding it
/// (an AES-GCM open under the key encryption key, an AES key schedule, GHASH tables)
/// is most of the cost of a read that is not the decryption itself.
///
/// A hit skips only the unwrap: the value is still decrypted and authenticated with
/// the record's key, version and tombstone flag as associated data, so a value moved
/// to another key or version still fails; any changed header byte misses; and the key
/// encryption key must still be available from the provider.
struct DataKeys(Option<quick_cache::sync::Cache<Box<[u8]>, Arc<LessSafeKey>>>);

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(c) => write!(f, "DataKeys({} of {})", c.len(), c.capacity()),
            None => f.write_str("DataKeys(off)"),
        }
    }
}

impl DataKeys {
    fn new(capacity: usize) -> DataKeys {
        DataKeys((capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)))
    }
}

impl Envelope {
    /// Seals with `provider`'s current key; routes name it `name`.
    pub fn new(name: impl Into<String>, provider: Arc<dyn KeyProvider>) -> Envelope {
        Envelope {
            name: name.into(),
            provider,
            accept_plaintext: false,
            data_keys: DataKeys::new(DATA_KEY_CACHE),
        }
    }

    /// Keeps the unwrapped data keys of up to `entries` recently read values in
    /// memory ([`DATA_KEY_CACHE`] by default; 0 turns it off), so reading them again
    /// skips unwrapping their data key. A cached key costs about 700 bytes. It holds
    /// nothing the key encryption key, which is in memory too, does not already give.
    pub fn data_key_cache(mut self, entries: usize) -> Envelope {
        self.data_keys = DataKeys::new(entries);
        self
    }

    /// Opens values that were never sealed as they are, instead of refusing them as
    /// `Corrupt` — only while a route that held plain values is being migrated (`mux
    /// rekey` then seals them). Anyone who can write to the store can then plant a
    /// value that reads back as genuine, so turn it off once the migration is done.
    pub fn accept_plaintext(mut self, accept: bool) -> Envelope {
        self.accept_plaintext = accept;
        self
    }

    /// The key provider.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// The id of the key encryption key a stored value was sealed with (`None` when the
    /// value is not sealed).
    pub fn key_id_of(value: &[u8]) -> Option<&str> {
        Header::parse(value).ok().map(|h| h.key_id)
    }
}

/// The associated data of both encryptions, on the stack (keys are at most 1,024
/// bytes).
struct AadBuf {
    bytes: [u8; AAD_DOMAIN.len() + 2 + mux_core::MAX_KEY_LEN + 17],
    len: usize,
}

impl AadBuf {
    fn new(key: &Key, version: Version, tombstone: bool) -> AadBuf {
        let k = key.as_str().as_bytes();
        let mut a = AadBuf {
            bytes: [0; AAD_DOMAIN.len() + 2 + mux_core::MAX_KEY_LEN + 17],
            len: 0,
        };
        for part in [
            AAD_DOMAIN,
            &(k.len() as u16).to_be_bytes(),
            k,
            &version.to_bytes(),
            &[u8::from(tombstone)],
        ] {
            a.bytes[a.len..a.len + part.len()].copy_from_slice(part);
            a.len += part.len();
        }
        a
    }

    fn aad(&self) -> Aad<&[u8]> {
        Aad::from(&self.bytes[..self.len])
    }
}

fn cipher(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

/// Whether every byte is zero (an OR over all of them, which the compiler vectorises;
/// an early-exit search was 4% of a read in perf).
fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, &b| acc | b) == 0
}

/// The parsed front of a sealed value.
struct Header<'a> {
    key_id: &'a str,
    wrapped_kek: &'a [u8],
    dek_nonce: [u8; NONCE_LEN],
    wrapped_dek: [u8; WRAPPED_DEK_LEN],
    nonce: [u8; NONCE_LEN],
    body: usize,
}

impl<'a> Header<'a> {
    fn parse(v: &'a [u8]) -> std::result::Result<Header<'a>, &'static str> {
        let short = "it ends in its header";
        let rest = v.strip_prefix(MAGIC).ok_or("it does not start with MXE1")?;
        let (&id_len, rest) = rest.split_first().ok_or(short)?;
        let id_len = usize::from(id_len);
        if id_len == 0 || id_len > KEY_ID_WIDTH {
            return Err("its key id length is out of range");
        }
        if rest.len() < KEY_ID_WIDTH + 4 {
            return Err(short);
        }
        let key_id = std::str::from_utf8(&rest[..id_len]).map_err(|_| "its key id is not UTF-8")?;
        // Padding is not covered by the tags: it must be zero, so no byte of a sealed
        // value can change unnoticed.
        if !all_zero(&rest[id_len..KEY_ID_WIDTH]) {
            return Err("its key id padding is not zero");
        }
        let rest = &rest[KEY_ID_WIDTH..];
        let width = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let kek_len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if kek_len > width {
            return Err("its wrapped key is longer than its field");
        }
        let rest = &rest[4..];
        let fixed = width + NONCE_LEN + WRAPPED_DEK_LEN + NONCE_LEN;
        if rest.len() < fixed + TAG_LEN {
            return Err(short);
        }
        let (wrapped_kek, rest) = rest.split_at(width);
        if !all_zero(&wrapped_kek[kek_len..]) {
            return Err("its wrapped key padding is not zero");
        }
        let (dek_nonce, rest) = rest.split_at(NONCE_LEN);
        let (wrapped_dek, rest) = rest.split_at(WRAPPED_DEK_LEN);
        let nonce = &rest[..NONCE_LEN];
        Ok(Header {
            key_id,
            wrapped_kek: &wrapped_kek[..kek_len],
            dek_nonce: dek_nonce.try_into().expect("split at its length"),
            wrapped_dek: wrapped_dek.try_into().expect("split at its length"),
            nonce: nonce.try_into().expect("split at its length"),
            body: v.len() - (rest.len() - NONCE_LEN),
        })
    }
}

/// The bytes sealing adds to a value whose provider wraps keys in `width` bytes.
const fn overhead(width: usize) -> usize {
    MAGIC.len() + 1 + KEY_ID_WIDTH + 4 + width + NONCE_LEN * 2 + WRAPPED_DEK_LEN + TAG_LEN
}

fn corrupt(key: &Key, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("record {key}: its encrypted value {what}"),
    )
}

/// Seals `value` for `key` at `version` under `kek`, whose wrapped form is padded to
/// `width` bytes.
pub(crate) fn seal_value(
    kek: &Kek,
    width: usize,
    key: &Key,
    version: Version,
    value: &[u8],
) -> Bytes {
    let aad = AadBuf::new(key, version, false);
    // 32 bytes of data key and two nonces, from the thread's CSPRNG (ChaCha, seeded
    // and reseeded by the operating system).
    let mut random = [0u8; DEK_LEN + 2 * NONCE_LEN];
    rand::rng().fill_bytes(&mut random);
    let (dek, nonces) = random.split_at(DEK_LEN);
    let (dek_nonce, nonce) = nonces.split_at(NONCE_LEN);
    let dek_nonce: [u8; NONCE_LEN] = dek_nonce.try_into().expect("split at its length");
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at its length");

    let mut wrapped_dek = [0u8; WRAPPED_DEK_LEN];
    wrapped_dek[..DEK_LEN].copy_from_slice(dek);
    let tag = kek
        .cipher()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(dek_nonce),
            aad.aad(),
            &mut wrapped_dek[..DEK_LEN],
        )
        .expect("AES-GCM seals 32 bytes");
    wrapped_dek[DEK_LEN..].copy_from_slice(tag.as_ref());

    let id = kek.id().as_bytes();
    let wrapped_kek = kek.wrapped();
    let header = overhead(width) - TAG_LEN;
    let mut out = BytesMut::with_capacity(header + value.len() + TAG_LEN);
    out.put_slice(MAGIC);
    out.put_u8(id.len() as u8);
    out.put_slice(id);
    out.put_bytes(0, KEY_ID_WIDTH - id.len());
    out.put_u16(width as u16);
    out.put_u16(wrapped_kek.len() as u16);
    out.put_slice(wrapped_kek);
    out.put_bytes(0, width - wrapped_kek.len());
    out.put_slice(&dek_nonce);
    out.put_slice(&wrapped_dek);
    out.put_slice(&nonce);
    out.put_slice(value);
    let tag = cipher(dek)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            aad.aad(),
            &mut out[header..],
        )
        .expect("AES-GCM seals any value mux allows");
    out.put_slice(tag.as_ref());
    random.zeroize();
    out.freeze()
}

#[async_trait::async_trait]
impl Sealer for Envelope {
    fn name(&self) -> &str {
        &self.name
    }

    fn overhead(&self) -> usize {
        overhead(self.provider.wrapped_width())
    }

    fn listed_size(&self, stored: u64) -> u64 {
        stored.saturating_sub(self.overhead() as u64)
    }

    fn key_id(&self, value: &[u8]) -> Option<String> {
        Envelope::key_id_of(value).map(str::to_owned)
    }

    async fn needs_reseal(&self, value: &[u8]) -> Result<bool> {
        let current = self.provider.current().await?;
        Ok(Envelope::key_id_of(value) != Some(current.id()))
    }

    fn try_seal(&self, record: Record) -> std::result::Result<Result<Record>, Record> {
        match self.provider.current_ready() {
            Some(kek) => Ok(self.seal_with(kek, record)),
            None => Err(record),
        }
    }

    async fn seal(&self, record: Record) -> Result<Record> {
        let kek = self.provider.current().await?;
        self.seal_with(&kek, record)
    }

    fn try_open(
        &self,
        stored: &Key,
        record: Record,
    ) -> std::result::Result<Result<Record>, Record> {
        let opened = match Header::parse(record.value()) {
            Ok(h) => match self.provider.kek_ready(h.key_id, h.wrapped_kek) {
                Some(kek) => self.open_parsed(kek, &h, stored, &record),
                None => return Err(record),
            },
            Err(why) => return Ok(self.unsealed(stored, record, why)),
        };
        Ok(opened.map(|v| record.with_value(v)))
    }

    async fn open(&self, stored: &Key, record: Record) -> Result<Record> {
        let header = match Header::parse(record.value()) {
            Ok(h) => h,
            Err(why) => return self.unsealed(stored, record, why),
        };
        let kek = self
            .provider
            .kek(header.key_id, header.wrapped_kek)
            .await
            .map_err(|e| e.context(format!("record {stored}: its key encryption key")))?;
        let value = self.open_parsed(&kek, &header, stored, &record)?;
        Ok(record.with_value(value))
    }
}

impl Envelope {
    fn seal_with(&self, kek: &Kek, record: Record) -> Result<Record> {
        let width = self.provider.wrapped_width();
        if kek.id().is_empty() || kek.id().len() > KEY_ID_WIDTH || kek.wrapped().len() > width {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "key \"{}\" does not fit the envelope: ids are 1 to {KEY_ID_WIDTH} bytes and its provider's wrapped keys at most {width}",
                    kek.id()
                ),
            ));
        }
        let sealed = seal_value(kek, width, record.key(), record.version(), record.value());
        Ok(record.with_value(sealed))
    }

    /// A value without a readable envelope: refused as `Corrupt`, or passed through
    /// while migrating a route that held plain values.
    fn unsealed(&self, stored: &Key, record: Record, why: &str) -> Result<Record> {
        if self.accept_plaintext && !record.value().starts_with(MAGIC) {
            return Ok(record);
        }
        Err(corrupt(stored, format_args!("cannot be read: {why}")))
    }
}

impl Envelope {
    /// The plain value of `record` (read under `stored`), whose parsed `header` names
    /// `kek`.
    fn open_parsed(
        &self,
        kek: &Kek,
        header: &Header<'_>,
        stored: &Key,
        record: &Record,
    ) -> Result<Vec<u8>> {
        let value = record.value();
        let aad = AadBuf::new(stored, record.version(), record.is_tombstone());
        let head = &value[..header.body];
        let cached = self.data_keys.0.as_ref().and_then(|c| c.get(head));
        let dek = match cached {
            Some(dek) => dek,
            None => {
                let dek = Arc::new(unwrap_dek(kek, header, &aad, stored)?);
                if let Some(cache) = &self.data_keys.0 {
                    cache.insert(head.into(), dek.clone());
                }
                dek
            }
        };
        // The plain value is exactly as long as the ciphertext: decrypted in a buffer of
        // that size, it becomes the record's `Bytes` without another allocation.
        let (ciphertext, tag) = value[header.body..].split_at(value.len() - header.body - TAG_LEN);
        let tag = Tag::try_from(tag).expect("split at its length");
        let mut plain = ciphertext.to_vec();
        dek.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(header.nonce),
            aad.aad(),
            tag,
            &mut plain,
            0..,
        )
        .map_err(|_| {
            corrupt(
                stored,
                "does not decrypt (altered, or moved from another key or version)",
            )
        })?;
        Ok(plain)
    }
}

/// The data key of a sealed value, unwrapped with `kek` and ready to decrypt.
fn unwrap_dek(kek: &Kek, header: &Header<'_>, aad: &AadBuf, stored: &Key) -> Result<LessSafeKey> {
    let mut dek = header.wrapped_dek;
    let opened = kek.cipher().open_in_place(
        Nonce::assume_unique_for_key(header.dek_nonce),
        aad.aad(),
        &mut dek,
    );
    if opened.is_err() {
        dek.zeroize();
        return Err(corrupt(
            stored,
            format_args!(
                "does not open with key \"{}\" (altered, or moved from another key or version)",
                header.key_id
            ),
        ));
    }
    let cipher = cipher(&dek[..DEK_LEN]);
    dek.zeroize();
    Ok(cipher)
}

#[cfg(test)]
mod tests;
