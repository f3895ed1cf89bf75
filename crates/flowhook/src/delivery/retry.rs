//! The retry policy: a pure function from (attempts so far, what happened, a random number) to
//! what to do next. No clock, no randomness of its own: both are inputs, so it is unit-tested
//! exactly.
//!
//! Default schedule after a failed attempt n: immediately, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h,
//! 3 h, 6 h, 12 h, then every 24 h until 3 days have passed since the first attempt; ±20 %
//! jitter; a `Retry-After` (429/503) is honoured within [1 s, 1 h]; then the delivery is `dead`.

use std::time::Duration;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx.
    Delivered,
    /// Any other failure; with the server's `Retry-After` when it sent one (429/503).
    Failed { retry_after: Option<Duration> },
    /// `410 Gone`: the endpoint says it is gone for good.
    Gone,
}

/// What to do with the delivery next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryIn(Duration),
    Dead,
    /// Stop sending to this endpoint until an operator resumes it (410).
    PauseEndpoint,
}

/// The schedule of delays; configurable (tests use milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before attempt n+1 after failed attempt n (n from 1).
    pub schedule: Vec<Duration>,
    /// After the schedule: this interval …
    pub then_every: Duration,
    /// … until this long after the first attempt.
    pub give_up_after: Duration,
    /// ± this fraction of each delay.
    pub jitter: f64,
    pub retry_after_min: Duration,
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let s = Duration::from_secs;
        RetryPolicy {
            schedule: vec![
                s(0),
                s(5),
                s(30),
                s(120),
                s(600),
                s(1800),
                s(3600),
                s(3 * 3600),
                s(6 * 3600),
                s(12 * 3600),
            ],
            then_every: s(24 * 3600),
            give_up_after: s(3 * 24 * 3600),
            jitter: 0.2,
            retry_after_min: s(1),
            retry_after_max: s(3600),
        }
    }
}

impl RetryPolicy {
    /// A policy from a list of delays in milliseconds, the rest as default (for configuration).
    pub fn from_millis(schedule_ms: &[u64], then_every_ms: u64, give_up_after_ms: u64) -> Self {
        RetryPolicy {
            schedule: schedule_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            then_every: Duration::from_millis(then_every_ms),
            give_up_after: Duration::from_millis(give_up_after_ms),
            ..RetryPolicy::default()
        }
    }

    /// After attempt number `attempt` (1 for the first) ended with `outcome`, `since_first` after
    /// the first attempt; `random` in [0, 1) picks the jitter.
    pub fn next(&self, attempt: u32, outcome: Outcome, since_first: Duration, random: f64) -> Next {
        match outcome {
            Outcome::Delivered => return Next::Done,
            Outcome::Gone => return Next::PauseEndpoint,
            Outcome::Failed { .. } => {}
        }
        let base = match self.schedule.get(attempt.saturating_sub(1) as usize) {
            Some(d) => *d,
            None => self.then_every,
        };
        let factor = 1.0 + self.jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        let mut delay = base.mul_f64(factor.max(0.0));
        if let Outcome::Failed {
            retry_after: Some(ra),
        } = outcome
        {
            delay = ra.clamp(self.retry_after_min, self.retry_after_max);
        }
        if since_first + delay > self.give_up_after {
            Next::Dead
        } else {
            Next::RetryIn(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: Outcome = Outcome::Failed { retry_after: None };
    const MID: f64 = 0.5; // no jitter

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_default_schedule() {
        let p = RetryPolicy::default();
        let mut elapsed = Duration::ZERO;
        let mut delays = Vec::new();
        for attempt in 1.. {
            match p.next(attempt, FAIL, elapsed, MID) {
                Next::RetryIn(d) => {
                    delays.push(d);
                    elapsed += d;
                }
                Next::Dead => break,
                other => panic!("{other:?}"),
            }
            assert!(attempt < 100);
        }
        let expected = [
            0,
            5,
            30,
            120,
            600,
            1800,
            3600,
            3 * 3600,
            6 * 3600,
            12 * 3600,
            86_400,
            86_400,
        ];
        assert_eq!(delays, expected.map(s));
        assert!(elapsed <= s(3 * 86_400));
        // The next 24 h step would pass 3 days: dead after 13 attempts.
        assert_eq!(delays.len() + 1, 13);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = RetryPolicy::default();
        // After the 3rd failed attempt the base delay is 30 s: 24 s to 36 s with jitter.
        assert_eq!(p.next(3, FAIL, s(0), 0.0), Next::RetryIn(s(24)));
        let high = match p.next(3, FAIL, s(0), 0.999_999) {
            Next::RetryIn(d) => d,
            other => panic!("{other:?}"),
        };
        assert!(high > s(35) && high < s(36), "{high:?}");
        assert_eq!(p.next(1, FAIL, s(0), 0.0), Next::RetryIn(s(0)));
    }

    #[test]
    fn success_gone_and_retry_after() {
        let p = RetryPolicy::default();
        assert_eq!(p.next(3, Outcome::Delivered, s(10), MID), Next::Done);
        assert_eq!(p.next(3, Outcome::Gone, s(10), MID), Next::PauseEndpoint);
        let ra = |d| Outcome::Failed {
            retry_after: Some(d),
        };
        assert_eq!(p.next(2, ra(s(90)), s(0), MID), Next::RetryIn(s(90)));
        assert_eq!(
            p.next(2, ra(s(0)), s(0), MID),
            Next::RetryIn(s(1)),
            "at least 1 s"
        );
        assert_eq!(
            p.next(2, ra(s(86_400)), s(0), MID),
            Next::RetryIn(s(3600)),
            "at most 1 h"
        );
        assert_eq!(p.next(2, FAIL, s(3 * 86_400), MID), Next::Dead);
    }
}
