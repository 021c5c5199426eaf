//! The span of each request, REST and gRPC: its request id and the caller's trace.

use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::Extractor;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The request id header, taken from the caller or generated, and echoed.
const REQUEST_ID: &str = "x-request-id";

/// Reads W3C trace context out of HTTP headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's request id when it is a sane one (1–128 visible ASCII characters),
/// else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(fresh_id, str::to_owned)
}

/// 128 random bits in hex.
fn fresh_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

/// A request's span: continues the caller's trace when its headers carry one.
fn span(headers: &HeaderMap, kind: &str, name: &str, id: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %name,
        otel.kind = "server",
        rpc.system = kind,
        request_id = %id,
        status = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    // Without a tracing layer there is nothing to attach the parent to.
    let _ = span.set_parent(parent);
    span
}

fn echo(headers: &mut HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID, value);
    }
}

/// REST middleware (a route layer, so the route's pattern names the span).
pub(crate) async fn trace_request(request: Request, next: Next) -> Response {
    let id = request_id(request.headers());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let name = format!("{} {route}", request.method());
    let span = span(request.headers(), "http", &name, &id);
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    // The access log: one line per request, at DEBUG (`RUST_LOG=muxd::access=debug`).
    span.in_scope(|| {
        tracing::debug!(
            target: "muxd::access",
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "{name}"
        );
    });
    echo(response.headers_mut(), &id);
    response
}

/// The same for gRPC: a tower layer around tonic's service (the span is named by the
/// method's path, `/mux.v1.Mux/Put`).
pub(crate) fn grpc_layer() -> GrpcTraceLayer {
    GrpcTraceLayer
}

/// See [`grpc_layer`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrpcTraceLayer;

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;
    fn layer(&self, inner: S) -> GrpcTrace<S> {
        GrpcTrace { inner }
    }
}

/// See [`grpc_layer`].
#[derive(Clone, Debug)]
pub(crate) struct GrpcTrace<S> {
    inner: S,
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for GrpcTrace<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let id = request_id(request.headers());
        let span = span(request.headers(), "grpc", request.uri().path(), &id);
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let mut response = call.await?;
                let status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(0);
                tracing::Span::current().record("status", status);
                echo(response.headers_mut(), &id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}
