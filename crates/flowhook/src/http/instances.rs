//! Instances: start, read (with tasks, ccs and the event timeline), list, and the
//! instance-level commands (withdraw, terminate, delete). Every change goes through the writer.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{ActingUser, Caller, Scope};
use super::error::ApiError;
use super::json::ApiJson;
use super::query::ApiQuery;
use super::tasks::Page;
use super::validate;
use super::AppState;
use crate::engine::ids::{InstanceId, TaskId};
use crate::engine::machine::{Command, Instance, Status, TaskStatus};
use crate::store::taskcenter::{decode_cursor, Cursor, Filter};
use crate::store::writer::{self, Op, Outcome};

/// A stored event, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub id: String,
    pub seq: i64,
    // `task.created`, … (a string in the API document, as before it was typed).
    #[schema(value_type = String)]
    pub kind: flowhook_sign::event::EventKind,
    pub task_id: Option<String>,
    pub created_at: i64,
}

impl From<writer::StoredEvent> for StoredEvent {
    fn from(e: writer::StoredEvent) -> Self {
        StoredEvent {
            id: e.id,
            seq: e.seq,
            kind: e.kind,
            task_id: e.task_id,
            created_at: e.created_at,
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{corp_id}/instances", post(start).get(list))
        .route(
            "/api/v1/orgs/{corp_id}/instances/{id}",
            get(get_one).delete(delete),
        )
        .route(
            "/api/v1/orgs/{corp_id}/instances/{id}/withdraw",
            post(withdraw),
        )
        .route(
            "/api/v1/orgs/{corp_id}/instances/{id}/terminate",
            post(terminate),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    pub process_code: String,
    pub title: String,
    /// Form values: strings or null (tables as JSON strings), as Yida's `dataMap`.
    #[serde(default)]
    pub form_data: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub task_id: String,
    pub user_id: String,
    pub node_id: String,
    pub node_name: String,
    #[schema(value_type = String)]
    pub status: TaskStatus,
    pub action: Option<String>,
    pub remark: Option<String>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// Why the task went to its assignee when the process did not say so (an empty
    /// `whenEmpty: error` node handed to the admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CcView {
    pub cc_id: String,
    pub user_id: String,
    pub node_id: String,
    /// The carbon node's name.
    #[serde(default)]
    pub node_name: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    #[schema(value_type = String)]
    pub process_instance_id: InstanceId,
    pub form_instance_id: String,
    pub process_code: String,
    pub process_version: i64,
    pub app_type: String,
    pub title: String,
    pub originator_id: String,
    #[schema(value_type = String)]
    pub status: Status,
    pub form_data: BTreeMap<String, Option<String>>,
    pub created_at: i64,
    pub modified_at: i64,
    pub finished_at: Option<i64>,
    pub tasks: Vec<TaskView>,
    pub ccs: Vec<CcView>,
}

impl From<&Instance> for InstanceView {
    /// A deleted instance shows as a tombstone: its ids, `status: "deleted"` and times, without
    /// form data, tasks or ccs (Yida deletes them; the timeline still lists its events).
    fn from(i: &Instance) -> Self {
        let mut tasks: Vec<TaskView> = i
            .tasks
            .values()
            .map(|t| TaskView {
                task_id: t.id.clone(),
                user_id: t.user_id.clone(),
                node_id: t.node_id.clone(),
                node_name: t.node_name.clone(),
                status: t.status,
                action: t.action.map(|a| a.as_str().to_owned()),
                remark: t.remark.clone(),
                created_at: t.created_at,
                ended_at: t.ended_at,
                note: t.note.clone(),
            })
            .collect();
        tasks.sort_by_key(|t| TaskId::order_key(&t.task_id));
        let deleted = i.status == Status::Deleted;
        if deleted {
            tasks.clear();
        }
        InstanceView {
            process_instance_id: i.id.clone(),
            form_instance_id: i.form_instance_id.clone(),
            process_code: i.process_code.clone(),
            process_version: i.process_version,
            app_type: i.app_type.clone(),
            title: i.title.clone(),
            originator_id: i.originator_id.clone(),
            status: i.status,
            form_data: if deleted {
                BTreeMap::new()
            } else {
                i.form_data.clone()
            },
            created_at: i.created_at,
            modified_at: i.modified_at,
            finished_at: i.finished_at,
            tasks,
            ccs: i
                .ccs
                .iter()
                .filter(|_| !deleted)
                .map(|c| CcView {
                    cc_id: c.id.clone(),
                    user_id: c.user_id.clone(),
                    node_id: c.node_id.clone(),
                    node_name: c.node_name.clone(),
                    created_at: c.created_at,
                })
                .collect(),
        }
    }
}

/// An instance after a command, with the events that command produced.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub instance: InstanceView,
    pub events: Vec<StoredEvent>,
}

impl From<Outcome> for CommandResult {
    fn from(o: Outcome) -> Self {
        CommandResult {
            instance: (&o.instance).into(),
            events: super::wire(o.events),
        }
    }
}

/// An instance with its timeline (every event, in `seq` order).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail {
    #[serde(flatten)]
    pub instance: InstanceView,
    pub timeline: Vec<StoredEvent>,
}

/// Start an instance as the acting user (its originator).
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/instances", tag = "instances", request_body = StartBody,
    params(("X-Flowhook-User" = String, Header, description = "the originator")),
    responses((status = 201, body = CommandResult), (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ActingUser(actor): ActingUser,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<CommandResult>), ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    super::orgs::require_org(&state, &corp_id).await?;
    validate::id("processCode", &body.process_code)?;
    validate::line("title", &body.title, crate::engine::limits::TITLE_MAX_CHARS)?;
    validate::form("formData", &body.form_data)?;
    if body.title.trim().is_empty() {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "the title is empty",
        ));
    }
    let outcome = state
        .writer
        .submit(Op::Start {
            corp_id,
            process_code: body.process_code,
            actor,
            title: body.title,
            form_data: body.form_data,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(outcome.into())))
}

