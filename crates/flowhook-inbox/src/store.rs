//! Persistence of the inbox: receipts (idempotency and arrival order) and the unified task
//! center, on SQLite (default; WAL, `synchronous=FULL`) or PostgreSQL.
//!
//! Every accepted event goes through one writer task that commits in groups: a callback is
//! answered 2xx only after the transaction holding it has committed (fsync'd), and many
//! concurrent callbacks share one fsync. Applying an event is idempotent and order-tolerant:
//! - the receipt (`INSERT … ON CONFLICT DO NOTHING`) decides whether the event is new: it is
//!   not when its natural key, its `sign` or its `X-Flowhook-Event-Id` was seen — keys from
//!   the signed content, so a replay with a new or no event id header is still a duplicate;
//! - `created` fills a task's who/what and keeps an end already recorded; `finished` and
//!   `cancelled` record the end of an open (or not yet seen) task, the first end wins;
//! - `deleted` removes the instance's rows and leaves a tombstone: events arriving later are
//!   receipted but not applied, so nothing resurrects a deleted instance;
//! - items take the event's own time (`modifiedTime`, `createTime`), not the receipt's, so a
//!   backfill keeps the sender's order; an instance's outcome is derived from the records'
//!   `processInstanceStatus` and, failing that, from its tasks (see [`Item::status`]).

use std::str::FromStr;
use std::time::Duration;

use flowhook_sign::event::{CcRecord, TaskEnded, TaskEvent, TaskRecord};
use flowhook_sign::receive::VerifiedEvent;
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Runs the same code on whichever pool the store holds (`$1` placeholders work on both).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("the writer has stopped")]
    WriterGone,
    #[error("the transaction holding this event was rolled back")]
    RolledBack,
}

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens (a SQLite file is created if missing) and migrates.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let timeout = Duration::from_secs(10);
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            Store::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::Connect)?,
            )
        } else {
            let options = PgConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .application_name("flowhook-inbox");
            Store::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::Connect)?,
            )
        };
        match &store {
            Store::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Store::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(store)
    }

    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }
}

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// New, applied to the lists.
    Stored,
    /// Seen before: nothing changed.
    Duplicate,
    /// New, but its instance was deleted: receipted, not applied.
    InstanceDeleted,
}

/// One accepted event, with where it came from.
#[derive(Debug)]
pub struct Accepted {
    pub source: String,
    pub event: VerifiedEvent,
    pub received_at: i64,
}

impl Accepted {
    /// The event's natural key, from signed content only: one event of each kind per task,
    /// cc record or instance of an app — `nat:<kind>:<appType>:<taskId|ccId|formInstId>`.
    /// The unsigned `X-Flowhook-Event-Id` cannot make a replay look new.
    pub fn dedup_key(&self) -> String {
        let kind = self.event.event.kind().short_name();
        let app_type = self.event.event.app_type();
        let item = self.item_id().unwrap_or_else(|| self.form_inst_id());
        format!("nat:{kind}:{app_type}:{item}")
    }

    /// The request's `sign`, lower-case (verifiers ignore its case, so must the key): the same
    /// signed values, even moved across adjacent parameters, give the same sign.
    pub fn sign(&self) -> Option<String> {
        self.event
            .params
            .iter()
            .find(|(k, _)| k == "sign")
            .map(|(_, v)| v.to_ascii_lowercase())
    }

    fn form_inst_id(&self) -> String {
        match &self.event.event {
            TaskEvent::Created(t) => instance_key(t),
            TaskEvent::Cc(c) => instance_key(&c.record),
            TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => e.form_inst_id.clone(),
            TaskEvent::Deleted(d) => d.form_inst_id.clone(),
        }
    }

    fn item_id(&self) -> Option<String> {
        match &self.event.event {
            TaskEvent::Created(t) => Some(task_key(t)),
            TaskEvent::Cc(c) => Some(c.cc_id.clone()),
            TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => Some(e.task_id.clone()),
            TaskEvent::Deleted(_) => None,
        }
    }
}

/// A task's id: `taskId`; a sender that omits it (the seed's example does) gets a stable
/// stand-in from the instance, node and assignee, so a repeat still de-duplicates.
fn task_key(t: &TaskRecord) -> String {
    t.task_id.clone().unwrap_or_else(|| {
        format!(
            "{}~{}~{}",
            instance_key(t),
            t.activity_id.as_deref().unwrap_or_default(),
            t.actioner_id.as_deref().unwrap_or_default()
        )
    })
}

