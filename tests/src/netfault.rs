//! A TCP fault proxy for real servers: placed between mux and a store (PostgreSQL,
//! Redis, moto, Azurite, …), it injects what users of a storage proxy fear on the wire,
//! and a test changes the faults while a run goes on.
//!
//! - Link faults, per chunk relayed: latency and jitter, a bandwidth limit, and a reset
//!   (TCP RST both ways) once a connection has carried a number of bytes.
//! - Connection faults: refuse new connections (accepted, then reset at once), or
//!   blackhole them (accepted, never answered); connections already open keep working.
//! - A partition: every connection, open or new, stops carrying bytes both ways, as
//!   when the network drops packets — clients see timeouts, not errors — until `heal`,
//!   when what was held is delivered (TCP would have retransmitted it).
//! - `reset_all` cuts every open connection now.
//!
//! The proxy binds `127.0.0.1` on a free port; dropping it stops it and closes every
//! connection it relays.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Faults applied to every chunk a connection relays, in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFaults {
    /// Added before each chunk is forwarded.
    pub latency: Duration,
    /// A uniformly random extra delay in `0..=jitter` per chunk.
    pub jitter: Duration,
    /// Bytes per second each direction of a connection may carry (`None`: no limit).
    pub bytes_per_sec: Option<u64>,
    /// Reset the connection (both sides) once it has carried this many bytes, counted
    /// over both directions (`None`: never).
    pub reset_after: Option<u64>,
}

/// What the proxy did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes forwarded from clients to the server.
    pub bytes_up: u64,
    /// Bytes forwarded from the server to clients.
    pub bytes_down: u64,
    /// Connections the proxy reset (refused, `reset_after`, `reset_all`).
    pub resets: u64,
}

#[derive(Debug, Default)]
struct Control {
    link: Mutex<LinkFaults>,
    refuse: AtomicBool,
    blackhole: AtomicBool,
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    resets: AtomicU64,
    draws: AtomicU64,
}

impl Control {
    fn link(&self) -> LinkFaults {
        *self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A uniformly random fraction in `0..1` (splitmix over a counter: reproducible).
    fn unit(&self) -> f64 {
        let mut x = self
            .draws
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A running fault proxy to one upstream server. See the module docs.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    control: Arc<Control>,
    /// `true` while partitioned; every relay waits on it.
    partitioned: watch::Sender<bool>,
    /// Bumped by `reset_all`; every relay resets when it changes.
    generation: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1` (a free port) to `upstream` (`host:port`), with no
    /// faults yet.
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control::default());
        let (partitioned, _) = watch::channel(false);
        let (generation, _) = watch::channel(0u64);
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream.to_owned(),
            control.clone(),
            partitioned.subscribe(),
            generation.subscribe(),
        ));
        Ok(FaultProxy {
            addr,
            control,
            partitioned,
            generation,
            accept,
        })
    }

    /// The address to connect clients to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` of [`FaultProxy::addr`], for URLs.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Sets the link faults (applied to the next chunks of every connection).
    pub fn set_link(&self, faults: LinkFaults) {
        *self.control.link.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Refuses (`true`) new connections: each is reset as soon as it is accepted.
    pub fn refuse(&self, on: bool) {
        self.control.refuse.store(on, Ordering::SeqCst);
    }

    /// Blackholes (`true`) new connections: accepted, their bytes read and dropped,
    /// never answered.
    pub fn blackhole(&self, on: bool) {
        self.control.blackhole.store(on, Ordering::SeqCst);
    }

    /// Partitions the server off: no connection carries bytes until [`FaultProxy::heal`].
    pub fn partition(&self) {
        self.partitioned.send_replace(true);
    }

    /// Ends a partition: held bytes are delivered and traffic flows again.
    pub fn heal(&self) {
        self.partitioned.send_replace(false);
    }

    /// Resets every connection open now.
    pub fn reset_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.control;
        ProxyStats {
            connections: c.connections.load(Ordering::SeqCst),
            bytes_up: c.bytes_up.load(Ordering::SeqCst),
            bytes_down: c.bytes_down.load(Ordering::SeqCst),
            resets: c.resets.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Relays end when they see the generation channel close.
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    control: Arc<Control>,
    partitioned: watch::Receiver<bool>,
    generation: watch::Receiver<u64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        control.connections.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        if control.refuse.load(Ordering::SeqCst) {
            control.resets.fetch_add(1, Ordering::SeqCst);
            reset(&client);
            continue;
        }
        let (control, upstream) = (control.clone(), upstream.clone());
        let (partitioned, mut generation) = (partitioned.clone(), generation.clone());
        tokio::spawn(async move {
            if control.blackhole.load(Ordering::SeqCst) {
                swallow(client, &mut generation).await;
                return;
            }
            let Ok(server) = TcpStream::connect(&upstream).await else {
                control.resets.fetch_add(1, Ordering::SeqCst);
                reset(&client);
                return;
            };
            let _ = server.set_nodelay(true);
            relay(client, server, control, partitioned, generation).await;
        });
    }
}

/// Sends RST instead of FIN when `stream` is closed.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Reads and drops what a blackholed client sends, until it leaves or the proxy stops.
async fn swallow(mut client: TcpStream, generation: &mut watch::Receiver<u64>) {
    generation.mark_unchanged();
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return },
            changed = generation.changed() => if changed.is_err() { return },
        }
    }
}

