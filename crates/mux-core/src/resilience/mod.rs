//! Fault tolerance: the intent log and hinted handoff, retries, circuit breakers and
//! bulkheads.

mod breaker;
mod bulkhead;
mod intent;
mod retry;

pub use breaker::{BreakerConfig, CircuitBreaker, CircuitState};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit};
pub use intent::{DeadLetter, IntentLog, IntentLogStats, MemoryIntentLog, PendingIntent, now_ms};
pub(crate) use retry::millis;
pub use retry::{Jitter, RetryPolicy};
