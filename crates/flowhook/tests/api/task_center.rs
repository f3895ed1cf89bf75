//! The engine and task center over HTTP: both demo processes through every command, the four
//! lists of every user checked after each step; bad input refused with a clear 4xx and nothing
//! changed; concurrent commands serialised.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{AppConfig, TestApp, TestDb};

pub(crate) const BOOTSTRAP: &str = "test-bootstrap-key-0123456789";

/// One organisation's credentials, to switch an [`Org`] handle between organisations.
#[derive(Clone, Debug)]
pub(crate) struct Tenant {
    pub(crate) corp: String,
    pub(crate) key: String,
    pub(crate) system_token: String,
}

/// An organisation set up through the API as a customer would: people, roles, app, processes.
pub(crate) struct Org {
    pub(crate) app: TestApp,
    pub(crate) corp: String,
    pub(crate) key: String,
    /// Every instance started so far.
    pub(crate) instances: Vec<String>,
    /// The systemToken of the organisation's app (`APP_{CORP}`).
    pub(crate) system_token: String,
}

impl Org {
    pub(crate) async fn setup(db: &TestDb, corp: &str) -> Org {
        Org::setup_with(db, corp, |_| {}).await
    }

    pub(crate) async fn setup_with(
        db: &TestDb,
        corp: &str,
        tune: impl FnOnce(&mut flowhook::config::Config),
    ) -> Org {
        let app = TestApp::spawn(Org::config(db, tune)).await;
        let mut org = Org {
            app,
            corp: corp.into(),
            key: BOOTSTRAP.into(),
            instances: vec![],
            system_token: String::new(),
        };
        org.provision(corp).await;
        org
    }

    fn config(
        db: &TestDb,
        tune: impl FnOnce(&mut flowhook::config::Config),
    ) -> flowhook::config::Config {
        let mut config = db.config();
        tune(&mut config);
        config.admin_key = Some(BOOTSTRAP.into());
        // Small enough that an oversize test body fits the socket buffer: the server answers 413
        // from Content-Length without reading, and the client must not hit a broken pipe.
        config.body_limit_bytes = 64 * 1024;
        config
    }

    /// Stops the server and starts it again on the same database, configured by `tune`: a
    /// restart (the node's memory — caches, breakers — is gone; the organisation stays).
    pub(crate) async fn restart_with(
        &mut self,
        db: &TestDb,
        tune: impl FnOnce(&mut flowhook::config::Config),
    ) {
        self.app.shut_down().await;
        self.app = TestApp::spawn(Org::config(db, tune)).await;
    }

