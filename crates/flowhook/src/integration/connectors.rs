//! Connectors (base URL, authentication, default headers, timeout), their actions (method,
//! path, body encoding) and each organisation's approval-task sync strategy: which action
//! receives each of the five events, filters, ordering and signing.
//!
//! Credentials are secrets: stored for sending, shown back only masked, never logged (the
//! `Debug` of [`Auth`] is redacted).

use std::collections::BTreeMap;

use flowhook_sign::event::EventKind;
use serde::{Deserialize, Serialize};

/// Connector authentication, as Yida's HTTP connector offers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        password: String,
    },
    /// An API key in a header or in the query string.
    ApiKey {
        #[serde(rename = "in")]
        location: KeyLocation,
        name: String,
        value: String,
    },
    Bearer {
        token: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyLocation {
    Header,
    Query,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Basic { .. } => "Auth::Basic(<redacted>)",
            Auth::ApiKey { .. } => "Auth::ApiKey(<redacted>)",
            Auth::Bearer { .. } => "Auth::Bearer(<redacted>)",
        })
    }
}

/// What a masked value shows: nothing of the secret, not even its length.
pub const MASKED: &str = "***";

/// A secret as shown: [`MASKED`], no character of it (a prefix helps an attacker more than it
/// helps an operator, who can compare the connector's name instead).
pub fn mask(_secret: &str) -> String {
    MASKED.into()
}

/// A URL as shown: the password of its userinfo masked (`http://user:***@host/…`).
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(MASKED));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        // Never stored (validated when saved); when in doubt, nothing that could be userinfo.
        Err(_) if url.contains('@') => MASKED.into(),
        Err(_) => url.to_owned(),
    }
}

/// The username and password (percent-decoded) of a URL's userinfo, when it has one: what the
/// HTTP client sends as Basic authentication.
pub fn url_credentials(url: &url::Url) -> Option<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    (!url.username().is_empty() || url.password().is_some())
        .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))))
}

/// `Basic base64(user:password)`, as sent.
pub fn basic_authorization(username: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Every configured secret of a connector, in each form a receiver could echo back, to scrub
/// from what is recorded of its answers (headers, body, errors): the credentials' values, the
/// base URL's password, the default headers' values — each raw, percent- and form-encoded and
/// JSON-escaped — and, for Basic (configured or from the base URL), `user:password` in base64.
///
/// Credentials are scrubbed whatever their length; a default header value only from 4
/// characters on (a shorter one would match all over an answer and can hardly be a secret —
/// it is still masked wherever the connector is shown).
#[derive(Debug, Default, Clone)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn of(connector: &Connector, auth: &Auth) -> Secrets {
        let mut values: Vec<String> = Vec::new();
        match auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                values.push(password.clone());
                values.push(basic_authorization(username, password)["Basic ".len()..].to_owned());
            }
            Auth::ApiKey { value, .. } => values.push(value.clone()),
            Auth::Bearer { token } => values.push(token.clone()),
        }
        if let Ok(url) = url::Url::parse(&connector.base_url) {
            if let Some((user, password)) = url_credentials(&url) {
                values.extend(url.password().map(str::to_owned));
                values.push(basic_authorization(&user, &password)["Basic ".len()..].to_owned());
                values.push(password);
            }
        }
        values.extend(
            connector
                .default_headers
                .values()
                .filter(|v| v.chars().count() >= 4)
                .cloned(),
        );
        let mut forms: Vec<String> = Vec::new();
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            let json = serde_json::to_string(&v).expect("a string serialises");
            forms.push(json[1..json.len() - 1].to_owned());
            forms.push(
                percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
            forms.push(url::form_urlencoded::byte_serialize(v.as_bytes()).collect());
            forms.push(v);
        }
        // Longest first: a secret that contains another is replaced whole.
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Secrets(forms)
    }

    /// `text` with every secret replaced by [`MASKED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASKED);
            }
        }
        out
    }

    /// The length in bytes of the longest form: what may straddle a cut.
    pub fn longest(&self) -> usize {
        self.0.first().map_or(0, String::len)
    }
}

