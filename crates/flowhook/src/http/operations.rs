//! Operator endpoints: Prometheus `/metrics` and the OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in the OpenMetrics text format", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Gauges read at scrape time: the delivery queue and the breakers.
    match state.store.delivery_stats(crate::store::now_ms()).await {
        Ok(stats) => {
            for status in ["pending", "dead", "cancelled"] {
                let n = stats
                    .by_status
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                let labels = crate::telemetry::StatusLabels {
                    status: status.into(),
                };
                state.metrics.deliveries.get_or_create(&labels).set(n);
            }
            state
                .metrics
                .oldest_due_age
                .set(stats.oldest_due_age_ms as f64 / 1000.0);
        }
        Err(e) => tracing::warn!(error = %e, "reading delivery statistics for /metrics failed"),
    }
    for (endpoint, s, _) in state.breakers.states() {
        let value = match s {
            crate::delivery::breaker::State::Closed => 0,
            crate::delivery::breaker::State::HalfOpen => 1,
            crate::delivery::breaker::State::Open => 2,
        };
        state
            .metrics
            .breaker_state
            .get_or_create(&crate::telemetry::EndpointLabels { endpoint })
            .set(value);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document of this API")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}
