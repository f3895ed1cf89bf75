//! The integration center over HTTP: connectors, actions, the approval-task sync strategy, and
//! the delivery log with attempts and redelivery. Credentials are accepted, never shown back in
//! full.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, Scope};
use super::error::ApiError;
use super::instances::page_args;
// Re-exported: the console calls these handlers with a body (and a query) of its own.
pub use super::deliveries::{AttemptView, ConnectorBacklog, Delivery, DeliveryFilter, JobProgress};
pub use super::json::{ApiJson, ApiJsonOrEmpty};
use super::orgs::require_org;
pub use super::query::ApiQuery;
use super::wire;
use super::AppState;
use crate::integration::connectors::{
    Action, ActionInput, Connector, ConnectorInput, ConnectorUpdate, Strategy,
};
use crate::store::connectors::Deletion;
use crate::store::deliveries::{self as log, DeliveryId, DeliveryStatus};
use crate::store::jobs::BackfillRequest;
use crate::store::taskcenter::encode_cursor;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/orgs/{corp_id}/connectors",
            post(create_connector).get(list_connectors),
        )
        .route(
            "/api/v1/orgs/{corp_id}/connectors/{id}",
            get(get_connector)
                .put(put_connector)
                .delete(delete_connector),
        )
        .route(
            "/api/v1/orgs/{corp_id}/connectors/{id}/pause",
            post(pause_connector),
        )
        .route(
            "/api/v1/orgs/{corp_id}/connectors/{id}/resume",
            post(resume_connector),
        )
        .route(
            "/api/v1/orgs/{corp_id}/connectors/{id}/health",
            get(connector_health),
        )
        .route(
            "/api/v1/orgs/{corp_id}/actions",
            post(create_action).get(list_actions),
        )
        .route(
            "/api/v1/orgs/{corp_id}/actions/{id}",
            get(get_action).put(put_action).delete(delete_action),
        )
        .route(
            "/api/v1/orgs/{corp_id}/sync-strategy",
            get(get_strategy).put(put_strategy),
        )
        .route("/api/v1/orgs/{corp_id}/deliveries", get(list_deliveries))
        .route(
            "/api/v1/orgs/{corp_id}/deliveries/redeliver",
            post(redeliver_many),
        )
        .route("/api/v1/orgs/{corp_id}/deliveries/{id}", get(get_delivery))
        .route(
            "/api/v1/orgs/{corp_id}/deliveries/{id}/redeliver",
            post(redeliver_one),
        )
        .route(
            "/api/v1/orgs/{corp_id}/sync-strategy/rotate-webhook-secret",
            post(rotate_webhook_secret),
        )
        .route("/api/v1/orgs/{corp_id}/actions/{id}/test", post(test_fire))
        .route(
            "/api/v1/orgs/{corp_id}/actions/{id}/check",
            post(check_receiver),
        )
        .route(
            "/api/v1/orgs/{corp_id}/actions/{id}/checks",
            get(list_checks),
        )
        .route("/api/v1/orgs/{corp_id}/backfills", post(backfill))
        .route("/api/v1/orgs/{corp_id}/backfills/{id}", get(job))
        .route("/api/v1/orgs/{corp_id}/jobs/{id}", get(any_job))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

/// Register an HTTP connector.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/connectors", tag = "integration", request_body = ConnectorInput,
    responses((status = 201, body = Connector), (status = 422, body = super::error::ErrorBody)))]
pub async fn create_connector(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiJson(input): ApiJson<ConnectorInput>,
) -> Result<(StatusCode, Json<Connector>), ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    require_org(&state, &corp_id).await?;
    super::validate::connector(&input)?;
    input.validate().map_err(invalid)?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_connector(&corp_id, &input).await?),
    ))
}

/// Connectors (credentials masked).
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/connectors", tag = "integration", responses((status = 200, body = Vec<Connector>)))]
pub async fn list_connectors(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Vec<Connector>>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    Ok(Json(
        state
            .store
            .connectors(&corp_id, None)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect(),
    ))
}

