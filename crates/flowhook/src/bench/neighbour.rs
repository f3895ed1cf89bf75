//! `flowhook bench neighbour`: what a misbehaving neighbour costs a healthy organisation.
//!
//! One Flowhook with its default delivery settings, one receiver on 127.0.0.1. The healthy
//! organisation offers `--events` at `--rate` twice: alone, then while other organisations
//! (`--neighbours`) offer the same load to the same host:port — by default one whose endpoint
//! hangs (answers after 60 s; the connector gives up at 10 s) and one whose endpoint refuses
//! (503); `ok` is a well-behaved neighbour, to tell the cost of the load from the cost of the
//! misbehaviour. Printed: the healthy
//! organisation's API call → arrival latency in both phases (p50, p99, p99.9, max) and the
//! ratio of the p99s, measured in one sitting so the machine's state cancels out. With
//! `FLOWHOOK_BENCH_TRACE` set, the arrivals slower than 100 ms are listed with the time of their
//! call in the phase: stalls of the whole node (all at once) tell apart from one lane's waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{connect, machine_probe_ms, post_as, provisioned, Started, CORP, KEY};
use crate::integration::connectors::DEFAULT_MAX_CONCURRENCY;

/// Options of `flowhook bench neighbour`.
#[derive(Debug, Clone, clap::Args)]
pub struct NeighbourBench {
    /// Events the healthy organisation sends in each phase (one API call, one delivery each).
    #[arg(long, default_value_t = 3000)]
    pub events: usize,
    /// Offered rate of each organisation, events per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Concurrent API clients per organisation.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Stop waiting for the healthy organisation's arrivals after this many seconds per phase.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// The neighbours, one organisation each: `hang` (its endpoint answers after 60 s), `down`
    /// (503), `ok` (a well-behaved neighbour: the same load, an endpoint answering at once).
    #[arg(long, value_delimiter = ',', default_value = "hang,down")]
    pub neighbours: Vec<Neighbour>,
}

/// How a neighbour's endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Neighbour {
    Hang,
    Down,
    Ok,
}

impl Neighbour {
    fn name(self) -> &'static str {
        match self {
            Neighbour::Hang => "hang",
            Neighbour::Down => "down",
            Neighbour::Ok => "ok",
        }
    }
}

/// First arrival of each event id at the healthy endpoint.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// The organisation and API key of neighbour number `i` (several of one kind may run: `ok,ok`
/// offers the load of `hang,down` from well-behaved neighbours).
fn noisy(i: usize, n: Neighbour) -> (String, String) {
    (
        format!("noisy-{i}-{}", n.name()),
        format!("fhk_bench_noisy_{i}_{}_not_secret", n.name()),
    )
}

