//! The `flowhook` binary as a user runs it: `sign` and `verify` against the JDK vectors,
//! `serve` in an empty directory (start, answer, Ctrl-C, restart on the same file), and bad
//! configuration failing fast with one line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flowhook_testkit::{eventually, KillOnDrop};

const BIN: &str = env!("CARGO_BIN_EXE_flowhook");

fn flowhook(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args);
    // The developer's own settings must not leak into what is tested.
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOWHOOK_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs to completion, bounded in time.
fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowhook starts");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    rx.recv_timeout(Duration::from_secs(30))
        .expect("flowhook finished within 30 s")
        .expect("output collected")
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vector {
    name: String,
    system_token: String,
    params: serde_json::Map<String, serde_json::Value>,
    sign: String,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!(
        "../../flowhook-sign/tests/data/yida-sign.json"
    ))
    .unwrap()
}

fn key_values(v: &Vector) -> Vec<String> {
    v.params
        .iter()
        .map(|(k, val)| format!("{k}={}", val.as_str().unwrap()))
        .collect()
}

#[test]
fn sign_reproduces_every_vector() {
    let dir = tempfile::tempdir().unwrap();
    for v in vectors() {
        let kv = key_values(&v);
        let mut args = vec!["sign", "--token", &v.system_token];
        args.extend(kv.iter().map(String::as_str));
        let out = run(flowhook(dir.path(), &args));
        assert!(out.status.success(), "{}: {:?}", v.name, out);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.lines().last(),
            Some(format!("sign: {}", v.sign).as_str()),
            "{}: {stdout}",
            v.name
        );
    }
}

#[test]
fn verify_says_valid_or_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "finish-task")
        .unwrap();
    let mut params: Vec<(String, String)> = v
        .params
        .iter()
        .map(|(k, val)| (k.clone(), val.as_str().unwrap().to_owned()))
        .collect();
    params.push(("sign".into(), v.sign.clone()));
    let body = flowhook_sign::wire::encode(&params, flowhook_sign::wire::BodyEncoding::Form);
    std::fs::write(dir.path().join("good.txt"), format!("{body}\n")).unwrap();
    std::fs::write(
        dir.path().join("bad.txt"),
        body.replace("10245689123", "10245689999"),
    )
    .unwrap();

    let token = v.system_token.as_str();
    let ok = run(flowhook(
        dir.path(),
        &["verify", "--token", token, "--kind", "finished", "good.txt"],
    ));
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "valid: task.finished of app APP_RY60OCRF33Z7534XYZ"
    );

    let bad = run(flowhook(
        dir.path(),
        &["verify", "--token", token, "bad.txt"],
    ));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).starts_with("invalid: the signature does not match"),
        "{bad:?}"
    );

    let wrong_kind = run(flowhook(
        dir.path(),
        &["verify", "--token", token, "--kind", "created", "good.txt"],
    ));
    assert_eq!(wrong_kind.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&wrong_kind.stdout).trim(),
        "invalid: parameter `task` is missing"
    );

    let stale = run(flowhook(
        dir.path(),
        &[
            "verify",
            "--token",
            token,
            "--kind",
            "finished",
            "--max-skew-secs",
            "300",
            "good.txt",
        ],
    ));
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stdout).starts_with("invalid: stale request"));
}

