//! Who is looking: server-side sessions behind an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` when `public_base_url` is https), with idle and absolute expiry.
//!
//! Three ways in, three kinds of session ([`SessionKind`]):
//! - **operator**: signs in on `/console/sign-in` with an organisation API key of scope `admin`,
//!   or the bootstrap key (who then picks an organisation). The session keeps the key's hash and
//!   is re-checked against it on every request: revoking the key (or changing the bootstrap
//!   key) ends the session.
//! - **link**: opens a signed approval link (`console::link`); acts as that link's assignee, on
//!   the tasks whose links it opened only; sees the instances that user takes part in.
//! - **header**: the trusted single-sign-on header (`console_trusted_user_header`) names the
//!   user; acts as that user on all their tasks.
//!
//! Every state-changing form carries the session's CSRF token ([`super::page::CsrfForm`]); the
//! sign-in form, which has no session yet, carries a token that must equal a cookie of its own
//! (double submit). Session ids and CSRF tokens are 244 random bits; the store keeps only the
//! SHA-256 of the session id.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::i18n as t;
use super::page::{self, page, see_other, CsrfForm, Ctx, PageError};
use crate::http::auth::{hash_key, Scope};
use crate::http::AppState;
use crate::store::console::{new_secret, Session, SessionKind};
use crate::support::now_ms;

/// The session cookie.
pub const SESSION_COOKIE: &str = "fh_session";
/// The sign-in form's own CSRF cookie (double submit: there is no session yet).
pub const SIGN_IN_COOKIE: &str = "fh_signin";

/// A session is marked used at most this often (idle expiry has this granularity): a page view
/// is a read, not a write.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The console's settings, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A session unused for this long ends.
    pub idle_ms: i64,
    /// A session ends this long after sign-in, used or not.
    pub absolute_ms: i64,
    /// Cookies carry `Secure` (the public base URL is https).
    pub secure: bool,
    /// The single-sign-on header and the organisation its users belong to (both or neither).
    pub trusted_header: Option<(header::HeaderName, String)>,
}

impl Settings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Settings {
            idle_ms: c.console_session_idle_mins as i64 * 60_000,
            absolute_ms: c.console_session_max_hours as i64 * 3_600_000,
            secure: c.public_base_url.starts_with("https:"),
            trusted_header: c
                .console_trusted_user_header
                .as_deref()
                .zip(c.console_trusted_user_org.as_deref())
                .and_then(|(h, org)| {
                    header::HeaderName::from_bytes(h.as_bytes())
                        .ok()
                        .map(|h| (h, org.to_owned()))
                }),
        }
    }

    /// `Set-Cookie` for a session.
    fn session_cookie(&self, value: &str, max_age_ms: i64) -> String {
        cookie(SESSION_COOKIE, value, max_age_ms / 1000, self.secure)
    }
}

fn cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age_secs.max(0),
        if secure { "; Secure" } else { "" }
    )
}

/// A cookie's value from the request.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in person and what they may do.
#[derive(Debug, Clone)]
pub struct Viewer {
    session: Arc<Session>,
    /// Signed in with the bootstrap key (every organisation).
    bootstrap: bool,
}

impl Viewer {
    pub fn kind(&self) -> SessionKind {
        self.session.kind
    }

    pub fn is_operator(&self) -> bool {
        self.session.kind == SessionKind::Operator
    }

    pub fn is_bootstrap(&self) -> bool {
        self.bootstrap
    }

    pub fn corp(&self) -> Option<&str> {
        self.session.corp_id.as_deref()
    }

