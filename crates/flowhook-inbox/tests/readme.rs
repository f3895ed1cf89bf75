//! The README's story runs (issue 18 item 12): the `sh` block marked `readme-story` in the
//! workspace's README — Flowhook with demo data, a connector and actions to `flowhook-inbox`,
//! the sync strategy, the inbox, Bob approving, the inbox's lists — is taken from the file
//! itself and run with bash, `cargo run` standing for the binaries this build made, on free
//! ports instead of 8080 and 8090. So the README cannot drift from what works.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MARK: &str = "<!-- readme-story:";

/// The story's script, as the README has it.
fn story() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).expect("the README");
    let after = text
        .split_once(MARK)
        .unwrap_or_else(|| panic!("no `{MARK}` block in {}", readme.display()))
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("an sh block after the mark")
        .1;
    block
        .split_once("\n```")
        .expect("the block's end")
        .0
        .to_owned()
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_flowhook-inbox"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cargo run --release [-p flowhook-inbox] -- ARGS`, as the binaries of this build;
/// `cargo build …` has nothing left to do.
const CARGO_SHIM: &str = r#"cargo() {
  [ "$1" = build ] && return 0
  [ "$1" = run ] || { echo "the story may only 'cargo build' and 'cargo run'" >&2; return 2; }
  shift; [ "${1:-}" = --release ] && shift
  local bin="$FLOWHOOK_BIN"
  if [ "${1:-}" = -p ]; then
    case "$2" in flowhook-inbox) bin="$INBOX_BIN" ;; flowhook) ;; *) return 2 ;; esac
    shift 2
  fi
  [ "${1:-}" = -- ] && shift
  exec "$bin" "$@"
}
"#;

#[test]
fn the_readme_story_runs() {
    let flowhook = target_dir().join(format!("flowhook{}", std::env::consts::EXE_SUFFIX));
    assert!(
        flowhook.is_file(),
        "{} is missing: `cargo test --workspace` builds it",
        flowhook.display()
    );
    let (fh, inbox) = (free_port(), free_port());
    let script = story()
        .replace(":8080", &format!(":{fh}"))
        .replace(":8090", &format!(":{inbox}"));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("{CARGO_SHIM}\n{script}"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOWHOOK_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("FLOWHOOK_BIN", &flowhook)
        .env("INBOX_BIN", env!("CARGO_BIN_EXE_flowhook-inbox"))
        .env("FLOWHOOK_LISTEN", format!("127.0.0.1:{fh}"))
        .env("FLOWHOOK_INBOX_LISTEN", format!("127.0.0.1:{inbox}"))
        .env("FLOWHOOK_LOG_LEVEL", "warn")
        .env("FLOWHOOK_INBOX_LOG_LEVEL", "warn")
        // Deliveries retried fast, so the story does not wait on the default schedule.
        .env("FLOWHOOK_DELIVERY_POLL_MS", "100");
    let mut child = cmd.spawn().expect("bash runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the README story did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "the story failed: {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        out.contains("is done, in Flowhook and in the inbox"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
}
