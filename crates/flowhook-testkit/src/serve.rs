//! A server under test on a task of its own, stopped when the test says: the shape of both
//! applications' `run_until_stopped(shutdown)`. Stopping completes the shutdown future, as
//! SIGINT would, and waits for the server to finish cleanly; dropping a [`Serving`] completes
//! it too, so a test that panics does not leave its server running.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running on a task of its own.
pub struct Serving<E> {
    /// Completes the server's [`Shutdown`]; taken by the first stop.
    stop: Option<oneshot::Sender<()>>,
    /// The server's task, awaited by the first stop.
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E: Debug + Send + 'static> Serving<E> {
    /// Runs `run(shutdown)` on a task of its own; `shutdown` completes at [`Serving::stop`].
    pub fn spawn<F>(run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(Shutdown(stopped)));
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it to finish; panics unless it stopped cleanly. Once
    /// stopped, does nothing.
    pub async fn stop(&mut self) {
        let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) else {
            return;
        };
        let _ = stop.send(());
        task.await.expect("server task").expect("clean stop");
    }
}

/// The shutdown signal a [`Serving`] hands its server: completes when the server is told to
/// stop, or its `Serving` is dropped.
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}
