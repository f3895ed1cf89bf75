//! What one exchange with a receiver may cost and show, against real servers on 127.0.0.1: an
//! endless answer is cut after what the log keeps; a receiver echoing our credentials cannot put
//! them into the delivery log; a connector's secrets show as `***` wherever it is shown; a
//! configured proxy carries deliveries while the egress policy still holds on each target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use base64::Engine;
use flowhook_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestDb;
use crate::receiver::Receiver;
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

/// Waits (bounded) until the delivery log holds at least `n` delivered deliveries of `action`;
/// returns them with their attempts.
async fn delivered(org: &Org, action: &str, n: usize) -> Vec<Value> {
    let what = format!("{n} deliveries of {action} delivered");
    eventually(&what, Duration::from_secs(20), async || {
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
            // The delivery and its attempts are two reads: wait for both to show the outcome.
            if detail["status"] == "delivered"
                && detail["attempts"].as_array().is_some_and(|a| !a.is_empty())
            {
                details.push(detail);
            }
        }
        if details.len() >= n {
            Ok(details)
        } else {
            Err(details)
        }
    })
    .await
}

/// What the endless server saw of one connection.
#[derive(Debug, Clone, Copy)]
struct Streamed {
    written: u64,
    /// The client stopped reading and closed before the whole body was written.
    cut: bool,
}

/// A server on 127.0.0.1 that answers every request `200` with a body of `total` bytes,
/// streamed in 64 KiB writes; it records, per connection, how much it could write.
async fn endless_server(total: u64) -> (String, Arc<Mutex<Vec<Streamed>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Streamed>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                // The request (small): read until the end of its headers and a little body.
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {total}\r\n\r\n"
                );
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut written = 0u64;
                let mut cut = false;
                while written < total {
                    let n = chunk.len().min((total - written) as usize);
                    // A write that cannot finish within 10 s means the client stopped reading
                    // without closing: that is not a cut.
                    match tokio::time::timeout(Duration::from_secs(10), sock.write_all(&chunk[..n]))
                        .await
                    {
                        Ok(Ok(())) => written += n as u64,
                        Ok(Err(_)) => {
                            cut = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                log.lock().unwrap().push(Streamed { written, cut });
            });
        }
    });
    (url, seen)
}

mod an_endless_answer_is_cut_after_what_the_log_keeps {
    crate::on_both_backends!(super::an_endless_answer_is_cut_after_what_the_log_keeps);
}

/// A receiver answering `200` with a 256 MiB body: the test fire and a delivery each keep the
/// first 4 KiB and close the connection; the receiver could write only what socket buffers
/// hold, far below the whole.
async fn an_endless_answer_is_cut_after_what_the_log_keeps(db: TestDb) {
    const TOTAL: u64 = 256 * 1024 * 1024;
    let mut org = Org::setup_with(&db, "acme", fast).await;
    let (url, seen) = endless_server(TOTAL).await;
    let (_, action) = connector_with_action(
        &org,
        json!({"name": "endless", "baseUrl": url, "timeoutMs": 60000}),
    )
    .await;

    let fired = test_fire(&org, &action).await;
    assert_eq!(fired["responseStatus"], 200, "{fired}");
    let body = fired["responseBody"].as_str().unwrap();
    assert_eq!(body.len(), 4096);
    assert!(body.bytes().all(|b| b == b'x'));

    route_created_to(&org, &action).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    // The purchase starts with two finance tasks: two deliveries.
    for detail in delivered(&org, &action, 2).await {
        let a = &detail["attempts"][0];
        assert_eq!(
            (a["responseStatus"].as_i64(), detail["status"].as_str()),
            (Some(200), Some("delivered")),
            "{a}"
        );
        assert_eq!(a["responseBody"].as_str().unwrap().len(), 4096);
    }
    // Each connection was cut: the server's write failed well before the whole body.
    let streams = eventually("three exchanges", Duration::from_secs(20), async || {
        let streams = seen.lock().unwrap().clone();
        if streams.len() >= 3 {
            Ok(streams)
        } else {
            Err(streams)
        }
    })
    .await;
    assert!(streams.len() >= 3, "three exchanges: {streams:?}");
    for s in &streams {
        assert!(
            s.cut && s.written < TOTAL / 8,
            "the answer was read only in part and the stream cut: {s:?}"
        );
    }
    eprintln!("bytes written before each cut: {streams:?}");
    org.app.stop().await;
}