/// Relays one connection until a side closes, a fault cuts it, or the proxy stops.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    control: Arc<Control>,
    partitioned: watch::Receiver<bool>,
    mut generation: watch::Receiver<u64>,
) {
    generation.mark_unchanged();
    let carried = Arc::new(AtomicU64::new(0));
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    let link = Link {
        control: control.clone(),
        partitioned,
        generation,
        carried,
    };
    let up = pump(client_rx, server_tx, Direction::Up, link.clone());
    let down = pump(server_rx, client_tx, Direction::Down, link);
    tokio::pin!(up, down);
    let outcome = tokio::select! {
        o = &mut up => o,
        o = &mut down => o,
    };
    if outcome == Ended::Reset {
        control.resets.fetch_add(1, Ordering::SeqCst);
    }
    // Dropping the pumps closes both sockets: with RST when a pump cut them.
}

/// What both directions of one connection share.
#[derive(Clone)]
struct Link {
    control: Arc<Control>,
    partitioned: watch::Receiver<bool>,
    generation: watch::Receiver<u64>,
    /// Bytes carried so far, both directions.
    carried: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Closed,
    Reset,
}

/// Makes both sockets of a connection close with RST (`rx` is one socket's read half,
/// `tx` the other's write half).
fn cut(rx: &OwnedReadHalf, tx: &OwnedWriteHalf) -> Ended {
    reset(rx.as_ref());
    reset(tx.as_ref());
    Ended::Reset
}

/// Copies one direction, applying the link faults and the partition.
async fn pump(
    mut rx: OwnedReadHalf,
    mut tx: OwnedWriteHalf,
    direction: Direction,
    mut link: Link,
) -> Ended {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = rx.read(&mut buf) => read,
            // `reset_all`, or the proxy dropped.
            _ = link.generation.changed() => return cut(&rx, &tx),
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = tx.shutdown().await;
                return Ended::Closed;
            }
            Ok(n) => n,
        };
        tokio::select! {
            healed = link.partitioned.wait_for(|p| !*p) => if healed.is_err() {
                return cut(&rx, &tx);
            },
            _ = link.generation.changed() => return cut(&rx, &tx),
        }
        let faults = link.control.link();
        let mut delay = faults.latency + faults.jitter.mul_f64(link.control.unit());
        if let Some(rate) = faults.bytes_per_sec.filter(|r| *r > 0) {
            delay += Duration::from_secs_f64(n as f64 / rate as f64);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let total = link.carried.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if faults.reset_after.is_some_and(|limit| total > limit) {
            return cut(&rx, &tx);
        }
        if tx.write_all(&buf[..n]).await.is_err() {
            return Ended::Closed;
        }
        let counter = match direction {
            Direction::Up => &link.control.bytes_up,
            Direction::Down => &link.control.bytes_down,
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}
