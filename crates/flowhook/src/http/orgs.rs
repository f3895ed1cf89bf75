//! Organisations (bootstrap key), their API keys and their applications (with `systemToken`
//! generation and rotation). Secrets are shown once, when created; masked afterwards.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{hash_key, new_key, Caller, Scope};
use super::error::ApiError;
use super::json::ApiJson;
use super::validate;
use super::wire;
use super::AppState;
use crate::store::directory;
use crate::support::now_ms;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs", post(create_org))
        .route("/api/v1/orgs/{corp_id}", get(get_org))
        .route(
            "/api/v1/orgs/{corp_id}/api-keys",
            post(create_key).get(list_keys),
        )
        .route(
            "/api/v1/orgs/{corp_id}/api-keys/{key_id}",
            delete(revoke_key),
        )
        .route(
            "/api/v1/orgs/{corp_id}/apps",
            post(create_app).get(list_apps),
        )
        .route(
            "/api/v1/orgs/{corp_id}/apps/{app_type}/rotate-token",
            post(rotate_token),
        )
        .route(
            "/api/v1/orgs/{corp_id}/apps/{app_type}/rotate-token/commit",
            post(commit_token),
        )
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    pub corp_id: String,
    pub name: String,
    pub created_at: i64,
}

impl From<directory::Org> for Org {
    fn from(o: directory::Org) -> Self {
        Org {
            corp_id: o.corp_id,
            name: o.name,
            created_at: o.created_at,
        }
    }
}

// An application as shown (no `Debug`: it may hold a token in full).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub app_type: String,
    pub corp_id: String,
    pub name: String,
    /// Shown in full only when created or rotated; masked otherwise. During a pending
    /// rotation this is the new token, not yet signing.
    pub system_token: String,
    /// Until when the previous token is still honoured after a rotation.
    pub previous_token_valid_until: Option<i64>,
    /// True while a rotation awaits its commit: Flowhook still signs with the previous token
    /// until `rotate-token/commit` or `previousTokenValidUntil`, whichever comes first.
    pub rotation_pending: bool,
    pub created_at: i64,
}

impl From<directory::App> for App {
    fn from(a: directory::App) -> Self {
        App {
            app_type: a.app_type,
            corp_id: a.corp_id,
            name: a.name,
            system_token: a.system_token,
            previous_token_valid_until: a.previous_token_valid_until,
            rotation_pending: a.rotation_pending,
            created_at: a.created_at,
        }
    }
}

/// An organisation API key as listed: never the key itself, which is stored only as a hash.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
}

impl From<directory::ApiKey> for ApiKey {
    fn from(k: directory::ApiKey) -> Self {
        ApiKey {
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            created_at: k.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOrg {
    pub corp_id: String,
    pub name: String,
}

/// Create an organisation (bootstrap admin key only).
#[utoipa::path(post, path = "/api/v1/orgs", tag = "organisations", request_body = NewOrg,
    responses((status = 201, body = Org), (status = 403, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn create_org(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewOrg>,
) -> Result<(StatusCode, Json<Org>), ApiError> {
    if !caller.is_bootstrap() {
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the bootstrap admin key creates organisations",
        ));
    }
    validate::id("corpId", &body.corp_id)?;
    validate::name("name", &body.name)?;
    let org = state.store.create_org(&body.corp_id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// An organisation.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}", tag = "organisations",
    responses((status = 200, body = Org), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_org(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Org>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    state
        .store
        .org(&corp_id)
        .await?
        .map(|o| Json(o.into()))
        .ok_or_else(|| ApiError::not_found(format!("organisation `{corp_id}` not found")))
}

/// Ensures the organisation exists (the bootstrap key reaches every id).
pub async fn require_org(state: &AppState, corp_id: &str) -> Result<(), ApiError> {
    if state
        .known_orgs
        .read()
        .expect("known orgs lock")
        .contains(corp_id)
    {
        return Ok(());
    }
    match state.store.org(corp_id).await? {
        Some(_) => {
            state
                .known_orgs
                .write()
                .expect("known orgs lock")
                .insert(corp_id.to_owned());
            Ok(())
        }
        None => Err(ApiError::not_found(format!(
            "organisation `{corp_id}` not found"
        ))),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    /// Any of `admin`, `tasks`, `integration`.
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub id: String,
    /// Shown once; only its hash is stored.
    pub key: String,
    pub scopes: Vec<String>,
}

/// Create an organisation API key.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/api-keys", tag = "organisations", request_body = NewKey,
    responses((status = 201, body = CreatedKey)))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    require_org(&state, &corp_id).await?;
    validate::name("name", &body.name)?;
    validate::ids("scopes", body.scopes.iter())?;
    if body.scopes.is_empty() {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "`scopes` must name at least one scope (admin, tasks, integration)",
        ));
    }
    if let Some(bad) = body.scopes.iter().find(|s| Scope::parse(s).is_none()) {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("unknown scope `{bad}`: use admin, tasks or integration"),
        ));
    }
    let key = new_key();
    let id = state
        .store
        .create_api_key(&corp_id, &body.name, &hash_key(&key), &body.scopes)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id,
            key,
            scopes: body.scopes,
        }),
    ))
}