pub async fn neighbour(database_url: &str, opts: &NeighbourBench) -> anyhow::Result<()> {
    let probe_before = machine_probe_ms();
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}", listener.local_addr()?);
    let seen = arrivals.clone();
    let receiver = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let path = uri.path();
                if path.starts_with("/hang") {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return axum::http::StatusCode::OK;
                }
                if path.starts_with("/down") {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                if path.starts_with("/ok") {
                    return axum::http::StatusCode::OK;
                }
                if let Some(id) = headers
                    .get("x-flowhook-event-id")
                    .and_then(|v| v.to_str().ok())
                {
                    seen.lock()
                        .expect("lock")
                        .entry(id.to_owned())
                        .or_insert_with(Instant::now);
                }
                axum::http::StatusCode::OK
            }
        },
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let process = json!({"processCode": "one", "name": "One approver", "nodes": [
        {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "users", "ids": ["u1"]}]}]});
    // The default delivery settings: the fair share is what is measured.
    let app = provisioned(database_url, |_| {}, &["u0", "u1"], process.clone()).await?;
    let addr = app.local_addr();
    let store = app.store().clone();
    connect(&store, CORP, &receiver_url, DEFAULT_MAX_CONCURRENCY).await?;
    for (i, n) in opts.neighbours.iter().enumerate() {
        let (corp, key) = noisy(i, *n);
        let corp = corp.as_str();
        let path = format!("/{}", n.name());
        store.create_org(corp, corp).await?;
        store
            .create_api_key(
                corp,
                "noisy clients",
                &crate::http::auth::hash_key(&key),
                &["tasks".to_owned()],
            )
            .await?;
        for u in ["u0", "u1"] {
            let p = crate::engine::resolve::Person {
                user_id: u.into(),
                name: u.into(),
                avatar: String::new(),
                manager_id: None,
                admin: false,
            };
            store.put_user(corp, &p).await?;
        }
        let app_type = format!("APP_{}", corp.to_uppercase().replace('-', "_"));
        store
            .create_app(corp, &app_type, corp, "NOISYTOKEN")
            .await?;
        let (_, dir) = store.load_directory(corp).await?;
        let def = crate::engine::definition::validate(&process, &dir)
            .map_err(|p| anyhow::anyhow!("{p:?}"))?;
        store.put_definition(corp, &app_type, &def).await?;
        connect(
            &store,
            corp,
            &format!("{receiver_url}{path}"),
            DEFAULT_MAX_CONCURRENCY,
        )
        .await?;
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients * 3)
        .build()?;
    let url = |corp: &str| format!("http://{addr}/api/v1/orgs/{corp}/instances");

    let mut phases = Vec::new();
    for with_neighbours in [false, true] {
        let noisy: Vec<_> = if with_neighbours {
            opts.neighbours
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let (corp, key) = noisy(i, *n);
                    tokio::spawn(offer(
                        client.clone(),
                        url(&corp),
                        key,
                        opts.events,
                        opts.rate,
                        opts.clients,
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
        let started = offer(
            client.clone(),
            url(CORP),
            KEY.to_owned(),
            opts.events,
            opts.rate,
            opts.clients,
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
        loop {
            let arrived = {
                let map = arrivals.lock().expect("lock");
                started
                    .iter()
                    .filter(|(id, _)| map.contains_key(id))
                    .count()
            };
            if arrived >= started.len() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut noisy_accepted = 0;
        for n in noisy {
            noisy_accepted += n.await?.len();
        }
        let map = arrivals.lock().expect("lock").clone();
        let mut latencies: Vec<Duration> = started
            .iter()
            .filter_map(|(id, t)| Some(map.get(id)?.saturating_duration_since(*t)))
            .collect();
        super::trace_slow(
            started
                .iter()
                .filter_map(|(id, t)| Some((*t, map.get(id)?.saturating_duration_since(*t)))),
            Duration::from_millis(100),
        );
        latencies.sort();
        let missing = opts.events - latencies.len();
        phases.push((with_neighbours, latencies, missing, noisy_accepted));
    }
    let _ = stop_tx.send(());
    server.await??;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |l: &[Duration], p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let backend = if database_url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    for (with, l, missing, noisy) in &phases {
        println!(
            "neighbour bench: backend={backend} phase={} rate={}/s events={} arrived={} missing={missing} \
             e2e_p50={:.1}ms e2e_p99={:.1}ms e2e_p99.9={:.1}ms e2e_max={:.1}ms neighbours_accepted={noisy}",
            if *with { "with-neighbours" } else { "alone" },
            opts.rate,
            opts.events,
            l.len(),
            ms(pct(l, 0.50)),
            ms(pct(l, 0.99)),
            ms(pct(l, 0.999)),
            ms(l.last().copied().unwrap_or_default()),
        );
    }
    let p99 = |i: usize| ms(pct(&phases[i].1, 0.99));
    let names: Vec<&str> = opts.neighbours.iter().map(|n| n.name()).collect();
    println!(
        "p99 with neighbours [{}] / p99 alone: {:.2}",
        names.join(","),
        p99(1) / p99(0).max(f64::EPSILON)
    );
    println!(
        "machine probe (a fixed single-core workload; lower is faster): {probe_before:.0} ms before, {:.0} ms after",
        machine_probe_ms()
    );
    if phases.iter().any(|p| p.2 > 0) {
        anyhow::bail!("some of the healthy organisation's events did not arrive");
    }
    Ok(())
}

/// Offers `total` instance starts at `rate`/s from `clients` clients; returns each accepted
/// event's id with the time its call was made.
async fn offer(
    client: reqwest::Client,
    url: String,
    key: String,
    total: usize,
    rate: u32,
    clients: usize,
) -> Vec<(String, Instant)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (client, url, next, key) = (client.clone(), url.clone(), next.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                tokio::time::sleep_until((began + every * n as u32).into()).await;
                let t = Instant::now();
                if let Ok(body) = post_as::<Started>(
                    &client,
                    &url,
                    &key,
                    "u0",
                    json!({"processCode": "one", "title": "bench"}),
                )
                .await
                {
                    if let Some(e) = body.events.into_iter().next() {
                        accepted.push((e.id, t));
                    }
                }
            }
            accepted
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    all
}
