//! The task center (the four lists), the task and instance pages (form data, diagram, timeline
//! and the actions this user may take), the approval-link entry, and starting an instance.
//!
//! Reads use the same store queries as the REST API (`store::taskcenter`); every command goes
//! through the command writer, as `POST /api/v1/orgs/{corp}/tasks/{id}/{action}` does, so the
//! engine authorises it the same way (only the assignee acts, only the originator withdraws,
//! admins terminate and delete).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::diagram;
use super::i18n::{self as t, Lang, Msg};
use super::link::{self, LinkParams};
use super::page::{self, csrf_field, datetime, page, q, raw, see_other, CsrfForm, Ctx, PageError};
use super::session::{self, Viewer};
use crate::engine::definition::Definition;
use crate::engine::ids::{InstanceId, TaskId};
use crate::engine::machine::{
    Action, AppendPosition, Command, Instance, ReturnTarget, Status, TaskStatus,
};
use crate::engine::resolve::{Directory, DirectorySnapshot};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::console::SessionKind;
use crate::store::taskcenter::{decode_cursor, Filter, List};
use crate::store::writer::Op;
use crate::support::now_ms;

/// The instance a task id names (none: not a task id).
pub fn instance_of(task_id: &str) -> Option<InstanceId> {
    task_id.parse::<TaskId>().ok().map(|t| t.instance().clone())
}

/// Whether `v` may see `inst`: an operator of its organisation, or a user taking part in it
/// (originator, assignee of any task, cc'd).
fn can_view(v: &Viewer, inst: &Instance) -> bool {
    if v.corp() != Some(inst.corp_id.as_str()) || inst.status == Status::Deleted && !v.is_operator()
    {
        return false;
    }
    if v.is_operator() {
        return true;
    }
    let Some(u) = v.user() else {
        return false;
    };
    inst.originator_id == u
        || inst.tasks.values().any(|t| t.user_id == u)
        || inst.ccs.iter().any(|c| c.user_id == u)
}

/// May `v` run instance-level commands (withdraw, terminate, delete) on `inst`? An approval
/// link only on the instance of a task it opened.
fn may_command(v: &Viewer, inst: &Instance) -> bool {
    match v.kind() {
        SessionKind::Link => v
            .grants()
            .iter()
            .any(|g| instance_of(g).as_ref() == Some(&inst.id)),
        _ => true,
    }
}

pub fn status_msg(s: Status) -> &'static Msg {
    match s {
        Status::Running => &t::ST_RUNNING,
        Status::Approved => &t::ST_APPROVED,
        Status::Rejected => &t::ST_REJECTED,
        Status::Withdrawn => &t::ST_WITHDRAWN,
        Status::Terminated => &t::ST_TERMINATED,
        Status::Deleted => &t::ST_DELETED,
    }
}

/// A status string of the store's rows (task or instance).
fn status_str_msg(s: &str) -> Option<&'static Msg> {
    Some(match s {
        "running" => &t::ST_RUNNING,
        "approved" => &t::ST_APPROVED,
        "rejected" => &t::ST_REJECTED,
        "withdrawn" => &t::ST_WITHDRAWN,
        "terminated" => &t::ST_TERMINATED,
        "deleted" => &t::ST_DELETED,
        "open" => &t::ST_OPEN,
        "finished" => &t::ST_FINISHED,
        "cancelled" => &t::ST_CANCELLED,
        "cc" => &t::LIST_CC,
        _ => return None,
    })
}

fn action_msg(a: Action) -> &'static Msg {
    match a {
        Action::Agree => &t::ACT_AGREE,
        Action::Disagree => &t::ACT_DISAGREE,
        Action::Forward => &t::ACT_FORWARD,
        Action::Append => &t::ACT_APPEND,
        Action::Return => &t::ACT_RETURN,
    }
}

fn list_msg(l: List) -> &'static Msg {
    match l {
        List::Created => &t::LIST_CREATED,
        List::Todo => &t::LIST_TODO,
        List::Done => &t::LIST_DONE,
        List::Cc => &t::LIST_CC,
    }
}

fn list_code(l: List) -> &'static str {
    match l {
        List::Created => "created",
        List::Todo => "todo",
        List::Done => "done",
        List::Cc => "cc",
    }
}

/// "Name (id)" from the directory, or the id.
fn who(dir: &DirectorySnapshot, id: &str) -> String {
    match dir.person(id) {
        Some(p) if !p.name.is_empty() => format!("{} ({id})", p.name),
        _ => id.to_owned(),
    }
}

// ---- the task center ----

