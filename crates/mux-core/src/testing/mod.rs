//! Test helpers for chaos and resilience tests (the `testing` feature).

mod faulty;

pub use faulty::{FaultConfig, FaultyBackend};
