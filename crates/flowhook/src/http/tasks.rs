//! Task commands (agree, disagree, forward, append, return) and the task center: each user's
//! `created` / `todo` / `done` / `cc` lists with filters, cursor pagination and counts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{ActingUser, Caller, Scope};
use super::error::ApiError;
use super::instances::{instance_command, CommandResult, ListFilter};
use super::query::ApiQuery;
use super::AppState;
use crate::engine::ids::{InstanceId, TaskId};
use crate::engine::machine::{AppendPosition, Command, ReturnTarget};
use crate::store::taskcenter::{self, List};

/// One entry of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The task id, cc id or (for `created`) instance id. Kept for existing clients; prefer the
    /// named one below (`taskId`, as in the instance view; `ccId`).
    pub id: String,
    /// `todo` and `done`: the task id, under the name the instance view and the `task` JSON use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// `cc`: the cc record's id, as in the instance view and the `task.cc` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_id: Option<String>,
    #[schema(value_type = String)]
    pub instance_id: InstanceId,
    pub app_type: String,
    pub process_code: String,
    pub title: String,
    pub originator_id: String,
    /// The node (tasks and ccs).
    pub node_id: Option<String>,
    pub node_name: Option<String>,
    /// Task status (`open`, `finished`) or, for `created`, the instance status.
    pub status: String,
    pub action: Option<String>,
    pub instance_status: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

impl From<taskcenter::Item> for Item {
    fn from(i: taskcenter::Item) -> Self {
        Item {
            id: i.id,
            task_id: i.task_id,
            cc_id: i.cc_id,
            instance_id: i.instance_id,
            app_type: i.app_type,
            process_code: i.process_code,
            title: i.title,
            originator_id: i.originator_id,
            node_id: i.node_id,
            node_name: i.node_name,
            status: i.status,
            action: i.action,
            instance_status: i.instance_status,
            created_at: i.created_at,
            ended_at: i.ended_at,
        }
    }
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<taskcenter::Page> for Page {
    fn from(p: taskcenter::Page) -> Self {
        Page {
            items: super::wire(p.items),
            next_cursor: p.next_cursor,
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{corp_id}/tasks/{task_id}/{action}", post(act))
        .route("/api/v1/orgs/{corp_id}/users/{user_id}/tasks", get(list))
        .route(
            "/api/v1/orgs/{corp_id}/users/{user_id}/task-counts",
            get(counts),
        )
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActBody {
    /// agree, disagree, forward: a comment.
    #[serde(default)]
    pub remark: Option<String>,
    /// forward: the new assignee.
    #[serde(default)]
    pub to: Option<String>,
    /// append: the users to add, in order.
    #[serde(default)]
    pub users: Vec<String>,
    /// append: `before` (they act first, then back to me) or `after` (my part is done).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub position: Option<AppendPosition>,
    /// return: a node id, or `originator`.
    #[serde(default)]
    pub target: Option<String>,
}

/// An optional JSON body: empty means all defaults.
fn optional_json<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // As `ApiJson` reads a body: the same checks, the same messages naming the field.
    super::validate::nul_in_json(body)?;
    axum::Json::<T>::from_bytes(body)
        .map(|axum::Json(v)| v)
        .map_err(super::json::rejection_error)
}

fn required<T>(v: Option<T>, what: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| {
        ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("`{what}` is required"),
        )
    })
}

/// Act on a task as its assignee: `agree`, `disagree`, `forward`, `append` or `return`.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/tasks/{task_id}/{action}", tag = "tasks", request_body = ActBody,
    params(("action" = String, Path, description = "agree | disagree | forward | append | return"),
           ("X-Flowhook-User" = String, Header, description = "the assignee")),
    responses((status = 200, body = CommandResult), (status = 403, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, task_id, action)): Path<(String, String, String)>,
    ActingUser(actor): ActingUser,
    body: Bytes,
) -> Result<Json<CommandResult>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    super::validate::nul_in_json(&body)?;
    let b: ActBody = optional_json(&body)?;
    if let Some(remark) = &b.remark {
        super::validate::text("remark", remark)?;
    }
    super::validate::opt_id("to", b.to.as_deref())?;
    super::validate::ids("users", b.users.iter())?;
    super::validate::opt_id("target", b.target.as_deref())?;
    let command = match action.as_str() {
        "agree" => Command::Agree {
            task_id: task_id.clone(),
            remark: b.remark,
        },
        "disagree" => Command::Disagree {
            task_id: task_id.clone(),
            remark: b.remark,
        },
        "forward" => Command::Forward {
            task_id: task_id.clone(),
            to: required(b.to, "to")?,
            remark: b.remark,
        },
        "append" => Command::Append {
            task_id: task_id.clone(),
            users: b.users,
            position: required(b.position, "position")?,
        },
        "return" => Command::Return {
            task_id: task_id.clone(),
            target: match required(b.target, "target")?.as_str() {
                "originator" => ReturnTarget::Originator,
                node => ReturnTarget::Node(node.to_owned()),
            },
        },
        other => return Err(ApiError::not_found(format!("no task action `{other}`"))),
    };
    // A task id names its instance: found without a lookup, and checked to belong to this
    // organisation by the writer.
    let instance_id = task_id
        .parse::<TaskId>()
        .map(|t| t.instance().clone())
        .map_err(|_| ApiError::not_found(format!("task `{task_id}` not found")))?;
    instance_command(state, caller, corp_id, instance_id, actor, command).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    /// created, todo, done or cc.
    #[param(value_type = String)]
    pub list: List,
}

/// One of a user's four lists, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/users/{user_id}/tasks", tag = "task center", params(ListParams, ListFilter),
    responses((status = 200, body = Page)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, user_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ListParams>,
    ApiQuery(f): ApiQuery<ListFilter>,
) -> Result<Json<Page>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    let (filter, cursor, limit) = f.into_args()?;
    Ok(Json(
        state
            .store
            .task_list(&corp_id, &user_id, q.list, &filter, cursor, limit)
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct CountParams {
    pub app_type: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Counts {
    pub created: i64,
    pub todo: i64,
    pub done: i64,
    pub cc: i64,
}

/// The size of each of a user's lists.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/users/{user_id}/task-counts", tag = "task center", params(CountParams),
    responses((status = 200, body = Counts)))]
pub async fn counts(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, user_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<CountParams>,
) -> Result<Json<Counts>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    let c = state
        .store
        .task_counts(&corp_id, &user_id, q.app_type.as_deref())
        .await?;
    Ok(Json(Counts {
        created: c[0].1,
        todo: c[1].1,
        done: c[2].1,
        cc: c[3].1,
    }))
}