#[derive(Deserialize, Default)]
pub struct ListQuery {
    list: Option<String>,
    user: Option<String>,
    app: Option<String>,
    process: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The four lists of the signed-in user (an operator picks the user).
pub async fn task_center(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(lq): Query<ListQuery>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.viewer()?;
    let list = match lq.list.as_deref().unwrap_or("todo") {
        "created" => List::Created,
        "done" => List::Done,
        "cc" => List::Cc,
        _ => List::Todo,
    };
    let user = if v.is_operator() {
        non_empty(&lq.user).map(str::to_owned)
    } else {
        v.user().map(str::to_owned)
    };
    let (_, dir) = state.store.load_directory(&corp).await?;
    let apps = state.store.apps(&corp).await?;
    let processes = state.store.process_list(&corp).await?;
    let app = non_empty(&lq.app);
    let process = non_empty(&lq.process);
    let from = non_empty(&lq.from).and_then(page::parse_date);
    let to = non_empty(&lq.to)
        .and_then(page::parse_date)
        .map(|d| d + 86_400_000);
    let cursor = match non_empty(&lq.cursor) {
        Some(c) => {
            Some(decode_cursor(c).ok_or_else(|| PageError::BadRequest("bad cursor".into()))?)
        }
        None => None,
    };
    // The query of this view without its list and cursor: the tabs and pages add theirs.
    let mut base = String::new();
    for (k, val) in [
        ("user", user.as_deref()),
        ("app", app),
        ("process", process),
        ("from", non_empty(&lq.from)),
        ("to", non_empty(&lq.to)),
    ] {
        if let Some(val) = val {
            base.push_str(&format!("&{k}={}", q(val)));
        }
    }
    let data = match &user {
        Some(u) => {
            let counts = state.store.task_counts(&corp, u, app).await?;
            let filter = Filter::new(app.map(str::to_owned), process.map(str::to_owned), from, to);
            let page_ = state
                .store
                .task_list(&corp, u, list, &filter, cursor, 50)
                .await?;
            Some((counts, page_))
        }
        None => None,
    };
    let mut people: Vec<_> = dir.people.values().collect();
    people.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let body = html! {
        form.filters method="get" action="/console/tasks" aria-label=(ctx.t(&t::FILTERS)) {
            input type="hidden" name="list" value=(list_code(list));
            @if v.is_operator() {
                div.field {
                    label for="f-user" { (ctx.t(&t::USER)) }
                    select #f-user name="user" {
                        option value="" { "—" }
                        @for p in &people {
                            option value=(p.user_id) selected[user.as_deref() == Some(p.user_id.as_str())] { (p.name) " (" (p.user_id) ")" }
                        }
                    }
                }
            }
            div.field {
                label for="f-app" { (ctx.t(&t::APP)) }
                select #f-app name="app" {
                    option value="" { (ctx.t(&t::ANY)) }
                    @for a in &apps {
                        option value=(a.app_type) selected[app == Some(a.app_type.as_str())] { (a.name) " (" (a.app_type) ")" }
                    }
                }
            }
            div.field {
                label for="f-process" { (ctx.t(&t::PROCESS)) }
                select #f-process name="process" {
                    option value="" { (ctx.t(&t::ANY)) }
                    @for (code, name, _, _) in &processes {
                        option value=(code) selected[process == Some(code.as_str())] { (name) " (" (code) ")" }
                    }
                }
            }
            div.field {
                label for="f-from" { (ctx.t(&t::FROM_DATE)) }
                input #f-from type="date" name="from" value=(non_empty(&lq.from).unwrap_or(""));
            }
            div.field {
                label for="f-to" { (ctx.t(&t::TO_DATE)) }
                input #f-to type="date" name="to" value=(non_empty(&lq.to).unwrap_or(""));
            }
            button type="submit" { (ctx.t(&t::APPLY)) }
        }
        @match &data {
            None => p.notice { (ctx.t(&t::PICK_USER_HINT)) },
            Some((counts, items)) => {
                nav.tabs aria-label=(ctx.t(&t::LISTS)) {
                    ul {
                        @for (l, n) in counts.iter() {
                            li {
                                @let href = format!("/console/tasks?list={}{base}", list_code(*l));
                                @if *l == list {
                                    a href=(href) aria-current="page" { (ctx.t(list_msg(*l))) " " span.count { (n) } }
                                } @else {
                                    a href=(href) { (ctx.t(list_msg(*l))) " " span.count { (n) } }
                                }
                            }
                        }
                    }
                }
                h2 { (ctx.t(list_msg(list))) }
                @if items.items.is_empty() {
                    p { (ctx.t(&t::NOTHING_HERE)) }
                } @else {
                    table {
                        thead { tr {
                            th scope="col" { (ctx.t(&t::TITLE)) }
                            th scope="col" { (ctx.t(&t::PROCESS)) }
                            th scope="col" { (ctx.t(&t::NODE)) }
                            th scope="col" { (ctx.t(&t::ORIGINATOR)) }
                            th scope="col" { (ctx.t(&t::STATUS)) }
                            th scope="col" { (ctx.t(&t::CREATED_AT)) }
                        } }
                        tbody {
                            @for it in &items.items {
                                @let href = match list {
                                    List::Todo | List::Done => format!("/console/tasks/{}", q(&it.id)),
                                    _ => format!("/console/instances/{}", q(&it.instance_id)),
                                };
                                tr {
                                    td { a href=(href) { (it.title) } }
                                    td { (it.process_code) }
                                    td { (it.node_name.as_deref().or(it.node_id.as_deref()).unwrap_or("—")) }
                                    td { (who(&dir, &it.originator_id)) }
                                    td {
                                        (status_str_msg(&it.status).map_or(it.status.as_str(), |m| ctx.t(m)))
                                        @if list != List::Created {
                                            " · " (status_str_msg(&it.instance_status).map_or(it.instance_status.as_str(), |m| ctx.t(m)))
                                        }
                                    }
                                    td { time { (datetime(it.created_at)) } }
                                }
                            }
                        }
                    }
                }
                p.pager {
                    @if lq.cursor.is_some() {
                        a href=(format!("/console/tasks?list={}{base}", list_code(list))) { (ctx.t(&t::FIRST_PAGE)) }
                        " "
                    }
                    @if let Some(next) = &items.next_cursor {
                        a rel="next" href=(format!("/console/tasks?list={}{base}&cursor={}", list_code(list), q(next))) { (ctx.t(&t::NEXT_PAGE)) " →" }
                    }
                }
            }
        }
    };
    let title = match (&user, v.is_operator()) {
        (Some(u), true) => format!("{} — {}", ctx.t(&t::NAV_TASKS), who(&dir, u)),
        _ => ctx.t(&t::NAV_TASKS).to_owned(),
    };
    Ok(page(&ctx, &title, body))
}

