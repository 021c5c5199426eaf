//! Tenants: routes match each tenant's own keys; storage keeps them apart.

use std::sync::Arc;

use super::*;
use crate::backend::{Backend, ListRequest};
use crate::memory::MemoryBackend;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn tenant(t: &str) -> Option<Tenant> {
    Some(Tenant::new(t).unwrap())
}

#[tokio::test]
async fn two_tenants_share_a_route_and_never_see_each_other() {
    let kv = Arc::new(MemoryBackend::new("kv"));
    let main = Arc::new(MemoryBackend::new("main"));
    let mux = Mux::builder()
        .backend(kv.clone())
        .backend(main.clone())
        .route(RouteConfig::new("tenantconfig/").backend("kv", Role::Primary))
        .default_route(RouteConfig::new("").backend("main", Role::Primary))
        .build()
        .unwrap();
    let k = key("tenantconfig/limits");
    for (t, value) in [("a", "max=1"), ("b", "max=2")] {
        let options = WriteOptions {
            tenant: tenant(t),
            ..Default::default()
        };
        let report = mux.write(k.clone(), value, &options).await.unwrap();
        assert_eq!(report.key, k, "the report names the tenant's key");
        assert_eq!(
            report.applied_on(),
            ["kv"],
            "the tenantconfig/ route applies"
        );
    }
    // Stored under each tenant's namespace on the route's backend, nowhere else.
    for (t, value) in [("a", "max=1"), ("b", "max=2")] {
        let stored = kv
            .get(&key(&format!("tenants/{t}/tenantconfig/limits")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.value(), value.as_bytes());
    }
    assert!(kv.get(&k).await.unwrap().is_none());
    assert!(main.list_all_for_test().await.is_empty());

    for (t, value) in [("a", "max=1"), ("b", "max=2")] {
        let options = ReadOptions {
            tenant: tenant(t),
            ..Default::default()
        };
        let record = mux.get_with(&k, &options).await.unwrap().unwrap();
        assert_eq!(record.value(), value.as_bytes(), "tenant {t}");
        assert_eq!(record.key(), &k);
        let page = mux
            .list(&ListRequest::new(Prefix::all()), &options)
            .await
            .unwrap();
        let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["tenantconfig/limits"],
            "tenant {t} lists only its own"
        );
    }
    // A third tenant sees nothing; deleting is per tenant too.
    let c = ReadOptions {
        tenant: tenant("c"),
        ..Default::default()
    };
    assert!(mux.get_with(&k, &c).await.unwrap().is_none());
    let delete_a = WriteOptions {
        tenant: tenant("a"),
        ..Default::default()
    };
    mux.delete(&k, &delete_a).await.unwrap();
    let b = ReadOptions {
        tenant: tenant("b"),
        ..Default::default()
    };
    assert!(mux.get_with(&k, &b).await.unwrap().is_some());
    let a = ReadOptions {
        tenant: tenant("a"),
        ..Default::default()
    };
    assert!(mux.get_with(&k, &a).await.unwrap().is_none());
}

#[tokio::test]
async fn a_tenant_route_narrows_to_one_tenant() {
    let kv = Arc::new(MemoryBackend::new("kv"));
    let vip = Arc::new(MemoryBackend::new("vip"));
    let mux = Mux::builder()
        .backend(kv.clone())
        .backend(vip.clone())
        .route(RouteConfig::new("tenantconfig/").backend("kv", Role::Primary))
        .route(
            RouteConfig::new("tenantconfig/")
                .tenant("acme")
                .backend("vip", Role::Primary),
        )
        .default_route(RouteConfig::new("").backend("kv", Role::Primary))
        .build()
        .unwrap();
    let k = key("tenantconfig/limits");
    for t in ["acme", "other"] {
        let options = WriteOptions {
            tenant: tenant(t),
            ..Default::default()
        };
        mux.write(k.clone(), t, &options).await.unwrap();
    }
    assert!(
        vip.get(&key("tenants/acme/tenantconfig/limits"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        kv.get(&key("tenants/other/tenantconfig/limits"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        kv.get(&key("tenants/acme/tenantconfig/limits"))
            .await
            .unwrap()
            .is_none()
    );
}

impl MemoryBackend {
    pub(super) async fn list_all_for_test(&self) -> Vec<crate::backend::ListEntry> {
        crate::backend::BackendExt::list_all(self, &Prefix::all())
            .await
            .unwrap()
    }
}
