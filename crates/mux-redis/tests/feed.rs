//! `RedisFeed` against a real Redis: the Redis at `MUX_REDIS_URL` (default
//! `redis://127.0.0.1:6379`, as the backend's tests), each test on its own stream, and a
//! private `redis-server` for the outage test.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use mux_core::{ChangeEvent, ChangeFeed, ChangeKind, ErrorKind, Key, Position, Version};
use mux_redis::{RedisFeed, RedisFeedConfig};

fn url() -> String {
    std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn random() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

/// A fresh stream name on `url`, deleted when dropped (even when the test fails).
struct Stream {
    url: String,
    name: String,
}

impl Stream {
    fn new(url: &str) -> Stream {
        Stream {
            url: url.to_owned(),
            name: format!("mux-test:feed:{:016x}", random()),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let deleted = redis::Client::open(self.url.as_str()).and_then(|c| {
            let mut conn = c.get_connection_with_timeout(Duration::from_secs(2))?;
            conn.set_read_timeout(Some(Duration::from_secs(2)))?;
            redis::cmd("DEL").arg(&self.name).query::<i64>(&mut conn)
        });
        if let Err(e) = deleted {
            eprintln!("could not delete test stream {}: {e}", self.name);
        }
    }
}

async fn open(config: RedisFeedConfig) -> RedisFeed {
    let shown = format!("{config:?}");
    RedisFeed::open(config)
        .await
        .unwrap_or_else(|e| panic!("Redis is required for this test ({shown}): {e}"))
}

fn event(n: u64) -> ChangeEvent {
    ChangeEvent {
        tenant: None,
        key: Key::new(format!("feedtest/k{n}")).unwrap(),
        version: Version::new(1_700_000_000_000 + n, 0, 1),
        kind: ChangeKind::Put,
        route: String::new(),
    }
}

#[test]
fn config_from_toml_with_defaults_and_a_kind_tag() {
    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    enum Feed {
        Redis(RedisFeedConfig),
    }
    #[derive(Debug, Deserialize)]
    struct File {
        feed: Feed,
    }
    let f: File = toml::from_str("[feed]\nkind = \"redis\"\nurl = \"redis://a:pw@h\"").unwrap();
    let Feed::Redis(c) = f.feed;
    assert_eq!((c.stream.as_str(), c.max_len), ("mux:feed", 1_000_000));
    assert_eq!(c.response_timeout, Duration::from_secs(5));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("pw") && shown.contains("a:***@h"),
        "{shown}"
    );
    let c: RedisFeedConfig =
        toml::from_str("url = \"x\"\nstream = \"s\"\nmax_len = 10\nresponse_timeout_ms = 20")
            .unwrap();
    assert_eq!((c.stream.as_str(), c.max_len), ("s", 10));
    assert_eq!(c.response_timeout, Duration::from_millis(20));
    let e = toml::from_str::<RedisFeedConfig>("url = \"x\"\nmaxlen = 1").unwrap_err();
    assert!(e.to_string().contains("unknown field `maxlen`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keeps_the_feed_contract() {
    let stream = Stream::new(&url());
    let feed = open(RedisFeedConfig::new(url()).with_stream(&stream.name)).await;
    mux_conformance::feed::check(Arc::new(feed)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_trimming_gets_gone() {
    let stream = Stream::new(&url());
    // MAXLEN ~ 10 trims whole 100-entry nodes: after 1000 events at most a couple of
    // nodes remain, so the events from the start were surely trimmed.
    let feed = open(
        RedisFeedConfig::new(url())
            .with_stream(&stream.name)
            .with_max_len(10),
    )
    .await;
    let feed = Arc::new(feed);
    mux_conformance::feed::check_retention(feed.clone(), 1000)
        .await
        .unwrap();
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(&stream.name)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((10..=300).contains(&len), "stream length {len}");
    // A reader at the oldest retained entry's predecessor missed nothing; one before it did.
    let oldest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream.name)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (first, fields) = &oldest[0];
    let prev: Position = fields
        .iter()
        .find(|(k, _)| k == mux_redis::PREV_FIELD)
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let events = feed.read(prev, 1, Duration::ZERO).await.unwrap();
    assert_eq!(events[0].position, first.parse().unwrap());
    let before = match prev.minor() {
        0 => Position::new(prev.major() - 1, u64::MAX),
        minor => Position::new(prev.major(), minor - 1),
    };
    let e = feed.read(before, 1, Duration::ZERO).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Gone, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_readers_wake_and_do_not_block_publishers() {
    let stream = Stream::new(&url());
    let feed = Arc::new(open(RedisFeedConfig::new(url()).with_stream(&stream.name)).await);
    let head = feed.head().await.unwrap();

    // One waiting reader wakes for a publish, well before its 10 s wait ends.
    let reader = {
        let feed = feed.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let events = feed.read(head, 10, Duration::from_secs(10)).await;
            (events, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = feed.publish(&[event(1)]).await.unwrap();
    let (events, took) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the waiting reader did not wake")
        .unwrap();
    let events = events.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].position, published[0]);
    assert!(took < Duration::from_secs(3), "woke after {took:?}");

    // Four waiting readers hold no connection a publish needs.
    let head = published[0];
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let feed = feed.clone();
            tokio::spawn(async move { feed.read(head, 10, Duration::from_secs(10)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        readers.iter().all(|r| !r.is_finished()),
        "readers did not wait"
    );
    let started = Instant::now();
    let published = tokio::time::timeout(Duration::from_secs(3), feed.publish(&[event(2)]))
        .await
        .expect("publish blocked behind waiting readers")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    for reader in readers {
        let events = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("a waiting reader did not wake")
            .unwrap()
            .unwrap();
        assert_eq!(events[0].position, published[0]);
    }
}

/// A private `redis-server` on `port`, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(port: u16) -> Server {
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required for this test");
        let server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    // Port 0: the kernel picks a free one, with no guessing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Tries `call` up to 40 times, 250 ms apart (10 s), until it succeeds.
async fn eventually<T, F: Future<Output = mux_core::Result<T>>>(
    what: &str,
    mut call: impl FnMut() -> F,
) -> T {
    let mut last = None;
    for _ in 0..40 {
        match tokio::time::timeout(Duration::from_secs(5), call()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some("timed out".into()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} never succeeded: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fails_promptly_while_redis_is_down_and_recovers() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = Server::start(port);
    let config = RedisFeedConfig::new(&url)
        .with_stream("mux-test:feed:outage")
        .with_response_timeout(Duration::from_secs(1));
    let feed = Arc::new(open(config).await);
    let before = feed.publish(&[event(1), event(2)]).await.unwrap()[1];
    assert_eq!(
        feed.read(Position::ZERO, 10, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        2
    );

    // A reader waiting when Redis dies returns an error promptly, not after its wait.
    let waiting = {
        let feed = feed.clone();
        tokio::spawn(async move { feed.read(before, 10, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let bound = Duration::from_secs(10);
    let e = tokio::time::timeout(bound, waiting)
        .await
        .expect("a waiting read hung after Redis died")
        .unwrap()
        .unwrap_err();
    assert!(e.is_temporary(), "{e}");
    let e = tokio::time::timeout(bound, feed.read(before, 10, Duration::ZERO))
        .await
        .expect("read hung")
        .unwrap_err();
    assert!(e.is_temporary(), "{e}");
    let e = tokio::time::timeout(bound, feed.read(before, 10, Duration::from_secs(5)))
        .await
        .expect("waiting read hung")
        .unwrap_err();
    assert!(e.is_temporary(), "{e}");
    let e = tokio::time::timeout(bound, feed.publish(&[event(3)]))
        .await
        .expect("publish hung")
        .unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    // Back (empty: no persistence): the same feed publishes and reads again.
    let _server = Server::start(port);
    let fourth = [event(4)];
    let after = eventually("publish after the restart", || feed.publish(&fourth)).await;
    // From an old position: nothing, the new event, or Gone; just no hang.
    match tokio::time::timeout(bound, feed.read(before, 10, Duration::ZERO)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Gone, "{e}"),
        Err(_) => panic!("read from an old position hung"),
    }
    let events = eventually("read after the restart", || {
        feed.read(Position::ZERO, 10, Duration::ZERO)
    })
    .await;
    assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), after);
    // Waiting reads work again too (the dead pooled connections were dropped).
    let waiting = {
        let feed = feed.clone();
        tokio::spawn(async move { feed.read(after[0], 10, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = feed.publish(&[event(5)]).await.unwrap();
    let woke = tokio::time::timeout(bound, waiting)
        .await
        .expect("a waiting read after the restart hung")
        .unwrap()
        .unwrap();
    assert_eq!(woke[0].position, next[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_deleted_inside_a_read_is_gone_not_skipped() {
    let stream = Stream::new(&url());
    let feed = open(RedisFeedConfig::new(url()).with_stream(&stream.name)).await;
    let events: Vec<_> = (0..5).map(event).collect();
    let positions = feed.publish(&events).await.unwrap();
    // Someone else deletes the third entry: a reader after the first would get the
    // second (whose `prev` is its position) and then miss the third.
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deleted: i64 = redis::cmd("XDEL")
        .arg(&stream.name)
        .arg(positions[2].to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let e = feed
        .read(positions[0], 10, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Gone, "{e}");
    // After the deleted entry nothing is missing.
    let after = feed.read(positions[2], 10, Duration::ZERO).await.unwrap();
    let got: Vec<Position> = after.iter().map(|e| e.position).collect();
    assert_eq!(got, positions[3..]);
}
