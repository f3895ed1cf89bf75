//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers
//! and every background task — writer, dispatcher, retention — runs).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: String,
    pub version: String,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Ready {
    /// `ready` when the database answered.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The applied schema version.
    pub schema_version: i64,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The database answers: this node can take traffic.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Ready),
              (status = 503, description = "The database does not answer, or a background task (writer, dispatcher, retention) is down and restarting: the message says which; `Retry-After` says when to ask again", body = super::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    if let Some(why) = state.tasks.down() {
        return Err(ApiError::Unavailable(why));
    }
    let version = state.store.schema_version().await.map_err(|e| {
        ApiError::Unavailable(e.outage().unwrap_or("the database does not answer").into())
    })?;
    Ok(Json(Ready {
        status: "ready".into(),
        database: match state.store.kind() {
            crate::config::DatabaseKind::Sqlite => "sqlite",
            crate::config::DatabaseKind::Postgres => "postgres",
        }
        .into(),
        schema_version: version,
    }))
}