/// An echoing receiver: answers `200` with every request header echoed as `x-echo-<name>`, and a
/// body quoting the request URL, its headers and its body.
async fn echo_server() -> String {
    async fn echo(uri: Uri, headers: HeaderMap, body: axum::body::Bytes) -> (HeaderMap, String) {
        let mut out = HeaderMap::new();
        let mut quoted = Vec::new();
        for (k, v) in &headers {
            let name = HeaderName::try_from(format!("x-echo-{k}")).unwrap();
            out.append(name, v.clone());
            quoted.push(json!([k.as_str(), v.to_str().unwrap_or("")]));
        }
        out.insert("content-type", HeaderValue::from_static("application/json"));
        let text = json!({"url": uri.to_string(), "headers": quoted,
            "body": String::from_utf8_lossy(&body)})
        .to_string();
        (out, text)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

mod echoed_secrets_never_reach_the_delivery_log {
    crate::on_both_backends!(super::echoed_secrets_never_reach_the_delivery_log);
}

/// For each kind of credential — Basic, Bearer, API key in a header and in the query, a password
/// in the base URL, a default header — a receiver echoing the request back gets the credential
/// (so the echo is real), and neither the test fire nor the delivery log shows it: not raw, not
/// in base64, not percent-encoded.
async fn echoed_secrets_never_reach_the_delivery_log(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", fast).await;
    let url = echo_server().await;
    let host = url.trim_start_matches("http://");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let header_secret = "hdr-secret-0123456789";
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "basic",
            json!({"baseUrl": format!("{url}/cb"), "auth": {"type": "basic", "username": "svc", "password": "basic-pw-0123456789"}}),
            vec!["basic-pw-0123456789".into(), b64("svc:basic-pw-0123456789")],
        ),
        (
            "bearer",
            json!({"baseUrl": format!("{url}/cb"), "auth": {"type": "bearer", "token": "bearer-tok-0123456789"}}),
            vec!["bearer-tok-0123456789".into()],
        ),
        (
            "apiKey header",
            json!({"baseUrl": format!("{url}/cb"), "auth": {"type": "apiKey", "in": "header", "name": "X-Key", "value": "hdr-key-0123456789"}}),
            vec!["hdr-key-0123456789".into()],
        ),
        (
            "apiKey query",
            json!({"baseUrl": format!("{url}/cb"), "auth": {"type": "apiKey", "in": "query", "name": "key", "value": "query key/0123456789"}}),
            vec![
                "query key/0123456789".into(),
                "query+key%2F0123456789".into(),
                "query%20key%2F0123456789".into(),
            ],
        ),
        (
            "baseUrl password",
            json!({"baseUrl": format!("http://ops:url-pw-0123456789@{host}/cb")}),
            vec!["url-pw-0123456789".into(), b64("ops:url-pw-0123456789")],
        ),
    ];
    for (kind, mut input, secrets) in cases {
        input["name"] = json!(kind);
        input["defaultHeaders"] = json!({"x-api-token": header_secret});
        let (_, action) = connector_with_action(&org, input).await;
        let mut secrets = secrets;
        secrets.push(header_secret.into());

        let fired = test_fire(&org, &action).await;
        assert_eq!(fired["responseStatus"], 200, "{kind}: {fired}");
        route_created_to(&org, &action).await;
        org.start("alice", "purchase", kind, json!({})).await;
        let details = delivered(&org, &action, 2).await;

        let mut shown = fired.to_string();
        for d in &details {
            shown.push_str(&d.to_string());
        }
        assert!(
            shown.contains("x-echo-x-api-token") && shown.contains("***"),
            "{kind}: the echo came back, masked: {shown}"
        );
        for s in &secrets {
            assert!(!shown.contains(s.as_str()), "{kind}: `{s}` shown: {shown}");
        }
    }
    org.app.stop().await;
}

mod connector_credentials_show_no_character {
    crate::on_both_backends!(super::connector_credentials_show_no_character);
}

