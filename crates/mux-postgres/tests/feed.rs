//! `PostgresFeed` against the PostgreSQL at `MUX_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test on its own random table,
//! dropped at the end.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use mux_core::{ChangeEvent, ChangeFeed, ChangeKind, FeedEvent, Key, Position, Tenant, Version};
use mux_postgres::{PostgresFeed, PostgresFeedConfig, TlsMode};
use tokio::time::{Instant, sleep, timeout};
use tokio_postgres::NoTls;

fn url() -> String {
    std::env::var("MUX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn random_table() -> String {
    format!(
        "mux_feed_test_{:016x}",
        RandomState::new().hash_one(Instant::now())
    )
}

async fn raw_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required for this test: {e}", url()));
    tokio::spawn(conn);
    client
}

/// Runs `body` on a fresh random table, drops the table, then re-raises any panic.
async fn on_table<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let table = random_table();
    let outcome = tokio::spawn(body(table.clone())).await;
    raw_client()
        .await
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}, {table}_meta"))
        .await
        .expect("drop the test tables");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn open(config: PostgresFeedConfig) -> PostgresFeed {
    PostgresFeed::open(config)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required for this test: {e}", url()))
}

fn event(name: &str) -> ChangeEvent {
    ChangeEvent {
        tenant: Some(Tenant::new("acme").unwrap()),
        key: Key::new(format!("feedtest/{name}")).unwrap(),
        version: Version::new(1_700_000_000_000, 1, 7),
        kind: ChangeKind::Put,
        route: String::new(),
    }
}

/// Reads after `after` until `want` events arrived or `within` passed.
async fn read_until(
    feed: &PostgresFeed,
    mut after: Position,
    want: usize,
    within: Duration,
) -> Vec<FeedEvent> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    for _ in 0..1000 {
        if seen.len() >= want || Instant::now() >= deadline {
            break;
        }
        let page = feed.read(after, 10, Duration::from_secs(1)).await.unwrap();
        if let Some(last) = page.last() {
            after = last.position;
        }
        seen.extend(page);
    }
    seen
}