/// A connector (credentials masked).
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/connectors/{id}", tag = "integration",
    responses((status = 200, body = Connector), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_connector(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<Connector>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    Ok(Json(connector_or_404(&state, &corp_id, &id).await?))
}

/// Edit a connector: the whole connector as on creation; it applies from the next delivery
/// (deliveries waiting for it go to the new base URL). Credentials are write-only: omit `auth`
/// to keep the stored authentication, or send a secret empty or exactly as shown (`***`) to
/// keep the stored secret; a new authentication type needs its secret. A base URL password and
/// default header values sent as shown (`***`) keep the stored ones too.
#[utoipa::path(put, path = "/api/v1/orgs/{corp_id}/connectors/{id}", tag = "integration", request_body = ConnectorUpdate,
    responses((status = 200, body = Connector), (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn put_connector(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
    ApiJson(update): ApiJson<ConnectorUpdate>,
) -> Result<Json<Connector>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let (stored, stored_auth) = state
        .store
        .connectors(&corp_id, Some(&id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("connector `{id}` not found")))?;
    let input = update.resolve(&stored, &stored_auth).map_err(invalid)?;
    super::validate::connector(&input)?;
    state
        .store
        .update_connector(&corp_id, &id, &input)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("connector `{id}` not found")))
}

/// What a deletion did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub id: String,
    /// Pending deliveries cancelled by the deletion: status `cancelled`, the reason in their
    /// `lastError`.
    pub cancelled_deliveries: u64,
}

/// The answer to a deletion: 404, 409 naming the events the strategy maps to it, or done.
fn deletion(what: &str, id: String, outcome: Deletion) -> Result<Json<Deleted>, ApiError> {
    match outcome {
        Deletion::NotFound => Err(ApiError::not_found(format!("{what} `{id}` not found"))),
        Deletion::InUse(used) => {
            let uses: Vec<String> = used
                .iter()
                .map(|(kind, action)| format!("{} → {action}", kind.event_type()))
                .collect();
            Err(ApiError::client(
                StatusCode::CONFLICT,
                "in_use",
                format!(
                    "the sync strategy sends {} to this {what}: map {} to another action (or none) first",
                    uses.join(", "),
                    if used.len() == 1 { "that event" } else { "those events" },
                ),
            ))
        }
        Deletion::Deleted { cancelled } => Ok(Json(Deleted {
            id,
            cancelled_deliveries: cancelled,
        })),
    }
}

/// Delete a connector and its actions. Refused (409, naming the events) while the sync
/// strategy maps an event to one of its actions. Its pending deliveries are cancelled (status
/// `cancelled`, the reason in `lastError`); the delivery log keeps them and their attempts.
#[utoipa::path(delete, path = "/api/v1/orgs/{corp_id}/connectors/{id}", tag = "integration",
    responses((status = 200, body = Deleted), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn delete_connector(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<Deleted>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let outcome = state.store.delete_connector(&corp_id, &id).await?;
    // A cancelled delivery at the head of its instance's lane lets the next one go.
    state.wake_dispatchers().await;
    deletion("connector", id, outcome)
}

/// What pausing or resuming did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseOutcome {
    pub connector: Connector,
    /// Resume: how many waiting deliveries became due at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<u64>,
}

/// An action with its connector and the connector's credentials, or 404 (test fire and the
/// receiver check send to it).
async fn action_with_connector(
    state: &AppState,
    corp_id: &str,
    action_id: &str,
) -> Result<(Action, Connector, crate::integration::connectors::Auth), ApiError> {
    let action = state
        .store
        .actions(corp_id, Some(action_id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("action `{action_id}` not found")))?;
    let (connector, auth) = state
        .store
        .connectors(corp_id, Some(&action.connector_id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("the action's connector is gone"))?;
    Ok((action, connector, auth))
}

async fn connector_or_404(
    state: &AppState,
    corp_id: &str,
    id: &str,
) -> Result<Connector, ApiError> {
    state
        .store
        .connectors(corp_id, Some(id))
        .await?
        .pop()
        .map(|(c, _)| c)
        .ok_or_else(|| ApiError::not_found(format!("connector `{id}` not found")))
}

/// Pause a connector: nothing is sent to it until it is resumed (a `410 Gone` does the same).
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/connectors/{id}/pause", tag = "integration",
    responses((status = 200, body = PauseOutcome), (status = 404, body = super::error::ErrorBody)))]
