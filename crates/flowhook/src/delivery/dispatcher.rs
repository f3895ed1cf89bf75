//! The dispatcher: due deliveries out, attempts in.
//!
//! 1. Claim a batch of due deliveries with a lease (owner, expiry) and commit the claim. Ordered
//!    deliveries are claimable only at the head of their lane — the process instance, across all
//!    the organisation's actions: a `finished` never overtakes its `created` even when they go to
//!    different actions, and a failing head holds back only its own instance.
//! 2. Send each one outside any transaction, bounded by a semaphore; the endpoint's breaker may
//!    hold it back, parked until the breaker's probe (claimed apart, one per cooldown) succeeds.
//! 3. Each attempt and its outcome go to the command writer, written in its group commit, with
//!    retries scheduled by the pure policy. Fresh deliveries skip step 1: the writer leases them
//!    to this node when it creates them and hands them over in memory. A crash loses nothing:
//!    an expired lease makes the delivery claimable again (at-least-once; the event id lets
//!    receivers de-duplicate).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::breaker::{Breakers, Cap, EndpointKey, Permit, Ticket, ToPark};
use super::request::{prepare, EventInfo, Prepared, Signing};
use super::retry::{Next, Outcome, RetryPolicy};
use crate::integration::connectors::{Action, Auth, Connector};
use crate::store::attempts::{Attempt, AttemptRecord, EndpointChange, EndpointRecord, Record};
use crate::store::claims::{Claim, Claimed, ClaimedBatch, DeliveryEvent, Scope};
use crate::store::deliveries::DeliveryStatus;
use crate::store::writer::FreshDelivery;
use crate::store::{Store, StoreError};
use crate::support::{new_id, now_ms, Recent};
use crate::telemetry::Metrics;

/// Tuning of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// How long a claim is exclusive; a crashed node's claims come back after it.
    pub lease: Duration,
    /// Longest sleep without a wake-up (the fallback behind notifications).
    pub poll: Duration,
    /// A node whose heartbeat is older than this has lost its leases; this node stops sending
    /// before its own is ([`FENCE_MARGIN`] earlier).
    pub node_timeout: Duration,
    pub policy: RetryPolicy,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub egress: super::egress::EgressPolicy,
    /// Signs each `task.created`'s `taskUrl` at send time (`delivery::links`); `None` sends the
    /// stored parameters as they are.
    pub task_links: Option<Arc<crate::delivery::links::Links>>,
}

impl DispatcherConfig {
    /// The dispatcher's settings from the configuration, or why they are invalid (the
    /// setting named).
    pub fn from_config(c: &crate::config::Config) -> Result<Self, String> {
        let egress = super::egress::EgressPolicy::parse(
            &c.egress_allow,
            &c.egress_deny,
            c.egress_deny_private,
        )
        .map_err(|why| format!("`egress_allow/egress_deny`: {why}"))?
        .with_proxy(c.egress_proxy.as_deref())
        .map_err(|why| format!("`egress_proxy`: {why}"))?;
        Ok(Self {
            concurrency: c.delivery_concurrency,
            lease: Duration::from_secs(c.delivery_lease_secs),
            poll: Duration::from_millis(c.delivery_poll_ms),
            node_timeout: Duration::from_millis(c.delivery_node_timeout_ms),
            policy: RetryPolicy::from_millis(
                &c.retry_schedule_ms,
                c.retry_then_every_ms,
                c.retry_give_up_after_ms,
            ),
            breaker_threshold: c.breaker_threshold,
            breaker_cooldown: Duration::from_millis(c.breaker_cooldown_ms),
            egress,
            task_links: None,
        })
    }
}

/// Shared by the dispatcher's tasks.
struct Shared {
    store: Store,
    client: reqwest::Client,
    config: DispatcherConfig,
    breakers: Arc<Breakers>,
    notify: Arc<Notify>,
    owner: String,
    /// When this node's last heartbeat was written: it sends only while that is recent enough
    /// that no other node can have taken its leases.
    last_beat: std::sync::Mutex<Instant>,
    metrics: Metrics,
    /// Where each action's deliveries go, by action id: reloaded after a change made through
    /// this process (an edited base URL applies from the next delivery) and at least once a
    /// [`TARGET_TTL`] (other nodes' edits).
    targets: std::sync::Mutex<HashMap<String, Arc<Target>>>,
    /// App tokens and webhook secrets, read at most once a second per app / organisation, and
    /// again at once after a change made through this process; a rotation keeps the previous
    /// one valid for its grace period, far longer than a second.
    tokens: Recent<Option<String>>,
    /// Whether a connector is paused, read like the tokens.
    paused: Recent<bool>,
    secrets: Recent<Vec<flowhook_sign::webhooks::WebhookSecret>>,
}

