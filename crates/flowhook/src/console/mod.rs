//! The console: web pages served by the binary under `/console` (`/` redirects there),
//! rendered on the server with [maud](https://maud.lambda.xyz) (HTML written in Rust, checked at
//! compile time), in Chinese and English, working without JavaScript. Its one asset, the style
//! sheet, is compiled into the binary.
//!
//! ## Layout
//! - [`page`]: the request context [`page::Ctx`], the layout ([`page::page`]), errors
//!   ([`page::PageError`]), the CSRF-checked form extractor ([`page::CsrfForm`]), formatting.
//! - [`i18n`]: every label as a [`i18n::Msg`] in both languages; the language choice.
//! - [`session`]: sign-in and sign-out, server-side sessions, the viewer ([`session::Viewer`]):
//!   operators (admin key), approval-link users, single-sign-on users.
//! - [`link`]: signed approval links (the `taskUrl`), signed at send time by the dispatcher.
//! - [`tasks`]: the task center, the task and instance pages and their commands, starting.
//! - [`processes`]: processes, versions, the document editor (validate, save a version).
//! - [`diagram`]: a process drawn as SVG, with an instance's progress.
//! - [`directory`]: users (with their manager chain), roles, applications (token rotation),
//!   API keys; secrets Flowhook generates shown once.
//! - [`integration`]: the integration center — connectors and actions, the sync strategy, test
//!   fire, the delivery log with attempts, redelivery, backfill progress, endpoint health and
//!   the delivery-rate chart; every change through the REST API's own handlers.
//!
//! ## Security, for every page
//! The console's middleware ([`layer`]) resolves the viewer from the session cookie (or the
//! trusted single-sign-on header), picks the language, and puts both in a [`page::Ctx`] in the
//! request's extensions; it renders every [`page::PageError`] as a page in that language, and
//! adds the security headers to every response: a `Content-Security-Policy` that allows only
//! this origin's style sheet and forms (no script, no inline style, no framing),
//! `Referrer-Policy: no-referrer` (an approval link must not leak to another site in a
//! `Referer`), `X-Content-Type-Options: nosniff`, `Cache-Control: no-store`.
//!
//! ## How to add a page
//! 1. **Labels**: add each label to [`i18n`]'s `messages!` list, English and Chinese
//!    (`MY_LABEL = "My label", "我的标签";`). Use Yida's own Chinese terms where they exist.
//! 2. **Handler**: an axum handler taking `ctx: page::Ctx` (and `State<AppState>`, `Path`,
//!    `Query` as needed) and returning `Result<Response, PageError>`:
//!    - who may see it: `ctx.corp()?` (signed in, with an organisation: every query is scoped
//!      by it; another organisation's ids must answer [`page::PageError::NotFound`], never
//!      403), `ctx.operator()?` (operators only), `ctx.operator_corp()?` (both: an operator's
//!      organisation), `ctx.viewer()?` (anyone signed in);
//!    - render with `page::page(&ctx, title, html! { … })`: the title becomes the page's
//!      `<title>` and `<h1>` (every page has one); put sections under `h2`s;
//!    - labels with `ctx.t(&i18n::MY_LABEL)`; times with `page::datetime`; query values in
//!      links with `page::q`; maud escapes everything else.
//! 3. **Forms**: a form that changes anything is `method="post"`, contains
//!    `(page::csrf_field(viewer))`, and its handler takes `CsrfForm(f): CsrfForm<MyForm>` (a
//!    `Deserialize` struct of string fields): a missing or wrong token answers 403 before the
//!    handler runs. After success answer `page::see_other(url)` (303, so a reload does not
//!    post again); on a refused input render the page again with the message and a 4xx.
//!    Filters and pickers that change nothing are `method="get"` forms.
//!    Changes go through the same paths as the REST API (the command writer for commands,
//!    the store's functions for settings) — never SQL here.
//! 4. **Accessibility**: every control has a `label for=…` (or `aria-label`); use real links
//!    and buttons (keyboard reachable, focus visible by the style sheet); tables get
//!    `th scope`; a state is never shown by colour alone.
//! 5. **Route**: add it in [`router`] below, under `/console/…`. No secret is ever rendered:
//!    show credentials masked, as the API does.
//! 6. **Tests**: `tests/api/console.rs` (security and content) and the crawler there, which
//!    follows every link of every page in both languages: a new page linked from the
//!    navigation is crawled automatically; it must answer without 5xx and have a title.

pub mod diagram;
pub mod directory;
pub mod i18n;
pub mod integration;
/// The signed approval links the pages open (made at send time by `delivery::links`).
pub use crate::delivery::links as link;
pub mod page;
pub mod processes;
pub mod session;
pub mod tasks;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;

/// Where the style sheet is served; the file name changes with its content (cache busting).
pub const CSS_PATH: &str = "/console/assets/console-2.css";
const CSS: &str = include_str!("assets/console.css");

