//! SQLite backend: one file, WAL journal, `synchronous=FULL` (every commit fsync'd), foreign
//! keys on, a busy timeout so concurrent writers wait instead of failing, and the WAL
//! checkpointed by a background task instead of inside whichever commit crosses SQLite's
//! threshold.

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
        .busy_timeout(Duration::from_secs(10))
        // No automatic checkpoint: see `checkpoint_in_background`.
        .pragma("wal_autocheckpoint", "0");
    super::probe::<sqlx::SqliteConnection>(&options, connect_timeout).await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        // A local file's connection does not go stale: no ping before every use (it was a
        // round trip to the connection's thread per query).
        .test_before_acquire(false)
        .acquire_timeout(connect_timeout)
        .connect_with(options)
        .await?;
    tokio::spawn(checkpoint_in_background(pool.clone()));
    Ok(pool)
}

/// How often the WAL is checkpointed while it grows; idle, it is looked at once a second.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(100);
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);
/// Frames (pages) in the WAL beyond which it is brought back to its start (16 MiB of 4 KiB pages).
const RESTART_FRAMES: i64 = 4096;

/// Copies the WAL's committed pages into the database file, until the pool is closed (its last
/// connection then checkpoints one last time, as SQLite always does).
///
/// SQLite's automatic checkpoint (once the WAL holds 1,000 pages) runs inside the commit that
/// crosses the threshold — under load, the command writer's, where it took an eighth of the
/// database time, serial with every command. Here it runs beside the writer, on another
/// connection and core: `PASSIVE` neither waits for nor blocks readers or the writer.
///
/// A WAL that is written to all the time is never wholly checkpointed, and SQLite starts it over
/// only when it is. So once it holds [`RESTART_FRAMES`], the checkpointer takes the write gate
/// (the writer pauses between two batches), copies the few frames committed since its last pass,
/// and lets go: the next commit starts the WAL from the beginning. Without this the file grew
/// without bound under load (590 MB after 8 s of the delivery benchmark).
///
/// Durability does not depend on any of this: a commit is durable once its WAL frames are
/// fsync'd.
async fn checkpoint_in_background(pool: SqlitePool) {
    let store = super::Store::Sqlite(pool.clone());
    let checkpoint = || async {
        // (busy, frames in the WAL, frames checkpointed)
        sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
    };
    let mut last = (-1, -1);
    loop {
        if pool.is_closed() {
            return;
        }
        let mut result = checkpoint().await;
        if let Ok((_, log, _)) = result {
            if log >= RESTART_FRAMES {
                let _gate = super::write_gate(&store).await;
                result = checkpoint().await;
            }
        }
        let pause = match result {
            Ok((_, log, done)) => {
                let moved = (log, done) != last;
                last = (log, done);
                if moved {
                    CHECKPOINT_BUSY
                } else {
                    CHECKPOINT_IDLE
                }
            }
            Err(_) if pool.is_closed() => return,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                CHECKPOINT_IDLE
            }
        };
        tokio::time::sleep(pause).await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use flowhook_testkit::eventually;
    use std::time::Instant;

    async fn open(dir: &tempfile::TempDir) -> SqlitePool {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = connect(&url, 4, Duration::from_secs(10)).await.unwrap();
        sqlx::query("CREATE TABLE blobs (b BLOB NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    /// One committed transaction of `bytes`, through the write gate like the service's writers.
    async fn write(pool: &SqlitePool, bytes: usize) {
        let _gate = crate::store::write_gate(&crate::store::Store::Sqlite(pool.clone())).await;
        sqlx::query("INSERT INTO blobs (b) VALUES (?)")
            .bind(vec![7u8; bytes])
            .execute(pool)
            .await
            .unwrap();
    }

    fn size(path: std::path::PathBuf) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn committed_pages_reach_the_database_file_without_a_commit_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(&dir).await;
        // 1 MiB: under SQLite's automatic threshold (1,000 pages), which is off here anyway.
        write(&pool, 1 << 20).await;
        let within = Duration::from_secs(10);
        eventually("1 MiB in the database file", within, async || {
            let bytes = size(dir.path().join("t.db"));
            if bytes >= 1 << 20 {
                Ok(())
            } else {
                Err(bytes)
            }
        })
        .await;
        pool.close().await;
    }

    #[tokio::test]
    async fn the_wal_starts_over_under_continuous_writes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(&dir).await;
        let wal = dir.path().join("t.db-wal");
        let limit = RESTART_FRAMES as u64 * 4096;
        // Six times the restart threshold, written without a pause, in 64 KiB commits.
        let chunk = 64 << 10;
        let commits = 6 * limit as usize / chunk;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut largest = 0;
        for _ in 0..commits {
            write(&pool, chunk).await;
            largest = largest.max(size(wal.clone()));
            assert!(Instant::now() < deadline, "writing took over 120 s");
            tokio::task::yield_now().await;
        }
        // Without the gated pass it grows with every write (6 × the limit); with it, it holds
        // the limit and what is written between two passes.
        assert!(
            largest < 3 * limit,
            "the WAL grew to {largest} bytes (restart threshold {limit})"
        );
        pool.close().await;
    }
}