/// How long a cached token or secret list is used.
const SECRET_TTL: Duration = Duration::from_secs(1);

/// Where a delivery goes: its action, the action's connector and the connector's credentials.
struct Target {
    action: Action,
    connector: Connector,
    auth: Auth,
    /// The breaker of the organisation's endpoint, parsed once.
    key: EndpointKey,
    /// When it was read, and the settings generation before the read: a target is used while
    /// both are current (see [`TARGET_TTL`]).
    loaded: (Instant, u64),
}

/// How long a cached target is used at most: connectors and actions can be edited, on any node.
const TARGET_TTL: Duration = Duration::from_secs(1);

/// A lease owner id for this node's dispatcher (the writer leases fresh deliveries to it).
pub fn new_owner() -> String {
    new_id("node")
}

/// The room of the fresh-delivery channel, per request allowed in flight.
pub const FRESH_ROOM_PER_SLOT: usize = 4;

/// Starts the dispatcher as lease owner `owner`, the supervised task `dispatcher` of `tasks`;
/// `fresh` brings the deliveries the writer leased to it at commit. It stops when `stop` becomes
/// true, once the requests in flight have ended and their attempts are queued to the writer.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    tasks: &Arc<crate::supervise::Tasks>,
    store: Store,
    notify: Arc<Notify>,
    config: DispatcherConfig,
    breakers: Arc<Breakers>,
    metrics: Metrics,
    owner: String,
    fresh: mpsc::Receiver<FreshDelivery>,
    records: mpsc::Sender<Record>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let client = super::exchange::client(&config.egress);
    let shared = Arc::new(Shared {
        breakers,
        store,
        client,
        config,
        notify,
        owner,
        // The node registered before it started (`Application::run_until_stopped`).
        last_beat: std::sync::Mutex::new(Instant::now()),
        metrics,
        targets: std::sync::Mutex::new(HashMap::new()),
        tokens: Recent::new(SECRET_TTL),
        paused: Recent::new(SECRET_TTL),
        secrets: Recent::new(SECRET_TTL),
    });
    // Outlives a run: a restart after a panic takes up the same channel.
    let fresh = Arc::new(tokio::sync::Mutex::new(fresh));
    crate::supervise::supervise(tasks, "dispatcher", move || {
        run(shared.clone(), fresh.clone(), records.clone(), stop.clone())
    })
}

/// Sends what the writer hands over, as it arrives: no claim, no event read.
async fn take_fresh(
    shared: Arc<Shared>,
    fresh: Arc<tokio::sync::Mutex<mpsc::Receiver<FreshDelivery>>>,
    permits: Arc<Semaphore>,
    records_tx: mpsc::Sender<Record>,
    mut stop: watch::Receiver<bool>,
) {
    let mut fresh = fresh.lock().await;
    loop {
        let f = tokio::select! {
            f = fresh.recv() => match f { Some(f) => f, None => return },
            _ = stop.changed() => return,
        };
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let claimed = Claimed {
            id: f.id,
            corp_id: f.corp_id,
            event_id: f.event_id,
            action_id: f.action_id,
            lane: f.ordered.then_some(f.instance_id),
            attempts: 0,
            backfill: false,
            created_at: f.created_at,
        };
        spawn_send(&shared, claimed, f.event, permit, &records_tx);
    }
}

/// Sends one delivery in a task of its own, holding `permit` until its record is queued.
fn spawn_send(
    shared: &Arc<Shared>,
    c: Claimed,
    event: DeliveryEvent,
    permit: tokio::sync::OwnedSemaphorePermit,
    records_tx: &mpsc::Sender<Record>,
) {
    let (shared, tx) = (shared.clone(), records_tx.clone());
    tokio::spawn(async move {
        let record = send(&shared, c, &event).await;
        let _ = tx.send(Record::Attempt(record)).await;
        drop(permit);
    });
}