    async fn provision(&mut self, corp: &str) {
        self.corp = corp.into();
        self.key = BOOTSTRAP.into();
        self.key = self.create_org(corp, "t", &["admin"]).await;
        for (id, name, manager, admin) in flowhook::demo::PEOPLE {
            let (s, _) = self
                .send(
                    "PUT",
                    &self.path(&format!("/users/{id}")),
                    None,
                    Some(json!({"name": name, "managerId": manager, "admin": admin})),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        for (role, members) in [("hr", ["hr1", "hr2"]), ("finance", ["fin1", "fin2"])] {
            let (s, _) = self
                .send(
                    "PUT",
                    &self.path(&format!("/roles/{role}")),
                    None,
                    Some(json!({"name": role, "members": members})),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        let app_type = format!("APP_{}", corp.to_uppercase());
        let (s, app) = self
            .send(
                "POST",
                &self.path("/apps"),
                None,
                Some(json!({"appType": app_type, "name": "approvals"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(app["systemToken"].as_str().unwrap().len(), 40);
        self.system_token = app["systemToken"].as_str().unwrap().to_owned();
        for (code, doc) in [
            ("leave", flowhook::demo::leave_document()),
            ("purchase", flowhook::demo::purchase_document()),
        ] {
            let (s, stored) = self
                .send(
                    "PUT",
                    &self.path(&format!("/processes/{code}?appType={app_type}")),
                    None,
                    Some(doc),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{stored}");
            assert_eq!(stored["version"], 1);
        }
    }

    /// Who this handle acts as: its organisation, key and app token.
    pub(crate) fn tenant(&self) -> Tenant {
        Tenant {
            corp: self.corp.clone(),
            key: self.key.clone(),
            system_token: self.system_token.clone(),
        }
    }

    /// Acts as `tenant` from now on (another organisation of the same running Flowhook).
    pub(crate) fn become_tenant(&mut self, tenant: &Tenant) {
        self.corp = tenant.corp.clone();
        self.key = tenant.key.clone();
        self.system_token = tenant.system_token.clone();
    }

    /// Provisions a second organisation `corp` on the same server, set up as this one was
    /// (people, roles, app `APP_{CORP}`, processes); this handle keeps acting as before.
    pub(crate) async fn add_tenant(&mut self, corp: &str) -> Tenant {
        let me = self.tenant();
        self.provision(corp).await;
        let other = self.tenant();
        self.become_tenant(&me);
        other
    }

    /// Creates organisation `corp` with the bootstrap key; returns a new key of it with
    /// `scopes`. This organisation keeps its own key.
    pub(crate) async fn other_org_key(&mut self, corp: &str, scopes: &[&str]) -> String {
        let own = std::mem::replace(&mut self.key, BOOTSTRAP.into());
        let key = self.create_org(corp, corp, scopes).await;
        self.key = own;
        key
    }

    /// Creates organisation `corp` (the caller's key must be the bootstrap key) and returns a
    /// new key of it named `key_name` with `scopes`.
    async fn create_org(&self, corp: &str, key_name: &str, scopes: &[&str]) -> String {
        let (s, org) = self
            .send(
                "POST",
                "/api/v1/orgs",
                None,
                Some(json!({"corpId": corp, "name": corp})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{org}");
        let (s, key) = self
            .send(
                "POST",
                &format!("/api/v1/orgs/{corp}/api-keys"),
                None,
                Some(json!({"name": key_name, "scopes": scopes})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{key}");
        key["key"].as_str().unwrap().to_owned()
    }

    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/api/v1/orgs/{}{rest}", self.corp)
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .app
            .client
            .request(method.parse().unwrap(), self.app.url(path))
            .bearer_auth(&self.key);
        if let Some(u) = user {
            req = req.header("X-Flowhook-User", u);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn start(
        &mut self,
        user: &str,
        code: &str,
        title: &str,
        form: Value,
    ) -> String {
        let (s, r) = self
            .send(
                "POST",
                &self.path("/instances"),
                Some(user),
                Some(json!({"processCode": code, "title": title, "formData": form})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let id = r["instance"]["processInstanceId"]
            .as_str()
            .unwrap()
            .to_owned();
        self.instances.push(id.clone());
        id
    }

    pub(crate) async fn instance(&self, id: &str) -> Value {
        let (s, v) = self
            .send("GET", &self.path(&format!("/instances/{id}")), None, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// The open task of `user` in instance `id`.
    pub(crate) async fn task(&self, id: &str, user: &str) -> String {
        let inst = self.instance(id).await;
        inst["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["userId"] == user && t["status"] == "open")
            .unwrap_or_else(|| panic!("{user} has no open task in {inst:#}"))["taskId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Acts and expects success; returns the command's result.
    pub(crate) async fn act(&self, id: &str, user: &str, action: &str, body: Value) -> Value {
        let task = self.task(id, user).await;
        let (s, r) = self
            .send(
                "POST",
                &self.path(&format!("/tasks/{task}/{action}")),
                Some(user),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{user} {action}: {r}");
        self.check_lists().await;
        r
    }

    pub(crate) async fn status(&self, id: &str) -> String {
        self.instance(id).await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn todo_users(&self, id: &str) -> Vec<String> {
        let inst = self.instance(id).await;
        let mut users: Vec<String> = inst["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == "open")
            .map(|t| t["userId"].as_str().unwrap().to_owned())
            .collect();
        users.sort();
        users
    }

    /// Every user's four lists (read page by page, 2 at a time) equal what the instances say,
    /// and every instance's timeline has a gap-free `seq`.
    pub(crate) async fn check_lists(&self) {
        let mut expected: BTreeMap<(String, &str), BTreeSet<String>> = BTreeMap::new();
        for id in &self.instances {
            let inst = self.instance(id).await;
            let seqs: Vec<i64> = inst["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap())
                .collect();
            assert_eq!(
                seqs,
                (1..=seqs.len() as i64).collect::<Vec<_>>(),
                "gap-free seq in {id}"
            );
            if inst["status"] == "deleted" {
                continue;
            }
            let originator = inst["originatorId"].as_str().unwrap().to_owned();
            expected
                .entry((originator, "created"))
                .or_default()
                .insert(id.clone());
            for t in inst["tasks"].as_array().unwrap() {
                let list = match t["status"].as_str().unwrap() {
                    "open" => "todo",
                    "finished" => "done",
                    _ => continue,
                };
                expected
                    .entry((t["userId"].as_str().unwrap().to_owned(), list))
                    .or_default()
                    .insert(t["taskId"].as_str().unwrap().to_owned());
            }
            for c in inst["ccs"].as_array().unwrap() {
                expected
                    .entry((c["userId"].as_str().unwrap().to_owned(), "cc"))
                    .or_default()
                    .insert(c["ccId"].as_str().unwrap().to_owned());
            }
        }
        for (user, ..) in flowhook::demo::PEOPLE {
            let (s, counts) = self
                .send(
                    "GET",
                    &self.path(&format!("/users/{user}/task-counts")),
                    None,
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK);
            for list in ["created", "todo", "done", "cc"] {
                let mut got = BTreeSet::new();
                let mut cursor: Option<String> = None;
                for _page in 0..100 {
                    let mut path = self.path(&format!("/users/{user}/tasks?list={list}&limit=2"));
                    if let Some(c) = &cursor {
                        path.push_str(&format!("&cursor={c}"));
                    }
                    let (s, page) = self.send("GET", &path, None, None).await;
                    assert_eq!(s, StatusCode::OK, "{page}");
                    for item in page["items"].as_array().unwrap() {
                        assert!(
                            got.insert(item["id"].as_str().unwrap().to_owned()),
                            "no item twice across pages"
                        );
                    }
                    match page["nextCursor"].as_str() {
                        Some(c) => cursor = Some(c.to_owned()),
                        None => break,
                    }
                }
                let want = expected
                    .get(&(user.to_string(), list))
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(got, want, "{user}'s {list} list");
                assert_eq!(
                    counts[list].as_u64(),
                    Some(want.len() as u64),
                    "{user}'s {list} count"
                );
            }
        }
    }
}

mod every_command_keeps_every_list_right {
    crate::on_both_backends!(super::every_command_keeps_every_list_right);
}

async fn every_command_keeps_every_list_right(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;

    // Leave, 5 days (alice → leader bob → HR countersign → cc HR).
    let leave = org
        .start("alice", "leave", "5 days", json!({"days": "5"}))
        .await;
    assert_eq!(org.todo_users(&leave).await, ["bob"]);
    org.check_lists().await;
    org.act(
        &leave,
        "bob",
        "forward",
        json!({"to": "dave", "remark": "you decide"}),
    )
    .await;
    assert_eq!(org.todo_users(&leave).await, ["dave"]);
    org.check_lists().await;
    org.act(
        &leave,
        "dave",
        "append",
        json!({"users": ["carol"], "position": "before"}),
    )
    .await;
    assert_eq!(org.todo_users(&leave).await, ["carol"]);
    org.act(&leave, "carol", "agree", json!({})).await;
    assert_eq!(
        org.todo_users(&leave).await,
        ["dave"],
        "back to dave after the added approver"
    );
    org.check_lists().await;
    org.act(&leave, "dave", "agree", json!({"remark": "ok"}))
        .await;
    assert_eq!(
        org.todo_users(&leave).await,
        ["hr1", "hr2"],
        "more than 3 days: HR countersign"
    );
    org.act(&leave, "hr1", "agree", json!({})).await;
    assert_eq!(
        org.todo_users(&leave).await,
        ["hr2"],
        "countersign waits for everyone"
    );
    org.check_lists().await;
    org.act(&leave, "hr2", "return", json!({"target": "leader"}))
        .await;
    assert_eq!(
        org.todo_users(&leave).await,
        ["bob"],
        "returned to the leader node"
    );
    org.check_lists().await;
    org.act(&leave, "bob", "agree", json!({})).await;
    org.act(&leave, "hr1", "disagree", json!({"remark": "busy season"}))
        .await;
    assert_eq!(org.status(&leave).await, "rejected");
    assert!(
        org.todo_users(&leave).await.is_empty(),
        "hr2's task was cancelled"
    );
    org.check_lists().await;

    // Leave, 2 days: the short branch, then HR is cc'd.
    let short = org
        .start("dave", "leave", "2 days", json!({"days": "2"}))
        .await;
    org.act(&short, "bob", "agree", json!({})).await;
    assert_eq!(org.status(&short).await, "approved");
    let ccs: Vec<Value> = org.instance(&short).await["ccs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        ccs.iter()
            .map(|c| c["userId"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["hr1", "hr2"]
    );
    org.check_lists().await;

    // Leave, returned to the originator, resubmitted, then withdrawn.
    let back = org
        .start("alice", "leave", "1 day", json!({"days": "1"}))
        .await;
    org.act(&back, "bob", "return", json!({"target": "originator"}))
        .await;
    assert_eq!(
        org.todo_users(&back).await,
        ["alice"],
        "the originator must resubmit"
    );
    org.check_lists().await;
    org.act(&back, "alice", "agree", json!({})).await;
    assert_eq!(
        org.todo_users(&back).await,
        ["bob"],
        "resubmitted: the process starts over"
    );
    let (s, _) = org
        .send(
            "POST",
            &org.path(&format!("/instances/{back}/withdraw")),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(org.status(&back).await, "withdrawn");
    org.check_lists().await;

    // Purchase: finance or-sign, then the director, who adds the admin after herself.
    let buy = org
        .start("alice", "purchase", "laptop", json!({"amount": "1299"}))
        .await;
    assert_eq!(org.todo_users(&buy).await, ["fin1", "fin2"]);
    org.act(&buy, "fin2", "agree", json!({})).await;
    assert_eq!(
        org.todo_users(&buy).await,
        ["carol"],
        "or-sign: fin1's task cancelled"
    );
    org.check_lists().await;
    org.act(
        &buy,
        "carol",
        "append",
        json!({"users": ["admin"], "position": "after"}),
    )
    .await;
    assert_eq!(org.todo_users(&buy).await, ["admin"]);
    org.act(&buy, "admin", "agree", json!({})).await;
    assert_eq!(org.status(&buy).await, "approved");
    org.check_lists().await;

    // Purchase terminated by an admin; another deleted.
    let stop = org.start("dave", "purchase", "chair", json!({})).await;
    let (s, _) = org
        .send(
            "POST",
            &org.path(&format!("/instances/{stop}/terminate")),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(org.status(&stop).await, "terminated");
    org.check_lists().await;
    let gone = org.start("alice", "purchase", "desk", json!({})).await;
    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/instances/{gone}")),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["events"].as_array().unwrap().len(), 1);
    assert_eq!(r["events"][0]["kind"], "task.deleted");
    assert_eq!(org.status(&gone).await, "deleted");
    org.check_lists().await;

    // The instance listing filters by status.
    let (s, page) = org
        .send("GET", &org.path("/instances?status=approved"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let approved: BTreeSet<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(approved, BTreeSet::from([short.as_str(), buy.as_str()]));
    org.app.stop().await;
}

mod bad_input_is_refused_and_changes_nothing {
    crate::on_both_backends!(super::bad_input_is_refused_and_changes_nothing);
}

async fn bad_input_is_refused_and_changes_nothing(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let buy = org.start("alice", "purchase", "laptop", json!({})).await;
    let fin1_task = org.task(&buy, "fin1").await;
    org.act(&buy, "fin1", "agree", json!({})).await;
    let before = org.instance(&buy).await;
    let alice_before = org
        .send("GET", &org.path("/users/alice/task-counts"), None, None)
        .await
        .1;

    // An invalid definition: every problem with its path, nothing saved.
    let bad = json!({"processCode": "broken", "name": "b", "nodes": [
        {"id": "x", "type": "teleport", "name": "X"},
        {"id": "r", "type": "route", "name": "R", "branches": [{"name": "c", "condition": "days >"}]},
        {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "role", "role": "nobody"}]}]});
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/processes/broken?appType=APP_ACME"),
            None,
            Some(bad),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["code"], "invalid_definition");
    let paths: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "$.nodes[0].type",
            "$.nodes[1].branches[0].condition",
            "$.nodes[1].branches",
            "$.nodes[2].approvers[0].role"
        ]
    );
    let (s, _) = org
        .send("GET", &org.path("/processes/broken/versions"), None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    /// (what, path, acting user, body, expected status, expected code)
    type Case<'a> = (
        &'a str,
        String,
        Option<&'a str>,
        Option<Value>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown user starts",
            org.path("/instances"),
            Some("ghost"),
            Some(json!({"processCode": "purchase", "title": "t"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "unknown process",
            org.path("/instances"),
            Some("alice"),
            Some(json!({"processCode": "nope", "title": "t"})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "finished task",
            org.path(&format!("/tasks/{fin1_task}/agree")),
            Some("fin1"),
            None,
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            "wrong acting user",
            org.path(&format!(
                "/tasks/{}/agree",
                before["tasks"][2]["taskId"].as_str().unwrap()
            )),
            Some("bob"),
            None,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "no acting user",
            org.path(&format!("/instances/{buy}/withdraw")),
            None,
            None,
            StatusCode::BAD_REQUEST,
            "missing_user",
        ),
        (
            "withdraw by another",
            org.path(&format!("/instances/{buy}/withdraw")),
            Some("bob"),
            None,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "delete by a non-admin",
            org.path(&format!("/instances/{buy}")),
            Some("alice"),
            None,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "forward to nobody",
            org.path(&format!(
                "/tasks/{}/forward",
                before["tasks"][2]["taskId"].as_str().unwrap()
            )),
            Some("carol"),
            Some(json!({"to": "ghost"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "string form values only",
            org.path("/instances"),
            Some("alice"),
            Some(json!({"processCode": "purchase", "title": "t", "formData": {"n": 3}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (name, path, user, body, status, code) in cases {
        let method = if name.starts_with("delete") {
            "DELETE"
        } else {
            "POST"
        };
        let (s, r) = org.send(method, &path, user, body).await;
        assert_eq!(
            (name, s, r["code"].as_str()),
            (name, status, Some(code)),
            "{r}"
        );
        assert!(!r["message"].as_str().unwrap().is_empty());
    }

    // Malformed JSON and an oversize body.
    let raw = |body: Vec<u8>| {
        org.app
            .client
            .post(org.app.url(&org.path("/instances")))
            .bearer_auth(&org.key)
            .header("X-Flowhook-User", "alice")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw(b"{\"processCode\": ".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "malformed_json");
    let r = raw(vec![b' '; 100 * 1024]).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "payload_too_large"
    );

    // Authentication and tenancy: no key, a key without the scope, another organisation.
    let r = org
        .app
        .client
        .get(org.app.url(&org.path("/users")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, tasks_key) = org
        .send(
            "POST",
            &org.path("/api-keys"),
            None,
            Some(json!({"name": "t", "scopes": ["tasks"]})),
        )
        .await;
    let r = org
        .app
        .client
        .put(org.app.url(&org.path("/roles/x")))
        .bearer_auth(tasks_key["key"].as_str().unwrap())
        .json(&json!({"name": "x", "members": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let acme_key = org.key.clone();
    org.key = org.other_org_key("globex", &["admin"]).await;
    let (s, _) = org
        .send("GET", &org.path(&format!("/instances/{buy}")), None, None)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another organisation's instance does not exist for globex"
    );
    let (s, _) = org
        .send(
            "GET",
            &format!("/api/v1/orgs/globex/instances/{buy}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = org
        .send(
            "POST",
            &format!("/api/v1/orgs/globex/instances/{buy}/terminate"),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    org.key = acme_key;

    // Nothing changed.
    let after = org.instance(&buy).await;
    assert_eq!(after, before);
    assert_eq!(
        org.send("GET", &org.path("/users/alice/task-counts"), None, None)
            .await
            .1,
        alice_before
    );
    org.check_lists().await;
    org.app.stop().await;
}

mod system_token_rotation_keeps_the_old_token_for_its_grace {
    crate::on_both_backends!(super::system_token_rotation_keeps_the_old_token_for_its_grace);
}

async fn system_token_rotation_keeps_the_old_token_for_its_grace(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let (s, created) = org
        .send(
            "POST",
            &org.path("/apps"),
            None,
            Some(json!({"name": "second"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let app_type = created["appType"].as_str().unwrap().to_owned();
    let old = created["systemToken"].as_str().unwrap().to_owned();
    let (_, listed) = org.send("GET", &org.path("/apps"), None, None).await;
    let shown = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["appType"] == app_type.as_str())
        .unwrap();
    assert!(
        !shown["systemToken"].as_str().unwrap().contains(&old[4..]),
        "listed tokens are masked"
    );

    let (s, rotated) = org
        .send(
            "POST",
            &org.path(&format!("/apps/{app_type}/rotate-token")),
            None,
            Some(json!({"graceSeconds": 60})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new = rotated["systemToken"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["rotationPending"], true);
    let now = flowhook::support::now_ms();
    assert_eq!(
        org.app.store.app_tokens(&app_type, now).await.unwrap(),
        [old.clone(), new.clone()],
        "the old token signs until the rotation is committed"
    );
    assert_eq!(
        org.app
            .store
            .app_tokens(&app_type, now + 61_000)
            .await
            .unwrap(),
        std::slice::from_ref(&new),
        "grace over: the new token signs, uncommitted"
    );
    let commit = format!("/apps/{app_type}/rotate-token/commit");
    let (s, committed) = org.send("POST", &org.path(&commit), None, None).await;
    assert_eq!(s, StatusCode::OK, "{committed}");
    assert_eq!(committed["rotationPending"], false);
    assert!(
        !committed.to_string().contains(&new[4..]),
        "the commit shows the token masked"
    );
    let now = flowhook::support::now_ms();
    assert_eq!(
        org.app.store.app_tokens(&app_type, now).await.unwrap(),
        [new.clone(), old.clone()],
        "committed: the new token signs, the old one is still honoured"
    );
    let (s, again) = org.send("POST", &org.path(&commit), None, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["code"], "no_rotation");
    let (s, _) = org
        .send(
            "POST",
            &org.path("/apps/APP_NONE/rotate-token/commit"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = org
        .send(
            "POST",
            &org.path("/apps/APP_NONE/rotate-token"),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    org.app.stop().await;
}

mod concurrent_or_sign_agrees_one_wins {
    crate::on_both_backends!(super::concurrent_or_sign_agrees_one_wins);
}

/// Both finance approvers agree at the same moment on an or-sign node: exactly one wins, the
/// other is told 409, and the instance moved on exactly once.
async fn concurrent_or_sign_agrees_one_wins(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    for round in 0..5 {
        let buy = org
            .start("alice", "purchase", &format!("round {round}"), json!({}))
            .await;
        let t1 = org.task(&buy, "fin1").await;
        let t2 = org.task(&buy, "fin2").await;
        let p1 = org.path(&format!("/tasks/{t1}/agree"));
        let p2 = org.path(&format!("/tasks/{t2}/agree"));
        let (a, b) = tokio::join!(
            org.send("POST", &p1, Some("fin1"), None),
            org.send("POST", &p2, Some("fin2"), None)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{a:?} {b:?}"
        );
        let inst = org.instance(&buy).await;
        let finished = inst["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["nodeId"] == "finance" && t["status"] == "finished")
            .count();
        assert_eq!(finished, 1);
        assert_eq!(org.todo_users(&buy).await, ["carol"]);
    }
    org.check_lists().await;
    org.app.stop().await;
}

mod a_revoked_api_key_is_refused_at_once {
    crate::on_both_backends!(super::a_revoked_api_key_is_refused_at_once);
}

/// Keys are listed without their secret and can be revoked; the node that revokes a key refuses
/// it from the very next request, although known keys are cached.
async fn a_revoked_api_key_is_refused_at_once(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let (s, created) = org
        .send(
            "POST",
            &org.path("/api-keys"),
            None,
            Some(json!({"name": "inbox sync", "scopes": ["tasks"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    async fn with_key(org: &Org, key: &str) -> StatusCode {
        org.app
            .client
            .get(org.app.url(&org.path("/users/alice/task-counts")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
    }
    // Twice: the second answer comes from the cache of known keys.
    for _ in 0..2 {
        assert_eq!(with_key(&org, &key).await, StatusCode::OK);
    }

    let (s, list) = org.send("GET", &org.path("/api-keys"), None, None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("the new key is listed");
    assert_eq!(listed["name"], "inbox sync");
    assert_eq!(listed["scopes"], json!(["tasks"]));
    assert!(
        !list.to_string().contains(&key) && !list.to_string().contains("keyHash"),
        "neither the key nor its hash is listed: {list}"
    );
    // Listing and revoking need the admin scope.
    let r = org
        .app
        .client
        .get(org.app.url(&org.path("/api-keys")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Another organisation cannot revoke it.
    let acme_key = org.key.clone();
    org.key = org.other_org_key("globex", &["admin"]).await;
    let (s, _) = org
        .send("DELETE", &org.path(&format!("/api-keys/{id}")), None, None)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "acme's key is not globex's to revoke"
    );
    let (s, _) = org
        .send(
            "DELETE",
            &format!("/api/v1/orgs/globex/api-keys/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(with_key(&org, &key).await, StatusCode::OK);
    org.key = acme_key;

    let (s, body) = org
        .send("DELETE", &org.path(&format!("/api-keys/{id}")), None, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        with_key(&org, &key).await,
        StatusCode::UNAUTHORIZED,
        "refused at once, cached or not"
    );
    let (s, _) = org
        .send("DELETE", &org.path(&format!("/api-keys/{id}")), None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = org.send("GET", &org.path("/api-keys"), None, None).await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["id"] != id.as_str()));
    org.app.stop().await;
}
