//! The network fault proxy (`mux_tests::netfault`) against a real server: the shared
//! Redis (`MUX_REDIS_URL`, required: `cargo xtask services up`), spoken to in raw RESP
//! so that what the proxy does is seen byte for byte, with no client library's retries
//! in between. Timings are checked as lower bounds only (a busy machine is slower,
//! never faster).

use std::time::{Duration, Instant};

use mux_tests::netfault::{FaultProxy, LinkFaults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// `host:port` of the Redis the tests use.
fn redis_authority() -> String {
    let url = mux_tests::redis_url();
    let rest = url.split("://").nth(1).unwrap_or(&url);
    let rest = rest.rsplit('@').next().unwrap();
    rest.split('/').next().unwrap().to_owned()
}

async fn proxy() -> FaultProxy {
    let upstream = redis_authority();
    let direct = TcpStream::connect(&upstream).await;
    assert!(
        direct.is_ok(),
        "Redis at {upstream} is required (cargo xtask services up)"
    );
    FaultProxy::start(&upstream).await.unwrap()
}

async fn connect(p: &FaultProxy) -> TcpStream {
    TcpStream::connect(p.addr()).await.unwrap()
}

/// Sends `request` and reads one reply line, within `within`.
async fn ask(conn: &mut TcpStream, request: &[u8], within: Duration) -> Result<String, String> {
    conn.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    read_line(conn, within).await
}

/// Reads up to the first CRLF, within `within`.
async fn read_line(conn: &mut TcpStream, within: Duration) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + within;
    while !line.ends_with(b"\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut byte)).await {
            Err(_) => return Err("timed out".into()),
            Ok(Ok(0)) => return Err("closed".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(_)) => line.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn passes_traffic_and_counts_it() {
    let p = proxy().await;
    let mut c = connect(&p).await;
    assert_eq!(ask(&mut c, PING, SOON).await.unwrap(), "+PONG");
    let stats = p.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.bytes_up, PING.len() as u64);
    assert_eq!(stats.bytes_down, b"+PONG\r\n".len() as u64);
    assert_eq!(stats.resets, 0);
}

#[tokio::test]
async fn latency_and_bandwidth_slow_each_chunk() {
    let p = proxy().await;
    let mut c = connect(&p).await;
    p.set_link(LinkFaults {
        latency: Duration::from_millis(150),
        ..Default::default()
    });
    let t = Instant::now();
    assert_eq!(ask(&mut c, PING, SOON).await.unwrap(), "+PONG");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "request and reply each wait 150 ms: {:?}",
        t.elapsed()
    );
    // 40 KB at 100 KB/s: at least 0.4 s on the way up.
    p.set_link(LinkFaults {
        bytes_per_sec: Some(100_000),
        ..Default::default()
    });
    let value = vec![b'x'; 40_000];
    let mut set = format!(
        "*3\r\n$3\r\nSET\r\n$19\r\nmux-netfault-bw-key\r\n${}\r\n",
        value.len()
    )
    .into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    let t = Instant::now();
    assert_eq!(ask(&mut c, &set, SOON).await.unwrap(), "+OK");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    p.set_link(LinkFaults::default());
    let del = b"*2\r\n$3\r\nDEL\r\n$19\r\nmux-netfault-bw-key\r\n";
    assert_eq!(ask(&mut c, del, SOON).await.unwrap(), ":1");
}

#[tokio::test]
async fn refuse_and_blackhole_affect_new_connections_only() {
    let p = proxy().await;
    let mut open = connect(&p).await;
    assert_eq!(ask(&mut open, PING, SOON).await.unwrap(), "+PONG");

    p.refuse(true);
    let mut refused = connect(&p).await;
    let answer = ask(&mut refused, PING, SOON).await;
    assert!(answer.is_err(), "a refused connection answered: {answer:?}");
    assert_ne!(answer.unwrap_err(), "timed out", "refused, not blackholed");
    assert_eq!(ask(&mut open, PING, SOON).await.unwrap(), "+PONG");
    p.refuse(false);

    p.blackhole(true);
    let mut hole = connect(&p).await;
    assert_eq!(
        ask(&mut hole, PING, Duration::from_millis(300)).await,
        Err("timed out".into())
    );
    assert_eq!(ask(&mut open, PING, SOON).await.unwrap(), "+PONG");
    p.blackhole(false);

    let mut fresh = connect(&p).await;
    assert_eq!(ask(&mut fresh, PING, SOON).await.unwrap(), "+PONG");
    assert_eq!(p.stats().resets, 1, "the refused connection");
}

#[tokio::test]
async fn a_partition_holds_traffic_until_heal() {
    let p = proxy().await;
    let mut c = connect(&p).await;
    assert_eq!(ask(&mut c, PING, SOON).await.unwrap(), "+PONG");
    p.partition();
    assert_eq!(
        ask(&mut c, PING, Duration::from_millis(300)).await,
        Err("timed out".into())
    );
    let mut during = connect(&p).await;
    assert_eq!(
        ask(&mut during, PING, Duration::from_millis(300)).await,
        Err("timed out".into())
    );
    p.heal();
    // What was held is delivered, as TCP would retransmit it.
    assert_eq!(read_line(&mut c, SOON).await.unwrap(), "+PONG");
    assert_eq!(read_line(&mut during, SOON).await.unwrap(), "+PONG");
    assert_eq!(ask(&mut c, PING, SOON).await.unwrap(), "+PONG");
}

#[tokio::test]
async fn resets_cut_connections_mid_stream_and_on_command() {
    let p = proxy().await;
    let mut c = connect(&p).await;
    assert_eq!(ask(&mut c, PING, SOON).await.unwrap(), "+PONG");
    p.reset_all();
    let answer = ask(&mut c, PING, SOON).await;
    assert!(answer.is_err(), "{answer:?}");
    assert_ne!(answer.unwrap_err(), "timed out");

    // A connection reset once it has carried 100 bytes: a 1 KB request never arrives.
    p.set_link(LinkFaults {
        reset_after: Some(100),
        ..Default::default()
    });
    let mut c = connect(&p).await;
    assert_eq!(ask(&mut c, PING, SOON).await.unwrap(), "+PONG");
    let value = vec![b'y'; 1000];
    let mut set = format!(
        "*3\r\n$3\r\nSET\r\n$22\r\nmux-netfault-reset-key\r\n${}\r\n",
        value.len()
    )
    .into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    let answer = ask(&mut c, &set, SOON).await;
    assert!(answer.is_err(), "{answer:?}");
    assert_ne!(answer.unwrap_err(), "timed out");
    assert_eq!(p.stats().resets, 2);
    p.set_link(LinkFaults::default());
    let mut check = connect(&p).await;
    let get = b"*2\r\n$3\r\nGET\r\n$22\r\nmux-netfault-reset-key\r\n";
    assert_eq!(
        ask(&mut check, get, SOON).await.unwrap(),
        "$-1",
        "nothing was stored"
    );
}