#[test]
fn verify_refuses_a_body_without_end() {
    let dir = tempfile::tempdir().unwrap();
    // An endless file: read whole, it grew the process past 4 GB. Refused after 1 MiB + 1.
    assert_fails_with_one_line(
        run(flowhook(
            dir.path(),
            &["verify", "--token", "t", "/dev/zero"],
        )),
        "/dev/zero is larger than 1 MiB",
    );
    // The same on standard input.
    let mut cmd = flowhook(dir.path(), &["verify", "--token", "t", "-"]);
    let out = {
        let child = cmd
            .stdin(std::fs::File::open("/dev/zero").unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flowhook starts");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        rx.recv_timeout(Duration::from_secs(30))
            .expect("flowhook finished within 30 s")
            .expect("output collected")
    };
    assert_fails_with_one_line(out, "standard input is larger than 1 MiB");
    // Exactly 1 MiB is still read (and judged: not a valid body).
    std::fs::write(dir.path().join("big.txt"), vec![b'a'; 1024 * 1024]).unwrap();
    let out = run(flowhook(dir.path(), &["verify", "--token", "t", "big.txt"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("invalid: "));
}

/// A running `flowhook serve`, its stderr read line by line on a thread.
struct Server {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(dir, extra, &[])
    }

    /// [`Server::start`] with these environment variables set for the server alone.
    fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--log-format", "json"];
        args.extend_from_slice(extra);
        let mut cmd = flowhook(dir, &args);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flowhook serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child: child.into(),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a JSON log line whose `message` is `message`.
    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{message}` log line; saw {:#?}", self.seen));
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == message {
                    return v;
                }
            }
        }
    }

    fn interrupt_and_wait(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("flowhook did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn serve_creates_its_file_answers_stops_and_restarts_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let ready = server.wait_for("database ready");
    let schema = ready["schema_to"].as_i64().unwrap();
    assert_eq!((ready["schema_from"].as_i64(), schema > 0), (Some(0), true));
    let installation = ready["installation"].as_str().unwrap().to_owned();
    let addr = server.wait_for("listening")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        dir.path().join("flowhook.db").is_file(),
        "SQLite file created in the working directory"
    );

    assert_eq!(get(&addr, "/healthz").await.0, 200);
    let (status, body) = get(&addr, "/readyz").await;
    assert_eq!((status, body.contains("\"sqlite\"")), (200, true), "{body}");
    let (status, metrics) = get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("flowhook_http_requests_total"),
        "{metrics}"
    );

    let status = server.interrupt_and_wait();
    assert!(status.success(), "clean exit on Ctrl-C: {status:?}");

    // Second start: same file, nothing to migrate, same installation.
    let mut server = Server::start(dir.path(), &[]);
    let ready = server.wait_for("database ready");
    assert_eq!(
        (ready["schema_from"].as_i64(), ready["schema_to"].as_i64()),
        (Some(schema), Some(schema)),
        "nothing to migrate on the second start"
    );
    assert_eq!(ready["installation"].as_str(), Some(installation.as_str()));
    let addr = server.wait_for("listening")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(get(&addr, "/readyz").await.0, 200);
    assert!(server.interrupt_and_wait().success());
}

/// Fails with exit status 2 and exactly one line on stderr, which contains `expected`.
fn assert_fails_with_one_line(out: Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("flowhook: ") && stderr.contains(expected),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_fails_fast_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("typo.toml"),
        "databse_url = \"sqlite://x.db\"\n",
    )
    .unwrap();
    assert_fails_with_one_line(
        run(flowhook(dir.path(), &["--config", "typo.toml", "serve"])),
        "unknown field: found `databse_url`",
    );
    assert_fails_with_one_line(
        run(flowhook(dir.path(), &["--config", "missing.toml", "serve"])),
        "missing.toml: not found",
    );
    assert_fails_with_one_line(
        run(flowhook(
            dir.path(),
            &["serve", "--database-url", "mysql://u:hunter2@db/x"],
        )),
        "unsupported scheme `mysql`",
    );
    assert_fails_with_one_line(
        run(flowhook(
            dir.path(),
            &["serve", "--listen", "not-an-address"],
        )),
        "listen",
    );
    let mut env_bad = flowhook(dir.path(), &["serve"]);
    env_bad.env("FLOWHOOK_LOG_FORMAT", "yaml");
    assert_fails_with_one_line(run(env_bad), "yaml");
    // Nothing listens on port 1: refused at once, with the cause and without the password.
    let out = run(flowhook(
        dir.path(),
        &[
            "serve",
            "--database-url",
            "postgres://postgres:hunter2@127.0.0.1:1/flowhook",
        ],
    ));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    assert_fails_with_one_line(out, "Connection refused");
    assert!(
        !dir.path().join("flowhook.db").exists(),
        "no file created by a failed start"
    );
}

#[test]
fn flags_beat_environment_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.toml"),
        "log_level = \"warn\"\nlisten = \"127.0.0.1:7001\"\nbody_limit_bytes = 2048\n",
    )
    .unwrap();
    let mut cmd = flowhook(
        dir.path(),
        &[
            "--config",
            "f.toml",
            "--listen",
            "127.0.0.1:7003",
            "config",
            "show",
        ],
    );
    cmd.env("FLOWHOOK_LISTEN", "127.0.0.1:7002")
        .env("FLOWHOOK_LOG_LEVEL", "debug");
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("listen = \"127.0.0.1:7003\""), "{shown}");
    assert!(shown.contains("log_level = \"debug\""), "{shown}");
    assert!(shown.contains("body_limit_bytes = 2048"), "{shown}");
}

/// A listener on 127.0.0.1 that counts connections and answers each `200` (a proxy would).
async fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, count)
}

/// With `HTTP_PROXY` (and its kin) in the server's environment and `egress_deny_private` on, a
/// connector to `localhost` is refused — by test fire and by the dispatcher — and nothing goes
/// through the proxy: deliveries never use a proxy they were not configured with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_in_the_environment_is_never_used() {
    const KEY: &str = "cli-bootstrap-key-0123456789";
    let (proxy_port, proxied) = counting_listener().await;
    let (receiver_port, received) = counting_listener().await;
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|k| (*k, proxy.as_str()))
    .collect();
    env.extend([
        ("NO_PROXY", ""),
        ("no_proxy", ""),
        ("FLOWHOOK_ADMIN_KEY", KEY),
        ("FLOWHOOK_EGRESS_DENY_PRIVATE", "true"),
        ("FLOWHOOK_DELIVERY_POLL_MS", "50"),
    ]);
    let mut server = Server::start_with_env(dir.path(), &[], &env);
    let addr = server.wait_for("listening")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    // This process's own client must not take the proxy either.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |method: reqwest::Method, path: &str, key: &str, body: serde_json::Value| {
        let req = client
            .request(method, format!("http://{addr}/api/v1{path}"))
            .bearer_auth(key)
            .json(&body);
        let path = path.to_owned();
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            assert!(status < 300, "{path}: {status} {v}");
            v
        }
    };
    use reqwest::Method;
    use serde_json::json;
    call(
        Method::POST,
        "/orgs",
        KEY,
        json!({"corpId": "acme", "name": "acme"}),
    )
    .await;
    let key = call(
        Method::POST,
        "/orgs/acme/api-keys",
        KEY,
        json!({"name": "t", "scopes": ["admin"]}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        Method::POST,
        "/orgs/acme/apps",
        &key,
        json!({"appType": "APP_ACME", "name": "a"}),
    )
    .await;
    let con = call(
        Method::POST,
        "/orgs/acme/connectors",
        &key,
        json!({"name": "local", "baseUrl": format!("http://localhost:{receiver_port}/cb")}),
    )
    .await;
    let action = call(
        Method::POST,
        "/orgs/acme/actions",
        &key,
        json!({"connectorId": con["id"], "name": "created", "path": "/created"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let fired = call(
        Method::POST,
        &format!("/orgs/acme/actions/{action}/test"),
        &key,
        json!({"events": ["task.created"]}),
    )
    .await;
    assert_eq!(fired[0]["errorKind"], "egress", "{fired}");

    call(
        Method::PUT,
        "/orgs/acme/sync-strategy",
        &key,
        json!({"actions": {"created": action}}),
    )
    .await;
    call(
        Method::POST,
        "/apps/APP_ACME/events",
        &key,
        json!({"type": "task.created", "processInstanceId": "ext-1", "eventId": "ext-e1", "payload": {
            "appType": "APP_ACME", "corpId": "acme", "taskId": "t1", "title": "T", "actionerId": "bob",
            "processCode": "p", "dataMap": {}}}),
    )
    .await;
    let attempt = eventually("an attempt", Duration::from_secs(20), async || {
        let page = call(Method::GET, "/orgs/acme/deliveries", &key, json!(null)).await;
        let id = page["items"][0]["id"]
            .as_str()
            .ok_or_else(|| page.clone())?;
        let detail = call(
            Method::GET,
            &format!("/orgs/acme/deliveries/{id}"),
            &key,
            json!(null),
        )
        .await;
        match &detail["attempts"][0] {
            serde_json::Value::Null => Err(detail),
            attempt => Ok(attempt.clone()),
        }
    })
    .await;
    assert_eq!(
        attempt["errorKind"], "egress",
        "the delivery was refused: {attempt}"
    );
    assert_eq!(
        (
            proxied.load(std::sync::atomic::Ordering::SeqCst),
            received.load(std::sync::atomic::Ordering::SeqCst)
        ),
        (0, 0),
        "nothing went through the proxy, nothing reached the receiver"
    );
    assert!(server.interrupt_and_wait().success());
}

/// Issue 18 item 15: `sign --help` and `verify --help` list their own flags, not the server's;
/// `serve --help` lists the server's; the configuration flags still work before the command
/// and after it, and `FLOWHOOK_SIGN_TOKEN` still feeds `sign`.
#[test]
fn each_command_shows_its_own_flags() {
    let dir = tempfile::tempdir().unwrap();
    let server_flags = ["--listen", "--database-url", "--log-format", "--config"];
    for command in ["sign", "verify"] {
        let out = run(flowhook(dir.path(), &[command, "--help"]));
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--token"), "{command}: {help}");
        for flag in server_flags {
            assert!(
                !help.contains(flag),
                "{command} --help lists {flag}: {help}"
            );
        }
    }
    let out = run(flowhook(dir.path(), &["serve", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in server_flags {
        assert!(help.contains(flag), "serve --help lacks {flag}: {help}");
    }
    for args in [
        &["--listen", "127.0.0.1:7004", "config", "show"][..],
        &["config", "show", "--listen", "127.0.0.1:7004"][..],
    ] {
        let out = run(flowhook(dir.path(), args));
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:7004"),
            "{args:?}"
        );
    }
    let mut sign = flowhook(dir.path(), &["sign", "-q", "a=1"]);
    sign.env("FLOWHOOK_SIGN_TOKEN", "T");
    let out = run(sign);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sign: "));
}

/// Issue 18 item 11: `serve --demo` writes the demo app's systemToken beside the key file
/// (mode 0600), and it is the token deliveries are signed with: a test fire to a receiver here
/// verifies with it.
#[tokio::test]
async fn serve_demo_writes_the_system_token_beside_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--demo"]);
    // Seeded before it listens.
    let addr = server.wait_for("listening")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = std::fs::read_to_string(dir.path().join("flowhook-demo-key.txt")).unwrap();
    let token_path = dir.path().join("flowhook-demo-system-token.txt");
    let token = std::fs::read_to_string(&token_path).unwrap();
    let (key, token) = (key.trim().to_owned(), token.trim().to_owned());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A receiver that keeps the body of what it gets.
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let kept = bodies.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let kept = kept.clone();
        async move {
            kept.lock().unwrap().push(body);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    let api = format!("http://{addr}/api/v1/orgs/demo-corp");
    let con: serde_json::Value = client
        .post(format!("{api}/connectors"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "here", "baseUrl": receiver}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let action: serde_json::Value = client
        .post(format!("{api}/actions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"connectorId": con["id"], "name": "f", "path": "/finished"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fired = client
        .post(format!(
            "{api}/actions/{}/test",
            action["id"].as_str().unwrap()
        ))
        .bearer_auth(&key)
        .json(&serde_json::json!({"events": ["task.finished"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(fired.status(), 200);
    let body = bodies
        .lock()
        .unwrap()
        .pop()
        .expect("the receiver got the test fire");
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(flowhook_sign::yida::verify(&params, &token), Ok(()));
    assert!(server.interrupt_and_wait().success());
}

/// A flowhook-inbox on 127.0.0.1 (a SQLite file in `dir`) knowing `APP_CLI`'s token, with a
/// replay window of `max_skew_secs`; served by `rt` until it is dropped.
fn inbox(rt: &tokio::runtime::Runtime, dir: &Path, max_skew_secs: u64) -> String {
    use flowhook_inbox::config::{Config, Source, Token, Tokens};
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = format!(
        "sqlite://{}",
        dir.join(format!("inbox-{max_skew_secs}.db")).display()
    );
    config.max_skew_secs = max_skew_secs;
    config.sources = vec![Source {
        name: "flowhook".into(),
        apps: std::collections::BTreeMap::from([(
            "APP_CLI".into(),
            Tokens::One(Token(CHECK_TOKEN.into())),
        )]),
    }];
    config.validate().unwrap();
    rt.block_on(async {
        let app = flowhook_inbox::Application::build(config).await.unwrap();
        let url = format!("http://{}/callbacks/flowhook/{{event}}", app.local_addr());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        url
    })
}

const CHECK_TOKEN: &str = "CLI-CHECK-TOKEN-0123456789";

/// `check-receiver --url` run by the binary against real receivers on 127.0.0.1: exit 0 when
/// every probe passes (flowhook-inbox), also with `--strict`; an inbox that accepts a
/// 10-minute-old `dateTime` only WARNs: 0, or 2 with `--strict`; a receiver that accepts
/// everything FAILs: 1, the scorecard naming the probes and the README section.
#[test]
fn check_receiver_exit_status_follows_the_grades() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let strict = inbox(&rt, dir.path(), 300);
    let lax = inbox(&rt, dir.path(), 3600);
    let anything = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    let check = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "check-receiver",
            "--url",
            url,
            "--token",
            CHECK_TOKEN,
            "--app-type",
            "APP_CLI",
        ];
        args.extend(extra);
        let out = run(flowhook(dir.path(), &args));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.code(),
            stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = check(&strict, &["--strict", "--encoding", "both"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("0 WARN, 0 FAIL"), "{stdout}");
    assert!(stdout.contains("kinds_json"), "{stdout}");

    let (code, stdout, stderr) = check(&lax, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("WARN  replay"), "{stdout}");
    let (code, stdout, _) = check(&lax, &["--strict"]);
    assert_eq!(code, Some(2), "{stdout}");

    let (code, stdout, stderr) = check(&anything, &["--json"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let card: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(card["failed"], 3, "{stdout}");
    let (code, stdout, _) = check(&anything, &[]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("FAIL  forged_sign"), "{stdout}");
    assert!(stdout.contains("accepts forged requests"), "{stdout}");
    assert!(stdout.contains("README \"Receiving events\""), "{stdout}");

    // Nothing listening: the first probe FAILs with the connection error, and the check ends
    // there rather than wait out every probe.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/{{event}}", l.local_addr().unwrap())
    };
    let (code, stdout, _) = check(&closed, &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  created"), "{stdout}");
    assert!(stdout.contains("0 PASS, 0 WARN, 1 FAIL"), "{stdout}");

    // Without its token the command says what is missing, with the usage error status.
    let out = run(flowhook(
        dir.path(),
        &[
            "check-receiver",
            "--url",
            &anything,
            "--app-type",
            "APP_CLI",
        ],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
}

/// `check-receiver --action` through a running `flowhook serve --demo`: the probes go to the
/// action's connector, the scorecard is printed and kept (`GET …/actions/{id}/checks`), and a
/// receiver that accepts everything makes the exit status 1.
#[test]
fn check_receiver_checks_an_action_through_a_running_flowhook() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let anything = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    let mut server = Server::start(dir.path(), &["--demo"]);
    let addr = server.wait_for("listening")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = std::fs::read_to_string(dir.path().join("flowhook-demo-key.txt"))
        .unwrap()
        .trim()
        .to_owned();
    let api = format!("http://{addr}/api/v1/orgs/{}", flowhook::demo::CORP_ID);
    let action = rt.block_on(async {
        let client = reqwest::Client::new();
        let con: serde_json::Value = client
            .post(format!("{api}/connectors"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"name": "checked", "baseUrl": anything}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let action: serde_json::Value = client
            .post(format!("{api}/actions"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"connectorId": con["id"], "name": "hook", "path": "/hook"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        action["id"].as_str().expect("an action").to_owned()
    });
    let out = run(flowhook(
        dir.path(),
        &[
            "check-receiver",
            "--action",
            &action,
            "--org",
            flowhook::demo::CORP_ID,
            "--server",
            &format!("http://{addr}"),
            "--key",
            &key,
        ],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{out:?}");
    assert!(stdout.contains("FAIL  forged_sign"), "{stdout}");
    assert!(stdout.contains(&format!("{anything}/hook")), "{stdout}");
    let kept: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{api}/actions/{action}/checks"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(kept.as_array().map(Vec::len), Some(1), "{kept}");
    assert_eq!(kept[0]["scorecard"]["failed"], 3);
    assert!(server.interrupt_and_wait().success());
}
