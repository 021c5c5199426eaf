//! The conformance suite against the test DynamoDB server, in both batch modes: with
//! transactions at the default partition depth 2 (every prefix the suite lists lies in
//! one partition), and with concurrent puts at depth 3, where the suite's cleanup lists
//! its root prefix through the partition index. (`tests/listing.rs` checks shallow
//! prefixes against the byte-ordered model; the suite at depth 4 would put each of its
//! 1,500 pagination keys in a partition of its own, which the test server answers too
//! slowly.)

mod common;

use std::sync::Arc;

use mux_dynamodb::{BatchWrites, DynamoDbConfig};

async fn passes(config: DynamoDbConfig) {
    let backend = common::connect(config).await;
    let report = mux_conformance::run(Arc::new(backend.clone())).await;
    println!("{report}");
    common::drop_table(&backend).await;
    assert!(report.all_passed(), "{report}");
    // This store keeps no history: only the history cases may skip.
    assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_with_transactional_batches() {
    passes(common::config("conf")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_with_concurrent_batches_at_depth_3() {
    passes(
        common::config("conf-concurrent")
            .with_batch_writes(BatchWrites::Concurrent)
            .with_partition_depth(3),
    )
    .await;
}
