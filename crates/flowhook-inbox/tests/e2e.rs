//! The whole system end to end, as real processes: `flowhook serve` runs a seeded random
//! workload (every command, every node type) and pushes through a real connector with five
//! actions to `flowhook-inbox`; at the end, every user's four lists in the inbox equal
//! Flowhook's task center exactly, every stored event was received, and each instance's events
//! first arrived in `seq` order.
//!
//! The fault run puts a proxy between them that answers 500 to a random 20 % of requests (half
//! before the inbox sees them, half after it stored them: lost acknowledgements), restarts the
//! inbox with SIGKILL mid-run, and kills Flowhook with SIGKILL mid-run (while commands and
//! deliveries are in flight) before restarting it on the same database.
//!
//! The seed and the counts are printed; `FLOWHOOK_E2E_SEED=<n>` replays a run. SQLite always;
//! PostgreSQL too when `FLOWHOOK_TEST_POSTGRES` is set.
//!
//! Flowhook's binary is the sibling of this crate's in the target directory: `cargo test
//! --workspace` builds it; the test refuses to run on a missing or stale one.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use flowhook_testkit::eventually;
use flowhook_testkit::KillOnDrop;
use serde_json::{json, Value};

use common::TestDb;

const KEY: &str = "e2e-bootstrap-key-0123456789";
const CORP: &str = "e2e";
const APP: &str = "APP_E2E";
const INSTANCES: usize = 300;
const MAX_STEPS: usize = 3_000;

// ---------------------------------------------------------------- a seeded random source

/// SplitMix64: small, seedable, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn seed() -> u64 {
    std::env::var("FLOWHOOK_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

// ---------------------------------------------------------------- the two processes

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_flowhook-inbox"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Flowhook's binary, refused when missing or older than its sources.
fn flowhook_binary() -> PathBuf {
    let bin = target_dir().join(format!("flowhook{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!(
            "{} is missing: build it first (`cargo test --workspace` does, or `cargo build -p flowhook`)",
            bin.display()
        )
    });
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![
        crates.join("flowhook/src"),
        crates.join("flowhook-sign/src"),
    ];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    assert!(
        built >= newest,
        "{} is older than its sources: rebuild it (`cargo build -p flowhook`)",
        bin.display()
    );
    bin
}

struct Proc {
    child: KillOnDrop,
    addr: String,
}

/// Spawns a server and waits for its JSON `listening` line.
fn spawn(mut cmd: Command, what: &str) -> Proc {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let name = what.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["message"] == "listening" => {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
                Ok(v) if v["level"] == "ERROR" => eprintln!("[{name}] {line}"),
                Ok(_) => {}
                Err(_) => eprintln!("[{name}] {line}"),
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} listens"));
    Proc {
        child: child.into(),
        addr,
    }
}

impl Proc {
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Starts Flowhook on one database, as often as needed (a restart uses the same one).
#[derive(Clone)]
struct Launcher {
    dir: PathBuf,
    database_url: String,
}

impl Launcher {
    fn flowhook(&self) -> Proc {
        let mut cmd = Command::new(flowhook_binary());
        cmd.current_dir(&self.dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log-level", "warn,flowhook::app=info"])
            .args(["--database-url", &self.database_url])
            .env("FLOWHOOK_ADMIN_KEY", KEY)
            .env("FLOWHOOK_RETRY_SCHEDULE_MS", "[0, 20, 50, 100]")
            .env("FLOWHOOK_RETRY_THEN_EVERY_MS", "200")
            .env("FLOWHOOK_DELIVERY_POLL_MS", "50")
            .env("FLOWHOOK_DELIVERY_LEASE_SECS", "2")
            .env("FLOWHOOK_BREAKER_THRESHOLD", "1000");
        spawn(cmd, "flowhook")
    }
}

struct Setup {
    dir: tempfile::TempDir,
    launcher: Launcher,
    inbox_db: String,
    _dbs: Vec<TestDb>,
}

impl Setup {
    async fn new(postgres: bool) -> Option<Setup> {
        let dir = tempfile::tempdir().unwrap();
        if postgres {
            let a = TestDb::postgres().await?;
            let b = TestDb::postgres().await?;
            Some(Setup {
                launcher: Launcher {
                    dir: dir.path().to_path_buf(),
                    database_url: a.url.clone(),
                },
                dir,
                inbox_db: b.url.clone(),
                _dbs: vec![a, b],
            })
        } else {
            let flowhook_db = format!("sqlite://{}", dir.path().join("flowhook.db").display());
            let inbox_db = format!("sqlite://{}", dir.path().join("inbox.db").display());
            Some(Setup {
                launcher: Launcher {
                    dir: dir.path().to_path_buf(),
                    database_url: flowhook_db,
                },
                dir,
                inbox_db,
                _dbs: vec![],
            })
        }
    }