async fn run(
    shared: Arc<Shared>,
    fresh: Arc<tokio::sync::Mutex<mpsc::Receiver<FreshDelivery>>>,
    records_tx: mpsc::Sender<Record>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = shared.config.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(slots));
    // The run's helpers end with it: dropped (a panic), the set aborts them, and a restart
    // starts them again.
    let mut helpers = tokio::task::JoinSet::new();
    {
        let (store, notify, stop) = (shared.store.clone(), shared.notify.clone(), stop.clone());
        helpers.spawn(async move { store.listen_for_deliveries(notify, stop).await });
    }
    helpers.spawn(heartbeat(shared.clone(), stop.clone()));
    helpers.spawn(take_fresh(
        shared.clone(),
        fresh,
        permits.clone(),
        records_tx.clone(),
        stop.clone(),
    ));
    // Claims wait for a quarter of the slots when all are busy: a batch at a time, not one
    // claim per finished send.
    let refill = u32::try_from((shared.config.concurrency / 4).max(1)).unwrap_or(u32::MAX);
    let mut analyzed: Option<Instant> = None;
    let mut probed: HashMap<EndpointKey, Instant> = HashMap::new();
    match open_parked_endpoints(&shared).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            endpoints = n,
            "endpoints with deliveries parked by open breakers start open here, probed at once"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the parked deliveries; their park ends them")
        }
    }
    while !*stop.borrow() {
        // A helper that panicked (the heartbeat: this node would fence itself silently) fails
        // the whole run, which its supervisor starts again.
        if let Some(Err(e)) = helpers.try_join_next() {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        shared.breakers.tick(Instant::now());
        park_opened(&shared, &records_tx);
        send_probes(&shared, &mut probed, &permits, &records_tx, &mut analyzed).await;
        let mut free = permits.available_permits().min(256);
        if free == 0 {
            // Saturated, and more may be due: claim again as soon as sends finish — not at the
            // next wake-up or poll (recorded deliveries wake nobody: most leave nothing behind).
            tokio::select! {
                p = permits.acquire_many(refill) => drop(p),
                _ = stop.changed() => continue,
            }
            free = permits.available_permits().min(256);
        }
        let began = Instant::now();
        let claimed = if free == 0 {
            Ok((Vec::new(), None))
        } else {
            claim(&shared, Scope::Due(free)).await
        };
        if began.elapsed() > SLOW_CLAIM {
            refresh_statistics(&shared.store, &mut analyzed).await;
        }
        let (claimed, events) = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming deliveries failed; retrying");
                (Vec::new(), None)
            }
        };
        let full = free > 0 && claimed.len() == free;
        send_claimed(&shared, claimed, events, &permits, &records_tx).await;
        if full {
            continue;
        }
        // Sleep until the next retry falls due, or a wake-up. A row due already but not claimed
        // just now is leased or behind its lane's head: the writer wakes us when that head is
        // recorded, and the poll covers a crashed node's leases. (Waiting zero for it would
        // spin, and every empty claim takes the write lock.)
        let mut wait = match shared.store.next_due().await {
            Ok(Some(at)) if at > now_ms() => {
                Duration::from_millis((at - now_ms()) as u64).min(shared.config.poll)
            }
            _ => shared.config.poll,
        };
        if let Some(probe) = next_probe_in(&shared, &probed) {
            wait = wait.min(probe);
        }
        tokio::select! {
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    // Stopping: the sends in flight end (each holds a slot until its attempt is queued to the
    // writer, which writes it before it stops); the caller bounds the wait by the grace.
    let _ = permits
        .acquire_many(u32::try_from(slots).unwrap_or(u32::MAX))
        .await;
    helpers.shutdown().await;
}

/// How often a node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long before the node timeout a node stops sending, should its heartbeats fail: the
/// other nodes take its leases only once its heartbeat is `node_timeout` old.
pub const FENCE_MARGIN: Duration = Duration::from_millis(1_000);

/// Writes this node's heartbeat every [`HEARTBEAT`] (see `store::nodes`), and now and then
/// forgets nodes silent for an hour. A stopped node just stops beating.
async fn heartbeat(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let began = Instant::now();
        match shared.store.beat(&shared.owner).await {
            Ok(()) => *shared.last_beat.lock().expect("beat lock") = began,
            Err(e) => tracing::warn!(error = %e, "could not write this node's heartbeat"),
        }
        beats += 1;
        if beats % 3600 == 0 {
            if let Err(e) = shared.store.forget_silent_nodes(3_600_000).await {
                tracing::warn!(error = %e, "could not forget silent nodes");
            }
        }
    }
}

/// Whether this node may send now: its last heartbeat is recent enough that no other node can
/// consider its leases free (else it is cut off from the database, or too slow to beat).
fn fenced(shared: &Shared) -> bool {
    let last = *shared.last_beat.lock().expect("beat lock");
    last.elapsed() + FENCE_MARGIN >= shared.config.node_timeout
}

