//! The HTTP interface: one module per resource, each exposing `router()`, merged here with the
//! cross-cutting layers (body limit, JSON errors, metrics, tracing).
//!
//! Handlers translate between HTTP and the layers below; they hold no business rules.

pub mod auth;
mod deliveries;
pub mod error;
mod health;
mod ingest;
pub mod instances;
pub mod integration;
mod json;
mod operations;
pub mod orgs;
pub mod people;
pub mod processes;
mod query;
mod schema;
pub mod tasks;
pub mod validate;

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

/// What every handler can reach: one allocation shared by every request (axum clones the
/// state for each extractor; a clone is one reference count, not one per field).
#[derive(Clone)]
pub struct AppState(pub std::sync::Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The contents of [`AppState`].
pub struct SharedState {
    pub store: Store,
    pub metrics: Metrics,
    /// The only path by which commands change state (group commit).
    pub writer: crate::store::writer::Writer,
    /// The background tasks' states: `/readyz` answers 503 while one is down.
    pub tasks: std::sync::Arc<crate::supervise::Tasks>,
    /// The bootstrap admin key, if configured.
    pub admin_key: Option<std::sync::Arc<str>>,
    /// The token `/metrics` asks for, if configured.
    pub metrics_token: Option<std::sync::Arc<str>>,
    /// Wakes the dispatcher (new or redelivered deliveries).
    pub dispatch: std::sync::Arc<tokio::sync::Notify>,
    /// The endpoints' circuit breakers (shared with the dispatcher, shown in /metrics).
    pub breakers: std::sync::Arc<crate::delivery::breaker::Breakers>,
    /// Test fire sends as the dispatcher does: same client settings, same egress policy.
    pub egress: std::sync::Arc<crate::delivery::egress::EgressPolicy>,
    pub delivery_client: reqwest::Client,
    /// Organisations known to exist (there is no deletion, so a hit never goes stale): the
    /// check before each command reads the database only for an unknown one.
    pub known_orgs: std::sync::RwLock<std::collections::HashSet<String>>,
    /// The organisation of each application found (an application is never deleted nor moved,
    /// so a hit never goes stale; at most [`KNOWN_APPS`]): an ingest call reads no database
    /// for it.
    pub known_apps: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Organisation API keys found, by hash, for [`auth::KEY_TTL`]: a request with a known key
    /// reads no database.
    pub known_keys: crate::support::Recent<crate::store::directory::KeyOwner>,
    /// The console's sessions and single sign-on.
    pub console: crate::console::session::Settings,
    /// Signs approval links (the console checks them; the dispatcher signs each `taskUrl`).
    pub links: std::sync::Arc<crate::delivery::links::Links>,
}

/// Applications [`AppState::known_apps`] keeps at most; it starts over when full.
pub const KNOWN_APPS: usize = 10_000;

impl AppState {
    /// New work for the dispatchers: this node's at once, the others' by `NOTIFY` (PostgreSQL).
    pub async fn wake_dispatchers(&self) {
        self.dispatch.notify_one();
        if let Err(e) = self.store.notify_deliveries().await {
            tracing::warn!(error = %e, "could not notify the other nodes; they will poll");
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Flowhook", description = "Approval task center and reliable, Yida-compatible task event push."),
    paths(health::healthz, health::readyz, operations::metrics, operations::openapi,
        orgs::create_org, orgs::get_org, orgs::create_key, orgs::list_keys, orgs::revoke_key, orgs::create_app, orgs::list_apps, orgs::rotate_token, orgs::commit_token,
        people::put_user, people::get_user, people::list_users, people::delete_user, people::put_role,
        people::list_roles, people::delete_role,
        processes::put_definition, processes::validate, processes::get_definition, processes::versions,
        instances::start, instances::get_one, instances::list, instances::withdraw, instances::terminate,
        instances::delete,
        tasks::act, tasks::list, tasks::counts,
        integration::create_connector, integration::list_connectors, integration::get_connector,
        integration::put_connector, integration::delete_connector, integration::get_action,
        integration::put_action, integration::delete_action, integration::pause_connector,
        integration::resume_connector, integration::connector_health, integration::create_action,
        integration::list_actions, integration::put_strategy, integration::get_strategy,
        integration::list_deliveries, integration::get_delivery, integration::redeliver_one,
        integration::redeliver_many, integration::backfill, integration::job, integration::any_job, integration::rotate_webhook_secret, integration::test_fire,
        integration::check_receiver, integration::list_checks, ingest::ingest, ingest::ingest_batch),
    components(schemas(error::ErrorBody, health::Health, health::Ready)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "operations", description = "Health, readiness, metrics"),
         (name = "organisations", description = "Organisations, API keys, applications"),
         (name = "directory", description = "Users and roles"),
         (name = "processes", description = "Process definitions"),
         (name = "instances", description = "Process instances"),
         (name = "tasks", description = "Task commands"),
         (name = "task center", description = "Each user's created / todo / done / cc lists"),
         (name = "integration", description = "Connectors, actions, sync strategy, deliveries"))
)]
pub struct ApiDoc;

/// Store rows as their wire type (each resource module defines its own and the `From`).
fn wire<T, U: From<T>>(rows: Vec<T>) -> Vec<U> {
    rows.into_iter().map(U::from).collect()
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole router, layers included: the API's, then the console's (HTML pages, with their
/// own error pages and security headers instead of the API's JSON errors).
pub fn router(state: AppState, body_limit_bytes: usize) -> Router {
    let console = crate::console::router()
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(body_limit_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::console::layer,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state.clone());
    Router::new()
        .merge(health::router())
        .merge(operations::router())
        .merge(orgs::router())
        .merge(people::router())
        .merge(processes::router())
        .merge(instances::router())
        .merge(tasks::router())
        .merge(integration::router())
        .merge(ingest::router())
        // Every route: path parameters are ids, no query parameter holds a NUL.
        .route_layer(middleware::from_fn(validate::check_path_and_query))
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
        .merge(console)
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