impl Auth {
    /// The same shape with every secret masked, for showing back.
    pub fn masked(&self) -> Auth {
        match self {
            Auth::None => Auth::None,
            Auth::Basic { username, password } => Auth::Basic {
                username: username.clone(),
                password: mask(password),
            },
            Auth::ApiKey {
                location,
                name,
                value,
            } => Auth::ApiKey {
                location: *location,
                name: name.clone(),
                value: mask(value),
            },
            Auth::Bearer { token } => Auth::Bearer { token: mask(token) },
        }
    }

    /// The authentication an edit asks for, with the stored secrets kept where the edit does
    /// not replace them: credentials are write-only, so an edit form (or a `GET` sent back as
    /// a `PUT`) cannot show them. A secret sent empty, or exactly as it is shown (`***`), keeps
    /// the stored one — when the type is unchanged; a new type needs its
    /// secret. Anything else replaces it.
    pub fn keeping_secrets_of(self, stored: &Auth) -> Result<Auth, String> {
        let keep = |sent: String, old: &str| -> String {
            if sent.is_empty() || sent == mask(old) {
                old.to_owned()
            } else {
                sent
            }
        };
        let need = |sent: &str, what: &str| -> Result<(), String> {
            if sent.is_empty() {
                Err(format!("auth: a new authentication type needs its {what}"))
            } else {
                Ok(())
            }
        };
        Ok(match (self, stored) {
            (Auth::None, _) => Auth::None,
            (Auth::Basic { username, password }, Auth::Basic { password: old, .. }) => {
                Auth::Basic {
                    username,
                    password: keep(password, old),
                }
            }
            (
                Auth::ApiKey {
                    location,
                    name,
                    value,
                },
                Auth::ApiKey { value: old, .. },
            ) => Auth::ApiKey {
                location,
                name,
                value: keep(value, old),
            },
            (Auth::Bearer { token }, Auth::Bearer { token: old }) => Auth::Bearer {
                token: keep(token, old),
            },
            (a @ Auth::Basic { .. }, _) => {
                need(a.secrets()[0], "password")?;
                a
            }
            (a @ Auth::ApiKey { .. }, _) => {
                need(a.secrets()[0], "value")?;
                a
            }
            (a @ Auth::Bearer { .. }, _) => {
                need(a.secrets()[0], "token")?;
                a
            }
        })
    }

    /// The secret values, to scrub from anything recorded.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Auth::None => vec![],
            Auth::Basic { password, .. } => vec![password],
            Auth::ApiKey { value, .. } => vec![value],
            Auth::Bearer { token } => vec![token],
        }
    }
}

fn default_timeout() -> u64 {
    10_000
}

/// Requests in flight to one connector's endpoint at most, by default.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 8;

fn default_max_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}

/// The largest `maxConcurrency` a connector may ask for.
pub const MAX_CONCURRENCY: u32 = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorInput {
    pub name: String,
    /// `http://` or `https://`; action paths are appended.
    pub base_url: String,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub default_headers: BTreeMap<String, String>,
    /// Total time for one attempt, 100 ms to 60 s (default 10 s).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Requests in flight to this connector's endpoint at most, 1 to 256 (default 8): a slow or
    /// hanging endpoint holds no more of a node's delivery slots than this.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
}

/// An edit of a connector (`PUT`): the whole connector as on creation, except that the
/// credentials are write-only — `auth` omitted keeps the stored authentication, and a secret
/// sent empty or exactly as shown (masked) keeps the stored secret
/// ([`Auth::keeping_secrets_of`]); so do a base URL password and a default header value sent
/// as shown (`***`), so that a connector read and sent back unchanged keeps its secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorUpdate {
    pub name: String,
    /// `http://` or `https://`; action paths are appended. Applies from the next delivery.
    pub base_url: String,
    /// Omitted: the stored authentication stays.
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub default_headers: BTreeMap<String, String>,
    /// Total time for one attempt, 100 ms to 60 s (default 10 s).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Requests in flight to this connector's endpoint at most, 1 to 256 (default 8): a slow or
    /// hanging endpoint holds no more of a node's delivery slots than this.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
}

