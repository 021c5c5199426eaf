//! [`Conn`]: the backend's one multiplexed connection, its replies bounded by mux's
//! shared coarse timer instead of the redis crate's timer per request.

use std::io;

use mux_core::resilience::CoarseTimeout;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// The connection manager (it reconnects by itself) with its response timeout off, and
/// the backend's `response_timeout` applied by a [`CoarseTimeout`]: the crate's timeout
/// arms a tokio timer for every request, whose one lock both cores take twice a call.
/// A reply that does not come in time fails as the crate's own timeout does (an I/O
/// `TimedOut` error: reported as a timeout, the connection kept).
#[derive(Clone)]
pub(crate) struct Conn {
    manager: ConnectionManager,
    replies: CoarseTimeout,
}

fn timed_out() -> RedisError {
    io::Error::from(io::ErrorKind::TimedOut).into()
}

impl Conn {
    pub(crate) fn new(manager: ConnectionManager, replies: CoarseTimeout) -> Conn {
        Conn { manager, replies }
    }

    /// Sends one command, its server error as an error: `query_async` without its boxed
    /// future and conversion, for the hot paths (reads and single writes).
    pub(crate) async fn send(&self, cmd: &Cmd) -> RedisResult<Value> {
        let mut manager = self.manager.clone();
        let reply = self.replies.run(manager.send_packed_command(cmd)).await;
        match reply.map_err(|_| timed_out())?? {
            Value::ServerError(e) => Err(e.into()),
            reply => Ok(reply),
        }
    }
}

/// For `query_async`, `invoke_async` and `load_async` (listing, batches, purge, health).
impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let reply = self.replies.run(self.manager.send_packed_command(cmd));
            reply.await.map_err(|_| timed_out())?
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let replies = self
                .replies
                .run(self.manager.send_packed_commands(pipeline, offset, count));
            replies.await.map_err(|_| timed_out())?
        })
    }

    fn get_db(&self) -> i64 {
        self.manager.get_db()
    }
}
