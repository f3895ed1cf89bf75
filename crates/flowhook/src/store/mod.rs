//! Persistence: one [`Store`] over SQLite (embedded default, one node) or PostgreSQL (many
//! nodes), with each backend's SQL and migrations kept in its own module and directory.
//!
//! Durability is not negotiable: SQLite runs in WAL mode with `synchronous=FULL`, so a commit is
//! on disk before it is acknowledged; PostgreSQL keeps its own `fsync`/`synchronous_commit`.
//! Throughput will come from group commit, never from relaxing either.
//!
//! Migrations are applied at start (and by `flowhook migrate`); a database whose schema is newer
//! than this binary knows is refused rather than written to.

pub mod attempts;
pub mod checks;
pub mod claims;
pub mod connectors;
pub mod console;
pub mod deliveries;
pub mod directory;
pub mod ids;
pub mod ingest;
pub mod jobs;
pub mod nodes;
mod postgres;
pub mod processes;
pub mod secrets;
mod sqlite;
pub mod taskcenter;
pub mod writer;

/// Runs the same code against whichever pool the store holds: SQL shared by both backends is
/// written once (`$1` placeholders work on both), type-checked for each.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Begins a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
/// SQLITE_BUSY_SNAPSHOT if another connection committed in between, where this one waits its
/// turn (busy timeout). PostgreSQL's plain `BEGIN` has no such trap.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
           + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// The in-process write gate of a SQLite database (`None` for PostgreSQL).
///
/// SQLite admits one writer at a time; a second one waits in SQLite's busy handler, which sleeps
/// in steps of up to 100 ms — the tail latency of every writer. The hot writers (the command
/// writer, the dispatcher's claims, the attempt recorder) take this async mutex first, so they
/// queue in memory and start the moment the lock is free. It orders nothing: SQLite's own lock
/// still guarantees correctness, and other processes still wait in the busy handler.
pub async fn write_gate(store: &Store) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static GATES: OnceLock<Mutex<HashMap<std::path::PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        OnceLock::new();
    let Store::Sqlite(pool) = store else {
        return None;
    };
    let file = pool.connect_options().get_filename().to_path_buf();
    let gate = GATES
        .get_or_init(Mutex::default)
        .lock()
        .expect("gate map lock")
        .entry(file)
        .or_default()
        .clone();
    Some(gate.lock_owned().await)
}

/// The PostgreSQL channel on which nodes announce deliveries to claim.
pub const DELIVERIES_CHANNEL: &str = "flowhook_deliveries";

impl Store {
    /// Tells the other nodes there are deliveries to claim (PostgreSQL `NOTIFY`; one SQLite file
    /// has one node, whose dispatcher is woken in process).
    pub async fn notify_deliveries(&self) -> Result<(), StoreError> {
        if let Store::Postgres(pool) = self {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(DELIVERIES_CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }
}

/// Pushes ` IN (a, b, …)`, each id a bind: the id list of a multi-row lookup or update
/// (either backend).
pub(crate) fn push_in_list<'a, DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    ids: impl IntoIterator<Item = &'a str>,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(" IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    q.push(")");
}

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{PgPool, SqlitePool};

use crate::config::{database_kind, redact_url, DatabaseKind};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Storage errors. Messages never contain a database password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL: {0}")]
    BadUrl(String),
    #[error("cannot open the database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the database schema is at version {database}, newer than this Flowhook knows ({known}); \
         run a Flowhook of that version or newer"
    )]
    SchemaTooNew { database: i64, known: i64 },
    #[error("migration failed")]
    Migrate(#[from] MigrateError),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The change would break a rule of the stored data (e.g. a cycle of managers): the
    /// caller's mistake, said in words the caller understands.
    #[error("{0}")]
    Invalid(String),
    /// A secret that cannot be opened (wrong master key, altered or moved value), or a
    /// master key that cannot be used: never worked around, always named.
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("no master key is open for this database (the application opens it at start)")]
    NoMasterKey,
}

/// An event kind is stored as its type (`task.created`, …): any other text is corrupt data.
impl From<flowhook_sign::event::UnknownEventKind> for StoreError {
    fn from(e: flowhook_sign::event::UnknownEventKind) -> Self {
        StoreError::Corrupt(format!("stored event kind: {e}"))
    }
}

impl StoreError {
    /// Why the database cannot answer right now, when that is what this error says: an outage
    /// to retry later (503), not a fault of the request or of the stored data (500).
    pub fn outage(&self) -> Option<&'static str> {
        match self {
            StoreError::Sql(e) | StoreError::Connect { source: e, .. } => outage(e),
            _ => None,
        }
    }
}

/// [`outage`] of an error of any type: a [`StoreError`] or a driver error (`None` for others).
pub fn outage_of(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(s) = e.downcast_ref::<StoreError>() {
        s.outage()
    } else {
        e.downcast_ref::<sqlx::Error>().and_then(outage)
    }
}

