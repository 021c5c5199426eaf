//! Fault tolerance: the intent log and hinted handoff, retries, and the layers every
//! backend call goes through (timeouts, circuit breakers, bulkheads, instrumentation).

mod breaker;
mod bulkhead;
mod instrumented;
mod intent;
pub(crate) mod layer;
mod retry;
pub(crate) mod shard;
mod timeout;
mod watchdog;

pub use breaker::{
    BreakerConfig, CallPermit, Circuit, CircuitBreaker, CircuitBreakerLayer, CircuitState,
};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadGate, BulkheadLayer, BulkheadPermit};
pub use instrumented::{CallStats, Instrumented, InstrumentedLayer};
pub use intent::{DeadLetter, IntentLog, IntentLogStats, MemoryIntentLog, PendingIntent, now_ms};
pub use layer::{Identity, Layer, Layers, Stack};
pub(crate) use retry::millis;
pub use retry::{Jitter, RetryPolicy};
pub use timeout::{Timeout, TimeoutLayer};
pub use watchdog::{CoarseTimeout, Elapsed};
