//! A keyring file: key encryption keys kept locally, for the embedded default and tests.
//!
//! ```toml
//! # chmod 600: a keyring readable by group or others is refused
//! current = "2026-12"
//! [keys]
//! "2026-11" = "base64 of 32 random bytes"
//! "2026-12" = "base64 of 32 random bytes"
//! ```
//!
//! Rotation: add a key, make it `current`, reload; older keys keep opening what they
//! sealed until `mux rekey` has re-sealed it and the key is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mux_core::{Error, ErrorKind, Result};
use serde::Deserialize;
use zeroize::Zeroize;

use crate::provider::{Kek, KeyProvider};

/// The longest key id a keyring accepts.
pub const MAX_KEY_ID_LEN: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    current: String,
    keys: BTreeMap<String, String>,
}

/// Key encryption keys from a local file; see the [module docs](self).
#[derive(Debug)]
pub struct Keyring {
    source: Option<PathBuf>,
    current: Arc<Kek>,
    keys: BTreeMap<String, Arc<Kek>>,
}

fn invalid(source: &str, what: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("keyring {source}: {what}"))
}

impl Keyring {
    /// Reads a keyring file. Refuses a file group or others can read or write (the
    /// error says `chmod 600`), a missing `current` key, a key that is not 32 bytes of
    /// base64 and an id that is empty, longer than 64 bytes or not printable ASCII.
    pub fn open(path: impl AsRef<Path>) -> Result<Keyring> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("keyring {shown}: cannot read it: {e}"),
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(invalid(
                    &shown,
                    format!(
                        "its mode is {mode:04o}: group and others can reach its keys; run `chmod 600 {shown}`"
                    ),
                ));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let mut text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("keyring {shown}: cannot read it: {e}"),
            )
        })?;
        let parsed: std::result::Result<KeyringFile, _> = toml::from_str(&text);
        text.zeroize();
        let file =
            parsed.map_err(|e| invalid(&shown, format!("not a keyring: {}", e.message())))?;
        let mut keys = Vec::new();
        for (id, encoded) in file.keys {
            let mut bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|e| invalid(&shown, format!("key \"{id}\" is not base64: {e}")))?;
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                invalid(
                    &shown,
                    format!(
                        "key \"{id}\" is {} bytes; AES-256 keys are 32 (make one with `head -c 32 /dev/urandom | base64`)",
                        bytes.len()
                    ),
                )
            })?;
            bytes.zeroize();
            keys.push((id, key));
        }
        let mut ring = Keyring::build(&shown, &file.current, keys)?;
        ring.source = Some(path.to_owned());
        Ok(ring)
    }

    /// A keyring from keys in memory (tests, embedding); `current` must be one of them.
    pub fn from_keys(
        current: &str,
        keys: impl IntoIterator<Item = (String, [u8; 32])>,
    ) -> Result<Keyring> {
        Keyring::build("(in memory)", current, keys.into_iter().collect())
    }

    fn build(source: &str, current: &str, keys: Vec<(String, [u8; 32])>) -> Result<Keyring> {
        let mut map = BTreeMap::new();
        for (id, mut key) in keys {
            if id.is_empty()
                || id.len() > MAX_KEY_ID_LEN
                || !id.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(invalid(
                    source,
                    format!(
                        "key id \"{}\" must be 1 to {MAX_KEY_ID_LEN} printable ASCII characters",
                        id.escape_debug()
                    ),
                ));
            }
            map.insert(id.clone(), Arc::new(Kek::new(id, &key, Vec::new())));
            key.zeroize();
        }
        let Some(current) = map.get(current).cloned() else {
            let known: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(invalid(
                source,
                format!(
                    "current = \"{current}\" is not one of its keys ({})",
                    if known.is_empty() {
                        "it has none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        Ok(Keyring {
            source: None,
            current,
            keys: map,
        })
    }

    /// The ids it holds.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

#[async_trait::async_trait]
impl KeyProvider for Keyring {
    async fn current(&self) -> Result<Arc<Kek>> {
        Ok(self.current.clone())
    }

    async fn kek(&self, id: &str, _wrapped: &[u8]) -> Result<Arc<Kek>> {
        self.keys.get(id).cloned().ok_or_else(|| {
            let source = self
                .source
                .as_ref()
                .map_or_else(|| "(in memory)".to_owned(), |p| p.display().to_string());
            Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "key \"{}\" is not in keyring {source} (retired too early? put it back until `mux rekey` has re-sealed its records)",
                    id.escape_debug()
                ),
            )
        })
    }

    fn current_ready(&self) -> Option<&Kek> {
        Some(&self.current)
    }

    fn kek_ready(&self, id: &str, _wrapped: &[u8]) -> Option<&Kek> {
        self.keys.get(id).map(|k| &**k)
    }

    fn wrapped_width(&self) -> usize {
        0
    }
}
