//! [`CoarseTimeout`], the timeout layer's timer: one coarse clock shared by every call
//! of a layer, in place of a tokio timer per call.
//!
//! A tokio timer takes the runtime's one timer-wheel lock when it is armed and again when
//! it is dropped, so two timers per backend call (this layer's and the client's own) were
//! about a fifth of a Redis read's samples on its calling task, much of it waiting for
//! that lock on the other core. A call that does not finish at its first poll instead puts its deadline and
//! waker into a slab of this thread's shard (one uncontended lock, no allocation once the
//! slab has grown) and takes them out when it ends. One ticker task per watchdog, running
//! only while calls are waiting, wakes every `tick` and wakes the calls whose deadline has
//! passed; a woken call sees its deadline passed and fails. A call therefore times out
//! between its limit and its limit plus one tick (an eighth of the limit, at most a second).

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use super::shard::{Padded, SHARDS, home};

/// Deadlines of the calls of one timeout layer that are waiting for an answer.
#[derive(Debug)]
struct Watchdog {
    shards: [Padded<Mutex<Slab<Waiting>>>; SHARDS],
    tick: Duration,
    /// A ticker task is running (or being spawned) for this watchdog.
    ticking: AtomicBool,
}

#[derive(Debug)]
struct Waiting {
    deadline: Instant,
    waker: Waker,
}

/// A call's place in the watchdog; dropping it takes the call out.
#[derive(Debug)]
struct Armed<'a> {
    dog: &'a Watchdog,
    shard: usize,
    key: usize,
    deadline: Instant,
}

impl Watchdog {
    /// A watchdog for calls limited to `timeout`.
    fn new(timeout: Duration) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            shards: Default::default(),
            tick: (timeout / 8).clamp(Duration::from_millis(1), Duration::from_secs(1)),
            ticking: AtomicBool::new(false),
        })
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, Slab<Waiting>> {
        // A panic while a shard is held leaves nothing half-done (slab operations are
        // whole), so a poisoned shard is used as it is.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches a call that must end by `deadline`, waking `waker` once it has passed.
    ///
    /// Starts the ticker on the current tokio runtime when none is running, and panics
    /// where a tokio timer would: outside a runtime, or in one without its time driver.
    fn arm<'a>(self: &'a Arc<Self>, deadline: Instant, waker: &Waker) -> Armed<'a> {
        let shard = home();
        let key = self.shard(shard).insert(Waiting {
            deadline,
            waker: waker.clone(),
        });
        let armed = Armed {
            dog: self,
            shard,
            key,
            deadline,
        };
        // Pairs with the ticker's fence when it stops: either it sees this call, or this
        // call sees it stopped and starts another.
        fence(Ordering::SeqCst);
        if !self.ticking.load(Ordering::SeqCst)
            && self
                .ticking
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // Armed in the caller's context, so a missing runtime or time driver panics
            // here as a tokio timer would, not silently in the task.
            let first = tokio::time::sleep(self.tick);
            let me = Ticker {
                dog: Arc::downgrade(self),
                ticking: true,
            };
            tokio::spawn(ticker(me, first));
        }
        armed
    }

    /// Wakes the calls whose deadline has passed; returns how many calls are watched.
    fn fire(&self, now: Instant) -> usize {
        let mut due = Vec::new();
        let mut watched = 0;
        for i in 0..SHARDS {
            let mut shard = self.shard(i);
            watched += shard.len();
            for (_, waiting) in shard.iter_mut() {
                if waiting.deadline <= now {
                    // Woken once: it stays until its call takes it out, with a no-op waker.
                    due.push(std::mem::replace(&mut waiting.waker, Waker::noop().clone()));
                    waiting.deadline = now + Duration::from_secs(86_400 * 365);
                }
            }
        }
        // Woken outside the shards' locks.
        due.into_iter().for_each(Waker::wake);
        watched
    }

    fn watched(&self) -> usize {
        (0..SHARDS).map(|i| self.shard(i).len()).sum()
    }
}

impl Armed<'_> {
    /// Whether the call's deadline has passed.
    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Wakes `waker` at the deadline (a call polled by another task than before).
    fn rewake(&self, waker: &Waker) {
        let mut shard = self.dog.shard(self.shard);
        if let Some(waiting) = shard.get_mut(self.key)
            && !waiting.waker.will_wake(waker)
        {
            waiting.waker = waker.clone();
        }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.dog.shard(self.shard).try_remove(self.key);
    }
}

/// A time limit for many concurrent calls on one shared, coarse timer: what the
/// [`Timeout`](super::Timeout) layer uses, for adapters that bound their client's
/// requests the same way (mux-redis bounds each Redis reply with it).
///
/// A call that finishes at its first poll costs nothing; one that waits takes a place in
/// a slab of its thread's shard and gives it back when it ends (no tokio timer, no
/// allocation once the slab has grown). One ticker task per `CoarseTimeout` (its clones
/// share it), running only while calls wait, wakes the late ones: a call fails between
/// its limit and its limit plus an eighth of it (at most a second more).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use mux_core::resilience::CoarseTimeout;
///
/// let limit = CoarseTimeout::new(Duration::from_secs(2));
/// assert_eq!(limit.run(async { 7 }).await.unwrap(), 7);
/// let slow = tokio::time::sleep(Duration::from_secs(60));
/// assert!(limit.run(slow).await.is_err());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CoarseTimeout {
    dog: Arc<Watchdog>,
    limit: Duration,
}

