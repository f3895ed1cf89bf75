//! Every write endpoint's JSON, mutated: each field of a valid body replaced by hostile values
//! (NUL, control characters, very long strings, wrong types, huge numbers, deep nesting), each
//! top-level field removed, an unknown one added. On both backends: never a 5xx, and every
//! refusal is a 4xx with the error shape; a 400 or 422 names the field it refuses.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestDb;
use crate::task_center::{Org, BOOTSTRAP};

/// What replaces a field.
fn hostile() -> Vec<Value> {
    let deep = (0..300).fold(json!(1), |v, _| json!([v]));
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(1e300),
        json!(18_446_744_073_709_551_615_u64),
        json!(""),
        json!("a\u{0}b"),
        json!("x\r\nX-Injected: 1\u{1b}[2J"),
        json!("u".repeat(5000)),
        json!("😀\u{202e}名前"),
        json!([]),
        json!({}),
        json!(["a\u{0}"]),
        deep,
    ]
}

/// Every path to a value in `v`, up to `depth` levels (objects by key, arrays by index 0).
fn paths(v: &Value, depth: usize, at: Vec<Step>, out: &mut Vec<Vec<Step>>) {
    if depth == 0 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let mut p = at.clone();
                p.push(Step::Key(k.clone()));
                out.push(p.clone());
                paths(child, depth - 1, p, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let mut p = at.clone();
            p.push(Step::Index(0));
            out.push(p.clone());
            paths(&a[0], depth - 1, p, out);
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn at_mut<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// The keys along `path`: a refusal names one of them.
fn keys(path: &[Step]) -> Vec<String> {
    path.iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.clone()),
            Step::Index(_) => None,
        })
        .collect()
}

mod every_write_endpoint_refuses_bad_json_with_a_4xx_naming_the_field {
    crate::on_both_backends!(
        super::every_write_endpoint_refuses_bad_json_with_a_4xx_naming_the_field
    );
}