/// The instance as `finished`/`deleted` name it: `formInstanceId` (the process instance id
/// when a sender leaves it out).
fn instance_key(t: &TaskRecord) -> String {
    t.form_instance_id
        .clone()
        .or_else(|| t.process_instance_id.clone())
        .unwrap_or_default()
}

struct Job {
    accepted: Accepted,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The group-commit writer's handle.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

/// Events per transaction at most.
const MAX_BATCH: usize = 256;

impl Writer {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(store: Store) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let task = tokio::spawn(run(store, rx));
        (Writer { tx }, task)
    }

    /// Stores one event; returns once it is committed (or could not be).
    pub async fn store(&self, accepted: Accepted) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { accepted, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut last_arrival = 0i64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = commit(&store, &batch, &mut last_arrival).await;
        match result {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "could not store a batch; senders will retry");
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::RolledBack));
                }
            }
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// One transaction for the whole batch, applied in arrival order.
async fn commit(
    store: &Store,
    batch: &[Job],
    last_arrival: &mut i64,
) -> Result<Vec<Outcome>, sqlx::Error> {
    on_pool!(store, |pool| {
        let mut tx = match store {
            // Only this task writes; IMMEDIATE still takes the lock up front, so another
            // process on the same file (a second inbox by mistake) waits instead of failing.
            Store::Sqlite(_) => pool.begin_with("BEGIN IMMEDIATE").await?,
            Store::Postgres(_) => pool.begin_with("BEGIN").await?,
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut arrival = *last_arrival;
        for job in batch {
            let a = &job.accepted;
            arrival = arrival.max(now_micros() - 1) + 1;
            let app_type = a.event.event.app_type().to_owned();
            let form_inst_id = a.form_inst_id();
            let deleted: Option<i64> = sqlx::query_scalar(
                "SELECT deleted_at FROM deleted_instances WHERE source = $1 AND app_type = $2 AND form_inst_id = $3",
            )
            .bind(&a.source)
            .bind(&app_type)
            .bind(&form_inst_id)
            .fetch_optional(&mut *tx)
            .await?;
            let is_delete = matches!(a.event.event, TaskEvent::Deleted(_));
            let outcome_text = if deleted.is_some() && !is_delete {
                "instance_deleted"
            } else {
                "applied"
            };
            // A duplicate when any key was seen: the natural key, the sign, or the event id
            // (the header is only a hint: it can make nothing new, only recognise a retry).
            let new = sqlx::query(
                "INSERT INTO receipts (source, dedup_key, kind, app_type, form_inst_id, item_id, event_id, seq, \
                 backfill, outcome, received_at, arrival, sign) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&a.source)
            .bind(a.dedup_key())
            .bind(a.event.event.kind().short_name())
            .bind(&app_type)
            .bind(&form_inst_id)
            .bind(a.item_id())
            .bind(&a.event.meta.event_id)
            .bind(a.event.meta.seq.map(|s| s as i64))
            .bind(a.event.meta.backfill)
            .bind(outcome_text)
            .bind(a.received_at)
            .bind(arrival)
            .bind(a.sign())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !new {
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            if outcome_text == "instance_deleted" {
                outcomes.push(Outcome::InstanceDeleted);
                continue;
            }
            let src = a.source.as_str();
            let at = a.received_at;
            match &a.event.event {
                TaskEvent::Created(t) => {
                    upsert_instance(&mut tx, src, t, at).await?;
                    sqlx::query(
                        "INSERT INTO tasks (source, app_type, task_id, form_inst_id, corp_id, process_instance_id, \
                         process_code, title, originator_id, originator_name, user_id, user_name, node_name, url, \
                         status, created_at, item_key) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'open', $15, $16) \
                         ON CONFLICT (source, app_type, task_id) DO UPDATE SET form_inst_id = excluded.form_inst_id, \
                         corp_id = excluded.corp_id, process_instance_id = excluded.process_instance_id, \
                         process_code = excluded.process_code, title = excluded.title, \
                         originator_id = excluded.originator_id, originator_name = excluded.originator_name, \
                         user_id = excluded.user_id, user_name = excluded.user_name, node_name = excluded.node_name, \
                         url = excluded.url, created_at = excluded.created_at",
                    )
                    .bind(src)
                    .bind(&t.app_type)
                    .bind(task_key(t))
                    .bind(instance_key(t))
                    .bind(&t.corp_id)
                    .bind(&t.process_instance_id)
                    .bind(&t.process_code)
                    .bind(&t.title)
                    .bind(&t.originator_id)
                    .bind(&t.originator_display_name)
                    .bind(&t.actioner_id)
                    .bind(&t.actioner_name)
                    .bind(&t.activity_name)
                    .bind(&t.task_url)
                    .bind(event_time(t, at))
                    .bind(item_key(src, &t.app_type, &task_key(t)))
                    .execute(&mut *tx)
                    .await?;
                }
                TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => {
                    let status = if matches!(a.event.event, TaskEvent::Finished(_)) {
                        "finished"
                    } else {
                        "cancelled"
                    };
                    end_task(&mut tx, src, e, status, at).await?;
                }
                TaskEvent::Cc(c) => {
                    upsert_instance(&mut tx, src, &c.record, at).await?;
                    insert_cc(&mut tx, src, c, at).await?;
                }
                TaskEvent::Deleted(d) => {
                    sqlx::query(
                        "INSERT INTO deleted_instances (source, app_type, form_inst_id, deleted_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(src)
                    .bind(&d.app_type)
                    .bind(&d.form_inst_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    for table in ["tasks", "ccs", "instances"] {
                        sqlx::query(&format!(
                            "DELETE FROM {table} WHERE source = $1 AND app_type = $2 AND form_inst_id = $3"
                        ))
                        .bind(src)
                        .bind(&d.app_type)
                        .bind(&d.form_inst_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            outcomes.push(Outcome::Stored);
        }
        tx.commit().await?;
        *last_arrival = arrival;
        Ok(outcomes)
    })
}

fn item_key(source: &str, app_type: &str, id: &str) -> String {
    format!("{source}/{app_type}/{id}")
}

/// Generic over the backend's transaction: the same SQL on both.
async fn upsert_instance<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    source: &str,
    t: &TaskRecord,
    at: i64,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let form_inst_id = instance_key(t);
    sqlx::query(
        "INSERT INTO instances (source, app_type, form_inst_id, corp_id, process_instance_id, process_code, \
         title, originator_id, originator_name, url, created_at, item_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (source, app_type, form_inst_id) DO NOTHING",
    )
    .bind(source.to_owned())
    .bind(t.app_type.clone())
    .bind(form_inst_id.clone())
    .bind(t.corp_id.clone())
    .bind(t.process_instance_id.clone())
    .bind(t.process_code.clone())
    .bind(t.title.clone())
    .bind(t.originator_id.clone())
    .bind(t.originator_display_name.clone())
    .bind(t.task_url.clone())
    .bind(t.create_time.unwrap_or(at))
    .bind(item_key(
        source,
        &t.app_type,
        t.process_instance_id.as_deref().unwrap_or(&form_inst_id),
    ))
    .execute(&mut **tx)
    .await?;
    // The instance's outcome, when the record says it: the newest record (by its
    // `modifiedTime`) wins, so an old one arriving late does not undo a newer outcome.
    if let Some(status) = instance_outcome(t) {
        let status_at = event_time(t, at);
        sqlx::query(
            "UPDATE instances SET status = $4, status_at = $5 \
             WHERE source = $1 AND app_type = $2 AND form_inst_id = $3 \
             AND (status_at IS NULL OR status_at <= $5)",
        )
        .bind(source.to_owned())
        .bind(t.app_type.clone())
        .bind(form_inst_id)
        .bind(status.to_owned())
        .bind(status_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// When the record's event happened: its `modifiedTime` (the instance's last change, which is
/// when this task or cc was made), else when it was received — so a backfill's items keep
/// their own times, and the lists keep the sender's order.
fn event_time(t: &TaskRecord, received_at: i64) -> i64 {
    t.modified_time.unwrap_or(received_at)
}

/// The instance's outcome from a record's `processInstanceStatus` (Yida: `RUNNING`,
/// `COMPLETED`, `TERMINATED`), `processApprovedResult` (`agree`, `disagree`) and, for
/// Flowhook's `TERMINATED`, `processInstanceStatusText` (已撤销: withdrawn).
fn instance_outcome(t: &TaskRecord) -> Option<&'static str> {
    match t.process_instance_status.as_deref()? {
        "RUNNING" => Some("running"),
        "COMPLETED" => Some(match t.process_approved_result.as_deref() {
            Some("agree") => "approved",
            Some("disagree") => "rejected",
            _ => "completed",
        }),
        "TERMINATED" => Some(match t.process_instance_status_text.as_deref() {
            Some("已撤销") => "withdrawn",
            _ => "terminated",
        }),
        _ => None,
    }
}

async fn end_task<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    source: &str,
    e: &TaskEnded,
    status: &str,
    at: i64,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    // Before its created: a row with the end only (no user, so in no list until created).
    sqlx::query(
        "INSERT INTO tasks (source, app_type, task_id, form_inst_id, corp_id, status, created_at, ended_at, \
         ended_by, item_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (source, app_type, task_id) DO UPDATE SET status = excluded.status, \
         ended_at = excluded.ended_at, ended_by = excluded.ended_by WHERE tasks.status = 'open'",
    )
    .bind(source.to_owned())
    .bind(e.app_type.clone())
    .bind(e.task_id.clone())
    .bind(e.form_inst_id.clone())
    .bind(e.corp_id.clone())
    .bind(status.to_owned())
    .bind(at)
    .bind(at)
    .bind(e.actual_work_id.clone())
    .bind(item_key(source, &e.app_type, &e.task_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_cc<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    source: &str,
    c: &CcRecord,
    at: i64,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let t = &c.record;
    sqlx::query(
        "INSERT INTO ccs (source, app_type, cc_id, form_inst_id, corp_id, process_instance_id, process_code, \
         title, originator_id, originator_name, user_id, user_name, url, created_at, item_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (source, app_type, cc_id) DO NOTHING",
    )
    .bind(source.to_owned())
    .bind(t.app_type.clone())
    .bind(c.cc_id.clone())
    .bind(instance_key(t))
    .bind(t.corp_id.clone())
    .bind(t.process_instance_id.clone())
    .bind(t.process_code.clone())
    .bind(t.title.clone())
    .bind(t.originator_id.clone())
    .bind(t.originator_display_name.clone())
    .bind(c.cc_user_id.clone())
    .bind(c.cc_user_name.clone())
    .bind(t.task_url.clone())
    .bind(event_time(t, at))
    .bind(item_key(source, &t.app_type, &c.cc_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The four lists, as Yida's task center has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum List {
    /// Open tasks assigned to me.
    Todo,
    /// Tasks I finished.
    Done,
    /// Cc'd to me.
    Cc,
    /// Instances I started.
    Created,
}

impl List {
    pub const ALL: [List; 4] = [List::Todo, List::Done, List::Cc, List::Created];

    pub fn as_str(self) -> &'static str {
        match self {
            List::Todo => "todo",
            List::Done => "done",
            List::Cc => "cc",
            List::Created => "created",
        }
    }
}

/// One entry of a unified list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The sender (a configured source).
    pub source: String,
    pub app_type: String,
    pub corp_id: Option<String>,
    /// `taskId` (todo, done), `ccId` (cc) or `processInstanceId` (created).
    pub id: String,
    pub process_instance_id: Option<String>,
    pub form_inst_id: String,
    pub process_code: Option<String>,
    pub title: Option<String>,
    pub originator_id: Option<String>,
    pub originator_name: Option<String>,
    /// The node (tasks).
    pub node_name: Option<String>,
    /// Where to act (the approval page).
    pub url: Option<String>,
    /// Tasks: `open` / `finished`; `cc`; instances (`created`): `running`, `approved`,
    /// `rejected`, `withdrawn`, `terminated` (from a record's `processInstanceStatus`), or
    /// `ended` when every task seen has ended and no record said how.
    pub status: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub items: Vec<Item>,
    pub next_cursor: Option<String>,
}

/// The position after the last item shown: `(created_at, item_key)`.
pub fn encode_cursor(created_at: i64, key: &str) -> String {
    format!("{created_at}.{key}")
}

pub fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let (t, key) = cursor.split_once('.')?;
    Some((t.parse().ok()?, key.to_owned()))
}

fn list_sql(list: List) -> String {
    let (select, from, filter) = match list {
        List::Todo | List::Done => (
            "task_id AS id, node_name, status, ended_at",
            "tasks",
            if list == List::Todo {
                "user_id = $1 AND status = 'open'"
            } else {
                "user_id = $1 AND status = 'finished'"
            },
        ),
        List::Cc => (
            "cc_id AS id, NULL AS node_name, 'cc' AS status, NULL AS ended_at",
            "ccs",
            "user_id = $1",
        ),
        // The outcome a record told, else what the tasks tell: one open → running; all ended
        // → `ended` (Yida's finished/cancelled events do not say how the instance ended).
        List::Created => (
            "COALESCE(process_instance_id, form_inst_id) AS id, NULL AS node_name, \
             CASE WHEN instances.status IS NOT NULL AND instances.status <> 'running' THEN instances.status \
             WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.source = instances.source \
               AND t.app_type = instances.app_type AND t.form_inst_id = instances.form_inst_id \
               AND t.status = 'open') THEN 'running' \
             WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.source = instances.source \
               AND t.app_type = instances.app_type AND t.form_inst_id = instances.form_inst_id) THEN 'ended' \
             ELSE 'running' END AS status, NULL AS ended_at",
            "instances",
            "originator_id = $1",
        ),
    };
    format!(
        "SELECT source, app_type, corp_id, {select}, process_instance_id, form_inst_id, process_code, title, \
         originator_id, originator_name, url, created_at, item_key FROM {from} WHERE {filter} \
         AND ($2 IS NULL OR source = $2) \
         AND ($3 IS NULL OR created_at < $3 OR (created_at = $3 AND item_key < $4)) \
         ORDER BY created_at DESC, item_key DESC LIMIT $5"
    )
}

impl Store {
    /// A page of one user's list, newest first, across all sources (or one).
    pub async fn list(
        &self,
        user_id: &str,
        list: List,
        source: Option<&str>,
        cursor: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let sql = list_sql(list);
        let (at, key) = match cursor {
            Some((t, k)) => (Some(t), Some(k)),
            None => (None, None),
        };
        let mut rows: Vec<(Item, String)> = on_pool!(self, |pool| {
            sqlx::query(&sql)
                .bind(user_id)
                .bind(source)
                .bind(at)
                .bind(&key)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| {
                    Ok((
                        Item {
                            source: r.try_get("source")?,
                            app_type: r.try_get("app_type")?,
                            corp_id: r.try_get("corp_id")?,
                            id: r.try_get("id")?,
                            process_instance_id: r.try_get("process_instance_id")?,
                            form_inst_id: r.try_get("form_inst_id")?,
                            process_code: r.try_get("process_code")?,
                            title: r.try_get("title")?,
                            originator_id: r.try_get("originator_id")?,
                            originator_name: r.try_get("originator_name")?,
                            node_name: r.try_get("node_name")?,
                            url: r.try_get("url")?,
                            status: r.try_get("status")?,
                            created_at: r.try_get("created_at")?,
                            ended_at: r.try_get("ended_at")?,
                        },
                        r.try_get("item_key")?,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last()
                .map(|(item, key)| encode_cursor(item.created_at, key))
        } else {
            None
        };
        Ok(Page {
            items: rows.into_iter().map(|(item, _)| item).collect(),
            next_cursor,
        })
    }

    /// How many entries each list holds for a user.
    pub async fn counts(&self, user_id: &str) -> Result<Vec<(List, i64)>, StoreError> {
        let mut out = Vec::new();
        for list in List::ALL {
            let sql = match list {
                List::Todo => "SELECT COUNT(*) FROM tasks WHERE user_id = $1 AND status = 'open'",
                List::Done => {
                    "SELECT COUNT(*) FROM tasks WHERE user_id = $1 AND status = 'finished'"
                }
                List::Cc => "SELECT COUNT(*) FROM ccs WHERE user_id = $1",
                List::Created => "SELECT COUNT(*) FROM instances WHERE originator_id = $1",
            };
            let n: i64 = on_pool!(self, |pool| sqlx::query_scalar(sql)
                .bind(user_id)
                .fetch_one(pool)
                .await?);
            out.push((list, n));
        }
        Ok(out)
    }
}
