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
    flowhook::store::settings_changed();
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