/// A password in `baseUrl`, default header values and the credential show as `***` — no
/// character of them — from create, list, pause, test fire and the delivery log, while the
/// receiver gets them whole.
async fn connector_credentials_show_no_character(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", fast).await;
    let receiver = Receiver::start().await;
    let host = receiver.url.trim_start_matches("http://");
    let (created, action) = connector_with_action(
        &org,
        json!({"name": "masked", "baseUrl": format!("http://ops:Qz7-url-pass@{host}/cb"),
            "auth": {"type": "apiKey", "in": "header", "name": "X-Key", "value": "Jx4-key-value"},
            "defaultHeaders": {"x-api-token": "Wv9-hdr-value"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["baseUrl"],
        format!("http://ops:***@{host}/cb"),
        "{created}"
    );
    assert_eq!(created["defaultHeaders"]["x-api-token"], "***");
    assert_eq!(created["auth"]["value"], "***");

    let fired = test_fire(&org, &action).await;
    assert_eq!(fired["responseStatus"], 200, "{fired}");
    let (_, listed) = org.send("GET", &org.path("/connectors"), None, None).await;
    let (_, paused) = org
        .send(
            "POST",
            &org.path(&format!("/connectors/{id}/pause")),
            None,
            None,
        )
        .await;
    let (_, resumed) = org
        .send(
            "POST",
            &org.path(&format!("/connectors/{id}/resume")),
            None,
            None,
        )
        .await;
    route_created_to(&org, &action).await;
    org.start("alice", "purchase", "laptop", json!({})).await;
    let details = delivered(&org, &action, 2).await;
    let attempt = &details[0]["attempts"][0];
    assert_eq!(attempt["url"], format!("{}/cb/created", receiver.url));
    let logged: Vec<(String, String)> =
        serde_json::from_value(attempt["requestHeaders"].clone()).unwrap();
    for (name, shown) in [
        ("authorization", "Basic <ops:***>"),
        ("x-api-token", "***"),
        ("x-key", "***"),
    ] {
        assert!(
            logged.contains(&(name.to_owned(), shown.to_owned())),
            "{name} logged as {shown}: {logged:?}"
        );
    }

    let shown = [created, fired, listed, paused, resumed]
        .iter()
        .chain(&details)
        .map(Value::to_string)
        .collect::<String>();
    for secret in ["Qz7-url-pass", "Jx4-key-value", "Wv9-hdr-value"] {
        // Not the secret, nor its first characters.
        assert!(!shown.contains(&secret[..3]), "`{secret}` shown: {shown}");
    }
    // The receiver got every credential whole.
    let got = receiver.requests();
    assert!(got.len() >= 3);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:Qz7-url-pass")
    );
    for c in &got {
        assert_eq!(c.header("authorization"), Some(basic.as_str()));
        assert_eq!(c.header("x-key"), Some("Jx4-key-value"));
        assert_eq!(c.header("x-api-token"), Some("Wv9-hdr-value"));
    }
    org.app.stop().await;
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
    for d in delivered(&org, &allowed, 2).await {
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

mod a_base_url_with_a_query_joins_paths_as_paths {
    crate::on_both_backends!(super::a_base_url_with_a_query_joins_paths_as_paths);
}

/// A connector whose base URL carries a query, with the API key in the query and an action path
/// with a query of its own: the receiver is asked for the joined path with the three queries
/// merged (issue 18 item 6: it used to get `/akq?fixed=1/created&api_key=…`). A base URL or an
/// action path with a fragment is refused when saved, naming the field.
async fn a_base_url_with_a_query_joins_paths_as_paths(db: TestDb) {
    let org = Org::setup_with(&db, "acme", fast).await;
    let url = echo_server().await;
    let (con, _) = connector_with_action(
        &org,
        json!({"name": "akq", "baseUrl": format!("{url}/akq?fixed=1"),
               "auth": {"type": "apiKey", "in": "query", "name": "api_key", "value": "k-0123456789"}}),
    )
    .await;
    let (s, a) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con["id"], "name": "q", "path": "/created?kind=c%20d"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let fired = test_fire(&org, a["id"].as_str().unwrap()).await;
    assert_eq!(fired["responseStatus"], 200, "{fired}");
    let echoed: Value = serde_json::from_str(fired["responseBody"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed["url"], "/akq/created?fixed=1&kind=c%20d&api_key=***",
        "the path the receiver was asked for (the key masked in the log): {fired}"
    );
    assert_eq!(
        fired["url"],
        format!("{url}/akq/created?fixed=1&kind=c%20d&api_key=***")
    );

    let (s, e) = org
        .send(
            "POST",
            &org.path("/connectors"),
            None,
            Some(json!({"name": "frag", "baseUrl": format!("{url}/cb#top")})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["message"].as_str().unwrap().contains("fragment"), "{e}");
    let (s, e) = org
        .send(
            "POST",
            &org.path("/actions"),
            None,
            Some(json!({"connectorId": con["id"], "name": "f", "path": "/created#x"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["message"].as_str().unwrap().contains("`path`"), "{e}");
    org.app.stop().await;
}
