//! Re-sealing after a rotation (`Mux::reseal`): every record of the prefix ends up
//! under the current key, a dry run counts records per key (the retirement check), a
//! write newer than the one re-sealed is never overwritten, and plain values of a route
//! being migrated get sealed.

use std::sync::Arc;

use mux_core::{
    Backend, BackendExt, Key, ListRequest, MemoryBackend, Mux, Prefix, ReadOptions, Role,
    RouteConfig, Tenant, WriteOptions,
};
use mux_encrypt::{Envelope, Keyring};

fn ring(current: &str) -> Arc<Keyring> {
    Arc::new(
        Keyring::from_keys(
            current,
            [("k1".to_owned(), [1u8; 32]), ("k2".to_owned(), [2u8; 32])],
        )
        .unwrap(),
    )
}

fn mux(store: &Arc<MemoryBackend>, envelope: Envelope) -> Mux {
    Mux::builder()
        .backend(store.clone())
        .sealer(Arc::new(envelope))
        .route(
            RouteConfig::new("secrets/")
                .backend("mem", Role::Primary)
                .encrypt("keys"),
        )
        .default_route(RouteConfig::new("").backend("mem", Role::Primary))
        .build()
        .unwrap()
}

async fn reseal_all(
    mux: &Mux,
    prefix: &str,
    options: &ReadOptions,
    dry_run: bool,
) -> (u64, u64, std::collections::BTreeMap<String, u64>) {
    let mut request = ListRequest::new(Prefix::new(prefix).unwrap()).with_limit(3);
    let (mut scanned, mut resealed, mut by_key) = (0, 0, std::collections::BTreeMap::new());
    loop {
        let page = mux.reseal(&request, options, dry_run).await.unwrap();
        assert_eq!(page.failed, 0, "{:?}", page.errors);
        scanned += page.scanned;
        resealed += page.resealed;
        for (k, n) in page.by_key {
            *by_key.entry(k).or_insert(0) += n;
        }
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => return (scanned, resealed, by_key),
        }
    }
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

#[tokio::test]
async fn rekey_moves_every_record_to_the_current_key() {
    let store = Arc::new(MemoryBackend::new("mem"));
    let old = mux(&store, Envelope::new("keys", ring("k1")));
    let acme = ReadOptions {
        tenant: Some(Tenant::new("acme").unwrap()),
        ..Default::default()
    };
    for i in 0..10 {
        old.put(key(&format!("secrets/{i}")), format!("value {i}"))
            .await
            .unwrap();
    }
    old.write(
        key("secrets/t"),
        "tenant value",
        &WriteOptions {
            tenant: acme.tenant.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    old.put(key("public/x"), "plain").await.unwrap();

    let new = mux(&store, Envelope::new("keys", ring("k2")));
    // Another process on the same node id: its clock must not lag what the stores hold
    // (muxd's reload keeps its clock; a restart starts from the wall clock).
    for e in store.list_all(&Prefix::all()).await.unwrap() {
        new.clock().observe(e.meta.version);
    }
    // The retirement check: everything still needs k1.
    let (scanned, resealed, by_key) =
        reseal_all(&new, "secrets", &ReadOptions::default(), true).await;
    assert_eq!((scanned, resealed), (10, 0));
    assert_eq!(by_key.get("k1"), Some(&10));

    // A write made after the rotation is already under k2, and stays as written.
    new.put(key("secrets/3"), "newer").await.unwrap();
    let (_, resealed, _) = reseal_all(&new, "secrets", &ReadOptions::default(), false).await;
    assert_eq!(resealed, 9);
    let (_, resealed, _) = reseal_all(&new, "secrets", &acme, false).await;
    assert_eq!(resealed, 1);
    let (scanned, resealed, by_key) =
        reseal_all(&new, "secrets", &ReadOptions::default(), false).await;
    assert_eq!(
        (scanned, resealed),
        (10, 0),
        "a second run has nothing to do"
    );
    assert_eq!(by_key.get("k1"), None);
    assert_eq!(by_key.get("k2"), Some(&10));

    // Values and the newer write are intact; with only k2 in the keyring, all open.
    let k2_only = Arc::new(Keyring::from_keys("k2", [("k2".to_owned(), [2u8; 32])]).unwrap());
    let retired = mux(&store, Envelope::new("keys", k2_only));
    for i in 0..10 {
        let want = if i == 3 {
            "newer".to_owned()
        } else {
            format!("value {i}")
        };
        let got = retired
            .get(&key(&format!("secrets/{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.value(), want.as_bytes());
    }
    let t = retired
        .get_with(&key("secrets/t"), &acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.value(), "tenant value".as_bytes());
    // The unencrypted route was left alone.
    assert_eq!(
        store.get(&key("public/x")).await.unwrap().unwrap().value(),
        "plain".as_bytes()
    );
}

#[tokio::test]
async fn a_migrating_route_gets_its_plain_values_sealed() {
    let store = Arc::new(MemoryBackend::new("mem"));
    let plain = Mux::builder()
        .backend(store.clone())
        .default_route(RouteConfig::new("").backend("mem", Role::Primary))
        .build()
        .unwrap();
    for i in 0..4 {
        plain
            .put(key(&format!("secrets/{i}")), format!("v{i}"))
            .await
            .unwrap();
    }
    let migrating = mux(
        &store,
        Envelope::new("keys", ring("k1")).accept_plaintext(true),
    );
    let (_, _, by_key) = reseal_all(&migrating, "secrets", &ReadOptions::default(), true).await;
    assert_eq!(by_key.get(""), Some(&4), "plain values count under \"\"");
    let (_, resealed, _) = reseal_all(&migrating, "secrets", &ReadOptions::default(), false).await;
    assert_eq!(resealed, 4);
    let strict = mux(&store, Envelope::new("keys", ring("k1")));
    for i in 0..4 {
        let raw = store
            .get(&key(&format!("secrets/{i}")))
            .await
            .unwrap()
            .unwrap();
        assert!(raw.value().starts_with(b"MXE1"));
        let got = strict
            .get(&key(&format!("secrets/{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.value(), format!("v{i}").as_bytes());
    }
}
