//! Editing and deleting connectors and actions, against real receivers: an edit applies from
//! the very next delivery; what the sync strategy uses cannot be deleted (409 naming the
//! events); a deletion cancels the pending deliveries with the reason in the log, and nothing
//! is sent to the deleted target again; another organisation's connectors answer 404.

use flowhook_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::delivery::{all_delivered, connect, deliveries, fast};
use crate::helpers::TestDb;
use crate::receiver::Receiver;
use crate::task_center::Org;

/// The organisation's only connector.
async fn the_connector(org: &Org) -> Value {
    let (s, list) = org.send("GET", &org.path("/connectors"), None, None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    list[0].clone()
}

/// Waits (at most 10 s) until `receiver` has accepted `n` requests.
async fn accepted(receiver: &Receiver, n: usize, what: &str) {
    receiver.wait_until(10, what, |got| got.len() >= n).await;
}

mod an_edited_base_url_takes_the_next_delivery {
    crate::on_both_backends!(super::an_edited_base_url_takes_the_next_delivery);
}

/// Moving a connector to a new base URL sends the very next delivery there — a fresh one and
/// one already retrying against the old address — with the stored credentials kept when the
/// edit sends them back as shown (masked) or leaves them out.
async fn an_edited_base_url_takes_the_next_delivery(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let old = Receiver::start().await;
    let new = Receiver::start().await;
    let token = "s3cret-bearer-token-0123456789";
    connect(&org, &old, json!({"type": "bearer", "token": token})).await;
    let connector = the_connector(&org).await;
    let id = connector["id"].as_str().unwrap().to_owned();
    assert_eq!(connector["auth"]["token"], "***", "shown masked");
    let (s, got) = org
        .send("GET", &org.path(&format!("/connectors/{id}")), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got, connector, "GET one shows what the list shows");

    // A delivery to the old address, so its target is cached.
    org.start("alice", "purchase", "laptop", json!({})).await;
    all_delivered(&org).await;
    let before = old.accepted().len();
    assert!(before >= 1);

    // Edited, the token sent back as shown: the next delivery goes to the new address, signed
    // in with the stored token.
    let (s, edited) = org
        .send(
            "PUT",
            &org.path(&format!("/connectors/{id}")),
            None,
            Some(
                json!({"name": "moved", "baseUrl": format!("{}/cb", new.url),
                        "auth": connector["auth"], "timeoutMs": 2000}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!(edited["baseUrl"], format!("{}/cb", new.url));
    assert_eq!(edited["name"], "moved");
    assert_eq!(edited["auth"]["token"], "***");
    org.start("dave", "purchase", "desk", json!({})).await;
    accepted(&new, 2, "the new instance's deliveries at the new address").await;
    assert_eq!(
        old.accepted().len(),
        before,
        "nothing more to the old address"
    );
    for c in new.accepted() {
        assert_eq!(
            c.header("authorization"),
            Some(format!("Bearer {token}").as_str()),
            "the stored token kept"
        );
    }

    // A delivery retrying against an address that is down moves with the edit; `auth` left
    // out keeps the stored credentials.
    let down = Receiver::start().await;
    down.answer(|_, _| 503);
    let (s, r) = org
        .send(
            "PUT",
            &org.path(&format!("/connectors/{id}")),
            None,
            Some(json!({"name": "down", "baseUrl": format!("{}/cb", down.url), "timeoutMs": 2000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["auth"]["token"], "***", "auth left out is kept");
    let waiting = org.start("alice", "purchase", "chair", json!({})).await;
    let wait = std::time::Duration::from_secs(10);
    eventually(
        "two requests to the address that is down",
        wait,
        async || down.requests().len() >= 2,
    )
    .await;
    assert!(
        down.requests().len() >= 2,
        "retrying against the address that is down"
    );
    let at_new = new.accepted().len();
    let (s, r) = org
        .send(
            "PUT",
            &org.path(&format!("/connectors/{id}")),
            None,
            Some(json!({"name": "back", "baseUrl": format!("{}/cb", new.url), "timeoutMs": 2000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    accepted(&new, at_new + 1, "the waiting delivery at the new address").await;
    let delivered = all_delivered(&org).await;
    assert!(delivered
        .iter()
        .any(|d| d["instanceId"] == waiting.as_str() && d["attempts"].as_i64().unwrap() >= 3));
    assert_eq!(
        new.accepted().last().unwrap().header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );

    // A new authentication type needs its secret; an invalid URL is refused; nothing changes.
    for (body, why) in [
        (
            json!({"name": "x", "baseUrl": format!("{}/cb", new.url), "auth": {"type": "basic", "username": "u", "password": ""}}),
            "new type without its secret",
        ),
        (json!({"name": "x", "baseUrl": "ftp://nope"}), "not http"),
    ] {
        let (s, r) = org
            .send(
                "PUT",
                &org.path(&format!("/connectors/{id}")),
                None,
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {r}");
    }
    assert_eq!(the_connector(&org).await["name"], "back");
    // A new secret replaces the stored one.
    let (s, r) = org
        .send(
            "PUT",
            &org.path(&format!("/connectors/{id}")),
            None,
            Some(json!({"name": "back", "baseUrl": format!("{}/cb", new.url),
                        "auth": {"type": "bearer", "token": "another-token-9876543210"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let n = new.accepted().len();
    org.start("dave", "purchase", "lamp", json!({})).await;
    accepted(&new, n + 1, "a delivery with the new token").await;
    assert_eq!(
        new.accepted().last().unwrap().header("authorization"),
        Some("Bearer another-token-9876543210")
    );
    // The old token appears nowhere in the connector as shown.
    assert!(!the_connector(&org).await.to_string().contains(token));
    org.app.stop().await;
}

mod an_edited_action_takes_the_next_delivery {
    crate::on_both_backends!(super::an_edited_action_takes_the_next_delivery);
}

/// An action's path and encoding edited apply to the next delivery; GET shows the edit.
async fn an_edited_action_takes_the_next_delivery(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    accepted(&receiver, 2, "the first deliveries").await;
    let created = &actions["created"];
    let (s, action) = org
        .send("GET", &org.path(&format!("/actions/{created}")), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{action}");
    let (s, edited) = org
        .send(
            "PUT",
            &org.path(&format!("/actions/{created}")),
            None,
            Some(
                json!({"connectorId": action["connectorId"], "name": "created v2",
                        "path": "/v2/created", "encoding": "json"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!(edited["path"], "/v2/created");
    assert_eq!(edited["encoding"], "json");
    let (_, got) = org
        .send("GET", &org.path(&format!("/actions/{created}")), None, None)
        .await;
    assert_eq!(got, edited);
    let n = receiver.accepted().len();
    org.start("dave", "purchase", "desk", json!({})).await;
    accepted(&receiver, n + 2, "the next deliveries").await;
    let moved: Vec<_> = receiver.accepted()[n..]
        .iter()
        .filter(|c| c.header("x-flowhook-event-type") == Some("task.created"))
        .cloned()
        .collect();
    assert!(!moved.is_empty());
    for c in moved {
        assert_eq!(c.path, "/cb/v2/created");
        assert_eq!(c.content_type(), Some("application/json"));
    }
    // An unknown connector is refused, and so is another method.
    for (body, status) in [
        (
            json!({"connectorId": "con_nope", "name": "x", "path": "/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"connectorId": action["connectorId"], "name": "x", "path": "/x", "method": "GET"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (s, r) = org
            .send(
                "PUT",
                &org.path(&format!("/actions/{created}")),
                None,
                Some(body),
            )
            .await;
        assert_eq!(s, status, "{r}");
    }
    org.app.stop().await;
}

mod what_the_strategy_uses_cannot_be_deleted {
    crate::on_both_backends!(super::what_the_strategy_uses_cannot_be_deleted);
}

/// Deleting an action the strategy maps an event to, or its connector, answers 409 naming the
/// events, and changes nothing; once unmapped, it goes: 404 afterwards, gone from the lists,
/// and the strategy can no longer name it.
async fn what_the_strategy_uses_cannot_be_deleted(db: TestDb) {
    let org = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    let connector = the_connector(&org).await;
    let con = connector["id"].as_str().unwrap();
    let created = &actions["created"];

    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/actions/{created}")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(r["code"], "in_use");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("task.created"), "{message}");
    assert!(!message.contains("task.finished"), "{message}");
    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/connectors/{con}")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    let message = r["message"].as_str().unwrap();
    for kind in crate::delivery::KINDS {
        assert!(message.contains(&format!("task.{kind}")), "{message}");
    }
    // Nothing changed.
    let (s, _) = org
        .send("GET", &org.path(&format!("/actions/{created}")), None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(the_connector(&org).await, connector);

    // Unmapped, the action goes.
    let mut mapped = actions.clone();
    mapped.remove("created");
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": mapped})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/actions/{created}")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["cancelledDeliveries"], 0);
    for method in ["GET", "DELETE"] {
        let (s, _) = org
            .send(
                method,
                &org.path(&format!("/actions/{created}")),
                None,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} a deleted action");
    }
    let (s, r) = org
        .send(
            "PUT",
            &org.path(&format!("/actions/{created}")),
            None,
            Some(json!({"connectorId": con, "name": "again", "path": "/again"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    let (_, list) = org.send("GET", &org.path("/actions"), None, None).await;
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": {"created": created}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r["message"].as_str().unwrap().contains("unknown action"));

    // The connector too, once nothing maps to it; with it its actions.
    let (s, r) = org
        .send("PUT", &org.path("/sync-strategy"), None, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/connectors/{con}")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, list) = org.send("GET", &org.path("/connectors"), None, None).await;
    assert_eq!(list, json!([]));
    let (_, list) = org.send("GET", &org.path("/actions"), None, None).await;
    assert_eq!(list, json!([]));
    for path in [
        format!("/connectors/{con}"),
        format!("/connectors/{con}/health"),
        format!("/actions/{}", actions["finished"]),
    ] {
        let (s, _) = org.send("GET", &org.path(&path), None, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con, "name": "x", "path": "/x"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no action on a deleted connector"
    );
    org.app.stop().await;
}

mod deleting_a_connector_cancels_its_pending_deliveries {
    crate::on_both_backends!(super::deleting_a_connector_cancels_its_pending_deliveries);
}

/// A connector deleted while its deliveries are retrying: they become `cancelled` with the
/// reason in the log, their attempts kept; nothing more is sent, not even by a request that
/// was in flight; they cannot be redelivered; the metrics and the filters know the status.
async fn deleting_a_connector_cancels_its_pending_deliveries(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let receiver = Receiver::start().await;
    receiver.answer(|_, _| 503);
    // Slow answers: a retry is likely in flight when the connector goes.
    receiver.delay(std::time::Duration::from_millis(150));
    connect(&org, &receiver, json!({"type": "none"})).await;
    let con = the_connector(&org).await["id"].as_str().unwrap().to_owned();
    org.start("alice", "purchase", "laptop", json!({})).await;
    org.start("dave", "leave", "2 days", json!({"days": "2"}))
        .await;
    let wait = std::time::Duration::from_secs(10);
    eventually("three requests", wait, async || {
        receiver.requests().len() >= 3
    })
    .await;
    let pending = deliveries(&org, "&status=pending").await;
    assert!(pending.len() >= 2, "{pending:#?}");
    assert!(pending.iter().any(|d| d["attempts"].as_i64().unwrap() >= 1));

    let (s, r) = org
        .send("PUT", &org.path("/sync-strategy"), None, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/connectors/{con}")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["cancelledDeliveries"], pending.len(), "{r}");

    // Whatever was in flight has come back; nothing more is sent.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sent = receiver.requests().len();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        receiver.requests().len(),
        sent,
        "nothing sent after the deletion"
    );

    let all = deliveries(&org, "").await;
    assert_eq!(all.len(), pending.len(), "nothing vanished: {all:#?}");
    for d in &all {
        assert_eq!(d["status"], "cancelled", "{d:#}");
        let why = d["lastError"].as_str().unwrap();
        assert!(
            why.contains("connector") && why.contains(&con) && why.contains("deleted"),
            "{why}"
        );
    }
    assert_eq!(deliveries(&org, "&status=cancelled").await.len(), all.len());
    assert!(deliveries(&org, "&status=pending").await.is_empty());
    let tried = all
        .iter()
        .find(|d| d["attempts"].as_i64().unwrap() >= 1)
        .expect("one was tried");
    let (s, detail) = org
        .send(
            "GET",
            &org.path(&format!("/deliveries/{}", tried["id"].as_str().unwrap())),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !detail["attempts"].as_array().unwrap().is_empty(),
        "its attempts are kept: {detail:#}"
    );

    // Not redeliverable: one answers 409, in bulk none is taken.
    let (s, r) = org
        .send(
            "POST",
            &org.path(&format!(
                "/deliveries/{}/redeliver",
                tried["id"].as_str().unwrap()
            )),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(r["code"], "cancelled");
    let (s, r) = org
        .send(
            "POST",
            &org.path("/deliveries/redeliver?status=cancelled"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["redelivered"], 0);
    let metrics = org.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "flowhook_deliveries{{status=\"cancelled\"}} {}",
            all.len()
        )),
        "{metrics}"
    );
    assert!(metrics.contains("flowhook_deliveries{status=\"pending\"} 0"));
    org.app.stop().await;
}

mod a_delivery_made_for_a_deleted_action_is_cancelled_when_claimed {
    crate::on_both_backends!(super::a_delivery_made_for_a_deleted_action_is_cancelled_when_claimed);
}

/// The safety net: a delivery pending for an action deleted already (as a command batch that
/// read the strategy just before the deletion would write) is cancelled by the dispatcher that
/// claims it — not retried forever, not sent.
async fn a_delivery_made_for_a_deleted_action_is_cancelled_when_claimed(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    let delivered = all_delivered(&org).await;
    let created = &actions["created"];
    let victim = delivered
        .iter()
        .find(|d| d["actionId"] == created.as_str())
        .expect("a task.created delivery")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut mapped = actions.clone();
    mapped.remove("created");
    let (s, _) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": mapped})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = org
        .send(
            "DELETE",
            &org.path(&format!("/actions/{created}")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let sent = receiver.requests().len();
    // The race's outcome, written directly: a pending delivery for the deleted action.
    let sql = "UPDATE deliveries SET status = 'pending', next_attempt_at = 0 WHERE id = $1";
    match &org.app.store {
        flowhook::store::Store::Sqlite(pool) => {
            sqlx::query(sql).bind(&victim).execute(pool).await.unwrap();
        }
        flowhook::store::Store::Postgres(pool) => {
            sqlx::query(sql).bind(&victim).execute(pool).await.unwrap();
        }
    }
    let wait = std::time::Duration::from_secs(10);
    let status = eventually("the victim cancelled", wait, async || {
        let d = deliveries(&org, "").await;
        let v = d
            .iter()
            .find(|d| d["id"] == victim.as_str())
            .unwrap()
            .clone();
        if v["status"] == "cancelled" {
            Ok(v)
        } else {
            Err(v)
        }
    })
    .await;
    assert_eq!(status["status"], "cancelled", "cancelled when claimed");
    assert!(status["lastError"]
        .as_str()
        .unwrap()
        .contains("was deleted"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), sent, "not sent");
    org.app.stop().await;
}

mod another_organisations_connectors_answer_404 {
    crate::on_both_backends!(super::another_organisations_connectors_answer_404);
}

/// One organisation cannot read, edit or delete another's connectors and actions: 404, and
/// nothing changes.
async fn another_organisations_connectors_answer_404(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    let connector = the_connector(&org).await;
    let con = connector["id"].as_str().unwrap().to_owned();
    let act = actions["finished"].clone();
    let acme_key = org.key.clone();
    org.key = org.other_org_key("globex", &["admin"]).await;
    let globex = |rest: String| format!("/api/v1/orgs/globex{rest}");
    for (method, path, body) in [
        ("GET", format!("/connectors/{con}"), None),
        (
            "PUT",
            format!("/connectors/{con}"),
            Some(json!({"name": "mine", "baseUrl": "http://127.0.0.1:9/x"})),
        ),
        ("DELETE", format!("/connectors/{con}"), None),
        ("GET", format!("/actions/{act}"), None),
        (
            "PUT",
            format!("/actions/{act}"),
            Some(json!({"connectorId": con, "name": "mine", "path": "/mine"})),
        ),
        ("DELETE", format!("/actions/{act}"), None),
    ] {
        let (s, r) = org.send(method, &globex(path.clone()), None, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {r}");
    }
    // Acme's own paths with globex's key: refused.
    let (s, _) = org
        .send(
            "GET",
            &format!("/api/v1/orgs/acme/connectors/{con}"),
            None,
            None,
        )
        .await;
    assert!(
        s == StatusCode::NOT_FOUND || s == StatusCode::FORBIDDEN,
        "{s}"
    );
    org.key = acme_key;
    assert_eq!(the_connector(&org).await, connector, "unchanged");
    let (s, a) = org
        .send("GET", &org.path(&format!("/actions/{act}")), None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["name"], "finished");
    org.app.stop().await;
}
