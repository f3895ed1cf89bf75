//! A plain HTML view of the unified lists: one page per user with the four tabs, each item
//! linking to where it is acted on. Server-rendered, no script; every value is escaped.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::{html, parse_list, read_page, AppState, ListParams};
use crate::store::List;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}\
nav a{margin-right:1rem}nav a.on{font-weight:bold}";

pub async fn index() -> Response {
    html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Inbox</title><style>{STYLE}</style></head>\
         <body><h1>Unified task center</h1><form method=get onsubmit=\"location='/users/'+encodeURIComponent(this.u.value);return false\">\
         <label>User id <input name=u></label> <button>Open</button></form></body></html>"
    ))
}

pub async fn user_page(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Query(p): Query<ListParams>,
) -> Response {
    let list = match parse_list(p.list.as_deref()) {
        Ok(l) => l,
        Err(m) => return (StatusCode::BAD_REQUEST, m).into_response(),
    };
    let page = match read_page(&state, &user_id, list, p.cursor.as_deref()).await {
        Ok(p) => p,
        Err(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the list could not be read",
            )
                .into_response()
        }
    };
    let user = esc(&user_id);
    let mut out = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{user} — inbox</title><style>{STYLE}</style></head>\
         <body><h1>Tasks of {user}</h1><nav>"
    );
    for (l, label) in [
        (List::Todo, "Pending"),
        (List::Done, "Done"),
        (List::Cc, "Cc'd to me"),
        (List::Created, "Created by me"),
    ] {
        out.push_str(&format!(
            "<a href=\"/users/{}?list={}\"{}>{label}</a>",
            enc(&user_id),
            l.as_str(),
            if l == list { " class=on" } else { "" }
        ));
    }
    out.push_str("</nav><table><thead><tr><th>Title</th><th>Source</th><th>App</th><th>Step</th><th>Originator</th><th>Since</th><th>Status</th></tr></thead><tbody>");
    for item in &page.items {
        let title = esc(item.title.as_deref().unwrap_or(&item.id));
        let title = match item.url.as_deref() {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                format!("<a href=\"{}\">{title}</a>", esc(u))
            }
            _ => title,
        };
        out.push_str(&format!(
            "<tr data-id=\"{}\"><td>{title}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td data-ms=\"{}\">{}</td><td>{}</td></tr>",
            esc(&item.id),
            esc(&item.source),
            esc(&item.app_type),
            esc(item.node_name.as_deref().unwrap_or("")),
            esc(item
                .originator_name
                .as_deref()
                .or(item.originator_id.as_deref())
                .unwrap_or("")),
            item.created_at,
            item.created_at,
            esc(&item.status),
        ));
    }
    out.push_str("</tbody></table>");
    if page.items.is_empty() {
        out.push_str("<p>Nothing here.</p>");
    }
    if let Some(next) = &page.next_cursor {
        out.push_str(&format!(
            "<p><a href=\"/users/{}?list={}&cursor={}\">Older</a></p>",
            enc(&user_id),
            list.as_str(),
            enc(next)
        ));
    }
    out.push_str("</body></html>");
    html(out)
}
