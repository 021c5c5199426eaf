//! What mux's AWS adapters (`mux-s3`, `mux-dynamodb`, `mux-ssm`) share.
//!
//! - [`Connection`] and [`Connection::load`]: one `SdkConfig` built the same way for
//!   every service — rustls on ring (no aws-lc C build), the standard credentials chain
//!   unless explicit keys are given, an optional endpoint for local servers (moto,
//!   MinIO, DynamoDB Local, ScyllaDB Alternator), timeouts and the SDK's own retries
//!   (one attempt by default: the coordinator retries temporary errors itself).
//! - [`map_sdk`]: an SDK error as a mux [`Error`](mux_core::Error), with the service's
//!   error code kept in [`Failure`] and the common classification (throttling and 5xx
//!   temporary, other 4xx permanent) in [`classify`].
//!
//! Each adapter keeps its own config fields (its TOML table) and turns them into a
//! [`Connection`]; the service-specific client config is built from the returned
//! `SdkConfig`.

mod connection;
mod error;

pub use connection::{Connection, connection_problems};
pub use error::{Failure, classify, map_sdk};
