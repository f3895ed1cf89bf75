//! The receiver check (`POST …/actions/{id}/check`) against three real receivers on 127.0.0.1:
//! `flowhook-inbox`, the reference receiver (every probe passes, and the closing
//! `task.deleted` leaves the probe users' lists empty); a receiver that accepts everything
//! (FAIL on a forged sign, a wrong token and a missing sign, WARN on a replay); and one that
//! answers 500 to an event id it has seen (FAIL on the duplicate probe). The scorecards are
//! kept and listed per action.

use std::collections::BTreeMap;

use flowhook_testkit::Serving;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestDb;
use crate::receiver::Receiver;
use crate::task_center::Org;

/// A real flowhook-inbox on 127.0.0.1 (its own SQLite file) with source `flowhook` knowing
/// `app_type`'s token.
struct Inbox {
    url: String,
    _db: TestDb,
    server: Serving<anyhow::Error>,
}

impl Inbox {
    async fn start(app_type: &str, token: &str, max_skew_secs: u64) -> Inbox {
        use flowhook_inbox::config::{Config, Source, Token, Tokens};
        let db = TestDb::sqlite().await;
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = db.url.clone();
        config.max_skew_secs = max_skew_secs;
        config.sources = vec![Source {
            name: "flowhook".into(),
            apps: BTreeMap::from([(app_type.into(), Tokens::One(Token(token.into())))]),
        }];
        config.validate().expect("a valid inbox configuration");
        let app = flowhook_inbox::Application::build(config)
            .await
            .expect("the inbox builds");
        let url = format!("http://{}", app.local_addr());
        let server = Serving::spawn(|shutdown| app.run_until_stopped(shutdown));
        Inbox {
            url,
            _db: db,
            server,
        }
    }

    /// Every item of `user`'s four lists.
    async fn items(&self, user: &str) -> Vec<Value> {
        let mut all = Vec::new();
        for list in ["todo", "done", "cc", "created"] {
            let page: Value = reqwest::get(format!(
                "{}/users/{user}/tasks?list={list}&limit=500",
                self.url
            ))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            all.extend(page["items"].as_array().expect("items").iter().cloned());
        }
        all
    }

    async fn stop(mut self) {
        self.server.stop().await;
    }
}

/// A connector to `base_url` with an action per kind at `{path_prefix}/{kind}` (one action
/// for all when `per_kind` is false), and the strategy mapping each kind to its action.
/// Returns the `task.created` action's id.
async fn wire_up(org: &Org, base_url: &str, path_prefix: &str, per_kind: bool) -> String {
    wire_up_with(org, base_url, path_prefix, per_kind, json!({})).await
}

