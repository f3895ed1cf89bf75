//! A circuit breaker per endpoint (connector base URL), in memory on each node.
//!
//! Closed: send. After `threshold` consecutive failures: open — nothing is sent until `cooldown`
//! has passed; then half-open — exactly one delivery is let through as a probe. Its success
//! closes the breaker (and the caller makes the endpoint's waiting deliveries due at once); its
//! failure opens it again. A dead endpoint so costs healthy ones nothing.
//!
//! The dispatcher parks the deliveries an open breaker holds back (far in the future, not at the
//! cooldown's end: else the whole backlog would be claimed and held again every cooldown), so
//! it asks [`Breakers::probes_due`] which endpoints want a probe and claims one delivery for
//! each, due or not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Endpoint {
    state: State,
    failures: u32,
    opened_at: Instant,
    probing: bool,
    /// Epoch ms of the last success and the last failure seen.
    last_success_at: Option<i64>,
    last_failure_at: Option<i64>,
}

/// One endpoint's breaker as this node sees it (since it started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub state: State,
    /// Failures in a row (a success resets it).
    pub failures: u32,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
}

/// The breaker key of a connector's base URL: scheme, host and port (connectors to the same
/// server share one breaker).
pub fn endpoint_key(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => base_url.to_owned(),
    }
}

/// What the breaker says about sending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Send,
    /// Send, as the single probe of a half-open endpoint.
    Probe,
    Hold,
}

pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breakers {
            threshold: threshold.max(1),
            cooldown,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    pub fn permit(&self, endpoint: &str, now: Instant) -> Permit {
        let mut map = self.endpoints.lock().expect("breaker lock");
        let Some(e) = map.get_mut(endpoint) else {
            return Permit::Send;
        };
        match e.state {
            State::Closed => Permit::Send,
            State::Open if now.duration_since(e.opened_at) >= self.cooldown => {
                e.state = State::HalfOpen;
                e.probing = true;
                Permit::Probe
            }
            State::Open => Permit::Hold,
            State::HalfOpen if !e.probing => {
                e.probing = true;
                Permit::Probe
            }
            State::HalfOpen => Permit::Hold,
        }
    }

    /// Records an attempt's result; `true` when this success closed an open breaker.
    pub fn record(&self, endpoint: &str, success: bool, now: Instant) -> bool {
        let mut map = self.endpoints.lock().expect("breaker lock");
        let e = map.entry(endpoint.to_owned()).or_insert(Endpoint {
            state: State::Closed,
            failures: 0,
            opened_at: now,
            probing: false,
            last_success_at: None,
            last_failure_at: None,
        });
        e.probing = false;
        let at = Some(crate::store::now_ms());
        if success {
            e.last_success_at = at;
            let reopened = e.state != State::Closed;
            e.state = State::Closed;
            e.failures = 0;
            return reopened;
        }
        e.last_failure_at = at;
        e.failures += 1;
        if e.state == State::HalfOpen || e.failures >= self.threshold {
            e.state = State::Open;
            e.opened_at = now;
        }
        false
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// Opens the breaker of an endpoint this node has not sent to yet, with its probe due at
    /// once: a starting node's view of an endpoint that open breakers left deliveries parked
    /// for. One probe finds out whether it is back. An endpoint already seen is left as it is.
    pub fn open_for_probe(&self, endpoint: &str, now: Instant) {
        let mut map = self.endpoints.lock().expect("breaker lock");
        map.entry(endpoint.to_owned()).or_insert(Endpoint {
            state: State::Open,
            failures: 0,
            opened_at: now.checked_sub(self.cooldown).unwrap_or(now),
            probing: false,
            last_success_at: None,
            last_failure_at: None,
        });
    }

    /// The open endpoints whose cooldown has passed at `now`: each wants a probe.
    pub fn probes_due(&self, now: Instant) -> Vec<String> {
        let map = self.endpoints.lock().expect("breaker lock");
        map.iter()
            .filter(|(_, e)| {
                e.state == State::Open && now.duration_since(e.opened_at) >= self.cooldown
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// When the next open endpoint's cooldown ends (None: no endpoint is open).
    pub fn next_probe_at(&self) -> Option<Instant> {
        let map = self.endpoints.lock().expect("breaker lock");
        map.values()
            .filter(|e| e.state == State::Open)
            .map(|e| e.opened_at + self.cooldown)
            .min()
    }

    /// One endpoint's breaker (None: nothing sent to it since this node started).
    pub fn view(&self, endpoint: &str) -> Option<View> {
        let map = self.endpoints.lock().expect("breaker lock");
        map.get(endpoint).map(|e| View {
            state: e.state,
            failures: e.failures,
            last_success_at: e.last_success_at,
            last_failure_at: e.last_failure_at,
        })
    }

    /// Every endpoint's state, for metrics.
    pub fn states(&self) -> Vec<(String, State, u32)> {
        let map = self.endpoints.lock().expect("breaker lock");
        let mut v: Vec<_> = map
            .iter()
            .map(|(k, e)| (k.clone(), e.state, e.failures))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_once_and_closes() {
        let b = Breakers::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(!b.record("e", false, t0));
        }
        assert_eq!(b.permit("e", t0), Permit::Send, "below the threshold");
        b.record("e", false, t0);
        assert_eq!(b.permit("e", t0), Permit::Hold);
        assert_eq!(
            b.view("e").map(|v| (v.state, v.failures)),
            Some((State::Open, 3))
        );
        assert_eq!(
            b.permit("other", t0),
            Permit::Send,
            "other endpoints unaffected"
        );
        assert!(b.probes_due(t0).is_empty(), "cooling down");
        assert_eq!(b.next_probe_at(), Some(t0 + Duration::from_secs(10)));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.probes_due(later), vec!["e".to_owned()]);
        assert_eq!(b.permit("e", later), Permit::Probe);
        assert!(b.probes_due(later).is_empty(), "its probe is out");
        assert_eq!(b.permit("e", later), Permit::Hold, "one probe at a time");
        b.record("e", false, later);
        assert_eq!(
            b.permit("e", later),
            Permit::Hold,
            "a failed probe re-opens"
        );
        let again = later + Duration::from_secs(10);
        assert_eq!(b.permit("e", again), Permit::Probe);
        assert!(b.record("e", true, again), "the probe's success closes it");
        assert_eq!(b.permit("e", again), Permit::Send);
        assert_eq!(b.next_probe_at(), None);
        let view = b.view("e").expect("seen");
        assert_eq!((view.state, view.failures), (State::Closed, 0));
        assert!(view.last_success_at >= view.last_failure_at && view.last_failure_at.is_some());
        assert_eq!(b.view("never"), None);

        // A starting node's suspicion: open, its probe due now; a known endpoint is left alone.
        let now = Instant::now() + Duration::from_secs(60);
        b.open_for_probe("parked", now);
        b.open_for_probe("e", now);
        assert_eq!(b.probes_due(now), vec!["parked".to_owned()]);
        assert_eq!(b.permit("parked", now), Permit::Probe);
        assert_eq!(b.permit("e", now), Permit::Send);
        assert!(b.probes_due(again + Duration::from_secs(60)).is_empty());
    }
}
