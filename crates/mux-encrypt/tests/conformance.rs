//! Encryption keeps the `Backend` contract: the `Encrypt` layer around `MemoryBackend`,
//! and a `Mux` whose routes are sealed, pass the whole conformance suite.

use std::sync::Arc;

use mux_conformance::run;
use mux_core::{Backend, MemoryBackend, Mux, Role, RouteConfig};
use mux_encrypt::{Encrypt, Envelope, Keyring};

fn envelope() -> Arc<Envelope> {
    let keys = Keyring::from_keys("k1", [("k1".to_owned(), [9u8; 32])]).unwrap();
    Arc::new(Envelope::new("secrets", Arc::new(keys)))
}

#[tokio::test]
async fn the_encrypt_layer_passes_the_suite() {
    let store = Encrypt::new(MemoryBackend::new("memory"), envelope());
    let report = run(Arc::new(store)).await;
    assert!(report.all_passed(), "{report}");
}

#[tokio::test]
async fn a_mux_with_sealed_routes_passes_the_suite() {
    let mux = Mux::builder()
        .backend(Arc::new(MemoryBackend::new("a")))
        .backend(Arc::new(MemoryBackend::new("b")))
        .sealer(envelope())
        .default_route(
            RouteConfig::new("")
                .backend("a", Role::Primary)
                .backend("b", Role::Replica)
                .encrypt("secrets"),
        )
        .build()
        .unwrap();
    let backend: Arc<dyn Backend> = Arc::new(mux.as_backend());
    let report = run(backend).await;
    assert!(report.all_passed(), "{report}");
}
