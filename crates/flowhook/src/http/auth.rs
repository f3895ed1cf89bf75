//! Who is calling: the bootstrap admin key (from configuration) or an organisation API key
//! (stored as a SHA-256 hash, with scopes), and — for task commands — the acting user named in
//! `X-Flowhook-User`. Another organisation's resources answer 404, as if they did not exist.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;

/// The header naming the user on whose behalf a command is made.
pub const USER_HEADER: &str = "x-flowhook-user";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Manage the organisation: apps, people, processes, keys; implies every other scope.
    Admin,
    /// Start instances, act on tasks, read task lists.
    Tasks,
    /// Connectors, sync strategy, deliveries.
    Integration,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Tasks => "tasks",
            Scope::Integration => "integration",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        [Scope::Admin, Scope::Tasks, Scope::Integration]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` for the bootstrap admin key (every organisation).
    pub corp_id: Option<String>,
    pub scopes: Vec<String>,
}

/// SHA-256 hex of an API key: what is stored and looked up.
pub fn hash_key(key: &str) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(key.as_bytes()) {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// A new random API key (`fhk_` + 64 hex digits from two v4 UUIDs: 244 random bits).
pub fn new_key() -> String {
    format!(
        "fhk_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// How long a key found in the database is trusted without reading it again (a revocation
/// on another node takes effect within this time; on this node at once).
pub const KEY_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Caller {
    pub fn is_bootstrap(&self) -> bool {
        self.corp_id.is_none()
    }

    /// May this caller use `scope` in `corp_id`? Another organisation is "not found".
    pub fn check(&self, corp_id: &str, scope: Scope) -> Result<(), ApiError> {
        match &self.corp_id {
            None => Ok(()),
            Some(own) if own != corp_id => Err(ApiError::not_found(format!(
                "organisation `{corp_id}` not found"
            ))),
            Some(_) => {
                if self
                    .scopes
                    .iter()
                    .any(|s| s == Scope::Admin.as_str() || s == scope.as_str())
                {
                    Ok(())
                } else {
                    Err(ApiError::client(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!("this API key lacks the `{}` scope", scope.as_str()),
                    ))
                }
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError::client(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <API key>`"))?;
        let key = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <API key>`"))?;
        if let Some(admin) = &state.admin_key {
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                admin.as_bytes(),
                key.as_bytes(),
            )) {
                return Ok(Caller {
                    corp_id: None,
                    scopes: vec![Scope::Admin.as_str().into()],
                });
            }
        }
        let hash = hash_key(key);
        // Only keys that exist are kept: an unknown key is looked up every time, so one just
        // created on another node works at once, and junk keys fill nothing.
        let owner = match state.known_keys.get(&hash) {
            Some(owner) => Some(owner),
            None => {
                let generation = crate::support::settings_generation();
                let owner = state.store.key_owner(&hash).await?;
                if let Some(o) = &owner {
                    state.known_keys.put(&hash, generation, o.clone());
                }
                owner
            }
        };
        match owner {
            Some(owner) => Ok(Caller {
                corp_id: Some(owner.corp_id),
                scopes: owner.scopes,
            }),
            None => Err(unauthorized("unknown API key")),
        }
    }
}

/// The acting user of a command.
#[derive(Debug, Clone)]
pub struct ActingUser(pub String);

impl FromRequestParts<AppState> for ActingUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let user = parts
            .headers
            .get(USER_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::client(
                    StatusCode::BAD_REQUEST,
                    "missing_user",
                    "name the acting user in the `X-Flowhook-User` header",
                )
            })?;
        super::validate::id("X-Flowhook-User", &user)?;
        Ok(ActingUser(user))
    }
}
