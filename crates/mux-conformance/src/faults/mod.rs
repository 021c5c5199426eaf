//! The fault mode: the write, read and list contract checked while requests and
//! responses are lost and calls are slow.
//!
//! [`run_under_faults`] arms one fault before each operation of its cases and checks
//! what the adapter answers against what its store then holds:
//! - a write reported `Applied` (or `Superseded`) is what the store holds — no write
//!   is acknowledged that the store never took, and no lost write is called
//!   superseded;
//! - an error caused by a lost request or response is temporary (so a coordinator
//!   retries it), and retrying the same write converges: `Applied`, or `Superseded`
//!   at exactly its own version when the lost attempt had already landed;
//! - a read under a fault returns the stored record or a temporary error — never
//!   "missing" for a key that exists, never another version;
//! - a `Mux` over the adapter and two memory backends keeps its `All` and `Quorum`
//!   promises under the same faults.
//!
//! Where the faults sit: connect a networked adapter through [`Faults::proxy`] (a TCP
//! proxy to its real store) or put [`Faults::wrap`] beneath an in-process store, and
//! the faults hit the adapter's own transport. When the factory wires neither, the
//! suite wraps the adapter from above, which still checks idempotent retries and the
//! truth of every outcome, but not the adapter's own error classification.

mod cases;
mod layer;
mod proxy;

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mux_core::{Backend, Result};

pub use cases::FAULT_CASES;
pub use layer::FaultLayer;

use crate::context::splitmix;
use crate::{CaseOutcome, CaseReport, Ctx, Report};

/// A fault armed before one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// No fault.
    None,
    /// The next request is lost before it reaches the store (the connection drops).
    LoseRequest,
    /// The next request reaches the store and is carried out; its response is lost
    /// (the connection drops once the store answers).
    LoseResponse,
    /// Every request and response is delayed (see [`Faults::with_delay`]).
    Slow,
}

/// What a request-level fault did (one-shot faults only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    LoseRequest,
    LoseResponse,
}

/// Shared fault state: what is armed, and what fired.
#[derive(Debug)]
pub(crate) struct State {
    seed: u64,
    armed: Mutex<Fault>,
    delay: Duration,
    beneath: AtomicBool,
    lost_requests: AtomicU64,
    lost_responses: AtomicU64,
}

impl State {
    fn mark_beneath(&self) {
        self.beneath.store(true, Ordering::SeqCst);
    }

    /// Takes the armed one-shot fault for the request being sent now, if any.
    pub(crate) fn take_request_fault(&self) -> Option<Injected> {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let injected = match *armed {
            Fault::LoseRequest => {
                self.lost_requests.fetch_add(1, Ordering::SeqCst);
                Injected::LoseRequest
            }
            Fault::LoseResponse => {
                self.lost_responses.fetch_add(1, Ordering::SeqCst);
                Injected::LoseResponse
            }
            Fault::None | Fault::Slow => return None,
        };
        *armed = Fault::None;
        Some(injected)
    }

    /// Sleeps while `Slow` is armed.
    pub(crate) async fn delay(&self) {
        let slow = *self.armed.lock().unwrap_or_else(|p| p.into_inner()) == Fault::Slow;
        if slow {
            tokio::time::sleep(self.delay).await;
        }
    }
}

/// The faults of a fault-mode run, shared by the suite and the injection points the
/// factory wires in ([`Faults::proxy`], [`Faults::wrap`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Faults {
    state: Arc<State>,
}

impl Faults {
    /// Faults drawn reproducibly from `seed` (print it to replay a failing run).
    pub fn new(seed: u64) -> Faults {
        Faults {
            state: Arc::new(State {
                seed,
                armed: Mutex::new(Fault::None),
                delay: Duration::from_millis(20),
                beneath: AtomicBool::new(false),
                lost_requests: AtomicU64::new(0),
                lost_responses: AtomicU64::new(0),
            }),
        }
    }

    /// Sets how long a `Slow` fault delays each request and response (default 20 ms).
    pub fn with_delay(mut self, delay: Duration) -> Faults {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.delay = delay;
        }
        self
    }

    /// The seed the faults are drawn from.
    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// Wraps an in-process store in a layer driven by these faults, to be put beneath
    /// the adapter under test (between it and its store).
    pub fn wrap(&self, store: Arc<dyn Backend>) -> Arc<dyn Backend> {
        self.state.mark_beneath();
        Arc::new(FaultLayer::new(store, self.clone()))
    }

    /// Whether the factory put an injection point beneath the adapter.
    pub fn beneath(&self) -> bool {
        self.state.beneath.load(Ordering::SeqCst)
    }

    /// Arms `fault` for the next request (`Slow`: for every request until disarmed).
    pub fn arm(&self, fault: Fault) {
        *self.state.armed.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Disarms whatever is armed.
    pub fn disarm(&self) {
        self.arm(Fault::None);
    }

    /// The n-th fault of the draw for `case`: lost requests, lost responses, slow calls
    /// and no fault, in equal shares.
    pub fn draw(&self, case: &str, n: u64) -> Fault {
        let name = case.bytes().fold(0u64, |h, b| splitmix(h ^ u64::from(b)));
        match splitmix(self.state.seed ^ name ^ splitmix(n)) % 4 {
            0 => Fault::LoseRequest,
            1 => Fault::LoseResponse,
            2 => Fault::Slow,
            _ => Fault::None,
        }
    }

    /// How many requests and responses have been lost so far.
    pub fn fired(&self) -> (u64, u64) {
        (
            self.state.lost_requests.load(Ordering::SeqCst),
            self.state.lost_responses.load(Ordering::SeqCst),
        )
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }
}

/// Runs every fault case, asking `factory` for the backend before each case.
///
/// When the factory wired no injection point beneath the adapter ([`Faults::proxy`],
/// [`Faults::wrap`]), the suite wraps the adapter from above. The report names the
/// seed in its backend line so a failing run can be replayed.
pub async fn run_under_faults<F, Fut>(mut factory: F, faults: Faults) -> Report
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Backend>>>,
{
    let mut report = Report::default();
    for case in FAULT_CASES {
        let started = Instant::now();
        faults.disarm();
        let outcome = match factory().await {
            Err(e) => CaseOutcome::Failed(format!("the backend factory failed: {e}")),
            Ok(backend) => {
                if report.backend.is_empty() {
                    report.backend = format!(
                        "{} under faults (seed {}, injected {})",
                        backend.info().name,
                        faults.seed(),
                        if faults.beneath() {
                            "beneath the adapter"
                        } else {
                            "above the adapter"
                        }
                    );
                }
                let backend = if faults.beneath() {
                    backend
                } else {
                    Arc::new(FaultLayer::new(backend, faults.clone())) as Arc<dyn Backend>
                };
                let ctx = Ctx::new(backend);
                let result = (case.run)(&ctx, &faults).await;
                faults.disarm();
                crate::outcome(result, ctx.cleanup().await)
            }
        };
        report.cases.push(CaseReport {
            name: case.name,
            outcome,
            elapsed: started.elapsed(),
        });
    }
    report
}
