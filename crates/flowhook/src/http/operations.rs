//! Operator endpoints: Prometheus `/metrics` and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::AppState;
use crate::store::deliveries::DeliveryStatus;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
}

/// Prometheus metrics (OpenMetrics text). With `metrics_token` configured, only for
/// `Authorization: Bearer <metrics_token>`. Labels name connectors by id: no host, no tenant.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in the OpenMetrics text format", content_type = "application/openmetrics-text"),
              (status = 401, description = "`metrics_token` is configured and was not given")))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            token.as_bytes(),
        )) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the metrics token\n",
            )
                .into_response();
        }
    }
    // Gauges read at scrape time: the delivery queue and the breakers.
    match state.store.delivery_stats(crate::support::now_ms()).await {
        Ok(stats) => {
            for status in [
                DeliveryStatus::Pending,
                DeliveryStatus::Dead,
                DeliveryStatus::Cancelled,
            ] {
                let n = stats
                    .by_status
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                let labels = crate::telemetry::StatusLabels {
                    status: status.as_str().into(),
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
    breaker_states(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Sets the breaker gauge of every connector whose organisation's endpoint has a breaker on
/// this node (connectors deleted since drop out).
async fn breaker_states(state: &AppState) {
    use crate::delivery::breaker::{EndpointKey, State};
    let states = state.breakers.states();
    let mut corps: Vec<&str> = states.iter().map(|(k, _, _)| k.corp_id.as_str()).collect();
    corps.dedup();
    state.metrics.breaker_state.clear();
    for corp in corps {
        let connectors = match state.store.connectors(corp, None).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading connectors for /metrics failed");
                continue;
            }
        };
        for (connector, _) in connectors {
            let key = EndpointKey::new(corp, &connector.base_url);
            let Some((_, s, _)) = states.iter().find(|(k, _, _)| k == &key) else {
                continue;
            };
            let value = match s {
                State::Closed => 0,
                State::HalfOpen => 1,
                State::Open => 2,
            };
            state
                .metrics
                .breaker_state
                .get_or_create(&crate::telemetry::ConnectorLabels {
                    connector: connector.id,
                })
                .set(value);
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document of this API")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}
