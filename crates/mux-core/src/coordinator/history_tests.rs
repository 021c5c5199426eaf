//! Temporal reads through the coordinator: routed to a history-keeping backend,
//! tenant-isolated, failing over, and refused (naming the route) where no backend of
//! the route keeps history.

use std::sync::Arc;

use super::*;
use crate::ErrorKind;
use crate::history::{AsOf, HistoryRequest};
use crate::memory::MemoryBackend;
use crate::testing::FaultyBackend;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn options(tenant: &str) -> (WriteOptions, ReadOptions) {
    let t = Some(Tenant::new(tenant).unwrap());
    let w = WriteOptions {
        tenant: t.clone(),
        ..Default::default()
    };
    let r = ReadOptions {
        tenant: t,
        ..Default::default()
    };
    (w, r)
}

/// `paramconfig/` on a plain store plus a history replica; everything else on `main`.
fn mux_with_history(keeper: Arc<dyn Backend>) -> Mux {
    Mux::builder()
        .backend(Arc::new(MemoryBackend::new("kv")))
        .backend(keeper)
        .backend(Arc::new(MemoryBackend::new("main")))
        .route(
            RouteConfig::new("paramconfig/")
                .backend("kv", Role::Primary)
                .backend("versions", Role::Replica),
        )
        .default_route(RouteConfig::new("").backend("main", Role::Primary))
        .build()
        .unwrap()
}

#[tokio::test]
async fn history_and_as_of_come_from_the_routes_history_backend_per_tenant() {
    let mux = mux_with_history(Arc::new(MemoryBackend::with_history("versions")));
    let k = key("paramconfig/limits");
    let (wa, ra) = options("acme");
    let (wb, rb) = options("globex");
    let mut versions = Vec::new();
    for value in ["1", "2", "3"] {
        versions.push(mux.write(k.clone(), value, &wa).await.unwrap().version);
    }
    mux.write(k.clone(), "other tenant", &wb).await.unwrap();
    mux.delete(&k, &wa).await.unwrap();

    let page = mux
        .history(&HistoryRequest::new(k.clone()), &ra)
        .await
        .unwrap();
    let got: Vec<(Version, bool, String)> = page
        .entries
        .iter()
        .map(|r| {
            assert_eq!(r.key(), &k, "entries carry the tenant's own key");
            (
                r.version(),
                r.is_tombstone(),
                String::from_utf8_lossy(r.value()).into_owned(),
            )
        })
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[0].1, "the delete comes first, as a tombstone: {got:?}");
    let live: Vec<&str> = got[1..].iter().map(|(_, _, v)| v.as_str()).collect();
    assert_eq!(live, ["3", "2", "1"]);

    // As of the second write: "2"; after the delete the live view is empty.
    let at = AsOf::Version(versions[1]);
    let two = mux.get_as_of(&k, at, &ra).await.unwrap().unwrap();
    assert_eq!(two.value().as_ref(), b"2");
    let now = AsOf::Version(Version::new(u64::MAX >> 1, 0, 0));
    assert!(mux.get_as_of(&k, now, &ra).await.unwrap().is_none());

    // The other tenant sees only its own write.
    let theirs = mux
        .history(&HistoryRequest::new(k.clone()), &rb)
        .await
        .unwrap();
    assert_eq!(theirs.entries.len(), 1);
    assert_eq!(theirs.entries[0].value().as_ref(), b"other tenant");
}

#[tokio::test]
async fn a_route_without_history_is_refused_by_name() {
    let mux = mux_with_history(Arc::new(MemoryBackend::with_history("versions")));
    let k = key("tenantconfig/limits");
    mux.put(k.clone(), "x").await.unwrap();
    let err = mux
        .history(&HistoryRequest::new(k.clone()), &ReadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("main"), "{err}");
    assert!(err.to_string().contains("keeps history"), "{err}");
    let at = AsOf::UnixMillis(0);
    let err = mux
        .get_as_of(&k, at, &ReadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    // A Mux whose every route keeps history says so in its capability; this one does not.
    assert!(!mux.as_backend().info().capability.history);
}

#[tokio::test]
async fn an_unreachable_history_backend_fails_temporarily_with_its_error() {
    let keeper = Arc::new(FaultyBackend::new(
        MemoryBackend::with_history("versions"),
        7,
    ));
    let mux = mux_with_history(keeper.clone());
    let k = key("paramconfig/limits");
    mux.put(k.clone(), "1").await.unwrap();
    keeper.set_outage(true);
    let err = mux
        .history(&HistoryRequest::new(k.clone()), &ReadOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(err.to_string().contains("versions"), "{err}");
    keeper.set_outage(false);
    let page = mux
        .history(&HistoryRequest::new(k), &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);
}
