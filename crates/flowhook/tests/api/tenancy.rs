//! Walls between organisations: two organisations on one Flowhook share endpoints, instance ids
//! and event ids; what one does — its endpoint down, its ids colliding with the other's — never
//! blocks, renumbers, breaks or reveals the other's.

use flowhook_testkit::eventually;
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

/// A connector of `org` to `base_url` (with `extra` fields such as `maxConcurrency`), five
/// actions `/created` … and the strategy; returns the connector's id.
async fn connect_to(org: &Org, base_url: &str, extra: Value) -> String {
    let mut body = json!({"name": "to", "baseUrl": base_url, "timeoutMs": 10_000});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let (s, con) = org
        .send("POST", &org.path("/connectors"), None, Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let mut actions = serde_json::Map::new();
    for kind in ["created", "finished", "cancelled", "deleted", "cc"] {
        let (s, a) = org
            .send(
                "POST",
                &org.path("/actions"),
                None,
                Some(json!({"connectorId": con["id"], "name": kind, "path": format!("/{kind}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        actions.insert(kind.into(), a["id"].clone());
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
    con["id"].as_str().unwrap().to_owned()
}

async fn health(org: &Org, connector: &str) -> Value {
    let (s, h) = org
        .send(
            "GET",
            &org.path(&format!("/connectors/{connector}/health")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    h
}

/// Waits (10 s at most) until the connector's breaker is open; `each` checks every health
/// report seen on the way.
async fn breaker_opens(org: &Org, connector: &str, what: &str, each: impl Fn(&Value)) {
    eventually(what, std::time::Duration::from_secs(10), async || {
        let h = health(org, connector).await;
        each(&h);
        if h["breaker"]["state"] == "open" {
            Ok(())
        } else {
            Err(h)
        }
    })
    .await
}

mod one_organisations_failures_never_open_anothers_breaker {
    crate::on_both_backends!(super::one_organisations_failures_never_open_anothers_breaker);
}

/// Two organisations send to the same host:port. A's requests fail there and open A's breaker;
/// B's go on arriving at once (the breaker was one per host:port, and B's deliveries were held
/// behind A's failures).
async fn one_organisations_failures_never_open_anothers_breaker(db: TestDb) {
    let mut a = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.breaker_threshold = 2;
        c.breaker_first_cooldown_ms = 600_000;
        c.breaker_cooldown_ms = 600_000;
    })
    .await;
    let b_tenant = a.add_tenant("globex").await;
    let shared = Receiver::start().await;
    shared.answer(|c, _| if c.path.starts_with("/a/") { 500 } else { 200 });
    let a_con = connect_to(&a, &format!("{}/a", shared.url), json!({})).await;
    for i in 0..4 {
        a.start("alice", "leave", &format!("a{i}"), json!({"days": "1"}))
            .await;
    }
    shared
        .wait_for_requests(10, "A's failures", |got| got.len() >= 2)
        .await;
    breaker_opens(&a, &a_con, "A's breaker open", |_| ()).await;

    let mut b = a;
    b.become_tenant(&b_tenant);
    let b_con = connect_to(&b, &format!("{}/b", shared.url), json!({})).await;
    for i in 0..4 {
        b.start("alice", "leave", &format!("b{i}"), json!({"days": "1"}))
            .await;
    }
    shared
        .wait_until(10, "B's four `created` at the same host:port", |got| {
            got.iter().filter(|c| c.path == "/b/created").count() >= 4
        })
        .await;
    let h = health(&b, &b_con).await;
    assert_eq!(
        (
            h["breaker"]["state"].as_str(),
            h["breaker"]["consecutiveFailures"].as_u64()
        ),
        (Some("closed"), Some(0)),
        "{h}"
    );
    for c in shared.accepted() {
        verify(&c, "APP_GLOBEX", &b.system_token);
    }
    b.app.stop().await;
}

mod a_request_that_never_left_is_dead_at_once {
    crate::on_both_backends!(super::a_request_that_never_left_is_dead_at_once);
}

/// A delivery the egress policy refuses never left this machine: it is dead at once with its
/// reason (it was retried for 3 days), and it is not the endpoint's failure (it opened the
/// breaker the endpoint shares with the organisation's other connectors).
async fn a_request_that_never_left_is_dead_at_once(db: TestDb) {
    let org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.breaker_threshold = 2;
        c.egress_deny = vec!["127.0.0.2/32".into()];
    })
    .await;
    let receiver = Receiver::start().await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    let refused = connect_to(&org, &format!("http://127.0.0.2:{port}"), json!({})).await;
    let mut org = org;
    for i in 0..3 {
        org.start("alice", "leave", &format!("l{i}"), json!({"days": "1"}))
            .await;
    }
    let wait = std::time::Duration::from_secs(10);
    let dead = eventually("refused deliveries dead at once", wait, async || {
        let dead = crate::delivery::deliveries(&org, "&status=dead").await;
        if dead.len() >= 3 {
            Ok(dead)
        } else {
            Err(crate::delivery::deliveries(&org, "").await)
        }
    })
    .await;
    for d in &dead {
        assert_eq!(d["attempts"], 1, "{d}");
        assert!(
            d["lastError"].as_str().unwrap().contains("egress"),
            "the reason is shown: {d}"
        );
    }
    let h = health(&org, &refused).await;
    assert_eq!(
        (
            h["breaker"]["state"].as_str(),
            h["breaker"]["consecutiveFailures"].as_u64()
        ),
        (Some("closed"), Some(0)),
        "not the endpoint's failure: {h}"
    );
    assert!(receiver.requests().is_empty());
    org.app.stop().await;
}

mod credentials_that_cannot_be_sent_are_refused {
    crate::on_both_backends!(super::credentials_that_cannot_be_sent_are_refused);
}

/// Headers that cannot be sent — CR, LF, NUL in a name or value, an invalid header name — are
/// refused when the connector is saved (an API key header named `bad header\r\n` was accepted,
/// and every attempt then failed on this machine).
async fn credentials_that_cannot_be_sent_are_refused(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let base = json!({"name": "x", "baseUrl": "http://127.0.0.1:9/cb"});
    let mut good = None;
    for (auth, ok) in [
        (
            json!({"type": "apiKey", "in": "header", "name": "bad header\r\n", "value": "k"}),
            false,
        ),
        (
            json!({"type": "apiKey", "in": "header", "name": "x-key", "value": "k\r\nx-evil: 1"}),
            false,
        ),
        (
            json!({"type": "apiKey", "in": "header", "name": "x-key", "value": "k\u{0}"}),
            false,
        ),
        (
            json!({"type": "apiKey", "in": "query", "name": "key\n", "value": "k"}),
            false,
        ),
        (json!({"type": "bearer", "token": "t\r\n"}), false),
        (
            json!({"type": "basic", "username": "a:b", "password": "p"}),
            false,
        ),
        (
            json!({"type": "basic", "username": "a", "password": "p\n"}),
            false,
        ),
        (
            json!({"type": "apiKey", "in": "header", "name": "x-key", "value": "k"}),
            true,
        ),
    ] {
        let mut body = base.clone();
        body["auth"] = auth.clone();
        let (s, r) = org
            .send("POST", &org.path("/connectors"), None, Some(body))
            .await;
        if ok {
            assert_eq!(s, StatusCode::CREATED, "{auth}: {r}");
            good = Some(r["id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{auth}: {r}");
            assert!(r["message"].as_str().unwrap().contains("auth."), "{r}");
        }
    }
    // An edit is held to the same rule.
    let id = good.unwrap();
    let mut edit = base.clone();
    edit["auth"] =
        json!({"type": "apiKey", "in": "header", "name": "bad header\r\n", "value": "k"});
    let (s, r) = org
        .send(
            "PUT",
            &org.path(&format!("/connectors/{id}")),
            None,
            Some(edit),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let mut body = base.clone();
    body["defaultHeaders"] = json!({"x-tenant": "a\r\nx-evil: 1"});
    let (s, r) = org
        .send("POST", &org.path("/connectors"), None, Some(body))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    org.app.stop().await;
}

mod a_hanging_endpoint_holds_only_its_cap {
    crate::on_both_backends!(super::a_hanging_endpoint_holds_only_its_cap);
}

/// An organisation's endpoint hangs. It holds at most its connector's `maxConcurrency` of the
/// node's delivery slots, its breaker opens on the hanging requests, and another organisation's
/// deliveries keep arriving at once (the hanging requests took every slot until they timed out).
async fn a_hanging_endpoint_holds_only_its_cap(db: TestDb) {
    let mut a = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.delivery_concurrency = 8;
        c.breaker_threshold = 2;
        c.breaker_first_cooldown_ms = 600_000;
        c.breaker_cooldown_ms = 600_000;
    })
    .await;
    let c_tenant = a.add_tenant("globex").await;
    let hanging = Receiver::start().await;
    hanging.delay(std::time::Duration::from_secs(30));
    let a_con = connect_to(
        &a,
        &hanging.url,
        json!({"maxConcurrency": 2, "timeoutMs": 20_000}),
    )
    .await;
    // More than one park statement's worth (`PARK_STEP`, 50) wait behind the two hanging.
    for i in 0..62 {
        a.start("alice", "leave", &format!("a{i}"), json!({"days": "1"}))
            .await;
    }
    breaker_opens(&a, &a_con, "the hanging requests open the breaker", |h| {
        assert!(h["breaker"]["inFlight"].as_u64().unwrap() <= 2, "{h}");
    })
    .await;
    // The deliveries it sent back busy are parked at once, by a few statements (its claims
    // leave it out meanwhile): each waits for the probe, none is due.
    let opened = flowhook::support::now_ms();
    eventually(
        "the sixty waiting deliveries parked",
        std::time::Duration::from_secs(3),
        async || {
            let parked: Vec<Value> = crate::delivery::deliveries(&a, "&status=pending")
                .await
                .into_iter()
                .filter(|d| {
                    d["lastError"] == "held: the endpoint's circuit breaker is open"
                        && d["nextAttemptAt"].as_i64().unwrap() > opened + 240_000
                })
                .collect();
            if parked.len() == 60 {
                Ok(())
            } else {
                Err(parked.len())
            }
        },
    )
    .await;

    let mut c = a;
    c.become_tenant(&c_tenant);
    let healthy = Receiver::start().await;
    connect_to(&c, &healthy.url, json!({})).await;
    for i in 0..6 {
        c.start("alice", "leave", &format!("c{i}"), json!({"days": "1"}))
            .await;
    }
    // Well inside the hanging requests' 20 s timeout.
    healthy
        .wait_until(5, "the other organisation's six `created`", |got| {
            got.iter().filter(|r| r.path == "/created").count() >= 6
        })
        .await;
    let got = healthy.accepted();
    for r in &got {
        verify(r, "APP_GLOBEX", &c.system_token);
    }
    c.app.stop().await;
}

mod metrics_name_connectors_and_can_be_locked {
    crate::on_both_backends!(super::metrics_name_connectors_and_can_be_locked);
}

/// `/metrics` labels breakers with connector ids, never a tenant's host:port, and with
/// `metrics_token` set it answers only to that token.
async fn metrics_name_connectors_and_can_be_locked(db: TestDb) {
    const TOKEN: &str = "metrics-token-0123456789";
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.metrics_token = Some(TOKEN.into());
    })
    .await;
    let receiver = Receiver::start().await;
    let con = connect_to(&org, &receiver.url, json!({})).await;
    org.start("alice", "leave", "l", json!({"days": "1"})).await;
    receiver
        .wait_until(10, "a delivery", |got| !got.is_empty())
        .await;
    let url = org.app.url("/metrics");
    let client = &org.app.client;
    for auth in [None, Some("wrong-token-0123456789"), Some(org.key.as_str())] {
        let mut req = client.get(&url);
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{auth:?}"
        );
    }
    let text = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!("flowhook_breaker_state{{connector=\"{con}\"}} 0")),
        "{text}"
    );
    let host = receiver.url.trim_start_matches("http://");
    assert!(!text.contains(host), "no tenant's host:port in {text}");
    org.app.stop().await;
}

