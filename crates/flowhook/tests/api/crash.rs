//! The real binary under stress: killed with SIGKILL while thousands of events are in flight,
//! restarted on the same database, the receiver still ends with every event at least once, each
//! instance's events first arriving in `seq` order (duplicates — events sent but not yet
//! recorded when the process died — are counted and reported). And its log, at debug level,
//! never holds a secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowhook_testkit::{eventually, KillOnDrop};
use serde_json::{json, Value};

use crate::receiver::Receiver;

const KEY: &str = "crash-test-bootstrap-key-0123";
const TARGET_EVENTS: usize = 10_000;

struct Node {
    child: KillOnDrop,
    addr: String,
    /// Every log line so far.
    log: Arc<Mutex<Vec<String>>>,
}

/// Starts `flowhook serve` in `dir` (SQLite); returns once it listens.
fn start(dir: &std::path::Path, log_level: &str) -> Node {
    start_with(
        dir,
        log_level,
        &[("FLOWHOOK_DELIVERY_LEASE_SECS", "2".into())],
    )
}

/// [`start`] with more environment variables (`FLOWHOOK_DATABASE_URL` for PostgreSQL).
fn start_with(dir: &std::path::Path, log_level: &str, env: &[(&str, String)]) -> Node {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowhook"));
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .current_dir(dir)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            log_level,
        ])
        .env("FLOWHOOK_ADMIN_KEY", KEY)
        .env("FLOWHOOK_RETRY_SCHEDULE_MS", "[0, 50, 100]")
        .env("FLOWHOOK_RETRY_THEN_EVERY_MS", "100")
        .env("FLOWHOOK_DELIVERY_POLL_MS", "50")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowhook starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("flowhook listens");
    Node {
        child: child.into(),
        addr,
        log,
    }
}

impl Node {
    fn interrupt(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.log.lock().unwrap().clone();
        lines
    }
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

/// Provisions the `crash` organisation with a one-approver process and a connector (with
/// `auth`) to `receiver`; returns the app's systemToken.
async fn provision(
    client: &reqwest::Client,
    base: &str,
    receiver: &Receiver,
    auth: Value,
) -> String {
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
    let app = c(
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
        json!({"name": "r", "baseUrl": receiver.url.clone(), "auth": auth}),
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
    app["systemToken"].as_str().unwrap().to_owned()
}

/// Runs instances (start + agree: 2 events each) with `clients` concurrent clients until
/// `events` reaches `until`; an error (a killed server) ends a client.
async fn load(base: String, clients: usize, events: Arc<AtomicUsize>, until: usize) {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, base, events) = (client.clone(), base.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            while events.load(Ordering::SeqCst) < until {
                let start = json!({"processCode": "one", "title": "t"});
                let Ok(started) = call(
                    &client,
                    "POST",
                    format!("{base}/api/v1/orgs/crash/instances"),
                    Some("u0"),
                    start,
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
                let agree = format!("{base}/api/v1/orgs/crash/tasks/{task}/agree");
                if call(&client, "POST", agree, Some("u1"), json!({}))
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
    let quiet = "warn,flowhook::app=info";
    let node = start(dir.path(), quiet);
    provision(
        &client,
        &format!("http://{}", node.addr),
        &receiver,
        json!({"type": "none"}),
    )
    .await;

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
    let node = start(dir.path(), quiet);
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
    node.interrupt();

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
        events.len(),
        at_kill.0,
        at_kill.1,
        accepted.len(),
        duplicates,
        unknown
    );
    assert_eq!(unknown, 0, "every accepted request is a stored event");
    assert_eq!(first_seen.len(), ids.len());
}

/// Secrets never reach the log, even at debug level and through failing deliveries: the
/// connector's credential, the app's systemToken and the bootstrap key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.answer(|_, earlier| if earlier.len() < 2 { 500 } else { 200 });
    let node = start(dir.path(), "debug");
    let base = format!("http://{}", node.addr);
    let client = reqwest::Client::new();
    let bearer = "log-leak-canary-token-9f8e7d6c";
    let token = provision(
        &client,
        &base,
        &receiver,
        json!({"type": "bearer", "token": bearer}),
    )
    .await;
    load(base.clone(), 1, Arc::new(AtomicUsize::new(0)), 4).await;
    receiver
        .wait_until(30, "the deliveries", |got| got.len() >= 4)
        .await;
    assert!(receiver
        .requests()
        .iter()
        .all(|c| c.header("authorization") == Some(&format!("Bearer {bearer}"))));
    let log = node.interrupt().join("\n");
    assert!(log.lines().count() > 20, "debug logging is on: {log}");
    for (name, secret) in [
        ("connector token", bearer),
        ("systemToken", token.as_str()),
        ("bootstrap key", KEY),
    ] {
        assert!(!log.contains(secret), "the {name} leaked into the log");
    }
}

/// Two nodes on one PostgreSQL database. One is killed (SIGKILL) while it holds the leases of
/// deliveries it was sending; the other takes them over within seconds of the kill — the
/// heartbeat of the dead node goes stale after `delivery_node_timeout_ms` (3 s) — instead of
/// when the leases expire (60 s here; 30 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_leases_are_taken_over_within_seconds() {
    let Some(db) = crate::helpers::TestDb::postgres().await else {
        eprintln!("not run: set {} to run it", crate::helpers::POSTGRES_ENV);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let env = [
        ("FLOWHOOK_DATABASE_URL", db.url.clone()),
        ("FLOWHOOK_DELIVERY_LEASE_SECS", "60".into()),
    ];
    let quiet = "warn,flowhook::app=info";
    let a = start_with(dir.path(), quiet, &env);
    let b = start_with(dir.path(), quiet, &env);
    let (base_a, base_b) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    provision(&client, &base_a, &receiver, json!({"type": "none"})).await;

    // A's fresh deliveries are leased to A and in flight to a slow receiver when A dies.
    receiver.delay(Duration::from_secs(3));
    const STARTED: usize = 8;
    for _ in 0..STARTED {
        let start = json!({"processCode": "one", "title": "t"});
        let url = format!("{base_a}/api/v1/orgs/crash/instances");
        call(&client, "POST", url, Some("u0"), start).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let mut a = a;
    a.child.kill().expect("SIGKILL");
    a.child.wait().unwrap();
    let killed = Instant::now();
    receiver.delay(Duration::ZERO);

    let delivered = || async {
        let url = format!("{base_b}/api/v1/orgs/crash/deliveries?status=delivered&limit=100");
        call(&client, "GET", url, None, json!({})).await.unwrap()["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let what = format!("the killed node's leases taken over ({STARTED} delivered)");
    eventually(&what, Duration::from_secs(30), async || {
        let delivered = delivered().await;
        if delivered >= STARTED {
            Ok(())
        } else {
            Err(delivered)
        }
    })
    .await;
    let took = killed.elapsed();
    eprintln!("takeover: every delivery of the killed node delivered {took:?} after the kill");
    assert!(
        took < Duration::from_secs(10),
        "taken over in {took:?}: within seconds, not at the leases' expiry"
    );
    b.interrupt();
}