/// A starting node's breakers are all closed, so no probe of its own would end the parks that
/// open breakers left (this node's before it stopped, or other nodes'). Each endpoint with
/// parked deliveries starts here as an open breaker whose probe is due at once: one delivery
/// goes; if it succeeds, the breaker closes and the parked deliveries are due at once, and if
/// not they stay parked — no burst of sends to an endpoint still down. Returns how many
/// endpoints.
async fn open_parked_endpoints(shared: &Shared) -> Result<usize, StoreError> {
    let parked = shared.store.parked(HELD_BY_BREAKER, now_ms()).await?;
    let mut endpoints = std::collections::HashSet::new();
    for (corp_id, action_id) in parked {
        endpoints.insert(target(shared, &corp_id, &action_id).await?.key.clone());
    }
    for key in &endpoints {
        shared.breakers.open_for_probe(key, Instant::now());
    }
    Ok(endpoints.len())
}

/// Rows one park statement takes at most, and the pause between two (see [`park_opened`]).
const PARK_STEP: usize = 50;
const PARK_PACE: Duration = Duration::from_millis(5);

/// Parks at once the waiting deliveries of the endpoints their hangs just opened (see
/// `breaker`): claimed instead, each would be read, held and parked alone. By statements of
/// [`PARK_STEP`] rows, [`PARK_PACE`] apart — as many as the endpoint sent back busy, and one
/// more — so no one commit of the writer, which every organisation waits for, carries hundreds
/// of row versions.
fn park_opened(shared: &Arc<Shared>, records_tx: &mpsc::Sender<Record>) {
    for ToPark {
        key,
        closes,
        sent_back,
    } in shared.breakers.take_to_park()
    {
        let connectors = connectors_at(shared, &key);
        if connectors.is_empty() {
            continue;
        }
        let (shared, tx) = (shared.clone(), records_tx.clone());
        tokio::spawn(async move {
            let record = |change| {
                Record::Endpoint(EndpointRecord {
                    corp_id: key.corp_id.clone(),
                    connectors: connectors.clone(),
                    change,
                })
            };
            // One `until` for every step: a step takes only rows not parked yet.
            let until = now_ms() + park_ms(&shared.config);
            let steps = (sent_back as usize / PARK_STEP + 1).min(200);
            for step in 0..steps {
                if step > 0 {
                    tokio::time::sleep(PARK_PACE).await;
                }
                let parked = EndpointChange::Parked {
                    until,
                    because: HELD_BY_BREAKER,
                    at_most: PARK_STEP,
                };
                if tx.send(record(parked)).await.is_err() {
                    return;
                }
            }
            // A success that closed it before the last step was queued may have its reopen
            // written first: reopen after the park. (A close from now on is queued after it.)
            if shared.breakers.closed_since(&key, closes) {
                let _ = tx.send(record(EndpointChange::Reopened)).await;
            }
        });
    }
}

/// Claims and sends one delivery for each endpoint whose open breaker wants a probe, at most
/// once a cooldown each (`probed`): the deliveries it holds back are parked, so none of them
/// would come due for it. The first connector of the endpoint with a pending delivery gives it.
async fn send_probes(
    shared: &Arc<Shared>,
    probed: &mut HashMap<EndpointKey, Instant>,
    permits: &Arc<Semaphore>,
    records_tx: &mpsc::Sender<Record>,
    analyzed: &mut Option<Instant>,
) {
    let now = Instant::now();
    probed.retain(|key, at| now.duration_since(*at) < probe_wait(shared, key));
    for key in shared.breakers.probes_due(now) {
        if probed.contains_key(&key) {
            continue;
        }
        probed.insert(key.clone(), now);
        for connector in connectors_at(shared, &key) {
            let began = Instant::now();
            let claimed = claim(shared, Scope::Probe(&connector)).await;
            if began.elapsed() > SLOW_CLAIM {
                // Seen: 1.4 s for one probe, the lane check planned on statistics taken
                // before the endpoint's backlog of thousands built up.
                refresh_statistics(&shared.store, analyzed).await;
            }
            match claimed {
                Ok((claimed, _)) if claimed.is_empty() => continue,
                Ok((claimed, events)) => {
                    send_claimed(shared, claimed, events, permits, records_tx).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a probe failed; retrying next cooldown");
                }
            }
            break;
        }
    }
}