impl ConnectorUpdate {
    /// The connector as it will be stored, given the stored one and its authentication.
    pub fn resolve(self, stored: &Connector, stored_auth: &Auth) -> Result<ConnectorInput, String> {
        let auth = match self.auth {
            None => stored_auth.clone(),
            Some(a) => a.keeping_secrets_of(stored_auth)?,
        };
        let default_headers = self
            .default_headers
            .into_iter()
            .map(|(k, v)| match stored.default_headers.get(&k) {
                Some(old) if v == MASKED => (k, old.clone()),
                _ => (k, v),
            })
            .collect();
        let input = ConnectorInput {
            name: self.name,
            base_url: keeping_url_password(self.base_url, &stored.base_url),
            auth,
            default_headers,
            timeout_ms: self.timeout_ms,
            max_concurrency: self.max_concurrency,
        };
        input.validate()?;
        Ok(input)
    }
}

/// `sent` with the password of `stored` when it sends the password as shown (`***`).
fn keeping_url_password(sent: String, stored: &str) -> String {
    let (Ok(mut url), Ok(old)) = (url::Url::parse(&sent), url::Url::parse(stored)) else {
        return sent;
    };
    match (url.password() == Some(MASKED), old.password()) {
        (true, Some(password)) if url.set_password(Some(password)).is_ok() => url.to_string(),
        _ => sent,
    }
}

/// A connector. Its fields hold the values sent; it *serialises* masked — the password of
/// `baseUrl`, every credential and every default header value show as `***` — so whatever shows
/// a connector (API, console) cannot show a secret; its `Debug` is masked the same way, for logs.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connector {
    pub id: String,
    pub corp_id: String,
    pub name: String,
    /// Shown with the password of its userinfo masked.
    #[serde(serialize_with = "serialize_masked_url")]
    pub base_url: String,
    /// Masked when shown.
    #[serde(serialize_with = "serialize_masked_auth")]
    pub auth: Auth,
    /// Values masked when shown: they often carry credentials.
    #[serde(serialize_with = "serialize_masked_headers")]
    pub default_headers: BTreeMap<String, String>,
    pub timeout_ms: u64,
    /// Requests in flight to its endpoint at most.
    pub max_concurrency: u32,
    pub created_at: i64,
    /// Set while paused (after a `410 Gone`, or by an operator): nothing is sent until resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .default_headers
            .keys()
            .map(|k| (k.as_str(), MASKED))
            .collect();
        f.debug_struct("Connector")
            .field("id", &self.id)
            .field("corp_id", &self.corp_id)
            .field("name", &self.name)
            .field("base_url", &mask_url(&self.base_url))
            .field("auth", &self.auth)
            .field("default_headers", &headers)
            .field("timeout_ms", &self.timeout_ms)
            .field("paused_at", &self.paused_at)
            .finish_non_exhaustive()
    }
}

fn serialize_masked_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(url))
}

fn serialize_masked_auth<S: serde::Serializer>(auth: &Auth, s: S) -> Result<S::Ok, S::Error> {
    auth.masked().serialize(s)
}

fn serialize_masked_headers<S: serde::Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(headers.keys().map(|k| (k, MASKED)))
}

impl ConnectorInput {
    pub fn validate(&self) -> Result<(), String> {
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                // A fragment is never sent: the action's path would land after it, unseen.
                if u.fragment().is_some() {
                    return Err(format!(
                        "baseUrl `{}` has a fragment (`#…`); a base URL is a scheme, host, \
                         optional path and query",
                        mask_url(&self.base_url)
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "baseUrl `{}` is not an http(s) URL",
                    mask_url(&self.base_url)
                ))
            }
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("timeoutMs must be between 100 and 60000".into());
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(format!(
                "maxConcurrency must be between 1 and {MAX_CONCURRENCY}"
            ));
        }
        for (k, v) in &self.default_headers {
            if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(v).is_err()
            {
                return Err(format!("default header `{k}` is not a valid HTTP header"));
            }
        }
        self.auth.validate()
    }
}

