//! The HTTP interface: one module per resource, each exposing `router()`, merged here with the
//! cross-cutting layers (body limit, JSON errors, metrics, tracing).
//!
//! Handlers translate between HTTP and the layers below; they hold no business rules.

pub mod error;
mod health;
mod operations;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::store::Store;
use crate::telemetry::{HttpLabels, Metrics};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Flowhook", description = "Approval task center and reliable, Yida-compatible task event push."),
    paths(health::healthz, health::readyz, operations::metrics, operations::openapi),
    components(schemas(error::ErrorBody, health::Health, health::Ready)),
    tags((name = "operations", description = "Health, readiness, metrics"))
)]
pub struct ApiDoc;

/// The whole router, layers included.
pub fn router(state: AppState, body_limit_bytes: usize) -> Router {
    Router::new()
        .merge(health::router())
        .merge(operations::router())
        .fallback(|| async { error::ApiError::not_found("no such resource") })
        // Layers run outside-in from the last added: tracing, metrics (final status), JSON
        // errors (so the limits' own 413 is JSON too), then the body limits.
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(body_limit_bytes))
        .layer(middleware::map_response(error::json_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
