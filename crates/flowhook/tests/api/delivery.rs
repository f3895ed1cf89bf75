//! Delivery end to end against a real receiver on 127.0.0.1: every request verifies with
//! `flowhook-sign` and carries exactly its event's parameters; retries, dead and redelivery;
//! per-instance ordering that holds back only the failing instance; no secret in the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flowhook_sign::event::EventKind;
use flowhook_sign::receive::{RawRequest, VerifiedEvent, Verifier};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{AppConfig, TestDb};
use crate::receiver::{Captured, Receiver};
use crate::task_center::Org;
use flowhook_testkit::eventually;
use std::time::Duration;

pub(crate) const KINDS: [&str; 5] = ["created", "finished", "cancelled", "deleted", "cc"];

/// Fast retries for tests: immediately, 50 ms, 100 ms, then every 100 ms.
pub(crate) fn fast(config: &mut flowhook::config::Config, give_up_ms: u64) {
    config.retry_schedule_ms = vec![0, 50, 100];
    config.retry_then_every_ms = 100;
    config.retry_give_up_after_ms = give_up_ms;
    config.delivery_poll_ms = 50;
    config.breaker_threshold = 10_000;
}

/// A connector to `receiver` with five actions (cc as JSON, the rest as forms) and the strategy.
pub(crate) async fn connect(
    org: &Org,
    receiver: &Receiver,
    auth: Value,
) -> BTreeMap<String, String> {
    let (s, con) = org
        .send("POST", &org.path("/connectors"), None, Some(json!({"name": "inbox", "baseUrl": format!("{}/cb", receiver.url), "auth": auth, "timeoutMs": 2000})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let mut actions = BTreeMap::new();
    for kind in KINDS {
        let encoding = if kind == "cc" { "json" } else { "form" };
        let (s, a) = org
            .send("POST", &org.path("/actions"), None, Some(json!({"connectorId": con["id"], "name": kind, "path": format!("/{kind}"), "encoding": encoding})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        actions.insert(kind.to_owned(), a["id"].as_str().unwrap().to_owned());
    }
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": actions})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    actions
}

pub(crate) fn kind_of(c: &Captured) -> EventKind {
    c.path.rsplit('/').next().unwrap().parse().unwrap()
}

/// Verifies a request as a Yida receiver would, and checks its parameter names are exactly its
/// event's.
pub(crate) fn verify(c: &Captured, app_type: &str, token: &str) -> VerifiedEvent {
    let tokens = HashMap::from([(app_type.to_owned(), token.to_owned())]);
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = RawRequest {
        content_type: c.content_type(),
        body: &c.body,
        headers: &headers,
    };
    let v = Verifier::new(&tokens)
        .verify(kind_of(c), &req, flowhook::support::now_ms())
        .unwrap_or_else(|e| panic!("{} does not verify: {e}", c.path));
    let names: BTreeSet<&str> = v.params.iter().map(|(k, _)| k.as_str()).collect();
    let mut expected: BTreeSet<&str> = kind_of(c).param_names().iter().copied().collect();
    expected.insert("sign");
    assert_eq!(names, expected, "exact parameters of {}", c.path);
    v
}

pub(crate) async fn deliveries(org: &Org, query: &str) -> Vec<Value> {
    let (s, page) = org
        .send(
            "GET",
            &org.path(&format!("/deliveries?limit=200{query}")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// Waits until every delivery of the organisation is `delivered`.
pub(crate) async fn all_delivered(org: &Org) -> Vec<Value> {
    eventually(
        "every delivery delivered",
        Duration::from_secs(20),
        async || {
            let all = deliveries(org, "").await;
            if !all.is_empty() && all.iter().all(|d| d["status"] == "delivered") {
                Ok(all)
            } else {
                Err(all)
            }
        },
    )
    .await
}

/// Polls a job's progress (`path` under the organisation) until it is `done`; returns it.
pub(crate) async fn job_done(org: &Org, path: &str) -> Value {
    eventually("the job done", Duration::from_secs(20), async || {
        let progress = org.send("GET", &org.path(path), None, None).await.1;
        if progress["state"] == "done" {
            Ok(progress)
        } else {
            Err(progress)
        }
    })
    .await
}

/// The `X-Flowhook-Seq` of a request.
pub(crate) fn seq_of(c: &Captured) -> i64 {
    c.header("x-flowhook-seq").unwrap().parse().unwrap()
}

mod every_request_verifies_with_exactly_its_parameters {
    crate::on_both_backends!(super::every_request_verifies_with_exactly_its_parameters);
}

async fn every_request_verifies_with_exactly_its_parameters(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;

    let buy = org
        .start("alice", "purchase", "laptop", json!({"amount": "1299"}))
        .await;
    org.act(&buy, "fin2", "agree", json!({})).await; // finished + fin1 cancelled + carol created
    org.act(&buy, "carol", "agree", json!({})).await;
    let short = org
        .start("dave", "leave", "2 days", json!({"days": "2"}))
        .await;
    org.act(&short, "bob", "agree", json!({})).await; // cc hr1, hr2
    let gone = org.start("alice", "purchase", "desk", json!({})).await;
    let (s, _) = org
        .send(
            "DELETE",
            &org.path(&format!("/instances/{gone}")),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let all = all_delivered(&org).await;
    receiver
        .wait_until(10, "every delivery", |got| got.len() >= all.len())
        .await;
    let got = receiver.accepted();
    assert_eq!(
        got.len(),
        all.len(),
        "each delivery received once (no failures, so no repeats)"
    );
    let mut kinds = BTreeSet::new();
    let mut by_instance: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for c in &got {
        let v = verify(c, "APP_ACME", &org.system_token);
        kinds.insert(kind_of(c).short_name());
        assert_eq!(
            c.header("x-flowhook-event-type"),
            Some(kind_of(c).event_type())
        );
        assert_eq!(c.header("x-flowhook-attempt"), Some("1"));
        let event_id = c.header("x-flowhook-event-id").unwrap();
        let d = all
            .iter()
            .find(|d| d["eventId"] == event_id)
            .expect("a logged delivery");
        by_instance
            .entry(d["instanceId"].as_str().unwrap().to_owned())
            .or_default()
            .push(seq_of(c));
        if let flowhook_sign::event::TaskEvent::Created(task) = &v.event {
            assert_eq!(task.data_type.as_deref(), Some("pinst"));
            // A signed approval link to the task's page (see tests/api/console.rs).
            let url = task.task_url.as_deref().unwrap();
            assert!(
                url.contains(&format!(
                    "/console/tasks/{}?u=",
                    task.task_id.as_deref().unwrap()
                )),
                "{url}"
            );
        }
    }
    assert_eq!(kinds, BTreeSet::from(KINDS), "all five events were pushed");
    for (instance, seqs) in by_instance {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "instance {instance} arrived in seq order");
    }
    org.app.stop().await;
}

mod retries_then_dead_then_redelivered {
    crate::on_both_backends!(super::retries_then_dead_then_redelivered);
}

async fn retries_then_dead_then_redelivered(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 600)).await;
    let receiver = Receiver::start().await;
    // The first two requests fail, then everything succeeds.
    receiver.answer(|_, earlier| if earlier.len() < 2 { 500 } else { 200 });
    connect(&org, &receiver, json!({"type": "none"})).await;
    let buy = org.start("alice", "purchase", "laptop", json!({})).await;
    all_delivered(&org).await;
    let first = deliveries(&org, "&eventType=task.created")
        .await
        .into_iter()
        .find(|d| d["seq"] == 1)
        .unwrap();
    let (s, detail) = org
        .send(
            "GET",
            &org.path(&format!("/deliveries/{}", first["id"].as_str().unwrap())),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let statuses: Vec<i64> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["responseStatus"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [500, 500, 200],
        "delivered on the third attempt: {detail:#}"
    );
    assert_eq!(detail["attempts"][0]["errorKind"], "status");
    assert_eq!(
        detail["attempts"][2]["requestHeaders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == "x-flowhook-attempt")
            .map(|h| h[1].clone())
            .collect::<Vec<_>>(),
        [json!("3")]
    );

    // A receiver down past the schedule: dead.
    receiver.answer(|c, _| {
        if c.path.ends_with("/finished") {
            503
        } else {
            200
        }
    });
    org.act(&buy, "fin1", "agree", json!({})).await;
    let dead = eventually("a dead delivery", Duration::from_secs(12), async || {
        Some(deliveries(&org, "&status=dead").await).filter(|dead| !dead.is_empty())
    })
    .await;
    assert_eq!(dead.len(), 1, "the finished delivery died");
    assert_eq!(dead[0]["eventType"], "task.finished");
    assert!(dead[0]["attempts"].as_i64().unwrap() >= 3);

    // Back up: redelivered by the API, received.
    receiver.answer(|_, _| 200);
    let (s, r) = org
        .send(
            "POST",
            &org.path(&format!(
                "/deliveries/{}/redeliver",
                dead[0]["id"].as_str().unwrap()
            )),
            None,
            None,
        )
        .await;
    assert_eq!((s, r["redelivered"].as_i64()), (StatusCode::OK, Some(1)));
    receiver
        .wait_until(10, "the redelivered finished", |got| {
            got.iter().any(|c| c.path.ends_with("/finished"))
        })
        .await;
    all_delivered(&org).await;

    // Retention: attempts older than the cutoff lose their parameters and body, not themselves.
    let path = org.path(&format!("/deliveries/{}", first["id"].as_str().unwrap()));
    assert!(!detail["attempts"][2]["requestParams"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        org.app.store.purge_attempt_bodies(0).await.unwrap(),
        0,
        "nothing is that old"
    );
    let purged = org
        .app
        .store
        .purge_attempt_bodies(flowhook::support::now_ms() + 1)
        .await
        .unwrap();
    assert!(purged >= 3, "every attempt so far: {purged}");
    let (_, after) = org.send("GET", &path, None, None).await;
    let attempts = after["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "the attempts stay");
    for a in attempts {
        assert_eq!(a["requestParams"], json!([]), "{a}");
        assert!(a["responseBody"].is_null(), "{a}");
        assert!(a["responseStatus"].is_i64(), "{a}");
    }
    assert_eq!(
        org.app
            .store
            .purge_attempt_bodies(flowhook::support::now_ms() + 1)
            .await
            .unwrap(),
        0,
        "purged once"
    );
    org.app.stop().await;
}

mod a_failing_instance_holds_back_only_itself {
    crate::on_both_backends!(super::a_failing_instance_holds_back_only_itself);
}

async fn a_failing_instance_holds_back_only_itself(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    // The rule is in place before A starts (its first delivery leaves at once); until A's id is
    // known, A is the only instance, so every `created` is about A.
    let failing = Arc::new(AtomicBool::new(true));
    let a_slot: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let (flag, slot) = (failing.clone(), a_slot.clone());
    receiver.answer(move |c, _| {
        let about_a = match slot.lock().unwrap().as_deref() {
            Some(a_id) => String::from_utf8_lossy(&c.body).contains(a_id),
            None => true,
        };
        if flag.load(Ordering::SeqCst) && c.path.ends_with("/created") && about_a {
            500
        } else {
            200
        }
    });
    let a = org.start("alice", "purchase", "A", json!({})).await;
    *a_slot.lock().unwrap() = Some(a.clone());
    org.act(&a, "fin1", "agree", json!({})).await; // A: finished, cancelled, created — all behind A's head
    let b = org.start("dave", "purchase", "B", json!({})).await;
    org.act(&b, "fin2", "agree", json!({})).await;
    org.act(&b, "carol", "agree", json!({})).await;
    let b_deliveries = |all: &[Value]| {
        all.iter()
            .filter(|d| d["instanceId"] == b.as_str())
            .cloned()
            .collect::<Vec<_>>()
    };
    eventually(
        "B's deliveries delivered",
        Duration::from_secs(20),
        async || {
            let all = deliveries(&org, "").await;
            let b = b_deliveries(&all);
            b.iter()
                .all(|d| d["status"] == "delivered")
                .then_some(())
                .ok_or(b)
        },
    )
    .await;
    let all = deliveries(&org, "").await;
    assert!(
        b_deliveries(&all)
            .iter()
            .all(|d| d["status"] == "delivered"),
        "B flowed while A failed"
    );
    let events_of_a = |all: &[Value]| -> BTreeSet<String> {
        all.iter()
            .filter(|d| d["instanceId"] == a.as_str())
            .map(|d| d["eventId"].as_str().unwrap().to_owned())
            .collect()
    };
    let a_events = events_of_a(&all);
    assert_eq!(
        a_events.len(),
        5,
        "A has 2 created, 1 finished, 1 cancelled, 1 created"
    );
    let a_accepted: Vec<String> = receiver
        .accepted()
        .iter()
        .filter(|c| a_events.contains(c.header("x-flowhook-event-id").unwrap()))
        .map(|c| c.path.clone())
        .collect();
    assert!(
        a_accepted.is_empty(),
        "nothing of A was accepted while its head fails: {a_accepted:?}"
    );
    assert!(
        receiver
            .requests()
            .iter()
            .filter(|c| c.answered == 500)
            .count()
            >= 2,
        "A's head was retried"
    );

    failing.store(false, Ordering::SeqCst);
    all_delivered(&org).await;
    let a_seqs: Vec<i64> = receiver
        .accepted()
        .iter()
        .filter(|c| a_events.contains(c.header("x-flowhook-event-id").unwrap()))
        .map(seq_of)
        .collect();
    let mut sorted = a_seqs.clone();
    sorted.sort();
    assert_eq!(
        a_seqs, sorted,
        "A's events arrived in seq order: its finished after its created"
    );
    assert_eq!(a_seqs.len(), a_events.len());
    org.app.stop().await;
}

mod no_secret_in_the_delivery_log {
    crate::on_both_backends!(super::no_secret_in_the_delivery_log);
}

async fn no_secret_in_the_delivery_log(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    let secret = "s3cr3t-bearer-token-0123456789";
    connect(&org, &receiver, json!({"type": "bearer", "token": secret})).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    let all = all_delivered(&org).await;
    let got = receiver.accepted();
    assert!(
        got.iter()
            .all(|c| c.header("authorization") == Some(&format!("Bearer {secret}"))),
        "the connector authenticates"
    );
    let mut shown = String::new();
    for d in &all {
        let (_, detail) = org
            .send(
                "GET",
                &org.path(&format!("/deliveries/{}", d["id"].as_str().unwrap())),
                None,
                None,
            )
            .await;
        shown.push_str(&detail.to_string());
    }
    let (_, connectors) = org.send("GET", &org.path("/connectors"), None, None).await;
    shown.push_str(&connectors.to_string());
    assert!(
        shown.contains("Bearer ***"),
        "masked credentials are shown: {shown}"
    );
    for s in [secret, org.system_token.as_str()] {
        assert!(
            !shown.contains(s),
            "a secret leaked into the log or the API"
        );
    }
    org.app.stop().await;
}

mod a_dead_endpoint_costs_healthy_ones_nothing {
    crate::on_both_backends!(super::a_dead_endpoint_costs_healthy_ones_nothing);
}

/// Two endpoints: `created` goes to a healthy one, `finished` to one that is down. The healthy
/// one keeps receiving; the dead one's breaker opens (visible in /metrics); when it is back, its
/// backlog arrives at once although the retry schedule says 30 s.
async fn a_dead_endpoint_costs_healthy_ones_nothing(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.retry_schedule_ms = vec![0, 30_000];
        c.breaker_threshold = 2;
        c.breaker_first_cooldown_ms = 1_000;
        c.breaker_cooldown_ms = 1_000;
    })
    .await;
    let healthy = Receiver::start().await;
    let down = Receiver::start().await;
    down.answer(|_, _| 500);
    let mut actions = serde_json::Map::new();
    let mut connectors = Vec::new();
    for (kind, receiver) in [("created", &healthy), ("finished", &down)] {
        let (_, con) = org
            .send(
                "POST",
                &org.path("/connectors"),
                None,
                Some(json!({"name": kind, "baseUrl": receiver.url})),
            )
            .await;
        let (_, a) = org
            .send(
                "POST",
                &org.path("/actions"),
                None,
                Some(json!({"connectorId": con["id"], "name": kind, "path": format!("/{kind}")})),
            )
            .await;
        actions.insert(kind.into(), a["id"].clone());
        connectors.push(con["id"].as_str().unwrap().to_owned());
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

    // Each instance: two created (or-sign), then fin1 agrees → finished (to the dead endpoint).
    let began = std::time::Instant::now();
    let mut instances = Vec::new();
    for i in 0..4 {
        let id = org
            .start("alice", "purchase", &format!("p{i}"), json!({}))
            .await;
        org.act(&id, "fin1", "agree", json!({})).await;
        instances.push(id);
    }
    // The two `created` of each instance flow; carol's `created` (seq 5) rightly waits behind
    // its instance's failing `finished` (seq 3).
    healthy
        .wait_until(10, "created events keep flowing", |got| got.len() >= 4 * 2)
        .await;
    let (_, metrics) = org.send("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default().to_owned();
    // Open (2), or half-open (1) while its probe is out (a loaded machine may take longer than
    // the cooldown to get here).
    let state = format!("flowhook_breaker_state{{connector=\"{}\"}} ", connectors[1]);
    assert!(
        text.lines()
            .any(|l| l.strip_prefix(&state).is_some_and(|v| v == "2" || v == "1")),
        "`{state}` open or half-open in {text}"
    );
    assert!(
        text.contains("flowhook_deliveries{status=\"pending\"}"),
        "{text}"
    );
    // Without the breaker: 4 `finished` × 2 attempts (now and the immediate retry) = 8. With
    // it: the 2 that open it, then one probe per cooldown of 1 s.
    let tried = down.requests().len();
    let probes = began.elapsed().as_millis() / 1_000 + 1;
    assert!(
        tried as u128 <= 2 + probes,
        "an open breaker stops sending: {tried} requests to the dead endpoint in {:?}",
        began.elapsed()
    );

    // Back: the probe succeeds and the whole backlog is delivered now, not in 30 s.
    down.answer(|_, _| 200);
    let back = std::time::Instant::now();
    down.wait_until(10, "the backlog after the endpoint is back", |got| {
        got.len() >= 4
    })
    .await;
    assert!(back.elapsed() < std::time::Duration::from_secs(10));
    healthy
        .wait_until(10, "the created events held behind them", |got| {
            got.len() >= 4 * 3
        })
        .await;
    all_delivered(&org).await;
    org.app.stop().await;
}

mod an_open_breaker_parks_its_backlog_and_keeps_probing {
    crate::on_both_backends!(super::an_open_breaker_parks_its_backlog_and_keeps_probing);
}

/// While an endpoint is down, the deliveries its open breaker holds back stay parked: only the
/// probe, one per cooldown, touches a delivery (before, the whole backlog came due and was
/// claimed and held again every cooldown). When the endpoint is back, the probe that succeeds
/// makes the parked backlog due at once — not in the 5 minutes of the park, nor the 30 s of the
/// schedule.
async fn an_open_breaker_parks_its_backlog_and_keeps_probing(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.retry_schedule_ms = vec![0, 30_000];
        c.retry_then_every_ms = 30_000;
        c.breaker_threshold = 2;
        c.breaker_cooldown_ms = 200;
    })
    .await;
    let down = Receiver::start().await;
    down.answer(|_, _| 500);
    connect(&org, &down, json!({"type": "none"})).await;
    // Each instance: two `created` (or-sign); the first of each is its lane's head.
    for i in 0..12 {
        org.start("alice", "purchase", &format!("p{i}"), json!({}))
            .await;
    }
    // The gauge is labelled by connector (by endpoint once: the hand-written loop that waited
    // for that label never matched, and only ran out its 5 s).
    let (_, connectors) = org.send("GET", &org.path("/connectors"), None, None).await;
    let con = connectors[0]["id"].as_str().unwrap();
    let open = format!("flowhook_breaker_state{{connector=\"{con}\"}} 2");
    eventually(&open, Duration::from_secs(10), async || {
        let (_, metrics) = org.send("GET", "/metrics", None, None).await;
        metrics
            .as_str()
            .unwrap_or_default()
            .lines()
            .any(|l| l == open)
    })
    .await;
    // Let every head be tried or held once, then watch six cooldowns.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let touched = |all: Vec<Value>| -> HashMap<String, Value> {
        all.into_iter()
            .map(|d| (d["id"].as_str().unwrap().to_owned(), d["updatedAt"].clone()))
            .collect()
    };
    let (before, sent_before) = (touched(deliveries(&org, "").await), down.requests().len());
    assert_eq!(before.len(), 24);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let (after, sent_after) = (touched(deliveries(&org, "").await), down.requests().len());
    let probes = sent_after - sent_before;
    let changed = before.iter().filter(|(id, at)| after[*id] != **at).count();
    assert!(
        probes >= 2,
        "an open breaker keeps probing while its backlog is parked: {probes} probes"
    );
    assert!(
        changed <= probes,
        "only the probes touch a delivery: {changed} deliveries changed for {probes} probes"
    );
    // The connector's health shows it: breaker open, the backlog parked.
    let (_, connectors) = org.send("GET", &org.path("/connectors"), None, None).await;
    let health_path = org.path(&format!(
        "/connectors/{}/health",
        connectors[0]["id"].as_str().unwrap()
    ));
    // Read between two probes: while one is out (every 200 ms, for a few ms) it is half open.
    let health = eventually(
        "the breaker open between probes",
        Duration::from_secs(5),
        async || {
            let (s, health) = org.send("GET", &health_path, None, None).await;
            assert_eq!(s, StatusCode::OK, "{health}");
            if health["breaker"]["state"] == "open" {
                Ok(health)
            } else {
                Err(health)
            }
        },
    )
    .await;
    assert_eq!(health["endpoint"], down.url.as_str(), "{health}");
    assert_eq!(health["breaker"]["state"], "open", "{health}");
    assert!(
        health["breaker"]["consecutiveFailures"].as_u64().unwrap() >= 2,
        "{health}"
    );
    assert!(health["breaker"]["lastSuccessAt"].is_null(), "{health}");
    assert_eq!(health["deliveries"]["pending"], 24, "{health}");
    assert_eq!(health["deliveries"]["dead"], 0, "{health}");
    assert!(
        health["deliveries"]["oldestPendingAt"].as_i64().unwrap() <= flowhook::support::now_ms(),
        "{health}"
    );
    let (s, _) = org
        .send("GET", &org.path("/connectors/nope/health"), None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    down.answer(|_, _| 200);
    let back = std::time::Instant::now();
    all_delivered(&org).await;
    assert!(
        back.elapsed() < std::time::Duration::from_secs(10),
        "the parked backlog went out {:?} after the endpoint was back",
        back.elapsed()
    );
    let (_, health) = org.send("GET", &health_path, None, None).await;
    assert_eq!(health["breaker"]["state"], "closed", "{health}");
    assert_eq!(health["breaker"]["consecutiveFailures"], 0, "{health}");
    assert!(
        health["breaker"]["lastSuccessAt"].as_i64().is_some(),
        "{health}"
    );
    assert_eq!(health["deliveries"]["pending"], 0, "{health}");
    assert!(
        health["deliveries"]["oldestPendingAt"].is_null(),
        "{health}"
    );
    org.app.stop().await;
}

mod a_restarted_node_probes_what_open_breakers_parked {
    crate::on_both_backends!(super::a_restarted_node_probes_what_open_breakers_parked);
}

/// A node restarts while an endpoint's breaker holds its deliveries parked (and marked so in the
/// log). The new node's breakers start closed, so no probe of its own would end the park: it
/// opens the breaker of each endpoint with parked deliveries and probes it at once. Still down:
/// one request, not a burst, and the rest stay parked. Back (and restarted again): the probe
/// succeeds and the parked deliveries go out at once — not when their 5-minute park ends, and
/// with no new event to trip anything.
async fn a_restarted_node_probes_what_open_breakers_parked(db: TestDb) {
    let tune = |c: &mut flowhook::config::Config| {
        fast(c, 600_000);
        c.retry_schedule_ms = vec![0, 30_000];
        c.retry_then_every_ms = 30_000;
        c.breaker_threshold = 2;
        // No probe during the test: only the restart can end the park.
        c.breaker_first_cooldown_ms = 600_000;
        c.breaker_cooldown_ms = 600_000;
    };
    let mut org = Org::setup_with(&db, "acme", tune).await;
    let down = Receiver::start().await;
    down.answer(|_, _| 500);
    connect(&org, &down, json!({"type": "none"})).await;
    for i in 0..6 {
        org.start("alice", "purchase", &format!("p{i}"), json!({}))
            .await;
    }
    // The first heads fail and open the breaker; the others (and a failed one's immediate
    // retry) are parked, marked so in the log.
    let parked = || async {
        deliveries(&org, "&status=pending")
            .await
            .into_iter()
            .filter(|d| d["lastError"] == "held: the endpoint's circuit breaker is open")
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    eventually(
        "four parked deliveries",
        Duration::from_secs(10),
        async || {
            let parked = parked().await;
            if parked.len() >= 4 {
                Ok(())
            } else {
                Err(parked)
            }
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (parked, sent) = (parked().await, down.requests().len());
    assert!(parked.len() >= 4, "parked and marked: {parked:?}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        down.requests().len(),
        sent,
        "nothing is sent while the breaker is open"
    );

    // Restarted while the endpoint is still down: one probe, the park holds.
    org.restart_with(&db, tune).await;
    eventually(
        "a probe after the restart",
        Duration::from_secs(10),
        async || down.requests().len() > sent,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        down.requests().len(),
        sent + 1,
        "one probe as the node starts"
    );
    let still: Vec<Value> = deliveries(&org, "&status=pending").await;
    assert_eq!(still.len(), 12, "nothing delivered, nothing lost");
    let (_, connectors) = org.send("GET", &org.path("/connectors"), None, None).await;
    let health_path = org.path(&format!(
        "/connectors/{}/health",
        connectors[0]["id"].as_str().unwrap()
    ));
    let (_, health) = org.send("GET", &health_path, None, None).await;
    assert_eq!(health["breaker"]["state"], "open", "{health}");

    down.answer(|_, _| 200);
    org.restart_with(&db, tune).await;
    let restarted = std::time::Instant::now();
    eventually(
        "the parked deliveries delivered",
        Duration::from_secs(10),
        async || {
            let all = deliveries(&org, "").await;
            parked
                .iter()
                .all(|id| {
                    all.iter()
                        .any(|d| d["id"] == id.as_str() && d["status"] == "delivered")
                })
                .then_some(())
                .ok_or(all)
        },
    )
    .await;
    let all = deliveries(&org, "").await;
    for id in &parked {
        let d = all.iter().find(|d| d["id"] == id.as_str()).unwrap();
        assert_eq!(d["status"], "delivered", "{d}");
        assert!(d["lastError"].is_null(), "{d}");
    }
    assert!(restarted.elapsed() < std::time::Duration::from_secs(10));
    org.app.stop().await;
}

mod backfill_pushes_exactly_the_open_tasks {
    crate::on_both_backends!(super::backfill_pushes_exactly_the_open_tasks);
}

/// Work done before any integration existed; a backfill of open tasks then pushes exactly
/// those tasks' `task.created`, marked as backfill, with its progress reported.
async fn backfill_pushes_exactly_the_open_tasks(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let a = org.start("alice", "purchase", "A", json!({})).await; // fin1, fin2 open
    let b = org.start("dave", "purchase", "B", json!({})).await;
    org.act(&b, "fin1", "agree", json!({})).await; // carol open
    let done = org.start("alice", "leave", "L", json!({"days": "1"})).await;
    org.act(&done, "bob", "agree", json!({})).await; // approved: nothing open
    let mut open: BTreeSet<String> = BTreeSet::new();
    for id in [&a, &b, &done] {
        for t in org.instance(id).await["tasks"].as_array().unwrap() {
            if t["status"] == "open" {
                open.insert(t["taskId"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(open.len(), 3);

    let receiver = Receiver::start().await;
    let (s, r) = org
        .send(
            "POST",
            &org.path("/backfills"),
            None,
            Some(json!({"mode": "open"})),
        )
        .await;
    assert_eq!(
        (s, r["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_strategy")),
        "{r}"
    );
    connect(&org, &receiver, json!({"type": "none"})).await;
    assert!(
        deliveries(&org, "").await.is_empty(),
        "the strategy applies to new events only"
    );

    let (s, job) = org
        .send(
            "POST",
            &org.path("/backfills"),
            None,
            Some(json!({"mode": "open"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], 3);
    let id = job["id"].as_str().unwrap().to_owned();
    let progress = job_done(&org, &format!("/backfills/{id}")).await;
    assert_eq!(
        (progress["state"].as_str(), progress["delivered"].as_i64()),
        (Some("done"), Some(3)),
        "{progress}"
    );
    let mut pushed = BTreeSet::new();
    for c in receiver.accepted() {
        assert_eq!(c.header("x-flowhook-backfill"), Some("true"));
        match verify(&c, "APP_ACME", &org.system_token).event {
            flowhook_sign::event::TaskEvent::Created(t) => pushed.insert(t.task_id.unwrap()),
            other => panic!("a backfill of open tasks sent {other:?}"),
        };
    }
    assert_eq!(pushed, open, "exactly the open tasks");

    // The same from the command line, as an operator would, with its progress and summary.
    let cli = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowhook"));
        cmd.args(args)
            .env("FLOWHOOK_API_KEY", &org.key)
            .kill_on_drop(true);
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
                .await
                .expect("the CLI finishes")
                .unwrap()
        }
    };
    let server = format!("http://{}", org.app.addr);
    let out = cli(vec![
        "backfill".into(),
        "--server".into(),
        server.clone(),
        "--org".into(),
        "acme".into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": 3 of 3 delivered, 0 dead"), "{stdout}");
    let out = cli(vec![
        "redeliver".into(),
        "--server".into(),
        server,
        "--org".into(),
        "acme".into(),
        "--status".into(),
        "delivered".into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(": 6 of 6 delivered, 0 dead"),
        "both backfills' deliveries, followed to the end: {stdout}"
    );
    receiver
        .wait_until(10, "the redeliveries", |got| got.len() >= 12)
        .await;

    // Through the API: a job with its progress; the backfill keeps its own.
    let (s, r) = org
        .send(
            "POST",
            &org.path("/deliveries/redeliver?status=delivered&eventType=task.created"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["redelivered"].as_i64(), r["job"]["kind"].as_str()),
        (Some(6), Some("redelivery")),
        "{r}"
    );
    let job = r["job"]["id"].as_str().unwrap().to_owned();
    let progress = job_done(&org, &format!("/jobs/{job}")).await;
    assert_eq!(
        (
            progress["total"].as_i64(),
            progress["delivered"].as_i64(),
            progress["state"].as_str()
        ),
        (Some(6), Some(6), Some("done")),
        "{progress}"
    );
    let (_, backfill) = org
        .send("GET", &org.path(&format!("/backfills/{id}")), None, None)
        .await;
    assert_eq!(backfill["delivered"], 3, "{backfill}");
    org.app.stop().await;
}

mod the_egress_policy_refuses_private_targets_when_asked {
    crate::on_both_backends!(super::the_egress_policy_refuses_private_targets_when_asked);
}

/// With `egress_deny_private`, a receiver on loopback is refused — by IP literal and by a name
/// that resolves to it — and nothing reaches it; the attempts say why.
async fn the_egress_policy_refuses_private_targets_when_asked(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 60_000);
        c.egress_deny_private = true;
    })
    .await;
    let receiver = Receiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let mut actions = serde_json::Map::new();
    for (kind, base) in [("created", receiver.url.clone()), ("finished", by_name)] {
        let (_, con) = org
            .send(
                "POST",
                &org.path("/connectors"),
                None,
                Some(json!({"name": kind, "baseUrl": base})),
            )
            .await;
        let (_, a) = org
            .send(
                "POST",
                &org.path("/actions"),
                None,
                Some(json!({"connectorId": con["id"], "name": kind, "path": format!("/{kind}")})),
            )
            .await;
        actions.insert(kind.into(), a["id"].clone());
    }
    org.send(
        "PUT",
        &org.path("/sync-strategy"),
        None,
        Some(json!({"actions": actions, "ordered": false})),
    )
    .await;
    let buy = org.start("alice", "purchase", "laptop", json!({})).await;
    org.act(&buy, "fin1", "agree", json!({})).await;
    let kinds = eventually("both events refused", Duration::from_secs(20), async || {
        let mut kinds = BTreeSet::new();
        for d in deliveries(&org, "").await {
            let (_, detail) = org
                .send(
                    "GET",
                    &org.path(&format!("/deliveries/{}", d["id"].as_str().unwrap())),
                    None,
                    None,
                )
                .await;
            if let Some(a) = detail["attempts"].as_array().and_then(|a| a.first()) {
                assert_eq!(a["errorKind"], "egress", "{a}");
                assert!(
                    a["error"]
                        .as_str()
                        .unwrap()
                        .contains("refused by the egress policy"),
                    "{a}"
                );
                kinds.insert(d["eventType"].as_str().unwrap().to_owned());
            }
        }
        if kinds.len() == 2 {
            Ok(kinds)
        } else {
            Err(kinds)
        }
    })
    .await;
    assert_eq!(
        kinds,
        BTreeSet::from(["task.created".to_string(), "task.finished".to_string()]),
        "both paths refused"
    );
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the private receiver"
    );
    org.app.stop().await;
}

mod standard_webhooks_signing_with_rotation {
    crate::on_both_backends!(super::standard_webhooks_signing_with_rotation);
}

/// With Standard Webhooks on, every request also carries `webhook-*` headers that verify with
/// the secret shown once; after a rotation, requests verify with the old and the new secret.
async fn standard_webhooks_signing_with_rotation(db: TestDb) {
    use flowhook_sign::webhooks::{verify as verify_webhook, WebhookSecret, DEFAULT_TOLERANCE};
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    let (s, saved) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": actions, "standardWebhooks": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    let first = WebhookSecret::parse(
        saved["webhookSecret"]
            .as_str()
            .expect("the secret, shown once"),
    )
    .unwrap();
    let (_, again) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": actions, "standardWebhooks": true})),
        )
        .await;
    assert!(
        again.get("webhookSecret").is_none(),
        "shown only when created"
    );

    let check = |c: &Captured, secrets: &[WebhookSecret]| {
        let header = |name: &str| c.header(name);
        verify_webhook(
            secrets,
            header,
            &c.body,
            flowhook::support::now_ms() / 1000,
            DEFAULT_TOLERANCE,
        )
    };
    let buy = org.start("alice", "purchase", "laptop", json!({})).await;
    receiver
        .wait_until(10, "two created", |got| got.len() >= 2)
        .await;
    for c in receiver.accepted() {
        assert_eq!(c.header("webhook-id"), c.header("x-flowhook-event-id"));
        assert_eq!(check(&c, std::slice::from_ref(&first)), Ok(()));
        verify(&c, "APP_ACME", &org.system_token); // Yida's signature is still there
    }

    let (s, rotated) = org
        .send(
            "POST",
            &org.path("/sync-strategy/rotate-webhook-secret"),
            None,
            Some(json!({"graceSeconds": 3600})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let second = WebhookSecret::parse(rotated["webhookSecret"].as_str().unwrap()).unwrap();
    assert_ne!(first, second);
    let before = receiver.accepted().len();
    org.act(&buy, "fin1", "agree", json!({})).await;
    receiver
        .wait_until(10, "the events after the rotation", |got| {
            got.len() >= before + 2
        })
        .await;
    for c in &receiver.accepted()[before..] {
        assert_eq!(
            check(c, std::slice::from_ref(&first)),
            Ok(()),
            "the old secret still verifies during the grace"
        );
        assert_eq!(
            check(c, std::slice::from_ref(&second)),
            Ok(()),
            "the new secret verifies"
        );
        assert_eq!(c.header("webhook-signature").unwrap().split(' ').count(), 2);
    }
    org.app.stop().await;
}

mod another_engines_events_are_relayed {
    crate::on_both_backends!(super::another_engines_events_are_relayed);
}

/// Events from another workflow engine go through the same pipeline: numbered per instance,
/// delivered in order, signed with the app's token; a retry with the same `eventId` delivers
/// nothing twice; bad input and other organisations' apps are refused.
async fn another_engines_events_are_relayed(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    let created = json!({"type": "task.created", "processInstanceId": "camunda-42", "eventId": "cam-1", "payload": {
        "appType": "APP_ACME", "corpId": "acme", "taskId": "ext-t1", "title": "From Camunda", "actionerId": "bob",
        "processCode": "camunda-purchase", "dataMap": {"amount": 12}}});
    let (s, r) = org
        .send(
            "POST",
            "/api/v1/apps/APP_ACME/events",
            None,
            Some(created.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        (r["event"]["seq"].as_i64(), r["deliveries"].as_i64()),
        (Some(1), Some(1))
    );
    let (s, again) = org
        .send("POST", "/api/v1/apps/APP_ACME/events", None, Some(created))
        .await;
    assert_eq!(
        (
            s,
            again["event"]["id"].clone(),
            again["deliveries"].as_i64()
        ),
        (StatusCode::OK, r["event"]["id"].clone(), Some(0))
    );
    let finished = json!({"type": "task.finished", "processInstanceId": "camunda-42", "payload": {
        "appType": "APP_ACME", "corpId": "acme", "taskId": "ext-t1", "actualWorkId": "bob", "formInstId": "f-42"}});
    let (s, r) = org
        .send("POST", "/api/v1/apps/APP_ACME/events", None, Some(finished))
        .await;
    assert_eq!(
        (s, r["event"]["seq"].as_i64()),
        (StatusCode::CREATED, Some(2)),
        "{r}"
    );

    receiver
        .wait_until(10, "both relayed events", |got| got.len() >= 2)
        .await;
    let got = receiver.accepted();
    assert_eq!(got.len(), 2, "the retry was not delivered twice");
    assert_eq!(got.iter().map(seq_of).collect::<Vec<_>>(), [1, 2]);
    match verify(&got[0], "APP_ACME", &org.system_token).event {
        flowhook_sign::event::TaskEvent::Created(t) => {
            assert_eq!(t.task_id.as_deref(), Some("ext-t1"));
            assert_eq!(
                t.data_map["amount"].as_deref(),
                Some("12"),
                "form values become strings"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(got[0].header("x-flowhook-event-id"), Some("cam-1"));
    verify(&got[1], "APP_ACME", &org.system_token);

    let bad = |payload: Value| json!({"type": "task.created", "processInstanceId": "x", "payload": payload});
    for (name, path, body, status) in [
        (
            "another app's payload",
            "/api/v1/apps/APP_ACME/events",
            bad(json!({"appType": "APP_OTHER", "taskId": "t"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "another organisation in the payload",
            "/api/v1/apps/APP_ACME/events",
            bad(json!({"appType": "APP_ACME", "corpId": "globex", "taskId": "t"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "no task id",
            "/api/v1/apps/APP_ACME/events",
            bad(json!({"appType": "APP_ACME"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown type",
            "/api/v1/apps/APP_ACME/events",
            json!({"type": "task.teleported", "processInstanceId": "x", "payload": {}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown app",
            "/api/v1/apps/APP_NONE/events",
            bad(json!({"appType": "APP_NONE", "taskId": "t"})),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, r) = org.send("POST", path, None, Some(body)).await;
        assert_eq!((name, s), (name, status), "{r}");
    }
    // Another organisation's key does not see this app.
    org.key = org.other_org_key("globex", &["integration"]).await;
    let (s, _) = org
        .send(
            "POST",
            "/api/v1/apps/APP_ACME/events",
            None,
            Some(bad(json!({"appType": "APP_ACME", "taskId": "t"}))),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    org.app.stop().await;
}

mod test_fire_shows_each_exchange {
    crate::on_both_backends!(super::test_fire_shows_each_exchange);
}

/// Test fire sends a signed sample of each event to an action and shows each exchange;
/// nothing enters the delivery log.
async fn test_fire_shows_each_exchange(db: TestDb) {
    let org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    receiver.answer(|c, _| {
        if c.header("x-flowhook-event-type") == Some("task.deleted") {
            500
        } else {
            200
        }
    });
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    let (s, fired) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{}/test", actions["created"])),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fired}");
    let fired = fired.as_array().unwrap();
    assert_eq!(fired.len(), 5);
    let statuses: Vec<(String, i64)> = fired
        .iter()
        .map(|f| {
            (
                f["eventType"].as_str().unwrap().to_owned(),
                f["responseStatus"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("task.created", 200),
            ("task.finished", 200),
            ("task.cancelled", 200),
            ("task.deleted", 500),
            ("task.cc", 200)
        ]
        .map(|(k, s)| (k.to_string(), s))
    );
    let tokens = HashMap::from([("APP_ACME".to_string(), org.system_token.clone())]);
    for c in receiver.requests() {
        let kind: EventKind = c.header("x-flowhook-event-type").unwrap().parse().unwrap();
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = RawRequest {
            content_type: c.content_type(),
            body: &c.body,
            headers: &headers,
        };
        Verifier::new(&tokens)
            .verify(kind, &req, flowhook::support::now_ms())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    assert!(
        deliveries(&org, "").await.is_empty(),
        "test fire stores nothing"
    );
    let (s, _) = org
        .send(
            "POST",
            &org.path("/actions/act_nope/test"),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    org.app.stop().await;
}

mod test_fire_sends_what_a_delivery_sends {
    crate::on_both_backends!(super::test_fire_sends_what_a_delivery_sends);
}

/// With Standard Webhooks on, a test fire carries the `webhook-*` headers, signed over the body
/// it sent with the organisation's secret; it sends, and shows, the same headers as a real
/// delivery of the same action (the delivery log's attempt).
async fn test_fire_sends_what_a_delivery_sends(db: TestDb) {
    use flowhook_sign::webhooks::{verify as verify_webhook, WebhookSecret, DEFAULT_TOLERANCE};
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(
        &org,
        &receiver,
        json!({"type": "bearer", "token": "tok-0123456789"}),
    )
    .await;
    let (s, saved) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": actions, "standardWebhooks": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    let secret = WebhookSecret::parse(saved["webhookSecret"].as_str().unwrap()).unwrap();
    let names = |headers: &Value| -> BTreeSet<String> {
        headers
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap().to_owned())
            .collect()
    };

    let (s, fired) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{}/test", actions["created"])),
            None,
            Some(json!({"events": ["task.created"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fired}");
    let shown = &fired[0]["requestHeaders"];
    let test = receiver.requests().pop().expect("the test fire's request");
    assert_eq!(
        verify_webhook(
            std::slice::from_ref(&secret),
            |name| test.header(name),
            &test.body,
            flowhook::support::now_ms() / 1000,
            DEFAULT_TOLERANCE,
        ),
        Ok(()),
        "the test fire is signed with the organisation's secret"
    );
    assert_eq!(
        test.header("webhook-id"),
        test.header("x-flowhook-event-id")
    );
    verify(&test, "APP_ACME", &org.system_token);
    let shown_signature = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "webhook-signature")
        .map(|h| h[1].as_str().unwrap());
    assert_eq!(shown_signature, test.header("webhook-signature"), "{fired}");

    org.start("alice", "purchase", "laptop", json!({})).await;
    receiver
        .wait_until(10, "a delivered task.created", |got| {
            got.iter().skip(1).any(|c| kind_of(c) == EventKind::Created)
        })
        .await;
    let real = receiver.accepted()[1..]
        .iter()
        .find(|c| kind_of(c) == EventKind::Created)
        .cloned()
        .expect("a delivered task.created");
    let sent =
        |c: &Captured| -> BTreeSet<String> { c.headers.iter().map(|(k, _)| k.clone()).collect() };
    assert_eq!(
        sent(&test),
        sent(&real),
        "the same headers reach the receiver"
    );
    let delivered = all_delivered(&org).await;
    let created = delivered
        .iter()
        .find(|d| d["eventType"] == "task.created")
        .unwrap();
    let (_, detail) = org
        .send(
            "GET",
            &org.path(&format!("/deliveries/{}", created["id"].as_str().unwrap())),
            None,
            None,
        )
        .await;
    let logged = &detail["attempts"][0]["requestHeaders"];
    assert!(names(logged).contains("webhook-signature"), "{detail:#}");
    assert_eq!(names(shown), names(logged), "the same headers are shown");
    for log in [fired.to_string(), detail.to_string()] {
        assert!(!log.contains("tok-0123456789"), "{log}");
        assert!(!log.contains(&secret.expose()), "{log}");
    }
    org.app.stop().await;
}

mod gone_pauses_the_connector_until_resumed {
    crate::on_both_backends!(super::gone_pauses_the_connector_until_resumed);
}

/// `410 Gone` pauses the connector: nothing more is sent — not the retry, not new events —
/// until an operator resumes it; then everything waiting arrives, nothing lost.
async fn gone_pauses_the_connector_until_resumed(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 600_000)).await;
    let receiver = Receiver::start().await;
    receiver.answer(|_, earlier| if earlier.is_empty() { 410 } else { 200 });
    connect(&org, &receiver, json!({"type": "none"})).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    // The 410 is answered, and the connector paused.
    let connector = eventually(
        "the connector paused",
        Duration::from_secs(10),
        async || {
            let (s, list) = org.send("GET", &org.path("/connectors"), None, None).await;
            assert_eq!(s, StatusCode::OK);
            let connector = list[0].clone();
            if connector["pausedAt"].is_i64() {
                Ok(connector)
            } else {
                Err(connector)
            }
        },
    )
    .await;
    assert_eq!(receiver.requests().len(), 1);
    assert!(connector["pausedAt"].is_i64(), "paused: {connector}");
    assert!(connector["pausedReason"].as_str().unwrap().contains("410"));

    // Paused: the retry and a new instance's events wait.
    org.start("dave", "purchase", "desk", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(receiver.requests().len(), 1, "nothing sent while paused");
    let all = deliveries(&org, "").await;
    assert!(all.len() >= 4, "two tasks per instance: {all:#?}");
    assert!(
        all.iter().all(|d| d["status"] == "pending"),
        "everything waits: {all:#?}"
    );

    // Resumed: everything waiting is sent at once.
    let id = connector["id"].as_str().unwrap();
    let (s, r) = org
        .send(
            "POST",
            &org.path(&format!("/connectors/{id}/resume")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["connector"]["pausedAt"].is_null(), "{r}");
    assert!(r["due"].as_i64().unwrap() >= 1, "{r}");
    let delivered = all_delivered(&org).await;
    assert_eq!(delivered.len(), all.len());
    let got: BTreeSet<String> = receiver
        .accepted()
        .iter()
        .map(|c| c.header("x-flowhook-event-id").unwrap().to_owned())
        .collect();
    assert_eq!(got.len(), all.len(), "every waiting event arrived");

    // An operator can pause it too; an unknown connector is a 404.
    let (s, r) = org
        .send(
            "POST",
            &org.path(&format!("/connectors/{id}/pause")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["connector"]["pausedReason"], "paused by an operator");
    let (s, _) = org
        .send("POST", &org.path("/connectors/con_nope/resume"), None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    org.app.stop().await;
}

/// PostgreSQL, many nodes: a dispatcher wakes on a `NOTIFY` from any node, not only on its own
/// writer's commits or its poll (set to a minute here, so only the notification can wake it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dispatchers_wake_on_notify() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("not run: set FLOWHOOK_TEST_POSTGRES to run this on PostgreSQL");
        return;
    };
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.delivery_poll_ms = 60_000;
    })
    .await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    let first = all_delivered(&org).await.len();
    // Made due again behind this node's back (no in-process wake-up) …
    let n = org
        .app
        .store
        .redeliver(
            "acme",
            &flowhook::store::deliveries::DeliveryFilter::default(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n as usize, first);
    // … and announced as another node announces its work: the LISTEN wakes the dispatcher.
    org.app.store.notify_deliveries().await.unwrap();
    receiver
        .wait_until(10, "the redeliveries", |got| got.len() >= 2 * first)
        .await;
    org.app.stop().await;
}

mod a_lane_moves_on_as_soon_as_its_head_is_delivered {
    crate::on_both_backends!(super::a_lane_moves_on_as_soon_as_its_head_is_delivered);
}

/// The later deliveries of an instance, created while its head is in flight (a slow receiver),
/// leave as soon as the head is delivered: the writer, recording the head, sees the lane
/// waiting and wakes the dispatcher — the poll is set to a minute here, and would be the only
/// other way out.
async fn a_lane_moves_on_as_soon_as_its_head_is_delivered(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.delivery_poll_ms = 60_000;
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.delay(std::time::Duration::from_millis(300));
    connect(&org, &receiver, json!({"type": "none"})).await;
    // Two `task.created` (fin1, fin2): the second waits behind the first.
    let buy = org.start("alice", "purchase", "laptop", json!({})).await;
    // While the first is in flight: `task.finished`, `task.cancelled`, `task.created` (carol).
    org.act(&buy, "fin2", "agree", json!({})).await;
    receiver
        .wait_until(15, "the instance's five events", |got| got.len() >= 5)
        .await;
    let seqs: Vec<i64> = receiver.accepted().iter().map(seq_of).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seqs, sorted, "in the instance's order");
    assert_eq!(seqs.len(), 5, "each once: {seqs:?}");
    org.app.stop().await;
}

mod stopping_waits_for_the_requests_in_flight {
    crate::on_both_backends!(super::stopping_waits_for_the_requests_in_flight);
}

/// A node told to stop while a slow receiver holds a request: the stop waits for the answer
/// (within the grace) and the attempt is written before the node ends — not cut off and sent
/// again by the next node. What was still queued goes after the restart, each once.
async fn stopping_waits_for_the_requests_in_flight(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.shutdown_grace_secs = 10;
    })
    .await;
    let receiver = Receiver::start().await;
    let in_flight = Arc::new(AtomicBool::new(false));
    let first = in_flight.clone();
    // The first request takes 1.5 s; the rest are answered at once.
    receiver.delay_when(move |_| {
        if first.swap(true, Ordering::SeqCst) {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_millis(1500)
        }
    });
    connect(&org, &receiver, json!({"type": "none"})).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    eventually("a request in flight", Duration::from_secs(10), async || {
        in_flight.load(Ordering::SeqCst)
    })
    .await;
    assert!(in_flight.load(Ordering::SeqCst), "a request is in flight");
    let stopping = std::time::Instant::now();
    org.app.shut_down().await;
    assert!(
        stopping.elapsed() >= std::time::Duration::from_millis(1000),
        "the stop waited for the answer ({:?})",
        stopping.elapsed()
    );
    let answered = receiver.accepted();
    assert_eq!(
        answered.len(),
        1,
        "the slow request was answered, not cut off"
    );

    // Read with a connection of its own, before any node runs again.
    let config = db.config();
    let store =
        flowhook::store::Store::connect(&config.database_url, 2, std::time::Duration::from_secs(5))
            .await
            .unwrap();
    let all = store
        .deliveries(&org.corp, &Default::default(), None, None, 100)
        .await
        .unwrap();
    let event = answered[0]
        .header("x-flowhook-event-id")
        .unwrap()
        .to_owned();
    let sent: Vec<_> = all.iter().filter(|d| d.event_id == event).collect();
    assert_eq!(sent.len(), 1, "{all:#?}");
    assert_eq!(
        sent[0].status,
        flowhook::store::deliveries::DeliveryStatus::Delivered,
        "{all:#?}"
    );
    assert_eq!(sent[0].attempts, 1, "{all:#?}");
    let attempts = store
        .delivery_attempts(&org.corp, &sent[0].id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].response_status, Some(200));
    store.close().await;

    // The next node sends the rest, and nothing twice.
    org.restart_with(&db, |c| fast(c, 600_000)).await;
    let all = all_delivered(&org).await;
    let events: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|c| c.header("x-flowhook-event-id").unwrap().to_owned())
        .collect();
    let distinct: BTreeSet<&String> = events.iter().collect();
    assert_eq!(
        distinct.len(),
        events.len(),
        "no event sent twice: {events:?}"
    );
    assert_eq!(events.len(), all.len());
    org.app.stop().await;
}

mod a_busy_dispatcher_claims_again_as_its_sends_finish {
    crate::on_both_backends!(super::a_busy_dispatcher_claims_again_as_its_sends_finish);
}

/// With every slot busy, the dispatcher claims again as soon as its sends finish — not at its
/// next poll, set to a minute here: a recorded delivery wakes nobody, most leave nothing
/// behind. (One slot: most deliveries go through claims, one at a time.)
async fn a_busy_dispatcher_claims_again_as_its_sends_finish(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.delivery_poll_ms = 60_000;
        c.delivery_concurrency = 1;
    })
    .await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    for i in 0..12 {
        org.start("alice", "purchase", &format!("laptop {i}"), json!({}))
            .await;
    }
    let all = all_delivered(&org).await;
    assert!(all.len() >= 12, "{} deliveries", all.len());
    assert_eq!(receiver.requests().len(), all.len(), "each sent once");
    org.app.stop().await;
}

mod changes_apply_to_the_very_next_command {
    crate::on_both_backends!(super::changes_apply_to_the_very_next_command);
}

/// The writer reads the directory, the sync strategy and the latest process versions once a
/// batch — and on SQLite carries them from batch to batch. A change must still apply to the
/// command sent right after it was answered.
async fn changes_apply_to_the_very_next_command(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    let actions = connect(&org, &receiver, json!({"type": "none"})).await;
    let first = org.start("alice", "purchase", "first", json!({})).await;
    assert_eq!(org.todo_users(&first).await, ["fin1", "fin2"]);

    // The directory: the finance role's members.
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/roles/finance"),
            None,
            Some(json!({"name": "finance", "members": ["hr1"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let second = org.start("alice", "purchase", "second", json!({})).await;
    assert_eq!(org.todo_users(&second).await, ["hr1"], "the new members");

    // The sync strategy: only the leave process from now on.
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": actions, "processCodes": ["leave"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let third = org.start("alice", "purchase", "third", json!({})).await;

    // The process: a second version.
    let (s, stored) = org
        .send(
            "PUT",
            &org.path("/processes/purchase?appType=APP_ACME"),
            None,
            Some(flowhook::demo::purchase_document()),
        )
        .await;
    assert_eq!((s, &stored["version"]), (StatusCode::CREATED, &json!(2)));
    let fourth = org.start("alice", "purchase", "fourth", json!({})).await;
    assert_eq!(org.instance(&fourth).await["processVersion"], 2);
    assert_eq!(org.instance(&third).await["processVersion"], 1);

    for (id, expected) in [(&first, 2), (&second, 1), (&third, 0), (&fourth, 0)] {
        let made = deliveries(&org, &format!("&instanceId={id}")).await;
        assert_eq!(made.len(), expected, "deliveries of {id}: {made:?}");
    }
    org.app.stop().await;
}
