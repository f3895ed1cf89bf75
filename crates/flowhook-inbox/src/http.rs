//! The inbox's HTTP interface: the callback endpoints senders post to, each user's unified
//! lists (JSON, cursor-paginated), a plain HTML page of them, and health.
//!
//! A callback is answered 2xx only after the event is committed; 401 when it fails
//! authentication (signature, unknown app, replay window), 400 when malformed, 404 for an
//! unknown source or action, 503 when it could not be stored (so the sender retries). Error
//! bodies are `{"code", "message"}` and never carry a token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flowhook_sign::event::EventKind;
use flowhook_sign::receive::{RawRequest, Verifier};
use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::page;
use crate::store::{decode_cursor, Accepted, List, Outcome, Store, Writer};

/// A source as the handlers need it: its apps' tokens.
pub struct SourceTokens {
    pub tokens: HashMap<String, Vec<String>>,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub writer: Writer,
    pub sources: Arc<HashMap<String, SourceTokens>>,
    pub max_skew: std::time::Duration,
}

impl AppState {
    pub fn new(config: &Config, store: Store, writer: Writer) -> Self {
        let sources = config
            .sources
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    SourceTokens {
                        tokens: s.token_map(),
                    },
                )
            })
            .collect();
        AppState {
            store,
            writer,
            sources: Arc::new(sources),
            max_skew: config.max_skew(),
        }
    }
}

pub fn router(state: AppState, body_limit_bytes: usize) -> Router {
    Router::new()
        .route("/callbacks/{source}/{action}", post(callback))
        .route("/users/{user_id}/tasks", get(list))
        .route("/users/{user_id}/counts", get(counts))
        .route("/users/{user_id}", get(page::user_page))
        .route("/", get(page::index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `POST /callbacks/{source}/{created|finished|cancelled|deleted|cc}`: a connector action.
async fn callback(
    State(state): State<AppState>,
    Path((source, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(tokens) = state.sources.get(&source) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source `{source}` is configured"),
        );
    };
    let kind: EventKind = match action.parse() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::NOT_FOUND, "unknown_action", e.to_string()),
    };
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let request = RawRequest {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: &body,
        headers: &pairs,
    };
    let received_at = now_ms();
    let verified = match Verifier::new(&tokens.tokens)
        .max_skew(state.max_skew)
        .verify(kind, &request, received_at)
    {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(%source, action = kind.short_name(), code = e.code(), "callback refused");
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, e.code(), e.to_string());
        }
    };
    let event_id = verified.meta.event_id.clone();
    match state
        .writer
        .store(Accepted {
            source: source.clone(),
            event: verified,
            received_at,
        })
        .await
    {
        Ok(outcome) => {
            tracing::debug!(%source, action = kind.short_name(), ?event_id, ?outcome, "callback stored");
            let status = match outcome {
                Outcome::Stored => "stored",
                Outcome::Duplicate => "duplicate",
                Outcome::InstanceDeleted => "instance_deleted",
            };
            (StatusCode::OK, Json(json!({"status": status}))).into_response()
        }
        Err(e) => {
            tracing::warn!(%source, error = %e, "callback not stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_stored",
                "the event could not be stored; send it again",
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub list: Option<String>,
    pub source: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// A list by name (`todo` when absent); the error is the message of a 400.
pub fn parse_list(name: Option<&str>) -> Result<List, String> {
    match name.unwrap_or("todo") {
        "todo" => Ok(List::Todo),
        "done" => Ok(List::Done),
        "cc" => Ok(List::Cc),
        "created" => Ok(List::Created),
        other => Err(format!(
            "unknown list `{other}`: expected todo, done, cc or created"
        )),
    }
}

/// `GET /users/{userId}/tasks?list=todo|done|cc|created[&source=][&cursor=][&limit=]`
async fn list(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Query(p): Query<ListParams>,
) -> Response {
    let list = match parse_list(p.list.as_deref()) {
        Ok(l) => l,
        Err(m) => return error(StatusCode::BAD_REQUEST, "unknown_list", m),
    };
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "limit is between 1 and 500",
        );
    }
    let cursor = match p.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "the cursor is not one this server gave",
            )
        }
    };
    match state
        .store
        .list(&user_id, list, p.source.as_deref(), cursor, limit)
        .await
    {
        Ok(page) => Json(page).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "list failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the list could not be read",
            )
        }
    }
}

/// `GET /users/{userId}/counts`: the size of each list.
async fn counts(State(state): State<AppState>, Path(user_id): Path<String>) -> Response {
    match state.store.counts(&user_id).await {
        Ok(counts) => {
            let map: serde_json::Map<String, serde_json::Value> = counts
                .into_iter()
                .map(|(l, n)| (l.as_str().to_owned(), json!(n)))
                .collect();
            Json(map).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "counts failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the counts could not be read",
            )
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response(),
    }
}

/// For the page module: the same list read, HTML errors aside.
pub(crate) async fn read_page(
    state: &AppState,
    user_id: &str,
    list: List,
    cursor: Option<&str>,
) -> Result<crate::store::Page, String> {
    let cursor = cursor.and_then(decode_cursor);
    state
        .store
        .list(user_id, list, None, cursor, 50)
        .await
        .map_err(|e| e.to_string())
}

pub(crate) fn html(body: String) -> Response {
    Html(body).into_response()
}