/// Why the database cannot answer right now, when `e` says it is out of reach: a fixed phrase,
/// never the driver's text (which may name hosts or files).
pub fn outage(e: &sqlx::Error) -> Option<&'static str> {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) => Some("cannot reach the database"),
        E::PoolTimedOut => Some("timed out waiting for a database connection"),
        E::PoolClosed | E::WorkerCrashed => Some("the database connection pool is closed"),
        E::Database(db) => {
            let code = db.code()?;
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite: the primary result code is the low byte of the extended one.
                return match code.parse::<i32>().ok()? & 0xff {
                    5 | 6 => Some("the database is busy"),
                    8 => Some("the database file is read-only"),
                    10 => Some("the database file cannot be read or written"),
                    13 => Some("the database disk is full"),
                    14 => Some("the database file cannot be opened"),
                    _ => None,
                };
            }
            // PostgreSQL SQLSTATE: connection exceptions, shutdown, too many connections, disk full.
            match code.as_ref() {
                c if c.starts_with("08") => Some("cannot reach the database"),
                "57P01" | "57P02" | "57P03" => {
                    Some("the database is shutting down or not accepting connections")
                }
                "53300" => Some("the database has too many connections"),
                "53100" => Some("the database disk is full"),
                "3D000" => Some("the database does not exist"),
                // A database that is not accepting connections (ALLOW_CONNECTIONS false).
                "55000" => Some("the database is not accepting connections"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Turns a unique violation into [`StoreError::Conflict`] naming `what`.
pub(crate) fn conflict_on_unique(e: sqlx::Error, what: impl Into<String>) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what.into()),
        _ => StoreError::Sql(e),
    }
}

/// Opens one connection first, so an unreachable database fails at once with its real cause
/// (a pool would retry until its timeout and report only "timed out").
async fn probe<C: sqlx::Connection>(
    options: &C::Options,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    let conn = tokio::time::timeout(timeout, C::connect_with(options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    conn.close().await
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub before: i64,
    pub after: i64,
}

/// The database, whichever backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens a pool; a SQLite file is created if missing. Does not migrate.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let kind = database_kind(url).map_err(StoreError::BadUrl)?;
        let connect_err = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        Ok(match kind {
            DatabaseKind::Sqlite => Store::Sqlite(
                sqlite::connect(url, max_connections, connect_timeout)
                    .await
                    .map_err(connect_err)?,
            ),
            DatabaseKind::Postgres => Store::Postgres(
                postgres::connect(url, max_connections, connect_timeout)
                    .await
                    .map_err(connect_err)?,
            ),
        })
    }

    /// Opens the database the configuration names (`database_url`, its pool size and
    /// connect timeout).
    pub async fn from_config(config: &crate::config::Config) -> Result<Store, StoreError> {
        Store::connect(
            &config.database_url,
            config.database_max_connections,
            config.database_connect_timeout(),
        )
        .await
    }

    pub fn kind(&self) -> DatabaseKind {
        match self {
            Store::Sqlite(_) => DatabaseKind::Sqlite,
            Store::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self {
            Store::Sqlite(_) => &SQLITE_MIGRATIONS,
            Store::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// The newest schema version this binary carries.
    pub fn known_schema_version(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The newest schema version applied to the database (0 for an empty database).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(match self {
            Store::Sqlite(pool) => sqlite::schema_version(pool).await?,
            Store::Postgres(pool) => postgres::schema_version(pool).await?,
        })
    }

    /// Refuses a database whose schema is newer than this binary knows.
    pub async fn check_schema_not_newer(&self) -> Result<i64, StoreError> {
        let database = self.schema_version().await?;
        let known = self.known_schema_version();
        if database > known {
            return Err(StoreError::SchemaTooNew { database, known });
        }
        Ok(database)
    }

    /// Applies every pending migration (PostgreSQL: under an advisory lock, so nodes starting
    /// together do not race).
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let before = self.check_schema_not_newer().await?;
        match self {
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        let after = self.schema_version().await?;
        Ok(MigrationReport { before, after })
    }

    /// Applies the migrations up to `version` only: an upgrade test builds a database as an
    /// older Flowhook left it, writes rows the way that version did, then [`Store::migrate`]s.
    pub async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        let all = self.migrator();
        let older = Migrator {
            migrations: std::borrow::Cow::Owned(
                all.iter()
                    .filter(|m| m.version <= version)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        match self {
            Store::Sqlite(pool) => older.run(pool).await?,
            Store::Postgres(pool) => older.run(pool).await?,
        }
        Ok(())
    }

    /// The id created with the schema; the same across restarts and nodes.
    pub async fn installation_id(&self) -> Result<String, StoreError> {
        Ok(match self {
            Store::Sqlite(pool) => sqlite::meta(pool, "installation_id").await?,
            Store::Postgres(pool) => postgres::meta(pool, "installation_id").await?,
        })
    }

    /// Closes the pool, waiting for connections to be returned (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }
}
