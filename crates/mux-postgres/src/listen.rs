//! A dedicated `LISTEN` connection, kept up in the background, whose notifications wake
//! waiting readers (the change feed's wake-ups; polling covers whatever it misses).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};

use crate::connect::Target;

/// What a feed shares with its `LISTEN` task.
pub(crate) struct Wakeups {
    /// Bumped on every wake-up (a notification, a local publish, a reconnect).
    pub(crate) wake: watch::Sender<u64>,
    /// The `LISTEN` connection's backend pid; 0 while it is down.
    pub(crate) listener_pid: AtomicI32,
}

impl Default for Wakeups {
    fn default() -> Wakeups {
        Wakeups {
            wake: watch::channel(0).0,
            listener_pid: AtomicI32::new(0),
        }
    }
}

pub(crate) fn bump(n: &mut u64) {
    *n = n.wrapping_add(1);
}

/// Keeps a `LISTEN <channel>` connection up, reconnecting with backoff (1 s doubling to
/// 30 s), and turns its notifications into wake-ups. Ends when the feed is dropped.
pub(crate) async fn listen(target: Target, channel: String, shared: Arc<Wakeups>) {
    const FIRST: Duration = Duration::from_secs(1);
    let mut backoff = FIRST;
    loop {
        let started = Instant::now();
        let end = match &target.tls {
            None => match target.pg.connect(NoTls).await {
                Ok((client, conn)) => session(client, conn, &channel, &shared).await,
                Err(e) => Err(e),
            },
            Some(tls) => match target.pg.connect(tls.clone()).await {
                Ok((client, conn)) => session(client, conn, &channel, &shared).await,
                Err(e) => Err(e),
            },
        };
        shared.listener_pid.store(0, Ordering::SeqCst);
        if started.elapsed() > Duration::from_secs(60) {
            backoff = FIRST;
        }
        tracing::warn!(channel, error = ?end.err(), "feed LISTEN connection lost; readers poll until it is back");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn session<S, T>(
    client: Client,
    mut conn: Connection<S, T>,
    channel: &str,
    shared: &Wakeups,
) -> std::result::Result<(), tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    // Drives the connection (the client's queries too) and wakes readers per notification.
    let mut driver = std::pin::pin!(std::future::poll_fn(move |cx| loop {
        match std::task::ready!(conn.poll_message(cx)) {
            Some(Ok(AsyncMessage::Notification(_))) => shared.wake.send_modify(bump),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Poll::Ready(Err(e)),
            None => return Poll::Ready(Ok(())),
        }
    }));
    let setup = async {
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        let row = client.query_one("SELECT pg_backend_pid()", &[]).await?;
        Ok::<i32, tokio_postgres::Error>(row.get(0))
    };
    let pid = tokio::select! {
        pid = setup => pid?,
        end = &mut driver => return end,
    };
    shared.listener_pid.store(pid, Ordering::SeqCst);
    // Whatever was appended while no one listened: let the readers look.
    shared.wake.send_modify(bump);
    let end = driver.await;
    drop(client);
    end
}
