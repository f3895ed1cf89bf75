//! Endpoint health, in memory on each node: a circuit breaker and a concurrency cap per
//! organisation and endpoint ([`EndpointKey`]), and a concurrency share per organisation.
//!
//! Keyed by organisation first: two organisations whose connectors reach the same host:port have
//! a breaker each, so one organisation's failures — or its misconfiguration — never hold back
//! another's deliveries.
//!
//! Closed: send. After `threshold` consecutive failures — counting requests in flight for longer
//! than [`HANG_AFTER`], so an endpoint that hangs opens it as surely as one that refuses — open:
//! nothing is sent until its cooldown has passed; then half-open: exactly one delivery is let
//! through as a probe. Its success closes the breaker (and the caller makes the endpoint's
//! waiting deliveries due at once); its failure opens it again. The cooldown starts short
//! (`breaker_first_cooldown_ms`, 250 ms) and doubles with each failed probe up to the longest
//! (`breaker_cooldown_ms`), with ±20 % jitter: an endpoint back after a blip gets its backlog
//! at once, a dead one costs one request per longest cooldown.
//!
//! Concurrency: an endpoint has at most its connector's cap of requests in flight, and an
//! organisation at most its share of the node's slots, so a slow or hanging endpoint — or one
//! organisation's flood — leaves the others their slots. A delivery over a cap is [`Busy`]:
//! the caller puts it back for a moment, and leaves saturated keys out of its claims. An
//! endpoint its hangs open is usually at its cap, with its waiting deliveries sent back busy:
//! it stays left out of the claims, and is reported by [`Breakers::take_to_park`] — the
//! dispatcher parks its waiting deliveries by a few set statements, with how many it sent back
//! busy. (Claimed instead, each would be read, held and parked by a record of its own: hundreds
//! at once, a stall for everyone.) When a hanging request ends, the key is no longer left out;
//! what came due meanwhile is claimed and parked one by one.
//!
//! The dispatcher parks the deliveries an open breaker holds back (far in the future, not at the
//! cooldown's end: else the whole backlog would be claimed and held again every cooldown), so
//! it asks [`Breakers::probes_due`] which endpoints want a probe and claims one delivery for
//! each, due or not.
//!
//! [`Busy`]: Permit::Busy

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// A request in flight longer than this counts toward the threshold as a failure would.
pub const HANG_AFTER: Duration = Duration::from_secs(2);

/// Which breaker: an organisation's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub corp_id: String,
    /// `scheme://host:port` of the connector's base URL ([`endpoint_of`]).
    pub endpoint: String,
}

impl EndpointKey {
    pub fn new(corp_id: &str, base_url: &str) -> Self {
        EndpointKey {
            corp_id: corp_id.to_owned(),
            endpoint: endpoint_of(base_url),
        }
    }
}

/// The endpoint of a connector's base URL: scheme, host and port (an organisation's connectors
/// to the same server share one breaker).
pub fn endpoint_of(base_url: &str) -> String {
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

#[derive(Debug)]
struct Endpoint {
    state: State,
    failures: u32,
    opened_at: Instant,
    /// The current cooldown: [`FIRST_COOLDOWN`] when it opens, doubled by each failed probe.
    cooldown: Duration,
    probing: bool,
    /// Its probe was due but its cap was full (requests still hanging): no probe is wanted
    /// until one of them ends — a probe claimed meanwhile could only be held and parked again.
    probe_blocked: bool,
    /// How many times a success closed it: a park queued for an opening is undone when a
    /// close may have been written before it ([`Breakers::closed_since`]).
    closes: u64,
    /// Deliveries sent back busy since it last had room: about how many wait, due, for the
    /// park when its hangs open it.
    sent_back: u32,
    /// Epoch ms of the last success and the last failure seen.
    last_success_at: Option<i64>,
    last_failure_at: Option<i64>,
    /// Requests in flight, by ticket: when each started.
    in_flight: BTreeMap<u64, Instant>,
}

impl Endpoint {
    fn new(now: Instant) -> Self {
        Endpoint {
            state: State::Closed,
            failures: 0,
            opened_at: now,
            cooldown: Duration::ZERO,
            probing: false,
            probe_blocked: false,
            closes: 0,
            sent_back: 0,
            last_success_at: None,
            last_failure_at: None,
            in_flight: BTreeMap::new(),
        }
    }

    fn hung(&self, now: Instant) -> u32 {
        self.in_flight
            .values()
            .filter(|t| now.duration_since(**t) >= HANG_AFTER)
            .count() as u32
    }
}

/// One endpoint's breaker as this node sees it (since it started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub state: State,
    /// Failures in a row (a success resets it).
    pub failures: u32,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    /// Requests in flight now.
    pub in_flight: u32,
}