    /// The user of a link or header session (operators pick whom they act as).
    pub fn user(&self) -> Option<&str> {
        self.session.user_id.as_deref()
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    pub fn csrf_matches(&self, sent: &str) -> bool {
        !sent.is_empty()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                self.session.csrf.as_bytes(),
                sent.as_bytes(),
            ))
    }

    /// Shown in the header.
    pub fn display(&self) -> String {
        match (self.user(), self.bootstrap) {
            (Some(u), _) => u.to_owned(),
            (None, true) => "bootstrap".into(),
            (None, false) => "admin key".into(),
        }
    }

    /// May start instances: operators (as anyone) and single-sign-on users (as themselves). An
    /// approval link is for its task only.
    pub fn may_start(&self) -> bool {
        match self.session.kind {
            SessionKind::Operator => self.corp().is_some(),
            SessionKind::Header => true,
            SessionKind::Link => false,
        }
    }

    /// A single-sign-on session is the proxy's: signing out here would only sign in again.
    pub fn may_sign_out(&self) -> bool {
        self.session.kind != SessionKind::Header
    }

    /// May act on this task (the engine still decides whether this user may): an approval link
    /// acts on the tasks whose links were opened in this session, nothing else.
    pub fn may_act_on_task(&self, task_id: &str) -> bool {
        match self.session.kind {
            SessionKind::Operator | SessionKind::Header => true,
            SessionKind::Link => self.session.grants.iter().any(|g| g == task_id),
        }
    }

    /// The tasks this session's approval links opened.
    pub fn grants(&self) -> &[String] {
        &self.session.grants
    }

    fn id_hash(&self) -> &str {
        &self.session.id_hash
    }
}

/// Resolves the viewer of a request: the session cookie, checked (absolute and idle expiry, an
/// operator's key still valid), or the trusted header. Returns the `Set-Cookie` to send when a
/// session was made or ended.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Option<Viewer>, Option<String>), crate::store::StoreError> {
    let settings = &state.console;
    let now = now_ms();
    let mut viewer = None;
    let mut set_cookie = None;
    if let Some(token) = cookie_value(headers, SESSION_COOKIE) {
        let hash = hash_key(token);
        match state.store.session(&hash, now).await? {
            Some(s) if now - s.last_seen_at > settings.idle_ms => {
                state.store.delete_session(&hash).await?;
                set_cookie = Some(settings.session_cookie("", 0));
            }
            Some(s) => match still_valid(state, &s).await? {
                Some(bootstrap) => {
                    if now - s.last_seen_at > TOUCH_EVERY_MS {
                        state.store.touch_session(&hash, now).await?;
                    }
                    viewer = Some(Viewer {
                        session: Arc::new(s),
                        bootstrap,
                    });
                }
                None => {
                    state.store.delete_session(&hash).await?;
                    set_cookie = Some(settings.session_cookie("", 0));
                }
            },
            None => set_cookie = Some(settings.session_cookie("", 0)),
        }
    }
    if let Some((name, org)) = &settings.trusted_header {
        let named = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        match named {
            Some(user) => {
                let same = viewer.as_ref().is_some_and(|v| {
                    v.kind() == SessionKind::Header
                        && v.user() == Some(user)
                        && v.corp() == Some(org)
                });
                if !same {
                    let (v, c) = new_session(
                        state,
                        SessionKind::Header,
                        Some(org.clone()),
                        Some(user.to_owned()),
                        None,
                        vec![],
                        now + settings.absolute_ms,
                    )
                    .await?;
                    viewer = Some(v);
                    set_cookie = Some(c);
                }
            }
            None => {
                // The proxy no longer vouches for anyone: its session is over.
                if viewer
                    .as_ref()
                    .is_some_and(|v| v.kind() == SessionKind::Header)
                {
                    viewer = None;
                    set_cookie = Some(settings.session_cookie("", 0));
                }
            }
        }
    }
    Ok((viewer, set_cookie))
}

/// Whether an operator session's key still holds (`Some(bootstrap?)`); other sessions hold.
async fn still_valid(
    state: &AppState,
    s: &Session,
) -> Result<Option<bool>, crate::store::StoreError> {
    if s.kind != SessionKind::Operator {
        return Ok(Some(false));
    }
    let Some(key_hash) = &s.key_hash else {
        return Ok(None);
    };
    if let Some(admin) = &state.admin_key {
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            hash_key(admin).as_bytes(),
            key_hash.as_bytes(),
        )) {
            return Ok(Some(true));
        }
    }
    let owner = match state.known_keys.get(key_hash) {
        Some(o) => Some(o),
        None => {
            let generation = crate::support::settings_generation();
            let o = state.store.key_owner(key_hash).await?;
            if let Some(o) = &o {
                state.known_keys.put(key_hash, generation, o.clone());
            }
            o
        }
    };
    Ok(owner
        .filter(|o| {
            Some(o.corp_id.as_str()) == s.corp_id.as_deref()
                && o.scopes.iter().any(|x| x == Scope::Admin.as_str())
        })
        .map(|_| false))
}

