//! Fidelity to Yida and to what a user expects (issue 18), against a real receiver and real
//! databases: delivery errors say what happened in words.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::delivery::fast;
use crate::helpers::TestDb;
use crate::task_center::Org;

mod delivery_errors_say_what_happened {
    crate::on_both_backends!(super::delivery_errors_say_what_happened);
}

/// Issue 18 item 13: a refused connection shows as `connection refused` in the delivery's
/// `lastError` (and its attempt), an unknown host as `DNS: no such host …` in a test fire — not
/// the HTTP client's "error sending request for url (…)".
async fn delivery_errors_say_what_happened(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/cb", closed.local_addr().unwrap());
    drop(closed);
    let (s, con) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(json!({"name": "gone", "baseUrl": base, "timeoutMs": 2000})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let (s, a) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con["id"], "name": "created", "path": "/created"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": {"created": a["id"]}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    org.start("alice", "purchase", "laptop", json!({})).await;
    let mut last = Value::Null;
    for _ in 0..500 {
        let (_, page) = org
            .send("GET", &org.path("/deliveries?limit=10"), None, None)
            .await;
        // The lane's head (seq 1) is the one tried; the rest wait behind it.
        if let Some(d) = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["lastError"].is_string())
        {
            last = d.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last["lastError"], "connection refused", "{last}");

    // An unknown host, in a test fire.
    let (s, con) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(
                json!({"name": "nohost", "baseUrl": "http://nohost.invalid/cb", "timeoutMs": 5000}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{con}");
    let (s, a) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con["id"], "name": "c2", "path": "/created"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, fired) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{}/test", a["id"].as_str().unwrap())),
            None,
            Some(json!({"events": ["task.created"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fired}");
    assert_eq!(fired[0]["errorKind"], "dns", "{fired}");
    let error = fired[0]["error"].as_str().unwrap();
    assert!(error.starts_with("DNS: "), "{error}");
    assert!(!error.contains("error sending request"), "{error}");
    org.app.stop().await;
}
