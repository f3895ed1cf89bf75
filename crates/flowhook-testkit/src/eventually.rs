//! `eventually`: waits for what the system under test reaches on its own time (a delivery
//! made, a breaker opened, a job done) instead of a hand-written polling loop, and fails with
//! a message that names what was awaited and the last state seen.
//!
//! It asks again every [`POLL`] until the bound has passed, then once more, so a check is never
//! judged on an answer older than the bound. The bound is measured on tokio's clock, so under
//! `tokio::time::pause` it advances with the paused clock. Where time itself is the subject (a
//! retry delay, a cooldown), pause the clock instead of polling.

use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

/// How long `eventually` sleeps between two checks.
pub const POLL: Duration = Duration::from_millis(20);

/// What one check answers: done (with a value), or not yet (with what it saw).
///
/// `bool` (`true` is done), `Option<T>` (`Some` is done) and `Result<T, S>` (`Ok` is done;
/// `Err` carries the state seen, shown if the wait fails) are outcomes.
pub trait Outcome {
    /// What `eventually` returns once done.
    type Done;
    /// What a check that is not done saw, shown when the bound runs out.
    type Seen: Debug;
    fn into_result(self) -> Result<Self::Done, Self::Seen>;
}

/// What a `bool` or `Option` check that is not done yet shows.
#[derive(Debug)]
pub struct NotYet;

impl Outcome for bool {
    type Done = ();
    type Seen = NotYet;
    fn into_result(self) -> Result<(), NotYet> {
        if self {
            Ok(())
        } else {
            Err(NotYet)
        }
    }
}

impl<T> Outcome for Option<T> {
    type Done = T;
    type Seen = NotYet;
    fn into_result(self) -> Result<T, NotYet> {
        self.ok_or(NotYet)
    }
}

impl<T, S: Debug> Outcome for Result<T, S> {
    type Done = T;
    type Seen = S;
    fn into_result(self) -> Result<T, S> {
        self
    }
}

/// Runs `check` until it is done, and returns what it returned; panics naming `what` and the
/// last state seen when it is still not done after `within`.
///
/// ```ignore
/// let dead = eventually("a dead delivery", Duration::from_secs(12), async || {
///     let dead = deliveries(&org, "&status=dead").await;
///     if dead.is_empty() { Err(dead) } else { Ok(dead) }
/// })
/// .await;
/// ```
pub async fn eventually<O: Outcome>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> O,
) -> O::Done {
    let deadline = Instant::now() + within;
    loop {
        let out_of_time = Instant::now() >= deadline;
        match check().await.into_result() {
            Ok(done) => return done,
            Err(seen) if out_of_time => {
                panic!("still waiting for {what} after {within:?}; last seen: {seen:#?}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_done() {
        let mut n = 0;
        let got = eventually("three checks", Duration::from_secs(5), async || {
            n += 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "still waiting for the answer after 100ms; last seen: ")]
    async fn names_what_and_the_last_state_seen_when_out_of_time() {
        let mut n = 0;
        eventually("the answer", Duration::from_millis(100), async || {
            n += 1;
            Err::<(), _>(n)
        })
        .await;
    }

    #[tokio::test]
    async fn checks_once_more_once_the_bound_has_passed() {
        let start = Instant::now();
        let within = Duration::from_millis(100);
        // Done only once the bound has passed: an answer older than the bound is not final.
        eventually("a check after the bound", within, async || {
            start.elapsed() >= within
        })
        .await;
    }
}