/// Makes and stores a session; returns its viewer and its `Set-Cookie`.
pub async fn new_session(
    state: &AppState,
    kind: SessionKind,
    corp_id: Option<String>,
    user_id: Option<String>,
    key_hash: Option<String>,
    grants: Vec<String>,
    expires_at: i64,
) -> Result<(Viewer, String), crate::store::StoreError> {
    let token = new_secret();
    let now = now_ms();
    let session = Session {
        id_hash: hash_key(&token),
        kind,
        corp_id,
        user_id,
        key_hash,
        csrf: new_secret(),
        grants,
        created_at: now,
        last_seen_at: now,
        expires_at,
    };
    state.store.create_session(&session).await?;
    let bootstrap = kind == SessionKind::Operator
        && state
            .admin_key
            .as_deref()
            .is_some_and(|k| Some(hash_key(k)) == session.key_hash);
    let cookie = state.console.session_cookie(&token, expires_at - now);
    Ok((
        Viewer {
            session: Arc::new(session),
            bootstrap,
        },
        cookie,
    ))
}

/// Opens (or extends) the link session of `user` for `task_id`, valid until `link_expires_at`
/// at most. A session of the same user in the same organisation gains the task; any other
/// session is replaced (one person per browser).
pub async fn open_link(
    state: &AppState,
    current: Option<&Viewer>,
    corp_id: &str,
    user_id: &str,
    task_id: &str,
    link_expires_at: i64,
) -> Result<(Viewer, Option<String>), crate::store::StoreError> {
    if let Some(v) = current {
        if v.kind() == SessionKind::Link && v.corp() == Some(corp_id) && v.user() == Some(user_id) {
            if !v.may_act_on_task(task_id) {
                state
                    .store
                    .grant_session_task(v.id_hash(), task_id, link_expires_at)
                    .await?;
            }
            let mut s = (*v.session).clone();
            if !s.grants.iter().any(|g| g == task_id) {
                s.grants.push(task_id.to_owned());
            }
            return Ok((
                Viewer {
                    session: Arc::new(s),
                    bootstrap: false,
                },
                None,
            ));
        }
        state.store.delete_session(v.id_hash()).await?;
    }
    let expires_at = link_expires_at.min(now_ms() + state.console.absolute_ms);
    let (v, cookie) = new_session(
        state,
        SessionKind::Link,
        Some(corp_id.to_owned()),
        Some(user_id.to_owned()),
        None,
        vec![task_id.to_owned()],
        expires_at,
    )
    .await?;
    Ok((v, Some(cookie)))
}

// ---- pages ----

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

/// The sign-in page; sets the form's own CSRF cookie.
pub async fn sign_in_page(State(state): State<AppState>, ctx: Ctx) -> Response {
    sign_in_form(&state, &ctx, false)
}

fn sign_in_form(state: &AppState, ctx: &Ctx, failed: bool) -> Response {
    let token = new_secret();
    let body = html! {
        @if failed {
            div.notice.error role="alert" { p { (ctx.t(&t::SIGN_IN_BAD_KEY)) } }
        }
        form.card method="post" action="/console/sign-in" {
            input type="hidden" name="csrf" value=(token);
            label for="key" { (ctx.t(&t::API_KEY)) }
            input #key type="password" name="key" required autocomplete="current-password"
                aria-describedby="key-hint";
            p #key-hint .hint { (ctx.t(&t::API_KEY_HINT)) }
            button type="submit" { (ctx.t(&t::SIGN_IN)) }
        }
        p.hint { (ctx.t(&t::APPROVERS_HINT)) }
    };
    let mut r = page(ctx, ctx.t(&t::SIGN_IN_TITLE), body);
    if failed {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let c = cookie(SIGN_IN_COOKIE, &token, 3600, state.console.secure);
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Signs in with a key; 403 without the form's CSRF token.
pub async fn sign_in(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let fields: SignInForm =
        serde_json::from_value(serde_json::Value::Object(page::form_fields(&body)))
            .map_err(|e| PageError::BadRequest(e.to_string()))?;
    let expected = cookie_value(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if fields.csrf.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            fields.csrf.as_bytes(),
        ))
    {
        return Err(PageError::Csrf);
    }
    let key = fields.key.trim();
    let key_hash = hash_key(key);
    let bootstrap = !key.is_empty()
        && state.admin_key.as_deref().is_some_and(|admin| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                admin.as_bytes(),
                key.as_bytes(),
            ))
        });
    let corp = if bootstrap {
        None
    } else {
        match state.store.key_owner(&key_hash).await? {
            Some(o) if o.scopes.iter().any(|s| s == Scope::Admin.as_str()) => Some(o.corp_id),
            _ => return Ok(sign_in_form(&state, &ctx, true)),
        }
    };
    if let Some(v) = &ctx.viewer {
        state.store.delete_session(v.id_hash()).await?;
    }
    let (_, cookie) = new_session(
        &state,
        SessionKind::Operator,
        corp.clone(),
        None,
        Some(key_hash),
        vec![],
        now_ms() + state.console.absolute_ms,
    )
    .await?;
    let mut r = see_other(if corp.is_some() {
        "/console/tasks"
    } else {
        "/console/orgs"
    });
    append_cookie(&mut r, &cookie);
    append_cookie(
        &mut r,
        &self::cookie(SIGN_IN_COOKIE, "", 0, state.console.secure),
    );
    Ok(r)
}

