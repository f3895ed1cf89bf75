//! External ingest through the command writer: many calls at once share one commit and stay
//! numbered and ordered per instance; a batch call is stored all or none, in its order, and a
//! refusal names the event's index.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::delivery::{connect, fast, seq_of, verify};
use crate::helpers::TestDb;
use crate::receiver::Receiver;
use crate::task_center::Org;

/// A relayed `task.created` (then `task.finished`) of `instance`, with caller id `event_id`.
fn event(instance: &str, n: usize, event_id: Option<&str>, omit_corp: bool) -> Value {
    let mut e = if n % 2 == 0 {
        json!({"type": "task.created", "processInstanceId": instance, "payload": {
            "appType": "APP_ACME", "corpId": "acme", "taskId": format!("{instance}-t{n}"),
            "title": "relayed", "actionerId": "bob", "processCode": "ext"}})
    } else {
        json!({"type": "task.finished", "processInstanceId": instance, "payload": {
            "appType": "APP_ACME", "corpId": "acme", "taskId": format!("{instance}-t{}", n - 1),
            "actualWorkId": "bob", "formInstId": format!("f-{instance}")}})
    };
    if omit_corp {
        e["payload"].as_object_mut().unwrap().remove("corpId");
    }
    if let Some(id) = event_id {
        e["eventId"] = json!(id);
    }
    e
}

mod concurrent_calls_share_commits_and_keep_each_lane_in_order {
    crate::on_both_backends!(super::concurrent_calls_share_commits_and_keep_each_lane_in_order);
}

/// 64 calls at once, 16 for each of 4 instances: every call stored once with its own `seq`
/// (1 to 16 per instance, no gap, no repeat), delivered in that order; a retry of each is
/// answered with its stored event and delivers nothing.
async fn concurrent_calls_share_commits_and_keep_each_lane_in_order(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    let calls = (0..64).map(|i| {
        let instance = format!("ext-{}", i % 4);
        let body = event(&instance, 0, Some(&format!("c-{i}")), false);
        let org = &org;
        async move {
            org.send("POST", "/api/v1/apps/APP_ACME/events", None, Some(body))
                .await
        }
    });
    let answers = futures_join_all(calls).await;
    let mut seqs: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (i, (s, r)) in answers.iter().enumerate() {
        assert_eq!(*s, StatusCode::CREATED, "{r}");
        seqs.entry(format!("ext-{}", i % 4))
            .or_default()
            .push(r["event"]["seq"].as_i64().unwrap());
    }
    for (instance, mut s) in seqs {
        s.sort_unstable();
        assert_eq!(s, (1..=16).collect::<Vec<_>>(), "{instance}");
    }
    for i in 0..64 {
        let (s, r) = org
            .send(
                "POST",
                "/api/v1/apps/APP_ACME/events",
                None,
                Some(event(
                    &format!("ext-{}", i % 4),
                    0,
                    Some(&format!("c-{i}")),
                    false,
                )),
            )
            .await;
        assert_eq!(
            (s, r["deliveries"].as_i64()),
            (StatusCode::OK, Some(0)),
            "{r}"
        );
    }
    receiver
        .wait_until(15, "64 relayed events", |got| got.len() >= 64)
        .await;
    let got = receiver.accepted();
    assert_eq!(got.len(), 64, "each once");
    let lanes = relayed_lanes(got.iter(), &org.system_token);
    for (instance, s) in lanes {
        assert_eq!(s, (1..=16).collect::<Vec<_>>(), "{instance} in order");
    }
    org.instances.clear();
    org.app.stop().await;
}

/// The relayed `task.created` calls received, verified, by instance (the task id's prefix, see
/// [`event`]): each lane's `seq`s in the order they arrived.
fn relayed_lanes<'a>(
    got: impl Iterator<Item = &'a crate::receiver::Captured>,
    token: &str,
) -> std::collections::BTreeMap<String, Vec<i64>> {
    let mut lanes: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for c in got {
        let v = verify(c, "APP_ACME", token);
        let flowhook_sign::event::TaskEvent::Created(t) = v.event else {
            panic!("created only")
        };
        let instance = t.task_id.unwrap().rsplit_once("-t").unwrap().0.to_owned();
        lanes.entry(instance).or_default().push(seq_of(c));
    }
    lanes
}

/// Runs the futures concurrently on this task.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

mod commands_and_relayed_events_share_the_writer_s_batches {
    crate::on_both_backends!(super::commands_and_relayed_events_share_the_writer_s_batches);
}

