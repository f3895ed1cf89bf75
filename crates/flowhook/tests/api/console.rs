//! The console over real HTTP, as a browser without JavaScript uses it (cookies kept by hand,
//! forms posted urlencoded): sign-in and sessions (cookie flags, expiry, sign-out, a revoked
//! key), CSRF on every form, signed approval links (the `taskUrl` a receiver gets opens its
//! task as its assignee; a changed, expired or other-task link is refused), organisations kept
//! apart, no secret in a page — and a crawler that follows every console link in both
//! languages, as an operator and as an approval-link user.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flowhook_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestDb;
use crate::receiver::Receiver;
use crate::task_center::Org;

const BOOTSTRAP: &str = "test-bootstrap-key-0123456789";

/// A cookie jar and a client that does not follow redirects (the tests look at each answer).
pub(crate) struct Browser {
    client: reqwest::Client,
    base: String,
    pub(crate) cookies: BTreeMap<String, String>,
    lang: &'static str,
    /// A header sent with every request (an authenticating proxy's).
    pub(crate) header: Option<(String, String)>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub(crate) fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The value of the first hidden `csrf` field.
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    pub(crate) fn title(&self) -> Option<String> {
        let start = self.body.find("<title>")? + "<title>".len();
        let end = self.body[start..].find("</title>")? + start;
        Some(self.body[start..end].to_owned())
    }
}

impl Browser {
    pub(crate) fn new(base: &str, lang: &'static str) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.trim_end_matches('/').to_owned(),
            cookies: BTreeMap::new(),
            lang,
            header: None,
        }
    }

    /// A full URL (a captured `taskUrl` names the configured public base URL) goes to this
    /// server, as a proxy in front of it would send it.
    fn url(&self, path: &str) -> String {
        let path = match path
            .strip_prefix("http://")
            .or(path.strip_prefix("https://"))
        {
            Some(rest) => &rest[rest.find('/').unwrap_or(rest.len())..],
            None => path,
        };
        format!("{}{path}", self.base)
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let req = match &self.header {
            Some((k, v)) => req.header(k, v),
            None => req,
        };
        let resp = req
            .header("cookie", cookie.join("; "))
            .header("accept-language", self.lang)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status,
            headers,
            body: resp.text().await.unwrap(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(self.url(path));
        self.send(req).await
    }

    pub(crate) async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    /// Signs in with `key` through the form; returns the answer to the form.
    pub(crate) async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/console/sign-in").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post("/console/sign-in", &[("key", key), ("csrf", &csrf)])
            .await
    }
}

/// The open task of `user` in `instance`.
async fn open_task(org: &Org, instance: &str, user: &str) -> String {
    org.task(instance, user).await
}

async fn task_status(org: &Org, task: &str) -> String {
    let instance = task.rsplit_once("-t").unwrap().0;
    let inst = org.instance(instance).await;
    inst["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskId"] == task)
        .unwrap()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A link to `task` for `user`, signed with the installation's secret.
async fn link(org: &Org, task: &str, user: &str, expires: i64) -> String {
    let secret = org.app.store.link_secret().await.unwrap();
    flowhook::console::link::signed_url(
        &format!("http://{}", org.app.addr),
        &secret,
        &org.corp,
        task,
        user,
        expires,
    )
}

fn in_a_day() -> i64 {
    flowhook::support::now_ms() / 1000 + 86_400
}

