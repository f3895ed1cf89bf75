//! The integration center (集成中心), for operators: connectors (连接器) with their
//! authentication and actions, the approval-task sync strategy (审批消息集成 — 同步策略), test
//! fire, the delivery log with each delivery's attempts side by side, redelivery (one or in
//! bulk), backfill with its progress, and endpoint health with pause / resume, the
//! delivery-rate chart and the queue depth.
//!
//! Every change goes through the REST API's own handlers (`http::integration`), called with
//! the operator's organisation and the admin scope: the same validation, the same store
//! functions, the same refusals (a deletion the strategy forbids answers with the API's
//! message) and the same wake-up of the dispatchers. Nothing here writes SQL.
//!
//! Secrets are write-only: a connector's credentials, its base URL's password and its default
//! header values are shown masked (`***`) as the API shows them; an edit that leaves a secret
//! empty (or as shown) keeps the stored one. A secret Flowhook generates (the Standard
//! Webhooks secret) is shown once, in the answer to the form that created it, never in a URL.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use flowhook_sign::event::EventKind;
use maud::{html, Markup};
use serde::Deserialize;

use super::i18n::{self as t, Msg};
use super::page::{
    self, csrf_field, datetime, page, page_refreshing, q, see_other, CsrfForm, Ctx, PageError,
};
use crate::engine::ids::InstanceId;
use crate::http::auth::{Caller, Scope};
use crate::http::error::ApiError;
use crate::http::integration as api;
use crate::http::integration::{ApiJson, ApiJsonOrEmpty, ApiQuery};
use crate::http::AppState;
use crate::integration::connectors::{
    mask_url, Action, ActionInput, Auth, Connector, ConnectorInput, ConnectorUpdate, Encoding,
    EventActions, KeyLocation, Strategy, MASKED,
};
use crate::store::deliveries::{Delivery, DeliveryFilter, DeliveryId, DeliveryStatus};
use crate::store::jobs::BackfillRequest;
use crate::store::taskcenter::{decode_cursor, encode_cursor};

/// The REST API's caller for this operator: their organisation, the admin scope.
pub(super) fn caller(corp: &str) -> Caller {
    Caller {
        corp_id: Some(corp.to_owned()),
        scopes: vec![Scope::Admin.as_str().into()],
    }
}

/// A refusal of the API (its status and message, shown on the page), or an internal error.
pub(super) fn refused(e: ApiError) -> Result<(StatusCode, String), PageError> {
    match e {
        ApiError::Client {
            status, message, ..
        } => Ok((status, message)),
        ApiError::InvalidDefinition(p) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            p.iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("; "),
        )),
        ApiError::Unavailable(m) => Err(PageError::Internal(m)),
        ApiError::Internal(e) => Err(PageError::Internal(format!("{e:#}"))),
    }
}

/// A message above a page: done, or refused with the API's words.
enum Notice {
    Ok(&'static Msg),
    Refused(StatusCode, String),
}

fn notice(ctx: &Ctx, n: &Option<Notice>) -> Markup {
    html! {
        @match n {
            Some(Notice::Ok(m)) => div.notice.ok role="status" { p { (ctx.t(m)) } },
            Some(Notice::Refused(status, why)) => div.notice.error role="alert" {
                p {
                    strong { (ctx.t(if *status == StatusCode::CONFLICT { &t::ERR_CONFLICT } else { &t::ERR_BAD_REQUEST })) ": " }
                    (why)
                }
            },
            None => {},
        }
    }
}

/// The page with the notice's status (a refusal keeps its 4xx).
fn with_status(mut r: Response, n: &Option<Notice>) -> Response {
    if let Some(Notice::Refused(status, _)) = n {
        *r.status_mut() = *status;
    }
    r
}

/// The integration center's own navigation, on each of its pages.
fn tabs(ctx: &Ctx) -> Markup {
    let path = ctx.here.split('?').next().unwrap_or("");
    let items: [(&str, &Msg); 5] = [
        ("/console/integration", &t::CONNECTORS),
        ("/console/integration/strategy", &t::SYNC_STRATEGY),
        ("/console/integration/deliveries", &t::IN_DELIVERY_LOG),
        ("/console/integration/backfill", &t::IN_BACKFILL),
        ("/console/integration/health", &t::IN_HEALTH),
    ];
    html! {
        nav.tabs aria-label=(ctx.t(&t::NAV_INTEGRATION)) {
            ul {
                @for (href, label) in items {
                    @let current = path == href
                        || (href == "/console/integration" && path.starts_with("/console/integration/connectors"))
                        || (href == "/console/integration/deliveries" && path.starts_with("/console/integration/deliveries/"));
                    li {
                        @if current {
                            a href=(href) aria-current="page" { (ctx.t(label)) }
                        } @else {
                            a href=(href) { (ctx.t(label)) }
                        }
                    }
                }
            }
        }
    }
}

fn auth_type(a: &Auth) -> &'static str {
    match a {
        Auth::None => "none",
        Auth::Basic { .. } => "basic",
        Auth::ApiKey { .. } => "apiKey",
        Auth::Bearer { .. } => "bearer",
    }
}

fn auth_label(ctx: &Ctx, a: &str) -> &'static str {
    ctx.t(match a {
        "basic" => &t::IN_AUTH_BASIC,
        "apiKey" => &t::IN_AUTH_API_KEY,
        "bearer" => &t::IN_AUTH_BEARER,
        _ => &t::IN_AUTH_NONE,
    })
}

fn status_label(ctx: &Ctx, s: &str) -> &'static str {
    ctx.t(match s {
        "pending" => &t::ST_PENDING,
        "delivered" => &t::ST_DELIVERED,
        "dead" => &t::ST_DEAD,
        "cancelled" => &t::ST_CANCELLED,
        "done" => &t::ST_DONE,
        "running" => &t::ST_RUNNING_JOB,
        _ => &t::ANY,
    })
}

fn status_badge(ctx: &Ctx, s: &str) -> Markup {
    html! { span class=(format!("badge d-{s}")) { (status_label(ctx, s)) } }
}

fn event_label(ctx: &Ctx, k: EventKind) -> &'static str {
    ctx.t(match k {
        EventKind::Created => &t::EV_CREATED,
        EventKind::Finished => &t::EV_FINISHED,
        EventKind::Cancelled => &t::EV_CANCELLED,
        EventKind::Deleted => &t::EV_DELETED,
        EventKind::Cc => &t::EV_CC,
    })
}

fn event_field(k: EventKind) -> &'static str {
    match k {
        EventKind::Created => "created",
        EventKind::Finished => "finished",
        EventKind::Cancelled => "cancelled",
        EventKind::Deleted => "deleted",
        EventKind::Cc => "cc",
    }
}

fn opt_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".to_owned(), datetime)
}

// ---------------------------------------------------------------------------------------------
// Connectors

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    saved: Option<String>,
}

