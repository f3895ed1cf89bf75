//! Test harness: a fresh database per test (the test kit's [`TestDb`]: a SQLite file in a
//! temporary directory, or a new PostgreSQL database when `FLOWHOOK_TEST_POSTGRES` names a
//! server), Flowhook's configuration for it, and the real application spawned on port 0.

use std::net::SocketAddr;

use flowhook::config::Config;
use flowhook::Application;

use flowhook_testkit::Serving;
pub use flowhook_testkit::{TestDb, POSTGRES_ENV};

/// The longest one check may run: a check that hangs fails with its name instead of holding
/// the whole run until CI's own limit.
pub const CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs `check` within [`CHECK_LIMIT`].
pub async fn bounded(check: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(CHECK_LIMIT, check)
        .await
        .unwrap_or_else(|_| panic!("the check did not finish within {CHECK_LIMIT:?}"))
}

/// Runs one async check on SQLite and, when enabled, on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($check:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            $crate::helpers::bounded($check($crate::helpers::TestDb::sqlite().await)).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            match $crate::helpers::TestDb::postgres().await {
                Some(db) => $crate::helpers::bounded($check(db)).await,
                None => eprintln!(
                    "not run: set {} to run this on PostgreSQL",
                    $crate::helpers::POSTGRES_ENV
                ),
            }
        }
    };
}

/// The master key of the PostgreSQL tests (base64 of 32 bytes; a test value, nothing else).
pub const TEST_MASTER_KEY: &str = "dGVzdC1vbmx5LW1hc3Rlci1rZXktMzItYnl0ZXMtISE=";

/// Flowhook's configuration for a test database: what the test kit's [`TestDb`] cannot know.
pub trait AppConfig {
    /// A configuration for this database, listening on an ephemeral port.
    fn config(&self) -> Config;
}

impl AppConfig for TestDb {
    fn config(&self) -> Config {
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = self.url.clone();
        config.database_max_connections = 4;
        config.shutdown_grace_secs = 5;
        if self.is_postgres() {
            // One key for every PostgreSQL test (a SQLite test's key file is made beside its
            // database, in its temporary directory).
            config.master_key = Some(flowhook::config::Secret(TEST_MASTER_KEY.into()));
        }
        config
    }
}

/// The real application, serving on 127.0.0.1 until stopped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: flowhook::store::Store,
    /// The command writer (its supervision test makes it fail).
    pub writer: flowhook::store::writer::Writer,
    server: Serving<anyhow::Error>,
}

impl TestApp {
    pub async fn spawn(config: Config) -> Self {
        let app = Application::build(config)
            .await
            .expect("the application builds");
        let addr = app.local_addr();
        let store = app.store().clone();
        let writer = app.writer().clone();
        let server = Serving::spawn(|shutdown| app.run_until_stopped(shutdown));
        Self {
            addr,
            client: reqwest::Client::new(),
            store,
            writer,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Stops the server as SIGINT would and waits for it to finish.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// [`TestApp::stop`] in place, for a restart: the caller replaces it. Once stopped, it
    /// does nothing.
    pub async fn shut_down(&mut self) {
        self.server.stop().await;
    }
}
