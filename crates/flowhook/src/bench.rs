//! Benchmarks that ship with the binary (`flowhook bench …`), so anyone can reproduce the
//! figures of `docs/BENCHMARKS.md` on their machine. Each run is bounded in count and time and
//! talks only to 127.0.0.1.
//!
//! `engine`: N concurrent HTTP clients each start instances of a 3-approver (one by one)
//! process and act on every task until the instance completes: 4 commands per instance, each a
//! durable commit before its answer.
//!
//! `delivery`: a real receiver on 127.0.0.1; each API call starts an instance whose one
//! `task.created` event has one delivery to it (`--via engine`), or relays one event of another
//! engine (`--via ingest`) or `--batch-size` of them (`--via batch`). Flat out (accepted/s, delivered/s from the first
//! call to the last arrival) or at a fixed offered rate (end-to-end latency from the API call to
//! the arrival).
//!
//! `neighbour` (`bench/neighbour.rs`): a healthy organisation's latency alone and beside a
//! hanging and a refusing neighbour on the same host:port.
//!
//! `console` (`bench/console.rs`): the console's busiest pages with 100,000 deliveries and
//! 10,000 instances in the database.

mod console;
mod neighbour;
pub use console::{console, ConsoleBench};
pub use neighbour::{neighbour, Neighbour, NeighbourBench};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::definition;
use crate::engine::resolve::Person;
use crate::Application;

/// Options of `flowhook bench engine`.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineBench {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Instances to run to completion (4 commands each).
    #[arg(long, default_value_t = 3000)]
    pub instances: usize,
    /// Stop after this many seconds even if not all instances ran.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
}

const CORP: &str = "bench";
/// The clients' organisation API key (scope `tasks`), as a real integration calls with: each
/// request is authenticated by it like any other.
const KEY: &str = "fhk_bench_clients_key_not_secret";

/// Runs the engine benchmark against `database_url` (a fresh database: it provisions its own org).
pub async fn engine(database_url: &str, opts: &EngineBench) -> anyhow::Result<()> {
    let users = ["u0", "u1", "u2", "u3"];
    let process = json!({"processCode": "three", "name": "Three approvers", "nodes": [
        {"id": "a", "type": "approval", "name": "A", "mode": "oneByOne",
         "approvers": [{"type": "users", "ids": ["u1", "u2", "u3"]}]}]});
    let app = provisioned(database_url, |_| {}, &users, process).await?;
    let addr = app.local_addr();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        .build()?;
    let base = format!("http://{addr}/api/v1/orgs/{CORP}");
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.clients {
        let (client, base, next) = (client.clone(), base.clone(), next.clone());
        let total = opts.instances;
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<Duration> = Vec::new();
            let mut errors = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                let t = Instant::now();
                let mut result = post::<Value>(
                    &client,
                    &format!("{base}/instances"),
                    "u0",
                    json!({"processCode": "three", "title": "bench", "formData": {"n": "1"}}),
                )
                .await;
                latencies.push(t.elapsed());
                loop {
                    let body = match result {
                        Ok(b) => b,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    };
                    let Some(task) = body["instance"]["tasks"]
                        .as_array()
                        .and_then(|ts| ts.iter().find(|t| t["status"] == "open"))
                        .cloned()
                    else {
                        break; // approved
                    };
                    let t = Instant::now();
                    result = post(
                        &client,
                        &format!(
                            "{base}/tasks/{}/agree",
                            task["taskId"].as_str().unwrap_or_default()
                        ),
                        task["userId"].as_str().unwrap_or_default(),
                        json!({}),
                    )
                    .await;
                    latencies.push(t.elapsed());
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    server.await??;

    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "engine bench: backend={} clients={} commands={} errors={} seconds={:.2} commands/s={:.0} p50={:.1}ms p99={:.1}ms max={:.1}ms",
        if database_url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        opts.clients,
        latencies.len(),
        errors,
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    if errors > 0 {
        anyhow::bail!("{errors} commands failed");
    }
    Ok(())
}

async fn post<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    body: Value,
) -> anyhow::Result<T> {
    post_as(client, url, KEY, user, body).await
}

/// [`post`] with another organisation's API key.
async fn post_as<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    user: &str,
    body: Value,
) -> anyhow::Result<T> {
    let resp = client
        .post(url)
        .bearer_auth(key)
        .header("X-Flowhook-User", user)
        .json(&body)
        .send()
        .await
        .context("request")?;
    let status = resp.status();
    let bytes = resp.bytes().await.context("response body")?;
    if !status.is_success() {
        anyhow::bail!("{status}: {}", String::from_utf8_lossy(&bytes));
    }
    serde_json::from_slice(&bytes).context("response body")
}

