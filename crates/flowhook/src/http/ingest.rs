//! `POST /api/v1/apps/{appType}/events`: a task event from another workflow engine, relayed
//! through Flowhook's outbox with the same guarantees as its own events.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use flowhook_sign::event::{
    CcRecord, EventKind, InstanceDeleted, TaskEnded, TaskEvent, TaskRecord,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, Scope};
use super::error::ApiError;
use super::json::ApiJson;
use super::AppState;
use crate::store::ingest::IngestError;
use crate::store::writer::StoredEvent;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/apps/{app_type}/events", post(ingest))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestBody {
    /// `task.created`, `task.finished`, `task.cancelled`, `task.deleted` or `task.cc`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The other engine's process instance, in your organisation's namespace: the ordering lane
    /// and the `seq` counter. Not one of Flowhook's own instance ids.
    pub process_instance_id: String,
    /// For the strategy's process filter (taken from the payload when it has one).
    #[serde(default)]
    pub process_code: Option<String>,
    /// Your id for this event, unique within your organisation: a retry with the same id is
    /// answered with the stored event. Receivers get it as `X-Flowhook-Event-Id` (without it,
    /// Flowhook's own event id).
    #[serde(default)]
    pub event_id: Option<String>,
    /// The event's Yida payload: the `task` record (created), the cc record (cc),
    /// `{appType, corpId, taskId, actualWorkId, formInstId}` (finished, cancelled) or
    /// `{appType, corpId, formInstId}` (deleted).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestResult {
    pub event: StoredEvent,
    /// Deliveries created for it (0 when no action takes this event, or on a retry).
    pub deliveries: usize,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

fn parse(kind: EventKind, payload: serde_json::Value) -> Result<TaskEvent, ApiError> {
    let bad = |e: serde_json::Error| invalid(format!("payload of {}: {e}", kind.event_type()));
    Ok(match kind {
        EventKind::Created => {
            TaskEvent::Created(serde_json::from_value::<TaskRecord>(payload).map_err(bad)?)
        }
        EventKind::Cc => TaskEvent::Cc(serde_json::from_value::<CcRecord>(payload).map_err(bad)?),
        EventKind::Finished => {
            TaskEvent::Finished(serde_json::from_value::<TaskEnded>(payload).map_err(bad)?)
        }
        EventKind::Cancelled => {
            TaskEvent::Cancelled(serde_json::from_value::<TaskEnded>(payload).map_err(bad)?)
        }
        EventKind::Deleted => {
            TaskEvent::Deleted(serde_json::from_value::<InstanceDeleted>(payload).map_err(bad)?)
        }
    })
}

/// Relay a task event of another workflow engine: stored with the next `seq` of its instance,
/// delivered through the sync strategy, signed with this app's systemToken.
#[utoipa::path(post, path = "/api/v1/apps/{app_type}/events", tag = "integration", request_body = IngestBody,
    responses((status = 201, body = IngestResult), (status = 200, description = "A retry: the stored event", body = IngestResult),
              (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_type): Path<String>,
    ApiJson(body): ApiJson<IngestBody>,
) -> Result<(StatusCode, Json<IngestResult>), ApiError> {
    let not_found = || ApiError::not_found(format!("application `{app_type}` not found"));
    let corp_id = state
        .store
        .app_corp(&app_type)
        .await?
        .ok_or_else(not_found)?;
    caller
        .check(&corp_id, Scope::Integration)
        .map_err(|e| match e {
            ApiError::Client {
                status: StatusCode::NOT_FOUND,
                ..
            } => not_found(),
            other => other,
        })?;
    let kind: EventKind = body
        .event_type
        .parse()
        .map_err(|e: flowhook_sign::event::UnknownEventKind| invalid(format!("`type`: {e}")))?;
    let event = parse(kind, body.payload)?;
    if event.app_type() != app_type {
        return Err(invalid(format!(
            "the payload's appType `{}` is not `{app_type}`",
            event.app_type()
        )));
    }
    let corp_of_payload = match &event {
        TaskEvent::Created(t) => t.corp_id.as_deref(),
        TaskEvent::Cc(c) => c.record.corp_id.as_deref(),
        TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => Some(e.corp_id.as_str()),
        TaskEvent::Deleted(d) => Some(d.corp_id.as_str()),
    };
    if corp_of_payload.is_some_and(|c| c != corp_id) {
        return Err(invalid(format!(
            "the payload's corpId is not the application's organisation `{corp_id}`"
        )));
    }
    if let TaskEvent::Created(t) = &event {
        if t.task_id.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                "a task.created payload needs its taskId: receivers key tasks on it",
            ));
        }
    }
    // Ids key the lane, the `seq` counter and the idempotency of the call, and the event id
    // travels in a header: an id with CR/LF, a NUL or an escape poisoned its lane for 3 days.
    super::validate::id("processInstanceId", &body.process_instance_id)?;
    super::validate::opt_id("processCode", body.process_code.as_deref())?;
    super::validate::opt_id("eventId", body.event_id.as_deref())?;
    let process_code = body.process_code.clone().or_else(|| match &event {
        TaskEvent::Created(t) => t.process_code.clone(),
        TaskEvent::Cc(c) => c.record.process_code.clone(),
        _ => None,
    });
    let done = state
        .store
        .ingest(
            &corp_id,
            process_code.as_deref(),
            &body.process_instance_id,
            &event,
            body.event_id.as_deref(),
        )
        .await
        .map_err(|e| match e {
            IngestError::OwnInstance(_) => ApiError::client(
                StatusCode::UNPROCESSABLE_ENTITY,
                "own_instance",
                e.to_string(),
            ),
            IngestError::Store(e) => e.into(),
        })?;
    if done.deliveries > 0 {
        state.wake_dispatchers().await;
    }
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IngestResult {
            event: done.event,
            deliveries: done.deliveries,
        }),
    ))
}
