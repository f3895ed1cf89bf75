//! The one HTTP error type: a stable `code`, a human `message`, the right status.
//!
//! A 500 is logged with its cause and answered with a generic message; internal details
//! (SQL, paths, secrets) never reach the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable (`not_found`, `payload_too_large`, …).
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
    /// Every problem of an invalid document, with its JSON path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<crate::engine::definition::Problem>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("invalid definition")]
    InvalidDefinition(Vec<crate::engine::definition::Problem>),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::Client {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }
}

impl ApiError {
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(what) => ApiError::client(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            crate::store::StoreError::Invalid(why) => {
                ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid", why)
            }
            other => match other.outage() {
                Some(why) => ApiError::Unavailable(why.into()),
                None => ApiError::Internal(other.into()),
            },
        }
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        let message = e.to_string();
        match e {
            E::NotFound(_) => ApiError::client(StatusCode::NOT_FOUND, "not_found", message),
            E::Forbidden(_) => ApiError::client(StatusCode::FORBIDDEN, "forbidden", message),
            E::Conflict(_) => ApiError::client(StatusCode::CONFLICT, "conflict", message),
            E::Invalid(_) => ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            E::NoApprover(_) => {
                ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "no_approver", message)
            }
            E::AlreadyAssignee { .. } => ApiError::client(
                StatusCode::UNPROCESSABLE_ENTITY,
                "already_assignee",
                message,
            ),
            E::Corrupt(_) => ApiError::Internal(anyhow::anyhow!(message)),
        }
    }
}

impl From<crate::store::writer::WriteError> for ApiError {
    fn from(e: crate::store::writer::WriteError) -> Self {
        use crate::store::writer::WriteError as W;
        match e {
            W::Engine(e) => e.into(),
            W::Store(e) => e.into(),
            W::Stopped => ApiError::Unavailable("the writer has stopped".into()),
            W::Internal => ApiError::Internal(anyhow::anyhow!(W::Internal.to_string())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::InvalidDefinition(problems) => {
                let n = problems.len();
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(ErrorBody {
                        code: "invalid_definition".into(),
                        message: format!("the definition has {n} problem(s)"),
                        problems: Some(problems),
                    }),
                )
                    .into_response();
            }
            ApiError::Client {
                status,
                code,
                message,
            } => (status, code, message),
            ApiError::Unavailable(why) => return unavailable(&why),
            ApiError::Internal(e) => {
                // A database outage that reached us wrapped in another error is still an outage.
                if let Some(why) = outage_in(&e) {
                    return unavailable(why);
                }
                tracing::error!(error = %format!("{e:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log".to_owned(),
                )
            }
        };
        error_response(status, code, message)
    }
}

/// Seconds a client waits before retrying a 503, sent as `Retry-After`.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The database outage somewhere in `e`'s chain of causes, if any.
fn outage_in(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(crate::store::outage_of)
}

/// 503 with `Retry-After`: the node or its database cannot answer now; the request may be
/// sent again unchanged. `why` is a fixed phrase (never a driver's text).
fn unavailable(why: &str) -> Response {
    tracing::warn!(%why, "answering 503");
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("{why}; retry in {RETRY_AFTER_SECS} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            code: code.to_owned(),
            message,
            problems: None,
        }),
    )
        .into_response()
}

/// Turns every error response that is not already JSON — the framework's own 404/405/413 and
/// extractor rejections — into an [`ErrorBody`], so clients parse one error shape.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this method is not allowed on this resource".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body exceeds the configured limit (body_limit_bytes)".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json".to_owned(),
        ),
        s if s.is_client_error() => (
            "bad_request",
            s.canonical_reason().unwrap_or("bad request").to_lowercase(),
        ),
        _ => ("internal", "internal error; see the server log".to_owned()),
    };
    let mut json = error_response(status, code, message);
    // Keep headers such as `Allow` (405) that tell the client how to do better.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was not read, so the connection cannot be reused: say so, or the client puts
        // it back in its pool and its next request fails on a closed socket.
        json.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    json
}
