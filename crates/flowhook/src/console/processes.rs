//! Processes (operators): the list, each process's versions with the diagram of the chosen one,
//! and the document in an editor — validate (every problem with its JSON path) or save as a new
//! version, through the same parse and store calls as `PUT /api/v1/orgs/{corp}/processes/{code}`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::diagram;
use super::i18n as t;
use super::page::{csrf_field, datetime, page, q, raw, see_other, CsrfForm, Ctx, PageError};
use super::tasks::legend;
use crate::engine::definition::{self, Definition, Format, Problem};
use crate::http::AppState;

pub async fn list(State(state): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let corp = ctx.corp()?;
    ctx.operator()?;
    let processes = state.store.process_list(corp).await?;
    let body = html! {
        p { a.button href="/console/processes/new" { (ctx.t(&t::NEW_PROCESS)) } }
        @if processes.is_empty() {
            p { (ctx.t(&t::NO_PROCESSES)) }
        } @else {
            table {
                thead { tr {
                    th scope="col" { (ctx.t(&t::CODE)) }
                    th scope="col" { (ctx.t(&t::NAME)) }
                    th scope="col" { (ctx.t(&t::APP)) }
                    th scope="col" { (ctx.t(&t::LATEST)) }
                } }
                tbody {
                    @for (code, name, app, version) in &processes {
                        tr {
                            td { a href=(format!("/console/processes/{}", q(code))) { (code) } }
                            td { (name) }
                            td { (app) }
                            td { (version) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&ctx, ctx.t(&t::PROCESSES_TITLE), body))
}

#[derive(Deserialize, Default)]
pub struct VersionQuery {
    version: Option<i64>,
    saved: Option<i64>,
}

/// A process: its versions, the chosen version's diagram and document.
pub async fn show(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(code): Path<String>,
    Query(vq): Query<VersionQuery>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?;
    ctx.operator()?;
    let versions = state.store.definitions(corp, &code, None, 1000).await?;
    let chosen = match vq.version {
        Some(n) => versions.iter().find(|d| d.version == n),
        None => versions.first(),
    }
    .ok_or(PageError::NotFound)?;
    let document = serde_norway::to_string(&chosen.definition)
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let editor = Editor {
        code: Some(code.clone()),
        app_type: chosen.app_type.clone(),
        document,
        problems: None,
        saved: vq.saved,
    };
    render(&state, &ctx, editor, Some((&versions, chosen))).await
}

struct Editor {
    /// `None`: a new process.
    code: Option<String>,
    app_type: String,
    document: String,
    /// `Some(empty)`: validated, no problem.
    problems: Option<Vec<Problem>>,
    saved: Option<i64>,
}

async fn render(
    state: &AppState,
    ctx: &Ctx,
    e: Editor,
    versions: Option<(
        &[crate::store::processes::StoredDefinition],
        &crate::store::processes::StoredDefinition,
    )>,
) -> Result<Response, PageError> {
    let corp = ctx.corp()?;
    let v = ctx.operator()?;
    let apps = state.store.apps(corp).await?;
    let action = match &e.code {
        Some(c) => format!("/console/processes/{}", q(c)),
        None => "/console/processes/new".to_owned(),
    };
    let invalid = e.problems.as_ref().is_some_and(|p| !p.is_empty());
    let body = html! {
        @if let Some(n) = e.saved {
            div.notice.ok role="status" { p { (ctx.t(&t::SAVED)) " " (n) } }
        }
        @if let Some(problems) = &e.problems {
            @if problems.is_empty() {
                div.notice.ok role="status" { p { (ctx.t(&t::VALID)) } }
            } @else {
                div.notice.error role="alert" {
                    h2 { (ctx.t(&t::PROBLEMS)) " (" (problems.len()) ")" }
                    table.problems {
                        thead { tr { th scope="col" { (ctx.t(&t::PATH)) } th scope="col" { (ctx.t(&t::MESSAGE)) } } }
                        tbody {
                            @for p in problems {
                                tr { td { code { (p.path) } } td { (p.message) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some((all, chosen)) = versions {
            section aria-labelledby="h-versions" {
                h2 #h-versions { (ctx.t(&t::VERSIONS)) }
                ul.versions {
                    @for d in all {
                        li {
                            @if d.version == chosen.version {
                                strong aria-current="page" { "v" (d.version) }
                            } @else {
                                a href=(format!("/console/processes/{}?version={}", q(&d.process_code), d.version)) { "v" (d.version) }
                            }
                            " · " (d.name) " · " time { (datetime(d.created_at)) }
                        }
                    }
                }
            }
            section aria-labelledby="h-diagram" {
                h2 #h-diagram { (ctx.t(&t::DIAGRAM)) " — " (ctx.t(&t::VIEWING_VERSION)) " " (chosen.version) }
                figure.diagram {
                    (raw(diagram::svg(&chosen.definition, None, ctx.lang, "dg")))
                    figcaption { (legend(ctx.lang)) }
                }
            }
        }
        section aria-labelledby="h-doc" {
            h2 #h-doc { (ctx.t(&t::DOCUMENT)) }
            form.editor method="post" action=(action) {
                (csrf_field(v))
                label for="app" { (ctx.t(&t::APP)) }
                select #app name="app" {
                    @for a in &apps {
                        option value=(a.app_type) selected[a.app_type == e.app_type] { (a.name) " (" (a.app_type) ")" }
                    }
                }
                label for="document" { (ctx.t(&t::DOCUMENT)) }
                textarea #document name="document" rows="24" spellcheck="false"
                    aria-invalid=(if invalid { "true" } else { "false" }) { (e.document) }
                div.buttons {
                    button type="submit" name="op" value="validate" { (ctx.t(&t::VALIDATE)) }
                    button.primary type="submit" name="op" value="save" { (ctx.t(&t::SAVE_VERSION)) }
                }
            }
        }
    };
    let title = match &e.code {
        Some(c) => format!("{} — {c}", ctx.t(&t::PROCESS)),
        None => ctx.t(&t::NEW_PROCESS).to_owned(),
    };
    let mut r = page(ctx, &title, body);
    if invalid {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(r)
}

const TEMPLATE: &str = "processCode: my-process\nname: My process\nnodes:\n  - id: leader\n    type: approval\n    name: Leader approval\n    approvers: [{type: leader, level: 1}]\n    whenEmpty: admin\n";

pub async fn new_page(State(state): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let corp = ctx.corp()?;
    ctx.operator()?;
    let app_type = state
        .store
        .apps(corp)
        .await?
        .first()
        .map(|a| a.app_type.clone())
        .unwrap_or_default();
    let editor = Editor {
        code: None,
        app_type,
        document: TEMPLATE.into(),
        problems: None,
        saved: None,
    };
    render(&state, &ctx, editor, None).await
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    app: String,
    #[serde(default)]
    document: String,
    #[serde(default)]
    op: String,
}

/// Validates the document (YAML, which JSON is a subset of); every problem with its path.
async fn check(
    state: &AppState,
    corp: &str,
    text: &str,
) -> Result<Result<Definition, Vec<Problem>>, PageError> {
    let (_, dir) = state.store.load_directory(corp).await?;
    Ok(definition::parse(text, Format::Yaml, &dir))
}

pub async fn save_new(
    State(state): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<EditForm>,
) -> Result<Response, PageError> {
    save(state, ctx, None, f).await
}

pub async fn save_existing(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(code): Path<String>,
    CsrfForm(f): CsrfForm<EditForm>,
) -> Result<Response, PageError> {
    save(state, ctx, Some(code), f).await
}

async fn save(
    state: AppState,
    ctx: Ctx,
    code: Option<String>,
    f: EditForm,
) -> Result<Response, PageError> {
    let corp = ctx.operator_corp()?;
    let versions = match &code {
        Some(c) => state.store.definitions(&corp, c, None, 1000).await?,
        None => Vec::new(),
    };
    if code.is_some() && versions.is_empty() {
        return Err(PageError::NotFound);
    }
    let problems = match check(&state, &corp, &f.document).await? {
        Ok(def) => {
            let mut problems = Vec::new();
            if let Some(c) = &code {
                if &def.process_code != c {
                    problems.push(Problem {
                        path: "$.processCode".into(),
                        message: format!("must stay `{c}` (save another code as a new process)"),
                    });
                }
            } else if state
                .store
                .definition(&corp, &def.process_code, None)
                .await?
                .is_some()
            {
                problems.push(Problem {
                    path: "$.processCode".into(),
                    message: format!(
                        "`{}` exists: open it to save a new version",
                        def.process_code
                    ),
                });
            }
            if state.store.app(&corp, &f.app).await?.is_none() {
                problems.push(Problem {
                    path: "appType".into(),
                    message: format!("unknown application `{}`", f.app),
                });
            }
            if problems.is_empty() && f.op == "save" {
                let stored = state.store.put_definition(&corp, &f.app, &def).await?;
                return Ok(see_other(&format!(
                    "/console/processes/{}?saved={}",
                    q(&stored.process_code),
                    stored.version
                )));
            }
            problems
        }
        Err(problems) => problems,
    };
    let editor = Editor {
        code: code.clone(),
        app_type: f.app,
        document: f.document,
        problems: Some(problems),
        saved: None,
    };
    match versions.first() {
        Some(latest) => render(&state, &ctx, editor, Some((&versions, latest))).await,
        None => render(&state, &ctx, editor, None).await,
    }
}
