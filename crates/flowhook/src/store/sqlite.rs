//! SQLite backend: one file, WAL journal, `synchronous=FULL` (every commit fsync'd), foreign
//! keys on, a busy timeout so concurrent writers wait instead of failing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub(super) async fn connect(
    url: &str,
    max_connections: u32,
    connect_timeout: Duration,
) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    super::probe::<sqlx::SqliteConnection>(&options, connect_timeout).await?;
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        // A local file's connection does not go stale: no ping before every use (it was a
        // round trip to the connection's thread per query).
        .test_before_acquire(false)
        .acquire_timeout(connect_timeout)
        .connect_with(options)
        .await
}

pub(super) async fn schema_version(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if exists.is_none() {
        return Ok(0);
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?;
    Ok(version.unwrap_or(0))
}

pub(super) async fn meta(pool: &SqlitePool, key: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM flowhook_meta WHERE key = ?")
        .bind(key)
        .fetch_one(pool)
        .await
}
