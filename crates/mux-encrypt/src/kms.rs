//! Key encryption keys from AWS KMS (feature `kms`).
//!
//! A KMS key never leaves KMS, and calling KMS for every record would put a network
//! round trip in every write and read. So the provider asks KMS for a data key
//! (`GenerateDataKey`, AES-256) and uses it as the key encryption key for
//! `data_key_ttl`; each record still gets its own fresh data key, wrapped by it, and
//! stores KMS's ciphertext blob of it in its header. A read sends that blob to KMS
//! (`Decrypt`) once and caches the answer, so revoking the KMS key stops reads of
//! anything not cached within the cache's lifetime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use mux_core::{Error, ErrorKind, Result};
use zeroize::Zeroize;

use crate::provider::{Kek, KeyProvider};

/// The field for KMS's ciphertext blob of a 32-byte data key (AWS KMS returns 184
/// bytes for a symmetric key).
const BLOB_WIDTH: usize = 256;
const MAX_ID_LEN: usize = crate::envelope::KEY_ID_WIDTH;

/// Key encryption keys from AWS KMS; see the [module docs](self).
#[derive(Debug)]
pub struct KmsProvider {
    client: aws_sdk_kms::Client,
    key_id: String,
    ttl: Duration,
    current: Mutex<Option<(Arc<Kek>, Instant)>>,
    opened: moka::sync::Cache<Vec<u8>, Arc<Kek>>,
}

fn failure<E>(
    err: aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> Error
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    mux_aws::map_sdk("KMS", err, |status, code| match code {
        Some("NotFoundException" | "DisabledException" | "KMSInvalidStateException") => {
            (ErrorKind::PermissionDenied, false)
        }
        Some("InvalidCiphertextException" | "IncorrectKeyException") => (ErrorKind::Corrupt, false),
        Some("KMSInternalException" | "DependencyTimeoutException") => {
            (ErrorKind::Unavailable, true)
        }
        _ => mux_aws::classify(status, code),
    })
    .error
}

impl KmsProvider {
    /// A provider for the KMS key `key_id` (id, ARN or `alias/…`) through `client`;
    /// a data key serves as key encryption key for `ttl`.
    pub fn new(
        client: aws_sdk_kms::Client,
        key_id: impl Into<String>,
        ttl: Duration,
    ) -> KmsProvider {
        KmsProvider {
            client,
            key_id: key_id.into(),
            ttl,
            current: Mutex::new(None),
            opened: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl.max(Duration::from_secs(1)) * 2)
                .build(),
        }
    }

    /// Connects with the shared AWS settings (region, endpoint, credentials).
    pub async fn connect(
        connection: &mux_aws::Connection,
        key_id: &str,
        ttl: Duration,
    ) -> Result<KmsProvider> {
        let shared = connection.load().await?;
        Ok(KmsProvider::new(
            aws_sdk_kms::Client::new(&shared),
            key_id,
            ttl,
        ))
    }

    fn kek_from(id: &str, plaintext: Option<Blob>, wrapped: Vec<u8>) -> Result<Arc<Kek>> {
        let mut bytes = plaintext.map(Blob::into_inner).unwrap_or_default();
        let key: Result<[u8; 32]> = bytes.as_slice().try_into().map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                format!(
                    "KMS returned a {}-byte data key for {id}, not 32",
                    bytes.len()
                ),
            )
        });
        bytes.zeroize();
        let mut key = key?;
        let kek = Arc::new(Kek::new(id, &key, wrapped));
        key.zeroize();
        Ok(kek)
    }
}

#[async_trait::async_trait]
impl KeyProvider for KmsProvider {
    async fn current(&self) -> Result<Arc<Kek>> {
        if let Some((kek, made)) = &*self.current.lock().expect("not poisoned")
            && made.elapsed() < self.ttl
        {
            return Ok(kek.clone());
        }
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|e| {
                failure(e).context(format!("KMS GenerateDataKey with key {}", self.key_id))
            })?;
        let id = out.key_id().unwrap_or(&self.key_id).to_owned();
        if id.len() > MAX_ID_LEN {
            return Err(Error::invalid_input(format!(
                "KMS key id {id} is longer than {MAX_ID_LEN} bytes; use the key's id or alias"
            )));
        }
        let wrapped = out
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        if wrapped.is_empty() || wrapped.len() > BLOB_WIDTH {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "KMS returned a {}-byte ciphertext blob for {id}",
                    wrapped.len()
                ),
            ));
        }
        let kek = Self::kek_from(&id, out.plaintext, wrapped.clone())?;
        self.opened.insert(wrapped, kek.clone());
        *self.current.lock().expect("not poisoned") = Some((kek.clone(), Instant::now()));
        Ok(kek)
    }

    async fn kek(&self, id: &str, wrapped: &[u8]) -> Result<Arc<Kek>> {
        if let Some(kek) = self.opened.get(wrapped) {
            return Ok(kek);
        }
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .key_id(id)
            .send()
            .await
            .map_err(|e| failure(e).context(format!("KMS Decrypt of a data key of {id}")))?;
        let kek = Self::kek_from(id, out.plaintext, wrapped.to_vec())?;
        self.opened.insert(wrapped.to_vec(), kek.clone());
        Ok(kek)
    }

    fn wrapped_width(&self) -> usize {
        BLOB_WIDTH
    }
}
