//! Walls against costly or malformed input (issue 14): route conditions with bounded work,
//! manager chains without cycles, ids and texts that both backends store, refused with a 422
//! that names the field.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestDb;
use crate::task_center::Org;

/// A one-route definition whose first branch has `condition`.
fn routed(condition: &str) -> Value {
    json!({"processCode": "costly", "name": "costly", "nodes": [
        {"id": "r", "type": "route", "name": "R", "branches": [
            {"name": "maybe", "condition": condition,
             "nodes": [{"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "originator"}]}]},
            {"name": "else", "default": true}]}]})
}

mod costly_conditions_are_refused_with_their_path {
    crate::on_both_backends!(super::costly_conditions_are_refused_with_their_path);
}

async fn costly_conditions_are_refused_with_their_path(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let list = format!(
        "[{}]",
        (1..=20)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    // The attacks seen: ~300 bytes of nested `.all()` (a minute of `validate`, run as a
    // constant), nested `map()` (hundreds of MB), and copies of the largest field.
    let nested_all = format!("{list}.all(a, {list}.all(b, {list}.all(c, {list}.all(d, true))))");
    let nested_map =
        format!("{list}.map(a, {list}.map(b, {list}.map(c, {list}.map(d, [a, b, c, d])))) == []");
    let copies = vec!["note"; 60].join(" + ") + " == ''";
    let long = format!("'{}' == note", "a".repeat(2000));
    for (what, condition, says) in [
        (
            "nested all",
            nested_all.as_str(),
            "nested 4 deep; at most 2",
        ),
        (
            "nested map",
            nested_map.as_str(),
            "nested 4 deep; at most 2",
        ),
        ("copies of a field", copies.as_str(), "units of work"),
        ("too long", long.as_str(), "2010 bytes long; at most 1024"),
    ] {
        for (method, path) in [
            ("POST", org.path("/processes/validate")),
            ("PUT", org.path("/processes/costly?appType=APP_ACME")),
        ] {
            let (s, r) = org.send(method, &path, None, Some(routed(condition))).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {r}");
            assert_eq!(r["code"], "invalid_definition", "{what}: {r}");
            let problems = r["problems"].as_array().unwrap();
            assert_eq!(problems.len(), 1, "{what}: {r}");
            assert_eq!(problems[0]["path"], "$.nodes[0].branches[0].condition");
            assert!(
                problems[0]["message"].as_str().unwrap().contains(says),
                "{what}: {r}"
            );
        }
    }
    let (s, _) = org
        .send("GET", &org.path("/processes/costly/versions"), None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was saved");
    // An ordinary condition is saved, and routes.
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/processes/costly?appType=APP_ACME"),
            None,
            Some(routed("days > 3 && kind in ['sick', 'annual']")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let mut org = org;
    let id = org
        .start("alice", "costly", "t", json!({"days": "5", "kind": "sick"}))
        .await;
    assert_eq!(org.todo_users(&id).await, ["alice"]);
    org.app.stop().await;
}

mod manager_cycles_are_refused_and_old_ones_end_the_chain {
    crate::on_both_backends!(super::manager_cycles_are_refused_and_old_ones_end_the_chain);
}

async fn manager_cycles_are_refused_and_old_ones_end_the_chain(db: TestDb) {
    // The demo chain: alice → bob → carol (no manager).
    let mut org = Org::setup(&db, "acme").await;
    let put = |org: &Org, id: &str, manager: &str| {
        (
            org.path(&format!("/users/{id}")),
            json!({"name": id, "managerId": manager}),
        )
    };
    for (id, manager, cycle) in [
        ("carol", "bob", "carol → bob → carol"),
        ("carol", "alice", "carol → alice → bob → carol"),
        ("bob", "alice", "bob → alice → bob"),
    ] {
        let (path, body) = put(&org, id, manager);
        let (s, r) = org.send("PUT", &path, None, Some(body)).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{id} under {manager}: {r}"
        );
        assert_eq!(r["code"], "invalid");
        let message = r["message"].as_str().unwrap();
        assert!(
            message.contains("managerId") && message.ends_with(cycle),
            "{r}"
        );
    }
    let (s, carol) = org.send("GET", &org.path("/users/carol"), None, None).await;
    assert_eq!((s, &carol["managerId"]), (StatusCode::OK, &Value::Null));
    // A manager who is no cycle is fine, even one not saved yet.
    let (path, body) = put(&org, "carol", "zoe");
    assert_eq!(
        org.send("PUT", &path, None, Some(body)).await.0,
        StatusCode::OK
    );

    // Leader levels: at most 20.
    let leader = |level: u64| {
        json!({"processCode": "chain", "name": "chain", "nodes": [
            {"id": "l", "type": "approval", "name": "L", "whenEmpty": "admin",
             "approvers": [{"type": "leader", "level": level}]}]})
    };
    for level in [21, 100_000_000, 4_294_967_295] {
        let (s, r) = org
            .send(
                "POST",
                &org.path("/processes/validate"),
                None,
                Some(leader(level)),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(
            r["problems"][0]["path"], "$.nodes[0].approvers[0].level",
            "{r}"
        );
    }

    // A cycle stored before they were refused (written behind the API's back): the chain ends
    // where it comes back, so the leader 20 levels up is nobody and the admin gets the task.
    let cycle =
        "UPDATE users SET manager_id = 'alice' WHERE corp_id = 'acme' AND user_id = 'carol'";
    let bump =
        "UPDATE organisations SET directory_version = directory_version + 1 WHERE corp_id = 'acme'";
    match &org.app.store {
        flowhook::store::Store::Sqlite(pool) => {
            sqlx::query(cycle).execute(pool).await.unwrap();
            sqlx::query(bump).execute(pool).await.unwrap();
        }
        flowhook::store::Store::Postgres(pool) => {
            sqlx::query(cycle).execute(pool).await.unwrap();
            sqlx::query(bump).execute(pool).await.unwrap();
        }
    }
    flowhook::support::settings_changed();
    for (level, approver) in [(2, "carol"), (3, "admin"), (20, "admin")] {
        let (s, r) = org
            .send(
                "PUT",
                &org.path("/processes/chain?appType=APP_ACME"),
                None,
                Some(leader(level)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let id = org.start("alice", "chain", "t", json!({})).await;
        assert_eq!(org.todo_users(&id).await, [approver], "level {level}");
    }
    // Saving someone under the old cycle names it.
    let (path, body) = put(&org, "dave", "bob");
    let (s, r) = org.send("PUT", &path, None, Some(body)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("has a cycle: bob → carol → alice → bob"),
        "{r}"
    );
    org.app.stop().await;
}

mod what_postgres_cannot_store_is_refused_on_both_naming_the_field {
    crate::on_both_backends!(super::what_postgres_cannot_store_is_refused_on_both_naming_the_field);
}

/// PostgreSQL answered 500 where SQLite stored: a NUL in 16 string fields, a 3,000-character
/// user id (`index row size … exceeds btree maximum`), 9 KB instance ids; an ingest `eventId`
/// with CR/LF/NUL/ESC poisoned its lane. Now both answer 422 naming the field.
async fn what_postgres_cannot_store_is_refused_on_both_naming_the_field(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let buy = org.start("alice", "purchase", "laptop", json!({})).await;
    let fin1 = org.task(&buy, "fin1").await;
    let (s, connector) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(json!({"name": "c", "baseUrl": "http://127.0.0.1:9"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{connector}");
    let connector = connector["id"].as_str().unwrap().to_owned();
    let users_before = org.send("GET", &org.path("/users"), None, None).await.1;
    let nul = "a\u{0}b";
    let long_id = "u".repeat(3000);
    let finished = |instance: &str, event_id: &str| {
        json!({"type": "task.finished", "processInstanceId": instance, "eventId": event_id,
               "payload": {"appType": "APP_ACME", "corpId": "acme", "taskId": "t1",
                           "actualWorkId": "alice", "formInstId": "f1"}})
    };
    // (method, path, acting user, body, the field the message names)
    let cases: Vec<(&str, String, Option<&str>, Value, &str)> = vec![
        (
            "POST",
            "/api/v1/orgs".into(),
            None,
            json!({"corpId": nul, "name": "n"}),
            "`corpId`",
        ),
        (
            "POST",
            "/api/v1/orgs".into(),
            None,
            json!({"corpId": "x", "name": nul}),
            "`name`",
        ),
        (
            "POST",
            "/api/v1/orgs".into(),
            None,
            json!({"corpId": long_id, "name": "n"}),
            "`corpId` is 3000 characters long",
        ),
        (
            "POST",
            org.path("/api-keys"),
            None,
            json!({"name": nul, "scopes": ["admin"]}),
            "`name`",
        ),
        (
            "POST",
            org.path("/apps"),
            None,
            json!({"appType": nul, "name": "n"}),
            "`appType`",
        ),
        (
            "POST",
            org.path("/apps"),
            None,
            json!({"name": nul}),
            "`name`",
        ),
        (
            "PUT",
            org.path(&format!("/users/{long_id}")),
            None,
            json!({"name": "n"}),
            "`path parameter userId` is 3000 characters long",
        ),
        (
            "PUT",
            org.path("/users/a%00b"),
            None,
            json!({"name": "n"}),
            "`path parameter userId` contains U+0000",
        ),
        (
            "PUT",
            org.path("/users/zed"),
            None,
            json!({"name": nul}),
            "`name`",
        ),
        (
            "PUT",
            org.path("/users/zed"),
            None,
            json!({"name": "z", "avatar": nul}),
            "`avatar`",
        ),
        (
            "PUT",
            org.path("/users/zed"),
            None,
            json!({"name": "z", "managerId": nul}),
            "`managerId`",
        ),
        (
            "PUT",
            org.path("/users/zed"),
            None,
            json!({"name": "z", "managerId": long_id}),
            "`managerId` is 3000 characters long",
        ),
        (
            "PUT",
            org.path("/roles/r"),
            None,
            json!({"name": nul, "members": []}),
            "`name`",
        ),
        (
            "PUT",
            org.path("/roles/r"),
            None,
            json!({"name": "r", "members": [nul]}),
            "`members[0]`",
        ),
        (
            "POST",
            org.path("/instances"),
            Some("alice"),
            json!({"processCode": "purchase", "title": nul}),
            "`title`",
        ),
        (
            "POST",
            org.path("/instances"),
            Some("alice"),
            json!({"processCode": "purchase", "title": "t", "formData": {"item": nul}}),
            "`formData.item`",
        ),
        (
            "POST",
            org.path("/instances"),
            Some("alice"),
            json!({"processCode": "purchase", "title": "t", "formData": {"it\nem": "x"}}),
            "`formData.it\\nem` the name contains the control character U+000A",
        ),
        (
            "POST",
            org.path("/instances"),
            Some("alice"),
            json!({"processCode": nul, "title": "t"}),
            "`processCode`",
        ),
        (
            "POST",
            org.path(&format!("/tasks/{fin1}/agree")),
            Some("fin1"),
            json!({"remark": nul}),
            "`remark`",
        ),
        (
            "POST",
            org.path(&format!("/tasks/{fin1}/agree")),
            Some("fin1"),
            json!({"remark": "ok\u{1b}[2J"}),
            "`remark` contains the control character U+001B",
        ),
        (
            "POST",
            org.path(&format!("/tasks/{fin1}/forward")),
            Some("fin1"),
            json!({"to": long_id}),
            "`to`",
        ),
        (
            "POST",
            org.path("/connectors"),
            None,
            json!({"name": nul, "baseUrl": "http://127.0.0.1:9"}),
            "`name`",
        ),
        (
            "POST",
            org.path("/connectors"),
            None,
            json!({"name": "c", "baseUrl": "http://127.0.0.1:9/\u{0}"}),
            "`baseUrl`",
        ),
        (
            "POST",
            org.path("/connectors"),
            None,
            json!({"name": "c", "baseUrl": "http://127.0.0.1:9",
                   "auth": {"type": "bearer", "token": "t\r\nX-Evil: 1"}}),
            "`auth.token`",
        ),
        (
            "POST",
            org.path("/actions"),
            None,
            json!({"connectorId": connector, "name": nul, "path": "/x"}),
            "`name`",
        ),
        (
            "POST",
            org.path("/actions"),
            None,
            json!({"connectorId": connector, "name": "a", "path": "/x\u{0}"}),
            "`path`",
        ),
        (
            "PUT",
            org.path("/sync-strategy"),
            None,
            json!({"appTypes": [nul]}),
            "`appTypes[0]`",
        ),
        (
            "PUT",
            org.path("/sync-strategy"),
            None,
            json!({"actions": {"created": long_id}}),
            "`actions.created`",
        ),
        (
            "PUT",
            org.path(&format!("/processes/purchase?appType={}", "A%00")),
            None,
            flowhook::demo::purchase_document(),
            "`query parameter appType`",
        ),
        (
            "POST",
            "/api/v1/apps/APP_ACME/events".into(),
            None,
            finished(&"i".repeat(9 * 1024), "e1"),
            "`processInstanceId` is 9216 characters long",
        ),
        (
            "POST",
            "/api/v1/apps/APP_ACME/events".into(),
            None,
            finished("i-1", "e\r\n1"),
            "`eventId` contains U+000D",
        ),
        (
            "POST",
            "/api/v1/apps/APP_ACME/events".into(),
            None,
            finished("i-1", nul),
            "`eventId`",
        ),
        (
            "POST",
            "/api/v1/apps/APP_ACME/events".into(),
            None,
            finished("i-1", "e\u{1b}1"),
            "`eventId` contains U+001B",
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, user, body, field) in cases {
        // Organisations are created with the bootstrap key.
        let key = if path == "/api/v1/orgs" {
            std::mem::replace(&mut org.key, crate::task_center::BOOTSTRAP.into())
        } else {
            org.key.clone()
        };
        let (s, r) = org.send(method, &path, user, Some(body)).await;
        org.key = key;
        let named = r["message"].as_str().is_some_and(|m| m.starts_with(field));
        if (s, r["code"].as_str(), named)
            != (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid"), true)
        {
            let path: String = path.chars().take(80).collect();
            wrong.push(format!("{method} {path} ({field}): {s} {r}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A NUL in a definition: its path among the problems.
    let mut doc = flowhook::demo::purchase_document();
    doc["nodes"][0]["name"] = json!(nul);
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/processes/purchase?appType=APP_ACME"),
            None,
            Some(doc),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["problems"][0]["path"], "$.nodes[0].name", "{r}");
    // Nothing was stored.
    assert_eq!(
        org.send("GET", &org.path("/users"), None, None).await.1,
        users_before
    );
    let (_, deliveries) = org
        .send("GET", &org.path("/deliveries?status=pending"), None, None)
        .await;
    assert!(
        deliveries["items"].as_array().unwrap().is_empty(),
        "{deliveries}"
    );
    // Ordinary ids of Yida and of other engines pass.
    let (s, r) = org
        .send(
            "POST",
            "/api/v1/apps/APP_ACME/events",
            None,
            Some(finished(
                "65ab8549-aa06-486a-b5b7-8abe845303a5",
                "evt:flowable@42",
            )),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    org.app.stop().await;
}