pub async fn pause_connector(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<PauseOutcome>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    connector_or_404(&state, &corp_id, &id).await?;
    state
        .store
        .pause_connector(&corp_id, &id, "paused by an operator")
        .await?;
    Ok(Json(PauseOutcome {
        connector: connector_or_404(&state, &corp_id, &id).await?,
        due: None,
    }))
}

/// Resume a paused connector: its waiting deliveries are sent at once.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/connectors/{id}/resume", tag = "integration",
    responses((status = 200, body = PauseOutcome), (status = 404, body = super::error::ErrorBody)))]
pub async fn resume_connector(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<PauseOutcome>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let due = state
        .store
        .resume_connector(&corp_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connector `{id}` not found")))?;
    state.wake_dispatchers().await;
    Ok(Json(PauseOutcome {
        connector: connector_or_404(&state, &corp_id, &id).await?,
        due: Some(due),
    }))
}

/// A connector's health: its endpoint's breaker as this node sees it, and its backlog.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorHealth {
    pub connector_id: String,
    /// Scheme, host and port: with the organisation, the breaker's key (the organisation's
    /// connectors to one server share it; another organisation's have their own).
    pub endpoint: String,
    /// Paused (by an operator or a `410 Gone`): nothing is sent until it is resumed.
    pub paused: bool,
    pub breaker: BreakerView,
    pub deliveries: ConnectorBacklog,
}

/// An endpoint's circuit breaker on the node that answers (each node keeps its own, in memory,
/// from its start).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerView {
    /// closed (sending) | open (holding back; one probe per cooldown) | half_open (probe out)
    pub state: String,
    /// Failed attempts in a row.
    pub consecutive_failures: u32,
    /// Requests to the endpoint in flight from this node now (at most the connector's
    /// `maxConcurrency`).
    pub in_flight: u32,
    /// Epoch ms of the last successful attempt this node made.
    pub last_success_at: Option<i64>,
    /// Epoch ms of the last failed attempt this node made.
    pub last_failure_at: Option<i64>,
}

/// A connector's health: breaker, pause, and the deliveries waiting for it.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/connectors/{id}/health", tag = "integration",
    responses((status = 200, body = ConnectorHealth), (status = 404, body = super::error::ErrorBody)))]
pub async fn connector_health(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<ConnectorHealth>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let connector = connector_or_404(&state, &corp_id, &id).await?;
    let key = crate::delivery::breaker::EndpointKey::new(&corp_id, &connector.base_url);
    // Nothing sent to it since this node started: closed, as a new breaker is.
    state.breakers.tick(std::time::Instant::now());
    let view = state
        .breakers
        .view(&key)
        .unwrap_or(crate::delivery::breaker::View::UNSEEN);
    let endpoint = key.endpoint;
    Ok(Json(ConnectorHealth {
        deliveries: state.store.connector_backlog(&connector.id).await?.into(),
        connector_id: connector.id,
        paused: connector.paused_at.is_some(),
        breaker: BreakerView {
            state: view.state.as_str().to_owned(),
            consecutive_failures: view.failures,
            in_flight: view.in_flight,
            last_success_at: view.last_success_at,
            last_failure_at: view.last_failure_at,
        },
        endpoint,
    }))
}

