//! Unit tests of the pass scope and the lease key.
use super::*;
use mux::Key;
use scope::{Scope, tenants};

fn routes(toml: &str) -> Vec<RouteConfig> {
    let config = mux::MuxConfig::from_toml(toml).unwrap();
    let mut routes = config.routes;
    routes.push(config.default);
    routes
}

#[test]
fn the_lease_key_is_fixed() {
    assert_eq!(LEASE_KEY, fnv1a(b"mux-antientropy") as i64);
    assert_ne!(LEASE_KEY, 0);
}

#[test]
fn a_route_nested_on_other_stores_blocks_the_wider_one() {
    // The default route on a and b; "x/" on a only: comparing the default route's
    // stores would copy x/ keys to b.
    let r = routes(
        r#"
        [[routes]]
        prefix = "x/"
        backends = [{ backend = "a" }]
        [default]
        backends = [{ backend = "a" }, { backend = "b" }]
        "#,
    );
    assert!(ownership(&r, 1, &Scope::Untenanted).is_err());
    // The same stores in another order: fine, GC too.
    let r = routes(
        r#"
        [[routes]]
        prefix = "x/"
        backends = [{ backend = "b" }, { backend = "a" }]
        [default]
        backends = [{ backend = "a" }, { backend = "b" }]
        "#,
    );
    assert_eq!(ownership(&r, 1, &Scope::Untenanted), Ok(true));
    assert_eq!(ownership(&r, 0, &Scope::Untenanted), Ok(true));
}

#[test]
fn a_narrower_route_on_fewer_stores_does_not_block_its_own_comparison() {
    // The cluster example: tenantconfig/ on redis and pg, the default on pg only.
    let r = routes(
        r#"
        [[routes]]
        prefix = "tenantconfig/"
        backends = [{ backend = "redis" }, { backend = "pg" }]
        [default]
        backends = [{ backend = "pg" }]
        "#,
    );
    assert_eq!(ownership(&r, 0, &Scope::Untenanted), Ok(true));
    assert_eq!(ownership(&r, 0, &Scope::Tenant("acme".into())), Ok(true));
}

#[test]
fn a_nested_route_on_more_stores_allows_compare_but_not_gc() {
    let r = routes(
        r#"
        [[routes]]
        prefix = "x/"
        backends = [{ backend = "a" }, { backend = "b" }, { backend = "c" }]
        [default]
        backends = [{ backend = "a" }, { backend = "b" }]
        "#,
    );
    assert_eq!(ownership(&r, 1, &Scope::Untenanted), Ok(false));
}

#[test]
fn another_tenants_route_does_not_matter() {
    let r = routes(
        r#"
        [[routes]]
        prefix = "x/y/"
        tenant = "other"
        backends = [{ backend = "a" }]
        [[routes]]
        prefix = "x/"
        backends = [{ backend = "a" }, { backend = "b" }]
        [default]
        backends = [{ backend = "c" }]
        "#,
    );
    assert_eq!(ownership(&r, 1, &Scope::Untenanted), Ok(true));
    assert_eq!(ownership(&r, 1, &Scope::Tenant("acme".into())), Ok(true));
    assert!(ownership(&r, 1, &Scope::Tenant("other".into())).is_err());
}

#[test]
fn a_tagged_route_shares_its_prefix_with_wider_routes() {
    let r = routes(
        r#"
        [[routes]]
        prefix = "x/"
        tags = { class = "pii" }
        backends = [{ backend = "a" }, { backend = "b" }]
        [default]
        backends = [{ backend = "a" }]
        "#,
    );
    assert!(ownership(&r, 0, &Scope::Untenanted).is_err());
}

#[tokio::test]
async fn tenants_are_found_by_seeking() {
    use mux::{MemoryBackend, Record, Version};
    let a = Arc::new(MemoryBackend::new("a"));
    let b = Arc::new(MemoryBackend::new("b"));
    for (store, key) in [
        (&a, "tenants/acme/x/1"),
        (&a, "tenants/acme/x/2"),
        (&a, "tenants/a-b/x/1"),
        (&b, "tenants/zeta/y"),
        (&b, "tenants/acme0/z"),
        (&a, "plain/key"),
    ] {
        store
            .put(&Record::new(
                Key::new(key).unwrap(),
                "v",
                Version::new(1, 0, 1),
            ))
            .await
            .unwrap();
    }
    let stores: Vec<Arc<dyn Backend>> = vec![a, b];
    let found = tenants(&stores, &Throttle::unlimited()).await.unwrap();
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, ["a-b", "acme", "acme0", "zeta"]);
}
