//! Logging (`tracing`, text or JSON) and the Prometheus metrics registry.
//!
//! Each [`Metrics`] owns its registry (no global recorder), so several applications can run in
//! one test process. Labels are bounded: the route *template*, never the raw path.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::config::{Config, LogFormat};

/// Installs the global `tracing` subscriber (once per process; later calls are no-ops).
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Labels of the HTTP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (`/api/v1/…/{id}`), or `unmatched`.
    pub route: String,
    pub status: u16,
}

/// Label of delivery attempt outcomes: `delivered`, or the error kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    /// A connector id (`con_…`): no host, no organisation name.
    pub connector: String,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

/// The metrics of one running application.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily,
    pub delivery_attempts: Family<OutcomeLabels, Counter>,
    pub delivery_latency: Histogram,
    pub deliveries: Family<StatusLabels, Gauge>,
    pub oldest_due_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub breaker_state: Family<ConnectorLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register(
            "flowhook_build",
            "Flowhook version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "flowhook_http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register(
            "flowhook_http_request_duration_seconds",
            "Time to answer an HTTP request",
            http_duration.clone(),
        );
        let delivery_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "flowhook_delivery_attempts",
            "Delivery attempts by outcome (delivered, status, timeout, connect, dns, other)",
            delivery_attempts.clone(),
        );
        let delivery_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "flowhook_delivery_attempt_duration_seconds",
            "Time from sending a delivery to its response",
            delivery_latency.clone(),
        );
        let deliveries = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "flowhook_deliveries",
            "Deliveries not delivered, by status: pending (the queue depth), dead (given up) and cancelled (their connector or action deleted)",
            deliveries.clone(),
        );
        let oldest_due_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "flowhook_delivery_oldest_due_age_seconds",
            "How long the oldest due pending delivery has been waiting",
            oldest_due_age.clone(),
        );
        let breaker_state = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "flowhook_breaker_state",
            "Circuit breaker of each connector's endpoint, as this node sees it: 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        Self {
            deliveries,
            oldest_due_age,
            breaker_state,
            registry: Arc::new(registry),
            http_requests,
            http_duration,
            delivery_attempts,
            delivery_latency,
        }
    }

    /// The Prometheus text exposition (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