/// Checks an action's input: POST, a path, a connector of the organisation.
async fn check_action(
    state: &AppState,
    corp_id: &str,
    input: &ActionInput,
) -> Result<(), ApiError> {
    super::validate::action(input)?;
    if input.method != "POST" {
        return Err(invalid("only POST actions are supported, as Yida's"));
    }
    if !input.path.starts_with('/') {
        return Err(invalid("the path starts with `/`"));
    }
    if input.path.contains('#') {
        return Err(invalid(
            "`path` has a fragment (`#…`); a path is `/segments` with an optional `?query`",
        ));
    }
    if state
        .store
        .connectors(corp_id, Some(&input.connector_id))
        .await?
        .is_empty()
    {
        return Err(invalid(format!(
            "unknown connector `{}`",
            input.connector_id
        )));
    }
    Ok(())
}

/// Add an action to a connector.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/actions", tag = "integration", request_body = ActionInput,
    responses((status = 201, body = Action), (status = 422, body = super::error::ErrorBody)))]
pub async fn create_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiJson(input): ApiJson<ActionInput>,
) -> Result<(StatusCode, Json<Action>), ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    check_action(&state, &corp_id, &input).await?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_action(&corp_id, &input).await?),
    ))
}

/// An action.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/actions/{id}", tag = "integration",
    responses((status = 200, body = Action), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<Action>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    state
        .store
        .actions(&corp_id, Some(&id))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("action `{id}` not found")))
}

/// Edit an action (connector, name, path, encoding): it applies from the next delivery,
/// including the deliveries waiting for it.
#[utoipa::path(put, path = "/api/v1/orgs/{corp_id}/actions/{id}", tag = "integration", request_body = ActionInput,
    responses((status = 200, body = Action), (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn put_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<ActionInput>,
) -> Result<Json<Action>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    if state.store.actions(&corp_id, Some(&id)).await?.is_empty() {
        return Err(ApiError::not_found(format!("action `{id}` not found")));
    }
    check_action(&state, &corp_id, &input).await?;
    state
        .store
        .update_action(&corp_id, &id, &input)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("action `{id}` not found")))
}

/// Delete an action. Refused (409, naming the events) while the sync strategy maps an event
/// to it. Its pending deliveries are cancelled (status `cancelled`, the reason in
/// `lastError`); the delivery log keeps them and their attempts.
#[utoipa::path(delete, path = "/api/v1/orgs/{corp_id}/actions/{id}", tag = "integration",
    responses((status = 200, body = Deleted), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn delete_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<Deleted>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let outcome = state.store.delete_action(&corp_id, &id).await?;
    state.wake_dispatchers().await;
    deletion("action", id, outcome)
}

/// Actions.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/actions", tag = "integration", responses((status = 200, body = Vec<Action>)))]
pub async fn list_actions(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Vec<Action>>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    Ok(Json(state.store.actions(&corp_id, None).await?))
}

/// The strategy as saved, with the Standard Webhooks secret when it was just created.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavedStrategy {
    #[serde(flatten)]
    pub strategy: Strategy,
    /// `whsec_…`: shown once, when Standard Webhooks signing is first turned on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// Save the approval-task sync strategy; it applies to events created after it is saved.
#[utoipa::path(put, path = "/api/v1/orgs/{corp_id}/sync-strategy", tag = "integration", request_body = Strategy,
    responses((status = 200, body = SavedStrategy), (status = 422, body = super::error::ErrorBody)))]