#[derive(Deserialize)]
pub struct Empty {}

/// Ends the session.
pub async fn sign_out(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let v = ctx.viewer()?;
    state.store.delete_session(v.id_hash()).await?;
    let mut r = see_other("/console/sign-in");
    append_cookie(&mut r, &state.console.session_cookie("", 0));
    Ok(r)
}

pub fn append_cookie(r: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The bootstrap operator's organisation picker.
pub async fn orgs_page(State(state): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let v = ctx.viewer()?;
    if !v.is_bootstrap() {
        return Err(PageError::Forbidden(t::ERR_OPERATORS_ONLY));
    }
    let orgs = state.store.organisations().await?;
    let body = html! {
        @if orgs.is_empty() {
            p { (ctx.t(&t::NO_ORGS)) }
        } @else {
            form.card method="post" action="/console/orgs" {
                (page::csrf_field(v))
                label for="corp" { (ctx.t(&t::ORGANISATION)) }
                select #corp name="corp" {
                    @for (corp, name) in &orgs {
                        option value=(corp) selected[v.corp() == Some(corp.as_str())] { (name) " (" (corp) ")" }
                    }
                }
                button type="submit" { (ctx.t(&t::PICK)) }
            }
        }
    };
    Ok(page(&ctx, ctx.t(&t::PICK_ORG_TITLE), body))
}

#[derive(Deserialize)]
pub struct PickOrg {
    #[serde(default)]
    corp: String,
}

pub async fn pick_org(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<PickOrg>,
) -> Result<Response, PageError> {
    let v = ctx.viewer()?;
    if !v.is_bootstrap() {
        return Err(PageError::Forbidden(t::ERR_OPERATORS_ONLY));
    }
    if state.store.org(&f.corp).await?.is_none() {
        return Err(PageError::NotFound);
    }
    state.store.set_session_org(v.id_hash(), &f.corp).await?;
    Ok(see_other("/console/tasks"))
}

#[derive(Deserialize)]
pub struct LangQuery {
    set: String,
    #[serde(default)]
    back: String,
}

/// The language switch: remembers the choice in a cookie and goes back (to a console page
/// only: never an open redirect).
pub async fn set_lang(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<LangQuery>,
) -> Response {
    let lang = t::Lang::parse(&q.set).unwrap_or(t::Lang::En);
    let back = if q.back.starts_with("/console") && !q.back.starts_with("/console/lang") {
        q.back.as_str()
    } else {
        "/console"
    };
    let mut r = see_other(back);
    append_cookie(
        &mut r,
        &format!(
            "{}={}; Path=/console; Max-Age=31536000; SameSite=Strict{}",
            t::LANG_COOKIE,
            lang.code(),
            if state.console.secure { "; Secure" } else { "" }
        ),
    );
    r
}

/// `/console`: the task center for the signed in, the sign-in page for the others.
pub async fn home(ctx: Ctx) -> Result<Response, PageError> {
    ctx.corp()?;
    Ok(see_other("/console/tasks"))
}

/// Used by the middleware: the error page of a response that carries [`page::ErrorPage`].
pub fn render_error(ctx: &Ctx, status: StatusCode, e: &page::ErrorPage) -> Response {
    page::error_page(ctx, status, e)
}