    fn inbox(&self, token: &str) -> Proc {
        let config = self.dir.path().join("inbox.toml");
        std::fs::write(
            &config,
            format!(
                "database_url = \"{}\"\nlog_format = \"json\"\nlog_level = \"warn,flowhook_inbox::app=info\"\n\n\
                 [[sources]]\nname = \"flowhook\"\n[sources.apps]\n{APP} = \"{token}\"\n",
                self.inbox_db
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowhook-inbox"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config);
        spawn(cmd, "flowhook-inbox")
    }
}

// ---------------------------------------------------------------- the fault proxy

#[derive(Default)]
struct ProxyStats {
    forwarded: AtomicU64,
    refused_before: AtomicU64,
    refused_after: AtomicU64,
    upstream_down: AtomicU64,
}

#[derive(Clone)]
struct Proxy {
    target: Arc<RwLock<String>>,
    fault_percent: u64,
    rng: Arc<Mutex<Rng>>,
    stats: Arc<ProxyStats>,
    client: reqwest::Client,
}

impl Proxy {
    async fn start(target: String, fault_percent: u64, seed: u64) -> (Proxy, String) {
        let proxy = Proxy {
            target: Arc::new(RwLock::new(target)),
            fault_percent,
            rng: Arc::new(Mutex::new(Rng(seed ^ 0x5EED))),
            stats: Arc::default(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (proxy, url)
    }
}

async fn forward(
    State(p): State<Proxy>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let roll = p.rng.lock().unwrap().next() % 100;
    if roll < p.fault_percent / 2 {
        p.stats.refused_before.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected before".into());
    }
    let target = p.target.read().unwrap().clone();
    let mut req = p.client.post(format!("http://{target}{uri}")).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Err(_) => {
            p.stats.upstream_down.fetch_add(1, Ordering::Relaxed);
            (StatusCode::BAD_GATEWAY, "inbox down".into())
        }
        Ok(resp) => {
            p.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() && roll < p.fault_percent {
                p.stats.refused_after.fetch_add(1, Ordering::Relaxed);
                return (StatusCode::INTERNAL_SERVER_ERROR, "injected after".into());
            }
            (StatusCode::from_u16(status.as_u16()).unwrap(), text)
        }
    }
}

// ---------------------------------------------------------------- Flowhook's API

#[derive(Clone)]
struct Api {
    base: Arc<RwLock<String>>,
    client: reqwest::Client,
}

enum Answer {
    Ok(Value),
    Refused(u16),
    /// No answer: the server is down (killed).
    Down,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let base = self.base.read().unwrap().clone();
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(KEY);
        if let Some(u) = user {
            req = req.header("X-Flowhook-User", u);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Err(_) => Answer::Down,
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(v) => Answer::Ok(v),
                Err(_) => Answer::Down,
            },
            Ok(r) => Answer::Refused(r.status().as_u16()),
        }
    }

    /// A call that must succeed (set-up, reads), waiting out a restart.
    async fn must(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let what = format!("{method} {path} to be answered (flowhook is down)");
        eventually(&what, Duration::from_secs(60), async || {
            match self.call(method, path, user, body.clone()).await {
                Answer::Ok(v) => Some(v),
                Answer::Refused(s) => panic!("{method} {path}: {s}"),
                Answer::Down => None,
            }
        })
        .await
    }

    fn org(path: &str) -> String {
        format!("/api/v1/orgs/{CORP}{path}")
    }
}

const PEOPLE: &[(&str, Option<&str>, bool)] = &[
    ("admin", None, true),
    ("boss", None, false),
    ("m1", Some("boss"), false),
    ("m2", Some("boss"), false),
    ("e1", Some("m1"), false),
    ("e2", Some("m1"), false),
    ("e3", Some("m2"), false),
    ("e4", Some("m2"), false),
    ("h1", Some("boss"), false),
    ("h2", Some("boss"), false),
    ("f1", Some("boss"), false),
    ("f2", Some("boss"), false),
];
const ORIGINATORS: &[&str] = &["e1", "e2", "e3", "e4"];

/// Four processes covering every node type and mode.
fn processes() -> Vec<Value> {
    vec![
        json!({"processCode": "leave", "name": "Leave", "nodes": [
            {"id": "leader", "type": "approval", "name": "Leader", "approvers": [{"type": "leader", "level": 1}]},
            {"id": "len", "type": "route", "name": "How long", "branches": [
                {"name": "long", "condition": "days > 3", "nodes": [
                    {"id": "hr", "type": "approval", "name": "HR countersign", "approvers": [{"type": "role", "role": "hr"}], "mode": "all"}]},
                {"name": "short", "default": true, "nodes": []}]},
            {"id": "cc-hr", "type": "carbon", "name": "Inform HR", "recipients": [{"type": "role", "role": "hr"}]}]}),
        json!({"processCode": "purchase", "name": "Purchase", "nodes": [
            {"id": "fin", "type": "approval", "name": "Finance or-sign", "approvers": [{"type": "role", "role": "fin"}], "mode": "or"},
            {"id": "par", "type": "parallel", "name": "Prepare", "branches": [
                {"name": "order", "nodes": [{"id": "buyer", "type": "operator", "name": "Place order", "approvers": [{"type": "users", "ids": ["m2"]}]}]},
                {"name": "inform", "nodes": [{"id": "cc-me", "type": "carbon", "name": "Inform me", "recipients": [{"type": "originator"}]}]}]},
            {"id": "boss", "type": "approval", "name": "Boss", "approvers": [{"type": "users", "ids": ["boss"]}]}]}),
        json!({"processCode": "contract", "name": "Contract", "nodes": [
            {"id": "legal", "type": "approval", "name": "Managers in turn", "approvers": [{"type": "users", "ids": ["m1", "m2"]}], "mode": "oneByOne"},
            {"id": "hr", "type": "approval", "name": "HR countersign", "approvers": [{"type": "role", "role": "hr"}], "mode": "all"},
            {"id": "cc-e1", "type": "carbon", "name": "Inform e1", "recipients": [{"type": "users", "ids": ["e1"]}]}]}),
        json!({"processCode": "expense", "name": "Expense", "nodes": [
            {"id": "cc-f1", "type": "carbon", "name": "Inform finance", "recipients": [{"type": "users", "ids": ["f1"]}]},
            {"id": "lead2", "type": "approval", "name": "Second leader", "approvers": [{"type": "leader", "level": 2}]},
            {"id": "amt", "type": "route", "name": "Amount", "branches": [
                {"name": "big", "condition": "amount > 1000", "nodes": [
                    {"id": "boss", "type": "approval", "name": "Boss", "approvers": [{"type": "users", "ids": ["boss"]}]}]},
                {"name": "small", "default": true, "nodes": [
                    {"id": "pay", "type": "operator", "name": "Pay", "approvers": [{"type": "users", "ids": ["f2"]}]}]}]}]}),
    ]
}

/// Organisation, people, roles, app, processes, a connector with five actions to `target`.
/// Returns the app's systemToken.
async fn provision(api: &Api, target: &str) -> String {
    api.must(
        "POST",
        "/api/v1/orgs",
        None,
        Some(json!({"corpId": CORP, "name": "E2E"})),
    )
    .await;
    for (id, manager, admin) in PEOPLE {
        api.must(
            "PUT",
            &Api::org(&format!("/users/{id}")),
            None,
            Some(json!({"name": format!("User {id}"), "managerId": manager, "admin": admin})),
        )
        .await;
    }
    for (role, members) in [("hr", ["h1", "h2"]), ("fin", ["f1", "f2"])] {
        api.must(
            "PUT",
            &Api::org(&format!("/roles/{role}")),
            None,
            Some(json!({"name": role, "members": members})),
        )
        .await;
    }
    let app = api
        .must(
            "POST",
            &Api::org("/apps"),
            None,
            Some(json!({"appType": APP, "name": "e2e"})),
        )
        .await;
    for p in processes() {
        let code = p["processCode"].as_str().unwrap().to_owned();
        api.must(
            "PUT",
            &Api::org(&format!("/processes/{code}?appType={APP}")),
            None,
            Some(p),
        )
        .await;
    }
    let connector = api
        .must(
            "POST",
            &Api::org("/connectors"),
            None,
            Some(json!({"name": "inbox", "baseUrl": target, "auth": {"type": "none"}})),
        )
        .await;
    let mut actions = serde_json::Map::new();
    for kind in ["created", "finished", "cancelled", "deleted", "cc"] {
        // Two of the five as JSON bodies, the rest as forms (Yida's default).
        let encoding = if matches!(kind, "finished" | "cc") {
            "json"
        } else {
            "form"
        };
        let a = api
            .must(
                "POST",
                &Api::org("/actions"),
                None,
                Some(json!({"connectorId": connector["id"], "name": kind,
                            "path": format!("/callbacks/flowhook/{kind}"), "encoding": encoding})),
            )
            .await;
        actions.insert(kind.into(), a["id"].clone());
    }
    api.must(
        "PUT",
        &Api::org("/sync-strategy"),
        None,
        Some(json!({"actions": actions, "ordered": true})),
    )
    .await;
    app["systemToken"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- the workload

#[derive(Default, Debug)]
struct Counts {
    steps: usize,
    started: usize,
    commands_ok: usize,
    commands_refused: usize,
    unanswered: usize,
    by_command: BTreeMap<&'static str, usize>,
}

/// One random step; `None` when there is nothing left to do.
async fn step(
    api: &Api,
    rng: &mut Rng,
    running: &mut Vec<String>,
    counts: &mut Counts,
) -> Option<()> {
    let start = counts.started < INSTANCES && (running.is_empty() || rng.chance(35));
    if start {
        let code = *rng.pick(&["leave", "purchase", "contract", "expense"]);
        let by = *rng.pick(ORIGINATORS);
        let form =
            json!({"days": rng.below(7).to_string(), "amount": (rng.below(20) * 100).to_string()});
        let body = json!({"processCode": code, "title": format!("{code} #{}", counts.started), "formData": form});
        counts.started += 1;
        match api
            .call("POST", &Api::org("/instances"), Some(by), Some(body))
            .await
        {
            Answer::Ok(v) => {
                running.push(
                    v["instance"]["processInstanceId"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
                *counts.by_command.entry("start").or_default() += 1;
                counts.commands_ok += 1;
            }
            Answer::Refused(_) => counts.commands_refused += 1,
            Answer::Down => counts.unanswered += 1,
        }
        return Some(());
    }
    if running.is_empty() {
        return None;
    }
    let i = rng.below(running.len());
    let id = running[i].clone();
    let inst = match api
        .call("GET", &Api::org(&format!("/instances/{id}")), None, None)
        .await
    {
        Answer::Ok(v) => v,
        Answer::Refused(_) => {
            running.swap_remove(i);
            return Some(());
        }
        Answer::Down => {
            counts.unanswered += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Some(());
        }
    };
    if inst["status"] != "running" {
        running.swap_remove(i);
        return Some(());
    }
    let open: Vec<&Value> = inst["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "open")
        .collect();
    let originator = inst["originatorId"].as_str().unwrap().to_owned();
    let roll = rng.below(100);
    let (name, method, path, user, body): (&'static str, &str, String, String, Option<Value>) =
        if roll < 5 || open.is_empty() {
            (
                "withdraw",
                "POST",
                format!("/instances/{id}/withdraw"),
                originator,
                None,
            )
        } else if roll < 9 {
            (
                "terminate",
                "POST",
                format!("/instances/{id}/terminate"),
                "admin".into(),
                None,
            )
        } else if roll < 14 {
            (
                "delete",
                "DELETE",
                format!("/instances/{id}"),
                "admin".into(),
                None,
            )
        } else {
            let task = *rng.pick(&open);
            let tid = task["taskId"].as_str().unwrap();
            let assignee = task["userId"].as_str().unwrap().to_owned();
            let other = rng.pick(PEOPLE).0;
            let roll = rng.below(100);
            let (name, body) = if roll < 60 {
                ("agree", json!({"remark": "ok"}))
            } else if roll < 70 {
                ("disagree", json!({"remark": "no"}))
            } else if roll < 80 {
                ("forward", json!({"to": other}))
            } else if roll < 90 {
                let position = if rng.chance(50) { "before" } else { "after" };
                ("append", json!({"users": [other], "position": position}))
            } else {
                let target = if rng.chance(50) {
                    "originator".to_owned()
                } else {
                    task["nodeId"].as_str().unwrap().to_owned()
                };
                ("return", json!({"target": target}))
            };
            (
                name,
                "POST",
                format!("/tasks/{tid}/{name}"),
                assignee,
                Some(body),
            )
        };
    match api.call(method, &Api::org(&path), Some(&user), body).await {
        Answer::Ok(_) => {
            counts.commands_ok += 1;
            *counts.by_command.entry(name).or_default() += 1;
        }
        Answer::Refused(_) => counts.commands_refused += 1,
        Answer::Down => {
            counts.unanswered += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(())
}

// ---------------------------------------------------------------- the comparison

type Lists = BTreeMap<(String, String), BTreeSet<String>>;

async fn flowhook_lists(api: &Api) -> Lists {
    let mut out = Lists::new();
    for (user, _, _) in PEOPLE {
        for list in ["todo", "done", "cc", "created"] {
            let mut ids = BTreeSet::new();
            let mut cursor = String::new();
            loop {
                let page = api
                    .must(
                        "GET",
                        &Api::org(&format!(
                            "/users/{user}/tasks?list={list}&limit=100{cursor}"
                        )),
                        None,
                        None,
                    )
                    .await;
                for item in page["items"].as_array().unwrap() {
                    ids.insert(item["id"].as_str().unwrap().to_owned());
                }
                match page["nextCursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={}", common::urlencode(c)),
                    None => break,
                }
            }
            out.insert((user.to_string(), list.to_string()), ids);
        }
    }
    out
}

async fn inbox_lists(client: &reqwest::Client, addr: &str) -> Option<Lists> {
    let mut out = Lists::new();
    for (user, _, _) in PEOPLE {
        for list in ["todo", "done", "cc", "created"] {
            let mut ids = BTreeSet::new();
            let mut cursor = String::new();
            loop {
                let url = format!("http://{addr}/users/{user}/tasks?list={list}&limit=100{cursor}");
                let page: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                for item in page["items"].as_array()? {
                    ids.insert(item["id"].as_str()?.to_owned());
                }
                match page["nextCursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={}", common::urlencode(c)),
                    None => break,
                }
            }
            out.insert((user.to_string(), list.to_string()), ids);
        }
    }
    Some(out)
}

async fn rows(url: &str, sql: &str) -> Vec<sqlx::any::AnyRow> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url)
        .await
        .expect("the database opens");
    let rows = sqlx::query(sql)
        .fetch_all(&pool)
        .await
        .expect("the query runs");
    pool.close().await;
    rows
}

/// Flowhook's stored events: id → (instance, seq).
async fn stored_events(url: &str) -> HashMap<String, (String, i64)> {
    use sqlx::Row;
    rows(
        url,
        &format!("SELECT id, instance_id, seq FROM events WHERE corp_id = '{CORP}'"),
    )
    .await
    .iter()
    .map(|r| {
        (
            r.get::<String, _>(0),
            (r.get::<String, _>(1), r.get::<i64, _>(2)),
        )
    })
    .collect()
}

/// The inbox's receipts in arrival order: (event id, seq, instance).
async fn receipts(url: &str) -> Vec<(String, i64, String)> {
    use sqlx::Row;
    rows(
        url,
        "SELECT event_id, seq, form_inst_id FROM receipts ORDER BY arrival",
    )
    .await
    .iter()
    .map(|r| {
        (
            r.get::<String, _>(0),
            r.get::<i64, _>(1),
            r.get::<String, _>(2),
        )
    })
    .collect()
}

fn diff(a: &Lists, b: &Lists) -> String {
    let mut out = String::new();
    for (k, v) in a {
        let w = b.get(k).cloned().unwrap_or_default();
        if *v != w {
            let missing: Vec<_> = v.difference(&w).take(5).collect();
            let extra: Vec<_> = w.difference(v).take(5).collect();
            out.push_str(&format!(
                "{k:?}: flowhook {} inbox {}; missing {missing:?} extra {extra:?}\n",
                v.len(),
                w.len()
            ));
        }
    }
    out
}

// ---------------------------------------------------------------- the runs

async fn run(postgres: bool, faults: bool) {
    let Some(setup) = Setup::new(postgres).await else {
        eprintln!(
            "not run: set {} to run this on PostgreSQL",
            flowhook_testkit::POSTGRES_ENV
        );
        return;
    };
    let seed = seed();
    let label = format!(
        "{} {}",
        if postgres { "postgres" } else { "sqlite" },
        if faults { "faults" } else { "fault-free" }
    );
    eprintln!("e2e [{label}]: seed {seed} (replay with FLOWHOOK_E2E_SEED={seed})");
    let mut rng = Rng(seed);

    let first = setup.launcher.flowhook();
    let api = Api {
        base: Arc::new(RwLock::new(format!("http://{}", first.addr))),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    // The inbox needs the app's token, which the provisioning creates: start the proxy first.
    let (proxy, proxy_url) = Proxy::start(String::new(), if faults { 20 } else { 0 }, seed).await;
    let token = provision(&api, &proxy_url).await;
    let mut inbox = setup.inbox(&token);
    *proxy.target.write().unwrap() = inbox.addr.clone();

    let started = Instant::now();
    let mut counts = Counts::default();
    let mut running = Vec::new();
    let mut flowhook = Some(first);
    let mut tail_steps = 0;
    let mut killer: Option<tokio::task::JoinHandle<Proc>> = None;
    // The faults strike at a third and two thirds of the instances started.
    let (mut inbox_restarted, mut flowhook_killed) = (false, false);
    while counts.steps < MAX_STEPS && started.elapsed() < Duration::from_secs(240) {
        if faults && !inbox_restarted && counts.started >= INSTANCES / 3 {
            inbox_restarted = true;
            inbox.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            inbox = setup.inbox(&token);
            *proxy.target.write().unwrap() = inbox.addr.clone();
        }
        if faults && !flowhook_killed && counts.started >= 2 * INSTANCES / 3 {
            flowhook_killed = true;
            // Killed from the side, a few milliseconds in: commands and deliveries in flight.
            let delay = Duration::from_millis(rng.below(20) as u64);
            let mut node = flowhook.take().expect("flowhook runs");
            let (base, launcher) = (api.base.clone(), setup.launcher.clone());
            killer = Some(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                node.kill();
                let restarted = tokio::task::spawn_blocking(move || launcher.flowhook())
                    .await
                    .unwrap();
                *base.write().unwrap() = format!("http://{}", restarted.addr);
                restarted
            }));
        }
        // Once every instance is started, a few more steps, then stop with work still open.
        if counts.started >= INSTANCES {
            tail_steps += 1;
            if tail_steps > 150 {
                break;
            }
        }
        counts.steps += 1;
        if step(&api, &mut rng, &mut running, &mut counts)
            .await
            .is_none()
        {
            break;
        }
        if killer.as_ref().is_some_and(|k| k.is_finished()) {
            flowhook = Some(killer.take().unwrap().await.unwrap());
        }
    }
    if let Some(k) = killer.take() {
        flowhook = Some(k.await.unwrap());
    }
    let flowhook = flowhook.expect("flowhook runs");
    let workload_secs = started.elapsed().as_secs_f64();

    // Wait for the pipeline to drain: every stored event received, the lists equal.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let (events, expected, got) = loop {
        let events = stored_events(&setup.launcher.database_url).await;
        let received: BTreeSet<String> = receipts(&setup.inbox_db)
            .await
            .into_iter()
            .map(|r| r.0)
            .collect();
        let all_in = events.keys().all(|id| received.contains(id));
        let expected = flowhook_lists(&api).await;
        let got = inbox_lists(&client, &inbox.addr).await.unwrap_or_default();
        if (all_in && expected == got) || Instant::now() > deadline {
            break (events, expected, got);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let receipts = receipts(&setup.inbox_db).await;
    let drained_secs = started.elapsed().as_secs_f64() - workload_secs;

    // Per-instance order of first arrivals.
    let mut last_seq: HashMap<&str, i64> = HashMap::new();
    let mut out_of_order = Vec::new();
    for (id, seq, instance) in &receipts {
        let prev = last_seq.insert(instance.as_str(), *seq);
        if prev.is_some_and(|p| p >= *seq) {
            out_of_order.push(format!("{instance}: seq {seq} after {prev:?} ({id})"));
        }
    }
    let missing: Vec<&String> = events
        .keys()
        .filter(|id| !receipts.iter().any(|r| &r.0 == *id))
        .take(5)
        .collect();
    let unknown = receipts
        .iter()
        .filter(|r| !events.contains_key(&r.0))
        .count();
    let entries: usize = expected.values().map(BTreeSet::len).sum();
    let per_list: BTreeMap<&str, usize> = ["todo", "done", "cc", "created"]
        .into_iter()
        .map(|l| {
            (
                l,
                expected
                    .iter()
                    .filter(|((_, list), _)| list == l)
                    .map(|(_, v)| v.len())
                    .sum(),
            )
        })
        .collect();
    eprintln!(
        "e2e [{label}]: seed {seed}: {} steps in {workload_secs:.1} s, instances started {} (of {INSTANCES}), commands ok {} refused {} unanswered {}, {:?}; \
         events {} received {} (unknown {unknown}), list entries {entries} {per_list:?}; proxy: forwarded {} injected-before {} injected-after {} inbox-down {}; drained in {drained_secs:.1} s",
        counts.steps,
        counts.started,
        counts.commands_ok,
        counts.commands_refused,
        counts.unanswered,
        counts.by_command,
        events.len(),
        receipts.len(),
        proxy.stats.forwarded.load(Ordering::Relaxed),
        proxy.stats.refused_before.load(Ordering::Relaxed),
        proxy.stats.refused_after.load(Ordering::Relaxed),
        proxy.stats.upstream_down.load(Ordering::Relaxed),
    );
    assert!(
        counts.started >= INSTANCES,
        "the workload started every instance (seed {seed})"
    );
    for c in [
        "start",
        "agree",
        "disagree",
        "forward",
        "append",
        "return",
        "withdraw",
        "terminate",
        "delete",
    ] {
        assert!(
            counts.by_command.get(c).copied().unwrap_or(0) > 0,
            "no successful {c} (seed {seed})"
        );
    }
    assert!(
        missing.is_empty(),
        "events never received (seed {seed}): {missing:?}"
    );
    assert_eq!(unknown, 0, "the inbox holds only Flowhook's events");
    assert!(
        out_of_order.is_empty(),
        "out of order (seed {seed}): {:?}",
        &out_of_order[..out_of_order.len().min(5)]
    );
    assert!(
        expected == got,
        "lists differ (seed {seed}):\n{}",
        diff(&expected, &got)
    );
    assert!(
        per_list.values().all(|n| *n > 0),
        "every kind of list has entries: {per_list:?}"
    );
    if faults {
        assert!(inbox_restarted && flowhook_killed);
        assert!(
            proxy.stats.refused_before.load(Ordering::Relaxed) > 0
                && proxy.stats.refused_after.load(Ordering::Relaxed) > 0
        );
    }
    flowhook.stop();
    inbox.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fault_free() {
    run(false, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_with_faults() {
    run(false, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fault_free() {
    run(true, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_faults() {
    run(true, true).await
}