pub async fn put_strategy(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiJson(strategy): ApiJson<Strategy>,
) -> Result<Json<SavedStrategy>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    require_org(&state, &corp_id).await?;
    super::validate::strategy(&strategy)?;
    let webhook_secret = state
        .store
        .put_strategy(&corp_id, &strategy)
        .await?
        .map_err(invalid)?;
    Ok(Json(SavedStrategy {
        strategy,
        webhook_secret,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRotation {
    /// How long the previous secrets keep signing (default one day).
    #[serde(default = "one_day_ms")]
    pub grace_seconds: i64,
}

fn one_day_ms() -> i64 {
    86_400
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewSecret {
    /// `whsec_…`, shown once.
    pub webhook_secret: String,
}

/// Rotate the Standard Webhooks secret: requests carry signatures of the new and the previous
/// secrets until the grace period ends, so receivers can switch without losing a request.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/sync-strategy/rotate-webhook-secret", tag = "integration",
    request_body = SecretRotation, responses((status = 200, body = NewSecret), (status = 409, body = super::error::ErrorBody)))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiJson(body): ApiJson<SecretRotation>,
) -> Result<Json<NewSecret>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    if !state
        .store
        .strategy(&corp_id)
        .await?
        .is_some_and(|s| s.standard_webhooks)
    {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            "not_enabled",
            "Standard Webhooks signing is not enabled",
        ));
    }
    let grace_ms = body.grace_seconds.clamp(0, 30 * 86_400) * 1000;
    Ok(Json(NewSecret {
        webhook_secret: state
            .store
            .rotate_webhook_secret(&corp_id, grace_ms)
            .await?,
    }))
}

/// The sync strategy.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/sync-strategy", tag = "integration",
    responses((status = 200, body = Strategy), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_strategy(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Strategy>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    state
        .store
        .strategy(&corp_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no sync strategy saved"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

/// A filter's `status` and `eventType` are among the values there are: a typo answers 400
/// naming the parameter, not an empty page.
fn check_delivery_filter(filter: &DeliveryFilter) -> Result<(), ApiError> {
    if let Some(status) = &filter.status {
        if status.parse::<DeliveryStatus>().is_err() {
            let statuses = DeliveryStatus::ALL.map(DeliveryStatus::as_str);
            return Err(super::query::not_one_of("status", status, &statuses));
        }
    }
    if let Some(kind) = &filter.event_type {
        let kinds = flowhook_sign::event::EventKind::ALL.map(|k| k.event_type());
        if !kinds.contains(&kind.as_str()) {
            return Err(super::query::not_one_of("eventType", kind, &kinds));
        }
    }
    Ok(())
}

/// The delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/deliveries", tag = "integration", params(DeliveryFilter, PageParams),
    responses((status = 200, body = DeliveryPage)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiQuery(filter): ApiQuery<DeliveryFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    check_delivery_filter(&filter)?;
    let (cursor, limit) = page_args(page.cursor.as_deref(), page.limit)?;
    let mut items = state
        .store
        .deliveries(&corp_id, &filter.into(), None, cursor, limit + 1)
        .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|d| encode_cursor(d.created_at, d.id.as_str()))
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        items: wire(items),
        next_cursor,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub attempts: Vec<AttemptView>,
}

/// One delivery with every attempt.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/deliveries/{id}", tag = "integration",
    responses((status = 200, body = DeliveryDetail), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, DeliveryId)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let delivery = state
        .store
        .deliveries(
            &corp_id,
            &log::DeliveryFilter::default(),
            Some(&id),
            None,
            1,
        )
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("delivery `{id}` not found")))?;
    let attempts = state.store.delivery_attempts(&corp_id, &id).await?;
    Ok(Json(DeliveryDetail {
        delivery: delivery.into(),
        attempts: wire(attempts),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Redelivered {
    /// Deliveries made due again.
    pub redelivered: u64,
    /// Bulk redelivery: the job whose progress `GET …/jobs/{id}` shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobProgress>,
}

/// Redeliver one delivery (delivered or dead) now; a cancelled one (its action or connector
/// deleted) answers 409.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/deliveries/{id}/redeliver", tag = "integration",
    responses((status = 200, body = Redelivered), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn redeliver_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, DeliveryId)>,
) -> Result<Json<Redelivered>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let n = state
        .store
        .redeliver(&corp_id, &log::DeliveryFilter::default(), Some(&id))
        .await?;
    if n == 0 {
        let cancelled = state
            .store
            .deliveries(
                &corp_id,
                &log::DeliveryFilter::default(),
                Some(&id),
                None,
                1,
            )
            .await?
            .pop()
            .filter(|d| d.status == DeliveryStatus::Cancelled);
        if let Some(d) = cancelled {
            return Err(ApiError::client(
                StatusCode::CONFLICT,
                "cancelled",
                format!(
                    "delivery `{id}` was {}: it has nowhere to go",
                    d.last_error.as_deref().unwrap_or("cancelled")
                ),
            ));
        }
        return Err(ApiError::not_found(format!(
            "no delivered or dead delivery `{id}`"
        )));
    }
    state.wake_dispatchers().await;
    Ok(Json(Redelivered {
        redelivered: n,
        job: None,
    }))
}

/// Redeliver every delivered or dead delivery matching the filter (e.g. `status=dead&from=T`).
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/deliveries/redeliver", tag = "integration", params(DeliveryFilter),
    responses((status = 200, body = Redelivered)))]