/// The integration center's home: the connectors, the queue depth.
pub async fn overview(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(nq): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let connectors = state.store.connectors(&corp, None).await?;
    let actions = state.store.actions(&corp, None).await?;
    let depth = state.store.queue_depth(&corp).await?;
    let n = nq.saved.map(|_| Notice::Ok(&t::DONE_OK));
    let body = html! {
        (tabs(&ctx))
        (notice(&ctx, &n))
        p.hint { (ctx.t(&t::IN_INTRO)) }
        dl.facts {
            dt { (ctx.t(&t::IN_QUEUE_PENDING)) } dd { (depth.pending) }
            dt { (ctx.t(&t::IN_QUEUE_DEAD)) } dd { (depth.dead) }
        }
        section aria-labelledby="h-connectors" {
            h2 #h-connectors { (ctx.t(&t::CONNECTORS)) }
            p { a.button href="/console/integration/connectors/new" { (ctx.t(&t::IN_NEW_CONNECTOR)) } }
            @if connectors.is_empty() {
                p { (ctx.t(&t::NOTHING_HERE)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (ctx.t(&t::NAME)) }
                        th scope="col" { (ctx.t(&t::IN_BASE_URL)) }
                        th scope="col" { (ctx.t(&t::IN_AUTH)) }
                        th scope="col" { (ctx.t(&t::IN_ACTIONS)) }
                        th scope="col" { (ctx.t(&t::STATUS)) }
                    } }
                    tbody {
                        @for (c, auth) in &connectors {
                            tr {
                                td { a href=(format!("/console/integration/connectors/{}", q(&c.id))) { (c.name) } }
                                td { code { (mask_url(&c.base_url)) } }
                                td { (auth_label(&ctx, auth_type(auth))) }
                                td { (actions.iter().filter(|a| a.connector_id == c.id).count()) }
                                td {
                                    @if c.paused_at.is_some() {
                                        span.badge.d-dead { (ctx.t(&t::IN_PAUSED)) }
                                    } @else {
                                        span.badge.d-delivered { (ctx.t(&t::IN_ACTIVE)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&ctx, ctx.t(&t::NAV_INTEGRATION), body))
}

/// The connector form's fields (strings, as posted).
#[derive(Deserialize, Default, Clone)]
pub struct ConnectorForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    key_in: String,
    #[serde(default)]
    key_name: String,
    #[serde(default)]
    key_value: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    headers: String,
    #[serde(default)]
    timeout_ms: String,
    #[serde(default)]
    max_concurrency: String,
}

impl ConnectorForm {
    /// A stored connector as its edit form shows it: every secret masked or empty.
    fn of(c: &Connector, auth: &Auth) -> ConnectorForm {
        let mut f = ConnectorForm {
            name: c.name.clone(),
            base_url: mask_url(&c.base_url),
            auth: auth_type(auth).into(),
            headers: c
                .default_headers
                .keys()
                .map(|k| format!("{k}: {MASKED}"))
                .collect::<Vec<_>>()
                .join("\n"),
            timeout_ms: c.timeout_ms.to_string(),
            max_concurrency: c.max_concurrency.to_string(),
            key_in: "header".into(),
            ..ConnectorForm::default()
        };
        match auth {
            Auth::Basic { username, .. } => f.username = username.clone(),
            Auth::ApiKey { location, name, .. } => {
                f.key_in = match location {
                    KeyLocation::Header => "header".into(),
                    KeyLocation::Query => "query".into(),
                };
                f.key_name = name.clone();
            }
            _ => {}
        }
        f
    }

    /// The form without the secrets typed into it (shown again after a refusal).
    fn without_secrets(mut self) -> ConnectorForm {
        self.password.clear();
        self.key_value.clear();
        self.token.clear();
        self
    }

    fn auth(&self) -> Result<Auth, String> {
        Ok(match self.auth.as_str() {
            "" | "none" => Auth::None,
            "basic" => Auth::Basic {
                username: self.username.trim().to_owned(),
                password: self.password.clone(),
            },
            "apiKey" => Auth::ApiKey {
                location: if self.key_in == "query" {
                    KeyLocation::Query
                } else {
                    KeyLocation::Header
                },
                name: self.key_name.trim().to_owned(),
                value: self.key_value.clone(),
            },
            "bearer" => Auth::Bearer {
                token: self.token.clone(),
            },
            other => return Err(format!("auth: unknown type `{other}`")),
        })
    }

    fn parts(&self) -> Result<(Auth, BTreeMap<String, String>, u64, u32), String> {
        let mut headers = BTreeMap::new();
        for line in self
            .headers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("defaultHeaders: `{line}` is not `Name: value`"))?;
            headers.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let timeout_ms = match self.timeout_ms.trim() {
            "" => 10_000,
            s => s
                .parse()
                .map_err(|_| "timeoutMs: a whole number of milliseconds".to_owned())?,
        };
        let max_concurrency = match self.max_concurrency.trim() {
            "" => crate::integration::connectors::DEFAULT_MAX_CONCURRENCY,
            s => s
                .parse()
                .map_err(|_| "maxConcurrency: a whole number".to_owned())?,
        };
        Ok((self.auth()?, headers, timeout_ms, max_concurrency))
    }
}

fn connector_form(
    ctx: &Ctx,
    action: &str,
    f: &ConnectorForm,
    editing: bool,
) -> Result<Markup, PageError> {
    let v = ctx.operator()?;
    let keep = editing.then(|| ctx.t(&t::IN_SECRET_KEEP));
    let auth = if f.auth.is_empty() {
        "none"
    } else {
        f.auth.as_str()
    };
    Ok(html! {
        form.card.wide method="post" action=(action) {
            (csrf_field(v))
            label for="c-name" { (ctx.t(&t::NAME)) }
            input #c-name name="name" required value=(f.name);
            label for="c-base" { (ctx.t(&t::IN_BASE_URL)) }
            input #c-base name="base_url" type="url" required value=(f.base_url) placeholder="https://receiver.example.com/callbacks";
            p.hint { (ctx.t(&t::IN_BASE_URL_HINT)) }
            label for="c-auth" { (ctx.t(&t::IN_AUTH)) }
            select #c-auth name="auth" {
                @for a in ["none", "basic", "apiKey", "bearer"] {
                    option value=(a) selected[a == auth] { (auth_label(ctx, a)) }
                }
            }
            p.hint { (ctx.t(&t::IN_AUTH_HINT)) }
            fieldset {
                legend { (ctx.t(&t::IN_AUTH_BASIC)) }
                label for="c-user" { (ctx.t(&t::IN_USERNAME)) }
                input #c-user name="username" autocomplete="off" value=(f.username);
                label for="c-pass" { (ctx.t(&t::IN_PASSWORD)) }
                input #c-pass name="password" type="password" autocomplete="new-password" placeholder=[keep];
            }
            fieldset {
                legend { (ctx.t(&t::IN_AUTH_API_KEY)) }
                label for="c-in" { (ctx.t(&t::IN_KEY_IN)) }
                select #c-in name="key_in" {
                    option value="header" selected[f.key_in != "query"] { (ctx.t(&t::IN_KEY_HEADER)) }
                    option value="query" selected[f.key_in == "query"] { (ctx.t(&t::IN_KEY_QUERY)) }
                }
                label for="c-kname" { (ctx.t(&t::IN_KEY_NAME)) }
                input #c-kname name="key_name" autocomplete="off" value=(f.key_name);
                label for="c-kvalue" { (ctx.t(&t::IN_KEY_VALUE)) }
                input #c-kvalue name="key_value" type="password" autocomplete="new-password" placeholder=[keep];
            }
            fieldset {
                legend { (ctx.t(&t::IN_AUTH_BEARER)) }
                label for="c-token" { (ctx.t(&t::IN_TOKEN)) }
                input #c-token name="token" type="password" autocomplete="new-password" placeholder=[keep];
            }
            @if editing { p.hint { (ctx.t(&t::IN_SECRET_HINT)) } }
            label for="c-headers" { (ctx.t(&t::IN_HEADERS)) }
            textarea #c-headers name="headers" rows="3" spellcheck="false" placeholder="X-Source: flowhook" { (f.headers) }
            p.hint { (ctx.t(&t::IN_HEADERS_HINT)) }
            label for="c-timeout" { (ctx.t(&t::IN_TIMEOUT)) }
            input #c-timeout name="timeout_ms" inputmode="numeric" value=(f.timeout_ms) placeholder="10000";
            label for="c-conc" { (ctx.t(&t::IN_CONCURRENCY)) }
            input #c-conc name="max_concurrency" inputmode="numeric" value=(f.max_concurrency) placeholder="8";
            button.primary type="submit" { (ctx.t(&t::IN_SAVE)) }
        }
    })
}

pub async fn new_connector_page(ctx: Ctx) -> Result<Response, PageError> {
    ctx.corp()?;
    render_new_connector(&ctx, ConnectorForm::default(), None)
}

fn render_new_connector(
    ctx: &Ctx,
    f: ConnectorForm,
    n: Option<Notice>,
) -> Result<Response, PageError> {
    let body = html! {
        (tabs(ctx))
        (notice(ctx, &n))
        (connector_form(ctx, "/console/integration/connectors/new", &f, false)?)
    };
    Ok(with_status(
        page(ctx, ctx.t(&t::IN_NEW_CONNECTOR), body),
        &n,
    ))
}

pub async fn create_connector(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<ConnectorForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let (auth, default_headers, timeout_ms, max_concurrency) = match f.parts() {
        Ok(p) => p,
        Err(why) => {
            let n = Some(Notice::Refused(StatusCode::UNPROCESSABLE_ENTITY, why));
            return render_new_connector(&ctx, f.without_secrets(), n);
        }
    };
    let input = ConnectorInput {
        name: f.name.trim().to_owned(),
        base_url: f.base_url.trim().to_owned(),
        auth,
        default_headers,
        timeout_ms,
        max_concurrency,
    };
    match api::create_connector(
        State(state),
        caller(&corp),
        Path(corp.clone()),
        ApiJson(input),
    )
    .await
    {
        Ok((_, Json(c))) => Ok(see_other(&format!(
            "/console/integration/connectors/{}?saved=1",
            q(&c.id)
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            render_new_connector(
                &ctx,
                f.without_secrets(),
                Some(Notice::Refused(status, why)),
            )
        }
    }
}

pub async fn connector_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(nq): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    ctx.corp()?;
    let n = nq.saved.map(|_| Notice::Ok(&t::DONE_OK));
    render_connector(&state, &ctx, &id, None, n).await
}

async fn render_connector(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    form: Option<ConnectorForm>,
    n: Option<Notice>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let (c, auth) = state
        .store
        .connectors(&corp, Some(id))
        .await?
        .pop()
        .ok_or(PageError::NotFound)?;
    let actions: Vec<Action> = state
        .store
        .actions(&corp, None)
        .await?
        .into_iter()
        .filter(|a| a.connector_id == c.id)
        .collect();
    let strategy = state.store.strategy(&corp).await?;
    let used_by = |action: &str| -> Vec<&'static str> {
        strategy.as_ref().map_or_else(Vec::new, |s| {
            s.actions
                .events_using(&[action.to_owned()])
                .into_iter()
                .map(|(k, _)| event_label(ctx, k))
                .collect()
        })
    };
    let f = form.unwrap_or_else(|| ConnectorForm::of(&c, &auth));
    let base = format!("/console/integration/connectors/{}", q(&c.id));
    let body = html! {
        (tabs(ctx))
        (notice(ctx, &n))
        dl.facts {
            dt { "ID" } dd { code { (c.id) } }
            dt { (ctx.t(&t::IN_BASE_URL)) } dd { code { (mask_url(&c.base_url)) } }
            dt { (ctx.t(&t::IN_AUTH)) } dd { (auth_label(ctx, auth_type(&auth))) }
            dt { (ctx.t(&t::STATUS)) } dd {
                @if let Some(at) = c.paused_at {
                    span.badge.d-dead { (ctx.t(&t::IN_PAUSED)) } " " (datetime(at))
                    @if let Some(r) = &c.paused_reason { " — " (r) }
                } @else {
                    span.badge.d-delivered { (ctx.t(&t::IN_ACTIVE)) }
                }
            }
            dt { (ctx.t(&t::CREATED_AT)) } dd { (datetime(c.created_at)) }
        }
        p { a href=(format!("/console/integration/deliveries?connector={}", q(&c.id))) { (ctx.t(&t::IN_ITS_DELIVERIES)) } }
        section aria-labelledby="h-actions" {
            h2 #h-actions { (ctx.t(&t::IN_ACTIONS)) }
            @if actions.is_empty() {
                p { (ctx.t(&t::NOTHING_HERE)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (ctx.t(&t::NAME)) }
                        th scope="col" { (ctx.t(&t::IN_PATH)) }
                        th scope="col" { (ctx.t(&t::IN_ENCODING)) }
                        th scope="col" { (ctx.t(&t::IN_USED_BY)) }
                        th scope="col" { (ctx.t(&t::ACTIONS)) }
                    } }
                    tbody {
                        @for a in &actions {
                            tr {
                                td { a href=(format!("/console/integration/actions/{}", q(&a.id))) { (a.name) } }
                                td { code { (a.method) " " (a.path) } }
                                td { (a.encoding.as_str()) }
                                td { (used_by(&a.id).join(", ")) }
                                td.row-actions {
                                    form.inline method="post" action=(format!("/console/integration/actions/{}/test", q(&a.id))) {
                                        (csrf_field(v))
                                        button type="submit" aria-label=(format!("{} {}", ctx.t(&t::IN_TEST_FIRE), a.name)) { (ctx.t(&t::IN_TEST_FIRE)) }
                                    }
                                    form.inline method="post" action=(format!("/console/integration/actions/{}/delete", q(&a.id))) {
                                        (csrf_field(v))
                                        button.danger type="submit" aria-label=(format!("{} {}", ctx.t(&t::DELETE), a.name)) { (ctx.t(&t::DELETE)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { (ctx.t(&t::IN_NEW_ACTION)) }
            form.inline method="post" action="/console/integration/actions" {
                (csrf_field(v))
                input type="hidden" name="connector_id" value=(c.id);
                label for="a-name" { (ctx.t(&t::NAME)) }
                input #a-name name="name" required;
                label for="a-path" { (ctx.t(&t::IN_PATH)) }
                input #a-path name="path" required placeholder="/created";
                label for="a-enc" { (ctx.t(&t::IN_ENCODING)) }
                select #a-enc name="encoding" {
                    option value="form" { "form" }
                    option value="json" { "json" }
                }
                button.primary type="submit" { (ctx.t(&t::IN_ADD_ACTION)) }
            }
        }
        section aria-labelledby="h-edit" {
            h2 #h-edit { (ctx.t(&t::IN_EDIT_CONNECTOR)) }
            (connector_form(ctx, &base, &f, true)?)
        }
        section aria-labelledby="h-danger" {
            h2 #h-danger { (ctx.t(&t::IN_PAUSE_DELETE)) }
            div.buttons {
                @if c.paused_at.is_some() {
                    form.inline method="post" action=(format!("{base}/resume")) {
                        (csrf_field(v))
                        button type="submit" { (ctx.t(&t::IN_RESUME)) }
                    }
                } @else {
                    form.inline method="post" action=(format!("{base}/pause")) {
                        (csrf_field(v))
                        button type="submit" { (ctx.t(&t::IN_PAUSE)) }
                    }
                }
                form.inline method="post" action=(format!("{base}/delete")) {
                    (csrf_field(v))
                    button.danger type="submit" { (ctx.t(&t::IN_DELETE_CONNECTOR)) }
                }
            }
            p.hint { (ctx.t(&t::IN_DELETE_HINT)) }
        }
    };
    let title = format!("{} — {}", ctx.t(&t::IN_CONNECTOR), c.name);
    Ok(with_status(page(ctx, &title, body), &n))
}

pub async fn save_connector(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<ConnectorForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let (auth, default_headers, timeout_ms, max_concurrency) = match f.parts() {
        Ok(p) => p,
        Err(why) => {
            let n = Some(Notice::Refused(StatusCode::UNPROCESSABLE_ENTITY, why));
            return render_connector(&state, &ctx, &id, Some(f.without_secrets()), n).await;
        }
    };
    let update = ConnectorUpdate {
        name: f.name.trim().to_owned(),
        base_url: f.base_url.trim().to_owned(),
        auth: Some(auth),
        default_headers,
        timeout_ms,
        max_concurrency,
    };
    let r = api::put_connector(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id.clone())),
        ApiJson(update),
    )
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!(
            "/console/integration/connectors/{}?saved=1",
            q(&id)
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            let n = Some(Notice::Refused(status, why));
            render_connector(&state, &ctx, &id, Some(f.without_secrets()), n).await
        }
    }
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn delete_connector(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    match api::delete_connector(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id.clone())),
    )
    .await
    {
        Ok(_) => Ok(see_other("/console/integration?saved=1")),
        Err(e) => {
            let (status, why) = refused(e)?;
            if status == StatusCode::NOT_FOUND {
                return Err(PageError::NotFound);
            }
            render_connector(&state, &ctx, &id, None, Some(Notice::Refused(status, why))).await
        }
    }
}

/// Pause or resume a connector; back to where the form was (its page or the health page).
pub async fn pause_connector(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, op)): Path<(String, String)>,
    CsrfForm(f): CsrfForm<BackForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let r = match op.as_str() {
        "pause" => api::pause_connector(
            State(state.clone()),
            caller(&corp),
            Path((corp.clone(), id.clone())),
        )
        .await
        .map(|_| ()),
        "resume" => api::resume_connector(
            State(state.clone()),
            caller(&corp),
            Path((corp.clone(), id.clone())),
        )
        .await
        .map(|_| ()),
        _ => return Err(PageError::NotFound),
    };
    match r {
        Ok(()) if f.back.as_deref() == Some("health") => {
            Ok(see_other("/console/integration/health"))
        }
        Ok(()) => Ok(see_other(&format!(
            "/console/integration/connectors/{}?saved=1",
            q(&id)
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            if status == StatusCode::NOT_FOUND {
                return Err(PageError::NotFound);
            }
            Err(PageError::BadRequest(why))
        }
    }
}

#[derive(Deserialize, Default)]
pub struct BackForm {
    #[serde(default)]
    back: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Actions

#[derive(Deserialize, Default)]
pub struct ActionForm {
    #[serde(default)]
    connector_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    encoding: String,
}

impl ActionForm {
    fn input(&self) -> ActionInput {
        ActionInput {
            connector_id: self.connector_id.clone(),
            name: self.name.trim().to_owned(),
            method: "POST".into(),
            path: self.path.trim().to_owned(),
            encoding: if self.encoding == "json" {
                Encoding::Json
            } else {
                Encoding::Form
            },
        }
    }
}

pub async fn create_action(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<ActionForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    match api::create_action(
        State(state.clone()),
        caller(&corp),
        Path(corp.clone()),
        ApiJson(f.input()),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/integration/connectors/{}?saved=1",
            q(&f.connector_id)
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            let n = Some(Notice::Refused(status, why));
            if state
                .store
                .connectors(&corp, Some(&f.connector_id))
                .await?
                .is_empty()
            {
                return Err(PageError::NotFound);
            }
            render_connector(&state, &ctx, &f.connector_id, None, n).await
        }
    }
}

pub async fn action_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    render_action(&state, &ctx, &id, None).await
}

async fn render_action(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    n: Option<Notice>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let a = state
        .store
        .actions(&corp, Some(id))
        .await?
        .pop()
        .ok_or(PageError::NotFound)?;
    let connectors = state.store.connectors(&corp, None).await?;
    let body = html! {
        (tabs(ctx))
        (notice(ctx, &n))
        p { a href=(format!("/console/integration/connectors/{}", q(&a.connector_id))) { "← " (ctx.t(&t::IN_CONNECTOR)) } }
        form.card.wide method="post" action=(format!("/console/integration/actions/{}", q(&a.id))) {
            (csrf_field(v))
            label for="a-conn" { (ctx.t(&t::IN_CONNECTOR)) }
            select #a-conn name="connector_id" {
                @for (c, _) in &connectors {
                    option value=(c.id) selected[c.id == a.connector_id] { (c.name) }
                }
            }
            label for="a-name" { (ctx.t(&t::NAME)) }
            input #a-name name="name" required value=(a.name);
            label for="a-path" { (ctx.t(&t::IN_PATH)) }
            input #a-path name="path" required value=(a.path);
            label for="a-enc" { (ctx.t(&t::IN_ENCODING)) }
            select #a-enc name="encoding" {
                option value="form" selected[a.encoding == Encoding::Form] { "form" }
                option value="json" selected[a.encoding == Encoding::Json] { "json" }
            }
            button.primary type="submit" { (ctx.t(&t::IN_SAVE)) }
        }
        div.buttons {
            form.inline method="post" action=(format!("/console/integration/actions/{}/test", q(&a.id))) {
                (csrf_field(v))
                button type="submit" { (ctx.t(&t::IN_TEST_FIRE)) }
            }
            form.inline method="post" action=(format!("/console/integration/actions/{}/delete", q(&a.id))) {
                (csrf_field(v))
                button.danger type="submit" { (ctx.t(&t::DELETE)) }
            }
        }
    };
    let title = format!("{} — {}", ctx.t(&t::IN_ACTION), a.name);
    Ok(with_status(page(ctx, &title, body), &n))
}

pub async fn save_action(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<ActionForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    match api::put_action(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id.clone())),
        ApiJson(f.input()),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/integration/connectors/{}?saved=1",
            q(&f.connector_id)
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            if status == StatusCode::NOT_FOUND
                && state.store.actions(&corp, Some(&id)).await?.is_empty()
            {
                return Err(PageError::NotFound);
            }
            render_action(&state, &ctx, &id, Some(Notice::Refused(status, why))).await
        }
    }
}