impl View {
    /// An endpoint this node has not sent to: closed, as a new breaker is.
    pub const UNSEEN: View = View {
        state: State::Closed,
        failures: 0,
        last_success_at: None,
        last_failure_at: None,
        in_flight: 0,
    };
}

/// A request let through: give it back with [`Breakers::record`] or [`Breakers::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Ticket(u64);

/// What the breaker says about sending now.
#[derive(Debug, PartialEq, Eq)]
pub enum Permit {
    Send(Ticket),
    /// Send, as the single probe of a half-open endpoint.
    Probe(Ticket),
    /// The breaker is open: park the delivery.
    Hold,
    /// A concurrency cap is reached (the endpoint's, or the organisation's share): put the
    /// delivery back for a moment.
    Busy(Cap),
}

/// Which cap made a delivery wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Endpoint,
    Organisation,
}

#[derive(Default)]
struct Inner {
    endpoints: HashMap<EndpointKey, Endpoint>,
    /// Requests in flight per organisation.
    orgs: HashMap<String, usize>,
    /// Keys and organisations at their cap: left out of claims until a request ends.
    saturated: HashSet<EndpointKey>,
    saturated_orgs: HashSet<String>,
    /// A saturated key or organisation has had a request end since [`Breakers::take_freed`].
    freed: bool,
    /// Endpoints their hangs just opened, whose waiting deliveries the dispatcher parks at
    /// once ([`Breakers::take_to_park`]).
    to_park: Vec<EndpointKey>,
    next_ticket: u64,
}

pub struct Breakers {
    threshold: u32,
    /// The wait before the first probe, and the longest wait between probes.
    first_cooldown: Duration,
    cooldown: Duration,
    /// Requests in flight per organisation at most.
    org_share: usize,
    inner: Mutex<Inner>,
}

/// An endpoint its hangs just opened ([`Breakers::take_to_park`]).
#[derive(Debug, PartialEq, Eq)]
pub struct ToPark {
    pub key: EndpointKey,
    /// Its count of closes then (see [`Breakers::closed_since`]).
    pub closes: u64,
    /// Deliveries it sent back busy meanwhile: about how many wait to be parked.
    pub sent_back: u32,
}

/// What [`Breakers::saturated`] reports: the keys and organisations at their cap.
pub type Saturated = (Vec<EndpointKey>, Vec<String>);

