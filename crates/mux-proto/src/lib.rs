//! # mux-proto
//!
//! The `mux.v1` gRPC protocol (`proto/mux/v1/store.proto`): the messages, the
//! `Store` client (used by the `mux` CLI) and the `Store` server trait (implemented by
//! muxd). Compiled once here, with protox (pure Rust: no `protoc` needed), so the
//! server and its clients share one copy of the generated code.
//!
//! ```no_run
//! # async fn watch() -> Result<(), Box<dyn std::error::Error>> {
//! use mux_proto::store_client::StoreClient;
//!
//! let mut client = StoreClient::connect("http://127.0.0.1:50051").await?;
//! let mut stream = client
//!     .watch(mux_proto::WatchRequest { prefix: "tenantconfig".into(), ..Default::default() })
//!     .await?
//!     .into_inner();
//! while let Some(event) = stream.message().await? {
//!     println!("{event:?}");
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

/// The generated code, as tonic-prost-build writes it (not documented item by item:
/// `store.proto` is the reference).
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
mod generated {
    tonic::include_proto!("mux.v1");
}

pub use generated::*;