async fn wait_for_listener(feed: &PostgresFeed, not: Option<i32>) -> i32 {
    for _ in 0..200 {
        match feed.listener_pid() {
            Some(pid) if Some(pid) != not => return pid,
            _ => sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the feed's LISTEN connection did not come up within 10 s");
}

#[test]
fn config_from_toml_with_defaults_under_a_kind_tag() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum FeedConfig {
        Postgres(PostgresFeedConfig),
    }
    #[derive(serde::Deserialize, Debug)]
    struct File {
        feed: FeedConfig,
    }
    let f: File =
        toml::from_str("[feed]\nkind = \"postgres\"\nurl = \"postgres://app:s3cret@db/x\"\n")
            .unwrap();
    let FeedConfig::Postgres(c) = f.feed;
    assert_eq!(
        (c.table.as_str(), c.retention_events, c.retention_age),
        ("mux_feed", 1_000_000, Duration::from_secs(86_400))
    );
    assert_eq!((c.poll_interval_ms, &c.tls), (1000, &TlsMode::Disable));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("app:***@db"),
        "{shown}"
    );

    let f: File = toml::from_str(
        "[feed]\nkind = \"postgres\"\nurl = \"u\"\ntable = \"t\"\nretention_events = 5\n\
         retention_age = \"90m\"\npoll_interval_ms = 20\ntls = { mode = \"require\" }\n",
    )
    .unwrap();
    let FeedConfig::Postgres(c) = f.feed;
    assert_eq!((c.table.as_str(), c.retention_events), ("t", 5));
    assert_eq!(
        (c.retention_age, c.poll_interval_ms),
        (Duration::from_secs(5400), 20)
    );
    assert_eq!(c.tls, TlsMode::Require { ca_file: None });
    let e = toml::from_str::<File>("[feed]\nkind = \"postgres\"\nurl = \"u\"\ntabel = \"t\"")
        .unwrap_err();
    assert!(e.to_string().contains("unknown field `tabel`"), "{e}");
    let e = toml::from_str::<File>(
        "[feed]\nkind = \"postgres\"\nurl = \"u\"\nretention_age = \"soon\"",
    )
    .unwrap_err();
    assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_feed_contract() {
    on_table(|table| async move {
        let feed = open(PostgresFeedConfig::new(url()).with_table(table)).await;
        mux_conformance::feed::check(Arc::new(feed)).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_retention_contract() {
    on_table(|table| async move {
        let config = PostgresFeedConfig::new(url())
            .with_table(table)
            .with_retention(20, Duration::from_secs(3600));
        let feed = Arc::new(open(config).await);
        // Publishing 50 events past a retention of 20 trims inside that publish.
        mux_conformance::feed::check_retention(feed.clone(), 50)
            .await
            .unwrap();
        let trimmed = feed.trim().await.unwrap();
        assert!(trimmed.major() >= 30, "trimmed through {trimmed}");
        let head = feed.head().await.unwrap();
        let kept = feed.read(trimmed, 100, Duration::ZERO).await.unwrap();
        assert!(kept.len() <= 20 && kept.last().map(|e| e.position) == Some(head));
    })
    .await;
}

/// T1 draws the lower position, then a second publish would commit first in a naive
/// design; here the second waits for T1, and a consumer skips neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_commit_of_a_lower_position_is_not_skipped() {
    on_table(|table| async move {
        let feed = Arc::new(open(PostgresFeedConfig::new(url()).with_table(table)).await);
        feed.publish(&[event("before")]).await.unwrap();
        let h0 = feed.head().await.unwrap();

        let mut raw = raw_client().await;
        let t1 = raw.transaction().await.unwrap();
        let p1 = feed.append_in(&t1, &[event("t1")]).await.unwrap();

        let consumer = {
            let feed = feed.clone();
            tokio::spawn(async move { read_until(&feed, h0, 2, Duration::from_secs(10)).await })
        };
        let mut publisher = {
            let feed = feed.clone();
            tokio::spawn(async move { feed.publish(&[event("second")]).await })
        };
        // While T1 is open the second publish cannot draw a position, and nothing is
        // visible after the head.
        assert!(
            timeout(Duration::from_millis(700), &mut publisher)
                .await
                .is_err(),
            "the second publish finished while T1 (holding a lower position) was open"
        );
        assert!(feed.read(h0, 10, Duration::ZERO).await.unwrap().is_empty());
        t1.commit().await.unwrap();

        let p2 = timeout(Duration::from_secs(10), publisher)
            .await
            .expect("the second publish finishes once T1 committed")
            .unwrap()
            .unwrap();
        assert!(p1[0] > h0 && p2[0] > p1[0], "positions {h0} {p1:?} {p2:?}");
        let seen = consumer.await.unwrap();
        let got: Vec<_> = seen
            .iter()
            .map(|e| (e.position, e.change.key.as_str().to_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                (p1[0], "feedtest/t1".to_owned()),
                (p2[0], "feedtest/second".to_owned())
            ]
        );
    })
    .await;
}

/// A notification from another node wakes a reader long before its poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_from_another_node_wakes_a_reader() {
    on_table(|table| async move {
        let config = PostgresFeedConfig::new(url())
            .with_table(table)
            .with_poll_interval(Duration::from_secs(60));
        let reader = Arc::new(open(config.clone()).await);
        let other = open(config).await;
        wait_for_listener(&reader, None).await;
        let head = reader.head().await.unwrap();
        let waiting = {
            let reader = reader.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let got = reader.read(head, 10, Duration::from_secs(30)).await;
                (got, started.elapsed())
            })
        };
        sleep(Duration::from_millis(200)).await;
        let p = other.publish(&[event("remote")]).await.unwrap();
        let (got, took) = waiting.await.unwrap();
        let got = got.unwrap();
        assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), p);
        assert!(
            took < Duration::from_secs(20),
            "woke after {took:?}: no notification"
        );
    })
    .await;
}

/// With its LISTEN connection killed, a waiting reader still gets an event another
/// node publishes (by polling), and the connection comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_notification_only_delays_a_reader() {
    on_table(|table| async move {
        let config = PostgresFeedConfig::new(url())
            .with_table(table)
            .with_poll_interval(Duration::from_millis(200));
        let reader = Arc::new(open(config.clone()).await);
        let other = open(config).await;
        let pid = wait_for_listener(&reader, None).await;
        let head = reader.head().await.unwrap();
        let waiting = {
            let reader = reader.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let got = reader.read(head, 10, Duration::from_secs(5)).await;
                (got, started.elapsed())
            })
        };
        let killed: bool = raw_client()
            .await
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(killed, "terminated the LISTEN backend {pid}");
        for _ in 0..100 {
            if reader.listener_pid() != Some(pid) {
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
        assert_ne!(
            reader.listener_pid(),
            Some(pid),
            "the feed noticed the kill"
        );
        let down_when_published = reader.listener_pid().is_none();
        let p = other.publish(&[event("unheard")]).await.unwrap();
        let (got, took) = waiting.await.unwrap();
        let got = got.unwrap();
        assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), p);
        println!("read after {took:?}; LISTEN down when published: {down_when_published}");
        // The connection comes back (backoff 1 s), with a new backend.
        let back = wait_for_listener(&reader, Some(pid)).await;
        assert_ne!(back, pid);
    })
    .await;
}
