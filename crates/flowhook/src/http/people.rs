//! The directory: users (name, avatar, manager, admin flag) and roles with their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, Scope};
use super::error::ApiError;
use super::json::ApiJson;
use super::orgs::require_org;
use super::validate;
use super::AppState;
use crate::engine::resolve::Person;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{corp_id}/users", get(list_users))
        .route(
            "/api/v1/orgs/{corp_id}/users/{user_id}",
            put(put_user).get(get_user).delete(delete_user),
        )
        .route("/api/v1/orgs/{corp_id}/roles", get(list_roles))
        .route(
            "/api/v1/orgs/{corp_id}/roles/{role_id}",
            put(put_role).delete(delete_role),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserBody {
    pub name: String,
    #[serde(default)]
    pub avatar: String,
    #[serde(default)]
    pub manager_id: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: String,
    pub name: String,
    pub avatar: String,
    pub manager_id: Option<String>,
    pub admin: bool,
}

impl From<Person> for User {
    fn from(p: Person) -> Self {
        User {
            user_id: p.user_id,
            name: p.name,
            avatar: p.avatar,
            manager_id: p.manager_id,
            admin: p.admin,
        }
    }
}

/// Create or replace a user.
#[utoipa::path(put, path = "/api/v1/orgs/{corp_id}/users/{user_id}", tag = "directory", request_body = UserBody,
    responses((status = 200, body = User)))]
pub async fn put_user(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Json<User>, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    require_org(&state, &corp_id).await?;
    validate::name("name", &body.name)?;
    validate::line("avatar", &body.avatar, crate::engine::limits::URL_MAX_CHARS)?;
    validate::opt_id("managerId", body.manager_id.as_deref())?;
    if body.manager_id.as_deref() == Some(user_id.as_str()) {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "a user cannot be their own manager",
        ));
    }
    let person = Person {
        user_id,
        name: body.name,
        avatar: body.avatar,
        manager_id: body.manager_id,
        admin: body.admin,
    };
    state.store.put_user(&corp_id, &person).await?;
    Ok(Json(person.into()))
}

/// A user.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/users/{user_id}", tag = "directory",
    responses((status = 200, body = User), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, user_id)): Path<(String, String)>,
) -> Result<Json<User>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    let (_, dir) = state.store.load_directory(&corp_id).await?;
    dir.people
        .get(&user_id)
        .cloned()
        .map(|p| Json(p.into()))
        .ok_or_else(|| ApiError::not_found(format!("user `{user_id}` not found")))
}

/// Users, by id.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/users", tag = "directory", responses((status = 200, body = Vec<User>)))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Vec<User>>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    require_org(&state, &corp_id).await?;
    let (_, dir) = state.store.load_directory(&corp_id).await?;
    let mut users: Vec<User> = dir.people.into_values().map(User::from).collect();
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(Json(users))
}

/// Remove a user (and their role memberships).
#[utoipa::path(delete, path = "/api/v1/orgs/{corp_id}/users/{user_id}", tag = "directory", responses((status = 204)))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    if state.store.delete_user(&corp_id, &user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("user `{user_id}` not found")))
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBody {
    pub name: String,
    /// User ids, in order (the order approvers are listed in).
    pub members: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub role_id: String,
    pub name: String,
    pub members: Vec<String>,
}

/// Create or replace a role; every member must be a user.
#[utoipa::path(put, path = "/api/v1/orgs/{corp_id}/roles/{role_id}", tag = "directory", request_body = RoleBody,
    responses((status = 200, body = Role)))]
pub async fn put_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, role_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Json<Role>, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    require_org(&state, &corp_id).await?;
    validate::name("name", &body.name)?;
    validate::ids("members", body.members.iter())?;
    let (_, dir) = state.store.load_directory(&corp_id).await?;
    if let Some(unknown) = body.members.iter().find(|m| !dir.people.contains_key(*m)) {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("unknown user `{unknown}`"),
        ));
    }
    state
        .store
        .put_role(&corp_id, &role_id, &body.name, &body.members)
        .await?;
    Ok(Json(Role {
        role_id,
        name: body.name,
        members: body.members,
    }))
}

/// Roles with their members.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/roles", tag = "directory", responses((status = 200, body = Vec<Role>)))]
pub async fn list_roles(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Vec<Role>>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    let (_, dir) = state.store.load_directory(&corp_id).await?;
    let names = state.store.role_names(&corp_id).await?;
    Ok(Json(
        names
            .into_iter()
            .map(|(role_id, name)| Role {
                members: dir.roles.get(&role_id).cloned().unwrap_or_default(),
                role_id,
                name,
            })
            .collect(),
    ))
}

/// Remove a role.
#[utoipa::path(delete, path = "/api/v1/orgs/{corp_id}/roles/{role_id}", tag = "directory", responses((status = 204)))]
pub async fn delete_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, role_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    if state.store.delete_role(&corp_id, &role_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("role `{role_id}` not found")))
    }
}