pub async fn redeliver_many(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiQuery(filter): ApiQuery<DeliveryFilter>,
) -> Result<Json<Redelivered>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    check_delivery_filter(&filter)?;
    let job = state.store.redeliver_job(&corp_id, &filter.into()).await?;
    state.wake_dispatchers().await;
    Ok(Json(Redelivered {
        redelivered: job.total as u64,
        job: Some(job.into()),
    }))
}

/// Start a backfill: push the open tasks (`{"mode": "open"}`) or every event of a time range
/// (`{"mode": "range", "from": …, "to": …}`) through the sync strategy, marked as backfill.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/backfills", tag = "integration", request_body = BackfillRequest,
    responses((status = 202, body = JobProgress), (status = 409, body = super::error::ErrorBody)))]
pub async fn backfill(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiJson(req): ApiJson<BackfillRequest>,
) -> Result<(StatusCode, Json<JobProgress>), ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    require_org(&state, &corp_id).await?;
    if let BackfillRequest::Range { from, to } = req {
        if from >= to {
            return Err(invalid("`from` must be before `to`"));
        }
    }
    let job = state.store.backfill(&corp_id, &req).await?.ok_or_else(|| {
        ApiError::client(
            StatusCode::CONFLICT,
            "no_strategy",
            "save a sync strategy before backfilling",
        )
    })?;
    state.wake_dispatchers().await;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// A background job's progress: a backfill or a bulk redelivery.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/jobs/{id}", tag = "integration",
    responses((status = 200, body = JobProgress), (status = 404, body = super::error::ErrorBody)))]
pub async fn any_job(
    state: State<AppState>,
    caller: Caller,
    path: Path<(String, String)>,
) -> Result<Json<JobProgress>, ApiError> {
    job(state, caller, path).await
}

/// A backfill's progress.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/backfills/{id}", tag = "integration",
    responses((status = 200, body = JobProgress), (status = 404, body = super::error::ErrorBody)))]
pub async fn job(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, String)>,
) -> Result<Json<JobProgress>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    state
        .store
        .job(&corp_id, &id)
        .await?
        .map(|j| Json(j.into()))
        .ok_or_else(|| ApiError::not_found(format!("job `{id}` not found")))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestFire {
    /// Which events (`task.created`, …); all five when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Whose systemToken signs the samples; the organisation's first app when absent.
    #[serde(default)]
    pub app_type: Option<String>,
}

