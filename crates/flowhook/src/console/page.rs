//! What every page shares: the request context ([`Ctx`]: language, viewer, path), the layout
//! (header, navigation, language switch, footer), the error type ([`PageError`], rendered as a
//! page by the console's middleware), the CSRF-checked form extractor ([`CsrfForm`]) and small
//! formatting helpers.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::de::DeserializeOwned;

use super::i18n::{self as t, Lang, Msg};
use super::session::Viewer;
use crate::http::AppState;

/// Per request, put in the request's extensions by the console middleware.
#[derive(Clone)]
pub struct Ctx {
    pub lang: Lang,
    /// `None`: nobody is signed in.
    pub viewer: Option<Viewer>,
    /// The path and query of this request (the language switch comes back here).
    pub here: String,
}

impl Ctx {
    /// The signed-in viewer, or a redirect to the sign-in page.
    pub fn viewer(&self) -> Result<&Viewer, PageError> {
        self.viewer.as_ref().ok_or(PageError::SignIn)
    }

    /// The viewer's organisation (a bootstrap operator must have picked one).
    pub fn corp(&self) -> Result<&str, PageError> {
        self.viewer()?.corp().ok_or(PageError::PickOrg)
    }

    /// The organisation of a viewer who must be an operator (an operator with no organisation
    /// picked yet is asked to pick one first, as [`Ctx::corp`] does).
    pub fn operator_corp(&self) -> Result<String, PageError> {
        let corp = self.corp()?.to_owned();
        self.operator()?;
        Ok(corp)
    }

    /// The viewer, who must be an operator.
    pub fn operator(&self) -> Result<&Viewer, PageError> {
        let v = self.viewer()?;
        if v.is_operator() {
            Ok(v)
        } else {
            Err(PageError::Forbidden(t::ERR_OPERATORS_ONLY))
        }
    }

    pub fn t(&self, m: &Msg) -> &'static str {
        self.lang.t(m)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| PageError::Internal("the console middleware did not run".into()))
    }
}

/// Why a page could not be shown. Handlers return it; [`IntoResponse`] leaves a marker that the
/// console middleware turns into a full page in the viewer's language.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to the sign-in page.
    SignIn,
    /// A bootstrap operator without an organisation: to the organisation picker.
    PickOrg,
    Forbidden(Msg),
    /// The CSRF token is missing or wrong.
    Csrf,
    /// A tampered, expired or other-task approval link.
    BadLink,
    NotFound,
    BadRequest(String),
    Internal(String),
}

/// The marker [`PageError`] leaves in its response for the middleware.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub title: Msg,
    pub text: Option<Msg>,
    pub detail: Option<String>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, page) = match self {
            PageError::SignIn => return Redirect::to("/console/sign-in").into_response(),
            PageError::PickOrg => return Redirect::to("/console/orgs").into_response(),
            PageError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                ErrorPage {
                    title: t::ERR_FORBIDDEN,
                    text: Some(m),
                    detail: None,
                },
            ),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                ErrorPage {
                    title: t::ERR_FORBIDDEN,
                    text: Some(t::ERR_CSRF),
                    detail: None,
                },
            ),
            PageError::BadLink => (
                StatusCode::FORBIDDEN,
                ErrorPage {
                    title: t::ERR_FORBIDDEN,
                    text: Some(t::ERR_LINK),
                    detail: None,
                },
            ),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorPage {
                    title: t::ERR_NOT_FOUND,
                    text: Some(t::ERR_NOT_FOUND_TEXT),
                    detail: None,
                },
            ),
            PageError::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                ErrorPage {
                    title: t::ERR_BAD_REQUEST,
                    text: None,
                    detail: Some(why),
                },
            ),
            PageError::Internal(why) => {
                tracing::error!(error = %why, "console: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorPage {
                        title: t::ERR_INTERNAL,
                        text: Some(t::ERR_INTERNAL_TEXT),
                        detail: None,
                    },
                )
            }
        };
        let mut r = status.into_response();
        r.extensions_mut().insert(page);
        r
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError::Internal(format!("{:#}", anyhow::Error::from(e)))
    }
}

/// A urlencoded form whose `csrf` field must equal the session's token: otherwise 403 and
/// nothing runs. The other fields deserialize into `T` (strings; the last of repeated names).
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = req
            .extensions()
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| PageError::Internal("the console middleware did not run".into()))?;
        let viewer = ctx.viewer.ok_or(PageError::SignIn)?;
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| PageError::BadRequest(e.to_string()))?;
        let fields = form_fields(&body);
        let sent = fields.get("csrf").and_then(|v| v.as_str()).unwrap_or("");
        if !viewer.csrf_matches(sent) {
            return Err(PageError::Csrf);
        }
        serde_json::from_value(serde_json::Value::Object(fields))
            .map(CsrfForm)
            .map_err(|e| PageError::BadRequest(format!("the form is not valid: {e}")))
    }
}