impl Auth {
    /// Refuses credentials that cannot be sent: a header name or value that is not valid HTTP
    /// (CR, LF, NUL or another control character anywhere), a Basic user name with a colon. A
    /// connector saved with one would fail every attempt on this machine, before any request
    /// left it.
    pub fn validate(&self) -> Result<(), String> {
        let value = |what: &str, v: &str| {
            if v.is_empty() || axum::http::HeaderValue::from_str(v).is_err() {
                Err(format!(
                    "auth.{what} must be a non-empty HTTP header value (no control characters)"
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Auth::None => Ok(()),
            Auth::Basic { username, password } => {
                if username.contains(':') || username.chars().any(char::is_control) {
                    return Err("auth.username must not contain `:` or control characters".into());
                }
                if password.chars().any(char::is_control) {
                    return Err("auth.password must not contain control characters".into());
                }
                Ok(())
            }
            Auth::Bearer { token } => value("token", token),
            Auth::ApiKey {
                location: KeyLocation::Header,
                name,
                value: key,
            } => {
                if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(format!(
                        "auth.name `{}` is not a valid HTTP header name",
                        name.escape_debug()
                    ));
                }
                value("value", key)
            }
            Auth::ApiKey {
                location: KeyLocation::Query,
                name,
                value: key,
            } => {
                if name.is_empty() || name.chars().chain(key.chars()).any(char::is_control) {
                    return Err(
                        "auth.name and auth.value of a query API key must be non-empty text without control characters"
                            .into(),
                    );
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Encoding {
    /// application/x-www-form-urlencoded (Yida's).
    #[default]
    Form,
    Json,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Form => "form",
            Encoding::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionInput {
    pub connector_id: String,
    pub name: String,
    /// Only POST, as Yida's connector actions.
    #[serde(default = "post")]
    pub method: String,
    /// Appended to the connector's base URL, e.g. `/callbacks/created`.
    pub path: String,
    #[serde(default)]
    pub encoding: Encoding,
}

fn post() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub id: String,
    pub corp_id: String,
    pub connector_id: String,
    pub name: String,
    pub method: String,
    pub path: String,
    pub encoding: Encoding,
    pub created_at: i64,
}

/// Which action receives each event; absent = not pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventActions {
    pub created: Option<String>,
    pub finished: Option<String>,
    pub cancelled: Option<String>,
    pub deleted: Option<String>,
    pub cc: Option<String>,
}

impl EventActions {
    pub fn for_kind(&self, kind: EventKind) -> Option<&str> {
        match kind {
            EventKind::Created => self.created.as_deref(),
            EventKind::Finished => self.finished.as_deref(),
            EventKind::Cancelled => self.cancelled.as_deref(),
            EventKind::Deleted => self.deleted.as_deref(),
            EventKind::Cc => self.cc.as_deref(),
        }
    }

    /// The events mapped to any of `action_ids`, with their action, in the order of the five.
    pub fn events_using<'a>(&'a self, action_ids: &[String]) -> Vec<(EventKind, &'a str)> {
        EventKind::ALL
            .into_iter()
            .filter_map(|k| self.for_kind(k).map(|a| (k, a)))
            .filter(|(_, a)| action_ids.iter().any(|id| id == a))
            .collect()
    }

    /// Every action id the strategy maps an event to.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        [
            &self.created,
            &self.finished,
            &self.cancelled,
            &self.deleted,
            &self.cc,
        ]
        .into_iter()
        .flatten()
    }
}

fn yes() -> bool {
    true
}

/// The approval-task sync strategy of an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub actions: EventActions,
    /// Only these applications (default: all).
    #[serde(default)]
    pub app_types: Option<Vec<String>>,
    /// Only these processes (default: all).
    #[serde(default)]
    pub process_codes: Option<Vec<String>>,
    /// Deliver each instance's events in `seq` order (default on).
    #[serde(default = "yes")]
    pub ordered: bool,
    /// Also sign with Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    #[serde(default)]
    pub standard_webhooks: bool,
}

impl Strategy {
    /// Does an event of this app and process go out at all?
    pub fn selects(&self, app_type: &str, process_code: &str) -> bool {
        self.enabled
            && self
                .app_types
                .as_ref()
                .is_none_or(|a| a.iter().any(|x| x == app_type))
            && self
                .process_codes
                .as_ref()
                .is_none_or(|p| p.iter().any(|x| x == process_code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bearer(t: &str) -> Auth {
        Auth::Bearer { token: t.into() }
    }

    #[test]
    fn an_edit_keeps_a_secret_sent_empty_or_as_shown() {
        let stored = bearer("s3cret-bearer-token");
        let shown = stored.masked();
        assert_eq!(shown, bearer("***"));
        assert_eq!(shown.keeping_secrets_of(&stored).unwrap(), stored);
        assert_eq!(bearer("").keeping_secrets_of(&stored).unwrap(), stored);
        assert_eq!(
            bearer("a-new-token-0123")
                .keeping_secrets_of(&stored)
                .unwrap(),
            bearer("a-new-token-0123")
        );
        // Shown as `***` whatever its length: sent back so, it is kept.
        let short = Auth::Basic {
            username: "u".into(),
            password: "pw".into(),
        };
        let renamed = Auth::Basic {
            username: "v".into(),
            password: "***".into(),
        };
        assert_eq!(
            renamed.keeping_secrets_of(&short).unwrap(),
            Auth::Basic {
                username: "v".into(),
                password: "pw".into()
            }
        );
        let key = Auth::ApiKey {
            location: KeyLocation::Header,
            name: "X-Key".into(),
            value: "k-0123456789".into(),
        };
        let moved = Auth::ApiKey {
            location: KeyLocation::Query,
            name: "key".into(),
            value: key.masked().secrets()[0].to_owned(),
        };
        assert_eq!(
            moved.keeping_secrets_of(&key).unwrap().secrets(),
            vec!["k-0123456789"]
        );
    }

    #[test]
    fn a_connector_sent_back_as_shown_keeps_its_secrets() {
        let mut stored = connector(
            "http://ops:Pa%24%24word@hooks.example:8080/base",
            &[("x-api-token", "header-secret-value"), ("x-tenant", "t1")],
        );
        stored.auth = bearer("s3cret-bearer-token");
        let shown = serde_json::to_value(&stored).unwrap();
        let mut edit = shown.clone();
        for k in ["id", "corpId", "createdAt"] {
            edit.as_object_mut().unwrap().remove(k);
        }
        edit["name"] = json!("renamed");
        edit["defaultHeaders"]["x-new"] = json!("v");
        let update: ConnectorUpdate = serde_json::from_value(edit).unwrap();
        let input = update.resolve(&stored, &stored.auth).unwrap();
        assert_eq!(input.base_url, stored.base_url);
        assert_eq!(input.auth, stored.auth);
        assert_eq!(
            input.default_headers,
            BTreeMap::from([
                ("x-api-token".to_string(), "header-secret-value".to_string()),
                ("x-new".to_string(), "v".to_string()),
                ("x-tenant".to_string(), "t1".to_string()),
            ])
        );
        // A new password or value replaces the stored one.
        assert_eq!(
            keeping_url_password("http://ops:new@h/".into(), &stored.base_url),
            "http://ops:new@h/"
        );
        assert_eq!(
            keeping_url_password("http://ops:***@h/".into(), "http://h/"),
            "http://ops:***@h/"
        );
    }

    #[test]
    fn a_new_authentication_type_needs_its_secret() {
        let stored = bearer("s3cret-bearer-token");
        let basic = |p: &str| Auth::Basic {
            username: "u".into(),
            password: p.into(),
        };
        assert!(basic("").keeping_secrets_of(&stored).is_err());
        // Another type's masked secret is not this one's: taken as sent.
        assert_eq!(
            basic("***").keeping_secrets_of(&stored).unwrap(),
            basic("***")
        );
        assert_eq!(Auth::None.keeping_secrets_of(&stored).unwrap(), Auth::None);
        assert!(bearer("").keeping_secrets_of(&Auth::None).is_err());
    }

    #[test]
    fn events_using_names_each_event_mapped_to_the_actions() {
        let a = EventActions {
            created: Some("act_a".into()),
            finished: Some("act_b".into()),
            cancelled: Some("act_a".into()),
            deleted: None,
            cc: Some("act_c".into()),
        };
        assert_eq!(
            a.events_using(&["act_a".into()]),
            vec![
                (EventKind::Created, "act_a"),
                (EventKind::Cancelled, "act_a")
            ]
        );
        assert_eq!(
            a.events_using(&["act_b".into(), "act_c".into()]),
            vec![(EventKind::Finished, "act_b"), (EventKind::Cc, "act_c")]
        );
        assert!(a.events_using(&["act_z".into()]).is_empty());
    }

    fn connector(base_url: &str, headers: &[(&str, &str)]) -> Connector {
        Connector {
            id: "con_1".into(),
            corp_id: "c".into(),
            name: "n".into(),
            base_url: base_url.into(),
            auth: Auth::None,
            default_headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout_ms: 1000,
            max_concurrency: 8,
            created_at: 0,
            paused_at: None,
            paused_reason: None,
        }
    }

    #[test]
    fn a_connector_shows_no_character_of_any_secret() {
        let mut c = connector(
            "http://ops:Pa%24%24word-in-url@hooks.example:8080/base",
            &[("x-api-token", "header-secret-value"), ("x-tenant", "t1")],
        );
        c.auth = Auth::Basic {
            username: "svc".into(),
            password: "basic-password-1".into(),
        };
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(
            shown["baseUrl"], "http://ops:***@hooks.example:8080/base",
            "{shown}"
        );
        assert_eq!(shown["defaultHeaders"]["x-api-token"], "***");
        assert_eq!(shown["defaultHeaders"]["x-tenant"], "***");
        assert_eq!(shown["auth"]["password"], "***");
        assert_eq!(shown["auth"]["username"], "svc");
        let text = shown.to_string();
        let debugged = format!("{c:?}");
        for secret in ["Pa%24", "Pa$$", "header-secret", "basic-pass", "t1"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
            assert!(!debugged.contains(secret), "{secret} in Debug: {debugged}");
        }
        for token in ["tok", "a-longer-bearer-token"] {
            assert_eq!(mask(token), "***");
        }
        assert_eq!(mask_url("http://h:1/x"), "http://h:1/x");
        assert_eq!(mask_url("http://user@h:1/x"), "http://user@h:1/x");
    }

    #[test]
    fn secrets_are_scrubbed_in_every_form_a_receiver_may_echo() {
        let c = connector(
            "http://ops:url%20pass@h:1/",
            &[("x-api-token", "hdr/secret\"1"), ("x-short", "ab")],
        );
        let basic = Auth::Basic {
            username: "svc".into(),
            password: "pw+1 2".into(),
        };
        let s = Secrets::of(&c, &basic);
        let echoed = [
            "pw+1 2",
            "pw%2B1%202",
            "pw%2B1+2",
            // base64("svc:pw+1 2") and base64("ops:url pass")
            "c3ZjOnB3KzEgMg==",
            "b3BzOnVybCBwYXNz",
            "url pass",
            "url%20pass",
            "hdr/secret\"1",
            "hdr/secret\\\"1",
            "hdr%2Fsecret%221",
        ];
        for e in echoed {
            assert_eq!(s.scrub(&format!("<{e}>")), "<***>", "{e}");
        }
        assert_eq!(
            s.scrub("ab cd"),
            "ab cd",
            "short header values are not searched for"
        );
        assert!(s.longest() >= "c3ZjOnB3KzEgMg==".len());
        let bearer = Secrets::of(
            &connector("http://h/", &[]),
            &Auth::Bearer { token: "tk".into() },
        );
        assert_eq!(
            bearer.scrub("Bearer tk"),
            "Bearer ***",
            "credentials of any length"
        );
    }
}
