//! The contract every [`ChangeFeed`] must keep: ordered, gap-free to its readers,
//! resumable, waking waiting readers, and failing with [`ErrorKind::Gone`] rather than
//! skipping trimmed events.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use mux_core::MemoryFeed;
//!
//! mux_conformance::feed::check(Arc::new(MemoryFeed::new("mine"))).await.unwrap();
//! mux_conformance::feed::check_retention(Arc::new(MemoryFeed::with_retention("small", 10)), 50)
//!     .await
//!     .unwrap();
//! # }
//! ```
//! Each check needs a feed no one else publishes to while it runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux_core::{ChangeEvent, ChangeFeed, ChangeKind, ErrorKind, FeedEvent, Key, Position, Tenant};

/// A check's outcome: what broke the contract.
pub type FeedResult = std::result::Result<(), String>;

fn event(n: usize, tenant: Option<&str>, kind: ChangeKind) -> ChangeEvent {
    ChangeEvent {
        tenant: tenant.map(|t| Tenant::new(t).expect("valid tenant")),
        key: Key::new(format!("feedcheck/k{n}")).expect("valid key"),
        version: mux_core::Version::new(1_700_000_000_000 + n as u64, n as u32, 7),
        kind,
        route: if n.is_multiple_of(2) {
            "feedcheck/".into()
        } else {
            String::new()
        },
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> FeedResult {
    if ok { Ok(()) } else { Err(what()) }
}

async fn read_all(feed: &dyn ChangeFeed, mut after: Position) -> Result<Vec<FeedEvent>, String> {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let page = feed
            .read(after, 64, Duration::ZERO)
            .await
            .map_err(|e| format!("read after {after}: {e}"))?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        after = last.position;
        all.extend(page);
    }
    Err("read_all: more than 640,000 events".into())
}

/// Runs every case of the contract except retention (see [`check_retention`]).
pub async fn check(feed: Arc<dyn ChangeFeed>) -> FeedResult {
    let name = feed.name().to_owned();
    let fail = |e: mux_core::Error| format!("feed {name}: {e}");
    let h0 = feed.head().await.map_err(fail)?;

    // Publish returns increasing positions above the head; head follows.
    let batch = [
        event(0, None, ChangeKind::Put),
        event(1, Some("acme"), ChangeKind::Put),
        event(2, Some("acme"), ChangeKind::Delete),
    ];
    let positions = feed.publish(&batch).await.map_err(fail)?;
    ensure(positions.len() == 3, || {
        format!("publish of 3 events returned {} positions", positions.len())
    })?;
    ensure(
        h0 < positions[0] && positions[0] < positions[1] && positions[1] < positions[2],
        || format!("positions not increasing above the head {h0}: {positions:?}"),
    )?;
    let head = feed.head().await.map_err(fail)?;
    ensure(head == positions[2], || {
        format!(
            "head {head} is not the last published position {}",
            positions[2]
        )
    })?;

    // Reads are strictly after, in order, with every field intact, and honour limit.
    let all = read_all(&*feed, h0).await?;
    let got: Vec<_> = all.iter().map(|e| (e.position, e.change.clone())).collect();
    let want: Vec<_> = positions
        .iter()
        .copied()
        .zip(batch.iter().cloned())
        .collect();
    ensure(got == want, || {
        format!("read after {h0} returned {got:?}, expected {want:?}")
    })?;
    let rest = feed
        .read(positions[0], 10, Duration::ZERO)
        .await
        .map_err(fail)?;
    ensure(
        rest.iter().map(|e| e.position).collect::<Vec<_>>() == positions[1..],
        || format!("read after {} returned {rest:?}", positions[0]),
    )?;
    let two = feed.read(h0, 2, Duration::ZERO).await.map_err(fail)?;
    ensure(two.len() == 2, || {
        format!("read with limit 2 returned {} events", two.len())
    })?;
    let none = feed
        .read(positions[2], 10, Duration::ZERO)
        .await
        .map_err(fail)?;
    ensure(none.is_empty(), || {
        format!("read after the head returned {none:?}")
    })?;

    // A waiting reader wakes up for an event published while it waits.
    let publisher = {
        let feed = feed.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            feed.publish(&[event(3, None, ChangeKind::Put)]).await
        })
    };
    let started = Instant::now();
    let woke = feed
        .read(positions[2], 10, Duration::from_secs(20))
        .await
        .map_err(fail)?;
    let published = publisher
        .await
        .map_err(|e| format!("publisher task: {e}"))?
        .map_err(fail)?;
    ensure(woke.len() == 1 && woke[0].position == published[0], || {
        format!("a waiting read returned {woke:?}, expected the event at {published:?}")
    })?;
    ensure(started.elapsed() < Duration::from_secs(20), || {
        "a waiting read did not wake up for a publish".into()
    })?;
    // A wait with nothing published ends empty, not with an error.
    let quiet = feed
        .read(published[0], 10, Duration::from_millis(50))
        .await
        .map_err(fail)?;
    ensure(quiet.is_empty(), || {
        format!("an idle wait returned {quiet:?}")
    })?;

    // Concurrent publishers: every event once, positions increasing, each
    // publisher's events in its own order.
    let from = feed.head().await.map_err(fail)?;
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let feed = feed.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    feed.publish(&[event(100 * (t + 1) + i, Some("acme"), ChangeKind::Put)])
                        .await?;
                }
                Ok::<_, mux_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| format!("publisher task: {e}"))?
            .map_err(fail)?;
    }
    let all = read_all(&*feed, from).await?;
    ensure(all.len() == 100, || {
        format!("4 publishers of 25 events: read back {} events", all.len())
    })?;
    ensure(
        all.windows(2).all(|w| w[0].position < w[1].position),
        || "positions of concurrently published events are not increasing".into(),
    )?;
    for t in 0..4 {
        let seq: Vec<_> = all
            .iter()
            .filter(|e| {
                e.change
                    .key
                    .as_str()
                    .starts_with(&format!("feedcheck/k{}", t + 1))
            })
            .map(|e| e.change.key.clone())
            .collect();
        let want: Vec<_> = (0..25)
            .map(|i| event(100 * (t + 1) + i, None, ChangeKind::Put).key)
            .collect();
        ensure(seq == want, || {
            format!("publisher {t}'s events out of order: {seq:?}")
        })?;
    }
    Ok(())
}

