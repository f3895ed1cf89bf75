//! `flowhook bench console`: how fast the console's busiest pages render with a large history.
//!
//! One Flowhook with a receiver on 127.0.0.1 that answers at once. It is filled through the API
//! as in real use: `--instances` instances started through the engine (one `task.created`
//! delivery each) and then relayed events through the batch ingest API until the database holds
//! `--deliveries` deliveries, all delivered. Then, signed in as an operator, each page is
//! fetched `--requests` times one after another (the server renders; nothing is cached between
//! requests) and its latency taken: the delivery log (first page, and filtered), the task
//! center of the user holding every open task, the originator's "created" list, an instance
//! page; the API's own delivery list beside them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{connect, machine_probe_ms, post, provisioned, CORP};
use crate::integration::connectors::MAX_CONCURRENCY;

/// Options of `flowhook bench console`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleBench {
    /// Instances started through the engine (u1 holds each one's open task).
    #[arg(long, default_value_t = 10_000)]
    pub instances: usize,
    /// Deliveries in the database in all (the rest relayed through the batch ingest API).
    #[arg(long, default_value_t = 100_000)]
    pub deliveries: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Stop waiting for the deliveries after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub max_seconds: u64,
}

/// The operator's API key (scope `admin`) whose session the pages are fetched with.
const OPERATOR_KEY: &str = "fhk_bench_operator_key_not_secret";

pub async fn console(database_url: &str, opts: &ConsoleBench) -> anyhow::Result<()> {
    let probe_before = machine_probe_ms();
    let delivered = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}", listener.local_addr()?);
    let count = delivered.clone();
    let receiver = axum::Router::new().fallback(move || {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            axum::http::StatusCode::OK
        }
    });
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let process = json!({"processCode": "one", "name": "One approver", "nodes": [
        {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "users", "ids": ["u1"]}]}]});
    let app = provisioned(database_url, |_| {}, &["u0", "u1"], process).await?;
    let addr = app.local_addr();
    let store = app.store().clone();
    connect(&store, CORP, &receiver_url, MAX_CONCURRENCY).await?;
    store
        .create_api_key(
            CORP,
            "bench operator",
            &crate::http::auth::hash_key(OPERATOR_KEY),
            &["admin".to_owned()],
        )
        .await?;
    // An operator's session, as signing in with that key makes one.
    let token = crate::store::console::new_secret();
    let now = crate::support::now_ms();
    store
        .create_session(&crate::store::console::Session {
            id_hash: crate::http::auth::hash_key(&token),
            kind: crate::store::console::SessionKind::Operator,
            corp_id: Some(CORP.into()),
            user_id: None,
            key_hash: Some(crate::http::auth::hash_key(OPERATOR_KEY)),
            csrf: crate::store::console::new_secret(),
            grants: Vec::new(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + 3_600_000,
        })
        .await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    // No redirects followed: a page that sends to the sign-in form is a failure, not a page.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = format!("http://{addr}");

    // Fill: instances through the engine, then relayed events in batches of 1,000.
    let filling = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (client, next, url) = (
            client.clone(),
            next.clone(),
            format!("{base}/api/v1/orgs/{CORP}/instances"),
        );
        let total = opts.instances;
        workers.push(tokio::spawn(async move {
            let mut last = None;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let started: serde_json::Value = post(
                    &client,
                    &url,
                    "u0",
                    json!({"processCode": "one", "title": "bench"}),
                )
                .await?;
                last = started["instance"]["processInstanceId"]
                    .as_str()
                    .map(str::to_owned);
            }
            anyhow::Ok(last)
        }));
    }
    let mut instance = None;
    for w in workers {
        instance = w.await??.or(instance);
    }
    let instance = instance.ok_or_else(|| anyhow::anyhow!("no instance was started"))?;
    let relayed = opts.deliveries.saturating_sub(opts.instances);
    let mut sent = 0;
    while sent < relayed {
        let n = (relayed - sent).min(1000);
        let events: Vec<serde_json::Value> = (sent..sent + n)
            .map(|i| {
                json!({"type": "task.created", "processInstanceId": format!("ext-{}", i / 10),
                    "payload": {"appType": "APP_BENCH", "corpId": CORP, "taskId": format!("ext-{}-t{}", i / 10, i % 10),
                        "title": "relayed", "actionerId": "u1", "processCode": "one"}})
            })
            .collect();
        post::<serde_json::Value>(
            &client,
            &format!("{base}/api/v1/apps/APP_BENCH/events/batch"),
            "u0",
            json!({"events": events}),
        )
        .await?;
        sent += n;
    }
    let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
    while delivered.load(Ordering::Relaxed) < opts.deliveries && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "console bench: filled {} instances and {} deliveries ({} delivered) in {:.1} s",
        opts.instances,
        opts.deliveries,
        delivered.load(Ordering::Relaxed),
        filling.elapsed().as_secs_f64()
    );

    let cookie = format!("{}={token}", crate::console::session::SESSION_COOKIE);
    let pages = [
        (
            "delivery log",
            "/console/integration/deliveries".to_owned(),
            true,
        ),
        (
            "delivery log, delivered task.created",
            "/console/integration/deliveries?status=delivered&event=task.created".to_owned(),
            true,
        ),
        (
            "task center, u1's todo (every open task)",
            "/console/tasks?list=todo&user=u1".to_owned(),
            true,
        ),
        (
            "task center, u0's created",
            "/console/tasks?list=created&user=u0".to_owned(),
            true,
        ),
        (
            "instance page",
            format!("/console/instances/{instance}"),
            true,
        ),
        (
            "API: GET …/deliveries (for comparison)",
            format!("/api/v1/orgs/{CORP}/deliveries?limit=50"),
            false,
        ),
        (
            "API: u1's todo list (for comparison)",
            format!("/api/v1/orgs/{CORP}/users/u1/tasks?list=todo"),
            false,
        ),
        (
            "API: u1's task counts (for comparison)",
            format!("/api/v1/orgs/{CORP}/users/u1/task-counts"),
            false,
        ),
    ];
    let backend = if database_url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let mut failed = 0;
    for (name, path, page) in &pages {
        let mut latencies = Vec::with_capacity(opts.requests);
        for _ in 0..opts.requests {
            let mut req = client.get(format!("{base}{path}"));
            req = if *page {
                req.header(axum::http::header::COOKIE, &cookie)
            } else {
                req.bearer_auth(OPERATOR_KEY)
            };
            let t = Instant::now();
            let resp = req.send().await?;
            let status = resp.status();
            let _ = resp.bytes().await?;
            latencies.push(t.elapsed());
            if !status.is_success() {
                failed += 1;
            }
        }
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "console bench: backend={backend} page=\"{name}\" requests={} p50={:.1}ms p99={:.1}ms max={:.1}ms",
            latencies.len(),
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        );
    }
    let _ = stop_tx.send(());
    server.await??;
    println!(
        "machine probe (a fixed single-core workload; lower is faster): {probe_before:.0} ms before, {:.0} ms after",
        machine_probe_ms()
    );
    if failed > 0 {
        anyhow::bail!("{failed} requests were not answered 2xx");
    }
    Ok(())
}
