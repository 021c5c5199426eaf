//! Logs and traces.
//!
//! [`init`] installs the process's `tracing` subscriber: log lines on stdout, human
//! readable or JSON, filtered by `RUST_LOG` (else `[telemetry] log_level`); with
//! `[telemetry] otlp_endpoint` set, spans also go to an OpenTelemetry collector over
//! OTLP/gRPC. Every request runs in a span carrying its request id (taken from
//! `X-Request-Id` or generated, echoed in the response) and, when the caller sent a
//! W3C `traceparent`, continuing the caller's trace; the coordinator's own spans
//! (`mux.route`, `mux.write`, `mux.read`, `mux.cache`, `mux.intent_log.append`,
//! `mux.backend`, `mux.hedge`, `mux.read_repair`, `mux.handoff`) are its children.

mod request;

use std::time::Duration;

use mux::{Error, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

pub(crate) use request::{grpc_layer, trace_request};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per event, with the request's span fields (request id, route).
    Json,
}

/// `[telemetry]`: logs and traces.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `"text"` (default) or `"json"`; `--log-format` overrides it.
    pub log_format: LogFormat,
    /// The log filter when `RUST_LOG` is unset (`tracing-subscriber`'s syntax, e.g.
    /// `"info"` or `"info,mux_core=debug"`).
    pub log_level: String,
    /// An OTLP/gRPC collector (e.g. `http://127.0.0.1:4317`): traces are off without it.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the traces.
    pub service_name: String,
    /// How often finished spans are sent, in milliseconds.
    pub export_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Text,
            log_level: "info".into(),
            otlp_endpoint: None,
            service_name: "muxd".into(),
            export_interval_ms: 1000,
        }
    }
}

/// What [`init`] installed; [`Telemetry::shutdown`] sends the spans not yet exported.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the subscriber for `config` (`format` overrides its log format). Call it
/// once, inside the Tokio runtime, before anything logs.
pub fn init(config: &TelemetryConfig, format: Option<LogFormat>) -> Result<Telemetry> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(&env)
            .map_err(|e| Error::invalid_input(format!("RUST_LOG={env:?} is not a filter: {e}")))?,
        _ => EnvFilter::try_new(&config.log_level).map_err(|e| {
            Error::invalid_input(format!(
                "[telemetry] log_level {:?} is not a filter: {e}",
                config.log_level
            ))
        })?,
    };
    let logs = match format.unwrap_or(config.log_format) {
        LogFormat::Text => fmt::layer()
            .with_target(true)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
    .with_filter(filter);
    let (traces, provider) = match &config.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            let provider = tracer_provider(config, endpoint)?;
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            // The request spans and every span of the coordinator, whatever the log
            // level: a trace is only useful whole.
            let wanted = Targets::new()
                .with_target("muxd", LevelFilter::DEBUG)
                .with_target("mux_core", LevelFilter::DEBUG)
                .with_target("mux", LevelFilter::DEBUG);
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("muxd"))
                .with_filter(wanted);
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| Error::invalid_input(format!("cannot install the log subscriber: {e}")))?;
    Ok(Telemetry { provider })
}

fn tracer_provider(config: &TelemetryConfig, endpoint: &str) -> Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| {
            Error::invalid_input(format!(
                "[telemetry] otlp_endpoint {endpoint:?}: cannot build the exporter: {e}"
            ))
        })?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(config.export_interval_ms.max(10)))
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource)
        .build())
}