/// An instance, its tasks, ccs and timeline.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/instances/{id}", tag = "instances",
    responses((status = 200, body = InstanceDetail), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, InstanceId)>,
) -> Result<Json<InstanceDetail>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    let inst = state
        .store
        .instance(&corp_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("instance `{id}` not found")))?;
    let timeline = state.store.instance_events(&corp_id, &id).await?;
    Ok(Json(InstanceDetail {
        instance: (&inst).into(),
        timeline: super::wire(timeline),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    /// running, approved, rejected, withdrawn, terminated, deleted
    pub status: Option<String>,
}

/// The query parameters the task lists and the instance listing share: the [`Filter`] and the
/// page. Each endpoint extracts them beside its own parameters rather than flattening them in
/// (`serde(flatten)` hands `serde_urlencoded` every value as a string, and the numbers fail).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListFilter {
    /// Only this application (default: the whole organisation).
    pub app_type: Option<String>,
    pub process_code: Option<String>,
    /// Created at or after (epoch ms).
    pub from: Option<i64>,
    /// Created before (epoch ms).
    pub to: Option<i64>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
}

impl ListFilter {
    /// The store's filter and the page asked for (see [`page_args`]).
    pub fn into_args(self) -> Result<(Filter, Option<Cursor>, u32), ApiError> {
        let (cursor, limit) = page_args(self.cursor.as_deref(), self.limit)?;
        let filter = Filter::new(self.app_type, self.process_code, self.from, self.to);
        Ok((filter, cursor, limit))
    }
}

pub fn page_args(
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<(Option<Cursor>, u32), ApiError> {
    let cursor = match cursor {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::client(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "the cursor is not one this API gave",
            )
        })?),
    };
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "limit must be between 1 and 200",
        ));
    }
    Ok((cursor, limit))
}

/// Instances, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/instances", tag = "instances", params(ListParams, ListFilter),
    responses((status = 200, body = Page)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiQuery(q): ApiQuery<ListParams>,
    ApiQuery(f): ApiQuery<ListFilter>,
) -> Result<Json<Page>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    const STATUSES: [&str; 6] = [
        "running",
        "approved",
        "rejected",
        "withdrawn",
        "terminated",
        "deleted",
    ];
    if let Some(status) = &q.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(super::query::not_one_of("status", status, &STATUSES));
        }
    }
    let (filter, cursor, limit) = f.into_args()?;
    Ok(Json(
        state
            .store
            .instance_list(&corp_id, q.status.as_deref(), &filter, cursor, limit)
            .await?
            .into(),
    ))
}

/// Runs `command` on an instance as `actor` (a task's command too: its id names the instance).
pub(super) async fn instance_command(
    state: AppState,
    caller: Caller,
    corp_id: String,
    instance_id: InstanceId,
    actor: String,
    command: Command,
) -> Result<Json<CommandResult>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    let outcome = state
        .writer
        .submit(Op::Act {
            corp_id,
            instance_id,
            actor,
            command,
        })
        .await?;
    Ok(Json(outcome.into()))
}

/// Withdraw (撤销): the originator ends a running instance; open tasks are cancelled.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/instances/{id}/withdraw", tag = "instances",
    params(("X-Flowhook-User" = String, Header, description = "the originator")),
    responses((status = 200, body = CommandResult), (status = 403, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, InstanceId)>,
    ActingUser(actor): ActingUser,
) -> Result<Json<CommandResult>, ApiError> {
    instance_command(state, caller, corp_id, id, actor, Command::Withdraw).await
}

/// Terminate: an admin ends a running instance; open tasks are cancelled.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/instances/{id}/terminate", tag = "instances",
    params(("X-Flowhook-User" = String, Header, description = "an admin user")),
    responses((status = 200, body = CommandResult), (status = 403, body = super::error::ErrorBody)))]
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, InstanceId)>,
    ActingUser(actor): ActingUser,
) -> Result<Json<CommandResult>, ApiError> {
    instance_command(state, caller, corp_id, id, actor, Command::Terminate).await
}

/// Delete an instance and its tasks (an admin); one `task.deleted` event.
#[utoipa::path(delete, path = "/api/v1/orgs/{corp_id}/instances/{id}", tag = "instances",
    params(("X-Flowhook-User" = String, Header, description = "an admin user")),
    responses((status = 200, body = CommandResult), (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, id)): Path<(String, InstanceId)>,
    ActingUser(actor): ActingUser,
) -> Result<Json<CommandResult>, ApiError> {
    instance_command(state, caller, corp_id, id, actor, Command::Delete).await
}