// ---- the task and instance pages ----

#[derive(Deserialize, Default)]
pub struct TaskQuery {
    u: Option<String>,
    e: Option<String>,
    s: Option<String>,
    #[serde(rename = "as")]
    act_as: Option<String>,
    done: Option<String>,
}

/// A task's page. With `u`, `e` and `s` it is an approval link: checked, it signs the browser
/// in as the task's assignee (403 if changed, expired or for another task).
pub async fn task_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Path(task_id): Path<String>,
    Query(tq): Query<TaskQuery>,
) -> Result<Response, PageError> {
    let instance_id = instance_of(&task_id).ok_or(PageError::NotFound)?;
    let mut set_cookie = None;
    if tq.u.is_some() || tq.e.is_some() || tq.s.is_some() {
        let (Some(user), Some(expires), Some(mac)) = (
            tq.u.clone(),
            tq.e.as_deref().and_then(|e| e.parse().ok()),
            tq.s.clone(),
        ) else {
            return Err(PageError::BadLink);
        };
        let params = LinkParams { user, expires, mac };
        let corp = state
            .store
            .instance_corp(&instance_id)
            .await?
            .ok_or(PageError::BadLink)?;
        let inst = state
            .store
            .instance(&corp, &instance_id)
            .await?
            .ok_or(PageError::BadLink)?;
        let assignee = inst
            .tasks
            .get(&task_id)
            .map(|t| t.user_id.clone())
            .ok_or(PageError::BadLink)?;
        let secret = state.links.secret().await?;
        if !link::verify(&secret, &corp, &task_id, &assignee, &params, now_ms()) {
            return Err(PageError::BadLink);
        }
        let (viewer, cookie) = session::open_link(
            &state,
            ctx.viewer.as_ref(),
            &corp,
            &assignee,
            &task_id,
            params.expires.saturating_mul(1000),
        )
        .await?;
        ctx.viewer = Some(viewer);
        set_cookie = cookie;
    }
    let corp = ctx.corp()?.to_owned();
    let inst = state
        .store
        .instance(&corp, &instance_id)
        .await?
        .filter(|i| i.tasks.contains_key(&task_id))
        .ok_or(PageError::NotFound)?;
    let notice = tq.done.is_some().then_some(Notice::Ok);
    let mut r = instance_view(&state, &ctx, &inst, Some(&task_id), tq.act_as, notice).await?;
    if let Some(c) = set_cookie {
        session::append_cookie(&mut r, &c);
    }
    Ok(r)
}

