//! Directory and access (operators): users with their manager (the chain the `leader`
//! approvers follow), roles with their members, applications (create; rotate the systemToken
//! and commit the rotation) and the organisation's API keys (create, list, revoke).
//!
//! As the integration center does, every change goes through the REST API's own handlers
//! (`http::people`, `http::orgs`) with the operator's organisation and the admin scope: the
//! same validation and refusals, no SQL here. A secret Flowhook generates — an application's
//! systemToken, an API key — is shown once, in the answer to the form that created it (never
//! in a URL, never again: the store keeps only a hash of a key, and lists tokens masked).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use maud::html;
use serde::Deserialize;

use super::i18n::{self as t, Msg};
use super::integration::{caller, refused, Empty};
use super::page::{csrf_field, datetime, page, q, see_other, CsrfForm, Ctx, PageError};
use crate::http::integration::ApiJson;
use crate::http::{orgs, people, AppState};

/// A secret to show once, with what it is.
struct Secret {
    what: &'static Msg,
    value: String,
}

enum Notice {
    Ok,
    Refused(StatusCode, String),
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

pub async fn page_get(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(dq): Query<DoneQuery>,
) -> Result<Response, PageError> {
    ctx.corp()?;
    render(&state, &ctx, dq.done.map(|_| Notice::Ok), None).await
}

async fn render(
    state: &AppState,
    ctx: &Ctx,
    n: Option<Notice>,
    secret: Option<Secret>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.operator()?;
    let (_, dir) = state.store.load_directory(&corp).await?;
    let mut users: Vec<_> = dir.people.values().cloned().collect();
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let name_of = |id: &str| {
        dir.people
            .get(id)
            .map_or_else(|| id.to_owned(), |p| format!("{} ({id})", p.name))
    };
    let roles = state.store.role_names(&corp).await?;
    let apps: Vec<_> = state
        .store
        .apps(&corp)
        .await?
        .into_iter()
        .map(crate::store::directory::App::masked)
        .collect();
    let keys = state.store.api_keys(&corp).await?;
    let body = html! {
        @match &n {
            Some(Notice::Ok) => div.notice.ok role="status" { p { (ctx.t(&t::DONE_OK)) } },
            Some(Notice::Refused(status, why)) => div.notice.error role="alert" {
                p {
                    strong { (ctx.t(if *status == StatusCode::CONFLICT { &t::ERR_CONFLICT } else { &t::ERR_BAD_REQUEST })) ": " }
                    (why)
                }
            },
            None => {},
        }
        @if let Some(s) = &secret {
            div.notice.ok role="status" {
                p { strong { (ctx.t(s.what)) } }
                p { code.secret { (s.value) } }
            }
        }
        nav.tabs aria-label=(ctx.t(&t::NAV_DIRECTORY)) {
            ul {
                li { a href="#h-users" { (ctx.t(&t::DIR_USERS)) } }
                li { a href="#h-roles" { (ctx.t(&t::DIR_ROLES)) } }
                li { a href="#h-apps" { (ctx.t(&t::DIR_APPS)) } }
                li { a href="#h-keys" { (ctx.t(&t::DIR_KEYS)) } }
            }
        }
        section aria-labelledby="h-users" {
            h2 #h-users { (ctx.t(&t::DIR_USERS)) }
            @if users.is_empty() { p { (ctx.t(&t::NOTHING_HERE)) } } @else {
                table {
                    thead { tr {
                        th scope="col" { "ID" }
                        th scope="col" { (ctx.t(&t::NAME)) }
                        th scope="col" { (ctx.t(&t::DIR_MANAGER)) }
                        th scope="col" { (ctx.t(&t::DIR_MANAGER_CHAIN)) }
                        th scope="col" { (ctx.t(&t::DIR_ADMIN)) }
                        th scope="col" { (ctx.t(&t::ACTIONS)) }
                    } }
                    tbody {
                        @for u in &users {
                            tr {
                                td { code { (u.user_id) } }
                                td { (u.name) }
                                td { @if let Some(m) = &u.manager_id { (name_of(m)) } @else { "—" } }
                                td { (chain(&dir.people, &u.user_id).join(" → ")) }
                                td { @if u.admin { (ctx.t(&t::DIR_YES)) } @else { (ctx.t(&t::DIR_NO)) } }
                                td {
                                    form.inline method="post" action=(format!("/console/directory/users/{}/delete", q(&u.user_id))) {
                                        (csrf_field(v))
                                        button.danger type="submit" aria-label=(format!("{} {}", ctx.t(&t::DELETE), u.user_id)) { (ctx.t(&t::DELETE)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { (ctx.t(&t::DIR_PUT_USER)) }
            form.card.wide method="post" action="/console/directory/users" {
                (csrf_field(v))
                label for="u-id" { "ID" }
                input #u-id name="user_id" required;
                label for="u-name" { (ctx.t(&t::NAME)) }
                input #u-name name="name" required;
                label for="u-manager" { (ctx.t(&t::DIR_MANAGER)) }
                select #u-manager name="manager_id" {
                    option value="" { "—" }
                    @for u in &users { option value=(u.user_id) { (u.name) " (" (u.user_id) ")" } }
                }
                div.check { input #u-admin type="checkbox" name="admin" value="on"; label for="u-admin" { (ctx.t(&t::DIR_ADMIN)) } }
                button.primary type="submit" { (ctx.t(&t::IN_SAVE)) }
            }
        }
        section aria-labelledby="h-roles" {
            h2 #h-roles { (ctx.t(&t::DIR_ROLES)) }
            @if roles.is_empty() { p { (ctx.t(&t::NOTHING_HERE)) } } @else {
                table {
                    thead { tr {
                        th scope="col" { "ID" }
                        th scope="col" { (ctx.t(&t::NAME)) }
                        th scope="col" { (ctx.t(&t::DIR_MEMBERS)) }
                    } }
                    tbody {
                        @for (id, name) in &roles {
                            tr {
                                td { code { (id) } }
                                td { (name) }
                                td { (dir.roles.get(id).map(|m| m.iter().map(|x| name_of(x)).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            h3 { (ctx.t(&t::DIR_PUT_ROLE)) }
            form.card.wide method="post" action="/console/directory/roles" {
                (csrf_field(v))
                label for="r-id" { "ID" }
                input #r-id name="role_id" required;
                label for="r-name" { (ctx.t(&t::NAME)) }
                input #r-name name="name" required;
                label for="r-members" { (ctx.t(&t::DIR_MEMBERS_HINT)) }
                input #r-members name="members" placeholder="hr1, hr2";
                button.primary type="submit" { (ctx.t(&t::IN_SAVE)) }
            }
        }
        section aria-labelledby="h-apps" {
            h2 #h-apps { (ctx.t(&t::DIR_APPS)) }
            @if apps.is_empty() { p { (ctx.t(&t::NOTHING_HERE)) } } @else {
                table {
                    thead { tr {
                        th scope="col" { "appType" }
                        th scope="col" { (ctx.t(&t::NAME)) }
                        th scope="col" { "systemToken" }
                        th scope="col" { (ctx.t(&t::CREATED_AT)) }
                        th scope="col" { (ctx.t(&t::ACTIONS)) }
                    } }
                    tbody {
                        @for a in &apps {
                            tr {
                                td { code { (a.app_type) } }
                                td { (a.name) }
                                td {
                                    code { (a.system_token) }
                                    @if a.rotation_pending { br; span.hint { (ctx.t(&t::DIR_ROTATION_PENDING)) } }
                                    @if let Some(until) = a.previous_token_valid_until { br; span.hint { (ctx.t(&t::DIR_PREVIOUS_UNTIL)) " " (datetime(until)) } }
                                }
                                td { (datetime(a.created_at)) }
                                td.row-actions {
                                    form.inline method="post" action=(format!("/console/directory/apps/{}/rotate", q(&a.app_type))) {
                                        (csrf_field(v))
                                        label for=(format!("grace-{}", a.app_type)) { (ctx.t(&t::DIR_GRACE)) }
                                        input id=(format!("grace-{}", a.app_type)) name="grace_seconds" inputmode="numeric" value="86400" size="7";
                                        button type="submit" { (ctx.t(&t::DIR_ROTATE)) }
                                    }
                                    @if a.rotation_pending {
                                        form.inline method="post" action=(format!("/console/directory/apps/{}/commit", q(&a.app_type))) {
                                            (csrf_field(v))
                                            button type="submit" { (ctx.t(&t::DIR_COMMIT)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { (ctx.t(&t::DIR_NEW_APP)) }
            form.inline method="post" action="/console/directory/apps" {
                (csrf_field(v))
                label for="app-type" { "appType" }
                input #app-type name="app_type" placeholder="APP_…";
                label for="app-name" { (ctx.t(&t::NAME)) }
                input #app-name name="name" required;
                button.primary type="submit" { (ctx.t(&t::DIR_CREATE)) }
            }
        }
        section aria-labelledby="h-keys" {
            h2 #h-keys { (ctx.t(&t::DIR_KEYS)) }
            @if keys.is_empty() { p { (ctx.t(&t::NOTHING_HERE)) } } @else {
                table {
                    thead { tr {
                        th scope="col" { "ID" }
                        th scope="col" { (ctx.t(&t::NAME)) }
                        th scope="col" { (ctx.t(&t::DIR_SCOPES)) }
                        th scope="col" { (ctx.t(&t::CREATED_AT)) }
                        th scope="col" { (ctx.t(&t::ACTIONS)) }
                    } }
                    tbody {
                        @for k in &keys {
                            tr {
                                td { code { (k.id) } }
                                td { (k.name) }
                                td { (k.scopes.join(", ")) }
                                td { (datetime(k.created_at)) }
                                td {
                                    form.inline method="post" action=(format!("/console/directory/keys/{}/revoke", q(&k.id))) {
                                        (csrf_field(v))
                                        button.danger type="submit" aria-label=(format!("{} {}", ctx.t(&t::DIR_REVOKE), k.name)) { (ctx.t(&t::DIR_REVOKE)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { (ctx.t(&t::DIR_NEW_KEY)) }
            form.card.wide method="post" action="/console/directory/keys" {
                (csrf_field(v))
                label for="k-name" { (ctx.t(&t::NAME)) }
                input #k-name name="name" required;
                fieldset {
                    legend { (ctx.t(&t::DIR_SCOPES)) }
                    @for s in ["admin", "tasks", "integration"] {
                        div.check { input id=(format!("scope-{s}")) type="checkbox" name=(format!("scope:{s}")) value="on"; label for=(format!("scope-{s}")) { code { (s) } } }
                    }
                }
                button.primary type="submit" { (ctx.t(&t::DIR_CREATE)) }
            }
        }
    };
    let mut r = page(ctx, ctx.t(&t::NAV_DIRECTORY), body);
    if let Some(Notice::Refused(status, _)) = n {
        *r.status_mut() = status;
    }
    Ok(r)
}

/// A user's managers, nearest first (bounded: a cycle stops it).
fn chain(
    people: &std::collections::HashMap<String, crate::engine::resolve::Person>,
    user: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = people.get(user).and_then(|p| p.manager_id.clone());
    while let Some(m) = at {
        if out.len() >= 16 || out.contains(&m) {
            break;
        }
        at = people.get(&m).and_then(|p| p.manager_id.clone());
        out.push(m);
    }
    out
}

/// After a change: back to the page, or the page again with the API's refusal.
async fn after<T>(
    state: &AppState,
    ctx: &Ctx,
    r: Result<T, crate::http::error::ApiError>,
) -> Result<Response, PageError> {
    match r {
        Ok(_) => Ok(see_other("/console/directory?done=1")),
        Err(e) => {
            let (status, why) = refused(e)?;
            render(state, ctx, Some(Notice::Refused(status, why)), None).await
        }
    }
}

#[derive(Deserialize, Default)]
pub struct UserForm {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    manager_id: String,
    #[serde(default)]
    admin: Option<String>,
}

pub async fn put_user(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<UserForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let body = people::UserBody {
        name: f.name.trim().to_owned(),
        avatar: String::new(),
        manager_id: Some(f.manager_id.trim().to_owned()).filter(|m| !m.is_empty()),
        admin: f.admin.is_some(),
    };
    let user_id = f.user_id.trim().to_owned();
    if user_id.is_empty() {
        let n = Notice::Refused(StatusCode::UNPROCESSABLE_ENTITY, "userId: required".into());
        return render(&state, &ctx, Some(n), None).await;
    }
    let r = people::put_user(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), user_id)),
        ApiJson(body),
    )
    .await;
    after(&state, &ctx, r).await
}

pub async fn delete_user(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let r = people::delete_user(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id)),
    )
    .await;
    after(&state, &ctx, r).await
}

#[derive(Deserialize, Default)]
pub struct RoleForm {
    #[serde(default)]
    role_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    members: String,
}

pub async fn put_role(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<RoleForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let role_id = f.role_id.trim().to_owned();
    if role_id.is_empty() {
        let n = Notice::Refused(StatusCode::UNPROCESSABLE_ENTITY, "roleId: required".into());
        return render(&state, &ctx, Some(n), None).await;
    }
    let body = people::RoleBody {
        name: f.name.trim().to_owned(),
        members: f
            .members
            .split([',', ' ', '，'])
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let r = people::put_role(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), role_id)),
        ApiJson(body),
    )
    .await;
    after(&state, &ctx, r).await
}

#[derive(Deserialize, Default)]
pub struct AppForm {
    #[serde(default)]
    app_type: String,
    #[serde(default)]
    name: String,
}

pub async fn create_app(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<AppForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let body = orgs::NewApp {
        app_type: Some(f.app_type.trim().to_owned()).filter(|a| !a.is_empty()),
        name: f.name.trim().to_owned(),
    };
    match orgs::create_app(
        State(state.clone()),
        caller(&corp),
        Path(corp.clone()),
        ApiJson(body),
    )
    .await
    {
        // The token, shown this once.
        Ok((_, Json(app))) => {
            let s = Secret {
                what: &t::DIR_TOKEN_ONCE,
                value: format!("{}: {}", app.app_type, app.system_token),
            };
            render(&state, &ctx, Some(Notice::Ok), Some(s)).await
        }
        Err(e) => after::<()>(&state, &ctx, Err(e)).await,
    }
}

#[derive(Deserialize, Default)]
pub struct GraceForm {
    #[serde(default)]
    grace_seconds: String,
}

pub async fn rotate_token(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(app_type): Path<String>,
    CsrfForm(f): CsrfForm<GraceForm>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let Ok(grace_seconds) = f.grace_seconds.trim().parse::<u64>() else {
        let n = Notice::Refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "graceSeconds: a whole number of seconds".into(),
        );
        return render(&state, &ctx, Some(n), None).await;
    };
    let r = orgs::rotate_token(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), app_type)),
        ApiJson(orgs::Rotation { grace_seconds }),
    )
    .await;
    match r {
        Ok(Json(app)) => {
            let s = Secret {
                what: &t::DIR_TOKEN_ONCE,
                value: format!("{}: {}", app.app_type, app.system_token),
            };
            render(&state, &ctx, Some(Notice::Ok), Some(s)).await
        }
        Err(e) => after::<()>(&state, &ctx, Err(e)).await,
    }
}

pub async fn commit_token(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(app_type): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let r = orgs::commit_token(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), app_type)),
    )
    .await;
    after(&state, &ctx, r).await
}

pub async fn create_key(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<std::collections::BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let body = orgs::NewKey {
        name: f
            .get("name")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        scopes: f
            .keys()
            .filter_map(|k| k.strip_prefix("scope:").map(str::to_owned))
            .collect(),
    };
    match orgs::create_key(
        State(state.clone()),
        caller(&corp),
        Path(corp.clone()),
        ApiJson(body),
    )
    .await
    {
        // The key, shown this once (only its hash is stored).
        Ok((_, Json(k))) => {
            let s = Secret {
                what: &t::DIR_KEY_ONCE,
                value: k.key,
            };
            render(&state, &ctx, Some(Notice::Ok), Some(s)).await
        }
        Err(e) => after::<()>(&state, &ctx, Err(e)).await,
    }
}

pub async fn revoke_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let r = orgs::revoke_key(
        State(state.clone()),
        caller(&corp),
        Path((corp.clone(), id)),
    )
    .await;
    after(&state, &ctx, r).await
}
