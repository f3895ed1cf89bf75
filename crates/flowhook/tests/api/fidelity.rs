//! Fidelity to Yida and to what a user expects (issue 18), against a real receiver and real
//! databases: the `task` JSON carries every field of the seed's example with the example's JSON
//! type; list items name their node; commands that would give someone a second open task at a
//! node are refused; bad query parameters are named.

use flowhook_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::delivery::{all_delivered, connect, fast, kind_of, verify};
use crate::helpers::TestDb;
use crate::receiver::Receiver;
use crate::task_center::Org;

/// The seed's example `task` JSON (`seed/integration-center.en.md`), the missing comma after
/// `instValue` restored: what a receiver written against Yida's documentation parses.
const SEED_TASK: &str = r#"{ "actionerId": null, "actionerName": null, "appType": "APP_RY60OCRF33Z7534***",
  "createTime": 1693462062502, "currentActivityInstances": null,
  "dataMap": { "numberField_l4s57vma": "1", "textField_l4s57vm9": "",
               "tableField_l4s57vmb": "[{\"numberField_li9yr6gs\":\"\",\"textField_l4s57vmc\":\"\"}]" },
  "dataType": "pinst", "deep3": true, "finishTime": null,
  "formInstanceId": "65ab8549-aa06-486a-b5b7-8abe845303a5",
  "formUuid": "FORM-MT866EA1X3N9W79GDQM2HB400M413OS76A2GL51", "instValue": "***",
  "modifiedTime": 1693462062502, "modifyUserAvatar": "", "modifyUserDisplayName": "",
  "modifyUserId": "01690741902689", "openAvatar": "", "openId": "", "openNickname": "", "openSource": "",
  "originatorAvatar": "https://x/440_440.png", "originatorCorpId": "ding5d17e3add038d44535c2f4657eb6378f",
  "originatorCorpName": "", "originatorDisplayName": "张红", "originatorId": "01690741902689",
  "processApprovedResult": "", "processApprovedResultText": "",
  "processCode": "TPROC--9BC6687125N9XAJ8873I0864QY122BZ96A2GL1", "processId": 0,
  "processInstanceId": "", "processInstanceStatus": "", "processInstanceStatusText": "",
  "processName": "", "serialNo": "", "title": "**的1位访客申请", "version": 10 }"#;

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of the seed's example is present in `task` with the example's JSON type (a field
/// the example shows as `null` may carry a value: `actionerId` of a created task, `finishTime`
/// of a finished instance).
fn assert_seed_types(task: &Value, what: &str) {
    let seed: Value = serde_json::from_str(SEED_TASK).unwrap();
    let mut wrong = Vec::new();
    for (key, example) in seed.as_object().unwrap() {
        match task.get(key) {
            None => wrong.push(format!("{key}: missing")),
            Some(_) if example.is_null() => {}
            Some(v) if json_type(v) != json_type(example) => wrong.push(format!(
                "{key}: {} ({v}), the seed has {}",
                json_type(v),
                json_type(example)
            )),
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{what}: {wrong:#?}\n{task:#}");
}

mod the_task_json_has_the_seed_types {
    crate::on_both_backends!(super::the_task_json_has_the_seed_types);
}

/// Issue 18 item 5: `task.created` and `task.cc` as received — and the test-fire samples — carry
/// each field of the seed's example with its type: `deep3` a boolean, `processId` a number,
/// `instValue` and the `open*` fields strings, `formUuid` a string.
async fn the_task_json_has_the_seed_types(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    let id = org
        .start("alice", "leave", "2 days", json!({"days": "2"}))
        .await;
    org.act(&id, "bob", "agree", json!({})).await;
    all_delivered(&org).await;
    let app_type = format!("APP_{}", org.corp.to_uppercase());
    let mut seen = 0;
    for c in receiver.accepted() {
        let kind = kind_of(&c);
        if !matches!(
            kind,
            flowhook_sign::event::EventKind::Created | flowhook_sign::event::EventKind::Cc
        ) {
            continue;
        }
        let v = verify(&c, &app_type, &org.system_token);
        let task = v.params.iter().find(|(k, _)| k == "task").unwrap();
        let task: Value = serde_json::from_str(&task.1).unwrap();
        assert_seed_types(&task, c.path.as_str());
        assert_eq!(task["deep3"], true);
        assert_eq!(task["processId"], 0);
        assert_eq!(
            task["formUuid"], "FORM-leave",
            "derived from the process code"
        );
        seen += 1;
    }
    assert_eq!(seen, 3, "bob's task, hr1's and hr2's cc");

    // The test fire's samples too.
    let (s, fired) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{}/test", actions["created"])),
            None,
            Some(json!({"events": ["task.created", "task.cc"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fired}");
    for f in fired.as_array().unwrap() {
        let params = f["requestParams"].as_array().unwrap();
        let task = params.iter().find(|p| p[0] == "task").unwrap()[1]
            .as_str()
            .unwrap();
        assert_seed_types(&serde_json::from_str(task).unwrap(), "test fire");
    }
    org.app.stop().await;
}

mod cc_items_name_their_node {
    crate::on_both_backends!(super::cc_items_name_their_node);
}

/// Issue 18 item 3: a cc list item carries the carbon node's name, as task items do.
async fn cc_items_name_their_node(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let id = org
        .start("alice", "leave", "2 days", json!({"days": "2"}))
        .await;
    org.act(&id, "bob", "agree", json!({})).await;
    let (s, page) = org
        .send("GET", &org.path("/users/hr1/tasks?list=cc"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["nodeId"], "cc-hr");
    assert_eq!(items[0]["nodeName"], "Inform HR", "{page}");
    org.app.stop().await;
}

mod forward_or_append_to_an_assignee_is_refused {
    crate::on_both_backends!(super::forward_or_append_to_an_assignee_is_refused);
}

/// Issue 18 item 1: at HR's countersign (hr1 and hr2 must both agree), hr1 forwarding to hr2 —
/// or appending hr2, or appending oneself — answers 422 `already_assignee`, and nothing changes:
/// hr2 still has one open task.
async fn forward_or_append_to_an_assignee_is_refused(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let id = org
        .start("alice", "leave", "5 days", json!({"days": "5"}))
        .await;
    org.act(&id, "bob", "agree", json!({})).await;
    assert_eq!(org.todo_users(&id).await, ["hr1", "hr2"]);
    let task = org.task(&id, "hr1").await;
    for (action, body) in [
        ("forward", json!({"to": "hr2"})),
        ("append", json!({"users": ["hr2"], "position": "before"})),
        ("append", json!({"users": ["hr1"], "position": "after"})),
        ("append", json!({"users": ["hr1"], "position": "before"})),
    ] {
        let (s, r) = org
            .send(
                "POST",
                &org.path(&format!("/tasks/{task}/{action}")),
                Some("hr1"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{action} {body}: {r}");
        assert_eq!(r["code"], "already_assignee", "{r}");
    }
    assert_eq!(org.todo_users(&id).await, ["hr1", "hr2"], "unchanged");
    org.act(&id, "hr1", "forward", json!({"to": "fin1"})).await;
    assert_eq!(org.todo_users(&id).await, ["fin1", "hr2"]);
    org.app.stop().await;
}

mod a_test_fire_without_a_body_sends_all_five {
    crate::on_both_backends!(super::a_test_fire_without_a_body_sends_all_five);
}

/// Issue 18 item 7: a test fire with no body — no content type (was 415), or
/// `content-type: application/json` and nothing (was 400) — sends a sample of each of the five
/// events, as the README says.
async fn a_test_fire_without_a_body_sends_all_five(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    let url = org
        .app
        .url(&org.path(&format!("/actions/{}/test", actions["created"])));
    for content_type in [None, Some("application/json")] {
        let mut req = org.app.client.post(&url).bearer_auth(&org.key);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{content_type:?}");
        let fired: Value = resp.json().await.unwrap();
        let kinds: Vec<&str> = fired
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["eventType"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "task.created",
                "task.finished",
                "task.cancelled",
                "task.deleted",
                "task.cc"
            ],
            "{content_type:?}"
        );
    }
    org.app.stop().await;
}

mod delivery_errors_say_what_happened {
    crate::on_both_backends!(super::delivery_errors_say_what_happened);
}

/// Issue 18 item 13: a refused connection shows as `connection refused` in the delivery's
/// `lastError` (and its attempt), an unknown host as `DNS: no such host …` in a test fire — not
/// the HTTP client's "error sending request for url (…)".
async fn delivery_errors_say_what_happened(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/cb", closed.local_addr().unwrap());
    drop(closed);
    let (s, con) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(json!({"name": "gone", "baseUrl": base, "timeoutMs": 2000})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let (s, a) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con["id"], "name": "created", "path": "/created"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": {"created": a["id"]}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    org.start("alice", "purchase", "laptop", json!({})).await;
    let wait = std::time::Duration::from_secs(20);
    let last = eventually("a delivery with an error", wait, async || {
        let (_, page) = org
            .send("GET", &org.path("/deliveries?limit=10"), None, None)
            .await;
        // The lane's head (seq 1) is the one tried; the rest wait behind it.
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["lastError"].is_string())
            .cloned()
            .ok_or(page)
    })
    .await;
    assert_eq!(last["lastError"], "connection refused", "{last}");

    // An unknown host, in a test fire.
    let (s, con) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(
                json!({"name": "nohost", "baseUrl": "http://nohost.invalid/cb", "timeoutMs": 5000}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let (s, a) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con["id"], "name": "c2", "path": "/created"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, fired) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{}/test", a["id"].as_str().unwrap())),
            None,
            Some(json!({"events": ["task.created"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fired}");
    assert_eq!(fired[0]["errorKind"], "dns", "{fired}");
    let error = fired[0]["error"].as_str().unwrap();
    assert!(error.starts_with("DNS: "), "{error}");
    assert!(!error.contains("error sending request"), "{error}");
    org.app.stop().await;
}

mod bad_query_parameters_are_named {
    crate::on_both_backends!(super::bad_query_parameters_are_named);
}

/// Issue 18 item 16: `?list=bogus`, `deliveries?status=bogus` (was 200 and an empty page) and
/// a process PUT without `appType` answer 400 naming the parameter and what it accepts.
async fn bad_query_parameters_are_named(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let cases: [(&str, String, Option<Value>, &[&str]); 6] = [
        (
            "GET",
            org.path("/users/alice/tasks?list=bogus"),
            None,
            &["`list`", "`created`, `todo`, `done`, `cc`"],
        ),
        (
            "GET",
            org.path("/users/alice/tasks"),
            None,
            &["`list`", "required"],
        ),
        (
            "GET",
            org.path("/deliveries?status=bogus"),
            None,
            &["`status`", "`pending`, `delivered`, `dead`, `cancelled`"],
        ),
        (
            "GET",
            org.path("/deliveries?eventType=created"),
            None,
            &["`eventType`", "`task.created`"],
        ),
        (
            "GET",
            org.path("/instances?status=open"),
            None,
            &["`status`", "`running`"],
        ),
        (
            "PUT",
            org.path("/processes/leave"),
            Some(flowhook::demo::leave_document()),
            &["`appType`", "required"],
        ),
    ];
    for (method, path, body, words) in cases {
        let (s, r) = org.send(method, &path, None, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {r}");
        assert_eq!(r["code"], "invalid_query", "{r}");
        let message = r["message"].as_str().unwrap();
        for w in words {
            assert!(
                message.contains(w),
                "{method} {path}: `{w}` not in {message}"
            );
        }
    }
    let (s, r) = org
        .send("GET", &org.path("/deliveries?status=dead"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "a good value still works: {r}");
    org.app.stop().await;
}

mod list_items_name_the_task_id_as_the_instance_view_does {
    crate::on_both_backends!(super::list_items_name_the_task_id_as_the_instance_view_does);
}

/// Issue 18 item 14: a `todo`/`done` item carries `taskId` — the name the instance view and the
/// `task` JSON use — beside `id` (kept for existing clients); a cc item carries `ccId`, and the
/// instance view's cc records their node's name.
async fn list_items_name_the_task_id_as_the_instance_view_does(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let id = org
        .start("alice", "leave", "2 days", json!({"days": "2"}))
        .await;
    let task = org.task(&id, "bob").await;
    let list = |user: &'static str, list: &'static str| {
        let org = &org;
        async move {
            let (s, page) = org
                .send(
                    "GET",
                    &org.path(&format!("/users/{user}/tasks?list={list}")),
                    None,
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{page}");
            page["items"][0].clone()
        }
    };
    let todo = list("bob", "todo").await;
    assert_eq!(todo["taskId"], task.as_str(), "{todo}");
    assert_eq!(todo["id"], task.as_str(), "kept: {todo}");
    org.act(&id, "bob", "agree", json!({})).await;
    let done = list("bob", "done").await;
    assert_eq!(done["taskId"], task.as_str(), "{done}");
    let cc = list("hr1", "cc").await;
    let inst = org.instance(&id).await;
    let view_cc = inst["ccs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["userId"] == "hr1")
        .unwrap()
        .clone();
    assert_eq!(cc["ccId"], view_cc["ccId"], "{cc} {view_cc}");
    assert_eq!(view_cc["nodeName"], "Inform HR");
    let view_task = inst["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["userId"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(view_task["taskId"], done["taskId"]);
    org.app.stop().await;
}

mod a_deleted_instance_is_a_tombstone_in_no_list {
    crate::on_both_backends!(super::a_deleted_instance_is_a_tombstone_in_no_list);
}

/// Issue 18 item 4: a deleted instance reads as a tombstone — `status: "deleted"`, no form
/// data, no tasks, no ccs — and no list shows it or its tasks (bob's `done` item and hr1's cc
/// were still listed), nor counts them.
async fn a_deleted_instance_is_a_tombstone_in_no_list(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let id = org
        .start(
            "alice",
            "leave",
            "2 days",
            json!({"days": "2", "reason": "private"}),
        )
        .await;
    org.act(&id, "bob", "agree", json!({})).await;
    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/instances/{id}")),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let inst = org.instance(&id).await;
    assert_eq!(inst["status"], "deleted");
    assert_eq!(inst["formData"], json!({}), "{inst}");
    assert_eq!(inst["tasks"], json!([]), "{inst}");
    assert_eq!(inst["ccs"], json!([]), "{inst}");
    assert!(!inst.to_string().contains("private"), "{inst}");
    for (user, list) in [("alice", "created"), ("bob", "done"), ("hr1", "cc")] {
        let (s, page) = org
            .send(
                "GET",
                &org.path(&format!("/users/{user}/tasks?list={list}")),
                None,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["items"], json!([]), "{user} {list}: {page}");
        let (_, counts) = org
            .send(
                "GET",
                &org.path(&format!("/users/{user}/task-counts")),
                None,
                None,
            )
            .await;
        assert_eq!(counts[list], 0, "{user} {list}: {counts}");
    }
    org.app.stop().await;
}

mod when_empty_error_is_checked_at_the_start {
    crate::on_both_backends!(super::when_empty_error_is_checked_at_the_start);
}

/// Issue 18 item 2: leader(1) → leader(2), both `whenEmpty: error`. Bob (whose manager Carol has
/// none) cannot start it: 422 `no_approver` naming `l2` — before, the start succeeded and
/// Carol's agree answered 422 for ever. Alice can; when Bob's manager is removed before he
/// agrees, `l2` goes to the admin, and the task's note says why.
async fn when_empty_error_is_checked_at_the_start(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let doc = json!({"processCode": "chain", "name": "Two leaders", "nodes": [
        {"id": "l1", "type": "approval", "name": "Leader", "whenEmpty": "error",
         "approvers": [{"type": "leader", "level": 1}]},
        {"id": "l2", "type": "approval", "name": "Leader's leader", "whenEmpty": "error",
         "approvers": [{"type": "leader", "level": 2}]}]});
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/processes/chain?appType=APP_ACME"),
            None,
            Some(doc),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (s, r) = org
        .send(
            "POST",
            &org.path("/instances"),
            Some("bob"),
            Some(json!({"processCode": "chain", "title": "bob's", "formData": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["code"], "no_approver", "{r}");
    assert!(r["message"].as_str().unwrap().contains("`l2`"), "{r}");

    let id = org.start("alice", "chain", "alice's", json!({})).await;
    assert_eq!(org.todo_users(&id).await, ["bob"]);
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/users/bob"),
            None,
            Some(json!({"name": "Bob Wang", "managerId": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    org.act(&id, "bob", "agree", json!({})).await;
    assert_eq!(org.todo_users(&id).await, ["admin"]);
    let inst = org.instance(&id).await;
    let task = inst["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["userId"] == "admin")
        .unwrap();
    assert!(task["note"].as_str().unwrap().contains("admins"), "{task}");
    org.app.stop().await;
}