async fn every_write_endpoint_refuses_bad_json_with_a_4xx_naming_the_field(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let buy = org
        .start("alice", "purchase", "laptop", json!({"amount": "12"}))
        .await;
    let fin1 = org.task(&buy, "fin1").await;
    let (s, con) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(json!({"name": "c", "baseUrl": "http://127.0.0.1:9/hook"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let con = con["id"].as_str().unwrap().to_owned();
    let (s, action) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con, "name": "a", "path": "/created"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{action}");
    let action = action["id"].as_str().unwrap().to_owned();
    let connector = json!({"name": "c2", "baseUrl": "http://127.0.0.1:9/hook", "timeoutMs": 5000,
        "maxConcurrency": 4, "defaultHeaders": {"X-Tenant": "acme"},
        "auth": {"type": "apiKey", "in": "header", "name": "X-Key", "value": "k-123"}});
    let ingest = json!({"type": "task.created", "processInstanceId": "ext-1", "eventId": "ev-1",
        "payload": {"appType": "APP_ACME", "corpId": "acme", "taskId": "ext-1-t1", "title": "t",
                    "actionerId": "bob", "processCode": "ext", "dataMap": {"k": "v"}}});
    // (method, path, acting user, a valid body)
    let cases: Vec<(&str, String, Option<&str>, Value)> = vec![
        (
            "POST",
            "/api/v1/orgs".into(),
            None,
            json!({"corpId": "fuzzed", "name": "n"}),
        ),
        (
            "POST",
            org.path("/api-keys"),
            None,
            json!({"name": "k", "scopes": ["tasks"]}),
        ),
        (
            "POST",
            org.path("/apps"),
            None,
            json!({"appType": "APP_F", "name": "n"}),
        ),
        (
            "POST",
            org.path("/apps/APP_ACME/rotate-token"),
            None,
            json!({"graceSeconds": 60}),
        ),
        (
            "PUT",
            org.path("/users/zed"),
            None,
            json!({"name": "Zed", "avatar": "http://a/b.png", "managerId": "bob", "admin": false}),
        ),
        (
            "PUT",
            org.path("/roles/ops"),
            None,
            json!({"name": "ops", "members": ["alice"]}),
        ),
        (
            "PUT",
            org.path("/processes/leave?appType=APP_ACME"),
            None,
            flowhook::demo::leave_document(),
        ),
        (
            "POST",
            org.path("/processes/validate"),
            None,
            flowhook::demo::purchase_document(),
        ),
        (
            "POST",
            org.path("/instances"),
            Some("alice"),
            json!({"processCode": "leave", "title": "t", "formData": {"days": "1"}}),
        ),
        (
            "POST",
            org.path(&format!("/tasks/{fin1}/agree")),
            Some("fin1"),
            json!({"remark": "ok"}),
        ),
        (
            "POST",
            org.path(&format!("/tasks/{fin1}/forward")),
            Some("fin1"),
            json!({"to": "fin2", "remark": "r"}),
        ),
        (
            "POST",
            org.path(&format!("/tasks/{fin1}/append")),
            Some("fin1"),
            json!({"users": ["hr1"], "position": "before"}),
        ),
        (
            "POST",
            org.path(&format!("/tasks/{fin1}/return")),
            Some("fin1"),
            json!({"target": "originator"}),
        ),
        ("POST", org.path("/connectors"), None, connector.clone()),
        (
            "PUT",
            org.path(&format!("/connectors/{con}")),
            None,
            connector,
        ),
        (
            "POST",
            org.path("/actions"),
            None,
            json!({"connectorId": con, "name": "a2", "path": "/x", "encoding": "form"}),
        ),
        (
            "PUT",
            org.path(&format!("/actions/{action}")),
            None,
            json!({"connectorId": con, "name": "a", "path": "/created"}),
        ),
        (
            "PUT",
            org.path("/sync-strategy"),
            None,
            json!({"enabled": true, "actions": {"created": action}, "appTypes": ["APP_ACME"],
                   "processCodes": ["leave"], "ordered": true, "standardWebhooks": false}),
        ),
        (
            "POST",
            org.path("/sync-strategy/rotate-webhook-secret"),
            None,
            json!({"graceSeconds": 60}),
        ),
        (
            "POST",
            org.path(&format!("/actions/{action}/test")),
            None,
            json!({"events": ["task.created"], "appType": "APP_ACME"}),
        ),
        (
            "POST",
            org.path("/backfills"),
            None,
            json!({"mode": "range", "from": 0, "to": 1}),
        ),
        ("POST", "/api/v1/apps/APP_ACME/events".into(), None, ingest),
    ];
    let hostile = hostile();
    let mut wrong = Vec::new();
    let mut sent = 0usize;
    let mut refused = 0usize;
    for (method, path, user, valid) in &cases {
        let mut mutations: Vec<(Value, Vec<String>)> = Vec::new();
        let mut all = Vec::new();
        paths(valid, 3, vec![], &mut all);
        for p in &all {
            for h in &hostile {
                let mut body = valid.clone();
                *at_mut(&mut body, p) = h.clone();
                mutations.push((body, keys(p)));
            }
        }
        if let Value::Object(m) = valid {
            for k in m.keys() {
                let mut body = valid.clone();
                body.as_object_mut().unwrap().remove(k);
                mutations.push((body, vec![k.clone()]));
            }
            let mut body = valid.clone();
            body["zzUnknown"] = json!(1);
            mutations.push((body, vec!["zzUnknown".into()]));
        }
        for h in &hostile {
            mutations.push((h.clone(), vec![]));
        }
        for (body, named) in mutations {
            let key = if path == "/api/v1/orgs" {
                std::mem::replace(&mut org.key, BOOTSTRAP.into())
            } else {
                org.key.clone()
            };
            let (s, r) = org.send(method, path, *user, Some(body.clone())).await;
            org.key = key;
            sent += 1;
            let short = |v: &Value| v.to_string().chars().take(160).collect::<String>();
            if s.is_server_error() {
                wrong.push(format!(
                    "{method} {path} {}: {s} {}",
                    short(&body),
                    short(&r)
                ));
                continue;
            }
            if !s.is_client_error() {
                continue;
            }
            refused += 1;
            let message = r["message"].as_str().unwrap_or_default();
            let problems = r["problems"].to_string();
            if r["code"].as_str().is_none_or(str::is_empty) || message.is_empty() {
                wrong.push(format!(
                    "{method} {path}: {s} without the error shape: {}",
                    short(&r)
                ));
            } else if (s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY)
                && !named.is_empty()
                && !named.iter().any(|k| message.contains(k.as_str()) || problems.contains(k.as_str()))
                // Nesting past the parser's limit is refused where it is, by line and column.
                && !(message.contains("recursion limit") || problems.contains("recursion limit"))
            {
                wrong.push(format!(
                    "{method} {path} {}: {s} does not name {named:?}: {}",
                    short(&body),
                    short(&r)
                ));
            }
        }
    }
    eprintln!("{sent} requests, {refused} refused");
    assert!(sent > 1000, "{sent}");
    wrong.truncate(40);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // After all that, the organisation still works.
    org.start("alice", "leave", "after", json!({"days": "1"}))
        .await;
    org.app.stop().await;
}
