//! # mux-conformance
//!
//! The suite every mux [`Backend`] must pass — ours and third-party adapters alike.
//!
//! Run it from your adapter's own tests:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use mux_core::MemoryBackend;
//!
//! let report = mux_conformance::run(Arc::new(MemoryBackend::new("mine"))).await;
//! assert!(report.all_passed(), "{report}");
//! # }
//! ```
//!
//! Every case runs under a fresh random key prefix (`mux-conformance/<random>/…`) and
//! cleans up after itself (purging where the backend can, tombstoning otherwise). A
//! case is skipped only when the backend's [`mux_core::Capability`] says it lacks what
//! the case needs, and the skip names that capability. The cases are public async
//! functions in [`cases`], so an adapter can also run a single one.
#![deny(missing_docs)]

pub mod cases;
mod context;
mod denied;
pub mod faults;
pub mod feed;
mod report;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use mux_core::{Backend, Result};

pub use context::Ctx;
pub use denied::run_denied;
pub use faults::{Fault, Faults, run_under_faults};
pub use report::{CaseOutcome, CaseReport, Report};

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The backend broke the contract; the text says how.
    Failed(String),
    /// The backend's capability rules the case out; the text names the capability.
    Skipped(String),
}

impl From<mux_core::Error> for Failure {
    fn from(e: mux_core::Error) -> Self {
        Failure::Failed(format!("unexpected error: {e}"))
    }
}

/// The result of one case.
pub type CaseResult = std::result::Result<(), Failure>;

/// A case's outcome from its result and its cleanup's.
pub(crate) fn outcome(result: CaseResult, cleanup: Result<()>) -> CaseOutcome {
    match (result, cleanup) {
        (Ok(()), Ok(())) => CaseOutcome::Passed,
        (Ok(()), Err(e)) => CaseOutcome::Failed(format!("cleanup failed: {e}")),
        (Err(Failure::Failed(why)), _) => CaseOutcome::Failed(why),
        (Err(Failure::Skipped(why)), _) => CaseOutcome::Skipped(why),
    }
}

/// Runs every case against one backend instance.
pub async fn run(backend: Arc<dyn Backend>) -> Report {
    run_with(move || {
        let b = backend.clone();
        async move { Ok(b) }
    })
    .await
}

/// Runs every case, asking `factory` for the backend before each case.
///
/// A factory error fails that case with the error.
pub async fn run_with<F, Fut>(mut factory: F) -> Report
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Backend>>>,
{
    let mut report = Report::default();
    for case in cases::ALL {
        let started = Instant::now();
        let outcome = match factory().await {
            Err(e) => CaseOutcome::Failed(format!("the backend factory failed: {e}")),
            Ok(backend) => {
                if report.backend.is_empty() {
                    report.backend = backend.info().name.to_string();
                }
                let ctx = Ctx::new(backend);
                let result = (case.run)(&ctx).await;
                outcome(result, ctx.cleanup().await)
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