/// Publishes `overflow` events — more than the feed retains — and checks that a reader
/// whose position fell out of retention gets [`ErrorKind::Gone`], while a reader at the
/// head reads on.
pub async fn check_retention(feed: Arc<dyn ChangeFeed>, overflow: usize) -> FeedResult {
    let name = feed.name().to_owned();
    let fail = |e: mux_core::Error| format!("feed {name}: {e}");
    let h0 = feed.head().await.map_err(fail)?;
    for chunk in (0..overflow).collect::<Vec<_>>().chunks(50) {
        let events: Vec<_> = chunk
            .iter()
            .map(|&n| event(n, Some("acme"), ChangeKind::Put))
            .collect();
        feed.publish(&events).await.map_err(fail)?;
    }
    match feed.read(h0, 10, Duration::ZERO).await {
        Err(e) if e.kind() == ErrorKind::Gone => {}
        Err(e) => return Err(format!("read out of retention: expected gone, got {e}")),
        Ok(events) => {
            return Err(format!(
                "after {overflow} events a read from {h0} was not refused as gone; it \
                 returned {} events from {:?}",
                events.len(),
                events.first().map(|e| e.position)
            ));
        }
    }
    let head = feed.head().await.map_err(fail)?;
    let after = feed.read(head, 10, Duration::ZERO).await.map_err(fail)?;
    ensure(after.is_empty(), || {
        format!("read after the head returned {after:?}")
    })?;
    feed.publish(&[event(0, None, ChangeKind::Delete)])
        .await
        .map_err(fail)?;
    let next = feed.read(head, 10, Duration::ZERO).await.map_err(fail)?;
    ensure(next.len() == 1, || {
        format!("a reader resuming from the head read {next:?}")
    })
}