impl Breakers {
    /// `org_share`: requests in flight per organisation at most (`usize::MAX`: no share).
    pub fn new(
        threshold: u32,
        first_cooldown: Duration,
        cooldown: Duration,
        org_share: usize,
    ) -> Self {
        Breakers {
            threshold: threshold.max(1),
            first_cooldown: first_cooldown.min(cooldown),
            cooldown,
            org_share: org_share.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("breaker lock")
    }

    /// May a request go to `key`, whose connector allows `cap` in flight? A ticket when it may.
    pub fn permit(&self, key: &EndpointKey, cap: usize, now: Instant) -> Permit {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let e = inner
            .endpoints
            .entry(key.clone())
            .or_insert_with(|| Endpoint::new(now));
        if self.opened_by_hangs(e, now) {
            inner.to_park.push(key.clone());
            return Permit::Hold;
        }
        let probe = match e.state {
            State::Closed => false,
            State::Open if now.duration_since(e.opened_at) >= e.cooldown => true,
            State::Open => return Permit::Hold,
            State::HalfOpen if !e.probing => true,
            State::HalfOpen => return Permit::Hold,
        };
        if e.in_flight.len() >= cap.max(1) {
            if probe {
                // Open, its requests still hanging: a probe could not go now, and the deliveries
                // wait for one as any held back by an open breaker do — parked, not back in a
                // moment (due but left out of claims, each claim would read past all of them).
                // No probe is wanted until one of the requests ends.
                e.probe_blocked = true;
                return Permit::Hold;
            }
            e.sent_back = e.sent_back.saturating_add(1);
            inner.saturated.insert(key.clone());
            return Permit::Busy(Cap::Endpoint);
        }
        let org = inner.orgs.entry(key.corp_id.clone()).or_default();
        if *org >= self.org_share {
            inner.saturated_orgs.insert(key.corp_id.clone());
            return Permit::Busy(Cap::Organisation);
        }
        *org += 1;
        if probe {
            e.state = State::HalfOpen;
            e.probing = true;
        }
        inner.next_ticket += 1;
        let ticket = inner.next_ticket;
        e.in_flight.insert(ticket, now);
        if probe {
            Permit::Probe(Ticket(ticket))
        } else {
            Permit::Send(Ticket(ticket))
        }
    }

    /// Records the result of the request of `ticket`; `true` when this success closed an open
    /// breaker.
    pub fn record(&self, key: &EndpointKey, ticket: Ticket, success: bool, now: Instant) -> bool {
        let first = self.first_cooldown();
        let mut inner = self.lock();
        let Some(e) = end(&mut inner, key, ticket) else {
            return false;
        };
        let at = Some(crate::support::now_ms());
        if success {
            e.last_success_at = at;
            let reopened = e.state != State::Closed;
            if reopened {
                e.closes += 1;
            }
            e.state = State::Closed;
            e.failures = 0;
            e.probing = false;
            return reopened;
        }
        e.last_failure_at = at;
        e.failures += 1;
        match e.state {
            // The probe failed: open again, for twice as long, up to the configured cooldown.
            State::HalfOpen => {
                let next = (e.cooldown * 2).min(self.cooldown);
                open(e, now, next);
                e.probing = false;
            }
            State::Closed if e.failures >= self.threshold => open(e, now, first),
            _ => {}
        }
        false
    }

    /// Gives back the ticket of a request that never reached the endpoint (refused by the egress
    /// policy, impossible to build): not the endpoint's failure. A probe's slot is freed for the
    /// next one.
    pub fn release(&self, key: &EndpointKey, ticket: Ticket) {
        let mut inner = self.lock();
        if let Some(e) = end(&mut inner, key, ticket) {
            if e.state == State::HalfOpen && e.probing {
                e.probing = false;
            }
        }
    }

    /// The configured (longest) cooldown.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    fn first_cooldown(&self) -> Duration {
        self.first_cooldown
    }

    /// Opens a closed breaker whose failures and hanging requests together reach the
    /// threshold; `true` if it did. Checked whenever the breaker is asked, and at each turn of
    /// the dispatcher ([`Breakers::tick`]): a saturated endpoint is asked by no delivery.
    fn opened_by_hangs(&self, e: &mut Endpoint, now: Instant) -> bool {
        if e.state == State::Closed
            && !e.in_flight.is_empty()
            && e.failures + e.hung(now) >= self.threshold
        {
            open(e, now, self.first_cooldown());
            return true;
        }
        false
    }