/// The part of a command's answer the delivery benchmark reads (the load generator parses
/// no more than it needs: it shares the CPU with the server it measures).
#[derive(serde::Deserialize)]
struct Started {
    events: Vec<StartedEvent>,
}

#[derive(serde::Deserialize)]
struct StartedEvent {
    id: String,
}

/// Options of `flowhook bench delivery`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryBench {
    /// Events (API calls) to send.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Concurrent API clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Offer this many events per second instead of flat out.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Stop waiting for arrivals after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub max_seconds: u64,
    /// The receiver answers 503 for the first this many seconds (an outage), then 200.
    #[arg(long, conflicts_with = "backlog")]
    pub outage_secs: Option<u64>,
    /// The receiver answers 503 until every event is accepted, then 200: the drain of a backlog.
    #[arg(long)]
    pub backlog: bool,
    /// How the events enter: `engine` (each call starts an instance of Flowhook's own),
    /// `ingest` (each call relays one event of another engine: `POST …/events`), `batch`
    /// (each call relays `--batch-size` events: `POST …/events/batch`). Each event is of a new
    /// instance.
    #[arg(long, value_enum, default_value_t = Via::Engine)]
    pub via: Via,
    /// Events per call with `--via batch`.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Sign each `taskUrl` as an approval link (`console_links`): `false` measures the
    /// delivery path without the console's part in it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub console_links: bool,
}

/// The write path a delivery benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Engine,
    Ingest,
    Batch,
}

/// The answer of an ingest call the benchmark reads: nothing (the caller's event id is the
/// key); of a batch call, the same.
#[derive(serde::Deserialize)]
struct Relayed {}

/// A relayed `task.created` of instance `bench-{n}`, whose caller id is `ev-{n}`.
fn relayed_event(n: usize) -> Value {
    json!({"type": "task.created", "processInstanceId": format!("bench-{n}"), "eventId": format!("ev-{n}"),
        "payload": {"appType": "APP_BENCH", "corpId": CORP, "taskId": format!("bench-{n}-t1"), "title": "bench",
                    "actionerId": "u1", "processCode": "one"}})
}

/// With `FLOWHOOK_BENCH_TRACE` set, lists on stderr the arrivals slower than `over` (or than
/// the variable's value in ms, when it is a number), each with
/// the time of its call since the first call, in call order: stalls of the whole node (many
/// calls within a few ms, arriving together) tell apart from one lane's waits, and their times
/// can be matched against the database's log.
fn trace_slow(calls: impl Iterator<Item = (Instant, Duration)>, over: Duration) {
    let Some(setting) = std::env::var_os("FLOWHOOK_BENCH_TRACE") else {
        return;
    };
    let over = setting
        .to_str()
        .and_then(|ms| ms.parse().ok())
        .map_or(over, Duration::from_millis);
    let calls: Vec<(Instant, Duration)> = calls.collect();
    let Some(first) = calls.iter().map(|(t, _)| *t).min() else {
        return;
    };
    let mut slow: Vec<(Duration, Duration)> = calls
        .iter()
        .filter(|(_, l)| *l > over)
        .map(|(t, l)| (t.duration_since(first), *l))
        .collect();
    slow.sort();
    for (at, l) in slow.iter().take(80) {
        eprintln!(
            "slow: called at +{:.3}s, arrived after {:.1} ms",
            at.as_secs_f64(),
            l.as_secs_f64() * 1000.0
        );
    }
}