/// List the organisation's API keys (names, scopes, ids — never the keys).
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/api-keys", tag = "organisations",
    responses((status = 200, body = [ApiKey])))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    require_org(&state, &corp_id).await?;
    Ok(Json(wire(state.store.api_keys(&corp_id).await?)))
}

/// Revoke an API key: requests with it are refused from now on (on other nodes within a
/// second, the lifetime of their cached look-ups).
#[utoipa::path(delete, path = "/api/v1/orgs/{corp_id}/api-keys/{key_id}", tag = "organisations",
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    if state.store.revoke_api_key(&corp_id, &key_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("API key `{key_id}` not found")))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApp {
    /// Generated (`APP_…`) when absent.
    #[serde(default)]
    pub app_type: Option<String>,
    pub name: String,
}

/// A new systemToken: 40 upper-case letters and digits, like Yida's.
fn new_token() -> String {
    let raw = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    raw[..40].to_uppercase()
}

/// Create an application; its systemToken is in the answer, once.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/apps", tag = "organisations", request_body = NewApp,
    responses((status = 201, body = App)))]
pub async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    ApiJson(body): ApiJson<NewApp>,
) -> Result<(StatusCode, Json<App>), ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    require_org(&state, &corp_id).await?;
    let app_type = body.app_type.unwrap_or_else(|| {
        format!(
            "APP_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..20].to_uppercase()
        )
    });
    validate::id("appType", &app_type)?;
    validate::name("name", &body.name)?;
    let app = state
        .store
        .create_app(&corp_id, &app_type, &body.name, &new_token())
        .await?;
    Ok((StatusCode::CREATED, Json(app.into())))
}

/// Applications (tokens masked).
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/apps", tag = "organisations",
    responses((status = 200, body = Vec<App>)))]
pub async fn list_apps(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
) -> Result<Json<Vec<App>>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    Ok(Json(
        state
            .store
            .apps(&corp_id)
            .await?
            .into_iter()
            .map(|a| a.masked().into())
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rotation {
    /// How long the previous token stays valid (default one day).
    #[serde(default = "one_day")]
    pub grace_seconds: u64,
}

fn one_day() -> u64 {
    86_400
}

/// Start replacing the systemToken. The answer holds the new token, shown this once; Flowhook
/// keeps signing with the previous token until the rotation is committed
/// (`rotate-token/commit`) or the grace period ends, so install the new token at the receiver
/// (beside the old one) first. A grace of 0 switches at once.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/apps/{app_type}/rotate-token", tag = "organisations",
    request_body = Rotation, responses((status = 200, body = App), (status = 404, body = super::error::ErrorBody)))]
pub async fn rotate_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, app_type)): Path<(String, String)>,
    ApiJson(body): ApiJson<Rotation>,
) -> Result<Json<App>, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    let until = now_ms() + (body.grace_seconds.min(30 * 86_400) as i64) * 1000;
    state
        .store
        .rotate_app_token(&corp_id, &app_type, &new_token(), until)
        .await?
        .map(|a| Json(a.into()))
        .ok_or_else(|| ApiError::not_found(format!("application `{app_type}` not found")))
}

/// Commit a pending rotation: deliveries are signed with the new systemToken from now on (the
/// previous token stays honoured until its grace ends). 409 when no rotation is pending.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/apps/{app_type}/rotate-token/commit", tag = "organisations",
    responses((status = 200, body = App), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn commit_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, app_type)): Path<(String, String)>,
) -> Result<Json<App>, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    match state.store.commit_app_token(&corp_id, &app_type).await? {
        Some((app, true)) => Ok(Json(app.masked().into())),
        Some((_, false)) => Err(ApiError::client(
            StatusCode::CONFLICT,
            "no_rotation",
            format!("application `{app_type}` has no rotation awaiting its commit"),
        )),
        None => Err(ApiError::not_found(format!(
            "application `{app_type}` not found"
        ))),
    }
}