    /// Opens the breakers that hanging requests tripped (see [`HANG_AFTER`]).
    pub fn tick(&self, now: Instant) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let opened = inner
            .endpoints
            .iter_mut()
            .filter_map(|(key, e)| self.opened_by_hangs(e, now).then(|| key.clone()));
        inner.to_park.extend(opened);
    }

    /// The endpoints their hangs opened since the last call: their waiting deliveries are to
    /// be parked (they stay left out of claims until a request of theirs ends).
    pub fn take_to_park(&self) -> Vec<ToPark> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        std::mem::take(&mut inner.to_park)
            .into_iter()
            .map(|key| {
                let (closes, sent_back) = match inner.endpoints.get_mut(&key) {
                    Some(e) => (e.closes, std::mem::take(&mut e.sent_back)),
                    None => (0, 0),
                };
                ToPark {
                    key,
                    closes,
                    sent_back,
                }
            })
            .collect()
    }

    /// Whether a success closed `key`'s breaker since [`Breakers::take_to_park`] reported
    /// `closes`: its deliveries, parked meanwhile, are due again.
    pub fn closed_since(&self, key: &EndpointKey, closes: u64) -> bool {
        self.lock()
            .endpoints
            .get(key)
            .is_some_and(|e| e.closes != closes)
    }

    /// Opens the breaker of an endpoint this node has not sent to yet, with its probe due at
    /// once: a starting node's view of an endpoint that open breakers left deliveries parked
    /// for. One probe finds out whether it is back. An endpoint already seen is left as it is.
    pub fn open_for_probe(&self, key: &EndpointKey, now: Instant) {
        let cooldown = self.cooldown;
        let mut inner = self.lock();
        inner.endpoints.entry(key.clone()).or_insert_with(|| {
            let mut e = Endpoint::new(now);
            e.state = State::Open;
            // Probed now; should it fail, the next waits the configured cooldown (it was down
            // when the previous node stopped).
            e.cooldown = cooldown;
            e.opened_at = now.checked_sub(cooldown).unwrap_or(now);
            e
        });
    }

    /// The open endpoints whose cooldown has passed at `now`: each wants a probe.
    pub fn probes_due(&self, now: Instant) -> Vec<EndpointKey> {
        let inner = self.lock();
        inner
            .endpoints
            .iter()
            .filter(|(_, e)| {
                e.state == State::Open
                    && !e.probe_blocked
                    && now.duration_since(e.opened_at) >= e.cooldown
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// When the next open endpoint's cooldown ends (None: no endpoint is open).
    pub fn next_probe_at(&self) -> Option<Instant> {
        let inner = self.lock();
        inner
            .endpoints
            .values()
            .filter(|e| e.state == State::Open && !e.probe_blocked)
            .map(|e| e.opened_at + e.cooldown)
            .min()
    }

    /// The current cooldown of an open endpoint (None: not open).
    pub fn cooldown_of(&self, key: &EndpointKey) -> Option<Duration> {
        let inner = self.lock();
        inner
            .endpoints
            .get(key)
            .filter(|e| e.state == State::Open)
            .map(|e| e.cooldown)
    }

    /// The keys and organisations at their cap now: claims leave their deliveries out.
    pub fn saturated(&self) -> Saturated {
        let inner = self.lock();
        (
            inner.saturated.iter().cloned().collect(),
            inner.saturated_orgs.iter().cloned().collect(),
        )
    }

    /// Whether a request of a saturated key or organisation ended since the last call: the
    /// deliveries claims left out may be claimed again.
    pub fn take_freed(&self) -> bool {
        std::mem::take(&mut self.lock().freed)
    }

    /// One endpoint's breaker (None: nothing sent to it since this node started).
    pub fn view(&self, key: &EndpointKey) -> Option<View> {
        let inner = self.lock();
        inner.endpoints.get(key).map(|e| View {
            state: e.state,
            failures: e.failures,
            last_success_at: e.last_success_at,
            last_failure_at: e.last_failure_at,
            in_flight: e.in_flight.len() as u32,
        })
    }

    /// Every endpoint's state, for metrics.
    pub fn states(&self) -> Vec<(EndpointKey, State, u32)> {
        let inner = self.lock();
        let mut v: Vec<_> = inner
            .endpoints
            .iter()
            .map(|(k, e)| (k.clone(), e.state, e.failures))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Opens `e` for `cooldown` (with ±20 % jitter, so endpoints that failed together are not all
/// probed at the same instant).
fn open(e: &mut Endpoint, now: Instant, cooldown: Duration) {
    e.state = State::Open;
    e.opened_at = now;
    let jitter = 0.8 + 0.4 * (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
    e.cooldown = cooldown.mul_f64(jitter);
}

/// Ends the request of `ticket`: out of the endpoint's and the organisation's counts; the key
/// and the organisation are no longer saturated. The endpoint, if the ticket was its.
fn end<'a>(inner: &'a mut Inner, key: &EndpointKey, ticket: Ticket) -> Option<&'a mut Endpoint> {
    let e = inner.endpoints.get_mut(key)?;
    e.in_flight.remove(&ticket.0)?;
    e.probe_blocked = false;
    if let Some(n) = inner.orgs.get_mut(&key.corp_id) {
        *n = n.saturating_sub(1);
    }
    if inner.saturated.remove(key) {
        e.sent_back = 0;
        inner.freed = true;
    }
    let was = inner.saturated_orgs.remove(&key.corp_id);
    inner.freed |= was;
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(250);

    fn key(corp: &str, endpoint: &str) -> EndpointKey {
        EndpointKey {
            corp_id: corp.into(),
            endpoint: endpoint.into(),
        }
    }

    /// Sends one request to `k` and records `success`; `None` when it was not let through.
    fn attempt(b: &Breakers, k: &EndpointKey, success: bool, now: Instant) -> Option<bool> {
        match b.permit(k, 8, now) {
            Permit::Send(t) | Permit::Probe(t) => Some(b.record(k, t, success, now)),
            _ => None,
        }
    }

    #[test]
    fn opens_probes_once_and_closes() {
        let cooldown = Duration::from_secs(10);
        let b = Breakers::new(3, FIRST, cooldown, usize::MAX);
        let e = key("acme", "e");
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(attempt(&b, &e, false, t0), Some(false));
        }
        let Permit::Send(t) = b.permit(&e, 8, t0) else {
            panic!("below the threshold: sent")
        };
        b.release(&e, t);
        assert_eq!(attempt(&b, &e, false, t0), Some(false));
        assert_eq!(b.permit(&e, 8, t0), Permit::Hold);
        assert_eq!(
            b.view(&e).map(|v| (v.state, v.failures)),
            Some((State::Open, 3))
        );
        assert!(matches!(
            b.permit(&key("acme", "other"), 8, t0),
            Permit::Send(_)
        ));
        assert!(
            matches!(b.permit(&key("globex", "e"), 8, t0), Permit::Send(_)),
            "another organisation's breaker of the same endpoint is its own"
        );
        assert!(b.probes_due(t0).is_empty(), "cooling down");
        let first = b.cooldown_of(&e).unwrap();
        assert!(
            first >= FIRST.mul_f64(0.8) && first <= FIRST.mul_f64(1.2),
            "{first:?}: the first cooldown is short"
        );
        let later = t0 + first;
        assert_eq!(b.probes_due(later), vec![e.clone()]);
        let Permit::Probe(probe) = b.permit(&e, 8, later) else {
            panic!("a probe")
        };
        assert!(b.probes_due(later).is_empty(), "its probe is out");
        assert_eq!(b.permit(&e, 8, later), Permit::Hold, "one probe at a time");
        b.record(&e, probe, false, later);
        assert_eq!(
            b.permit(&e, 8, later),
            Permit::Hold,
            "a failed probe re-opens"
        );
        let second = b.cooldown_of(&e).unwrap();
        assert!(second > first, "{second:?} doubles {first:?}");
        // Failed probes back off to the configured cooldown, no further.
        let mut at = later;
        for _ in 0..10 {
            at += b.cooldown_of(&e).unwrap();
            assert_eq!(attempt(&b, &e, false, at), Some(false));
        }
        assert!(b.cooldown_of(&e).unwrap() <= cooldown.mul_f64(1.2));
        assert!(b.cooldown_of(&e).unwrap() >= cooldown.mul_f64(0.8));
        at += b.cooldown_of(&e).unwrap();
        assert_eq!(
            attempt(&b, &e, true, at),
            Some(true),
            "the probe's success closes it"
        );
        assert!(matches!(b.permit(&e, 8, at), Permit::Send(_)));
        let view = b.view(&e).expect("seen");
        assert_eq!(
            (view.state, view.failures, view.in_flight),
            (State::Closed, 0, 1)
        );
        assert!(view.last_success_at >= view.last_failure_at && view.last_failure_at.is_some());
        assert_eq!(b.view(&key("acme", "never")), None);

        // A starting node's suspicion: open, its probe due now; a known endpoint is left alone.
        let now = at + Duration::from_secs(60);
        let parked = key("acme", "parked");
        b.open_for_probe(&parked, now);
        b.open_for_probe(&e, now);
        assert_eq!(b.probes_due(now), vec![parked.clone()]);
        assert!(matches!(b.permit(&parked, 8, now), Permit::Probe(_)));
        assert!(matches!(b.permit(&e, 8, now), Permit::Send(_)));
    }

    #[test]
    fn hanging_requests_open_the_breaker() {
        let b = Breakers::new(3, FIRST, Duration::from_secs(10), usize::MAX);
        let e = key("acme", "hangs");
        let t0 = Instant::now();
        let tickets: Vec<Ticket> = (0..3)
            .map(|_| match b.permit(&e, 8, t0) {
                Permit::Send(t) => t,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(
            matches!(
                b.permit(&e, 8, t0 + Duration::from_millis(100)),
                Permit::Send(_)
            ),
            "requests just sent are not hanging"
        );
        assert_eq!(
            b.permit(&e, 8, t0 + HANG_AFTER),
            Permit::Hold,
            "three requests in flight past HANG_AFTER count as three failures"
        );
        // A late answer still closes it, as any success does.
        let mut tickets = tickets.into_iter();
        assert!(b.record(&e, tickets.next().unwrap(), true, t0 + HANG_AFTER * 2));
    }

    #[test]
    fn a_hung_endpoint_at_its_cap_holds_until_a_probe_can_go() {
        let b = Breakers::new(3, FIRST, Duration::from_secs(10), usize::MAX);
        let e = key("acme", "hangs");
        let t0 = Instant::now();
        let mut hanging: Vec<Ticket> = (0..8)
            .map(|_| match b.permit(&e, 8, t0) {
                Permit::Send(t) => t,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            b.permit(&e, 8, t0),
            Permit::Busy(Cap::Endpoint),
            "closed, at its cap"
        );
        assert_eq!(b.saturated(), (vec![e.clone()], vec![]));
        b.tick(t0 + HANG_AFTER);
        assert_eq!(
            b.view(&e).map(|v| v.state),
            Some(State::Open),
            "opened by its hangs"
        );
        assert_eq!(
            b.saturated(),
            (vec![e.clone()], vec![]),
            "still left out of claims: what it sent back busy is parked at once, not claimed"
        );
        assert_eq!(
            b.take_to_park(),
            vec![ToPark {
                key: e.clone(),
                closes: 0,
                sent_back: 1
            }],
            "with the one delivery it sent back busy"
        );
        assert!(b.take_to_park().is_empty(), "reported once");
        assert!(!b.closed_since(&e, 0));
        assert_eq!(b.permit(&e, 8, t0 + HANG_AFTER), Permit::Hold);
        // Open past its cooldown, its requests still hanging: held (parked until a probe can
        // go), not busy — a busy delivery is back in a moment, due but left out of claims, and
        // every claim would read past all of them until the hanging requests end.
        let past_cooldown = t0 + HANG_AFTER + b.cooldown_of(&e).unwrap();
        assert_eq!(b.probes_due(past_cooldown), vec![e.clone()]);
        assert_eq!(b.permit(&e, 8, past_cooldown), Permit::Hold);
        // Nor is a probe wanted until a request ends: claimed, it could only be parked again.
        let later = past_cooldown + b.cooldown_of(&e).unwrap() * 4;
        assert!(
            b.probes_due(later).is_empty(),
            "no probe while its cap is full"
        );
        assert_eq!(b.next_probe_at(), None);
        // Once a hanging request ends (its timeout) the probe goes.
        b.record(&e, hanging.pop().unwrap(), false, past_cooldown);
        assert_eq!(
            b.saturated(),
            (vec![], vec![]),
            "a request ended: claimed again"
        );
        assert_eq!(b.probes_due(later), vec![e.clone()], "wanted again");
        let Permit::Probe(probe) = b.permit(&e, 8, past_cooldown) else {
            panic!("the probe goes")
        };
        assert_eq!(
            b.permit(&e, 8, past_cooldown),
            Permit::Hold,
            "one probe at a time"
        );
        assert!(b.record(&e, probe, true, past_cooldown), "closed");
        assert!(b.closed_since(&e, 0), "a park queued before is undone");
        assert!(b.take_to_park().is_empty());
    }

    #[test]
    fn caps_per_endpoint_and_per_organisation() {
        let b = Breakers::new(5, FIRST, Duration::from_secs(10), 3);
        let now = Instant::now();
        let (a1, a2, g) = (key("acme", "one"), key("acme", "two"), key("globex", "one"));
        let t1 = match b.permit(&a1, 2, now) {
            Permit::Send(t) => t,
            other => panic!("{other:?}"),
        };
        let _t2 = b.permit(&a1, 2, now);
        assert_eq!(b.permit(&a1, 2, now), Permit::Busy(Cap::Endpoint));
        assert_eq!(b.saturated(), (vec![a1.clone()], vec![]));
        let _t3 = b.permit(&a2, 2, now);
        assert_eq!(
            b.permit(&a2, 2, now),
            Permit::Busy(Cap::Organisation),
            "the organisation's share is 3"
        );
        assert!(
            matches!(b.permit(&g, 2, now), Permit::Send(_)),
            "another organisation has its own share and its own endpoint cap"
        );
        b.release(&a1, t1);
        assert_eq!(
            b.saturated(),
            (vec![], vec![]),
            "a request ended: room again"
        );
        assert!(matches!(b.permit(&a1, 2, now), Permit::Send(_)));
        assert_eq!(
            b.view(&a1).map(|v| (v.state, v.failures)),
            Some((State::Closed, 0)),
            "a released request is no failure"
        );
    }
}
