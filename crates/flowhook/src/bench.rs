//! Benchmarks that ship with the binary (`flowhook bench …`), so anyone can reproduce the
//! figures of `docs/BENCHMARKS.md` on their machine. Each run is bounded in count and time and
//! talks only to 127.0.0.1.
//!
//! `engine`: N concurrent HTTP clients each start instances of a 3-approver (one by one)
//! process and act on every task until the instance completes: 4 commands per instance, each a
//! durable commit before its answer.

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
const KEY: &str = "bench-bootstrap-key-not-secret";

/// Runs the engine benchmark against `database_url` (a fresh database: it provisions its own org).
pub async fn engine(database_url: &str, opts: &EngineBench) -> anyhow::Result<()> {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse()?;
    config.database_url = database_url.to_owned();
    config.database_max_connections = 16;
    config.admin_key = Some(KEY.into());
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    let store = app.store().clone();
    if store.org(CORP).await?.is_some() {
        anyhow::bail!("the database already holds a `{CORP}` organisation: use a fresh database");
    }
    store.create_org(CORP, "Benchmark").await?;
    for u in ["u0", "u1", "u2", "u3"] {
        let p = Person {
            user_id: u.into(),
            name: u.into(),
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
    let def = definition::validate(
        &json!({"processCode": "three", "name": "Three approvers", "nodes": [
            {"id": "a", "type": "approval", "name": "A", "mode": "oneByOne",
             "approvers": [{"type": "users", "ids": ["u1", "u2", "u3"]}]}]}),
        &dir,
    )
    .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    store.put_definition(CORP, "APP_BENCH", &def).await?;

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
                let mut result = post(
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

async fn post(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let resp = client
        .post(url)
        .bearer_auth(KEY)
        .header("X-Flowhook-User", user)
        .json(&body)
        .send()
        .await
        .context("request")?;
    let status = resp.status();
    let body: Value = resp.json().await.context("response body")?;
    if !status.is_success() {
        anyhow::bail!("{status}: {body}");
    }
    Ok(body)
}