/// An instance's page.
pub async fn instance_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<InstanceId>,
    Query(tq): Query<TaskQuery>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let inst = state
        .store
        .instance(&corp, &id)
        .await?
        .ok_or(PageError::NotFound)?;
    let notice = tq.done.is_some().then_some(Notice::Ok);
    instance_view(&state, &ctx, &inst, None, tq.act_as, notice).await
}

enum Notice {
    Ok,
    Failed(String),
}

/// Renders an instance for the viewer, focused on one task (a task page) or not.
async fn instance_view(
    state: &AppState,
    ctx: &Ctx,
    inst: &Instance,
    focus: Option<&str>,
    act_as: Option<String>,
    notice: Option<Notice>,
) -> Result<Response, PageError> {
    let v = ctx.viewer()?;
    if !can_view(v, inst) {
        return Err(PageError::NotFound);
    }
    let corp = inst.corp_id.as_str();
    let (_, dir) = state.store.load_directory(corp).await?;
    let def: Option<Definition> = state
        .store
        .definition(corp, &inst.process_code, Some(inst.process_version))
        .await?
        .map(|d| d.definition);
    let focus_task = focus.and_then(|f| inst.tasks.get(f));
    // Whom the page acts as: the user of a link or single-sign-on session; an operator picks
    // (by default the task's assignee, or the instance's originator).
    let actor: Option<String> = if v.is_operator() {
        act_as
            .filter(|a| dir.person(a).is_some())
            .or_else(|| focus_task.map(|t| t.user_id.clone()))
            .or_else(|| Some(inst.originator_id.clone()))
    } else {
        v.user().map(str::to_owned)
    };
    let allowed = match (&def, &actor) {
        (Some(d), Some(a)) => {
            let mut al = inst.allowed(d, a, &dir);
            al.tasks.retain(|t| v.may_act_on_task(&t.task_id));
            if !may_command(v, inst) {
                al.withdraw = false;
                al.terminate = false;
                al.delete = false;
            }
            al
        }
        _ => Default::default(),
    };
    let as_field = |actor: &Option<String>| {
        html! {
            @if v.is_operator() {
                @if let Some(a) = actor { input type="hidden" name="as" value=(a); }
            }
        }
    };
    let mut people: Vec<_> = dir.people.values().collect();
    people.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let here_path = match focus {
        Some(f) => format!("/console/tasks/{}", q(f)),
        None => format!("/console/instances/{}", q(&inst.id)),
    };
    let process_name = def
        .as_ref()
        .map_or(inst.process_code.as_str(), |d| d.name.as_str());
    let status = notice.as_ref().map_or(StatusCode::OK, |n| match n {
        Notice::Ok => StatusCode::OK,
        Notice::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
    });
    let body = html! {
        @match &notice {
            Some(Notice::Ok) => div.notice.ok role="status" { p { (ctx.t(&t::DONE_OK)) } },
            Some(Notice::Failed(why)) => div.notice.error role="alert" { p { (why) } },
            None => {},
        }
        dl.facts {
            dt { (ctx.t(&t::PROCESS)) } dd { (process_name) " · " (ctx.t(&t::VERSION)) " " (inst.process_version) }
            dt { (ctx.t(&t::INSTANCE_STATUS)) } dd { span class=(format!("badge {}", inst.status.as_str())) { (ctx.t(status_msg(inst.status))) } }
            dt { (ctx.t(&t::ORIGINATOR)) } dd { (who(&dir, &inst.originator_id)) }
            dt { (ctx.t(&t::CREATED_AT)) } dd { time { (datetime(inst.created_at)) " UTC" } }
            dt { (ctx.t(&t::APP)) } dd { (inst.app_type) }
            @if let Some(task) = focus_task {
                dt { (ctx.t(&t::NODE)) } dd { (task.node_name) }
                dt { (ctx.t(&t::ASSIGNEE)) } dd { (who(&dir, &task.user_id)) }
                dt { (ctx.t(&t::STATUS)) } dd { (ctx.t(task_status_msg(task.status))) }
            }
        }
        section aria-labelledby="h-actions" {
            h2 #h-actions { (ctx.t(&t::ACTIONS)) }
            @if v.is_operator() {
                form.inline.act-as method="get" action=(here_path) {
                    label for="as" { (ctx.t(&t::ACT_AS)) }
                    select #as name="as" {
                        @for p in &people {
                            option value=(p.user_id) selected[actor.as_deref() == Some(p.user_id.as_str())] { (p.name) " (" (p.user_id) ")" }
                        }
                    }
                    button type="submit" { (ctx.t(&t::CHANGE)) }
                }
            }
            @if let Some(task) = focus_task {
                @if task.status != TaskStatus::Open {
                    p.notice { (ctx.t(&t::READ_ONLY)) }
                } @else if !v.may_act_on_task(&task.id) && v.user() == Some(task.user_id.as_str()) {
                    p.notice { (ctx.t(&t::OPEN_FROM_LINK)) }
                }
            }
            @for ta in &allowed.tasks {
                @let task = &inst.tasks[&ta.task_id];
                @let fid = ta.task_id.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
                @let action = format!("/console/tasks/{}/act", q(&ta.task_id));
                fieldset.task-actions {
                    legend { (ctx.t(&t::YOUR_TASK)) ": " (task.node_name) @if let Some(a) = &actor { " — " (who(&dir, a)) } }
                    @if ta.agree || ta.disagree {
                        form method="post" action=(action) {
                            (csrf_field(v)) (as_field(&actor))
                            label for=(format!("remark-{fid}")) { (ctx.t(&t::REMARK)) }
                            textarea id=(format!("remark-{fid}")) name="remark" rows="2" {}
                            div.buttons {
                                @if ta.agree {
                                    button.primary type="submit" name="action" value="agree" {
                                        @if ta.disagree { (ctx.t(&t::AGREE)) } @else { (ctx.t(&t::SUBMIT)) }
                                    }
                                }
                                @if ta.disagree {
                                    button.danger type="submit" name="action" value="disagree" { (ctx.t(&t::DISAGREE)) }
                                }
                            }
                        }
                    }
                    @if ta.forward {
                        form.inline method="post" action=(action) {
                            (csrf_field(v)) (as_field(&actor))
                            label for=(format!("to-{fid}")) { (ctx.t(&t::FORWARD)) }
                            select id=(format!("to-{fid}")) name="to" required {
                                @for p in people.iter().filter(|p| Some(p.user_id.as_str()) != actor.as_deref()) {
                                    option value=(p.user_id) { (p.name) " (" (p.user_id) ")" }
                                }
                            }
                            button type="submit" name="action" value="forward" { (ctx.t(&t::FORWARD_BUTTON)) }
                        }
                    }
                    @if ta.append {
                        form.inline method="post" action=(action) {
                            (csrf_field(v)) (as_field(&actor))
                            label for=(format!("users-{fid}")) { (ctx.t(&t::APPEND_USERS)) }
                            input id=(format!("users-{fid}")) name="users" required;
                            label for=(format!("pos-{fid}")) { (ctx.t(&t::APPEND_POSITION)) }
                            select id=(format!("pos-{fid}")) name="position" {
                                option value="before" { (ctx.t(&t::BEFORE)) }
                                option value="after" { (ctx.t(&t::AFTER)) }
                            }
                            button type="submit" name="action" value="append" { (ctx.t(&t::APPEND_BUTTON)) }
                        }
                    }
                    @if !ta.return_nodes.is_empty() || ta.return_to_originator {
                        form.inline method="post" action=(action) {
                            (csrf_field(v)) (as_field(&actor))
                            label for=(format!("target-{fid}")) { (ctx.t(&t::RETURN)) }
                            select id=(format!("target-{fid}")) name="target" {
                                @for (id, name) in &ta.return_nodes {
                                    option value=(id) { (name) }
                                }
                                @if ta.return_to_originator {
                                    option value="originator" { (ctx.t(&t::TO_ORIGINATOR)) }
                                }
                            }
                            button type="submit" name="action" value="return" { (ctx.t(&t::RETURN_BUTTON)) }
                        }
                    }
                }
            }
            @if allowed.withdraw || allowed.terminate || allowed.delete {
                form.inline method="post" action=(format!("/console/instances/{}/command", q(&inst.id))) {
                    (csrf_field(v)) (as_field(&actor))
                    @if let Some(f) = focus { input type="hidden" name="back" value=(f); }
                    span { (ctx.t(&t::INSTANCE_ACTIONS)) ": " }
                    @if allowed.withdraw { button type="submit" name="action" value="withdraw" { (ctx.t(&t::WITHDRAW)) } }
                    @if allowed.terminate { button.danger type="submit" name="action" value="terminate" { (ctx.t(&t::TERMINATE)) } }
                    @if allowed.delete { button.danger type="submit" name="action" value="delete" { (ctx.t(&t::DELETE)) } }
                }
            }
            @if allowed.tasks.is_empty() && !(allowed.withdraw || allowed.terminate || allowed.delete) {
                p { (ctx.t(&t::NO_ACTIONS)) }
            }
        }
        section aria-labelledby="h-form" {
            h2 #h-form { (ctx.t(&t::FORM_DATA)) }
            @if inst.form_data.is_empty() {
                p { (ctx.t(&t::NOTHING_HERE)) }
            } @else {
                table.form-data {
                    thead { tr { th scope="col" { (ctx.t(&t::FIELD)) } th scope="col" { (ctx.t(&t::VALUE)) } } }
                    tbody {
                        @for (k, val) in &inst.form_data {
                            tr { th scope="row" { (k) } td { (val.as_deref().unwrap_or("—")) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-diagram" {
            h2 #h-diagram { (ctx.t(&t::DIAGRAM)) }
            @if let Some(d) = &def {
                figure.diagram {
                    (raw(diagram::svg(d, Some(inst), ctx.lang, "dg")))
                    figcaption { (legend(ctx.lang)) }
                }
            }
        }
        section aria-labelledby="h-timeline" {
            h2 #h-timeline { (ctx.t(&t::TIMELINE)) }
            (timeline(ctx.lang, inst, &dir))
        }
    };
    let mut r = page(ctx, &inst.title, body);
    *r.status_mut() = status;
    Ok(r)
}

fn task_status_msg(s: TaskStatus) -> &'static Msg {
    match s {
        TaskStatus::Open => &t::ST_OPEN,
        TaskStatus::Finished => &t::ST_FINISHED,
        TaskStatus::Cancelled => &t::ST_CANCELLED,
        TaskStatus::Deleted => &t::ST_DELETED,
    }
}

/// The diagram's legend.
pub fn legend(lang: Lang) -> Markup {
    html! {
        span.legend {
            (lang.t(&t::DG_LEGEND)) ": "
            span.key.current { (lang.t(&t::DG_CURRENT)) }
            span.key.done { (lang.t(&t::DG_DONE)) }
            span.key.pending { (lang.t(&t::DG_PENDING)) }
        }
    }
}

/// Who did what, when, with remarks: from the instance's state, in time order.
fn timeline(lang: Lang, inst: &Instance, dir: &DirectorySnapshot) -> Markup {
    let mut entries: Vec<(i64, u32, Markup)> = Vec::new();
    entries.push((
        inst.created_at,
        0,
        html! { strong { (who(dir, &inst.originator_id)) } " " (lang.t(&t::TL_STARTED)) },
    ));
    let mut tasks: Vec<_> = inst.tasks.values().collect();
    tasks.sort_by_key(|t| TaskId::order_key(&t.id));
    for (k, task) in tasks.iter().enumerate() {
        let k = k as u32 * 2 + 1;
        entries.push((
            task.created_at,
            k,
            html! {
                (task.node_name) ": " (lang.t(&t::TL_ASSIGNED)) " " strong { (who(dir, &task.user_id)) }
                @if let Some(note) = &task.note { " — " em { (note) } }
            },
        ));
        if let Some(ended) = task.ended_at {
            let m = match (task.status, task.action) {
                (TaskStatus::Finished, Some(a)) => html! {
                    strong { (who(dir, &task.user_id)) } " " (lang.t(action_msg(a)))
                    " (" (task.node_name) ")"
                    @if let Some(r) = task.remark.as_deref().filter(|r| !r.is_empty()) {
                        blockquote { (r) }
                    }
                },
                (TaskStatus::Deleted, _) => html! {
                    (task.node_name) ": " (who(dir, &task.user_id)) " — " (lang.t(&t::TL_DELETED))
                },
                _ => html! {
                    (task.node_name) ": " (who(dir, &task.user_id)) " — " (lang.t(&t::TL_CANCELLED))
                    @if let Some(by) = &task.ended_by { " " (lang.t(&t::TL_BY)) " " (who(dir, by)) }
                },
            };
            entries.push((ended, k + 1, m));
        }
    }
    for cc in &inst.ccs {
        entries.push((
            cc.created_at,
            u32::MAX - 1,
            html! { (cc.node_name) ": " (lang.t(&t::TL_CC)) " " strong { (who(dir, &cc.user_id)) } },
        ));
    }
    if let Some(fin) = inst.finished_at {
        entries.push((
            fin,
            u32::MAX,
            html! { span class=(format!("badge {}", inst.status.as_str())) { (lang.t(status_msg(inst.status))) } },
        ));
    }
    entries.sort_by_key(|(at, k, _)| (*at, *k));
    html! {
        ol.timeline {
            @for (at, _, m) in entries {
                li { time { (datetime(at)) } " " (m) }
            }
        }
    }
}

// ---- commands ----

#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    action: String,
    remark: Option<String>,
    to: Option<String>,
    users: Option<String>,
    position: Option<String>,
    target: Option<String>,
    #[serde(rename = "as")]
    act_as: Option<String>,
    back: Option<String>,
}

/// Whom a command acts as: the session's user, or the user an operator picked.
fn acting_user(v: &Viewer, form_as: &Option<String>) -> Result<String, PageError> {
    if v.is_operator() {
        non_empty(form_as)
            .map(str::to_owned)
            .ok_or_else(|| PageError::BadRequest("choose whom to act as".into()))
    } else {
        v.user()
            .map(str::to_owned)
            .ok_or(PageError::Forbidden(t::ERR_FORBIDDEN))
    }
}

/// Acts on a task (agree, disagree, forward, append, return) through the command writer.
pub async fn act(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(task_id): Path<String>,
    CsrfForm(f): CsrfForm<ActForm>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.viewer()?;
    let instance_id = instance_of(&task_id).ok_or(PageError::NotFound)?;
    let inst = state
        .store
        .instance(&corp, &instance_id)
        .await?
        .filter(|i| i.tasks.contains_key(&task_id))
        .ok_or(PageError::NotFound)?;
    if !can_view(v, &inst) {
        return Err(PageError::NotFound);
    }
    if !v.may_act_on_task(&task_id) {
        return Err(PageError::Forbidden(t::OPEN_FROM_LINK));
    }
    let actor = acting_user(v, &f.act_as)?;
    let remark = non_empty(&f.remark).map(str::to_owned);
    let tid = task_id.clone();
    let command = match f.action.as_str() {
        "agree" => Ok(Command::Agree {
            task_id: tid,
            remark,
        }),
        "disagree" => Ok(Command::Disagree {
            task_id: tid,
            remark,
        }),
        "forward" => non_empty(&f.to)
            .map(|to| Command::Forward {
                task_id: tid.clone(),
                to: to.to_owned(),
                remark: remark.clone(),
            })
            .ok_or("`to` is required"),
        "append" => match (non_empty(&f.users), f.position.as_deref()) {
            (Some(users), Some(p @ ("before" | "after"))) => Ok(Command::Append {
                task_id: tid,
                users: users
                    .split([',', ' ', '，'])
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect(),
                position: if p == "before" {
                    AppendPosition::Before
                } else {
                    AppendPosition::After
                },
            }),
            _ => Err("`users` and `position` are required"),
        },
        "return" => non_empty(&f.target)
            .map(|target| Command::Return {
                task_id: tid.clone(),
                target: if target == "originator" {
                    ReturnTarget::Originator
                } else {
                    ReturnTarget::Node(target.to_owned())
                },
            })
            .ok_or("`target` is required"),
        _ => return Err(PageError::BadRequest("unknown action".into())),
    };
    let back = format!("/console/tasks/{}", q(&task_id));
    run_command(&state, &ctx, &inst, Some(&task_id), actor, command, &back).await
}

/// Withdraw, terminate or delete an instance through the command writer.
pub async fn instance_command(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<InstanceId>,
    CsrfForm(f): CsrfForm<ActForm>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.viewer()?;
    let inst = state
        .store
        .instance(&corp, &id)
        .await?
        .ok_or(PageError::NotFound)?;
    if !can_view(v, &inst) {
        return Err(PageError::NotFound);
    }
    if !may_command(v, &inst) {
        return Err(PageError::Forbidden(t::OPEN_FROM_LINK));
    }
    let actor = acting_user(v, &f.act_as)?;
    let command = match f.action.as_str() {
        "withdraw" => Command::Withdraw,
        "terminate" => Command::Terminate,
        "delete" => Command::Delete,
        _ => return Err(PageError::BadRequest("unknown action".into())),
    };
    let focus = non_empty(&f.back).filter(|t| inst.tasks.contains_key(*t));
    let back = match focus {
        Some(t) => format!("/console/tasks/{}", q(t)),
        None => format!("/console/instances/{}", q(&id)),
    };
    run_command(&state, &ctx, &inst, focus, actor, Ok(command), &back).await
}

/// Submits a command; on success back to the page (303), else the page with the engine's
/// answer.
async fn run_command(
    state: &AppState,
    ctx: &Ctx,
    inst: &Instance,
    focus: Option<&str>,
    actor: String,
    command: Result<Command, &'static str>,
    back: &str,
) -> Result<Response, PageError> {
    let v = ctx.viewer()?;
    let act_as = v.is_operator().then(|| actor.clone());
    let command = match command {
        Ok(c) => c,
        Err(why) => {
            return instance_view(
                state,
                ctx,
                inst,
                focus,
                act_as,
                Some(Notice::Failed(why.into())),
            )
            .await
        }
    };
    let result = state
        .writer
        .submit(Op::Act {
            corp_id: inst.corp_id.clone(),
            instance_id: inst.id.clone(),
            actor: actor.clone(),
            command,
        })
        .await;
    match result {
        Ok(_) => {
            let mut to = format!("{back}?done=1");
            if let Some(a) = &act_as {
                to.push_str(&format!("&as={}", q(a)));
            }
            Ok(see_other(&to))
        }
        Err(e) => match ApiError::from(e) {
            ApiError::Client { message, .. } => {
                let inst = state
                    .store
                    .instance(&inst.corp_id, &inst.id)
                    .await?
                    .ok_or(PageError::NotFound)?;
                instance_view(
                    state,
                    ctx,
                    &inst,
                    focus,
                    act_as,
                    Some(Notice::Failed(message)),
                )
                .await
            }
            other => Err(PageError::Internal(other.to_string())),
        },
    }
}

// ---- starting an instance ----

#[derive(Deserialize, Default)]
pub struct StartQuery {
    process: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct StartForm {
    #[serde(default)]
    process: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    data: String,
    #[serde(rename = "as")]
    act_as: Option<String>,
}

pub async fn start_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(sq): Query<StartQuery>,
) -> Result<Response, PageError> {
    let f = StartForm {
        process: sq.process.unwrap_or_default(),
        ..Default::default()
    };
    start_form(&state, &ctx, &f, None).await
}

async fn start_form(
    state: &AppState,
    ctx: &Ctx,
    f: &StartForm,
    error: Option<String>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?;
    let v = ctx.viewer()?;
    if !v.may_start() {
        return Err(PageError::Forbidden(t::ERR_FORBIDDEN));
    }
    let processes = state.store.process_list(corp).await?;
    let (_, dir) = state.store.load_directory(corp).await?;
    let mut people: Vec<_> = dir.people.values().collect();
    people.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let body = html! {
        @if let Some(e) = &error { div.notice.error role="alert" { p { (e) } } }
        @if processes.is_empty() {
            p { (ctx.t(&t::NO_PROCESSES)) }
        } @else {
            form.card method="post" action="/console/start" {
                (csrf_field(v))
                label for="process" { (ctx.t(&t::PROCESS)) }
                select #process name="process" {
                    @for (code, name, _, version) in &processes {
                        option value=(code) selected[f.process == *code] { (name) " (" (code) ", v" (version) ")" }
                    }
                }
                @if v.is_operator() {
                    label for="as" { (ctx.t(&t::START_AS)) }
                    select #as name="as" {
                        @for p in &people {
                            option value=(p.user_id) selected[f.act_as.as_deref() == Some(p.user_id.as_str())] { (p.name) " (" (p.user_id) ")" }
                        }
                    }
                }
                label for="title" { (ctx.t(&t::TITLE)) }
                input #title name="title" required value=(f.title);
                label for="data" { (ctx.t(&t::FORM_DATA)) }
                textarea #data name="data" rows="6" aria-describedby="data-hint" { (f.data) }
                p #data-hint .hint { (ctx.t(&t::FORM_DATA_HINT)) }
                button.primary type="submit" { (ctx.t(&t::START_BUTTON)) }
            }
        }
    };
    let mut r = page(ctx, ctx.t(&t::START_TITLE), body);
    if error.is_some() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(r)
}

/// `name=value` lines as form data.
fn parse_data(text: &str) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, val) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: write name=value", n + 1))?;
        out.insert(k.trim().to_owned(), Some(val.trim().to_owned()));
    }
    Ok(out)
}

pub async fn start(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<StartForm>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?.to_owned();
    let v = ctx.viewer()?;
    if !v.may_start() {
        return Err(PageError::Forbidden(t::ERR_FORBIDDEN));
    }
    let actor = acting_user(v, &f.act_as)?;
    if f.title.trim().is_empty() {
        return start_form(&state, &ctx, &f, Some("the title is empty".into())).await;
    }
    let form_data = match parse_data(&f.data) {
        Ok(d) => d,
        Err(e) => return start_form(&state, &ctx, &f, Some(e)).await,
    };
    let result = state
        .writer
        .submit(Op::Start {
            corp_id: corp,
            process_code: f.process.clone(),
            actor,
            title: f.title.trim().to_owned(),
            form_data,
        })
        .await;
    match result {
        Ok(o) => Ok(see_other(&format!(
            "/console/instances/{}?done=1",
            q(&o.instance.id)
        ))),
        Err(e) => match ApiError::from(e) {
            ApiError::Client { message, .. } => start_form(&state, &ctx, &f, Some(message)).await,
            other => Err(PageError::Internal(other.to_string())),
        },
    }
}
