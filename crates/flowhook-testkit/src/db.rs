//! A fresh database per test: a SQLite file in a temporary directory, always; a new database on
//! the PostgreSQL server named by [`POSTGRES_ENV`] when that variable is set. Each is removed
//! when its [`TestDb`] is dropped, so tests never see each other's rows.
//!
//! Unset, the PostgreSQL runs are skipped (the caller says so); set but unusable, they fail: a
//! misbehaving server must fail the run, not silently skip it.

use sqlx::Connection;

/// The variable that enables the PostgreSQL runs: a URL of a server where databases may be
/// created, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_ENV: &str = "FLOWHOOK_TEST_POSTGRES";

/// A database of its own for one test; dropped with it.
pub struct TestDb {
    /// The URL the application under test is given (`sqlite://…` or `postgres://…`).
    pub url: String,
    /// The SQLite file's directory, kept alive as long as the database is used.
    _dir: Option<tempfile::TempDir>,
    /// On PostgreSQL, the server's admin URL and this test's database name: what `Drop` needs
    /// to remove the database.
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite database file in a new temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh database on the server named by [`POSTGRES_ENV`]; `None` when unset.
    /// Panics when set but unusable.
    pub async fn postgres() -> Option<Self> {
        let admin = std::env::var(POSTGRES_ENV).ok()?;
        let name = format!("flowhook_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin} is set but unusable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin)
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        Some(Self {
            url: url.to_string(),
            _dir: None,
            postgres: Some((admin, name)),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// On PostgreSQL, the server's admin URL and this test's database name.
    pub fn postgres_admin(&self) -> Option<(&str, &str)> {
        self.postgres
            .as_ref()
            .map(|(a, n)| (a.as_str(), n.as_str()))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop is synchronous and may run inside a runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