/// The policy of every console response: this origin's style sheet and forms only.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (without state; `http::router` adds the layers).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(session::home))
        .route("/console/", get(session::home))
        .route(CSS_PATH, get(css))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route(
            "/console/orgs",
            get(session::orgs_page).post(session::pick_org),
        )
        .route("/console/lang", get(session::set_lang))
        .route("/console/tasks", get(tasks::task_center))
        .route("/console/tasks/{task_id}", get(tasks::task_page))
        .route("/console/tasks/{task_id}/act", post(tasks::act))
        .route("/console/instances/{id}", get(tasks::instance_page))
        .route(
            "/console/instances/{id}/command",
            post(tasks::instance_command),
        )
        .route("/console/start", get(tasks::start_page).post(tasks::start))
        .route("/console/processes", get(processes::list))
        .route(
            "/console/processes/new",
            get(processes::new_page).post(processes::save_new),
        )
        .route(
            "/console/processes/{code}",
            get(processes::show).post(processes::save_existing),
        )
        .route("/console/integration", get(integration::overview))
        .route(
            "/console/integration/connectors/new",
            get(integration::new_connector_page).post(integration::create_connector),
        )
        .route(
            "/console/integration/connectors/{id}",
            get(integration::connector_page).post(integration::save_connector),
        )
        .route(
            "/console/integration/connectors/{id}/delete",
            post(integration::delete_connector),
        )
        .route(
            "/console/integration/connectors/{id}/{op}",
            post(integration::pause_connector),
        )
        .route(
            "/console/integration/actions",
            post(integration::create_action),
        )
        .route(
            "/console/integration/actions/{id}",
            get(integration::action_page).post(integration::save_action),
        )
        .route(
            "/console/integration/actions/{id}/delete",
            post(integration::delete_action),
        )
        .route(
            "/console/integration/actions/{id}/test",
            post(integration::test_fire),
        )
        .route(
            "/console/integration/strategy",
            get(integration::strategy_page).post(integration::save_strategy),
        )
        .route(
            "/console/integration/strategy/rotate-secret",
            post(integration::rotate_secret),
        )
        .route(
            "/console/integration/deliveries",
            get(integration::deliveries),
        )
        .route(
            "/console/integration/deliveries/redeliver",
            post(integration::redeliver_many),
        )
        .route(
            "/console/integration/deliveries/{id}",
            get(integration::delivery_page),
        )
        .route(
            "/console/integration/deliveries/{id}/redeliver",
            post(integration::redeliver_one),
        )
        .route(
            "/console/integration/backfill",
            get(integration::backfill_page).post(integration::start_backfill),
        )
        .route("/console/integration/jobs/{id}", get(integration::job_page))
        .route("/console/integration/health", get(integration::health_page))
        .route("/console/directory", get(directory::page_get))
        .route("/console/directory/users", post(directory::put_user))
        .route(
            "/console/directory/users/{id}/delete",
            post(directory::delete_user),
        )
        .route("/console/directory/roles", post(directory::put_role))
        .route("/console/directory/apps", post(directory::create_app))
        .route(
            "/console/directory/apps/{app}/rotate",
            post(directory::rotate_token),
        )
        .route(
            "/console/directory/apps/{app}/commit",
            post(directory::commit_token),
        )
        .route("/console/directory/keys", post(directory::create_key))
        .route(
            "/console/directory/keys/{id}/revoke",
            post(directory::revoke_key),
        )
        .route("/console/{*rest}", get(not_found).post(not_found))
}

async fn not_found() -> page::PageError {
    page::PageError::NotFound
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        CSS,
    )
        .into_response()
}

/// The console's middleware: viewer and language in, error pages and security headers out.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers().clone();
    let lang = i18n::Lang::choose(
        session::cookie_value(&headers, i18n::LANG_COOKIE),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let here = req
        .uri()
        .path_and_query()
        .map_or("/console", |p| p.as_str())
        .to_owned();
    let mut ctx = page::Ctx {
        lang,
        viewer: None,
        here,
    };
    let mut response = match session::resolve(&state, &headers).await {
        Ok((viewer, set_cookie)) => {
            ctx.viewer = viewer;
            req.extensions_mut().insert(ctx.clone());
            let mut r = next.run(req).await;
            if let Some(c) = set_cookie {
                // The handler's own session cookie (a sign-in, a link) wins over ours.
                let handler_set = r
                    .headers()
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .any(|v| v.as_bytes().starts_with(session::SESSION_COOKIE.as_bytes()));
                if !handler_set {
                    session::append_cookie(&mut r, &c);
                }
            }
            r
        }
        Err(e) => page::PageError::from(e).into_response(),
    };
    if let Some(e) = response.extensions().get::<page::ErrorPage>().cloned() {
        let status = response.status();
        let cookies: Vec<HeaderValue> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        response = page::error_page(&ctx, status, &e);
        for c in cookies {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
