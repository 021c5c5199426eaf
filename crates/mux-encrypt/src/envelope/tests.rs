use std::sync::Arc;

use mux_core::seal::Sealer;
use mux_core::{ErrorKind, Key, Record, Version};

use super::Envelope;
use crate::Keyring;

fn ring(current: &str) -> Arc<Keyring> {
    Arc::new(
        Keyring::from_keys(
            current,
            [("old".to_owned(), [1u8; 32]), ("new".to_owned(), [2u8; 32])],
        )
        .unwrap(),
    )
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn record(k: &str, value: &str, v: u64) -> Record {
    Record::new(key(k), value.to_owned(), Version::new(v, 0, 1))
        .with_content_type("text/plain")
        .with_tag("class", "pii")
}

#[tokio::test]
async fn a_sealed_value_opens_to_the_record_and_hides_the_plaintext() {
    let env = Envelope::new("k", ring("new"));
    let r = record("a/b", "the plaintext secret", 5);
    let sealed = env.seal(r.clone()).await.unwrap();
    assert_eq!(sealed.meta().version, r.meta().version);
    assert_eq!(sealed.meta().tags, r.meta().tags);
    assert!(sealed.value().starts_with(b"MXE1"));
    assert!(!sealed.value().windows(9).any(|w| w == b"plaintext"));
    assert!(sealed.value().len() <= r.value().len() + env.overhead());
    assert_eq!(Envelope::key_id_of(sealed.value()), Some("new"));
    let opened = env.open(&key("a/b"), sealed.clone()).await.unwrap();
    assert_eq!(opened, r);
    // A fresh data key and nonces every time: the same record seals differently.
    let again = env.seal(r).await.unwrap();
    assert_ne!(again.value(), sealed.value());
}

#[tokio::test]
async fn a_value_moved_to_another_key_or_version_or_altered_is_corrupt() {
    // With the data key cache off, and on with both values opened once before, so the
    // checks below meet their data keys cached.
    for warm in [false, true] {
        let env = Envelope::new("k", ring("new")).data_key_cache(if warm { 16 } else { 0 });
        moved_or_altered_is_corrupt(&env, warm).await;
    }
}

async fn moved_or_altered_is_corrupt(env: &Envelope, warm: bool) {
    let a = env.seal(record("a", "value of a", 5)).await.unwrap();
    let b = env.seal(record("b", "value of b", 5)).await.unwrap();
    if warm {
        env.open(&key("a"), a.clone()).await.unwrap();
        env.open(&key("b"), b.clone()).await.unwrap();
        assert_eq!(env.data_keys.0.as_ref().unwrap().len(), 2);
    }
    // Swap the two ciphertexts between the keys.
    let a_under_b = b.clone().with_value(a.value().clone());
    let e = env.open(&key("b"), a_under_b).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("record b"), "{e}");
    let b_under_a = a.clone().with_value(b.value().clone());
    assert_eq!(
        env.open(&key("a"), b_under_a).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    // The same value replayed at another version.
    let moved = a.clone().with_version(Version::new(6, 0, 1));
    assert_eq!(
        env.open(&key("a"), moved).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    // Any altered byte: header, wrapped key, ciphertext, tag.
    for at in [5, 20, 60, a.value().len() - 20, a.value().len() - 1] {
        let mut bytes = a.value().to_vec();
        bytes[at] ^= 0x40;
        let altered = a.clone().with_value(bytes);
        let e = env.open(&key("a"), altered).await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::PermissionDenied),
            "byte {at}: {e}"
        );
    }
    // Truncated anywhere.
    for len in [0, 3, 4, 10, 40, a.value().len() - 1] {
        let cut = a.clone().with_value(a.value().slice(..len));
        assert_eq!(
            env.open(&key("a"), cut).await.unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
}

#[tokio::test]
async fn rotation_keeps_old_values_readable_and_seals_new_ones_with_the_new_key() {
    let before = Envelope::new("k", ring("old"));
    let sealed_old = before.seal(record("a", "v1", 1)).await.unwrap();
    assert_eq!(Envelope::key_id_of(sealed_old.value()), Some("old"));
    let after = Envelope::new("k", ring("new"));
    let sealed_new = after.seal(record("a", "v2", 2)).await.unwrap();
    assert_eq!(Envelope::key_id_of(sealed_new.value()), Some("new"));
    assert_eq!(
        after
            .open(&key("a"), sealed_old.clone())
            .await
            .unwrap()
            .value(),
        "v1".as_bytes()
    );
    // The old key removed from the keyring: its values no longer open, and the error
    // names the key instead of calling the data corrupt.
    let retired = Envelope::new(
        "k",
        Arc::new(Keyring::from_keys("new", [("new".to_owned(), [2u8; 32])]).unwrap()),
    );
    let e = retired.open(&key("a"), sealed_old).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("\"old\""), "{e}");
}

#[tokio::test]
async fn plain_values_are_refused_unless_a_migration_accepts_them() {
    let plain = record("a", "never sealed", 1);
    let strict = Envelope::new("k", ring("new"));
    let e = strict.open(&key("a"), plain.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    let migrating = Envelope::new("k", ring("new")).accept_plaintext(true);
    assert_eq!(
        migrating.open(&key("a"), plain.clone()).await.unwrap(),
        plain
    );
    // A value that claims to be sealed still has to open.
    let fake = plain.with_value(&b"MXE1 not really"[..]);
    assert_eq!(
        migrating.open(&key("a"), fake).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

#[tokio::test]
async fn an_empty_value_seals_and_opens() {
    let env = Envelope::new("k", ring("new"));
    let r = record("a", "", 1);
    let sealed = env.seal(r.clone()).await.unwrap();
    assert_eq!(env.open(&key("a"), sealed).await.unwrap(), r);
}

#[tokio::test]
async fn a_cached_data_key_opens_the_same_value_and_needs_its_key_encryption_key() {
    let env = Envelope::new("k", ring("old"));
    let r = record("a/b", "cached", 3);
    let sealed = env.seal(r.clone()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(env.open(&key("a/b"), sealed.clone()).await.unwrap(), r);
    }
    assert_eq!(env.data_keys.0.as_ref().unwrap().len(), 1);
    // The same cache, but a provider that no longer has the key: refused, not served
    // from the cache.
    let without_old = Arc::new(Keyring::from_keys("new", [("new".to_owned(), [2u8; 32])]).unwrap());
    let moved = Envelope {
        provider: without_old,
        ..env
    };
    let e = moved.open(&key("a/b"), sealed).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
}