/// [`wire_up`], the connector input completed by `more` (e.g. its authentication).
async fn wire_up_with(
    org: &Org,
    base_url: &str,
    path_prefix: &str,
    per_kind: bool,
    more: Value,
) -> String {
    let mut input = json!({"name": "receiver", "baseUrl": base_url, "timeoutMs": 5000});
    input
        .as_object_mut()
        .unwrap()
        .extend(more.as_object().unwrap().clone());
    let (s, con) = org
        .send("POST", &org.path("/connectors"), None, Some(input))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let mut actions = serde_json::Map::new();
    let kinds: &[&str] = if per_kind {
        &["created", "finished", "cancelled", "deleted", "cc"]
    } else {
        &["created"]
    };
    for kind in kinds {
        let (s, a) = org
            .send(
                "POST",
                &org.path("/actions"),
                None,
                Some(json!({"connectorId": con["id"], "name": kind, "path": format!("{path_prefix}/{kind}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        actions.insert((*kind).into(), a["id"].clone());
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
    actions["created"].as_str().unwrap().to_owned()
}

/// Runs the check of `action`; returns the stored check.
async fn check(org: &Org, action: &str, body: Value) -> Value {
    let (s, stored) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{action}/check")),
            None,
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{stored}");
    assert!(
        stored["id"].as_str().unwrap().starts_with("chk_"),
        "{stored}"
    );
    stored
}

/// Probe name → grade.
fn grades(stored: &Value) -> BTreeMap<String, String> {
    stored["scorecard"]["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["probe"].as_str().unwrap().to_owned(),
                p["grade"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn probe<'a>(stored: &'a Value, name: &str) -> &'a Value {
    stored["scorecard"]["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["probe"] == name)
        .unwrap_or_else(|| panic!("no probe {name}: {stored}"))
}

async fn inbox_passes_every_probe_and_is_left_clean(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let app_type = "APP_ACME";
    let inbox = Inbox::start(app_type, &org.system_token, 300).await;
    let action = wire_up(&org, &inbox.url, "/callbacks/flowhook", true).await;

    let stored = check(&org, &action, json!({"encodings": ["form", "json"]})).await;
    let card = &stored["scorecard"];
    let g = grades(&stored);
    for name in [
        "created",
        "duplicate",
        "out_of_order",
        "forged_sign",
        "replay",
        "wrong_token",
        "missing_sign",
        "kinds_form",
        "kinds_json",
        "concurrency",
        "cleanup",
    ] {
        assert_eq!(
            g.get(name).map(String::as_str),
            Some("PASS"),
            "{name}: {card:#}"
        );
    }
    assert_eq!(
        (card["warned"].as_u64(), card["failed"].as_u64()),
        (Some(0), Some(0)),
        "{card:#}"
    );
    // The evidence: the refusal's status and the inbox's own words.
    let forged = probe(&stored, "forged_sign");
    assert_eq!(forged["status"], 401, "{forged}");
    assert!(
        forged["answer"].as_str().unwrap().contains("bad_signature"),
        "{forged}"
    );
    assert_eq!(probe(&stored, "replay")["status"], 401);
    assert!(probe(&stored, "replay")["answer"]
        .as_str()
        .unwrap()
        .contains("stale_date_time"));
    assert!(probe(&stored, "concurrency")["verdict"]
        .as_str()
        .unwrap()
        .contains("p99"));

    // Nothing of the probes is left in any list of any probe user.
    let users: Vec<String> = serde_json::from_value(card["users"].clone()).unwrap();
    assert_eq!(users.len(), 3);
    for user in &users {
        assert!(user.starts_with("check-"), "{user}");
        assert_eq!(inbox.items(user).await, Vec::<Value>::new(), "{user}");
    }

    // Kept and listed per action, newest first.
    let again = check(&org, &action, json!({})).await;
    let (s, list) = org
        .send(
            "GET",
            &org.path(&format!("/actions/{action}/checks")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            again["id"].as_str().unwrap(),
            stored["id"].as_str().unwrap()
        ]
    );
    assert_eq!(list[1]["scorecard"]["passed"], card["passed"]);
    inbox.stop().await;
    org.app.stop().await;
}

mod inbox {
    crate::on_both_backends!(super::inbox_passes_every_probe_and_is_left_clean);
}

async fn accepting_everything_fails_forged_and_wrong_token_and_warns_on_replay(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let receiver = Receiver::start().await;
    let action = wire_up(&org, &receiver.url, "/hook", false).await;

    let stored = check(&org, &action, json!({})).await;
    let g = grades(&stored);
    assert_eq!(g["forged_sign"], "FAIL", "{stored:#}");
    assert_eq!(g["wrong_token"], "FAIL");
    assert_eq!(g["missing_sign"], "FAIL");
    assert_eq!(g["replay"], "WARN");
    for name in [
        "created",
        "duplicate",
        "out_of_order",
        "kinds",
        "concurrency",
        "cleanup",
    ] {
        assert_eq!(g[name], "PASS", "{name}: {stored:#}");
    }
    let forged = probe(&stored, "forged_sign");
    assert_eq!(forged["status"], 200);
    assert!(forged["verdict"]
        .as_str()
        .unwrap()
        .contains("accepts forged requests"));
    assert!(
        forged["advice"].as_str().unwrap().contains("Verifying"),
        "{forged}"
    );
    assert!(probe(&stored, "replay")["verdict"]
        .as_str()
        .unwrap()
        .contains("accepts replays"));
    assert_eq!(stored["scorecard"]["failed"], 3);

    // What the receiver saw: every probe marked, every id a check's, titles saying so.
    let requests = receiver.requests();
    assert!(requests.len() >= 30, "{}", requests.len());
    for r in &requests {
        assert_eq!(r.header("x-flowhook-check"), Some("true"));
        assert!(r
            .header("x-flowhook-event-id")
            .unwrap()
            .starts_with("check-"));
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("check-"), "{body}");
    }
    let created = &requests[0];
    let body = String::from_utf8_lossy(&created.body);
    assert!(body.contains("receiver+check"), "{body}");
    // The last one deletes the probe instance.
    let last = requests.last().unwrap();
    assert_eq!(last.header("x-flowhook-event-type"), Some("task.deleted"));
    org.app.stop().await;
}

mod accepting_everything {
    crate::on_both_backends!(
        super::accepting_everything_fails_forged_and_wrong_token_and_warns_on_replay
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_to_a_repeated_event_id_fails_the_duplicate_probe() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let org = Org::setup(&db, "acme").await;
        let receiver = Receiver::start().await;
        receiver.answer(|c, earlier| {
            let id = c.header("x-flowhook-event-id");
            if earlier
                .iter()
                .any(|e| e.header("x-flowhook-event-id") == id)
            {
                500
            } else {
                200
            }
        });
        // The connector's authentication goes with every probe, as with deliveries.
        let auth = json!({"auth": {"type": "bearer", "token": "probe-bearer-0123456789"}});
        let action = wire_up_with(&org, &receiver.url, "/hook", false, auth).await;
        let stored = check(&org, &action, json!({})).await;
        assert!(receiver
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer probe-bearer-0123456789")));
        let duplicate = probe(&stored, "duplicate");
        assert_eq!(duplicate["grade"], "FAIL", "{stored:#}");
        assert_eq!(duplicate["status"], 500);
        assert!(duplicate["advice"]
            .as_str()
            .unwrap()
            .contains("De-duplicating"));
        assert_eq!(grades(&stored)["created"], "PASS");
        org.app.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let org = Org::setup(&db, "acme").await;
        let receiver = Receiver::start().await;
        let action = wire_up(&org, &receiver.url, "/hook", false).await;
        let path = org.path(&format!("/actions/{action}/check"));
        let (s, e) = org
            .send("POST", &path, None, Some(json!({"appType": "APP NOPE"})))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(e["message"].as_str().unwrap().contains("`appType`"), "{e}");
        let (s, e) = org
            .send(
                "POST",
                &path,
                None,
                Some(json!({"encodings": ["form", "json", "form"]})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("`encodings`"),
            "{e}"
        );
        let (s, _) = org
            .send(
                "POST",
                &org.path("/actions/act_nope/check"),
                None,
                Some(json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = org
            .send("GET", &org.path("/actions/act_nope/checks"), None, None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, e) = org
            .send(
                "GET",
                &org.path(&format!("/actions/{action}/checks?limit=0")),
                None,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(receiver.requests().is_empty(), "nothing sent on bad input");
        org.app.stop().await;
    })
    .await
}

/// The egress policy applies as for deliveries: with private targets denied, a receiver on
/// loopback gets nothing; and a receiver that does not answer ends the check at its first
/// probe, which says why (instead of every probe waiting out its timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_policy_applies_and_no_answer_ends_the_check_at_once() {
    crate::helpers::bounded(async {
        let db = TestDb::sqlite().await;
        let org = Org::setup_with(&db, "acme", |c| c.egress_deny_private = true).await;
        let receiver = Receiver::start().await;
        let action = wire_up(&org, &receiver.url, "/hook", false).await;
        let stored = check(&org, &action, json!({})).await;
        let card = &stored["scorecard"];
        assert_eq!(card["probes"].as_array().unwrap().len(), 1, "{card:#}");
        assert_eq!(card["failed"], 1);
        let created = probe(&stored, "created");
        assert_eq!(created["grade"], "FAIL");
        assert!(
            created["verdict"].as_str().unwrap().contains("egress"),
            "{created}"
        );
        assert!(
            created["advice"].as_str().unwrap().contains("egress_allow"),
            "{created}"
        );
        assert!(receiver.requests().is_empty(), "nothing left the machine");
        org.app.stop().await;
    })
    .await
}
