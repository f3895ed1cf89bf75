//! Crash safety of delivery: the real binary is killed with SIGKILL while thousands of events
//! are in flight, restarted on the same database, and the receiver still ends with every event
//! at least once, each instance's events first arriving in `seq` order. Duplicates (events sent
//! but not yet recorded when the process died) are counted and reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::receiver::Receiver;

const KEY: &str = "crash-test-bootstrap-key-0123";
const TARGET_EVENTS: usize = 10_000;

struct Node {
    child: Child,
    addr: String,
}

/// Starts `flowhook serve` on `db`; returns once it listens.
fn start(dir: &std::path::Path) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowhook"))
        .current_dir(dir)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            "warn,flowhook::app=info",
        ])
        .env("FLOWHOOK_ADMIN_KEY", KEY)
        .env("FLOWHOOK_RETRY_SCHEDULE_MS", "[0, 50, 100]")
        .env("FLOWHOOK_RETRY_THEN_EVERY_MS", "100")
        .env("FLOWHOOK_DELIVERY_POLL_MS", "50")
        .env("FLOWHOOK_DELIVERY_LEASE_SECS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowhook starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("flowhook listens");
    Node { child, addr }
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    user: Option<&str>,
    body: Value,
) -> Result<Value, String> {
    let mut req = client
        .request(method.parse().unwrap(), url)
        .bearer_auth(KEY)
        .json(&body);
    if let Some(u) = user {
        req = req.header("X-Flowhook-User", u);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("{status}: {v}"))
    }
}

async fn provision(client: &reqwest::Client, base: &str, receiver: &Receiver) {
    let c = |m: &'static str, p: &str, b: Value| call(client, m, format!("{base}{p}"), None, b);
    c(
        "POST",
        "/api/v1/orgs",
        json!({"corpId": "crash", "name": "crash"}),
    )
    .await
    .unwrap();
    for u in ["u0", "u1"] {
        c(
            "PUT",
            &format!("/api/v1/orgs/crash/users/{u}"),
            json!({"name": u}),
        )
        .await
        .unwrap();
    }
    c(
        "POST",
        "/api/v1/orgs/crash/apps",
        json!({"appType": "APP_CRASH", "name": "crash"}),
    )
    .await
    .unwrap();
    let def = json!({"processCode": "one", "name": "one", "nodes": [
        {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "users", "ids": ["u1"]}]}]});
    c(
        "PUT",
        "/api/v1/orgs/crash/processes/one?appType=APP_CRASH",
        def,
    )
    .await
    .unwrap();
    let con = c(
        "POST",
        "/api/v1/orgs/crash/connectors",
        json!({"name": "r", "baseUrl": receiver.url.clone()}),
    )
    .await
    .unwrap();
    let mut actions = serde_json::Map::new();
    for kind in ["created", "finished"] {
        let a = c(
            "POST",
            "/api/v1/orgs/crash/actions",
            json!({"connectorId": con["id"], "name": kind, "path": format!("/{kind}")}),
        )
        .await
        .unwrap();
        actions.insert(kind.into(), a["id"].clone());
    }
    c(
        "PUT",
        "/api/v1/orgs/crash/sync-strategy",
        json!({"actions": actions}),
    )
    .await
    .unwrap();
}

/// Runs instances (start + agree: 2 events each) with `clients` concurrent clients until
/// `events` reaches `until` or `stop` says so; errors (a killed server) end a client.
async fn load(base: String, clients: usize, events: Arc<AtomicUsize>, until: usize) {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, base, events) = (client.clone(), base.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            while events.load(Ordering::SeqCst) < until {
                let Ok(started) = call(
                    &client,
                    "POST",
                    format!("{base}/api/v1/orgs/crash/instances"),
                    Some("u0"),
                    json!({"processCode": "one", "title": "t"}),
                )
                .await
                else {
                    return;
                };
                events.fetch_add(1, Ordering::SeqCst);
                let task = started["instance"]["tasks"][0]["taskId"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if call(
                    &client,
                    "POST",
                    format!("{base}/api/v1/orgs/crash/tasks/{task}/agree"),
                    Some("u1"),
                    json!({}),
                )
                .await
                .is_err()
                {
                    return;
                }
                events.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flight_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let node = start(dir.path());
    provision(&client, &format!("http://{}", node.addr), &receiver).await;

    // Load until the receiver has part of the events, then kill the node mid-flight.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let loader = tokio::spawn(load(
        format!("http://{}", node.addr),
        16,
        acknowledged.clone(),
        TARGET_EVENTS,
    ));
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.accepted().len() < 2_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut node = node;
    node.child.kill().expect("SIGKILL");
    node.child.wait().unwrap();
    let _ = loader.await;
    let at_kill = (
        acknowledged.load(Ordering::SeqCst),
        receiver.requests().len(),
    );

    // Restart on the same file and finish the workload.
    let node = start(dir.path());
    load(
        format!("http://{}", node.addr),
        16,
        acknowledged.clone(),
        TARGET_EVENTS,
    )
    .await;

    // Every stored event must reach the receiver.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("flowhook.db").display()
    ))
    .await
    .unwrap();
    let events: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, instance_id, seq FROM events")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(events.len() >= TARGET_EVENTS, "{} events", events.len());
    let ids: HashSet<&str> = events.iter().map(|(id, _, _)| id.as_str()).collect();
    receiver
        .wait_until(300, "every stored event", |got| {
            let seen: HashSet<&str> = got
                .iter()
                .filter_map(|c| c.header("x-flowhook-event-id"))
                .collect();
            ids.iter().all(|id| seen.contains(id))
        })
        .await;
    let mut node = node;
    let _ = Command::new("kill")
        .args(["-INT", &node.child.id().to_string()])
        .status();
    let _ = node.child.wait();

    // First arrivals per instance are in seq order; count duplicates.
    let instance_of: HashMap<&str, (&str, i64)> = events
        .iter()
        .map(|(id, i, s)| (id.as_str(), (i.as_str(), *s)))
        .collect();
    let mut first_seen: HashSet<String> = HashSet::new();
    let mut arrivals: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut duplicates = 0;
    let accepted = receiver.accepted();
    for c in &accepted {
        let id = c.header("x-flowhook-event-id").unwrap();
        if !first_seen.insert(id.to_owned()) {
            duplicates += 1;
            continue;
        }
        let (instance, seq) = instance_of[id];
        arrivals.entry(instance).or_default().push(seq);
    }
    for (instance, seqs) in &arrivals {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "instance {instance} arrived out of order: {seqs:?}"
        );
    }
    let unknown = accepted
        .iter()
        .filter(|c| !ids.contains(c.header("x-flowhook-event-id").unwrap()))
        .count();
    eprintln!(
        "crash test: events={} acknowledged_at_kill={} requests_at_kill={} accepted={} duplicates={} unknown={}",
        events.len(), at_kill.0, at_kill.1, accepted.len(), duplicates, unknown
    );
    assert_eq!(unknown, 0, "every accepted request is a stored event");
    assert_eq!(first_seen.len(), ids.len());
}
