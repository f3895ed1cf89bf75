//! Input validation shared by every write endpoint: the rules of `engine::limits` (ids, names,
//! texts, form data), applied once at the API so SQLite and PostgreSQL store the same things,
//! and answered `422 {"code": "invalid", "message": "`field` …"}` naming the JSON field (or the
//! path parameter, query parameter or header).
//!
//! Three layers: [`check_path_and_query`] runs on every route (path parameters are ids, no
//! query parameter holds a NUL); [`nul_in_json`] runs inside `ApiJson` on every JSON body (no
//! string anywhere holds a NUL, which PostgreSQL cannot store); the handlers check their fields
//! with the functions below.

use std::collections::BTreeMap;

use axum::extract::{RawPathParams, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::engine::limits;
use crate::integration::connectors::{ActionInput, Auth, ConnectorInput, Strategy};

/// A 422 naming `field`.
pub fn invalid(field: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::client(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!("`{field}` {problem}"),
    )
}

fn named(field: &str, result: Result<(), String>) -> Result<(), ApiError> {
    result.map_err(|e| invalid(field, e))
}

/// An id (see [`limits::id`]).
pub fn id(field: &str, value: &str) -> Result<(), ApiError> {
    named(field, limits::id(value))
}

/// An id, when present.
pub fn opt_id(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    value.map_or(Ok(()), |v| id(field, v))
}

/// A list of at most [`limits::MAX_LIST`] ids; the one at fault is named `field[i]`.
pub fn ids<'a>(
    field: &str,
    values: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), ApiError> {
    if values.len() > limits::MAX_LIST {
        return Err(invalid(
            field,
            format!("has {} items; at most {}", values.len(), limits::MAX_LIST),
        ));
    }
    for (i, v) in values.enumerate() {
        id(&format!("{field}[{i}]"), v)?;
    }
    Ok(())
}

/// A name: one line of at most [`limits::NAME_MAX_CHARS`].
pub fn name(field: &str, value: &str) -> Result<(), ApiError> {
    named(field, limits::line(value, limits::NAME_MAX_CHARS))
}

/// One line of at most `max` characters (titles, URLs, credentials).
pub fn line(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    named(field, limits::line(value, max))
}

/// Free text of at most [`limits::TEXT_MAX_CHARS`]: line breaks allowed.
pub fn text(field: &str, value: &str) -> Result<(), ApiError> {
    named(field, limits::text(value, limits::TEXT_MAX_CHARS))
}

/// Form data within the bounds route conditions are measured against (see
/// [`limits::form`]); the field at fault is named `formData.<name>`.
pub fn form(field: &str, data: &BTreeMap<String, Option<String>>) -> Result<(), ApiError> {
    limits::form(data).map_err(|(key, e)| match key {
        Some(k) => invalid(
            &format!(
                "{field}.{}",
                k.escape_default().take(200).collect::<String>()
            ),
            e,
        ),
        None => invalid(field, e),
    })
}

/// A connector's texts: its name, base URL and credentials (which travel in headers).
pub fn connector(input: &ConnectorInput) -> Result<(), ApiError> {
    name("name", &input.name)?;
    line("baseUrl", &input.base_url, limits::URL_MAX_CHARS)?;
    let secret = |field: &str, v: &str| line(field, v, limits::SECRET_MAX_CHARS);
    match &input.auth {
        Auth::None => {}
        Auth::Basic { username, password } => {
            secret("auth.username", username)?;
            secret("auth.password", password)?;
        }
        Auth::ApiKey { name, value, .. } => {
            secret("auth.name", name)?;
            secret("auth.value", value)?;
        }
        Auth::Bearer { token } => secret("auth.token", token)?,
    }
    for (k, v) in &input.default_headers {
        let field = format!(
            "defaultHeaders.{}",
            k.escape_default().take(200).collect::<String>()
        );
        line(&field, k, limits::NAME_MAX_CHARS)?;
        secret(&field, v)?;
    }
    Ok(())
}

/// An action's texts.
pub fn action(input: &ActionInput) -> Result<(), ApiError> {
    id("connectorId", &input.connector_id)?;
    name("name", &input.name)?;
    line("method", &input.method, 16)?;
    line("path", &input.path, limits::URL_MAX_CHARS)
}

/// A sync strategy's ids.
pub fn strategy(s: &Strategy) -> Result<(), ApiError> {
    let a = &s.actions;
    for (field, value) in [
        ("actions.created", &a.created),
        ("actions.finished", &a.finished),
        ("actions.cancelled", &a.cancelled),
        ("actions.deleted", &a.deleted),
        ("actions.cc", &a.cc),
    ] {
        opt_id(field, value.as_deref())?;
    }
    if let Some(apps) = &s.app_types {
        ids("appTypes", apps.iter())?;
    }
    if let Some(codes) = &s.process_codes {
        ids("processCodes", codes.iter())?;
    }
    Ok(())
}

/// A JSON body holds no NUL in any string or key: checked on the raw bytes first (JSON can
/// only write it as `\u0000`), so an ordinary body costs one scan.
pub fn nul_in_json(body: &[u8]) -> Result<(), ApiError> {
    let escaped = body
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'));
    if !escaped {
        return Ok(());
    }
    // The escape may be `\\u0000` (a backslash, then text): only the parsed value tells.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(()); // malformed: the JSON extractor says so
    };
    match limits::nul_in(&value, "$") {
        Some(path) => {
            let field = path.strip_prefix("$.").unwrap_or(&path);
            Err(invalid(
                field,
                "contains a NUL character (U+0000), which cannot be stored",
            ))
        }
        None => Ok(()),
    }
}

/// The name a path parameter has in the API's documentation.
fn param_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Middleware on every route: each path parameter is an id, and no query parameter holds a
/// NUL — before any handler reads the database with them.
pub async fn check_path_and_query(params: RawPathParams, request: Request, next: Next) -> Response {
    for (name, value) in &params {
        if let Err(e) = limits::id(value) {
            return invalid(&format!("path parameter {}", param_name(name)), e).into_response();
        }
    }
    if let Some(query) = request.uri().query() {
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k.contains('\0') || v.contains('\0') {
                let k: String = k.escape_default().take(200).collect();
                return invalid(
                    &format!("query parameter {k}"),
                    "contains a NUL character (U+0000)",
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_json_is_found_with_its_field() {
        assert!(nul_in_json(br#"{"name": "alice"}"#).is_ok());
        assert!(
            nul_in_json(br#"{"name": "a\\u0000b"}"#).is_ok(),
            "a backslash, then text"
        );
        let e = nul_in_json(br#"{"formData": {"a": "x\u0000"}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("`formData.a` contains a NUL"),
            "{e}"
        );
        let e = nul_in_json(br#"{"members": ["ok", "\u0000"]}"#).unwrap_err();
        assert!(e.to_string().starts_with("`members[1]`"), "{e}");
    }

    #[test]
    fn path_parameters_are_named_as_documented() {
        assert_eq!(param_name("corp_id"), "corpId");
        assert_eq!(param_name("process_code"), "processCode");
        assert_eq!(param_name("id"), "id");
    }
}
