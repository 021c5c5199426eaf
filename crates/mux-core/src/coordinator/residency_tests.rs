//! Data residency: an invalid configuration is refused with every violation named; a
//! tenant restricted to `eu` never reaches the `us` backend — through writes, hinted
//! handoff after an outage or read repair — and a `residency` tag its route cannot
//! honour is refused before anything is written.

use std::sync::Arc;

use super::*;
use crate::ErrorKind;
use crate::backend::Backend;
use crate::memory::MemoryBackend;
use crate::testing::FaultyBackend;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn acme() -> Option<Tenant> {
    Some(Tenant::new("acme").unwrap())
}

#[test]
fn every_violation_is_named() {
    let e = Mux::builder()
        .backend(Arc::new(MemoryBackend::new("eu1")))
        .backend(Arc::new(MemoryBackend::new("us1")))
        .backend(Arc::new(MemoryBackend::new("nowhere")))
        .region("eu1", "eu")
        .region("us1", "us")
        .region("ghost", "eu")
        .tenant_regions("acme", ["eu"])
        .route(
            RouteConfig::new("gdpr/")
                .backend("eu1", Role::Primary)
                .backend("us1", Role::Replica)
                .regions(["eu"]),
        )
        .route(
            RouteConfig::new("pii/")
                .tag(RESIDENCY_TAG, "eu")
                .backend("eu1", Role::Primary)
                .backend("nowhere", Role::Replica),
        )
        .default_route(RouteConfig::new("").backend("us1", Role::Primary))
        .build()
        .expect_err("the configuration is refused");
    let text = e.to_string();
    for expected in [
        "route \"gdpr/\" could place its data on backend \"us1\" in region \"us\", outside {eu}",
        "route \"pii/\" (tags residency=eu) could place records tagged residency=eu on backend \"nowhere\", which has no region",
        "the default route could place tenant acme's data (allowed: eu) on backend \"us1\" in region \"us\", outside {eu}",
        "route \"gdpr/\" could place tenant acme's data (allowed: eu) on backend \"us1\"",
        "[mux.regions] names unknown backend \"ghost\"",
    ] {
        assert!(text.contains(expected), "missing «{expected}» in:\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_tenant_kept_in_eu_never_reaches_the_us_backend() {
    let eu1 = Arc::new(MemoryBackend::new("eu1"));
    let eu2 = Arc::new(FaultyBackend::new(MemoryBackend::new("eu2"), 7));
    let us = Arc::new(MemoryBackend::new("us"));
    let mux = Mux::builder()
        .backend(eu1.clone())
        .backend(eu2.clone())
        .backend(us.clone())
        .region("eu1", "eu")
        .region("eu2", "eu")
        .region("us", "us")
        .tenant_regions("acme", ["eu"])
        // Every tenant's data/ goes to eu1 and us; acme's own route keeps it in eu.
        .route(
            RouteConfig::new("data/")
                .backend("eu1", Role::Primary)
                .backend("us", Role::Replica)
                .write(WriteConsistency::All),
        )
        .route(
            RouteConfig::new("data/")
                .tenant("acme")
                .backend("eu1", Role::Primary)
                .backend("eu2", Role::Replica)
                .write(WriteConsistency::One)
                .read(ReadPolicy::All),
        )
        .default_route(RouteConfig::new("").backend("eu1", Role::Primary))
        .build()
        .unwrap();
    let acme_write = WriteOptions {
        tenant: acme(),
        ..Default::default()
    };
    // eu2 is down: each write is acknowledged by eu1 and owed to eu2 (retried, then
    // handed off); eu2 comes back and gets them.
    eu2.set_outage(true);
    for i in 0..5 {
        let report = mux
            .write(key(&format!("data/{i}")), format!("v{i}"), &acme_write)
            .await
            .unwrap();
        assert_eq!(report.applied_on(), ["eu1"]);
    }
    eu2.set_outage(false);
    mux.settle().await;
    assert_eq!(mux.hints_pending(), 0, "the hints landed");
    assert!(mux.dead_letters().await.unwrap().is_empty());
    // Read repair: eu2 loses a record; an All read finds it stale and repairs it.
    let stored = key("tenants/acme/data/0");
    eu2.get_ref()
        .purge(&stored, Version::new(u64::MAX >> 16, 0, 0))
        .await
        .unwrap();
    let acme_read = ReadOptions {
        tenant: acme(),
        ..Default::default()
    };
    let got = mux
        .get_with(&key("data/0"), &acme_read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value(), "v0".as_bytes());
    mux.settle().await;
    assert!(
        eu2.get_ref().get(&stored).await.unwrap().is_some(),
        "read repair stayed in eu"
    );
    // Another tenant's data/ does reach us (the route is not wrong, only not acme's).
    mux.write(
        key("data/x"),
        "other",
        &WriteOptions {
            tenant: Some(Tenant::new("globex").unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let on_us: Vec<String> = us
        .list_all_for_test()
        .await
        .into_iter()
        .map(|e| e.key.as_str().to_owned())
        .collect();
    assert_eq!(
        on_us,
        ["tenants/globex/data/x"],
        "nothing of acme's is on us"
    );
    for i in 0..5 {
        assert!(
            eu2.get_ref()
                .get(&key(&format!("tenants/acme/data/{i}")))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn a_residency_tag_its_route_cannot_honour_is_refused() {
    let eu = Arc::new(MemoryBackend::new("eu"));
    let us = Arc::new(MemoryBackend::new("us"));
    let mux = Mux::builder()
        .backend(eu.clone())
        .backend(us.clone())
        .region("eu", "eu")
        .region("us", "us")
        .route(
            RouteConfig::new("profiles/")
                .tag(RESIDENCY_TAG, "eu")
                .backend("eu", Role::Primary),
        )
        .default_route(
            RouteConfig::new("")
                .backend("eu", Role::Primary)
                .backend("us", Role::Replica),
        )
        .build()
        .unwrap();
    let tagged = |value: &str| WriteOptions {
        tags: [(RESIDENCY_TAG.to_owned(), value.to_owned())].into(),
        ..Default::default()
    };
    // Under profiles/ the tagged route keeps it in eu.
    mux.write(key("profiles/ann"), "x", &tagged("eu"))
        .await
        .unwrap();
    // Elsewhere the default route would copy it to us: refused, nothing written.
    let e = mux
        .write(key("notes/ann"), "x", &tagged("eu"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("tagged residency=eu"), "{e}");
    assert!(e.to_string().contains("backend \"us\" (region us)"), "{e}");
    assert!(eu.get(&key("notes/ann")).await.unwrap().is_none());
    assert!(us.list_all_for_test().await.is_empty());
    // A tag that allows both regions is fine there.
    mux.write(key("notes/bob"), "x", &tagged("eu,us"))
        .await
        .unwrap();
}
