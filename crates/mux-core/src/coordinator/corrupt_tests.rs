//! Corrupt replicas: a copy that fails its checksum is a stale copy, not a failed read.
//! Gathering reads return the good copy and repair the corrupt one, `Primary` and
//! `FirstHealthy` fail over, errors name who returned corrupt data, and it is counted.

use super::tests::{abc, key, latency, mux_over, three, version_on};
use super::*;
use crate::error::ErrorKind;

fn with(policy: ReadPolicy) -> ReadOptions {
    ReadOptions {
        policy: Some(policy),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn all_and_quorum_reads_return_the_good_copy_and_repair_the_corrupt_one() {
    for policy in [ReadPolicy::All, ReadPolicy::Quorum] {
        let (a, b, c) = three();
        let mux = mux_over(&[&a, &b, &c], abc(WriteConsistency::All, policy));
        let k = key("k");
        let v = mux.put(k.clone(), "good").await.unwrap().version;
        b.corrupt(&k);
        let got = mux.get(&k).await.unwrap().expect("the good copy");
        assert_eq!(got.value(), "good".as_bytes(), "{policy}");
        assert_eq!(got.version(), v);
        mux.settle().await;
        // The damaged copy held the same version: only a purge first could mend it.
        assert!(
            !b.is_corrupt(&k),
            "{policy}: the corrupt copy was not repaired"
        );
        assert_eq!(version_on(&b, &k).await, Some(v));
        assert_eq!(mux.stats().corrupt_reads, 1, "{policy}");
        assert_eq!(mux.stats().read_repairs, 1, "{policy}");
        let report = mux.health_report().await.unwrap();
        let of = |name: &str| {
            report
                .iter()
                .find(|r| r.backend == name)
                .unwrap()
                .corrupt_reads
        };
        assert_eq!((of("a"), of("b"), of("c")), (0, 1, 0), "{policy}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_quorum_read_never_counts_a_corrupt_copy_as_the_majority() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::All, ReadPolicy::Quorum),
    );
    let k = key("k");
    mux.put(k.clone(), "v").await.unwrap();
    // One good copy, one corrupt, one unreachable: a majority was not read.
    a.corrupt(&k);
    c.set_outage(true);
    let err = mux.get(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConsistencyNotMet, "{err}");
    let text = err.to_string();
    assert!(text.contains("got 1 usable and 1 corrupt copies"), "{text}");
    assert!(
        text.contains("backend 'a'") && text.contains("corrupt"),
        "{text}"
    );
    assert!(!text.contains("no backend"), "{text}");
    // With the third voter back, the read succeeds and mends the corrupt copy.
    c.set_outage(false);
    assert_eq!(mux.get(&k).await.unwrap().unwrap().value(), "v".as_bytes());
    mux.settle().await;
    assert!(!a.is_corrupt(&k));
}

#[tokio::test(start_paused = true)]
async fn primary_and_first_healthy_fail_over_to_a_good_copy() {
    for policy in [ReadPolicy::Primary, ReadPolicy::FirstHealthy] {
        let (a, b, c) = three();
        let mux = mux_over(&[&a, &b, &c], abc(WriteConsistency::All, policy));
        let k = key("k");
        let v = mux.put(k.clone(), "good").await.unwrap().version;
        a.corrupt(&k);
        let got = mux.get(&k).await.unwrap().expect("a good copy");
        assert_eq!(got.version(), v, "{policy}");
        mux.settle().await;
        assert!(
            !a.is_corrupt(&k),
            "{policy}: the primary's copy was not repaired"
        );
        // The repaired primary answers again on its own.
        let again = mux.get(&k).await.unwrap().unwrap();
        assert_eq!(again.value(), "good".as_bytes());
        assert_eq!(mux.stats().corrupt_reads, 1, "{policy}");
    }
}

#[tokio::test(start_paused = true)]
async fn fastest_and_hedged_reads_skip_a_corrupt_answer() {
    for policy in [
        ReadPolicy::Fastest,
        ReadPolicy::Hedged {
            delay: Some(std::time::Duration::from_millis(50)),
        },
    ] {
        let (a, b, c) = three();
        let mux = mux_over(&[&a, &b, &c], abc(WriteConsistency::All, policy));
        let k = key("k");
        mux.put(k.clone(), "good").await.unwrap();
        a.corrupt(&k);
        // The corrupt answer comes first; a good one follows.
        latency(&b, 5);
        latency(&c, 5);
        let got = mux.get_with(&k, &with(policy)).await.unwrap().unwrap();
        assert_eq!(got.value(), "good".as_bytes(), "{policy}");
        mux.settle().await;
        assert!(!a.is_corrupt(&k), "{policy}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_copy_corrupt_is_a_corrupt_error_naming_each_backend() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::All, ReadPolicy::FirstHealthy),
    );
    let k = key("k");
    mux.put(k.clone(), "v").await.unwrap();
    for x in [&a, &b, &c] {
        x.corrupt(&k);
    }
    let err = mux.get(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(!err.is_temporary());
    let text = err.to_string();
    for name in ["'a'", "'b'", "'c'"] {
        assert!(text.contains(name), "{text}");
    }
    assert!(text.contains("returned a corrupt copy"), "{text}");
    assert!(!text.contains("no backend"), "{text}");
    // One corrupt, the others down: the error says some answered with corrupt data.
    b.set_outage(true);
    c.set_outage(true);
    let err = mux.get(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    assert!(err.message().contains("1 returned corrupt data"), "{err}");
    assert_eq!(mux.stats().corrupt_reads, 4);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_copy_of_a_key_the_others_lack_is_left_alone() {
    let (a, b, c) = three();
    let mux = mux_over(&[&a, &b, &c], abc(WriteConsistency::All, ReadPolicy::All));
    let k = key("k");
    let v = mux.clock().now();
    b.get_ref()
        .put(&Record::new(k.clone(), "x", v))
        .await
        .unwrap();
    b.corrupt(&k);
    // Two good answers say absent: the read says absent and writes nothing over b.
    assert!(mux.get(&k).await.unwrap().is_none());
    mux.settle().await;
    assert!(b.is_corrupt(&k));
    assert_eq!(version_on(&b, &k).await, Some(v));
    assert_eq!(mux.stats().read_repairs, 0);
}
