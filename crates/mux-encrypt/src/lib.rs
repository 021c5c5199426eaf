//! # mux-encrypt
//!
//! Encryption at rest for mux. [`Envelope`] is a [`Sealer`](mux_core::seal::Sealer):
//! each live record's value is encrypted with AES-256-GCM (ring) under a fresh 256-bit
//! data key; the data key is wrapped by a key encryption key from a [`KeyProvider`] —
//! a [`Keyring`] file, or AWS KMS with the `kms` feature — and stored, with the key's id
//! and both nonces, in front of the ciphertext (see [`envelope`] for the layout). The
//! stored key, the version and the tombstone flag are authenticated as associated data:
//! a sealed value moved to another key or version fails to open as `Corrupt`.
//!
//! Two ways to use it:
//! - **per route**, in a `Mux`: `MuxBuilder::sealer(envelope)` and
//!   `RouteConfig::encrypt("name")` (muxd: `[[keys]]` and `encrypt = "name"` on a
//!   route). The coordinator seals once before the fan-out, so every replica, the intent
//!   log and the hints hold the same sealed bytes, and opens what reads return.
//! - **per store**, as a layer: [`Encrypt<B>`](Encrypt).
//!
//! Keys and metadata stay plain (routing, listing and digests need them): someone with
//! access to a store still learns keys, versions (so write times), tags, content types,
//! value sizes (within the fixed overhead) and which key encryption key sealed each
//! record. See ARCHITECTURE.md, "Threat model".
#![deny(missing_docs)]

pub mod envelope;
pub mod keyring;
#[cfg(feature = "kms")]
pub mod kms;
mod layer;
mod provider;
pub mod spec;

pub use envelope::{DATA_KEY_CACHE, Envelope};
pub use keyring::Keyring;
#[cfg(feature = "kms")]
pub use kms::KmsProvider;
pub use layer::Encrypt;
pub use provider::{Kek, KeyProvider};
pub use spec::KeysSpec;
