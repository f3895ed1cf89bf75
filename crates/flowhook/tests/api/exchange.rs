//! What one exchange with a receiver may cost and show, against real servers on 127.0.0.1: a
//! configured proxy carries deliveries while the egress policy still holds on each target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestDb;
use crate::task_center::Org;

/// Fast retries and polls, and breakers that never open: these tests look at single attempts.
fn fast(config: &mut flowhook::config::Config) {
    config.retry_schedule_ms = vec![0, 50, 100];
    config.retry_then_every_ms = 100;
    config.retry_give_up_after_ms = 60_000;
    config.delivery_poll_ms = 50;
    config.breaker_threshold = 10_000;
}

/// Creates a connector and one action on it; returns (connector as answered, action id).
async fn connector_with_action(org: &Org, input: Value) -> (Value, String) {
    let (s, con) = org
        .send("POST", &org.path("/connectors"), None, Some(input))
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
    (con, a["id"].as_str().unwrap().to_owned())
}

/// Routes `task.created` to `action`.
async fn route_created_to(org: &Org, action: &str) {
    let (s, r) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": {"created": action}, "ordered": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
}

/// Test-fires a sample `task.created` at `action`; returns the one exchange shown.
async fn test_fire(org: &Org, action: &str) -> Value {
    let (s, fired) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{action}/test")),
            None,
            Some(json!({"events": ["task.created"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fired}");
    fired[0].clone()
}

/// Waits (bounded) until the delivery log holds at least `n` deliveries of `action` with an
/// attempt; returns them with their attempts.
async fn attempted(org: &Org, action: &str, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let (s, page) = org
            .send(
                "GET",
                &org.path(&format!("/deliveries?limit=200&actionId={action}")),
                None,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let mut details = Vec::new();
        for d in page["items"].as_array().unwrap() {
            let (_, detail) = org
                .send(
                    "GET",
                    &org.path(&format!("/deliveries/{}", d["id"].as_str().unwrap())),
                    None,
                    None,
                )
                .await;
            if detail["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
                details.push(detail);
            }
        }
        if details.len() >= n {
            return details;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} deliveries of {action} were attempted within 10 s");
}

/// A proxy-like server on 127.0.0.1: records each request line it is sent and answers `200`
/// itself (it forwards nothing).
async fn recording_proxy() -> (u16, Arc<Mutex<Vec<String>>>, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let connections = Arc::new(AtomicU64::new(0));
    let (log, count) = (lines.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&got).into_owned();
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or("").to_owned());
                let answer =
                    "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxied";
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, lines, connections)
}

mod a_configured_proxy_carries_deliveries_and_the_policy_still_holds {
    crate::on_both_backends!(
        super::a_configured_proxy_carries_deliveries_and_the_policy_still_holds
    );
}

/// With `egress_proxy` set, deliveries and test fires go through it; a target whose name
/// resolves to a denied address is refused before the proxy is contacted.
async fn a_configured_proxy_carries_deliveries_and_the_policy_still_holds(db: TestDb) {
    let (port, lines, connections) = recording_proxy().await;
    let mut org = Org::setup_with(&db, "acme", |c| {
        fast(c);
        c.egress_proxy = Some(format!("http://127.0.0.1:{port}"));
        // `localhost` resolves to these; 127.0.0.3 stays allowed (and is never contacted: the
        // proxy answers for it).
        c.egress_deny = vec!["127.0.0.1/32".into(), "::1/128".into()];
    })
    .await;
    let (_, refused) = connector_with_action(
        &org,
        json!({"name": "by name", "baseUrl": "http://localhost:9/cb"}),
    )
    .await;
    let fired = test_fire(&org, &refused).await;
    assert_eq!(fired["errorKind"], "egress", "{fired}");
    assert!(
        fired["error"]
            .as_str()
            .unwrap()
            .contains("refused by the egress policy"),
        "{fired}"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the proxy was not contacted for a refused target"
    );

    let (_, allowed) = connector_with_action(
        &org,
        json!({"name": "allowed", "baseUrl": "http://127.0.0.3:9/cb"}),
    )
    .await;
    let fired = test_fire(&org, &allowed).await;
    assert_eq!(
        (
            fired["responseStatus"].as_i64(),
            fired["responseBody"].as_str()
        ),
        (Some(200), Some("proxied")),
        "{fired}"
    );
    route_created_to(&org, &allowed).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    for d in attempted(&org, &allowed, 2).await {
        assert_eq!(d["attempts"][0]["responseBody"], "proxied", "{d}");
    }
    let seen = lines.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|l| l == "POST http://127.0.0.3:9/cb/created HTTP/1.1"),
        "{seen:?}"
    );
    org.app.stop().await;
}
