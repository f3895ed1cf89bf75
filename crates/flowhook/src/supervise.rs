//! Supervision of the node's background tasks — the command writer, the dispatcher, retention:
//! a task that panics is logged and started again after a pause that doubles (from
//! [`FIRST_PAUSE`] to [`MAX_PAUSE`]), and while one is down `/readyz` answers 503 with its name.
//! Never a silent half-dead node: an orchestrator sees it, and the node mends itself.
//!
//! A task's run is a fresh future each time (`start`), built from state that outlives it (its
//! channels' receiving ends behind a lock, say), so a restart loses nothing queued.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

/// The pause before the first restart.
pub const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between restarts.
pub const MAX_PAUSE: Duration = Duration::from_secs(30);
/// A run that lasted this long was healthy: the next restart pauses [`FIRST_PAUSE`] again.
const HEALTHY_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// It panicked and starts again after a pause.
    Restarting,
    /// It ended (at shutdown, or because everything that fed it is gone).
    Stopped,
}

/// The states of the node's supervised tasks, by name.
#[derive(Debug, Default)]
pub struct Tasks {
    states: Mutex<BTreeMap<&'static str, State>>,
    restarts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Tasks {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn set(&self, name: &'static str, state: State) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, state);
    }

    /// Why this node cannot take traffic, if a task is down: a fixed phrase naming it.
    pub fn down(&self) -> Option<String> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.iter().find_map(|(name, state)| match state {
            State::Running => None,
            State::Restarting => Some(format!("the {name} failed and is restarting")),
            State::Stopped => Some(format!("the {name} has stopped")),
        })
    }

    /// How often `name` was restarted since the node started.
    pub fn restarts(&self, name: &str) -> u64 {
        let restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        restarts.get(name).copied().unwrap_or(0)
    }
}

/// Runs `start()` as task `name` until it returns; each time it panics, logs the panic, marks
/// the task down, pauses, and runs `start()` again.
pub fn supervise<F, Fut>(
    tasks: &Arc<Tasks>,
    name: &'static str,
    mut start: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks = tasks.clone();
    tasks.set(name, State::Running);
    tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            let began = Instant::now();
            match AssertUnwindSafe(start()).catch_unwind().await {
                Ok(()) => {
                    tasks.set(name, State::Stopped);
                    return;
                }
                Err(panic) => {
                    if began.elapsed() >= HEALTHY_FOR {
                        pause = FIRST_PAUSE;
                    }
                    tasks.set(name, State::Restarting);
                    *tasks
                        .restarts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name)
                        .or_default() += 1;
                    tracing::error!(
                        task = name,
                        panic = panic_message(&*panic),
                        restart_in = ?pause,
                        "a background task panicked; it restarts after a pause"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                    tasks.set(name, State::Running);
                    tracing::info!(task = name, "background task restarted");
                }
            }
        }
    })
}

/// The text a panic was raised with (`panic!`'s message, an `expect`'s).
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_down_while_it_pauses_then_runs_again() {
        let tasks = Tasks::new();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let counted = runs.clone();
        let handle = supervise(&tasks, "writer", move || {
            let run = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut released = released.clone();
            async move {
                if run < 2 {
                    panic!("invariant broken in run {run}");
                }
                let _ = released.wait_for(|r| *r).await;
            }
        });
        // First panic: down at once, for the first pause.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            tasks.down().as_deref(),
            Some("the writer failed and is restarting")
        );
        // The second run panics too: the pause doubles (250 ms, then 500 ms).
        tokio::time::sleep(FIRST_PAUSE).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(tasks.down().is_some());
        tokio::time::sleep(FIRST_PAUSE).await;
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "still pausing"
        );
        tokio::time::sleep(FIRST_PAUSE).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(tasks.down(), None, "the third run is running");
        assert_eq!(tasks.restarts("writer"), 2);
        // A run that returns is stopped, and stays so.
        release.send(true).unwrap();
        handle.await.unwrap();
        assert_eq!(tasks.down().as_deref(), Some("the writer has stopped"));
    }

    #[test]
    fn the_message_of_a_panic_is_read_whatever_its_type() {
        let caught = std::panic::catch_unwind(|| panic!("with {}", "format")).unwrap_err();
        assert_eq!(panic_message(&*caught), "with format");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*caught), "a panic without a message");
    }
}
