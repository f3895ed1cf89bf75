//! Build and run: opens and migrates the store, starts the group-commit writer, binds the
//! listener (port 0 works, for tests) and serves until the shutdown signal; then stops taking
//! requests, lets the writer commit what it holds, and closes the pool.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{router, AppState};
use crate::store::{Store, Writer};

pub struct Application {
    listener: TcpListener,
    store: Store,
    writer: Writer,
    writer_task: tokio::task::JoinHandle<()>,
    config: Config,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::open(&config.database_url, config.database_max_connections)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (writer, writer_task) = Writer::start(store.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        Ok(Self {
            listener,
            store,
            writer,
            writer_task,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let state = AppState::new(&self.config, self.store.clone(), self.writer.clone());
        let app = router(state, self.config.body_limit_bytes);
        tracing::info!(addr = %addr, sources = self.config.sources.len(), "listening");
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        // The router (and its writer handles) is gone: the writer drains and ends.
        drop(self.writer);
        let _ = self.writer_task.await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
