//! The feed contract over the in-process feed.

use std::sync::Arc;

use mux_core::MemoryFeed;

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