/// Times a fixed single-core workload (the same work on every run, of the kind a delivery
/// does: small allocations, string hashing, map lookups over more memory than the caches
/// hold): how fast this machine is at the moment. A shared 2-core machine's speed moves by
/// half or more within an hour; figures taken with very different probes are not comparable.
fn machine_probe_ms() -> f64 {
    const N: u64 = 400_000;
    let started = Instant::now();
    let mut map = std::collections::HashMap::new();
    for i in 0..N {
        map.insert(format!("evt_{i:016x}"), i);
    }
    let mut sum = 0u64;
    for i in 0..N {
        sum = sum.wrapping_add(map[&format!("evt_{:016x}", (i * 7_919) % N)]);
    }
    std::hint::black_box(sum);
    started.elapsed().as_secs_f64() * 1000.0
}

/// The process's peak resident set since the run began, in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

type Arrivals = Arc<
    std::sync::Mutex<std::collections::HashMap<String, (Option<Instant>, Option<Instant>, u32)>>,
>;

/// Runs the delivery benchmark against `database_url` (a fresh database).
pub async fn delivery(database_url: &str, opts: &DeliveryBench) -> anyhow::Result<()> {
    let probe_before = machine_probe_ms();
    // The peak resident set reported below is the run's, not the probe's (its map is ~40 MiB):
    // Linux resets the high-water mark to the current resident set on this write.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    // The receiver: records the first arrival and counts duplicates per event id.
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}", listener.local_addr()?);
    let seen = arrivals.clone();
    // Down (503) during an outage or until the backlog is complete; when it came back.
    let down = Arc::new(std::sync::atomic::AtomicBool::new(
        opts.outage_secs.is_some() || opts.backlog,
    ));
    let back_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let is_down = down.clone();
    let receiver = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen = seen.clone();
        let is_down = is_down.clone();
        async move {
            if is_down.load(Ordering::SeqCst) {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down");
            }
            let now = Instant::now();
            if let Some(id) = headers
                .get("x-flowhook-event-id")
                .and_then(|v| v.to_str().ok())
            {
                let mut map = seen.lock().expect("lock");
                let entry = map.entry(id.to_owned()).or_insert((None, None, 0));
                entry.1.get_or_insert(now);
                entry.2 += 1;
            }
            (axum::http::StatusCode::OK, "ok")
        }
    });
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let process = json!({"processCode": "one", "name": "One approver", "nodes": [
        {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "users", "ids": ["u1"]}]}]});
    let app = provisioned(
        database_url,
        |c| {
            // One organisation, one endpoint that answers at once: every slot is theirs (its
            // connector's own cap is raised to match below).
            c.delivery_concurrency = 128;
            c.delivery_org_share_percent = 100;
            c.console_links = opts.console_links;
        },
        &["u0", "u1"],
        process,
    )
    .await?;
    let addr = app.local_addr();
    let store = app.store().clone();
    // The benchmark's receiver answers at once and is meant to take every slot.
    connect(
        &store,
        CORP,
        &receiver_url,
        crate::integration::connectors::MAX_CONCURRENCY,
    )
    .await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        .build()?;
    let url = match opts.via {
        Via::Engine => format!("http://{addr}/api/v1/orgs/{CORP}/instances"),
        Via::Ingest => format!("http://{addr}/api/v1/apps/APP_BENCH/events"),
        Via::Batch => format!("http://{addr}/api/v1/apps/APP_BENCH/events/batch"),
    };
    let per_call = if opts.via == Via::Batch {
        opts.batch_size.clamp(1, 1000)
    } else {
        1
    };
    let via = opts.via;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let come_back = |down: &Arc<std::sync::atomic::AtomicBool>,
                     back_at: &Arc<std::sync::Mutex<Option<Instant>>>| {
        *back_at.lock().expect("lock") = Some(Instant::now());
        down.store(false, Ordering::SeqCst);
    };
    if let Some(secs) = opts.outage_secs {
        let (down, back_at) = (down.clone(), back_at.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            come_back(&down, &back_at);
        });
    }
    let interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let mut workers = Vec::new();
    for _ in 0..opts.clients {
        let (client, url, next, arrivals) =
            (client.clone(), url.clone(), next.clone(), arrivals.clone());
        let total = opts.events;
        workers.push(tokio::spawn(async move {
            let mut errors = 0usize;
            loop {
                // The call's first event: calls take `per_call` events each.
                let first = next.fetch_add(per_call, Ordering::Relaxed);
                if first >= total {
                    break;
                }
                let count = per_call.min(total - first);
                if let Some(every) = interval {
                    tokio::time::sleep_until((started + every * first as u32).into()).await;
                }
                let t = Instant::now();
                let accepted: Result<Vec<String>, _> = match via {
                    Via::Engine => post::<Started>(
                        &client,
                        &url,
                        "u0",
                        json!({"processCode": "one", "title": "bench"}),
                    )
                    .await
                    .map(|b| b.events.into_iter().take(1).map(|e| e.id).collect()),
                    Via::Ingest => post::<Relayed>(&client, &url, "u0", relayed_event(first))
                        .await
                        .map(|_| vec![format!("ev-{first}")]),
                    Via::Batch => {
                        let events: Vec<Value> =
                            (first..first + count).map(relayed_event).collect();
                        post::<Relayed>(&client, &url, "u0", json!({"events": events}))
                            .await
                            .map(|_| (first..first + count).map(|n| format!("ev-{n}")).collect())
                    }
                };
                match accepted {
                    Ok(ids) => {
                        let mut map = arrivals.lock().expect("lock");
                        for id in ids {
                            map.entry(id).or_insert((None, None, 0)).0 = Some(t);
                        }
                    }
                    Err(_) => errors += count,
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for w in workers {
        errors += w.await?;
    }
    let accepted_secs = started.elapsed().as_secs_f64();
    if opts.backlog {
        come_back(&down, &back_at);
    }
    let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
    let expected = opts.events - errors;
    loop {
        let arrived = arrivals
            .lock()
            .expect("lock")
            .values()
            .filter(|e| e.0.is_some() && e.1.is_some())
            .count();
        if arrived >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let map = arrivals.lock().expect("lock").clone();
    let _ = stop_tx.send(());
    server.await??;

    let mut latencies: Vec<Duration> = map
        .values()
        .filter_map(|(s, a, _)| Some(a.as_ref()?.saturating_duration_since(*s.as_ref()?)))
        .collect();
    latencies.sort();
    trace_slow(
        map.values().filter_map(|(s, a, _)| {
            let s = (*s)?;
            Some((s, a.as_ref()?.saturating_duration_since(s)))
        }),
        Duration::from_millis(20),
    );
    let last_arrival = map.values().filter_map(|e| e.1).max();
    let delivered = latencies.len();
    let duplicates: u32 = map.values().map(|e| e.2.saturating_sub(1)).sum();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let delivered_secs = last_arrival.map_or(f64::NAN, |t| t.duration_since(started).as_secs_f64());
    println!(
        "delivery bench: backend={} via={} clients={} events={} rate={} accepted/s={:.0} delivered={} delivered/s={:.0} \
         e2e_p50={:.1}ms e2e_p90={:.1}ms e2e_p99={:.1}ms e2e_p99.9={:.1}ms e2e_max={:.1}ms duplicates={} errors={}",
        if database_url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        match opts.via {
            Via::Engine => "engine".to_owned(),
            Via::Ingest => "ingest".to_owned(),
            Via::Batch => format!("batch({per_call})"),
        },
        opts.clients,
        opts.events,
        opts.rate.map_or("max".to_string(), |r| r.to_string()),
        opts.events as f64 / accepted_secs,
        delivered,
        delivered as f64 / delivered_secs,
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(pct(0.999)),
        ms(latencies.last().copied().unwrap_or_default()),
        duplicates,
        errors,
    );
    if let Some(back) = *back_at.lock().expect("lock") {
        let after: Vec<Instant> = map
            .values()
            .filter_map(|e| e.1)
            .filter(|t| *t >= back)
            .collect();
        let last = after.iter().max().copied().unwrap_or(back);
        let first = after.iter().min().copied().unwrap_or(back);
        let secs = last.duration_since(back).as_secs_f64();
        let drain = last.duration_since(first).as_secs_f64();
        println!(
            "after the receiver came back: {} events delivered in {:.1} s ({:.0}/s), every event delivered {:.1} s after its return; \
             the first {:.1} s after it (the breaker's probe), then {:.1} s of drain ({:.0}/s)",
            after.len(),
            secs,
            after.len() as f64 / secs.max(f64::EPSILON),
            secs,
            first.duration_since(back).as_secs_f64(),
            drain,
            after.len() as f64 / drain.max(f64::EPSILON),
        );
    }
    println!(
        "peak RSS of the process (Flowhook, receiver and clients): {:.0} MiB",
        peak_rss_mib()
    );
    println!(
        "machine probe (a fixed single-core workload; lower is faster): {probe_before:.0} ms before, {:.0} ms after",
        machine_probe_ms()
    );
    if delivered < expected {
        anyhow::bail!(
            "{} events were not delivered within {} s",
            expected - delivered,
            opts.max_seconds
        );
    }
    Ok(())
}

/// A connector of `corp` to `base_url` (10 s timeout, `max_concurrency` requests in flight),
/// its `created` action, and the strategy taking `task.created` to it.
async fn connect(
    store: &crate::store::Store,
    corp: &str,
    base_url: &str,
    max_concurrency: u32,
) -> anyhow::Result<()> {
    let connector = store
        .create_connector(
            corp,
            &crate::integration::connectors::ConnectorInput {
                name: "receiver".into(),
                base_url: base_url.into(),
                auth: Default::default(),
                default_headers: Default::default(),
                timeout_ms: 10_000,
                max_concurrency,
            },
        )
        .await?;
    let action = store
        .create_action(
            corp,
            &crate::integration::connectors::ActionInput {
                connector_id: connector.id,
                name: "created".into(),
                method: "POST".into(),
                path: "/created".into(),
                encoding: Default::default(),
            },
        )
        .await?;
    let strategy = crate::integration::connectors::Strategy {
        enabled: true,
        actions: crate::integration::connectors::EventActions {
            created: Some(action.id),
            ..Default::default()
        },
        app_types: None,
        process_codes: None,
        ordered: true,
        standard_webhooks: false,
    };
    store
        .put_strategy(corp, &strategy)
        .await?
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(())
}

/// The application on `database_url` (which must be fresh) with the benchmark organisation:
/// `users`, an app and the process `document`.
async fn provisioned(
    database_url: &str,
    tune: impl FnOnce(&mut Config),
    users: &[&str],
    document: Value,
) -> anyhow::Result<Application> {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse()?;
    config.database_url = database_url.to_owned();
    config.database_max_connections = 16;
    tune(&mut config);
    let app = Application::build(config).await?;
    let store = app.store();
    if store.org(CORP).await?.is_some() {
        anyhow::bail!("the database already holds a `{CORP}` organisation: use a fresh database");
    }
    store.create_org(CORP, "Benchmark").await?;
    store
        .create_api_key(
            CORP,
            "bench clients",
            &crate::http::auth::hash_key(KEY),
            &["tasks".to_owned(), "integration".to_owned()],
        )
        .await?;
    for u in users {
        let p = Person {
            user_id: (*u).into(),
            name: (*u).into(),
            avatar: String::new(),
            manager_id: None,
            admin: false,
        };
        store.put_user(CORP, &p).await?;
    }
    store
        .create_app(CORP, "APP_BENCH", "bench", "BENCHTOKEN")
        .await?;
    let (_, dir) = store.load_directory(CORP).await?;
    let def = definition::validate(&document, &dir).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    store.put_definition(CORP, "APP_BENCH", &def).await?;
    Ok(app)
}