/// Commands and ingest calls queued together are decided and committed together, in the
/// writer's batches: 16 starts and 32 relayed events at once, and among them a call naming one
/// of the organisation's own instances — refused alone, nothing of it written — while every
/// other is stored and delivered: each relayed lane numbered 1 to 8 in order, and the first
/// task of each started instance.
async fn commands_and_relayed_events_share_the_writer_s_batches(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    let own = org
        .start("alice", "leave", "Alice: leave", json!({"days": "1"}))
        .await;
    let org = &org;
    let starts = (0..16).map(|i| async move {
        let body = json!({"processCode": "leave", "title": format!("leave {i}"), "formData": {"days": "1"}});
        org.send("POST", &org.path("/instances"), Some("alice"), Some(body))
            .await
    });
    let relays = (0..32).map(|i| async move {
        let body = event(&format!("ext-{}", i % 4), 0, Some(&format!("m-{i}")), false);
        org.send("POST", "/api/v1/apps/APP_ACME/events", None, Some(body))
            .await
    });
    let refused = org.send(
        "POST",
        "/api/v1/apps/APP_ACME/events",
        None,
        Some(event(&own, 0, Some("m-own"), false)),
    );
    let (started, relayed, (s, r)) =
        tokio::join!(futures_join_all(starts), futures_join_all(relays), refused);
    assert_eq!(
        (s, r["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("own_instance")),
        "{r}"
    );
    for (s, r) in &started {
        assert_eq!(*s, StatusCode::CREATED, "{r}");
    }
    let mut seqs: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (i, (s, r)) in relayed.iter().enumerate() {
        assert_eq!(*s, StatusCode::CREATED, "{r}");
        seqs.entry(format!("ext-{}", i % 4))
            .or_default()
            .push(r["event"]["seq"].as_i64().unwrap());
    }
    for (instance, mut s) in seqs {
        s.sort_unstable();
        assert_eq!(s, (1..=8).collect::<Vec<_>>(), "{instance}");
    }
    // 32 relayed, and a created task for each of the 17 instances started.
    let is_relayed = |c: &crate::receiver::Captured| {
        c.header("x-flowhook-event-id")
            .is_some_and(|id| id.starts_with("m-"))
    };
    receiver
        .wait_until(15, "32 relayed and 17 started", |got| {
            got.iter().filter(|c| is_relayed(c)).count() >= 32
                && got.iter().filter(|c| !is_relayed(c)).count() >= 17
        })
        .await;
    let got = receiver.accepted();
    assert!(
        got.iter()
            .all(|c| c.header("x-flowhook-event-id") != Some("m-own")),
        "the refused call wrote nothing"
    );
    let lanes = relayed_lanes(got.iter().filter(|c| is_relayed(c)), &org.system_token);
    assert_eq!(lanes.len(), 4);
    for (instance, s) in lanes {
        assert_eq!(
            s,
            (1..=8).collect::<Vec<_>>(),
            "{instance} once each, in order"
        );
    }
    let (s, stored) = org
        .send("GET", &org.path(&format!("/instances/{own}")), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{stored}");
    assert_eq!(stored["status"], "running", "{stored}");
}

mod a_batch_is_stored_all_or_none_in_its_order {
    crate::on_both_backends!(super::a_batch_is_stored_all_or_none_in_its_order);
}

/// A batch call: its events numbered per instance in their order and delivered so; one bad
/// event refuses the whole call naming its index, and nothing of it is stored; a retry is
/// answered 200 with the stored events; a payload without `corpId` is sent with it.
async fn a_batch_is_stored_all_or_none_in_its_order(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    let path = "/api/v1/apps/APP_ACME/events/batch";
    let own = org
        .start("alice", "leave", "mine", json!({"days": "1"}))
        .await;
    let first: Vec<Value> = (0..4)
        .map(|n| event("ext-a", n, Some(&format!("a-{n}")), n == 0))
        .chain([event("ext-b", 0, Some("b-0"), false)])
        .collect();
    let (s, r) = org
        .send("POST", path, None, Some(json!({"events": first})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let seqs: Vec<i64> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 1]);

    // One bad event: nothing of the call is stored, its index named.
    for (bad, code, named) in [
        (
            event(&own, 0, Some("x-1"), false),
            "own_instance",
            "`events[1]`",
        ),
        (
            json!({"type": "task.bogus", "processInstanceId": "ext-a", "payload": {}}),
            "invalid",
            "`events[1]`: `type`",
        ),
    ] {
        let body = json!({"events": [event("ext-a", 4, Some("a-4"), false), bad]});
        let (s, r) = org.send("POST", path, None, Some(body)).await;
        assert_eq!(
            (s, r["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{r}"
        );
        assert!(r["message"].as_str().unwrap().starts_with(named), "{r}");
    }
    let (s, r) = org
        .send("POST", path, None, Some(json!({"events": []})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");

    // The refused calls left no seq behind: the next event of ext-a is 5.
    let (s, r) = org
        .send(
            "POST",
            path,
            None,
            Some(json!({"events": [event("ext-a", 4, Some("a-4"), false)]})),
        )
        .await;
    assert_eq!(
        (s, r["events"][0]["event"]["seq"].as_i64()),
        (StatusCode::CREATED, Some(5)),
        "{r}"
    );
    // A retry of the first call: every event a retry, answered with the stored ones.
    let (s, r) = org
        .send("POST", path, None, Some(json!({"events": first})))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(
        r["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["deliveries"] == 0),
        "{r}"
    );

    // Six relayed events and the own instance's `created`.
    receiver
        .wait_until(10, "six relayed events", |got| got.len() >= 7)
        .await;
    let got: Vec<_> = receiver
        .accepted()
        .into_iter()
        .filter(|c| !String::from_utf8_lossy(&c.body).contains(&own))
        .collect();
    assert_eq!(got.len(), 6, "each once");
    let a: Vec<i64> = got
        .iter()
        .filter(|c| String::from_utf8_lossy(&c.body).contains("ext-a"))
        .map(seq_of)
        .collect();
    assert_eq!(a, [1, 2, 3, 4, 5], "ext-a in its order");
    for c in &got {
        if let flowhook_sign::event::TaskEvent::Created(t) =
            verify(c, "APP_ACME", &org.system_token).event
        {
            assert_eq!(t.corp_id.as_deref(), Some("acme"), "filled in when omitted");
        }
    }
    org.app.stop().await;
}
