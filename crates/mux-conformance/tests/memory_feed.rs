//! The feed contract over the in-process feed.

use std::sync::Arc;

use mux_core::MemoryFeed;
use mux_core::feed::Coalesced;

#[tokio::test]
async fn memory_feed_keeps_the_contract() {
    mux_conformance::feed::check(Arc::new(MemoryFeed::new("memory")))
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_feed_reports_positions_out_of_retention() {
    mux_conformance::feed::check_retention(Arc::new(MemoryFeed::with_retention("small", 10)), 50)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_publishes_keep_the_contract() {
    mux_conformance::feed::check(Arc::new(Coalesced::new(Arc::new(MemoryFeed::new(
        "memory",
    )))))
    .await
    .unwrap();
}