pub async fn delete_action(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let a = state
        .store
        .actions(&corp, Some(&id))
        .await?
        .pop()
        .ok_or(PageError::NotFound)?;
    match api::delete_action(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id.clone())),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/integration/connectors/{}?saved=1",
            q(&a.connector_id)
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            render_connector(
                &state,
                &ctx,
                &a.connector_id,
                None,
                Some(Notice::Refused(status, why)),
            )
            .await
        }
    }
}

/// Test fire: a sample of each of the five events to the action now; each exchange shown.
/// The answer is the page itself (nothing is stored, so there is nothing to redirect to).
pub async fn test_fire(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let a = state
        .store
        .actions(&corp, Some(&id))
        .await?
        .pop()
        .ok_or(PageError::NotFound)?;
    let r = api::test_fire(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id.clone())),
        ApiJsonOrEmpty(api::TestFire::default()),
    )
    .await;
    let (fired, n) = match r {
        Ok(Json(f)) => (f, None),
        Err(e) => {
            let (status, why) = refused(e)?;
            (Vec::new(), Some(Notice::Refused(status, why)))
        }
    };
    let body = html! {
        (tabs(&ctx))
        (notice(&ctx, &n))
        p { a href=(format!("/console/integration/connectors/{}", q(&a.connector_id))) { "← " (ctx.t(&t::IN_CONNECTOR)) } }
        p.hint { (ctx.t(&t::IN_TEST_HINT)) }
        @for f in &fired {
            section.exchange aria-label=(f.event_type) {
                h2 { code { (f.event_type) } " — "
                    @match f.response_status {
                        Some(s) if (200..300).contains(&s) => span.badge.d-delivered { (s) },
                        Some(s) => span.badge.d-dead { (s) },
                        None => span.badge.d-dead { (f.error_kind.as_deref().unwrap_or("error")) },
                    }
                    " · " (f.duration_ms) " ms"
                }
                div.attempts {
                    div.attempt {
                        h3 { (ctx.t(&t::IN_REQUEST)) }
                        p { code.wrap { "POST " (f.url) } }
                        (pairs(&ctx, &t::IN_HEADERS_TITLE, f.request_headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
                        (pairs(&ctx, &t::IN_PARAMS, f.request_params.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
                    }
                    div.attempt {
                        h3 { (ctx.t(&t::IN_RESPONSE)) }
                        (response(&ctx, f.response_status.map(i64::from), f.response_headers.as_ref(), f.response_body.as_deref(), f.error_kind.as_deref(), f.error.as_deref()))
                    }
                }
            }
        }
    };
    let title = format!("{} — {}", ctx.t(&t::IN_TEST_FIRE), a.name);
    Ok(with_status(page(&ctx, &title, body), &n))
}

/// Name/value pairs as a table.
fn pairs<'a>(ctx: &Ctx, caption: &Msg, items: impl Iterator<Item = (&'a str, &'a str)>) -> Markup {
    let items: Vec<(&str, &str)> = items.collect();
    html! {
        table.pairs {
            caption { (ctx.t(caption)) }
            tbody {
                @for (k, v) in &items {
                    tr { th scope="row" { (k) } td { code.wrap { (v) } } }
                }
                @if items.is_empty() { tr { td colspan="2" { "—" } } }
            }
        }
    }
}

/// Pairs from a stored JSON value: an object, or a list of `[name, value]`.
fn json_pairs(v: &serde_json::Value) -> Vec<(String, String)> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match v {
        serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|p| match p {
                serde_json::Value::Array(kv) if kv.len() == 2 => (text(&kv[0]), text(&kv[1])),
                other => (String::new(), text(other)),
            })
            .collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![(String::new(), text(other))],
    }
}

