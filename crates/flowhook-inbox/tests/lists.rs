//! The unified lists as the sender has them (issue 18 items 8, 9): items take the event's own
//! time, so a backfill keeps the sender's order; the `created` list says how an instance ended
//! where the events tell it.

mod common;

use common::*;
use flowhook_sign::event::TaskEvent;

/// One page of `user`'s `list`.
async fn items(inbox: &TestInbox, user: &str, list: &str) -> Vec<serde_json::Value> {
    let page: serde_json::Value = inbox
        .client
        .get(inbox.url(&format!("/users/{user}/tasks?list={list}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

/// `event` with its record's `modifiedTime` (and `createTime`) set to `at`.
fn at_time(mut event: TaskEvent, at: i64) -> TaskEvent {
    match &mut event {
        TaskEvent::Created(t) => {
            t.modified_time = Some(at);
            t.create_time = Some(at);
        }
        TaskEvent::Cc(c) => {
            c.record.modified_time = Some(at);
            c.record.create_time = Some(at);
        }
        _ => {}
    }
    event
}

mod backfill_order {
    use super::*;
    on_both_backends!(a_backfill_keeps_the_senders_times_and_order);
}

/// Item 8: a history pushed newest first (as a backfill may) lists by the events' own times:
/// `createdAt` is the record's `modifiedTime`, and the order is the sender's, not arrival's.
async fn a_backfill_keeps_the_senders_times_and_order(db: TestDb) {
    let inbox = TestInbox::spawn(&db).await;
    let day = 86_400_000;
    let (newer, older) = (now_ms() - day, now_ms() - 2 * day);
    for (inst, task, at) in [("i-new", "t-new", newer), ("i-old", "t-old", older)] {
        let e = at_time(created("APP_Y", inst, task, "u1", "u2"), at);
        assert_eq!(inbox.send("yida", &e, YIDA_TOKEN, &[]).await.0, 200);
        let cc = at_time(cc("APP_Y", inst, &format!("cc-{inst}"), "u3", "u2"), at);
        assert_eq!(inbox.send("yida", &cc, YIDA_TOKEN, &[]).await.0, 200);
    }
    for (user, list) in [("u1", "todo"), ("u3", "cc"), ("u2", "created")] {
        let got = items(&inbox, user, list).await;
        let times: Vec<i64> = got
            .iter()
            .map(|i| i["createdAt"].as_i64().unwrap())
            .collect();
        assert_eq!(times, [newer, older], "{user} {list}: {got:#?}");
    }
    inbox.stop().await;
}

mod created_outcome {
    use super::*;
    on_both_backends!(the_created_list_says_how_an_instance_ended);
}

/// Item 9: `running` while a task is open; `ended` once every task has ended and no event said
/// how (Yida's finished/cancelled do not); the outcome a later record carries
/// (`processInstanceStatus` `COMPLETED` + `agree` → `approved`), not undone by an older one.
async fn the_created_list_says_how_an_instance_ended(db: TestDb) {
    let inbox = TestInbox::spawn(&db).await;
    let t0 = now_ms() - 60_000;
    let created_status = |items: Vec<serde_json::Value>| items[0]["status"].clone();

    let mut e = created("APP_Y", "i1", "t1", "u1", "u2");
    if let TaskEvent::Created(t) = &mut e {
        t.modified_time = Some(t0);
        t.process_instance_status = Some("RUNNING".into());
    }
    assert_eq!(inbox.send("yida", &e, YIDA_TOKEN, &[]).await.0, 200);
    assert_eq!(
        created_status(items(&inbox, "u2", "created").await),
        "running"
    );

    let f = finished("APP_Y", "i1", "t1", "u1");
    assert_eq!(inbox.send("yida", &f, YIDA_TOKEN, &[]).await.0, 200);
    assert_eq!(
        created_status(items(&inbox, "u2", "created").await),
        "ended"
    );

    let mut c = cc("APP_Y", "i1", "c1", "u3", "u2");
    if let TaskEvent::Cc(c) = &mut c {
        c.record.modified_time = Some(t0 + 2);
        c.record.process_instance_status = Some("COMPLETED".into());
        c.record.process_approved_result = Some("agree".into());
    }
    assert_eq!(inbox.send("yida", &c, YIDA_TOKEN, &[]).await.0, 200);
    assert_eq!(
        created_status(items(&inbox, "u2", "created").await),
        "approved"
    );

    // An older record arriving late (a retry) does not undo it.
    let mut late = cc("APP_Y", "i1", "c0", "u4", "u2");
    if let TaskEvent::Cc(c) = &mut late {
        c.record.modified_time = Some(t0 + 1);
        c.record.process_instance_status = Some("RUNNING".into());
    }
    assert_eq!(inbox.send("yida", &late, YIDA_TOKEN, &[]).await.0, 200);
    assert_eq!(
        created_status(items(&inbox, "u2", "created").await),
        "approved"
    );
    inbox.stop().await;
}