/// Sends claimed deliveries, each in a task of its own once a slot is free; `events` are theirs
/// when the claim read them (PostgreSQL), else they are read here.
async fn send_claimed(
    shared: &Arc<Shared>,
    claimed: Vec<Claimed>,
    events: Option<HashMap<String, DeliveryEvent>>,
    permits: &Arc<Semaphore>,
    records_tx: &mpsc::Sender<Record>,
) {
    if claimed.is_empty() {
        return;
    }
    let events = match events {
        Some(events) => events,
        None => match shared.store.load_events(&claimed).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "loading events failed; their leases will expire");
                return;
            }
        },
    };
    for c in claimed {
        let Some(event) = events.get(&c.event_id).cloned() else {
            continue;
        };
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        spawn_send(shared, c, event, permit, records_tx);
    }
}

/// How long after a probe claim that found nothing an endpoint's open breaker is asked again:
/// its current cooldown.
fn probe_wait(shared: &Shared, key: &EndpointKey) -> Duration {
    shared
        .breakers
        .cooldown_of(key)
        .unwrap_or(shared.breakers.cooldown())
}

/// How long until an open breaker wants its next probe (None: none is open).
fn next_probe_in(shared: &Shared, probed: &HashMap<EndpointKey, Instant>) -> Option<Duration> {
    let now = Instant::now();
    let mut at = shared.breakers.next_probe_at()?;
    if at <= now {
        // Wanted now, but probed already this cooldown (none pending, or its probe is out).
        at = probed
            .iter()
            .map(|(key, t)| *t + probe_wait(shared, key))
            .min()?;
    }
    Some(at.saturating_duration_since(now))
}

/// A claim slower than this is a sign of a bad plan (see [`refresh_statistics`]).
const SLOW_CLAIM: Duration = Duration::from_millis(100);

/// PostgreSQL: refreshes the planner's statistics of `deliveries`, at most once a minute.
///
/// A backlog built faster than autovacuum analyzes (100,000 deliveries in under a minute)
/// leaves statistics saying almost nothing is pending; the claim is then planned as a bitmap
/// scan and a sort of every due row — 300 ms a claim, measured, instead of an ordered index
/// scan that stops after the batch (under 1 ms once analyzed).
async fn refresh_statistics(store: &Store, last: &mut Option<Instant>) {
    if !store.has_planner_statistics() {
        return;
    }
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return;
    }
    *last = Some(Instant::now());
    tracing::info!("claims are slow: refreshing the planner's statistics of the deliveries");
    if let Err(e) = store.analyze_deliveries().await {
        tracing::warn!(error = %e, "could not analyze the deliveries table");
    }
}

/// Attempt records waiting to be written, at most.
pub const RECORDS_ROOM: usize = 4096;

/// Claims for this node: the due deliveries (`free` at most, leaving out what would only come
/// back busy) or the probe of a connector's endpoint.
async fn claim(shared: &Shared, scope: Scope<'_>) -> Result<ClaimedBatch, StoreError> {
    let (excluded_actions, excluded_orgs) = match scope {
        Scope::Due(_) => saturated(shared),
        Scope::Probe(_) => (Vec::new(), Vec::new()),
    };
    shared
        .store
        .claim(Claim {
            owner: &shared.owner,
            lease: shared.config.lease,
            node_timeout: shared.config.node_timeout,
            scope,
            excluded_actions: &excluded_actions,
            excluded_orgs: &excluded_orgs,
        })
        .await
}

/// The actions of the endpoints at their concurrency cap, and the organisations at their share.
fn saturated(shared: &Shared) -> (Vec<String>, Vec<String>) {
    let (keys, orgs) = shared.breakers.saturated();
    if keys.is_empty() {
        return (Vec::new(), orgs);
    }
    let actions = shared
        .targets
        .lock()
        .expect("cache lock")
        .values()
        .filter(|t| keys.contains(&t.key))
        .map(|t| t.action.id.clone())
        .collect();
    (actions, orgs)
}