fn response(
    ctx: &Ctx,
    status: Option<i64>,
    headers: Option<&serde_json::Value>,
    body: Option<&str>,
    error_kind: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let headers = headers.map(json_pairs).unwrap_or_default();
    html! {
        dl.facts {
            dt { (ctx.t(&t::STATUS)) }
            dd {
                @match status {
                    Some(s) => (s),
                    None => "—",
                }
            }
            @if let Some(k) = error_kind {
                dt { (ctx.t(&t::IN_ERROR)) }
                dd { strong { (k) } @if let Some(e) = error { " — " (e) } }
            }
        }
        (pairs(ctx, &t::IN_HEADERS_TITLE, headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        @if let Some(b) = body {
            h4 { (ctx.t(&t::IN_BODY)) }
            pre.body { (b) }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sync strategy

pub async fn strategy_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(nq): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let current = state.store.strategy(&corp).await?;
    let n = nq.saved.map(|_| Notice::Ok(&t::DONE_OK));
    render_strategy(&state, &ctx, current, None, n).await
}

async fn render_strategy(
    state: &AppState,
    ctx: &Ctx,
    s: Option<Strategy>,
    secret: Option<String>,
    n: Option<Notice>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let saved = s.is_some();
    let s = s.unwrap_or(Strategy {
        enabled: true,
        actions: EventActions::default(),
        app_types: None,
        process_codes: None,
        ordered: true,
        standard_webhooks: false,
    });
    let actions = state.store.actions(&corp, None).await?;
    let connectors: HashMap<String, String> = state
        .store
        .connectors(&corp, None)
        .await?
        .into_iter()
        .map(|(c, _)| (c.id, c.name))
        .collect();
    let apps = state.store.apps(&corp).await?;
    let processes = state.store.process_list(&corp).await?;
    let body = html! {
        (tabs(ctx))
        (notice(ctx, &n))
        @if let Some(secret) = &secret {
            div.notice.ok role="status" {
                p { strong { (ctx.t(&t::IN_SECRET_ONCE)) } }
                p { code.secret { (secret) } }
            }
        }
        p.hint { (ctx.t(&t::IN_STRATEGY_HINT)) }
        @if !saved { p.notice { (ctx.t(&t::IN_NO_STRATEGY)) } }
        form.card.wide method="post" action="/console/integration/strategy" {
            (csrf_field(v))
            fieldset {
                legend { (ctx.t(&t::IN_EVENTS_TO_ACTIONS)) }
                @for k in EventKind::ALL {
                    @let field = event_field(k);
                    @let chosen = s.actions.for_kind(k);
                    label for=(format!("ev-{field}")) { (event_label(ctx, k)) " " code { (k.event_type()) } }
                    select id=(format!("ev-{field}")) name=(format!("ev_{field}")) {
                        option value="" selected[chosen.is_none()] { (ctx.t(&t::IN_NOT_PUSHED)) }
                        @for a in &actions {
                            option value=(a.id) selected[chosen == Some(a.id.as_str())] {
                                (connectors.get(&a.connector_id).map_or("?", String::as_str)) " / " (a.name) " (" (a.path) ")"
                            }
                        }
                    }
                }
            }
            fieldset {
                legend { (ctx.t(&t::IN_OPTIONS)) }
                div.check { input #s-enabled type="checkbox" name="enabled" value="on" checked[s.enabled]; label for="s-enabled" { (ctx.t(&t::IN_ENABLED)) } }
                div.check { input #s-ordered type="checkbox" name="ordered" value="on" checked[s.ordered]; label for="s-ordered" { (ctx.t(&t::IN_ORDERED)) } }
                div.check { input #s-sw type="checkbox" name="standard_webhooks" value="on" checked[s.standard_webhooks]; label for="s-sw" { (ctx.t(&t::IN_STANDARD_WEBHOOKS)) } }
                p.hint { (ctx.t(&t::IN_SW_HINT)) }
            }
            fieldset {
                legend { (ctx.t(&t::IN_APP_FILTER)) }
                p.hint { (ctx.t(&t::IN_FILTER_HINT)) }
                @for (i, a) in apps.iter().enumerate() {
                    @let on = s.app_types.as_ref().is_some_and(|x| x.contains(&a.app_type));
                    div.check { input id=(format!("app-{i}")) type="checkbox" name=(format!("app:{}", a.app_type)) value="on" checked[on]; label for=(format!("app-{i}")) { (a.name) " (" (a.app_type) ")" } }
                }
            }
            fieldset {
                legend { (ctx.t(&t::IN_PROCESS_FILTER)) }
                p.hint { (ctx.t(&t::IN_FILTER_HINT)) }
                @for (i, (code, name, ..)) in processes.iter().enumerate() {
                    @let on = s.process_codes.as_ref().is_some_and(|x| x.contains(code));
                    div.check { input id=(format!("proc-{i}")) type="checkbox" name=(format!("process:{code}")) value="on" checked[on]; label for=(format!("proc-{i}")) { (name) " (" (code) ")" } }
                }
            }
            button.primary type="submit" { (ctx.t(&t::IN_SAVE_STRATEGY)) }
        }
        @if s.standard_webhooks && saved {
            section aria-labelledby="h-rotate" {
                h2 #h-rotate { (ctx.t(&t::IN_ROTATE_SECRET)) }
                form.inline method="post" action="/console/integration/strategy/rotate-secret" {
                    (csrf_field(v))
                    label for="grace" { (ctx.t(&t::IN_GRACE)) }
                    input #grace name="grace_seconds" inputmode="numeric" value="86400";
                    button type="submit" { (ctx.t(&t::IN_ROTATE_SECRET)) }
                }
            }
        }
    };
    let title = format!(
        "{} — {}",
        ctx.t(&t::APPROVAL_SYNC),
        ctx.t(&t::SYNC_STRATEGY)
    );
    Ok(with_status(page(ctx, &title, body), &n))
}

pub async fn save_strategy(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let pick = |field: &str| {
        f.get(field)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let listed = |prefix: &str| -> Option<Vec<String>> {
        let v: Vec<String> = f
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_owned))
            .collect();
        (!v.is_empty()).then_some(v)
    };
    let strategy = Strategy {
        enabled: f.contains_key("enabled"),
        actions: EventActions {
            created: pick("ev_created"),
            finished: pick("ev_finished"),
            cancelled: pick("ev_cancelled"),
            deleted: pick("ev_deleted"),
            cc: pick("ev_cc"),
        },
        app_types: listed("app:"),
        process_codes: listed("process:"),
        ordered: f.contains_key("ordered"),
        standard_webhooks: f.contains_key("standard_webhooks"),
    };
    match api::put_strategy(
        State(state.clone()),
        caller(&corp),
        Path(corp.clone()),
        ApiJson(strategy.clone()),
    )
    .await
    {
        Ok(Json(saved)) => match saved.webhook_secret {
            // Shown once, in this answer (never in a URL).
            Some(secret) => {
                render_strategy(
                    &state,
                    &ctx,
                    Some(saved.strategy),
                    Some(secret),
                    Some(Notice::Ok(&t::DONE_OK)),
                )
                .await
            }
            None => Ok(see_other("/console/integration/strategy?saved=1")),
        },
        Err(e) => {
            let (status, why) = refused(e)?;
            render_strategy(
                &state,
                &ctx,
                Some(strategy),
                None,
                Some(Notice::Refused(status, why)),
            )
            .await
        }
    }
}

#[derive(Deserialize, Default)]
pub struct RotateForm {
    #[serde(default)]
    grace_seconds: String,
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<RotateForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let current = state.store.strategy(&corp).await?;
    let Ok(grace_seconds) = f.grace_seconds.trim().parse::<i64>() else {
        let n = Notice::Refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "graceSeconds: a whole number of seconds".into(),
        );
        return render_strategy(&state, &ctx, current, None, Some(n)).await;
    };
    let body = api::SecretRotation { grace_seconds };
    match api::rotate_webhook_secret(
        State(state.clone()),
        caller(&corp),
        Path(corp.clone()),
        ApiJson(body),
    )
    .await
    {
        Ok(Json(s)) => {
            render_strategy(
                &state,
                &ctx,
                current,
                Some(s.webhook_secret),
                Some(Notice::Ok(&t::DONE_OK)),
            )
            .await
        }
        Err(e) => {
            let (status, why) = refused(e)?;
            render_strategy(
                &state,
                &ctx,
                current,
                None,
                Some(Notice::Refused(status, why)),
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery log

/// The delivery log's filters, as the page's GET form sends them.
#[derive(Deserialize, Default, Clone)]
pub struct LogQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    connector: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    task: String,
    #[serde(default)]
    instance: String,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

impl LogQuery {
    /// The filters, as the API's query (bulk redelivery) takes them.
    fn filter(&self) -> api::DeliveryFilter {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        api::DeliveryFilter {
            status: some(&self.status),
            event_type: some(&self.event),
            task_id: some(&self.task),
            instance_id: some(&self.instance).map(InstanceId::from),
            connector_id: some(&self.connector),
            ..api::DeliveryFilter::default()
        }
    }

    /// The query string of the filters (without the cursor).
    fn query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("connector", &self.connector),
            ("event", &self.event),
            ("task", &self.task),
            ("instance", &self.instance),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

const LOG_PAGE: u32 = 50;

/// Names of actions and their connectors, for the log.
async fn action_names(
    state: &AppState,
    corp: &str,
) -> Result<HashMap<String, (String, String)>, PageError> {
    let connectors: HashMap<String, String> = state
        .store
        .connectors(corp, None)
        .await?
        .into_iter()
        .map(|(c, _)| (c.id, c.name))
        .collect();
    Ok(state
        .store
        .actions(corp, None)
        .await?
        .into_iter()
        .map(|a| {
            let c = connectors.get(&a.connector_id).cloned().unwrap_or_default();
            (a.id, (c, a.name))
        })
        .collect())
}

pub async fn deliveries(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(lq): Query<LogQuery>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let cursor = match lq.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| PageError::BadRequest("cursor: not one this page gave".into()))?,
        ),
        None => None,
    };
    let filter: DeliveryFilter = lq.filter().into();
    let mut items: Vec<Delivery> = state
        .store
        .deliveries(&corp, &filter, None, cursor, LOG_PAGE + 1)
        .await?;
    let next = (items.len() > LOG_PAGE as usize).then(|| {
        items.truncate(LOG_PAGE as usize);
        items
            .last()
            .map(|d| encode_cursor(d.created_at, d.id.as_str()))
    });
    let names = action_names(&state, &corp).await?;
    let connectors = state.store.connectors(&corp, None).await?;
    let query = lq.query();
    let body = html! {
        (tabs(&ctx))
        @if lq.done.is_some() { div.notice.ok role="status" { p { (ctx.t(&t::DONE_OK)) } } }
        form.filters method="get" action="/console/integration/deliveries" aria-label=(ctx.t(&t::FILTERS)) {
            div {
                label for="f-status" { (ctx.t(&t::STATUS)) }
                select #f-status name="status" {
                    option value="" { (ctx.t(&t::ANY)) }
                    @for s in DeliveryStatus::ALL.map(DeliveryStatus::as_str) {
                        option value=(s) selected[lq.status == s] { (status_label(&ctx, s)) }
                    }
                }
            }
            div {
                label for="f-connector" { (ctx.t(&t::IN_CONNECTOR)) }
                select #f-connector name="connector" {
                    option value="" { (ctx.t(&t::ANY)) }
                    @for (c, _) in &connectors {
                        option value=(c.id) selected[lq.connector == c.id] { (c.name) }
                    }
                }
            }
            div {
                label for="f-event" { (ctx.t(&t::IN_EVENT)) }
                select #f-event name="event" {
                    option value="" { (ctx.t(&t::ANY)) }
                    @for k in EventKind::ALL {
                        option value=(k.event_type()) selected[lq.event == k.event_type()] { (event_label(&ctx, k)) " (" (k.event_type()) ")" }
                    }
                }
            }
            div {
                label for="f-task" { (ctx.t(&t::IN_TASK_ID)) }
                input #f-task name="task" value=(lq.task);
            }
            div { button type="submit" { (ctx.t(&t::APPLY)) } }
        }
        @if items.is_empty() {
            p { (ctx.t(&t::NOTHING_HERE)) }
        } @else {
            table.log {
                thead { tr {
                    th scope="col" { (ctx.t(&t::CREATED_AT)) }
                    th scope="col" { (ctx.t(&t::IN_EVENT)) }
                    th scope="col" { (ctx.t(&t::IN_TASK_ID)) }
                    th scope="col" { (ctx.t(&t::IN_ACTION)) }
                    th scope="col" { (ctx.t(&t::STATUS)) }
                    th scope="col" { (ctx.t(&t::IN_ATTEMPTS)) }
                    th scope="col" { (ctx.t(&t::IN_LAST_ERROR)) }
                } }
                tbody {
                    @for d in &items {
                        tr {
                            td { a href=(format!("/console/integration/deliveries/{}", q(d.id.as_str()))) { (datetime(d.created_at)) } }
                            td { code { (d.event_type) } @if d.backfill { " " span.badge { (ctx.t(&t::IN_BACKFILL)) } } }
                            td { @if let Some(task) = &d.task_id { code { (task) } } @else { "—" } }
                            td { @match names.get(&d.action_id) {
                                Some((c, a)) => { (c) " / " (a) },
                                None => code { (d.action_id) },
                            } }
                            td { (status_badge(&ctx, d.status.as_str())) }
                            td { (d.attempts) }
                            td { (d.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if let Some(Some(c)) = &next {
                p.pager { a href=(format!("/console/integration/deliveries?{}{}cursor={}", query, if query.is_empty() { "" } else { "&" }, q(c))) { (ctx.t(&t::NEXT_PAGE)) } }
            }
        }
        section aria-labelledby="h-bulk" {
            h2 #h-bulk { (ctx.t(&t::IN_REDELIVER_BULK)) }
            p.hint { (ctx.t(&t::IN_REDELIVER_BULK_HINT)) }
            form.inline method="post" action="/console/integration/deliveries/redeliver" {
                (csrf_field(v))
                input type="hidden" name="status" value=(lq.status);
                input type="hidden" name="connector" value=(lq.connector);
                input type="hidden" name="event" value=(lq.event);
                input type="hidden" name="task" value=(lq.task);
                input type="hidden" name="instance" value=(lq.instance);
                button type="submit" { (ctx.t(&t::IN_REDELIVER_MATCHING)) }
            }
        }
    };
    Ok(page(&ctx, ctx.t(&t::IN_DELIVERY_LOG), body))
}

pub async fn delivery_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<DeliveryId>,
    Query(lq): Query<LogQuery>,
) -> Result<Response, PageError> {
    let n = lq.done.map(|_| Notice::Ok(&t::IN_REDELIVERED));
    render_delivery(&state, &ctx, &id, n).await
}

async fn render_delivery(
    state: &AppState,
    ctx: &Ctx,
    id: &DeliveryId,
    n: Option<Notice>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let d = state
        .store
        .deliveries(&corp, &DeliveryFilter::default(), Some(id), None, 1)
        .await?
        .pop()
        .ok_or(PageError::NotFound)?;
    let attempts = state.store.delivery_attempts(&corp, id).await?;
    let names = action_names(state, &corp).await?;
    let body = html! {
        (tabs(ctx))
        (notice(ctx, &n))
        dl.facts {
            dt { (ctx.t(&t::STATUS)) } dd { (status_badge(ctx, d.status.as_str())) }
            dt { (ctx.t(&t::IN_EVENT)) } dd { code { (d.event_type) } " · " code { (d.event_id) } }
            @if let Some(task) = &d.task_id {
                dt { (ctx.t(&t::IN_TASK_ID)) } dd { a href=(format!("/console/tasks/{}", q(task))) { (task) } }
            }
            dt { (ctx.t(&t::INSTANCE_ACTIONS)) } dd { a href=(format!("/console/instances/{}", q(&d.instance_id))) { (d.instance_id) } " · seq " (d.seq) }
            dt { (ctx.t(&t::IN_ACTION)) } dd { @match names.get(&d.action_id) {
                Some((c, a)) => { (c) " / " (a) },
                None => code { (d.action_id) },
            } }
            dt { (ctx.t(&t::IN_ATTEMPTS)) } dd { (d.attempts) }
            @if d.status == DeliveryStatus::Pending {
                dt { (ctx.t(&t::IN_NEXT_ATTEMPT)) } dd { (datetime(d.next_attempt_at)) }
            }
            @if let Some(e) = &d.last_error { dt { (ctx.t(&t::IN_LAST_ERROR)) } dd { (e) } }
            @if d.backfill { dt { (ctx.t(&t::IN_BACKFILL)) } dd { "✓" } }
            dt { (ctx.t(&t::CREATED_AT)) } dd { (datetime(d.created_at)) }
        }
        @if matches!(d.status, DeliveryStatus::Delivered | DeliveryStatus::Dead) {
            form.inline method="post" action=(format!("/console/integration/deliveries/{}/redeliver", q(d.id.as_str()))) {
                (csrf_field(v))
                button.primary type="submit" { (ctx.t(&t::IN_REDELIVER)) }
            }
        }
        section aria-labelledby="h-attempts" {
            h2 #h-attempts { (ctx.t(&t::IN_ATTEMPTS)) " (" (attempts.len()) ")" }
            @if attempts.is_empty() { p { (ctx.t(&t::NOTHING_HERE)) } }
            div.attempts {
                @for a in &attempts {
                    article.attempt aria-label=(format!("{} {}", ctx.t(&t::IN_ATTEMPT), a.attempt)) {
                        h3 {
                            (ctx.t(&t::IN_ATTEMPT)) " " (a.attempt) " — "
                            @match (a.response_status, &a.error_kind) {
                                (Some(s), None) => span.badge.d-delivered { (s) },
                                (Some(s), Some(_)) => span.badge.d-dead { (s) },
                                (None, Some(k)) => span.badge.d-dead { (k) },
                                (None, None) => "—",
                            }
                        }
                        p.hint { time { (datetime(a.started_at)) } " · " (a.duration_ms) " ms" }
                        h4 { (ctx.t(&t::IN_REQUEST)) }
                        p { code.wrap { "POST " (a.url) } }
                        @let rh = json_pairs(&a.request_headers);
                        (pairs(ctx, &t::IN_HEADERS_TITLE, rh.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
                        @let rp = json_pairs(&a.request_params);
                        (pairs(ctx, &t::IN_PARAMS, rp.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
                        h4 { (ctx.t(&t::IN_RESPONSE)) }
                        (response(ctx, a.response_status, a.response_headers.as_ref(), a.response_body.as_deref(), a.error_kind.as_deref(), a.error.as_deref()))
                    }
                }
            }
        }
    };
    let title = format!("{} — {}", ctx.t(&t::IN_DELIVERY), d.id);
    Ok(with_status(page(ctx, &title, body), &n))
}

pub async fn redeliver_one(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<DeliveryId>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    match api::redeliver_one(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id.clone())),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/integration/deliveries/{}?done=1",
            q(id.as_str())
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            render_delivery(&state, &ctx, &id, Some(Notice::Refused(status, why))).await
        }
    }
}

pub async fn redeliver_many(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(lq): CsrfForm<LogQuery>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    match api::redeliver_many(
        State(state.clone()),
        caller(&corp),
        Path(corp.clone()),
        ApiQuery(lq.filter()),
    )
    .await
    {
        Ok(Json(r)) => match r.job {
            Some(job) => Ok(see_other(&format!(
                "/console/integration/jobs/{}",
                q(&job.id)
            ))),
            None => Ok(see_other("/console/integration/deliveries?done=1")),
        },
        Err(e) => {
            let (_, why) = refused(e)?;
            Err(PageError::BadRequest(why))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backfill and jobs

pub async fn backfill_page(State(state): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    render_backfill(&state, &ctx, None).await
}

async fn render_backfill(
    state: &AppState,
    ctx: &Ctx,
    n: Option<Notice>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let has_strategy = state.store.strategy(&corp).await?.is_some();
    let today = page::date(crate::support::now_ms());
    let body = html! {
        (tabs(ctx))
        (notice(ctx, &n))
        p.hint { (ctx.t(&t::IN_BACKFILL_HINT)) }
        @if !has_strategy { p.notice { (ctx.t(&t::IN_NO_STRATEGY)) } }
        form.card.wide method="post" action="/console/integration/backfill" {
            (csrf_field(v))
            fieldset {
                legend { (ctx.t(&t::IN_BACKFILL_WHAT)) }
                div.check { input #b-open type="radio" name="mode" value="open" checked; label for="b-open" { (ctx.t(&t::IN_BACKFILL_OPEN)) } }
                div.check { input #b-range type="radio" name="mode" value="range"; label for="b-range" { (ctx.t(&t::IN_BACKFILL_RANGE)) } }
            }
            label for="b-from" { (ctx.t(&t::FROM_DATE)) }
            input #b-from type="date" name="from" value=(today);
            label for="b-to" { (ctx.t(&t::TO_DATE)) }
            input #b-to type="date" name="to";
            button.primary type="submit" { (ctx.t(&t::IN_START_BACKFILL)) }
        }
    };
    Ok(with_status(page(ctx, ctx.t(&t::IN_BACKFILL), body), &n))
}

#[derive(Deserialize, Default)]
pub struct BackfillForm {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub async fn start_backfill(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<BackfillForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let req = if f.mode == "range" {
        let from = page::parse_date(&f.from);
        // The end date is included: the range ends at the next midnight.
        let to = match f.to.trim() {
            "" => Some(crate::support::now_ms() + 1),
            s => page::parse_date(s).map(|t| t + 86_400_000),
        };
        match (from, to) {
            (Some(from), Some(to)) => BackfillRequest::Range { from, to },
            _ => {
                let n = Notice::Refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "from, to: dates as YYYY-MM-DD".into(),
                );
                return render_backfill(&state, &ctx, Some(n)).await;
            }
        }
    } else {
        BackfillRequest::Open
    };
    match api::backfill(
        State(state.clone()),
        caller(&corp),
        Path(corp.clone()),
        ApiJson(req),
    )
    .await
    {
        Ok((_, Json(job))) => Ok(see_other(&format!(
            "/console/integration/jobs/{}",
            q(&job.id)
        ))),
        Err(e) => {
            let (status, why) = refused(e)?;
            render_backfill(&state, &ctx, Some(Notice::Refused(status, why))).await
        }
    }
}

/// A job's progress (a backfill or a bulk redelivery); the page reloads itself every second
/// while deliveries are pending.
pub async fn job_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let job = state
        .store
        .job(&corp, &id)
        .await?
        .ok_or(PageError::NotFound)?;
    let finished = job.total - job.pending;
    let percent = if job.total == 0 {
        100
    } else {
        finished * 100 / job.total
    };
    let running = job.state != "done";
    let kind = if job.kind == "backfill" {
        &t::IN_BACKFILL
    } else {
        &t::IN_REDELIVER_BULK
    };
    let body = html! {
        (tabs(&ctx))
        p.progress-line role="status" aria-live="polite" {
            strong.percent { (percent) " %" } " — " (status_label(&ctx, if running { "running" } else { "done" }))
        }
        progress max=(job.total.max(1)) value=(if job.total == 0 { 1 } else { finished }) aria-label=(ctx.t(&t::IN_PROGRESS)) { (percent) " %" }
        dl.facts {
            dt { (ctx.t(&t::IN_TOTAL)) } dd { (job.total) }
            dt { (ctx.t(&t::ST_DELIVERED)) } dd { (job.delivered) }
            dt { (ctx.t(&t::ST_PENDING)) } dd { (job.pending) }
            dt { (ctx.t(&t::ST_DEAD)) } dd { (job.dead) }
            dt { (ctx.t(&t::ST_CANCELLED)) } dd { (job.cancelled) }
            dt { (ctx.t(&t::IN_PARAMETERS)) } dd { code { (job.params) } }
            dt { (ctx.t(&t::CREATED_AT)) } dd { (datetime(job.created_at)) }
        }
        @if running { p.hint { (ctx.t(&t::IN_REFRESHING)) } }
        p { a href="/console/integration/deliveries" { (ctx.t(&t::IN_DELIVERY_LOG)) } }
    };
    let title = format!("{} — {}", ctx.t(kind), job.id);
    Ok(page_refreshing(&ctx, &title, running.then_some(1), body))
}

// ---------------------------------------------------------------------------------------------
// Endpoint health and the delivery-rate chart

pub async fn health_page(State(state): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let connectors = state.store.connectors(&corp, None).await?;
    let mut rows = Vec::with_capacity(connectors.len());
    for (c, _) in &connectors {
        match api::connector_health(
            State(state.clone()),
            caller(&corp),
            Path((corp.clone(), c.id.clone())),
        )
        .await
        {
            Ok(Json(h)) => rows.push((c.clone(), h)),
            Err(e) => {
                refused(e)?;
            }
        }
    }
    let now = crate::support::now_ms();
    let since = (now / 60_000 - 59) * 60_000;
    let rate = state.store.delivery_rate(&corp, since).await?;
    let depth = state.store.queue_depth(&corp).await?;
    let body = html! {
        (tabs(&ctx))
        section aria-labelledby="h-rate" {
            h2 #h-rate { (ctx.t(&t::IN_RATE)) }
            dl.facts {
                dt { (ctx.t(&t::IN_QUEUE_PENDING)) } dd { (depth.pending) }
                dt { (ctx.t(&t::IN_QUEUE_DEAD)) } dd { (depth.dead) }
            }
            (chart(&ctx, since, &rate))
        }
        section aria-labelledby="h-endpoints" {
            h2 #h-endpoints { (ctx.t(&t::IN_HEALTH)) }
            p.hint { (ctx.t(&t::IN_HEALTH_HINT)) }
            @if rows.is_empty() { p { (ctx.t(&t::NOTHING_HERE)) } } @else {
                table {
                    thead { tr {
                        th scope="col" { (ctx.t(&t::IN_CONNECTOR)) }
                        th scope="col" { (ctx.t(&t::IN_ENDPOINT)) }
                        th scope="col" { (ctx.t(&t::IN_BREAKER)) }
                        th scope="col" { (ctx.t(&t::IN_FAILURES)) }
                        th scope="col" { (ctx.t(&t::IN_LAST_SUCCESS)) }
                        th scope="col" { (ctx.t(&t::IN_LAST_FAILURE)) }
                        th scope="col" { (ctx.t(&t::ST_PENDING)) }
                        th scope="col" { (ctx.t(&t::ST_DEAD)) }
                        th scope="col" { (ctx.t(&t::ACTIONS)) }
                    } }
                    tbody {
                        @for (c, h) in &rows {
                            tr {
                                td { a href=(format!("/console/integration/connectors/{}", q(&c.id))) { (c.name) } }
                                td { code { (mask_url(&h.endpoint)) } }
                                td {
                                    span class=(format!("badge b-{}", h.breaker.state)) { (breaker_label(&ctx, &h.breaker.state)) }
                                    @if h.paused { " " span.badge.d-dead { (ctx.t(&t::IN_PAUSED)) } }
                                }
                                td { (h.breaker.consecutive_failures) }
                                td { (opt_time(h.breaker.last_success_at)) }
                                td { (opt_time(h.breaker.last_failure_at)) }
                                td {
                                    (h.deliveries.pending)
                                    @if let Some(at) = h.deliveries.oldest_pending_at { br; span.hint { (ctx.t(&t::IN_OLDEST)) " " (datetime(at)) } }
                                }
                                td {
                                    @if h.deliveries.dead > 0 {
                                        a href=(format!("/console/integration/deliveries?status=dead&connector={}", q(&c.id))) { (h.deliveries.dead) }
                                    } @else { "0" }
                                }
                                td {
                                    @let op = if h.paused { "resume" } else { "pause" };
                                    form.inline method="post" action=(format!("/console/integration/connectors/{}/{op}", q(&c.id))) {
                                        (csrf_field(v))
                                        input type="hidden" name="back" value="health";
                                        button type="submit" aria-label=(format!("{} {}", ctx.t(if h.paused { &t::IN_RESUME } else { &t::IN_PAUSE }), c.name)) {
                                            (ctx.t(if h.paused { &t::IN_RESUME } else { &t::IN_PAUSE }))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&ctx, ctx.t(&t::IN_HEALTH), body))
}

fn breaker_label(ctx: &Ctx, s: &str) -> &'static str {
    ctx.t(match s {
        "open" => &t::IN_BREAKER_OPEN,
        "half_open" => &t::IN_BREAKER_HALF,
        _ => &t::IN_BREAKER_CLOSED,
    })
}

/// The delivery-rate chart: one stacked bar per minute of the last hour (delivered below,
/// failed above, hatched so it does not rely on colour), drawn as SVG on the server.
fn chart(ctx: &Ctx, since: i64, rate: &[crate::store::console::MinuteRate]) -> Markup {
    const W: i64 = 720;
    const H: i64 = 180;
    const LEFT: i64 = 40;
    const BOTTOM: i64 = 24;
    const TOP: i64 = 8;
    let by_minute: HashMap<i64, (i64, i64)> = rate
        .iter()
        .map(|r| (r.minute, (r.delivered, r.failed)))
        .collect();
    let peak = rate
        .iter()
        .map(|r| r.delivered + r.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    // A round top for the axis: 1, 2, 5 × 10^n.
    let mut top = 1;
    while top < peak {
        top = match top.to_string().as_bytes()[0] {
            b'1' => top * 2,
            b'2' => top / 2 * 5,
            _ => top * 2,
        };
    }
    let plot_h = H - BOTTOM - TOP;
    let slot = (W - LEFT) / 60;
    let y = |n: i64| TOP + plot_h - n * plot_h / top;
    let (total_ok, total_bad) = rate
        .iter()
        .fold((0, 0), |(a, b), r| (a + r.delivered, b + r.failed));
    let summary = format!(
        "{}: {} {}, {} {}",
        ctx.t(&t::IN_RATE),
        total_ok,
        ctx.t(&t::IN_DELIVERED_PER_MIN),
        total_bad,
        ctx.t(&t::IN_FAILED_PER_MIN)
    );
    html! {
        figure.chart {
            svg.rate xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) role="img" aria-label=(summary) {
                title { (summary) }
                defs {
                    pattern #hatch patternUnits="userSpaceOnUse" width="4" height="4" {
                        path.hatch d="M0,4 l4,-4" {}
                    }
                }
                // SVG inside HTML: every element closed explicitly (`{}`), as HTML parsing of an
                // unclosed `<line>` would put what follows inside it.
                @for (i, g) in [0, top / 2, top].into_iter().enumerate() {
                    // (Top 1: no middle line.)
                    @if i != 1 || g != 0 {
                        line.grid x1=(LEFT) x2=(W) y1=(y(g)) y2=(y(g)) {}
                        text.axis x=(LEFT - 4) y=(y(g) + 4) text-anchor="end" { (g) }
                    }
                }
                @for i in 0..60 {
                    @let minute = since + i * 60_000;
                    @let (ok, bad) = by_minute.get(&minute).copied().unwrap_or((0, 0));
                    @let x = LEFT + i * slot + 1;
                    @if ok > 0 {
                        rect.ok x=(x) y=(y(ok)) width=(slot - 2) height=(y(0) - y(ok)) {
                            title { (datetime(minute)) ": " (ok) " " (ctx.t(&t::IN_DELIVERED_PER_MIN)) }
                        }
                    }
                    @if bad > 0 {
                        rect.bad x=(x) y=(y(ok + bad)) width=(slot - 2) height=(y(ok) - y(ok + bad)) {
                            title { (datetime(minute)) ": " (bad) " " (ctx.t(&t::IN_FAILED_PER_MIN)) }
                        }
                    }
                    @if i % 15 == 0 || i == 59 {
                        text.axis x=(x + slot / 2) y=(H - 6) text-anchor="middle" { (&datetime(minute)[11..]) }
                    }
                }
                line.base x1=(LEFT) x2=(W) y1=(y(0)) y2=(y(0)) {}
            }
            figcaption.legend {
                span.key.ok { (ctx.t(&t::IN_DELIVERED_PER_MIN)) ": " (total_ok) }
                span.key.bad { (ctx.t(&t::IN_FAILED_PER_MIN)) ": " (total_bad) }
                span.hint { (ctx.t(&t::IN_RATE_HINT)) }
            }
        }
    }
}
