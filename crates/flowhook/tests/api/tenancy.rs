//! Walls between organisations: two organisations on one Flowhook share endpoints, instance ids
//! and event ids; what one does — its endpoint down, its ids colliding with the other's — never
//! blocks, renumbers, breaks or reveals the other's.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::delivery::{connect, fast, seq_of, verify};
use crate::helpers::TestDb;
use crate::receiver::Receiver;
use crate::task_center::Org;

/// An external `task.created` (then `task.finished` with `finish`) of instance `instance`.
fn relayed(corp: &str, instance: &str, event_id: Option<&str>, finish: bool) -> Value {
    let app = format!("APP_{}", corp.to_uppercase());
    let mut body = if finish {
        json!({"type": "task.finished", "processInstanceId": instance, "payload": {
            "appType": app, "corpId": corp, "taskId": format!("{instance}-t1"), "actualWorkId": "bob",
            "formInstId": format!("f-{instance}")}})
    } else {
        json!({"type": "task.created", "processInstanceId": instance, "payload": {
            "appType": app, "corpId": corp, "taskId": format!("{instance}-t1"), "title": "relayed",
            "actionerId": "bob", "processCode": "ext"}})
    };
    if let Some(id) = event_id {
        body["eventId"] = json!(id);
    }
    body
}

async fn ingest(org: &Org, body: Value) -> (StatusCode, Value) {
    let app = format!("APP_{}", org.corp.to_uppercase());
    org.send(
        "POST",
        &format!("/api/v1/apps/{app}/events"),
        None,
        Some(body),
    )
    .await
}

mod relayed_instances_are_per_organisation {
    crate::on_both_backends!(super::relayed_instances_are_per_organisation);
}

/// Two organisations relay the same instance id and the same event ids. A's endpoint is down;
/// B's events are numbered 1, 2 in B's lane and arrive at once, each with B's own event id.
async fn relayed_instances_are_per_organisation(db: TestDb) {
    let mut a = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let b_tenant = a.add_tenant("globex").await;
    let down = Receiver::start().await;
    down.answer(|_, _| 503);
    connect(&a, &down, json!({"type": "none"})).await;
    for (event, finish) in [("e-1", false), ("e-2", true)] {
        let (s, r) = ingest(&a, relayed("acme", "order-1001", Some(event), finish)).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    down.wait_for_requests(10, "A's head attempted", |got| !got.is_empty())
        .await;

    let mut b = a;
    b.become_tenant(&b_tenant);
    let up = Receiver::start().await;
    connect(&b, &up, json!({"type": "none"})).await;
    let mut seqs = Vec::new();
    for (event, finish) in [("e-1", false), ("e-2", true)] {
        let (s, r) = ingest(&b, relayed("globex", "order-1001", Some(event), finish)).await;
        assert_eq!(s, StatusCode::CREATED, "B's own {event} is new to B: {r}");
        seqs.push(r["event"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, [1, 2], "B's lane is numbered on its own");
    up.wait_until(10, "B's two events, while A's endpoint is down", |got| {
        got.len() >= 2
    })
    .await;
    let got = up.accepted();
    assert_eq!(got.iter().map(seq_of).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        got.iter()
            .map(|c| c.header("x-flowhook-event-id").unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["e-1", "e-2"],
        "the caller's event ids are what receivers de-duplicate on"
    );
    for c in &got {
        verify(c, "APP_GLOBEX", &b.system_token);
    }
    // A retry of B's own event id is B's, answered with B's stored event.
    let (s, r) = ingest(&b, relayed("globex", "order-1001", Some("e-1"), false)).await;
    assert_eq!((s, r["event"]["seq"].as_i64()), (StatusCode::OK, Some(1)));
    assert!(
        down.requests()
            .iter()
            .all(|c| c.body.windows(7).all(|w| w != b"globex")),
        "nothing of B's reached A's endpoint"
    );
    b.app.stop().await;
}

mod relaying_never_touches_flowhook_instances {
    crate::on_both_backends!(super::relaying_never_touches_flowhook_instances);
}

/// An organisation that relays events under another organisation's Flowhook instance id gets an
/// instance of its own: the other's commands go on (they answered 500 before). Its own Flowhook
/// instance ids are refused: their `seq` belongs to the engine.
async fn relaying_never_touches_flowhook_instances(db: TestDb) {
    let mut b = Org::setup_with(&db, "globex", |c| fast(c, 600_000)).await;
    let a_tenant = b.add_tenant("acme").await;
    let receiver = Receiver::start().await;
    connect(&b, &receiver, json!({"type": "none"})).await;
    let leave = b
        .start("alice", "leave", "Alice: leave", json!({"days": "1"}))
        .await;
    let b_tenant = b.tenant();

    let mut a = b;
    a.become_tenant(&a_tenant);
    let (s, r) = ingest(&a, relayed("acme", &leave, Some("x-1"), false)).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["event"]["seq"], 1, "A's instance of that id is A's own");

    let mut b = a;
    b.become_tenant(&b_tenant);
    b.act(&leave, "bob", "agree", json!({})).await;
    assert_eq!(b.status(&leave).await, "approved");

    // B relaying under its own Flowhook instance id is refused, naming why.
    let (s, r) = ingest(&b, relayed("globex", &leave, None, true)).await;
    assert_eq!(
        (s, r["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("own_instance")),
        "{r}"
    );
    // B's receiver got B's lane whole: seq 1, 2, 3 … without a gap, and nothing of A's.
    receiver
        .wait_until(10, "created, finished of the leave", |got| got.len() >= 2)
        .await;
    let got = receiver.accepted();
    let seqs: Vec<i64> = got.iter().map(seq_of).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(got
        .iter()
        .all(|c| c.header("x-flowhook-event-id") != Some("x-1")));
    b.app.stop().await;
}