async fn target(
    shared: &Shared,
    corp_id: &str,
    action_id: &str,
) -> Result<Arc<Target>, StoreError> {
    let generation = crate::support::settings_generation();
    if let Some(t) = shared.targets.lock().expect("cache lock").get(action_id) {
        if t.loaded.1 == generation && t.loaded.0.elapsed() < TARGET_TTL {
            return Ok(t.clone());
        }
    }
    let Some(action) = shared.store.actions(corp_id, Some(action_id)).await?.pop() else {
        // Deleted (its pending deliveries were cancelled then; any created since from a
        // strategy read before the deletion are cancelled now), or missing.
        shared
            .store
            .cancel_deliveries_of_deleted_action(corp_id, action_id)
            .await?;
        return Err(StoreError::Corrupt(format!(
            "action {action_id} is missing"
        )));
    };
    let (connector, auth) = shared
        .store
        .connectors(corp_id, Some(&action.connector_id))
        .await?
        .pop()
        .ok_or_else(|| {
            StoreError::Corrupt(format!("connector {} is missing", action.connector_id))
        })?;
    let t = Arc::new(Target {
        key: EndpointKey::new(corp_id, &connector.base_url),
        action,
        connector,
        auth,
        loaded: (Instant::now(), generation),
    });
    shared
        .targets
        .lock()
        .expect("cache lock")
        .insert(action_id.to_owned(), t.clone());
    Ok(t)
}

/// The token an app signs with now.
async fn app_token(
    shared: &Shared,
    app_type: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    shared
        .tokens
        .get_or_load(app_type, async {
            Ok(shared
                .store
                .app_tokens(app_type, now)
                .await?
                .into_iter()
                .next())
        })
        .await
}

/// Whether a connector is paused now.
async fn is_paused(shared: &Shared, corp_id: &str, connector_id: &str) -> Result<bool, StoreError> {
    shared
        .paused
        .get_or_load(connector_id, async {
            Ok(shared
                .store
                .connectors(corp_id, Some(connector_id))
                .await?
                .first()
                .is_some_and(|(c, _)| c.paused_at.is_some()))
        })
        .await
}

/// How long the deliveries of a paused connector wait before looking again (resuming makes
/// them due at once).
const PAUSED_RECHECK_MS: i64 = 60_000;

/// The `lastError` of a delivery parked by an open breaker: the mark a starting node looks for
/// ([`open_parked_endpoints`]).
pub const HELD_BY_BREAKER: &str = "held: the endpoint's circuit breaker is open";

/// The `lastError` of a delivery held because its connector is paused.
pub const HELD_PAUSED: &str = "held: the connector is paused";

/// The `lastError` of a delivery put back because its endpoint has its connector's
/// `maxConcurrency` requests in flight.
pub const HELD_ENDPOINT_BUSY: &str = "held: the endpoint has its maximum of requests in flight";

/// The `lastError` of a delivery put back because its organisation has its share of the node's
/// delivery slots in flight (`delivery_org_share_percent`).
pub const HELD_ORG_BUSY: &str =
    "held: the organisation has its share of this node's deliveries in flight";

/// The `lastError` of a delivery this node did not send because its heartbeat is too old
/// (see [`fenced`]).
pub const HELD_FENCED: &str = "held: the node holding it lost contact with the database";

/// How long a delivery over a concurrency cap is put back for (claims leave its key out until
/// a request of it ends, and that end wakes the dispatcher).
const BUSY_MS: i64 = 250;

/// The error kinds of [`exchange`](super::exchange::exchange) for a request that never left
/// this machine: refused by the egress policy, or impossible to build.
const LOCAL_EGRESS: &str = "egress";
const LOCAL_REQUEST: &str = "request";

/// How long a delivery an open breaker holds back is parked: 5 minutes, or one cooldown if that
/// is longer. The probe that closes the breaker ends the park at once; the park only bounds
/// the wait when no probe comes (the node that parked it stopped, and no node started since).
const PARK_MS: i64 = 300_000;

fn park_ms(config: &DispatcherConfig) -> i64 {
    PARK_MS.max(config.breaker_cooldown.as_millis() as i64)
}

