//! `POST /api/v1/apps/{appType}/events` (one event) and `…/events/batch` (up to 1,000, all or
//! none): task events from another workflow engine, relayed through Flowhook's outbox with the
//! same guarantees as its own events, committed by the command writer's group commit.

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
use super::instances::StoredEvent;
use super::json::ApiJson;
use super::AppState;
use crate::engine::ids::InstanceId;
use crate::store::ingest::{IngestCall, IngestError, Relayed};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/apps/{app_type}/events", post(ingest))
        .route("/api/v1/apps/{app_type}/events/batch", post(ingest_batch))
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

/// Most events in one batch call.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// `POST …/events/batch`: up to [`MAX_BATCH_EVENTS`] events, stored all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestBatchBody {
    /// The events, each as the single-event call takes it; an instance's events are numbered
    /// in their order here.
    pub events: Vec<IngestBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestBatchResult {
    /// One per event, in order (a retried `eventId` answers its stored event).
    pub events: Vec<IngestResult>,
}

/// The organisation of `app_type`, if the caller may relay to it (404 otherwise, as for an
/// application that does not exist: no existence oracle).
async fn organisation(
    state: &AppState,
    caller: &Caller,
    app_type: &str,
) -> Result<String, ApiError> {
    let not_found = || ApiError::not_found(format!("application `{app_type}` not found"));
    let known = state
        .known_apps
        .lock()
        .expect("apps lock")
        .get(app_type)
        .cloned();
    let corp_id = match known {
        Some(corp_id) => corp_id,
        None => {
            let corp_id = state
                .store
                .app_corp(app_type)
                .await?
                .ok_or_else(not_found)?;
            crate::support::insert_bounded(
                &mut state.known_apps.lock().expect("apps lock"),
                app_type.to_owned(),
                corp_id.clone(),
                super::KNOWN_APPS,
            );
            corp_id
        }
    };
    caller
        .check(&corp_id, Scope::Integration)
        .map_err(|e| match e {
            ApiError::Client {
                status: StatusCode::NOT_FOUND,
                ..
            } => not_found(),
            other => other,
        })?;
    Ok(corp_id)
}

/// One event of a call, checked: its kind and payload, its application and organisation, its
/// ids; the payload's omitted `corpId` filled in (receivers key on it).
fn relayed(corp_id: &str, app_type: &str, body: IngestBody) -> Result<Relayed, ApiError> {
    let kind: EventKind = body
        .event_type
        .parse()
        .map_err(|e: flowhook_sign::event::UnknownEventKind| invalid(format!("`type`: {e}")))?;
    let mut event = parse(kind, body.payload)?;
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
    match &mut event {
        TaskEvent::Created(t) => {
            if t.task_id.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(
                    "a task.created payload needs its taskId: receivers key tasks on it",
                ));
            }
            t.corp_id.get_or_insert_with(|| corp_id.to_owned());
        }
        TaskEvent::Cc(c) => {
            c.record.corp_id.get_or_insert_with(|| corp_id.to_owned());
        }
        _ => {}
    }
    // Ids key the lane, the `seq` counter and the idempotency of the call, and the event id
    // travels in a header: an id with CR/LF, a NUL or an escape poisoned its lane for 3 days.
    super::validate::id("processInstanceId", &body.process_instance_id)?;
    super::validate::opt_id("processCode", body.process_code.as_deref())?;
    super::validate::opt_id("eventId", body.event_id.as_deref())?;
    let process_code = body.process_code.or_else(|| match &event {
        TaskEvent::Created(t) => t.process_code.clone(),
        TaskEvent::Cc(c) => c.record.process_code.clone(),
        _ => None,
    });
    Ok(Relayed {
        process_code,
        // The caller's id, checked above: the type from here on.
        instance_id: InstanceId::from(body.process_instance_id),
        event,
        event_id: body.event_id,
    })
}

/// The answer to a refused call; `batch`: the message names the event's index.
fn refused(e: IngestError, batch: bool) -> ApiError {
    match e {
        IngestError::OwnInstance { index, .. } => ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "own_instance",
            if batch {
                format!("`events[{index}]`: {e}")
            } else {
                e.to_string()
            },
        ),
        IngestError::Store(e) => e.into(),
        IngestError::Stopped => ApiError::Unavailable("the writer has stopped".into()),
        IngestError::Internal => ApiError::Internal(anyhow::anyhow!(e.to_string())),
    }
}

/// Relay a task event of another workflow engine: stored with the next `seq` of its instance,
/// delivered through the sync strategy, signed with this app's systemToken. Committed in the
/// writer's group commit with every other call queued meanwhile.
#[utoipa::path(post, path = "/api/v1/apps/{app_type}/events", tag = "integration", request_body = IngestBody,
    responses((status = 201, body = IngestResult), (status = 200, description = "A retry: the stored event", body = IngestResult),
              (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_type): Path<String>,
    ApiJson(body): ApiJson<IngestBody>,
) -> Result<(StatusCode, Json<IngestResult>), ApiError> {
    let corp_id = organisation(&state, &caller, &app_type).await?;
    let event = relayed(&corp_id, &app_type, body)?;
    let done = state
        .writer
        .ingest(IngestCall {
            corp_id,
            events: vec![event],
        })
        .await
        .map_err(|e| refused(e, false))?
        .pop()
        .expect("one result per event");
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IngestResult {
            event: done.event.into(),
            deliveries: done.deliveries,
        }),
    ))
}

/// Relay up to 1,000 events in one call, all or none: each instance's events numbered in
/// their order in the call. A refusal names the event's index (`events[3]`). Answered 201
/// when any event was new, 200 when every one was a retry.
#[utoipa::path(post, path = "/api/v1/apps/{app_type}/events/batch", tag = "integration", request_body = IngestBatchBody,
    responses((status = 201, body = IngestBatchResult), (status = 200, description = "Every event a retry", body = IngestBatchResult),
              (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn ingest_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_type): Path<String>,
    ApiJson(body): ApiJson<IngestBatchBody>,
) -> Result<(StatusCode, Json<IngestBatchResult>), ApiError> {
    let corp_id = organisation(&state, &caller, &app_type).await?;
    if body.events.is_empty() || body.events.len() > MAX_BATCH_EVENTS {
        return Err(invalid(format!(
            "`events` has {} events; send 1 to {MAX_BATCH_EVENTS}",
            body.events.len()
        )));
    }
    let mut events = Vec::with_capacity(body.events.len());
    for (i, e) in body.events.into_iter().enumerate() {
        events.push(relayed(&corp_id, &app_type, e).map_err(|e| match e {
            ApiError::Client {
                status,
                code,
                message,
            } => ApiError::client(status, code, format!("`events[{i}]`: {message}")),
            other => other,
        })?);
    }
    let done = state
        .writer
        .ingest(IngestCall { corp_id, events })
        .await
        .map_err(|e| refused(e, true))?;
    let status = if done.iter().any(|d| d.created) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IngestBatchResult {
            events: done
                .into_iter()
                .map(|d| IngestResult {
                    event: d.event.into(),
                    deliveries: d.deliveries,
                })
                .collect(),
        }),
    ))
}