mod a_misbehaving_neighbour_costs_nothing {
    crate::on_both_backends!(super::a_misbehaving_neighbour_costs_nothing);
}

/// Every misbehaviour at once, by one organisation, on the endpoint's host:port the other
/// uses too: half of acme's pushes hang (30 s), the other half are refused (503), it tries a
/// connector with a header that cannot be sent and an event id with CR/LF, and relays the
/// instance ids and event ids globex relays. Globex's pushes — engine and relayed, to the same
/// host:port — all arrive at once, each instance's in order, signed with globex's token,
/// numbered in globex's lanes; nothing of one reaches the other.
async fn a_misbehaving_neighbour_costs_nothing(db: TestDb) {
    let mut acme = Org::setup_with(&db, "acme", |c| {
        fast(c, 600_000);
        c.delivery_concurrency = 16;
    })
    .await;
    let globex_tenant = acme.add_tenant("globex").await;
    let shared = Receiver::start().await;
    let hangs = |c: &crate::receiver::Captured| {
        c.path.starts_with("/acme/") && String::from_utf8_lossy(&c.body).contains("hang-")
    };
    shared.delay_when(move |c| {
        if hangs(c) {
            std::time::Duration::from_secs(30)
        } else {
            std::time::Duration::ZERO
        }
    });
    shared.answer(|c, _| {
        if c.path.starts_with("/acme/") {
            503
        } else {
            200
        }
    });
    connect_to(
        &acme,
        &format!("{}/acme", shared.url),
        json!({"timeoutMs": 20_000}),
    )
    .await;
    // What cannot be sent is refused when saved, not stored to fail later.
    let (s, r) = acme
        .send(
            "POST",
            &acme.path("/connectors"),
            None,
            Some(json!({"name": "bad", "baseUrl": shared.url, "defaultHeaders": {"bad header\r\n": "x"}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let (s, r) = ingest(&acme, relayed("acme", "order-1", Some("e\r\n1"), false)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    // acme floods: instances whose pushes hang or are refused, and the ids globex relays.
    for i in 0..20 {
        let title = if i % 2 == 0 { "hang-" } else { "down-" };
        let id = acme
            .start(
                "alice",
                "leave",
                &format!("{title}{i}"),
                json!({"days": "1"}),
            )
            .await;
        if i % 2 == 0 {
            let (s, r) = acme
                .send(
                    "POST",
                    &acme.path(&format!("/instances/{id}/withdraw")),
                    Some("alice"),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{r}");
        }
    }
    for i in 0..5 {
        for (event, finish) in [("e-1", false), ("e-2", true)] {
            let (s, r) = ingest(
                &acme,
                relayed(
                    "acme",
                    &format!("order-{i}"),
                    Some(&format!("{event}-{i}")),
                    finish,
                ),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{r}");
        }
    }
    shared
        .wait_for_requests(10, "acme's refused pushes", |got| {
            got.iter().any(|c| c.path.starts_with("/acme/"))
        })
        .await;

    // globex, on the same Flowhook and the same host:port.
    let mut globex = acme;
    globex.become_tenant(&globex_tenant);
    connect_to(&globex, &format!("{}/globex", shared.url), json!({})).await;
    let mut engine = Vec::new();
    for i in 0..10 {
        engine.push(
            globex
                .start(
                    "alice",
                    "leave",
                    &format!("globex-{i}"),
                    json!({"days": "1"}),
                )
                .await,
        );
    }
    for i in 0..5 {
        for (event, finish) in [("e-1", false), ("e-2", true)] {
            let (s, r) = ingest(
                &globex,
                relayed(
                    "globex",
                    &format!("order-{i}"),
                    Some(&format!("{event}-{i}")),
                    finish,
                ),
            )
            .await;
            assert_eq!(
                s,
                StatusCode::CREATED,
                "globex's own ids are new to globex: {r}"
            );
        }
    }
    // Well inside acme's hanging requests' 20 s timeout: nothing waited for them.
    shared
        .wait_until(8, "globex's 10 engine and 10 relayed pushes", |got| {
            got.iter()
                .filter(|c| c.path.starts_with("/globex/"))
                .count()
                >= 20
        })
        .await;
    let got: Vec<_> = shared
        .accepted()
        .into_iter()
        .filter(|c| c.path.starts_with("/globex/"))
        .collect();
    assert_eq!(got.len(), 20, "each once");
    let mut lanes: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for c in &got {
        let event = verify(c, "APP_GLOBEX", &globex.system_token);
        assert!(
            !String::from_utf8_lossy(&c.body).contains("acme"),
            "nothing of acme's in globex's pushes"
        );
        let task = match &event.event {
            flowhook_sign::event::TaskEvent::Created(t) => t.task_id.clone().unwrap(),
            flowhook_sign::event::TaskEvent::Finished(t) => t.task_id.clone(),
            other => panic!("globex sent only created and finished: {other:?}"),
        };
        let instance = task.rsplit_once("-t").unwrap().0.to_owned();
        lanes.entry(instance).or_default().push(seq_of(c));
    }
    for id in &engine {
        assert_eq!(lanes[id.as_str()], [1], "{id}");
    }
    for i in 0..5 {
        assert_eq!(
            lanes[&format!("order-{i}")],
            [1, 2],
            "order-{i} in globex's own lane"
        );
    }
    assert!(
        shared
            .requests()
            .iter()
            .filter(|c| c.path.starts_with("/acme/"))
            .all(|c| !String::from_utf8_lossy(&c.body).contains("globex")),
        "nothing of globex's reached acme's endpoints"
    );
    globex.app.stop().await;
}
