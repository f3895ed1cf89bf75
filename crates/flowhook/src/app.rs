//! Building and running the service: open the store, migrate, bind, serve until told to stop.
//!
//! `Application::build` takes an address that may be port 0 and exposes the bound one, so tests
//! run the real application exactly as `flowhook serve` does.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{redact_url, Config};
use crate::http::{self, AppState};
use crate::store::Store;
use crate::telemetry::Metrics;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    config: Config,
    dispatcher: crate::delivery::dispatcher::DispatcherConfig,
    /// This node's lease owner id, and the writer's channel of fresh deliveries to it.
    owner: String,
    fresh: tokio::sync::mpsc::Receiver<crate::store::writer::FreshDelivery>,
    /// The dispatcher's attempt records, to the writer.
    records: tokio::sync::mpsc::Sender<crate::store::attempts::Record>,
}

/// Checks the whole configuration: its plain settings, then each layer's own (egress rules,
/// the master key), as `flowhook serve` does before it starts.
pub fn check_config(config: &Config) -> Result<(), crate::config::ConfigError> {
    config.validate()?;
    let invalid = crate::config::ConfigError::Invalid;
    crate::delivery::dispatcher::DispatcherConfig::from_config(config).map_err(invalid)?;
    crate::store::secrets::KeySource::from_config(config).map_err(invalid)?;
    Ok(())
}

impl Application {
    /// Opens (creating if needed) and migrates the database, then binds the listener. The
    /// configuration is the caller's to check ([`check_config`], as `flowhook serve` does);
    /// what the layers cannot build from it fails here.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let dispatcher = crate::delivery::dispatcher::DispatcherConfig::from_config(&config)
            .map_err(crate::config::ConfigError::Invalid)?;
        let key_source = crate::store::secrets::KeySource::from_config(&config)
            .map_err(crate::config::ConfigError::Invalid)?;
        let store = Store::from_config(&config).await?;
        let report = store.migrate().await?;
        let keyring = crate::store::secrets::load_keyring(&store, &key_source).await?;
        let sealed = crate::store::secrets::reseal(&store, &keyring, false).await?;
        tracing::info!(key_id = keyring.current_id(), "master key open");
        crate::store::secrets::install(&store, std::sync::Arc::new(keyring));
        if sealed.sealed > 0 {
            tracing::info!(
                values = sealed.sealed,
                "sealed the secrets stored in plaintext"
            );
            crate::store::secrets::scrub(&store).await?;
        }
        let installation = store.installation_id().await?;
        tracing::info!(
            database = %redact_url(&config.database_url),
            schema_from = report.before,
            schema_to = report.after,
            %installation,
            "database ready"
        );
        let dispatch = std::sync::Arc::new(tokio::sync::Notify::new());
        let owner = crate::delivery::dispatcher::new_owner();
        // Alive before the first lease: the writer leases fresh deliveries to this node, and a
        // lease counts only while its owner's heartbeat is fresh (`store::nodes`). Registered
        // here, before the node is handed out, so a built node always runs.
        store
            .beat(&owner)
            .await
            .context("cannot register this node")?;
        let (fresh_tx, fresh) = tokio::sync::mpsc::channel(
            config.delivery_concurrency.max(1) * crate::delivery::dispatcher::FRESH_ROOM_PER_SLOT,
        );
        let (records_tx, records) =
            tokio::sync::mpsc::channel(crate::delivery::dispatcher::RECORDS_ROOM);
        let handoff = crate::store::writer::Handoff {
            owner: owner.clone(),
            lease: dispatcher.lease,
            poll: dispatcher.poll,
            tx: fresh_tx,
            records,
        };
        let links = std::sync::Arc::new(crate::delivery::links::Links::new(
            store.clone(),
            &config.public_base_url,
            config.console_link_valid_days,
        ));
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let tasks = crate::supervise::Tasks::new();
        Ok(Self {
            listener,
            state: AppState(std::sync::Arc::new(crate::http::SharedState {
                writer: crate::store::writer::Writer::spawn(
                    store.clone(),
                    config.public_base_url.clone(),
                    dispatch.clone(),
                    Some(handoff),
                    &tasks,
                ),
                tasks,
                store,
                known_orgs: Default::default(),
                known_apps: Default::default(),
                known_keys: crate::support::Recent::new(crate::http::auth::KEY_TTL),
                metrics: Metrics::new(),
                admin_key: config.admin_key.as_deref().map(std::sync::Arc::from),
                metrics_token: config.metrics_token.as_deref().map(std::sync::Arc::from),
                dispatch,
                breakers: std::sync::Arc::new(crate::delivery::breaker::Breakers::new(
                    config.breaker_threshold,
                    std::time::Duration::from_millis(config.breaker_first_cooldown_ms),
                    std::time::Duration::from_millis(config.breaker_cooldown_ms),
                    config.delivery_org_share(),
                )),
                delivery_client: crate::delivery::exchange::client(&dispatcher.egress),
                egress: std::sync::Arc::new(dispatcher.egress.clone()),
                console: crate::console::session::Settings::from_config(&config),
                links,
            })),
            config,
            dispatcher,
            owner,
            fresh,
            records: records_tx,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn writer(&self) -> &crate::store::writer::Writer {
        &self.state.writer
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (up to the
    /// configured grace) and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_dispatch, stop_rx) = tokio::sync::watch::channel(false);
        let mut dispatcher_config = self.dispatcher;
        if self.config.console_links {
            dispatcher_config.task_links = Some(self.state.links.clone());
        }
        let dispatcher = crate::delivery::dispatcher::spawn(
            &self.state.tasks,
            self.state.store.clone(),
            self.state.dispatch.clone(),
            dispatcher_config,
            self.state.breakers.clone(),
            self.state.metrics.clone(),
            self.owner.clone(),
            self.fresh,
            self.records,
            stop_rx.clone(),
        );
        let retention = crate::delivery::retention::spawn(
            &self.state.tasks,
            self.state.store.clone(),
            self.config.attempt_body_retention_days,
            stop_rx,
        );
        let router = http::router(self.state.clone(), self.config.body_limit_bytes);
        let addr = self.listener.local_addr().expect("a bound listener");
        tracing::info!(%addr, "listening");
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(());
        });
        let grace = self.config.shutdown_grace();
        let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
        tokio::select! {
            result = &mut server => result.context("HTTP server failed")?,
            _ = async {
                let _ = stopping_rx.await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(?grace, "in-flight requests did not finish within the grace period"),
        }
        // Requests in flight end and their attempts are queued to the writer, which writes
        // them, and every command queued, before it stops. What the grace cuts off comes back
        // when its lease expires (at-least-once).
        let _ = stop_dispatch.send(true);
        if tokio::time::timeout(grace, dispatcher).await.is_err() {
            tracing::warn!(
                ?grace,
                "deliveries still in flight after the grace period; they come back when their leases expire"
            );
        }
        let _ = tokio::time::timeout(grace, retention).await;
        if tokio::time::timeout(grace, self.state.writer.stop())
            .await
            .is_err()
        {
            tracing::warn!(?grace, "the writer did not finish within the grace period");
        }
        // Bounded too: a connection still held elsewhere must not keep the process from
        // stopping (what it held is committed or rolled back by the database when it closes).
        if tokio::time::timeout(grace, self.state.store.close())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "database connections still in use after the grace period; stopping anyway"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
