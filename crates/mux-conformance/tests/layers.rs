//! Every resilience layer, alone and stacked as the coordinator stacks them, keeps the
//! `Backend` contract: each wrapped around `MemoryBackend` passes the whole suite.

use std::sync::Arc;
use std::time::Duration;

use mux_conformance::run;
use mux_core::resilience::{
    BreakerConfig, Bulkhead, BulkheadConfig, CircuitBreaker, Instrumented, Timeout,
};
use mux_core::{Backend, MemoryBackend, ResilienceConfig};

async fn passes(backend: Arc<dyn Backend>) {
    let report = run(backend).await;
    assert!(report.all_passed(), "{report}");
}

fn memory() -> MemoryBackend {
    MemoryBackend::new("memory")
}

#[tokio::test]
async fn timeout_passes_the_suite() {
    passes(Arc::new(Timeout::new(memory(), Duration::from_secs(30)))).await;
}

#[tokio::test]
async fn bulkhead_passes_the_suite() {
    passes(Arc::new(Bulkhead::new(memory(), BulkheadConfig::default()))).await;
}

#[tokio::test]
async fn circuit_breaker_passes_the_suite() {
    passes(Arc::new(CircuitBreaker::new(
        memory(),
        BreakerConfig::default(),
    )))
    .await;
}

#[tokio::test]
async fn instrumented_passes_the_suite() {
    passes(Arc::new(Instrumented::new(memory()))).await;
}

#[tokio::test]
async fn the_coordinators_stack_passes_the_suite() {
    passes(Arc::new(ResilienceConfig::default().stack(memory()))).await;
}
