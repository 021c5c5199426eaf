//! A TCP proxy between an adapter and its real store, driven by [`Faults`]: it loses
//! the next request (drops it and resets the connection), loses the next response
//! (forwards the request, lets the store answer, then drops the answer and resets),
//! or delays every chunk.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Faults, Injected, State};

impl Faults {
    /// Starts a proxy on `127.0.0.1` (a free port) to `upstream` (`host:port`), driven
    /// by these faults, and returns the address to connect the adapter to. The proxy
    /// lives as long as these `Faults` (its task stops when they are dropped).
    ///
    /// Connect the adapter under test through it and the fault mode injects its faults
    /// on the wire: the adapter's own error handling, retries and timeouts are tested.
    pub async fn proxy(&self, upstream: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.state.mark_beneath();
        let state = Arc::downgrade(&self.state);
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Some(state) = state.upgrade() else {
                    return;
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay(client, server, state).await;
                    }
                });
            }
        });
        Ok(addr)
    }
}

/// Relays one connection until either side closes or a fault cuts it.
async fn relay(client: TcpStream, server: TcpStream, state: Arc<State>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    // Set when this connection carried the request whose response is to be lost.
    let mut cut_on_answer = false;
    loop {
        tokio::select! {
            read = client_rx.read(&mut up) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                match state.take_request_fault() {
                    Some(Injected::LoseRequest) => return, // dropped: both sides close
                    Some(Injected::LoseResponse) => cut_on_answer = true,
                    None => {}
                }
                state.delay().await;
                if server_tx.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            read = server_rx.read(&mut down) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                if cut_on_answer {
                    return; // the store answered; the answer is lost with the connection
                }
                state.delay().await;
                if client_tx.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
