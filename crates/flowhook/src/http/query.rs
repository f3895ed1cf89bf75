//! `ApiQuery<T>`: axum's query extractor, with a rejection that names the query parameter at
//! fault and what it accepts — `400 {"code": "invalid_query", "message": "query parameter
//! `list`: unknown variant `bogus`, expected one of `created`, `todo`, `done`, `cc`"}` — instead
//! of a bare "bad request".

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// A query string as `T`, or a 400 naming the parameter.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            message(&path, &inner),
        )
    })
}

/// A 400 for a query parameter whose value is not one of `accepted`.
pub fn not_one_of(name: &str, value: &str, accepted: &[&str]) -> ApiError {
    ApiError::client(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!(
            "query parameter `{name}`: `{}` is not one of {}",
            value.escape_default().take(100).collect::<String>(),
            accepted
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn message(path: &str, inner: &str) -> String {
    if let Some(field) = inner
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("query parameter `{field}` is required");
    }
    if path.is_empty() || path == "." {
        return format!("the query string is not valid: {inner}");
    }
    let inner = match inner {
        "invalid digit found in string" | "cannot parse integer from empty string" => {
            "expected a whole number"
        }
        "number too large to fit in target type" => "the number is too large",
        other => other,
    };
    format!("query parameter `{path}`: {inner}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Q {
        list: crate::store::taskcenter::List,
        app_type: String,
        limit: Option<u32>,
    }

    fn error(query: &str) -> String {
        parse::<Q>(query).unwrap_err().to_string()
    }

    #[test]
    fn the_parameter_at_fault_is_named_with_what_it_accepts() {
        assert!(parse::<Q>("list=todo&appType=A&limit=3").is_ok());
        let e = error("list=bogus&appType=A");
        assert!(e.contains("query parameter `list`"), "{e}");
        assert!(e.contains("`created`, `todo`, `done`, `cc`"), "{e}");
        assert_eq!(error("list=todo"), "query parameter `appType` is required");
        let e = error("list=todo&appType=A&limit=x");
        assert_eq!(e, "query parameter `limit`: expected a whole number");
    }
}
