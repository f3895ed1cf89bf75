//! Process definitions: put (a new version), get, list versions, validate only. Documents are
//! JSON, or YAML with `Content-Type: application/yaml`; an invalid one is answered with every
//! problem and its JSON path.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Scope};
use super::error::ApiError;
use super::orgs::require_org;
use super::query::ApiQuery;
use super::{wire, AppState};
use crate::engine::definition::{self, Definition, Format};
use crate::store::processes;

// A saved version of a definition (no doc comment: it would show in the API document).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredDefinition {
    pub process_code: String,
    pub version: i64,
    pub app_type: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub definition: Definition,
    pub created_at: i64,
}

impl From<processes::StoredDefinition> for StoredDefinition {
    fn from(d: processes::StoredDefinition) -> Self {
        StoredDefinition {
            process_code: d.process_code,
            version: d.version,
            app_type: d.app_type,
            name: d.name,
            definition: d.definition,
            created_at: d.created_at,
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{corp_id}/processes/validate", post(validate))
        .route(
            "/api/v1/orgs/{corp_id}/processes/{process_code}",
            put(put_definition).get(get_definition),
        )
        .route(
            "/api/v1/orgs/{corp_id}/processes/{process_code}/versions",
            get(versions),
        )
}

fn format_of(headers: &HeaderMap) -> Format {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("yaml") {
        Format::Yaml
    } else {
        Format::Json
    }
}

/// Parses and validates a document. Off the async workers: a document may hold many route
/// conditions, each compiled and measured (bounded, see `engine::condition`), and a large YAML
/// or JSON body takes its time too; none of it may hold up other requests.
async fn parse(
    state: &AppState,
    corp_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Definition, ApiError> {
    let (_, dir) = state.store.load_directory(corp_id).await?;
    let format = format_of(headers);
    let body = body.clone();
    tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body).map_err(|_| {
            ApiError::client(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "the document is not UTF-8",
            )
        })?;
        definition::parse(text, format, &dir).map_err(ApiError::InvalidDefinition)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("validating a definition: {e}")))?
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct PutParams {
    /// The application the process belongs to.
    pub app_type: String,
}

/// Save a definition as the next version of `process_code` (running instances keep theirs).
#[utoipa::path(put, path = "/api/v1/orgs/{corp_id}/processes/{process_code}", tag = "processes",
    params(PutParams), request_body(content = Object, description = "The definition (JSON, or YAML with Content-Type application/yaml)"),
    responses((status = 201, body = StoredDefinition), (status = 422, body = super::error::ErrorBody)))]
pub async fn put_definition(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, process_code)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<PutParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<StoredDefinition>), ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    require_org(&state, &corp_id).await?;
    super::validate::id("appType", &params.app_type)?;
    let def = parse(&state, &corp_id, &headers, &body).await?;
    if def.process_code != process_code {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "the document's processCode `{}` differs from the path's `{process_code}`",
                def.process_code
            ),
        ));
    }
    if state.store.app(&corp_id, &params.app_type).await?.is_none() {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("unknown application `{}`", params.app_type),
        ));
    }
    let stored = state
        .store
        .put_definition(&corp_id, &params.app_type, &def)
        .await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Valid {
    pub valid: bool,
}

/// Validate a definition without saving it.
#[utoipa::path(post, path = "/api/v1/orgs/{corp_id}/processes/validate", tag = "processes",
    request_body(content = Object), responses((status = 200, body = Valid), (status = 422, body = super::error::ErrorBody)))]
pub async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    Path(corp_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Valid>, ApiError> {
    caller.check(&corp_id, Scope::Admin)?;
    require_org(&state, &corp_id).await?;
    parse(&state, &corp_id, &headers, &body).await?;
    Ok(Json(Valid { valid: true }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct VersionParam {
    /// A version; the latest when absent.
    pub version: Option<i64>,
}

/// A definition (the latest version unless `version` is given).
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/processes/{process_code}", tag = "processes",
    params(VersionParam), responses((status = 200, body = StoredDefinition), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_definition(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, process_code)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<VersionParam>,
) -> Result<Json<StoredDefinition>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    state
        .store
        .definition(&corp_id, &process_code, q.version)
        .await?
        .map(|d| Json(d.into()))
        .ok_or_else(|| ApiError::not_found(format!("process `{process_code}` not found")))
}

/// Every version, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{corp_id}/processes/{process_code}/versions", tag = "processes",
    responses((status = 200, body = Vec<StoredDefinition>)))]
pub async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path((corp_id, process_code)): Path<(String, String)>,
) -> Result<Json<Vec<StoredDefinition>>, ApiError> {
    caller.check(&corp_id, Scope::Tasks)?;
    let all = state
        .store
        .definitions(&corp_id, &process_code, None, 1000)
        .await?;
    if all.is_empty() {
        return Err(ApiError::not_found(format!(
            "process `{process_code}` not found"
        )));
    }
    Ok(Json(wire(all)))
}