/// The error of a call that did not finish within its [`CoarseTimeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(Duration);

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for Elapsed {}

impl CoarseTimeout {
    /// Calls fail once they have waited `limit`.
    pub fn new(limit: Duration) -> CoarseTimeout {
        CoarseTimeout {
            dog: Watchdog::new(limit),
            limit,
        }
    }

    /// The limit of each call.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Runs `call`, or fails with [`Elapsed`] once it has waited past the limit (the call
    /// is then dropped).
    ///
    /// # Panics
    ///
    /// Where a tokio timer would, if `call` waits: outside a tokio runtime, or in one
    /// without its time driver.
    pub async fn run<F: Future>(&self, call: F) -> Result<F::Output, Elapsed> {
        let mut call = std::pin::pin!(call);
        // Armed only by a call that does not finish at its first poll; dropping it (when
        // the call ends or is cancelled) takes the call out of the watchdog.
        let mut armed: Option<Armed<'_>> = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = call.as_mut().poll(cx) {
                return Poll::Ready(Ok(r));
            }
            match &armed {
                None => armed = Some(self.dog.arm(Instant::now() + self.limit, cx.waker())),
                Some(a) if a.expired() => return Poll::Ready(Err(Elapsed(self.limit))),
                Some(a) => a.rewake(cx.waker()),
            }
            Poll::Pending
        })
        .await
    }
}

/// The ticker's hold on its watchdog. Dropped while it still ticks (its runtime shut
/// down, even before its first poll), it marks the watchdog as not ticking, so that the
/// next call that waits starts another.
struct Ticker {
    dog: Weak<Watchdog>,
    ticking: bool,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(dog) = self.dog.upgrade().filter(|_| self.ticking) {
            dog.ticking.store(false, Ordering::SeqCst);
        }
    }
}

async fn ticker(mut me: Ticker, first: tokio::time::Sleep) {
    first.await;
    loop {
        let Some(dog) = me.dog.upgrade() else {
            return;
        };
        if dog.fire(Instant::now()) == 0 {
            me.ticking = false;
            dog.ticking.store(false, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // A call armed after the count above either saw `ticking` still true (then
            // it is counted here) or saw it false and started a ticker of its own.
            me.ticking = dog.watched() > 0
                && dog
                    .ticking
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
            if !me.ticking {
                return;
            }
        }
        let tick = dog.tick;
        drop(dog);
        tokio::time::sleep(tick).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_late_call_fails_within_a_tick_of_its_limit_and_the_ticker_stops_when_idle() {
        let limit = CoarseTimeout::new(Duration::from_secs(8));
        let started = Instant::now();
        let r = limit.run(std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed(Duration::from_secs(8))));
        let late = started.elapsed();
        assert!(
            late >= Duration::from_secs(8) && late <= Duration::from_secs(9),
            "{late:?}"
        );
        assert_eq!(limit.dog.watched(), 0, "the call took itself out");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !limit.dog.ticking.load(Ordering::SeqCst),
            "the ticker stopped once idle"
        );
        // And starts again for the next call that waits.
        let r = limit.run(tokio::time::sleep(Duration::from_secs(1))).await;
        assert_eq!(r, Ok(()));
        assert!(limit.run(std::future::pending::<()>()).await.is_err());
    }

    #[tokio::test]
    async fn calls_that_end_in_time_leave_nothing_behind() {
        let limit = CoarseTimeout::new(Duration::from_secs(10));
        let armed: Vec<_> = (0..100)
            .map(|i| {
                let deadline = Instant::now() + Duration::from_secs(10 + i);
                limit.dog.arm(deadline, Waker::noop())
            })
            .collect();
        assert_eq!(limit.dog.watched(), 100);
        assert_eq!(limit.dog.fire(Instant::now()), 100, "none due yet");
        drop(armed);
        assert_eq!(limit.dog.watched(), 0);
        let quick = limit
            .run(tokio::time::sleep(Duration::from_millis(5)))
            .await;
        assert_eq!(quick, Ok(()));
        assert_eq!(limit.dog.watched(), 0);
    }

    #[test]
    fn a_ticker_lost_with_its_runtime_is_replaced_on_the_next() {
        let limit = CoarseTimeout::new(Duration::from_millis(40));
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        };
        let first = runtime();
        first.block_on(async {
            // Cut off early (or, on a stalled machine, failed by its limit): either way
            // the ticker has not yet seen the call leave.
            let waiting = limit.run(std::future::pending::<()>());
            let _ = tokio::time::timeout(Duration::from_millis(5), waiting).await;
        });
        assert!(
            limit.dog.ticking.load(Ordering::SeqCst),
            "its ticker still runs"
        );
        drop(first);
        assert!(
            !limit.dog.ticking.load(Ordering::SeqCst),
            "dropped with its runtime"
        );
        let second = runtime();
        second.block_on(async {
            let waiting = limit.run(std::future::pending::<()>());
            let r = tokio::time::timeout(Duration::from_secs(5), waiting).await;
            assert_eq!(
                r.expect("a new ticker woke it"),
                Err(Elapsed(limit.limit()))
            );
        });
    }
}