/// The connectors this node knows to send to the organisation's endpoint `key`.
fn connectors_at(shared: &Shared, key: &EndpointKey) -> Vec<String> {
    let mut ids: Vec<String> = shared
        .targets
        .lock()
        .expect("cache lock")
        .values()
        .filter(|t| &t.key == key)
        .map(|t| t.connector.id.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// An organisation's Standard Webhooks secrets (empty: not signing).
async fn webhook_secrets(
    shared: &Shared,
    corp_id: &str,
    now: i64,
) -> Result<Vec<flowhook_sign::webhooks::WebhookSecret>, StoreError> {
    shared
        .secrets
        .get_or_load(corp_id, shared.store.webhook_secrets(corp_id, now))
        .await
}

fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Sends one delivery, in phases: prepare its request, pass the gates (fence, breaker, caps),
/// exchange it, and settle the outcome into its attempt record (breaker, retry schedule, 410).
/// A delivery held back at any phase before the exchange is put back with no attempt counted.
async fn send(shared: &Shared, c: Claimed, event: &DeliveryEvent) -> AttemptRecord {
    let now = now_ms();
    let (target, prepared) = match prepare_request(shared, &c, event, now).await {
        Ok(ready) => ready,
        Err(hold) => return hold.record(&c),
    };
    let ticket = match admit(shared, &target, now) {
        Ok(ticket) => ticket,
        Err(hold) => return hold.record(&c),
    };
    let exchange = exchange(shared, &target, &prepared).await;
    settle(shared, &c, &target, ticket, prepared, exchange, now).await
}

/// Why a delivery goes back without an attempt, and until when.
struct Hold {
    until: i64,
    /// Shown as the delivery's `lastError` (None: left as it was).
    because: Option<&'static str>,
}

impl Hold {
    fn record(self, c: &Claimed) -> AttemptRecord {
        AttemptRecord {
            delivery_id: c.id.clone(),
            corp_id: c.corp_id.clone(),
            lane: c.lane.clone(),
            attempt: None,
            held_because: self.because,
            next_attempt_at: self.until,
            status: DeliveryStatus::Pending,
            reopened_connectors: Vec::new(),
        }
    }
}

/// Prepare: the delivery's target, its app's token, whether its connector is paused, the
/// Standard Webhooks secrets, the approval link signed now — and the request, built as test
/// fire builds it ([`prepare`]).
async fn prepare_request(
    shared: &Shared,
    c: &Claimed,
    event: &DeliveryEvent,
    now: i64,
) -> Result<(Arc<Target>, Prepared), Hold> {
    let failed = |why: String| {
        tracing::warn!(delivery = %c.id, %why, "delivery could not be prepared; retrying later");
        Hold {
            until: now + shared.config.poll.as_millis() as i64,
            because: None,
        }
    };
    let target = target(shared, &c.corp_id, &c.action_id)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (action, connector, auth) = (&target.action, &target.connector, &target.auth);
    let token = match app_token(shared, &event.app_type, now).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(failed(format!(
                "application {} has no token",
                event.app_type
            )))
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    if is_paused(shared, &c.corp_id, &connector.id)
        .await
        .map_err(|e| failed(e.to_string()))?
    {
        return Err(Hold {
            until: now + PAUSED_RECHECK_MS,
            because: Some(HELD_PAUSED),
        });
    }
    // Standard Webhooks, when the strategy asks for it (empty otherwise).
    let webhook_secrets = webhook_secrets(shared, &c.corp_id, now)
        .await
        .map_err(|e| failed(e.to_string()))?;
    // The approval link in `task` is signed now, valid from this attempt (see `delivery::links`).
    let refreshed = match &shared.config.task_links {
        Some(links) => links
            .refresh(event.kind, &event.params, now)
            .await
            .map_err(|e| failed(e.to_string()))?,
        None => None,
    };
    let info = EventInfo {
        // What the receiver de-duplicates on: the caller's id of an ingested event, else ours.
        event_id: event.source_id.as_deref().unwrap_or(&c.event_id),
        kind: event.kind,
        seq: event.seq,
        params: refreshed
            .as_ref()
            .map_or(&event.params, |(signed, _)| signed),
        // The log shows the link with its signature masked (it is an approver's credential).
        logged_params: refreshed.as_ref().map(|(_, masked)| masked.as_slice()),
        backfill: c.backfill,
    };
    let signing = Signing {
        system_token: &token,
        webhook_secrets: &webhook_secrets,
    };
    let number = (c.attempts + 1) as u32;
    let prepared = prepare(&info, number, now, signing, connector, auth, action);
    Ok((target, prepared))
}

/// The gates: this node still holds its leases (else another may send it), and the endpoint's
/// breaker and the caps (the endpoint's, the organisation's share) let one more request go.
fn admit(shared: &Shared, target: &Target, now: i64) -> Result<Ticket, Hold> {
    let hold = |until, because| {
        Err(Hold {
            until,
            because: Some(because),
        })
    };
    if fenced(shared) {
        // Another node may hold this delivery by now: sending it could only duplicate.
        return hold(now, HELD_FENCED);
    }
    let cap = target.connector.max_concurrency as usize;
    match shared.breakers.permit(&target.key, cap, Instant::now()) {
        Permit::Send(t) | Permit::Probe(t) => Ok(t),
        // Parked (see `PARK_MS`): the breaker's probes are claimed apart, whatever their due
        // time, and the probe that closes it makes every parked delivery due at once.
        Permit::Hold => hold(now + park_ms(&shared.config), HELD_BY_BREAKER),
        // Back for a moment; claims leave the saturated key out until a request of it ends.
        Permit::Busy(Cap::Endpoint) => hold(now + BUSY_MS, HELD_ENDPOINT_BUSY),
        Permit::Busy(Cap::Organisation) => hold(now + BUSY_MS, HELD_ORG_BUSY),
    }
}

/// Exchange: the request and its answer (or failure), counted in the metrics.
async fn exchange(
    shared: &Shared,
    target: &Target,
    prepared: &Prepared,
) -> super::exchange::Exchange {
    let exchange = super::exchange::exchange(
        &shared.client,
        &shared.config.egress,
        &target.connector,
        &target.auth,
        prepared,
    )
    .await;
    let outcome = if exchange.outcome == Outcome::Delivered {
        "delivered"
    } else {
        exchange.error_kind.unwrap_or("other")
    };
    shared
        .metrics
        .delivery_attempts
        .get_or_create(&crate::telemetry::OutcomeLabels {
            outcome: outcome.into(),
        })
        .inc();
    shared
        .metrics
        .delivery_latency
        .observe(exchange.duration.as_secs_f64());
    exchange
}

/// Settle: the breaker learns the outcome, the retry policy says what next (a 410 pauses the
/// connector), and the attempt becomes its record.
async fn settle(
    shared: &Shared,
    c: &Claimed,
    target: &Target,
    ticket: Ticket,
    prepared: Prepared,
    exchange: super::exchange::Exchange,
    now: i64,
) -> AttemptRecord {
    let key = &target.key;
    let success = exchange.outcome == Outcome::Delivered;
    // A request that never left this machine (refused by the egress policy, impossible to
    // build) says nothing of the endpoint: not its failure, and no retry would go otherwise.
    let local = matches!(exchange.error_kind, Some(LOCAL_EGRESS | LOCAL_REQUEST));
    let reopened = if local {
        shared.breakers.release(key, ticket);
        false
    } else {
        shared.breakers.record(key, ticket, success, Instant::now())
    };
    if shared.breakers.take_freed() {
        shared.notify.notify_one(); // what claims left out may go now
    }
    let number = c.attempts + 1;
    let since_first = Duration::from_millis((now - c.created_at).max(0) as u64);
    let next = if local {
        Next::Dead
    } else {
        shared
            .config
            .policy
            .next(number as u32, exchange.outcome, since_first, random_unit())
    };
    let (status_after, next_at) = match next {
        Next::Done => (DeliveryStatus::Delivered, now),
        // Also behind an open breaker: the probe that closes it makes this delivery due at once.
        Next::RetryIn(d) => (DeliveryStatus::Pending, now + d.as_millis() as i64),
        Next::Dead => (DeliveryStatus::Dead, now),
        // 410: the connector is paused until an operator resumes it; this delivery waits
        // with the others (resuming makes them all due at once).
        Next::PauseEndpoint => {
            pause_after_gone(shared, c, &target.connector.id).await;
            (DeliveryStatus::Pending, now + PAUSED_RECHECK_MS)
        }
    };
    AttemptRecord {
        delivery_id: c.id.clone(),
        corp_id: c.corp_id.clone(),
        lane: c.lane.clone(),
        held_because: None,
        attempt: Some(Attempt {
            number,
            started_at: now,
            duration_ms: exchange.duration.as_millis() as i64,
            request: prepared.logged(),
            response_status: exchange.status,
            response_headers: exchange.headers,
            response_body: exchange.body,
            error_kind: exchange.error_kind,
            error: exchange.error,
        }),
        next_attempt_at: next_at,
        status: status_after,
        reopened_connectors: if reopened {
            connectors_at(shared, key)
        } else {
            Vec::new()
        },
    }
}

/// Pauses the connector whose endpoint answered 410 Gone to delivery `c`.
async fn pause_after_gone(shared: &Shared, c: &Claimed, connector: &str) {
    let reason = format!("the endpoint answered 410 Gone to delivery {}", c.id);
    match shared
        .store
        .pause_connector(&c.corp_id, connector, &reason)
        .await
    {
        Ok(true) => {
            tracing::warn!(%connector, "endpoint answered 410 Gone: connector paused until resumed")
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not pause the connector after 410"),
    }
}