/// A urlencoded body as a JSON object of strings (the last of repeated names wins).
pub fn form_fields(body: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect()
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf()); }
}

/// A page: the layout around `body`, titled `title` (the `<title>` and the `<h1>`).
pub fn page(ctx: &Ctx, title: &str, body: Markup) -> Response {
    page_refreshing(ctx, title, None, body)
}

/// A page that reloads itself every `refresh` seconds (`<meta http-equiv="refresh">`: live
/// progress without a script), or a plain [`page`] when `None`.
pub fn page_refreshing(ctx: &Ctx, title: &str, refresh: Option<u32>, body: Markup) -> Response {
    let lang = ctx.lang;
    let other = lang.other();
    let switch = format!(
        "/console/lang?set={}&back={}",
        other.code(),
        url::form_urlencoded::byte_serialize(ctx.here.as_bytes()).collect::<String>()
    );
    let viewer = ctx.viewer.as_ref();
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.html_lang()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = refresh { meta http-equiv="refresh" content=(secs); }
                title { (title) " · " (lang.t(&t::PRODUCT)) }
                link rel="stylesheet" href=(super::CSS_PATH);
            }
            body {
                a.skip href="#main" { (lang.t(&t::SKIP_TO_CONTENT)) }
                header.top {
                    a.brand href="/console" { "Flowhook" }
                    @if let Some(v) = viewer {
                        nav aria-label=(lang.t(&t::MAIN_NAV)) {
                            ul {
                                (nav_item(ctx, "/console/tasks", &t::NAV_TASKS))
                                @if v.may_start() { (nav_item(ctx, "/console/start", &t::NAV_START)) }
                                @if v.is_operator() && v.corp().is_some() {
                                    (nav_item(ctx, "/console/processes", &t::NAV_PROCESSES))
                                    (nav_item(ctx, "/console/integration", &t::NAV_INTEGRATION))
                                    (nav_item(ctx, "/console/directory", &t::NAV_DIRECTORY))
                                }
                                @if v.is_bootstrap() { (nav_item(ctx, "/console/orgs", &t::NAV_ORGS)) }
                            }
                        }
                    }
                    div.who {
                        @if let Some(v) = viewer {
                            span {
                                (lang.t(&t::SIGNED_IN_AS)) ": "
                                strong { (v.display()) }
                                @if v.is_operator() { " (" (lang.t(&t::OPERATOR)) ")" }
                                @if let Some(c) = v.corp() { " · " (c) }
                            }
                            @if v.may_sign_out() {
                                form.inline method="post" action="/console/sign-out" {
                                    (csrf_field(v))
                                    button type="submit" { (lang.t(&t::SIGN_OUT)) }
                                }
                            }
                        }
                        a.lang href=(switch) hreflang=(other.html_lang()) lang=(other.html_lang())
                            aria-label=(format!("{}: {}", lang.t(&t::SWITCH_LANG_LABEL), lang.t(&t::SWITCH_LANG))) {
                            (lang.t(&t::SWITCH_LANG))
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

fn nav_item(ctx: &Ctx, href: &str, label: &Msg) -> Markup {
    let path = ctx.here.split('?').next().unwrap_or("");
    let current = path == href || path.starts_with(&format!("{href}/"));
    html! {
        li {
            @if current {
                a href=(href) aria-current="page" { (ctx.t(label)) }
            } @else {
                a href=(href) { (ctx.t(label)) }
            }
        }
    }
}

/// The error page for the marker a [`PageError`] left.
pub fn error_page(ctx: &Ctx, status: StatusCode, e: &ErrorPage) -> Response {
    let title = ctx.t(&e.title);
    let body = html! {
        div.notice.error role="alert" {
            @if let Some(text) = &e.text { p { (ctx.t(text)) } }
            @if let Some(detail) = &e.detail { p { (detail) } }
        }
        p { a href="/console" { (ctx.t(&t::BACK_HOME)) } }
    };
    let mut r = page(ctx, title, body);
    *r.status_mut() = status;
    r
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A 303 to `to` (after a form: the browser GETs the result, a reload does not re-post).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM` (UTC).
pub fn datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// `YYYY-MM-DD` (UTC midnight) as epoch milliseconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400_000)
}

/// Epoch milliseconds as `YYYY-MM-DD` (UTC), the value of a date input.
pub fn date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

// Howard Hinnant's civil-calendar algorithms (public domain).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Percent-encodes a query value.
pub fn q(s: impl AsRef<str>) -> String {
    url::form_urlencoded::byte_serialize(s.as_ref().as_bytes()).collect()
}

/// Trusted markup (our own SVG).
pub fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(datetime(0), "1970-01-01 00:00");
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(date(1_709_164_800_000 + 3_600_000), "2024-02-29");
        assert_eq!(datetime(1_795_893_536_533), "2026-11-28 19:18");
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("x"), None);
    }
}
