//! The real binary: a 2xx means the event is on disk. Each round sends callbacks, kills the
//! process with SIGKILL the moment the answers are in, restarts it on the same file and finds
//! every acknowledged event.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use flowhook_testkit::KillOnDrop;

struct Inbox {
    child: KillOnDrop,
    addr: String,
}

fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("inbox.toml");
    std::fs::write(
        &path,
        format!(
            "database_url = \"sqlite://{}\"\nlog_format = \"json\"\n\n[[sources]]\nname = \"yida\"\n[sources.apps]\nAPP_Y = \"{YIDA_TOKEN}\"\n",
            dir.join("inbox.db").display()
        ),
    )
    .unwrap();
    path
}

fn start(config: &std::path::Path) -> Inbox {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowhook-inbox"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the inbox starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the inbox listens");
    Inbox {
        child: child.into(),
        addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_2xx_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let client = reqwest::Client::new();
    let mut acknowledged: Vec<(String, String)> = Vec::new(); // (user, task)
    for round in 0..5 {
        let mut inbox = start(&config);
        let mut sends = Vec::new();
        for n in 0..(1 + round * 8) {
            let (client, addr) = (client.clone(), inbox.addr.clone());
            let user = format!("u{}", n % 3);
            let task = format!("r{round}-t{n}");
            sends.push(tokio::spawn(async move {
                let e = created("APP_Y", &format!("r{round}"), &task, &user, "u9");
                let body = flowhook_sign::wire::encode(
                    &e.to_signed_params(now_ms(), YIDA_TOKEN),
                    flowhook_sign::wire::BodyEncoding::Form,
                );
                let resp = client
                    .post(format!("http://{addr}/callbacks/yida/created"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .expect("sent");
                (resp.status().as_u16(), user, task)
            }));
        }
        for s in sends {
            let (status, user, task) = s.await.unwrap();
            assert_eq!(status, 200);
            acknowledged.push((user, task));
        }
        inbox.child.kill().expect("SIGKILL");
        inbox.child.wait().unwrap();
    }
    let inbox = start(&config);
    for (user, task) in &acknowledged {
        let page: serde_json::Value = client
            .get(format!(
                "http://{}/users/{user}/tasks?list=todo&limit=500",
                inbox.addr
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == task.as_str()),
            "acknowledged {task} of {user} was lost"
        );
    }
    eprintln!(
        "durability: {} events acknowledged over 5 SIGKILLs, all found",
        acknowledged.len()
    );
    let mut inbox = inbox;
    let _ = Command::new("kill")
        .args(["-INT", &inbox.child.id().to_string()])
        .status();
    assert!(
        inbox.child.wait().unwrap().success(),
        "a clean stop on SIGINT"
    );
}

/// Issue 18 item 10: with the text log format and its output not a terminal (a pipe here), the
/// log holds no ANSI escape codes.
#[test]
fn a_text_log_that_is_not_a_terminal_has_no_colours() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowhook-inbox"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the inbox starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the inbox logs that it listens");
    assert!(!line.contains('\x1b'), "escape codes in {line:?}");
    assert!(line.contains("INFO"), "{line:?}");
}