async fn security(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let base = format!("http://{}", org.app.addr);
    let other_key = org.other_org_key("globex", &["admin"]).await;

    // --- sign-in: the form's own CSRF token, cookie flags, bad keys ---
    let mut op = Browser::new(&base, "en");
    let form = op.get("/console/sign-in").await;
    assert!(form
        .headers
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap().contains("default-src 'none'")));
    let no_token = op.post("/console/sign-in", &[("key", &org.key)]).await;
    assert_eq!(
        no_token.status,
        StatusCode::FORBIDDEN,
        "sign-in without its CSRF token"
    );
    assert!(!op.cookies.contains_key("fh_session"));
    let wrong = op
        .post("/console/sign-in", &[("key", &org.key), ("csrf", "forged")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(!op.cookies.contains_key("fh_session"));
    let bad_key = op.sign_in("fhk_not-a-key").await;
    assert_eq!(bad_key.status, StatusCode::UNAUTHORIZED);
    assert!(!op.cookies.contains_key("fh_session"));
    let (s, tasks_key) = org
        .send(
            "POST",
            &org.path("/api-keys"),
            None,
            Some(json!({"name": "t", "scopes": ["tasks"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let not_admin = op.sign_in(tasks_key["key"].as_str().unwrap()).await;
    assert_eq!(
        not_admin.status,
        StatusCode::UNAUTHORIZED,
        "a tasks key is no operator"
    );

    let signed = op.sign_in(&org.key).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let cookie = signed
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("fh_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: no Secure flag");
    let home = op.get("/console/tasks?user=bob").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("<title>"));
    for h in [
        "content-security-policy",
        "referrer-policy",
        "x-content-type-options",
    ] {
        assert!(home.headers.contains_key(h), "{h}");
    }

    // --- CSRF on a command: missing or wrong → 403 and the task still open ---
    let leave = org
        .start("alice", "leave", "Alice: 5 days", json!({"days": "5"}))
        .await;
    let task_a = open_task(&org, &leave, "bob").await;
    let act = format!("/console/tasks/{task_a}/act");
    let page = op.get(&format!("/console/tasks/{task_a}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(r#"value="agree""#),
        "bob may agree: {}",
        page.body
    );
    let csrf = page.csrf();
    let r = op.post(&act, &[("action", "agree"), ("as", "bob")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("security token"), "{}", r.body);
    let r = op
        .post(
            &act,
            &[("action", "agree"), ("as", "bob"), ("csrf", "0123")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        task_status(&org, &task_a).await,
        "open",
        "no change without the token"
    );
    // The sign-in form's token is not a session's token.
    op.get("/console/sign-in").await;
    let signin_token = op.cookies["fh_signin"].clone();
    let r = op
        .post(
            &act,
            &[("action", "agree"), ("as", "bob"), ("csrf", &signin_token)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "{:?} {:?}",
        r.location(),
        op.cookies
    );
    // Another session's token is not this one's.
    let mut op2 = Browser::new(&base, "en");
    op2.sign_in(&org.key).await;
    let csrf2 = op2.get("/console/tasks").await.csrf();
    let r = op
        .post(
            &act,
            &[("action", "agree"), ("as", "bob"), ("csrf", &csrf2)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(task_status(&org, &task_a).await, "open");
    // With the token: done, through the engine (which still checks who acts).
    let r = op
        .post(
            &act,
            &[("action", "agree"), ("as", "dave"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "dave is not the assignee"
    );
    assert!(
        r.body.contains("assignee"),
        "the engine's answer is shown: {}",
        r.body
    );
    let r = op
        .post(
            &act,
            &[
                ("action", "agree"),
                ("as", "bob"),
                ("remark", "ok, enjoy"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(task_status(&org, &task_a).await, "finished");
    let after = op.get(r.location().unwrap()).await;
    assert!(
        after.body.contains("ok, enjoy"),
        "the remark is in the timeline"
    );

    // --- approval links: the task's own, as its assignee, and nothing else ---
    let one = org
        .start("dave", "leave", "Dave: 2 days", json!({"days": "2"}))
        .await;
    let two = org
        .start("alice", "leave", "Alice: 1 day", json!({"days": "1"}))
        .await;
    let (t1, t2) = (
        open_task(&org, &one, "bob").await,
        open_task(&org, &two, "bob").await,
    );
    let mut bob = Browser::new(&base, "zh");
    let opened = bob.get(&link(&org, &t1, "bob", in_a_day()).await).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    assert!(
        opened.body.contains(r#"value="agree""#),
        "the link's assignee may agree"
    );
    let cookie = opened
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("fh_session="))
        .expect("the link opens a session");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let bob_csrf = opened.csrf();
    // Task two is bob's too, but its link was not opened: no action on it.
    let r = bob
        .post(
            &format!("/console/tasks/{t2}/act"),
            &[("action", "agree"), ("csrf", &bob_csrf)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a link for task one cannot act on task two"
    );
    assert_eq!(task_status(&org, &t2).await, "open");
    let seen = bob.get(&format!("/console/tasks/{t2}")).await;
    assert_eq!(seen.status, StatusCode::OK, "bob may look at his own task");
    assert!(!seen.body.contains(r#"value="agree""#), "but not act on it");
    // A link session is no operator.
    assert_eq!(
        bob.get("/console/processes").await.status,
        StatusCode::FORBIDDEN
    );
    let r = bob
        .post(
            &format!("/console/tasks/{t1}/act"),
            &[
                ("action", "disagree"),
                ("remark", "no"),
                ("csrf", &bob_csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(org.status(&one).await, "rejected");
    let ended = bob.get(&format!("/console/tasks/{t1}")).await;
    assert!(
        ended.body.contains("只读"),
        "an ended task's page is read-only: {}",
        ended.body
    );
    assert!(!ended.body.contains(r#"value="agree""#));

    // Changed, expired, other-task, other-user links: 403 with a page that says so.
    let good = link(&org, &t2, "bob", in_a_day()).await;
    let tampered = format!(
        "{}{}",
        &good[..good.len() - 1],
        if good.ends_with('A') { 'B' } else { 'A' }
    );
    let expired = link(&org, &t2, "bob", flowhook::support::now_ms() / 1000 - 1).await;
    let other_task = good.replace(&t2, &t1);
    let other_user = good.replace("u=bob", "u=dave");
    let later = good.replace(
        &format!("e={}", in_a_day()),
        &format!("e={}", in_a_day() + 1000),
    );
    for (what, url) in [
        ("tampered", tampered),
        ("expired", expired),
        ("other task", other_task),
        ("other user", other_user),
        ("later expiry", later),
        ("no signature", good.split("&s=").next().unwrap().to_owned()),
    ] {
        let mut fresh = Browser::new(&base, "en");
        let r = fresh.get(&url).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {url}");
        assert!(
            r.body.contains("approval link is not valid"),
            "{what}: {}",
            r.body
        );
        assert!(
            !fresh.cookies.contains_key("fh_session"),
            "{what}: no session"
        );
    }
    assert_eq!(task_status(&org, &t2).await, "open");

    // --- organisations apart: acme's operator sees nothing of globex (404) ---
    let saved = std::mem::replace(&mut org.key, other_key.clone());
    let corp = std::mem::replace(&mut org.corp, "globex".into());
    for (id, name, manager, admin) in flowhook::demo::PEOPLE {
        let (s, _) = org
            .send(
                "PUT",
                &org.path(&format!("/users/{id}")),
                None,
                Some(json!({"name": name, "managerId": manager, "admin": admin})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _) = org
        .send(
            "PUT",
            &org.path("/roles/finance"),
            None,
            Some(json!({"name": "finance", "members": ["fin1", "fin2"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = org
        .send(
            "POST",
            &org.path("/apps"),
            None,
            Some(json!({"appType": "APP_GLOBEX", "name": "g"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = org
        .send(
            "PUT",
            &org.path("/processes/purchase?appType=APP_GLOBEX"),
            None,
            Some(flowhook::demo::purchase_document()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let theirs = org
        .start(
            "alice",
            "purchase",
            "Globex secret plan",
            json!({"amount": "9"}),
        )
        .await;
    let their_task = open_task(&org, &theirs, "fin1").await;
    for path in [
        format!("/console/instances/{theirs}"),
        format!("/console/tasks/{their_task}"),
        "/console/processes/purchase".to_owned(),
    ] {
        let r = op.get(&path).await;
        if path.ends_with("purchase") {
            // acme has a process of that code: its own, not globex's.
            assert!(!r.body.contains("APP_GLOBEX"), "{path}");
        } else {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        }
        assert!(!r.body.contains("Globex secret plan"), "{path}");
    }
    let csrf = op.get("/console/tasks").await.csrf();
    let r = op
        .post(
            &format!("/console/tasks/{their_task}/act"),
            &[("action", "agree"), ("as", "fin1"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = op
        .post(
            &format!("/console/instances/{theirs}/command"),
            &[("action", "delete"), ("as", "admin"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(task_status(&org, &their_task).await, "open");
    // A link of globex's task does not let bob's acme session in: it replaces it.
    org.key = saved;
    org.corp = corp;

    // --- no secret in any page: keys, systemToken, the link secret ---
    let secret = org.app.store.link_secret().await.unwrap();
    let mut pages = Vec::new();
    for path in [
        "/console/tasks?user=bob".to_owned(),
        format!("/console/instances/{leave}"),
        "/console/processes".to_owned(),
        "/console/processes/leave".to_owned(),
        "/console/start".to_owned(),
        "/console/integration".to_owned(),
    ] {
        let r = op.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        pages.push(r.body);
    }
    for body in &pages {
        for s in [
            org.key.as_str(),
            other_key.as_str(),
            org.system_token.as_str(),
            secret.as_str(),
            BOOTSTRAP,
        ] {
            assert!(!body.contains(s), "a secret in a page");
        }
    }

    // --- the bootstrap key: picks an organisation first ---
    let mut boot = Browser::new(&base, "en");
    let r = boot.sign_in(BOOTSTRAP).await;
    assert_eq!(r.location(), Some("/console/orgs"));
    assert_eq!(
        boot.get("/console/tasks").await.location(),
        Some("/console/orgs")
    );
    let picker = boot.get("/console/orgs").await;
    assert!(
        picker.body.contains(r#"value="globex""#),
        "every organisation"
    );
    let r = boot.post("/console/orgs", &[("corp", "acme")]).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "picking is a form with its token"
    );
    let r = boot
        .post(
            "/console/orgs",
            &[("corp", "acme"), ("csrf", &picker.csrf())],
        )
        .await;
    assert_eq!(r.location(), Some("/console/tasks"));
    let tc = boot.get("/console/tasks?user=alice").await;
    assert_eq!(tc.status, StatusCode::OK);
    assert!(tc.body.contains("· acme"), "signed in to acme: {}", tc.body);
    // An organisation key cannot pick another organisation.
    let csrf = op.get("/console/tasks").await.csrf();
    let r = op
        .post("/console/orgs", &[("corp", "globex"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // --- sessions end: sign-out, idle, a revoked key ---
    let csrf = op.get("/console/tasks").await.csrf();
    let old = op.cookies["fh_session"].clone();
    let r = op.post("/console/sign-out", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "sign-out is a form too");
    let r = op.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!op.cookies.contains_key("fh_session"));
    op.cookies.insert("fh_session".into(), old);
    let r = op.get("/console/tasks").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "the old cookie is worth nothing"
    );
    assert_eq!(r.location(), Some("/console/sign-in"));

    let mut idle = Browser::new(&base, "en");
    idle.sign_in(&org.key).await;
    assert_eq!(idle.get("/console/tasks").await.status, StatusCode::OK);
    age_sessions(&org, 31 * 60_000).await;
    let r = idle.get("/console/tasks").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "idle for longer than 30 minutes"
    );

    let (s, k) = org
        .send(
            "POST",
            &org.path("/api-keys"),
            None,
            Some(json!({"name": "ops", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut revoked = Browser::new(&base, "en");
    revoked.sign_in(k["key"].as_str().unwrap()).await;
    assert_eq!(revoked.get("/console/tasks").await.status, StatusCode::OK);
    let (s, _) = org
        .send(
            "DELETE",
            &org.path(&format!("/api-keys/{}", k["id"].as_str().unwrap())),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let r = revoked.get("/console/tasks").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "revoking the key ends its sessions"
    );
    org.app.stop().await;
}

/// Moves every session's last use `by_ms` into the past (as if that time went by).
async fn age_sessions(org: &Org, by_ms: i64) {
    let sql = "UPDATE console_sessions SET last_seen_at = last_seen_at - $1";
    match &org.app.store {
        flowhook::store::Store::Sqlite(p) => {
            sqlx::query(sql).bind(by_ms).execute(p).await.unwrap();
        }
        flowhook::store::Store::Postgres(p) => {
            sqlx::query(sql).bind(by_ms).execute(p).await.unwrap();
        }
    }
}

mod security {
    crate::on_both_backends!(super::security);
}

/// Behind https the session cookie is `Secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_behind_https() {
    let db = TestDb::sqlite().await;
    let org = Org::setup_with(&db, "acme", |c| {
        c.public_base_url = "https://flowhook.example".into();
    })
    .await;
    let mut op = Browser::new(&format!("http://{}", org.app.addr), "en");
    let r = op.sign_in(&org.key).await;
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("fh_session="))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    org.app.stop().await;
}

/// The `taskUrl` a receiver captures is a working approval link, signed at send time: a
/// backfill re-sends it freshly signed (after a secret rotation, the old one stops working and
/// the backfilled one works).
async fn approval_links_in_deliveries(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        c.delivery_poll_ms = 50;
    })
    .await;
    let receiver = Receiver::start().await;
    let (s, con) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(json!({"name": "inbox", "baseUrl": receiver.url})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut actions = BTreeMap::new();
    for kind in ["created", "finished", "cancelled", "deleted", "cc"] {
        let (s, a) = org
            .send(
                "POST",
                &org.path("/actions"),
                None,
                Some(json!({"connectorId": con["id"], "name": kind, "path": format!("/{kind}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        actions.insert(kind, a["id"].as_str().unwrap().to_owned());
    }
    let (s, _) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": actions})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let id = org
        .start("alice", "leave", "Alice: 5 days", json!({"days": "5"}))
        .await;
    receiver
        .wait_until(10, "task.created", |got| !got.is_empty())
        .await;
    let first = task_url(&receiver.accepted()[0].body);
    let task = open_task(&org, &id, "bob").await;
    assert!(
        first.contains(&format!("/console/tasks/{task}?u=bob&e=")),
        "{first}"
    );

    // The attempt log shows the link with its signature masked.
    let wait = std::time::Duration::from_secs(20);
    let logged = eventually("a delivered delivery", wait, async || {
        let (s, list) = org
            .send("GET", &org.path("/deliveries?status=delivered"), None, None)
            .await;
        assert_eq!(s, StatusCode::OK);
        let dlv = list["items"][0]["id"].as_str()?;
        let path = org.path(&format!("/deliveries/{dlv}"));
        Some(org.send("GET", &path, None, None).await.1.to_string())
    })
    .await;
    let signature = first.rsplit("s=").next().unwrap();
    assert!(
        !logged.contains(signature),
        "the link's signature is not in the log"
    );
    assert!(logged.contains("s=***"), "{logged}");

    // Opened from the captured request: bob's task, as bob.
    let mut bob = Browser::new(&format!("http://{}", org.app.addr), "en");
    let page = bob.get(&first).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"value="agree""#));

    // Rotating the secret voids the link; a backfill re-sends the task with a fresh one.
    org.app.store.rotate_link_secret().await.unwrap();
    let mut again = Browser::new(&format!("http://{}", org.app.addr), "en");
    assert_eq!(again.get(&first).await.status, StatusCode::FORBIDDEN);
    let (s, job) = org
        .send(
            "POST",
            &org.path("/backfills"),
            None,
            Some(json!({"mode": "open"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    receiver
        .wait_until(10, "the backfill", |got| got.len() >= 2)
        .await;
    let backfilled = receiver.accepted()[1].clone();
    assert_eq!(backfilled.header("x-flowhook-backfill"), Some("true"));
    let fresh = task_url(&backfilled.body);
    assert_ne!(fresh, first);
    let page = again.get(&fresh).await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the backfilled link works: {}",
        page.body
    );
    let csrf = page.csrf();
    let r = again
        .post(
            &format!("/console/tasks/{task}/act"),
            &[("action", "agree"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    receiver
        .wait_until(10, "task.finished", |got| {
            got.iter().any(|c| c.path == "/finished")
        })
        .await;
    org.instances.push(id);
    org.app.stop().await;
}

fn task_url(body: &[u8]) -> String {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let task: Value = serde_json::from_str(&params["task"]).unwrap();
    task["taskUrl"].as_str().unwrap().to_owned()
}

mod approval_links_in_deliveries {
    crate::on_both_backends!(super::approval_links_in_deliveries);
}

/// Every `href` to a console page in `body`.
fn links(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find("href=\"") {
        rest = &rest[at + 6..];
        let end = rest.find('"').unwrap();
        let href = rest[..end].replace("&amp;", "&");
        if href.starts_with("/console") {
            out.push(href);
        }
        rest = &rest[end..];
    }
    out
}

/// Follows every console link from `start`: no 5xx, no broken link (404), a title everywhere.
async fn crawl(b: &mut Browser, start: &[String], lang: &str) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, String)> = start
        .iter()
        .map(|s| (s.clone(), "start".to_owned()))
        .collect();
    while let Some((path, from)) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        assert!(seen.len() < 600, "the crawl is bounded");
        let r = b.get(&path).await;
        if path.starts_with("/console/lang") {
            // The language switch: a redirect back, and the crawl stays in its language.
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
            b.cookies.remove("fh_lang");
            continue;
        }
        assert!(
            r.status.is_success() || r.status == StatusCode::SEE_OTHER,
            "{lang}: {path} (linked from {from}) answered {}: {}",
            r.status,
            r.body
        );
        if r.status == StatusCode::SEE_OTHER {
            let to = r.location().unwrap().to_owned();
            queue.push_back((to, path.clone()));
            continue;
        }
        if r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
        {
            let title = r.title().unwrap_or_default();
            assert!(!title.trim().is_empty(), "{lang}: {path} has no title");
            assert!(r.body.contains("<h1>"), "{lang}: {path} has no heading");
            let html_lang = if lang == "zh" {
                r#"lang="zh-CN""#
            } else {
                r#"lang="en""#
            };
            assert!(
                r.body.contains(html_lang),
                "{lang}: {path} is in its language"
            );
            for l in links(&r.body) {
                queue.push_back((l, path.clone()));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawler_finds_no_broken_page() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let mut org = Org::setup(&db, "acme").await;
        let base = format!("http://{}", org.app.addr);
        // Instances in every state: running, approved (with cc), rejected, returned, deleted.
        let long = org
            .start("alice", "leave", "Alice: 5 days", json!({"days": "5"}))
            .await;
        org.act(&long, "bob", "agree", json!({"remark": "fine"}))
            .await;
        let short = org
            .start("dave", "leave", "Dave: 2 days", json!({"days": "2"}))
            .await;
        org.act(&short, "bob", "agree", json!({})).await;
        let no = org
            .start("alice", "purchase", "Chair", json!({"amount": "80"}))
            .await;
        org.act(&no, "fin1", "disagree", json!({"remark": "too dear"}))
            .await;
        let back = org.start("alice", "purchase", "Desk", json!({})).await;
        org.act(&back, "fin2", "return", json!({"target": "originator"}))
            .await;
        let gone = org.start("dave", "purchase", "Lamp", json!({})).await;
        let (s, _) = org
            .send(
                "DELETE",
                &org.path(&format!("/instances/{gone}")),
                Some("admin"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let hr_task = open_task(&org, &long, "hr1").await;
        // The integration center with something in it: a connector made on its pages, the
        // deliveries of the instances below, a backfill job.
        let receiver = Receiver::start().await;
        let mut setup = operator(&org, "en").await;
        connector_through_pages(&org, &mut setup, &receiver.url).await;
        let more = org
            .start("alice", "leave", "Alice: 1 day", json!({"days": "1"}))
            .await;
        org.act(&more, "bob", "agree", json!({})).await;
        receiver
            .wait_until(10, "the deliveries", |got| got.len() >= 2)
            .await;
        let (s, job) = org
            .send(
                "POST",
                &org.path("/backfills"),
                None,
                Some(json!({"mode": "open"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{job}");
        let job_page = format!("/console/integration/jobs/{}", job["id"].as_str().unwrap());
        let mut total = 0;
        for lang in ["en", "zh"] {
            let mut op = Browser::new(&base, lang);
            op.sign_in(&org.key).await;
            let mut start: Vec<String> = vec!["/".into(), "/console".into()];
            for (user, ..) in flowhook::demo::PEOPLE {
                for list in ["created", "todo", "done", "cc"] {
                    start.push(format!("/console/tasks?list={list}&user={user}"));
                }
            }
            start.push(job_page.clone());
            let seen = crawl(&mut op, &start, lang).await;
            for page in [
                "/console/integration",
                "/console/integration/connectors/new",
                "/console/integration/connectors/con_",
                "/console/integration/actions/act_",
                "/console/integration/strategy",
                "/console/integration/deliveries",
                "/console/integration/deliveries/dlv_",
                "/console/integration/backfill",
                "/console/integration/jobs/job_",
                "/console/integration/health",
                "/console/directory",
            ] {
                assert!(
                    seen.iter().any(|p| p.starts_with(page)),
                    "{lang}: the crawl reached no {page}…"
                );
            }
            total += seen.len();
            let mut hr = Browser::new(&base, lang);
            let url = link(&org, &hr_task, "hr1", in_a_day()).await;
            total += crawl(&mut hr, &[url], lang).await.len();
            let mut anonymous = Browser::new(&base, lang);
            total += crawl(&mut anonymous, &["/".into()], lang).await.len();
        }
        assert!(total > 40, "the crawl saw {total} pages");
        org.instances.push(more);
        org.app.stop().await;
    })
    .await
}

/// Single sign-on: with `console_trusted_user_header` set, the header names the user (their
/// lists, all their tasks); without the header, nobody; unset (the default), it is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_by_the_trusted_header() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let mut org = Org::setup_with(&db, "acme", |c| {
            c.console_trusted_user_header = Some("X-Forwarded-User".into());
            c.console_trusted_user_org = Some("acme".into());
        })
        .await;
        let base = format!("http://{}", org.app.addr);
        let one = org
            .start("alice", "leave", "Alice: 2 days", json!({"days": "2"}))
            .await;
        let two = org
            .start("dave", "leave", "Dave: 1 day", json!({"days": "1"}))
            .await;
        let (t1, t2) = (
            open_task(&org, &one, "bob").await,
            open_task(&org, &two, "bob").await,
        );
        let mut bob = Browser::new(&base, "en");
        bob.header = Some(("X-Forwarded-User".into(), "bob".into()));
        let lists = bob.get("/console/tasks?list=todo&user=carol").await;
        assert_eq!(
            lists.status,
            StatusCode::OK,
            "{:?} {}",
            lists.location(),
            lists.body
        );
        assert!(
            lists.body.contains("Alice: 2 days") && lists.body.contains("Dave: 1 day"),
            "bob's own list, whatever user= says"
        );
        assert!(
            bob.cookies.contains_key("fh_session"),
            "a session of its own, for its CSRF token"
        );
        for t in [&t1, &t2] {
            let page = bob.get(&format!("/console/tasks/{t}")).await;
            assert!(
                page.body.contains(r#"value="agree""#),
                "every one of bob's tasks"
            );
            let r = bob
                .post(
                    &format!("/console/tasks/{t}/act"),
                    &[("action", "agree"), ("csrf", &page.csrf())],
                )
                .await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
            assert_eq!(task_status(&org, t).await, "finished");
        }
        // Another user named: another session, and bob's instances are not theirs to see.
        let three = org
            .start("alice", "leave", "Alice: 3 days", json!({"days": "3"}))
            .await;
        bob.header = Some(("X-Forwarded-User".into(), "hr1".into()));
        assert_eq!(
            bob.get(&format!("/console/instances/{three}")).await.status,
            StatusCode::NOT_FOUND
        );
        // The proxy no longer vouches: the session is over.
        bob.header = None;
        let r = bob.get("/console/tasks").await;
        assert_eq!(r.location(), Some("/console/sign-in"));
        org.app.stop().await;

        // Off by default: the header means nothing.
        let db = TestDb::sqlite().await;
        let org = Org::setup(&db, "acme").await;
        let mut anyone = Browser::new(&format!("http://{}", org.app.addr), "en");
        anyone.header = Some(("X-Forwarded-User".into(), "bob".into()));
        let r = anyone.get("/console/tasks").await;
        assert_eq!(r.location(), Some("/console/sign-in"));
        assert!(!anyone.cookies.contains_key("fh_session"));
        org.app.stop().await;
    })
    .await
}

/// The `id` in a console redirect to `…/{kind}/{id}?…`.
fn id_in(location: &str, kind: &str) -> String {
    let rest = &location[location.find(&format!("/{kind}/")).unwrap() + kind.len() + 2..];
    rest.split(['?', '/']).next().unwrap().to_owned()
}

/// Signs in an operator (the organisation's admin key) on the console.
async fn operator(org: &Org, lang: &'static str) -> Browser {
    let mut op = Browser::new(&format!("http://{}", org.app.addr), lang);
    let r = op.sign_in(&org.key).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    op
}

/// Posts a console form with the page's CSRF token.
async fn submit(b: &mut Browser, form_page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = b.get(form_page).await.csrf();
    let mut all = fields.to_vec();
    all.push(("csrf", &csrf));
    b.post(action, &all).await
}

/// A connector (Bearer authentication) with five actions and the sync strategy, made through
/// the integration center's pages; returns the connector's id.
async fn connector_through_pages(org: &Org, op: &mut Browser, base_url: &str) -> String {
    let r = submit(
        op,
        "/console/integration/connectors/new",
        "/console/integration/connectors/new",
        &[
            ("name", "Task inbox"),
            ("base_url", base_url),
            ("auth", "bearer"),
            ("token", "console-token-123456"),
            ("headers", "X-Source: console"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let id = id_in(r.location().unwrap(), "connectors");
    let page = format!("/console/integration/connectors/{id}");
    for kind in ["created", "finished", "cancelled", "deleted", "cc"] {
        let path = format!("/{kind}");
        let r = submit(
            op,
            &page,
            "/console/integration/actions",
            &[("connector_id", &id), ("name", kind), ("path", &path)],
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
    let (_, actions) = org.send("GET", &org.path("/actions"), None, None).await;
    let action = |kind: &str| -> String {
        actions
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == kind)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ids: Vec<(String, String)> = ["created", "finished", "cancelled", "deleted", "cc"]
        .iter()
        .map(|k| (format!("ev_{k}"), action(k)))
        .collect();
    let mut fields: Vec<(&str, &str)> = ids.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fields.extend([("enabled", "on"), ("ordered", "on")]);
    let r = submit(
        op,
        "/console/integration/strategy",
        "/console/integration/strategy",
        &fields,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    id
}

/// The integration center's pages drive what is delivered: a connector, its five actions and
/// the strategy made on the pages deliver to a real receiver with the Bearer token; the log
/// shows the deliveries and their attempts with the token masked; the base URL edited on the
/// connector's page (the token left empty: kept) takes the next delivery to the new receiver;
/// a deletion the strategy forbids shows the API's reason and changes nothing.
async fn integration_pages_drive_deliveries(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        c.delivery_poll_ms = 50;
    })
    .await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let mut op = operator(&org, "en").await;
    let con = connector_through_pages(&org, &mut op, &format!("{}/one", first.url)).await;
    let con_page = format!("/console/integration/connectors/{con}");
    let page = op.get(&con_page).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("console-token-123456"),
        "the token is not shown"
    );
    assert!(
        !page.body.contains("X-Source: console"),
        "header values are masked"
    );
    assert!(page.body.contains("X-Source: ***"));

    let id = org
        .start("alice", "leave", "Alice: 5 days", json!({"days": "5"}))
        .await;
    first
        .wait_until(10, "task.created at the first receiver", |got| {
            !got.is_empty()
        })
        .await;
    let created = first.accepted()[0].clone();
    assert_eq!(created.path, "/one/created");
    assert_eq!(
        created.header("authorization"),
        Some("Bearer console-token-123456")
    );
    assert_eq!(created.header("x-source"), Some("console"));

    // The base URL moves on the connector's page; the token field left empty keeps the token.
    let r = submit(
        &mut op,
        &con_page,
        &con_page,
        &[
            ("name", "Task inbox"),
            ("base_url", &format!("{}/two", second.url)),
            ("auth", "bearer"),
            ("token", ""),
            ("headers", "X-Source: ***"),
            ("timeout_ms", "10000"),
            ("max_concurrency", "8"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let task = open_task(&org, &id, "bob").await;
    org.act(&id, "bob", "agree", json!({})).await;
    second
        .wait_until(10, "task.finished at the second receiver", |got| {
            got.iter().any(|c| c.path == "/two/finished")
        })
        .await;
    let finished = second
        .accepted()
        .into_iter()
        .find(|c| c.path == "/two/finished")
        .unwrap();
    assert_eq!(
        finished.header("authorization"),
        Some("Bearer console-token-123456"),
        "the stored token was kept"
    );
    assert_eq!(
        finished.header("x-source"),
        Some("console"),
        "the header value was kept"
    );
    assert!(
        first.requests().iter().all(|c| c.path.starts_with("/one/")),
        "nothing more at the old base URL: {:?}",
        first.requests().iter().map(|c| &c.path).collect::<Vec<_>>()
    );

    // The delivery log: both deliveries of Bob's task, each with its attempt, token masked.
    let wait = std::time::Duration::from_secs(10);
    let log = eventually("two delivered badges", wait, async || {
        let log = op
            .get(&format!("/console/integration/deliveries?task={task}"))
            .await;
        if log.body.matches("badge d-delivered").count() == 2 {
            Ok(log)
        } else {
            Err(log.body)
        }
    })
    .await;
    assert!(log.body.contains("task.created") && log.body.contains("task.finished"));
    assert_eq!(
        log.body.matches("badge d-delivered").count(),
        2,
        "{}",
        log.body
    );
    let detail_links: Vec<String> = links(&log.body)
        .into_iter()
        .filter(|l| l.starts_with("/console/integration/deliveries/dlv_"))
        .collect();
    assert_eq!(detail_links.len(), 2);
    for l in &detail_links {
        let d = op.get(l).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.body.matches("<article class=\"attempt\"").count(), 1);
        assert!(d.body.contains("Bearer ***"));
        assert!(!d.body.contains("console-token-123456"));
    }
    // The connector filter: this connector's deliveries; an unknown one, none.
    let mine = op
        .get(&format!("/console/integration/deliveries?connector={con}"))
        .await;
    assert!(mine.body.matches("badge d-delivered").count() >= 2);
    let none = op
        .get("/console/integration/deliveries?connector=con_unknown")
        .await;
    assert!(!none.body.contains("badge d-delivered"));

    // Endpoint health: the breaker closed, nothing pending; the chart has delivered bars.
    let health = op.get("/console/integration/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(health.body.contains("badge b-closed"), "{}", health.body);
    assert!(
        health.body.contains(r#"<rect class="ok""#),
        "{}",
        health.body
    );
    assert!(!health.body.contains("console-token-123456"));
    // Inline SVG is parsed as HTML: an element left open (`<line …>`) swallows the rest of
    // the chart, so every line and path of it is closed.
    for tag in ["line", "path"] {
        for (at, _) in health.body.match_indices(&format!("<{tag} ")) {
            let end = at + health.body[at..].find('>').unwrap() + 1;
            assert!(
                health.body[end..].starts_with(&format!("</{tag}>")),
                "an open <{tag}>: {}",
                &health.body[at..end]
            );
        }
    }

    // Bulk redelivery of this connector's delivered deliveries: a job whose page reaches 100 %.
    let r = submit(
        &mut op,
        "/console/integration/deliveries",
        "/console/integration/deliveries/redeliver",
        &[("status", "delivered"), ("connector", &con)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let job_page = r.location().unwrap().to_owned();
    assert!(
        job_page.starts_with("/console/integration/jobs/job_"),
        "{job_page}"
    );
    let wait = std::time::Duration::from_secs(20);
    let job = eventually("the job at 100 %", wait, async || {
        let job = op.get(&job_page).await;
        if job.body.contains("100 %") {
            return Ok(job);
        }
        assert!(job
            .body
            .contains(r#"<meta http-equiv="refresh" content="1">"#));
        Err(job.body)
    })
    .await;
    assert!(job.body.contains("100 %"), "{}", job.body);
    assert!(!job.body.contains("http-equiv"), "done: no more refreshing");

    // Deleting the connector is refused while the strategy uses it: the API's reason, 409.
    let r = submit(&mut op, &con_page, &format!("{con_page}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body.contains("the sync strategy sends task.created"),
        "{}",
        r.body
    );
    let (_, list) = org.send("GET", &org.path("/connectors"), None, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "still there");
    org.instances.push(id);
    org.app.stop().await;
}

mod integration_pages_drive_deliveries {
    crate::on_both_backends!(super::integration_pages_drive_deliveries);
}

/// What the API shows of everything the console's new forms could change.
async fn settings_snapshot(org: &Org) -> Vec<Value> {
    let mut out = Vec::new();
    for p in [
        "/connectors",
        "/actions",
        "/sync-strategy",
        "/users",
        "/roles",
        "/apps",
        "/api-keys",
        "/deliveries",
    ] {
        out.push(org.send("GET", &org.path(p), None, None).await.1);
    }
    out
}

/// Every form of the integration center and the directory refuses a POST without the CSRF
/// token, or with a wrong one (403), and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_and_directory_forms_need_the_csrf_token() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let mut org = Org::setup_with(&db, "acme", |c| {
            c.delivery_poll_ms = 50;
        })
        .await;
        let receiver = Receiver::start().await;
        let mut op = operator(&org, "en").await;
        let con = connector_through_pages(&org, &mut op, &receiver.url).await;
        let id = org
            .start("alice", "leave", "Alice: 5 days", json!({"days": "5"}))
            .await;
        receiver
            .wait_until(10, "task.created", |got| !got.is_empty())
            .await;
        let (_, dl) = org.send("GET", &org.path("/deliveries"), None, None).await;
        let dlv = dl["items"][0]["id"].as_str().unwrap().to_owned();
        let (_, actions) = org.send("GET", &org.path("/actions"), None, None).await;
        let act = actions[0]["id"].as_str().unwrap().to_owned();
        let (_, keys) = org.send("GET", &org.path("/api-keys"), None, None).await;
        let key = keys[0]["id"].as_str().unwrap().to_owned();
        let (_, apps) = org.send("GET", &org.path("/apps"), None, None).await;
        let app = apps[0]["appType"].as_str().unwrap().to_owned();
        // Let the deliveries settle (a snapshot must not see one change on its own).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let before = settings_snapshot(&org).await;
        let c = format!("/console/integration/connectors/{con}");
        let a = format!("/console/integration/actions/{act}");
        let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
            (
                "/console/integration/connectors/new".into(),
                vec![("name", "x"), ("base_url", "http://127.0.0.1:9/x")],
            ),
            (
                c.clone(),
                vec![
                    ("name", "renamed"),
                    ("base_url", "http://127.0.0.1:9/moved"),
                ],
            ),
            (format!("{c}/delete"), vec![]),
            (format!("{c}/pause"), vec![]),
            (format!("{c}/resume"), vec![]),
            (
                "/console/integration/actions".into(),
                vec![("connector_id", &con), ("name", "x"), ("path", "/x")],
            ),
            (
                a.clone(),
                vec![
                    ("connector_id", &con),
                    ("name", "renamed"),
                    ("path", "/renamed"),
                ],
            ),
            (format!("{a}/delete"), vec![]),
            (format!("{a}/test"), vec![]),
            (
                "/console/integration/strategy".into(),
                vec![("enabled", "on")],
            ),
            (
                "/console/integration/strategy/rotate-secret".into(),
                vec![("grace_seconds", "0")],
            ),
            ("/console/integration/deliveries/redeliver".into(), vec![]),
            (
                format!("/console/integration/deliveries/{dlv}/redeliver"),
                vec![],
            ),
            (
                "/console/integration/backfill".into(),
                vec![("mode", "open")],
            ),
            (
                "/console/directory/users".into(),
                vec![("user_id", "mallory"), ("name", "Mallory")],
            ),
            ("/console/directory/users/alice/delete".into(), vec![]),
            (
                "/console/directory/roles".into(),
                vec![("role_id", "x"), ("name", "X"), ("members", "alice")],
            ),
            ("/console/directory/apps".into(), vec![("name", "Evil")]),
            (
                format!("/console/directory/apps/{app}/rotate"),
                vec![("grace_seconds", "0")],
            ),
            (format!("/console/directory/apps/{app}/commit"), vec![]),
            (
                "/console/directory/keys".into(),
                vec![("name", "evil"), ("scope:admin", "on")],
            ),
            (format!("/console/directory/keys/{key}/revoke"), vec![]),
        ];
        for (path, fields) in &forms {
            let r = op.post(path, fields).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} without a token");
            let mut wrong = fields.clone();
            wrong.push(("csrf", "0000-not-the-token"));
            let r = op.post(path, &wrong).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with a wrong token");
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(settings_snapshot(&org).await, before, "nothing changed");
        assert_eq!(
            receiver.requests().len(),
            1,
            "no test fire, no redelivery, no backfill"
        );
        org.instances.push(id);
        org.app.stop().await;
    })
    .await
}

/// The directory's pages: a user with a manager, a role, an application whose token is shown
/// once, an API key shown once and revoked (then refused by the API).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_pages_show_secrets_once() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let org = Org::setup(&db, "acme").await;
        let mut op = operator(&org, "zh").await;
        let d = "/console/directory";
        let r = submit(
            &mut op,
            d,
            "/console/directory/users",
            &[("user_id", "erin"), ("name", "Erin"), ("manager_id", "bob")],
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let (_, erin) = org.send("GET", &org.path("/users/erin"), None, None).await;
        assert_eq!(erin["managerId"], "bob");
        let page = op.get(d).await;
        assert!(page.body.contains("通讯录与密钥"));
        let r = submit(
            &mut op,
            d,
            "/console/directory/users",
            &[
                ("user_id", "erin"),
                ("name", "Erin"),
                ("manager_id", "erin"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("a user cannot be their own manager"));
        let r = submit(
            &mut op,
            d,
            "/console/directory/roles",
            &[
                ("role_id", "auditors"),
                ("name", "Auditors"),
                ("members", "erin, bob"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let (_, roles) = org.send("GET", &org.path("/roles"), None, None).await;
        assert!(roles
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["roleId"] == "auditors" && r["members"] == json!(["erin", "bob"])));

        let r = submit(
            &mut op,
            d,
            "/console/directory/apps",
            &[("app_type", "APP_NEW"), ("name", "New app")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let token = secret_in(&r.body);
        let token = token.strip_prefix("APP_NEW: ").unwrap().to_owned();
        assert_eq!(token.len(), 40);
        assert!(!op.get(d).await.body.contains(&token), "shown once");
        let r = submit(
            &mut op,
            d,
            "/console/directory/apps/APP_NEW/rotate",
            &[("grace_seconds", "60")],
        )
        .await;
        let rotated = secret_in(&r.body);
        assert!(rotated.starts_with("APP_NEW: ") && !rotated.contains(&token));

        let r = submit(
            &mut op,
            d,
            "/console/directory/keys",
            &[("name", "reporting"), ("scope:tasks", "on")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let key = secret_in(&r.body);
        assert!(key.starts_with("fhk_"));
        let page = op.get(d).await;
        assert!(!page.body.contains(&key), "shown once");
        let (s, _) = org
            .app
            .client
            .get(org.app.url(&org.path("/users")))
            .bearer_auth(&key)
            .send()
            .await
            .map(|r| (r.status(), ()))
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        let (_, keys) = org.send("GET", &org.path("/api-keys"), None, None).await;
        let id = keys
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "reporting")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = submit(
            &mut op,
            d,
            &format!("/console/directory/keys/{id}/revoke"),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        tokio::time::sleep(flowhook::http::auth::KEY_TTL).await;
        let s = org
            .app
            .client
            .get(org.app.url(&org.path("/users")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked");
        org.app.stop().await;
    })
    .await
}

/// The value shown once in a page (`code.secret`).
fn secret_in(body: &str) -> String {
    let at = body
        .find(r#"<code class="secret">"#)
        .expect("a secret shown")
        + r#"<code class="secret">"#.len();
    body[at..at + body[at..].find("</code>").unwrap()].to_owned()
}

/// Organisations stay apart in the integration center: another organisation's connector,
/// action, delivery and job answer 404 (also to a form with a valid token, which changes
/// nothing), and never show in the lists. Failed attempts show as failed bars in the chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_integration_is_not_found() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let mut org = Org::setup_with(&db, "acme", |c| {
            c.delivery_poll_ms = 50;
        })
        .await;
        let acme = org.tenant();
        let globex = org.add_tenant("globex").await;
        let receiver = Receiver::start().await;
        receiver.answer(|_, _| 500);
        org.become_tenant(&globex);
        let mut theirs = operator(&org, "en").await;
        let con = connector_through_pages(&org, &mut theirs, &receiver.url).await;
        let id = org
            .start("alice", "leave", "Alice: 5 days", json!({"days": "5"}))
            .await;
        receiver
            .wait_for_requests(10, "a failed attempt", |got| !got.is_empty())
            .await;
        let (_, actions) = org.send("GET", &org.path("/actions"), None, None).await;
        let act = actions[0]["id"].as_str().unwrap().to_owned();
        let (_, dl) = org.send("GET", &org.path("/deliveries"), None, None).await;
        let dlv = dl["items"][0]["id"].as_str().unwrap().to_owned();
        let (s, job) = org
            .send(
                "POST",
                &org.path("/backfills"),
                None,
                Some(json!({"mode": "open"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let job = job["id"].as_str().unwrap().to_owned();
        let health = theirs.get("/console/integration/health").await;
        assert!(
            health.body.contains(r#"<rect class="bad""#),
            "failed bars: {}",
            health.body
        );
        assert!(!health.body.contains("failed: 0"), "failures counted");

        org.become_tenant(&acme);
        let mut ours = operator(&org, "en").await;
        for path in [
            format!("/console/integration/connectors/{con}"),
            format!("/console/integration/actions/{act}"),
            format!("/console/integration/deliveries/{dlv}"),
            format!("/console/integration/jobs/{job}"),
        ] {
            assert_eq!(
                ours.get(&path).await.status,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        for path in [
            format!("/console/integration/connectors/{con}/delete"),
            format!("/console/integration/connectors/{con}/pause"),
            format!("/console/integration/actions/{act}/delete"),
            format!("/console/integration/actions/{act}/test"),
            format!("/console/integration/deliveries/{dlv}/redeliver"),
        ] {
            let r = submit(&mut ours, "/console/integration", &path, &[]).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        }
        for list in [
            "/console/integration",
            "/console/integration/deliveries",
            "/console/integration/health",
            "/console/integration/strategy",
        ] {
            let page = ours.get(list).await;
            assert_eq!(page.status, StatusCode::OK);
            for theirs in [&con, &act, &dlv] {
                assert!(
                    !page.body.contains(theirs.as_str()),
                    "{list} shows {theirs}"
                );
            }
        }
        org.become_tenant(&globex);
        let (_, list) = org.send("GET", &org.path("/connectors"), None, None).await;
        assert!(
            list[0]["pausedAt"].is_null(),
            "not paused by the other organisation"
        );
        assert_eq!(list.as_array().unwrap().len(), 1);
        org.instances.push(id);
        org.app.stop().await;
    })
    .await
}

mod without_approval_links_the_task_url_is_the_plain_page {
    crate::on_both_backends!(super::without_approval_links_the_task_url_is_the_plain_page);
}

/// `console_links = false`: the `taskUrl` a receiver gets is the task page's plain address —
/// no signature, nothing that opens the task without signing in.
async fn without_approval_links_the_task_url_is_the_plain_page(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        crate::delivery::fast(c, 60_000);
        c.console_links = false;
    })
    .await;
    let receiver = Receiver::start().await;
    crate::delivery::connect(&org, &receiver, json!({"type": "none"})).await;
    let id = org
        .start("alice", "leave", "plain", json!({"days": "1"}))
        .await;
    receiver
        .wait_until(10, "the created", |got| !got.is_empty())
        .await;
    let url = task_url(&receiver.accepted()[0].body);
    let task = org.task(&id, "bob").await;
    assert!(url.ends_with(&format!("/console/tasks/{task}")), "{url}");
    assert!(!url.contains('?'), "no signature: {url}");
    let opened = org
        .app
        .client
        .get(org.app.url(&format!("/console/tasks/{task}")))
        .send()
        .await
        .unwrap();
    assert!(
        !opened.url().path().starts_with("/console/tasks/") || opened.status() != StatusCode::OK,
        "it opens nothing without signing in: {} {}",
        opened.status(),
        opened.url()
    );
    org.app.stop().await;
}