/// One test exchange, as the delivery log would show it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fired {
    #[schema(value_type = String)]
    pub event_type: flowhook_sign::event::EventKind,
    /// Credentials masked.
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_params: Vec<(String, String)>,
    pub response_status: Option<u16>,
    #[schema(value_type = Option<Object>)]
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Test fire: send a sample of each event to an action now, built as a delivery is (signed with
/// the app's systemToken, and with the Standard Webhooks headers when the sync strategy has them
/// on), and show each exchange. Nothing is stored. An empty body (any content type) sends all
/// five.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/actions/{id}/test", tag = "integration", request_body = TestFire,
    responses((status = 200, body = Vec<Fired>), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn test_fire(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, action_id)): Path<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<TestFire>,
) -> Result<Json<Vec<Fired>>, ApiError> {
    use crate::delivery::request::{prepare, EventInfo, Signing};
    use flowhook_sign::event::EventKind;
    caller.check(&corp_id, Scope::Integration)?;
    let (action, connector, auth) = action_with_connector(&state, &corp_id, &action_id).await?;
    let (app_type, token) = signing_app(&state, &corp_id, body.app_type.as_deref()).await?;
    let now = crate::support::now_ms();
    // Signed as the dispatcher signs: Standard Webhooks too when the strategy has it on.
    let webhook_secrets = state.store.webhook_secrets(&corp_id, now).await?;
    let signing = Signing {
        system_token: &token,
        webhook_secrets: &webhook_secrets,
    };
    let kinds: Vec<EventKind> = match &body.events {
        None => EventKind::ALL.to_vec(),
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                n.parse()
                    .map_err(|e: flowhook_sign::event::UnknownEventKind| {
                        invalid(format!("`events[{i}]`: {e}"))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut fired = Vec::new();
    for kind in kinds {
        let event = crate::integration::render::sample(kind, &app_type, &corp_id, now);
        let params: Vec<(String, String)> = crate::integration::render::stored_params(&event)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let event_id = crate::support::new_id("evt_test");
        let info = EventInfo {
            event_id: &event_id,
            kind,
            seq: 0,
            params: &params,
            logged_params: None,
            backfill: false,
        };
        let prepared = prepare(&info, 1, now, signing, &connector, &auth, &action);
        let ex = crate::delivery::exchange::exchange(
            &state.delivery_client,
            &state.egress,
            &connector,
            &auth,
            &prepared,
        )
        .await;
        fired.push(Fired {
            event_type: kind,
            url: prepared.logged_url,
            request_headers: prepared.logged_headers,
            request_params: prepared.params,
            response_status: ex.status,
            response_headers: ex.headers.and_then(|h| serde_json::from_str(&h).ok()),
            response_body: ex.body,
            error_kind: ex.error_kind.map(str::to_owned),
            error: ex.error,
            duration_ms: ex.duration.as_millis() as u64,
        });
    }
    Ok(Json(fired))
}

/// The application whose systemToken signs samples and probes (`app_type`, or the
/// organisation's first), with its current token.
async fn signing_app(
    state: &AppState,
    corp_id: &str,
    app_type: Option<&str>,
) -> Result<(String, String), ApiError> {
    let apps = state.store.apps(corp_id).await?;
    let app = match app_type {
        Some(a) => apps
            .into_iter()
            .find(|x| x.app_type == a)
            .ok_or_else(|| invalid(format!("`appType`: unknown application `{a}`")))?,
        None => apps.into_iter().next().ok_or_else(|| {
            ApiError::client(
                StatusCode::CONFLICT,
                "no_app",
                "create an application first: its systemToken signs the requests",
            )
        })?,
    };
    let token = state
        .store
        .app_tokens(&app.app_type, crate::support::now_ms())
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the application has no token"))?;
    Ok((app.app_type, token))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckRequest {
    /// Whose systemToken signs the probes (the receiver must know it); the organisation's
    /// first app when absent.
    #[serde(default)]
    pub app_type: Option<String>,
    /// The encodings the five kinds are each sent in (`form`, `json`, or both); the actions'
    /// own when absent.
    #[serde(default)]
    pub encodings: Option<Vec<crate::integration::connectors::Encoding>>,
}

/// Receiver check: send the action's receiver a short series of probe requests — marked
/// `X-Flowhook-Check: true`, ids `check-…`, as deliveries are sent (egress policy, the
/// connector's authentication, headers and timeout) — and grade each answer PASS / WARN / FAIL
/// against what a correct receiver must do: accept a signed event, its retry and an early
/// `task.finished`; refuse a forged `sign`, a wrong token, a missing `sign` and (WARN) a
/// 10-minute-old `dateTime`; accept the five kinds; answer 20 requests at once in under half
/// the timeout. Each kind goes to the action the sync strategy maps it to when that action is
/// on the same connector, else to this action. The probes end with a `task.deleted` of their
/// instances, so a correct receiver is left clean. The scorecard is kept (`GET …/checks`).
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/actions/{id}/check", tag = "integration", request_body = CheckRequest,
    responses((status = 200, body = StoredCheck), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn check_receiver(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, action_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<CheckRequest>,
) -> Result<Json<StoredCheck>, ApiError> {
    use crate::delivery::check;
    caller.check(&corp_id, Scope::Integration)?;
    super::validate::opt_id("appType", body.app_type.as_deref())?;
    let mut encodings = body.encodings.unwrap_or_default();
    if encodings.len() > 2 {
        return Err(super::validate::invalid(
            "encodings",
            format!("has {} items; at most 2 (form, json)", encodings.len()),
        ));
    }
    encodings.dedup();
    let (action, connector, auth) = action_with_connector(&state, &corp_id, &action_id).await?;
    let (app_type, system_token) = signing_app(&state, &corp_id, body.app_type.as_deref()).await?;
    let strategy = state.store.strategy(&corp_id).await?;
    let actions = state.store.actions(&corp_id, None).await?;
    let target = check::Target {
        routes: check::routes(&action, strategy.as_ref().map(|s| &s.actions), &actions),
        connector,
        auth,
    };
    let probing = check::Probing {
        corp_id: corp_id.clone(),
        app_type,
        system_token,
        encodings,
    };
    let scorecard = check::run(
        &crate::delivery::exchange::check_client(&state.egress),
        &state.egress,
        &target,
        &probing,
    )
    .await;
    let counts = crate::store::checks::CheckCounts {
        started_at: scorecard.started_at,
        passed: scorecard.passed,
        warned: scorecard.warned,
        failed: scorecard.failed,
    };
    let json = serde_json::to_string(&scorecard).map_err(anyhow::Error::from)?;
    let id = state
        .store
        .record_check(&corp_id, &action_id, counts, &json)
        .await?;
    Ok(Json(StoredCheck {
        id,
        action_id,
        scorecard,
    }))
}

/// A stored receiver check.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredCheck {
    /// `chk_…`
    pub id: String,
    pub action_id: String,
    pub scorecard: crate::delivery::check::Scorecard,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CheckListParams {
    /// 1 to 100, default 20.
    pub limit: Option<u32>,
}

/// The receiver checks of an action, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/actions/{id}/checks", tag = "integration", params(CheckListParams),
    responses((status = 200, body = Vec<StoredCheck>), (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn list_checks(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, action_id)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<CheckListParams>,
) -> Result<Json<Vec<StoredCheck>>, ApiError> {
    caller.check(&corp_id, Scope::Integration)?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=crate::store::checks::MAX_LISTED).contains(&limit) {
        return Err(super::validate::invalid(
            "limit",
            format!("must be 1 to {}", crate::store::checks::MAX_LISTED),
        ));
    }
    // A deleted action's checks stay listed: its id is still known to the log.
    let checks: Vec<StoredCheck> = state
        .store
        .checks(&corp_id, &action_id, limit)
        .await?
        .into_iter()
        .filter_map(|row| {
            // A scorecard this version cannot read (written by a newer one) is left out.
            Some(StoredCheck {
                scorecard: serde_json::from_str(&row.scorecard).ok()?,
                id: row.id,
                action_id: row.action_id,
            })
        })
        .collect();
    if checks.is_empty()
        && state
            .store
            .actions(&corp_id, Some(&action_id))
            .await?
            .is_empty()
    {
        return Err(ApiError::not_found(format!(
            "action `{action_id}` not found"
        )));
    }
    Ok(Json(checks))
}
