//! The command writer: every state-changing command goes through here, and is acknowledged only
//! after the transaction that holds its new state, its task rows and its outbox events commits.
//!
//! Group commit: one task takes queued commands, ingest calls (`store::ingest`) and the
//! dispatcher's attempt records in batches (up to [`MAX_BATCH`] of each) and runs each batch in
//! ONE transaction (on PostgreSQL often one statement, a transaction by itself) — one fsync for
//! many commands, durability untouched. A command the engine refuses (or an ingest call refused)
//! writes nothing and does not disturb its batch; if the database fails mid-batch, the batch is
//! rolled back and its commands and calls are retried one transaction each, so one bad command
//! cannot fail its neighbours.
//!
//! Serialisation: within a node the writer is the only writer, so commands on one instance
//! apply in order; across PostgreSQL nodes the instance row is locked (`FOR UPDATE`) for the
//! transaction. A lost update is impossible either way: the loser sees the new state and gets
//! a conflict from the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::Row;
use tokio::sync::{mpsc, oneshot, watch};

use super::attempts::Records;
use super::claims::DeliveryEvent;
use super::deliveries::{DeliveryId, DeliveryStatus};
use super::ingest::{IngestCall, IngestError, Ingested};
use super::{Store, StoreError};
use crate::engine::definition::Definition;
use crate::engine::ids::InstanceId;
use crate::engine::machine::{self, Cc, Command, DataMap, Event, EventKind, Instance, Start, Task};
use crate::engine::resolve::DirectorySnapshot;
use crate::engine::EngineError;
use crate::integration::connectors::Strategy;
use crate::integration::render::{render, stored_params, RenderContext};
use crate::support::{new_id, now_ms};

/// Most commands in one transaction.
pub const MAX_BATCH: usize = 256;

/// Most attempt records in one transaction.
const MAX_RECORDS: usize = 1024;

/// How often an ingest call that lost a race for a `seq` or an event id (PostgreSQL: two
/// nodes storing events of one instance at once) is tried again.
const RACE_RETRIES: usize = 5;

/// A state change to make.
#[derive(Debug, Clone)]
pub enum Op {
    Start {
        corp_id: String,
        process_code: String,
        actor: String,
        title: String,
        form_data: DataMap,
    },
    Act {
        corp_id: String,
        instance_id: InstanceId,
        actor: String,
        command: Command,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the writer has stopped")]
    Stopped,
    /// The command broke an invariant of the writer (a bug, logged with its panic): nothing of
    /// it was written, and the commands batched with it were applied alone.
    #[error("the command could not be applied: an internal error (logged); nothing was written")]
    Internal,
}

/// A stored event, as a command's outcome, an ingest and an instance's timeline read it (the
/// API shows it as `http::instances::StoredEvent`).
///
/// Not one type with [`DeliveryEvent`], the event as a delivery's request needs it: the two
/// share only `kind` and `seq`. As one type, the timeline would read every event's `params`
/// (its whole Yida payload), `app_type` and `source_event_id`, and each claim would read
/// `id`, `task_id` and `created_at`, which no request sends; or the type would hold `Option`s
/// that each reader leaves empty.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: String,
    pub seq: i64,
    pub kind: flowhook_sign::event::EventKind,
    pub task_id: Option<String>,
    pub created_at: i64,
}

/// The result of a command: the instance after it, and the events it produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub instance: Instance,
    pub events: Vec<StoredEvent>,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
}

/// An ingest call (`store::ingest`), committed in the writer's batches like a command.
struct IngestJob {
    call: IngestCall,
    reply: IngestReply,
}

/// Where an ingest call's result goes.
type IngestReply = oneshot::Sender<Result<Vec<Ingested>, IngestError>>;

/// Parsed definitions (immutable per version) and directory snapshots (per version).
#[derive(Default)]
struct Caches {
    definitions: Mutex<HashMap<(String, String, i64), Arc<Definition>>>,
    directories: Mutex<HashMap<String, (i64, Arc<DirectorySnapshot>)>>,
}

/// Parsed definitions the writer keeps at most: past it the cache starts over (a definition is
/// immutable, read again when next used), so no organisation publishing version after version
/// grows the node's memory.
const DEFINITIONS_ROOM: usize = 1_024;

/// A delivery committed already leased to this node's dispatcher, with everything needed to
/// send it: the fresh path skips the claim transaction and the event read.
#[derive(Debug, Clone)]
pub struct FreshDelivery {
    pub id: DeliveryId,
    pub corp_id: String,
    pub event_id: String,
    pub action_id: String,
    pub instance_id: InstanceId,
    pub ordered: bool,
    pub created_at: i64,
    /// Its event, as a claim would have read it.
    pub event: DeliveryEvent,
}

/// Where the writer hands fresh deliveries: the local dispatcher, as lease owner `owner`.
///
/// Only the head of an instance's lane (no earlier pending delivery) is handed over, and only
/// as many as the channel has room for; the rest are left for the dispatcher's claims. A
/// handed-over delivery is leased in the same transaction that creates it, so a crash before it
/// is sent only delays it until the lease expires.
pub struct Handoff {
    pub owner: String,
    pub lease: std::time::Duration,
    /// The dispatcher's longest sleep: a recorded delivery due later than this from now is
    /// found by its poll, and wakes nobody.
    pub poll: std::time::Duration,
    pub tx: mpsc::Sender<FreshDelivery>,
    /// The dispatcher's attempt records, written in the writer's own transactions: a batch of
    /// commands and the attempts finished meanwhile share one commit (one fsync).
    pub records: mpsc::Receiver<super::attempts::Record>,
}

/// Where the writer sends fresh deliveries (the rest of [`Handoff`]).
struct FreshLink {
    owner: String,
    lease: std::time::Duration,
    poll: std::time::Duration,
    tx: mpsc::Sender<FreshDelivery>,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    ingests: mpsc::Sender<IngestJob>,
    stop: Arc<watch::Sender<bool>>,
    /// The supervised task, taken by [`Writer::stop`].
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    faults: mpsc::Sender<()>,
}

/// What the writer takes work from. It outlives a run of the writer: after a panic the run
/// starts again on the same channels (`supervise`), and nothing queued is lost.
struct Inputs {
    jobs: Option<mpsc::Receiver<Job>>,
    ingests: Option<mpsc::Receiver<IngestJob>>,
    records: Option<mpsc::Receiver<super::attempts::Record>>,
    stop: watch::Receiver<bool>,
    /// [`Writer::crash_for_test`].
    faults: mpsc::Receiver<()>,
}

impl Inputs {
    /// Takes nothing new; what is queued is still received, then each channel ends.
    fn close(&mut self) {
        if let Some(r) = self.jobs.as_mut() {
            r.close();
        }
        if let Some(r) = self.ingests.as_mut() {
            r.close();
        }
        if let Some(r) = self.records.as_mut() {
            r.close();
        }
    }
}

impl Writer {
    /// Starts the writer as the supervised task `writer` of `tasks`; it stops when every handle
    /// is dropped, or at [`Writer::stop`].
    pub fn spawn(
        store: Store,
        public_base_url: String,
        dispatch: Arc<tokio::sync::Notify>,
        handoff: Option<Handoff>,
        tasks: &Arc<crate::supervise::Tasks>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let (ingests, ingest_rx) = mpsc::channel(4 * MAX_BATCH);
        let (stop, stop_rx) = watch::channel(false);
        let (faults, faults_rx) = mpsc::channel(1);
        let (handoff, records) = match handoff {
            Some(h) => (
                Some(FreshLink {
                    owner: h.owner,
                    lease: h.lease,
                    poll: h.poll,
                    tx: h.tx,
                }),
                Some(h.records),
            ),
            None => (None, None),
        };
        let worker = Arc::new(Worker {
            store,
            caches: Caches::default(),
            public_base_url,
            dispatch,
            handoff,
            carried: Mutex::new(None),
        });
        let inputs = Arc::new(tokio::sync::Mutex::new(Inputs {
            jobs: Some(rx),
            ingests: Some(ingest_rx),
            records,
            stop: stop_rx,
            faults: faults_rx,
        }));
        let task = crate::supervise::supervise(tasks, "writer", move || {
            let (worker, inputs) = (worker.clone(), inputs.clone());
            async move { worker.run(&mut *inputs.lock().await).await }
        });
        Self {
            jobs,
            ingests,
            stop: Arc::new(stop),
            task: Arc::new(Mutex::new(Some(task))),
            faults,
        }
    }

    /// Stops taking commands, writes what is queued (commands, ingest calls, attempt records),
    /// and returns when the writer has ended. Callers bound it with the shutdown grace.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Makes the writer's task panic between two batches, as a broken invariant would: for the
    /// test of its supervision (`/readyz` names it while it restarts; nothing queued is lost).
    #[doc(hidden)]
    pub async fn crash_for_test(&self) {
        let _ = self.faults.send(()).await;
    }

    /// Stores an ingest call (all its events or none); returns once it is durably committed
    /// (or refused).
    pub async fn ingest(&self, call: IngestCall) -> Result<Vec<Ingested>, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.ingests
            .send(IngestJob { call, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }

    /// Applies `op`; returns once it is durably committed (or refused).
    pub async fn submit(&self, op: Op) -> Result<Outcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

struct Worker {
    store: Store,
    caches: Caches,
    public_base_url: String,
    /// Woken after a commit that created deliveries it must claim.
    dispatch: Arc<tokio::sync::Notify>,
    /// The local dispatcher's inbox for fresh deliveries (none: everything goes through claims).
    handoff: Option<FreshLink>,
    /// SQLite: the last batches' reads of [`Self::prefetch`], reused while nothing changed.
    carried: Mutex<Option<Carried>>,
}

/// Reads carried from batch to batch: taken at `generation` of
/// [`crate::support::settings_generation`], read at `at`.
struct Carried {
    generation: u64,
    at: std::time::Instant,
    reads: BatchContext,
}

/// The longest a carried read is used, even with no change announced in this process.
const CARRY_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer's own connection.
enum Conn {
    /// Not pooled: dropped after an error, it closes, which rolls back what was open.
    Sqlite(Box<sqlx::SqliteConnection>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            Conn::Sqlite($c) => $body,
            Conn::Postgres($c) => $body,
        }
    };
}

/// Commands plus records up to which a batch's statements are kept prepared (see `batch`).
const RECURRING_BATCH: usize = 4;

/// Rows per multi-row statement (well under both backends' bind-parameter limits).
const CHUNK: usize = 500;

/// The write statements of one batch. On SQLite they are joined into one multi-statement
/// execution: one round trip to the connection's thread instead of one per statement (each
/// costs two thread wake-ups, which on a loaded machine is most of a small statement's time).
/// PostgreSQL prepares one statement at a time; there the inserts (and the update of delivered
/// deliveries) become the data-modifying `WITH` parts of one statement — one round trip, and
/// foreign keys are checked at its end — and the rest stay separate statements after it.
struct Statements<'args, DB: sqlx::Database> {
    joined: bool,
    builders: Vec<sqlx::QueryBuilder<'args, DB>>,
    /// PostgreSQL: the builder holding the open `WITH`, and how many parts it has.
    with: Option<(usize, usize)>,
}

impl<'args, DB: sqlx::Database> Statements<'args, DB> {
    fn new(joined: bool) -> Self {
        Self {
            joined,
            builders: Vec::new(),
            with: None,
        }
    }

    /// Starts the next statement as a part of the batch's one `WITH` statement (PostgreSQL;
    /// on SQLite like [`Self::start`]). Only for writes that see no other part's effect: the
    /// parts share one snapshot.
    fn start_with(&mut self, sql: &str) -> &mut sqlx::QueryBuilder<'args, DB> {
        if self.joined {
            return self.start(sql);
        }
        let i = match self.with {
            Some((i, n)) => {
                self.builders[i]
                    .push(format_args!("), w{n} AS ("))
                    .push(sql);
                self.with = Some((i, n + 1));
                i
            }
            None => {
                self.builders
                    .push(sqlx::QueryBuilder::new(format!("WITH w0 AS ({sql}")));
                self.with = Some((self.builders.len() - 1, 1));
                self.builders.len() - 1
            }
        };
        &mut self.builders[i]
    }

    /// Ends the `WITH` part list, if any, leaving its main statement to the caller: the index
    /// of its builder and the builder. Call before running the statements.
    fn close_open(&mut self) -> Option<(usize, &mut sqlx::QueryBuilder<'args, DB>)> {
        let (i, _) = self.with.take()?;
        self.builders[i].push(") ");
        Some((i, &mut self.builders[i]))
    }

    /// Starts the next statement with `sql`; binds and SQL pushed to the builder follow it.
    fn start(&mut self, sql: &str) -> &mut sqlx::QueryBuilder<'args, DB> {
        match self.builders.last_mut() {
            Some(b) if self.joined => {
                b.push("; ").push(sql);
            }
            _ => self.builders.push(sqlx::QueryBuilder::new(sql)),
        }
        self.builders.last_mut().expect("just pushed")
    }
}

/// How the writer opens a batch's transaction on each backend.
///
/// SQLite: the transaction opens and commits inside the batch's one statement script
/// (`BEGIN IMMEDIATE; …; COMMIT`), so a whole batch is one round trip to the connection's
/// thread. The reads before it (instance states, waiting lanes) need no transaction of their
/// own: under the write gate nothing else in this process writes. A script that fails leaves
/// its transaction open on the writer's own (unpooled) connection, which is then dropped —
/// closing it rolls the transaction back.
///
/// PostgreSQL: a transaction around the whole batch, instance rows locked `FOR UPDATE`
/// against other nodes — opened only when needed ([`PgBatch`]): a batch that starts instances
/// and records delivered attempts is one statement, which is a transaction by itself.
trait Open {
    type Tx<'c>: std::ops::DerefMut<Target = Self> + Finish
    where
        Self: 'c;
    async fn open(&mut self) -> Result<Self::Tx<'_>, sqlx::Error>;
}

/// Starts and ends a batch's transaction (see [`Open`]).
trait Finish {
    /// From here on, everything runs in one transaction (idempotent).
    async fn begin_now(&mut self) -> Result<(), sqlx::Error>;
    async fn finish(self) -> Result<(), sqlx::Error>;
}

impl Open for sqlx::SqliteConnection {
    type Tx<'c> = &'c mut sqlx::SqliteConnection;
    async fn open(&mut self) -> Result<Self::Tx<'_>, sqlx::Error> {
        Ok(self)
    }
}

impl Finish for &mut sqlx::SqliteConnection {
    async fn begin_now(&mut self) -> Result<(), sqlx::Error> {
        Ok(()) // the script opens its own transaction
    }

    async fn finish(self) -> Result<(), sqlx::Error> {
        Ok(()) // committed by the script's own COMMIT
    }
}

impl Open for sqlx::PgConnection {
    type Tx<'c> = PgBatch<'c>;
    async fn open(&mut self) -> Result<Self::Tx<'_>, sqlx::Error> {
        Ok(PgBatch::Idle(self))
    }
}

/// A PostgreSQL batch: no transaction until one is needed (instances to lock, or more than one
/// statement to run) — a batch of one statement commits by itself, two round trips
/// (`BEGIN`, `COMMIT`) fewer, each a wake-up of the server and of this task.
enum PgBatch<'c> {
    Idle(&'c mut sqlx::PgConnection),
    Open(sqlx::Transaction<'c, sqlx::Postgres>),
    /// Only between the two above, or after a failed `BEGIN` (the batch then fails).
    Gone,
}

impl std::ops::Deref for PgBatch<'_> {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &Self::Target {
        match self {
            PgBatch::Idle(c) => c,
            PgBatch::Open(t) => t,
            PgBatch::Gone => unreachable!("used after a failed BEGIN"),
        }
    }
}

impl std::ops::DerefMut for PgBatch<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            PgBatch::Idle(c) => c,
            PgBatch::Open(t) => t,
            PgBatch::Gone => unreachable!("used after a failed BEGIN"),
        }
    }
}

impl Finish for PgBatch<'_> {
    async fn begin_now(&mut self) -> Result<(), sqlx::Error> {
        if let PgBatch::Idle(_) = self {
            let PgBatch::Idle(c) = std::mem::replace(self, PgBatch::Gone) else {
                unreachable!()
            };
            *self = PgBatch::Open(sqlx::Connection::begin(c).await?);
        }
        Ok(())
    }

    async fn finish(self) -> Result<(), sqlx::Error> {
        match self {
            PgBatch::Open(t) => t.commit().await,
            _ => Ok(()),
        }
    }
}

/// What one command will write, computed before touching the database.
struct Change {
    instance: Instance,
    events: Vec<(StoredEvent, Event, String)>,
    /// Started by this command: no delivery of it can be waiting already.
    started: bool,
}

/// Reads shared by the commands of one batch.
#[derive(Default, Clone)]
struct BatchContext {
    /// (corp, process code) → latest (version, app type).
    latest: HashMap<(String, String), Option<(i64, String)>>,
    /// Organisations whose directory version was checked in this batch.
    directories: HashMap<String, Arc<DirectorySnapshot>>,
    /// Each organisation's sync strategy, read once a batch.
    strategies: HashMap<String, Option<Strategy>>,
}

/// A delivery to create with its event.
struct NewDelivery<'a> {
    id: DeliveryId,
    corp_id: &'a str,
    event_id: &'a str,
    action_id: &'a str,
    instance_id: &'a InstanceId,
    seq: i64,
    ordered: bool,
    at: i64,
}

/// The rows a batch writes: each instance and task once, in its final state.
struct Rows<'a> {
    deliveries: Vec<NewDelivery<'a>>,
    instances: Vec<(&'a Instance, String)>,
    events: Vec<(&'a Instance, &'a StoredEvent, &'a String)>,
    tasks: Vec<(&'a Instance, &'a Task)>,
    ccs: Vec<(&'a Instance, &'a Cc)>,
    deleted: Vec<&'a InstanceId>,
}

impl<'a> Rows<'a> {
    fn of(
        changes: &'a [Change],
        strategies: &'a HashMap<String, Option<Strategy>>,
        now: i64,
    ) -> Self {
        // The last change of an instance holds its final state.
        let mut last: HashMap<&InstanceId, &'a Instance> = HashMap::new();
        for c in changes {
            last.insert(&c.instance.id, &c.instance);
        }
        let mut instances: Vec<(&Instance, String)> = last
            .values()
            .map(|i| {
                (
                    *i,
                    serde_json::to_string(i).expect("instance state serialises"),
                )
            })
            .collect();
        instances.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let mut events = Vec::new();
        let mut task_ids: HashMap<&str, (&Instance, &Task)> = HashMap::new();
        let mut ccs = Vec::new();
        let mut deleted = Vec::new();
        let mut deliveries = Vec::new();
        for c in changes {
            let fin = last[&c.instance.id];
            let strategy = strategies
                .get(&c.instance.corp_id)
                .and_then(Option::as_ref)
                .filter(|s| s.selects(&c.instance.app_type, &c.instance.process_code));
            for (stored, event, params) in &c.events {
                events.push((fin, stored, params));
                if let Some(action_id) = strategy.and_then(|s| s.actions.for_kind(stored.kind)) {
                    deliveries.push(NewDelivery {
                        id: DeliveryId::fresh(),
                        corp_id: &fin.corp_id,
                        event_id: &stored.id,
                        action_id,
                        instance_id: &fin.id,
                        seq: stored.seq,
                        ordered: strategy.is_some_and(|s| s.ordered),
                        at: now,
                    });
                }
                match &event.kind {
                    EventKind::TaskCreated { task_id }
                    | EventKind::TaskFinished { task_id, .. }
                    | EventKind::TaskCancelled { task_id, .. } => {
                        let t = &fin.tasks[task_id];
                        task_ids.insert(&t.id, (fin, t));
                    }
                    EventKind::Cc { cc_id } => {
                        ccs.push((
                            fin,
                            fin.ccs
                                .iter()
                                .find(|x| &x.id == cc_id)
                                .expect("the cc of its event"),
                        ));
                    }
                    EventKind::InstanceDeleted { .. } => deleted.push(&fin.id),
                }
            }
        }
        let mut tasks: Vec<(&Instance, &Task)> = task_ids.into_values().collect();
        tasks.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        Rows {
            deliveries,
            instances,
            events,
            tasks,
            ccs,
            deleted,
        }
    }
}

/// Load (the first phase of [`Worker::batch`]): the states of the `$wanted` instances, locked on
/// PostgreSQL (`$lock`) until the commit. A macro: each backend's transaction is its own type.
macro_rules! load_states {
    ($tx:ident, $wanted:expr, $lock:expr) => {{
        let mut states: HashMap<InstanceId, Instance> = HashMap::new();
        if !$wanted.is_empty() {
            $tx.begin_now().await?; // the instances are locked until the commit
        }
        for chunk in $wanted.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new("SELECT id, state FROM instances WHERE id");
            super::push_in_list(&mut q, chunk.iter().map(|i| i.as_str()));
            q.push($lock);
            let rows: Vec<(InstanceId, String)> = q.build_query_as().fetch_all(&mut *$tx).await?;
            for (id, state) in rows {
                let inst = serde_json::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(format!("instance state: {e}")))?;
                states.insert(id, inst);
            }
        }
        states
    }};
}

/// The ordered lanes of `$lanes` (organisation, instance) with a pending delivery already: their
/// new deliveries wait their turn instead of going straight to the dispatcher.
macro_rules! busy_lanes {
    ($tx:ident, $lanes:expr) => {{
        let mut busy: std::collections::HashSet<(String, InstanceId)> = Default::default();
        if !$lanes.is_empty() {
            $tx.begin_now().await?;
        }
        for chunk in $lanes.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT DISTINCT corp_id, instance_id FROM deliveries WHERE status = 'pending' AND instance_id",
            );
            super::push_in_list(&mut q, chunk.iter().map(|i| i.as_str()));
            let found: Vec<(String, InstanceId)> = q.build_query_as().fetch_all(&mut *$tx).await?;
            busy.extend(found);
        }
        busy
    }};
}

/// Write (rows): the batch's multi-row upserts of instances, events, task rows, deliveries (the
/// handed-over ones leased to this node, `$lease`) and cc rows, and the deletions of deleted
/// instances' task-center rows, added to `$script`.
macro_rules! write_rows_in {
    ($script:ident, $rows:expr, $flagged:expr, $lease:expr) => {{
    for chunk in $rows.instances.chunks(CHUNK) {
        let q = $script.start_with(
            "INSERT INTO instances (id, corp_id, app_type, process_code, process_version, form_instance_id, \
             title, originator_id, status, state, seq, created_at, modified_at, finished_at) ",
        );
        q.push_values(chunk, |mut b, (inst, state)| {
            b.push_bind(&inst.id)
                .push_bind(&inst.corp_id)
                .push_bind(&inst.app_type)
                .push_bind(&inst.process_code)
                .push_bind(inst.process_version)
                .push_bind(&inst.form_instance_id)
                .push_bind(&inst.title)
                .push_bind(&inst.originator_id)
                .push_bind(inst.status.as_str())
                .push_bind(state)
                .push_bind(inst.seq as i64)
                .push_bind(inst.created_at)
                .push_bind(inst.modified_at)
                .push_bind(inst.finished_at);
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state, \
             seq = excluded.seq, modified_at = excluded.modified_at, finished_at = excluded.finished_at",
        );
    }
    for chunk in $rows.events.chunks(CHUNK) {
        let q = $script.start_with(
            "INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, created_at) ",
        );
        q.push_values(chunk, |mut b, (inst, stored, params)| {
            b.push_bind(&stored.id)
                .push_bind(&inst.corp_id)
                .push_bind(&inst.app_type)
                .push_bind(&inst.id)
                .push_bind(stored.seq)
                .push_bind(stored.kind.event_type())
                .push_bind(&stored.task_id)
                .push_bind(*params)
                .push_bind(stored.created_at);
        });
    }
    for chunk in $rows.tasks.chunks(CHUNK) {
        let q = $script.start_with(
            "INSERT INTO tasks (id, corp_id, app_type, instance_id, process_code, user_id, node_id, \
             node_name, status, action, created_at, ended_at) ",
        );
        q.push_values(chunk, |mut b, (inst, t)| {
            b.push_bind(&t.id)
                .push_bind(&inst.corp_id)
                .push_bind(&inst.app_type)
                .push_bind(&inst.id)
                .push_bind(&inst.process_code)
                .push_bind(&t.user_id)
                .push_bind(&t.node_id)
                .push_bind(&t.node_name)
                .push_bind(t.status.as_str())
                .push_bind(t.action.map(|a| a.as_str()))
                .push_bind(t.created_at)
                .push_bind(t.ended_at);
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, action = excluded.action, \
             ended_at = excluded.ended_at",
        );
    }
    for chunk in $flagged.chunks(CHUNK) {
        let q = $script.start_with(
            "INSERT INTO deliveries (id, corp_id, event_id, action_id, instance_id, seq, status, ordered, backfill, \
             attempts, next_attempt_at, created_at, updated_at, lease_owner, lease_until) ",
        );
        q.push_values(chunk, |mut b, (d, handed)| {
            let (owner, until) = match $lease {
                Some((owner, until, _)) if *handed => (Some(owner), Some(until)),
                _ => (None, None),
            };
            b.push_bind(&d.id)
                .push_bind(d.corp_id)
                .push_bind(d.event_id)
                .push_bind(d.action_id)
                .push_bind(d.instance_id)
                .push_bind(d.seq)
                .push_bind(DeliveryStatus::Pending.as_str())
                .push_bind(d.ordered)
                .push_bind(false)
                .push_bind(0i32)
                .push_bind(d.at)
                .push_bind(d.at)
                .push_bind(d.at)
                .push_bind(owner)
                .push_bind(until);
        });
    }
    for chunk in $rows.ccs.chunks(CHUNK) {
        let q = $script.start_with(
            "INSERT INTO ccs (id, corp_id, app_type, instance_id, process_code, user_id, node_id, \
             node_name, created_at) ",
        );
        q.push_values(chunk, |mut b, (inst, c)| {
            b.push_bind(&c.id)
                .push_bind(&inst.corp_id)
                .push_bind(&inst.app_type)
                .push_bind(&inst.id)
                .push_bind(&inst.process_code)
                .push_bind(&c.user_id)
                .push_bind(&c.node_id)
                .push_bind(&c.node_name)
                .push_bind(c.created_at);
        });
    }
    // A deleted instance leaves no rows in the task center (after the upserts above,
    // which may have touched its tasks earlier in this batch).
    for chunk in $rows.deleted.chunks(CHUNK) {
        for table in ["tasks", "ccs"] {
            let q = $script.start(&format!("DELETE FROM {table} WHERE instance_id"));
            super::push_in_list(q, chunk.iter().map(|i| i.as_str()));
        }
    }
    }};
}

/// Write (commit): runs `$script` in the batch's transaction with the check of the lanes the
/// recorded attempts ended, notifies the other nodes when they have something to claim
/// (`$unhanded` deliveries, or work behind the records), and commits. Returns whether this node's
/// dispatcher must look (work behind the recorded attempts).
macro_rules! commit_batch {
    ($tx:ident, $script:ident, $records:expr, $reopened:expr, $soon:expr, $unhanded:expr, $size:expr) => {{
        let (mut records_wake, ended) = record_wake($records, $soon);
        records_wake |= $reopened;
        // PostgreSQL: the WITH statement's own SELECT answers whether a recorded lane has
        // another pending delivery and sends the notification (delivered at commit) when
        // other nodes have something to claim — one round trip for the whole batch. Its
        // parts' writes are invisible to it, so the recorded heads still read as pending:
        // they are left out by id.
        let mut folded = None;
        if !$script.joined {
            if let Some((i, q)) = $script.close_open() {
                q.push("SELECT w.waiting, (SELECT count(*) FROM (SELECT pg_notify(");
                q.push_bind(super::DELIVERIES_CHANNEL);
                q.push(", '') WHERE ");
                q.push_bind($unhanded || records_wake);
                q.push(" OR w.waiting) n) FROM (SELECT ");
                if ended.is_empty() {
                    q.push("FALSE");
                } else {
                    q.push(
                        "EXISTS (SELECT 1 FROM deliveries WHERE status = 'pending' AND instance_id",
                    );
                    super::push_in_list(q, ended.iter().map(|i| i.as_str()));
                    q.push(" AND id NOT");
                    super::push_in_list(q, $records.iter().map(|r| r.delivery_id.as_str()));
                    q.push(")");
                }
                q.push(" AS waiting) w");
                folded = Some(i);
            }
        }
        // Otherwise the lane check runs as statements of its own: on SQLite inside the
        // script, before its COMMIT; on PostgreSQL (no WITH statement) after the writes.
        let mut waiting = Statements::new($script.joined);
        if folded.is_none() {
            let checks = if $script.joined {
                &mut $script
            } else {
                &mut waiting
            };
            for chunk in ended.chunks(CHUNK) {
                let q = checks
                    .start("SELECT 1 FROM deliveries WHERE status = 'pending' AND instance_id");
                super::push_in_list(q, chunk.iter().map(|i| i.as_str()));
                q.push(" LIMIT 1");
            }
        }
        if $script.joined {
            $script.start("COMMIT");
        }
        let separate_notify = !$script.joined && folded.is_none();
        // PostgreSQL: one statement is a transaction of its own; more need one around them.
        if $script.builders.len() + waiting.builders.len() + usize::from(separate_notify) > 1 {
            $tx.begin_now().await?;
        }
        // SQLite: a large batch's script is a one-off (its text depends on how many rows of
        // each kind the batch has). Kept prepared, it would only push out statements that
        // do recur, and the connection's cache would hold the compiled programs of up to a
        // hundred scripts in this process's memory. A small batch's script recurs, and
        // stays prepared. PostgreSQL keeps its prepared statements in the server, and there
        // the shapes of a steady load recur: unprepared, each batch was planned anew and
        // the flat-out throughput fell by a third (3,310 → 2,112–2,259/s, measured).
        let recurs = !$script.joined || $size <= RECURRING_BATCH;
        for (i, q) in $script.builders.iter_mut().enumerate() {
            let rows = q.build().persistent(recurs).fetch_all(&mut *$tx).await?;
            if folded == Some(i) {
                records_wake |= rows
                    .first()
                    .map(|r| r.try_get::<bool, _>(0))
                    .transpose()?
                    .unwrap_or(false);
            } else if $script.joined {
                records_wake |= !rows.is_empty(); // the lane check's rows
            }
        }
        for q in waiting.builders.iter_mut() {
            records_wake |= !q.build().fetch_all(&mut *$tx).await?.is_empty();
        }
        if separate_notify && ($unhanded || records_wake) {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(super::DELIVERIES_CHANNEL)
                .execute(&mut *$tx)
                .await?;
        }
        $tx.finish().await?;
        records_wake
    }};
}
/// The instances `jobs` act on, each once, in order.
fn instances_wanted(jobs: &[Job]) -> Vec<&InstanceId> {
    let mut wanted: Vec<&InstanceId> = jobs
        .iter()
        .filter_map(|j| match &j.op {
            Op::Act { instance_id, .. } => Some(instance_id),
            Op::Start { .. } => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Plan: the instances of ordered new deliveries whose lanes must be looked up before a
/// handoff. A lane that is `new` — an instance started in this batch, an ingested instance with
/// no event stored before — has nothing waiting: no need to look.
fn lanes_to_check<'r>(
    deliveries: &[&NewDelivery<'r>],
    new: &std::collections::HashSet<(&str, &InstanceId)>,
) -> Vec<&'r InstanceId> {
    let mut lanes: Vec<&InstanceId> = deliveries
        .iter()
        .filter(|d| d.ordered && !new.contains(&(d.corp_id, d.instance_id)))
        .map(|d| d.instance_id)
        .collect();
    lanes.sort_unstable();
    lanes.dedup();
    lanes
}

/// Plan: which new deliveries go straight to the local dispatcher (true), at most `room`: the
/// heads of their lanes. An ordered delivery whose lane is `busy` (a pending delivery waits
/// already) or that follows another of this batch in its lane is left for the claims. A lane
/// is the organisation's (corp_id, instance_id): an ingested instance of another organisation
/// may bear the same id.
fn choose_handoff(
    deliveries: &[&NewDelivery],
    busy: &std::collections::HashSet<(String, InstanceId)>,
    mut room: usize,
) -> Vec<bool> {
    let mut fresh = vec![false; deliveries.len()];
    let mut taken: std::collections::HashSet<(&str, &InstanceId)> = Default::default();
    for (d, flag) in deliveries.iter().zip(fresh.iter_mut()) {
        if room == 0 {
            break;
        }
        let lane = (d.corp_id, d.instance_id);
        if d.ordered
            && ((!busy.is_empty() && busy.contains(&(lane.0.to_owned(), lane.1.clone())))
                || !taken.insert(lane))
        {
            continue;
        }
        *flag = true;
        room -= 1;
    }
    fresh
}

/// Plan: whether the recorded attempts give the dispatchers something to look at at once — a
/// delivery due again before `soon` (a retry, or one held back for a moment: their sleep may
/// end too late; one parked behind an open breaker for minutes is found by their poll) or an
/// endpoint back — else the lanes whose
/// head just ended, to be asked (after the writes, in the same transaction) whether a later
/// delivery waits in them. Most often none: waking them for nothing costs an empty claim, which
/// takes the write lock. Lanes by instance id alone: another organisation's lane of the same
/// (ingested) id can only cause a needless wake-up, never a missed one.
fn record_wake(records: &[super::attempts::AttemptRecord], soon: i64) -> (bool, Vec<&InstanceId>) {
    let wake = records.iter().any(|r| {
        (r.status == DeliveryStatus::Pending && r.next_attempt_at <= soon)
            || !r.reopened_connectors.is_empty()
    });
    let mut ended: Vec<&InstanceId> = if wake {
        Vec::new()
    } else {
        records.iter().filter_map(|r| r.lane.as_ref()).collect()
    };
    ended.sort_unstable();
    ended.dedup();
    (wake, ended)
}

/// Runs `work`, catching a panic as its message: a broken invariant becomes the error of the
/// work that broke it, not the end of the writer.
async fn guarded<T>(work: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|p| crate::supervise::panic_message(&*p).to_owned())
}

impl Worker {
    /// One run of the writer: takes work from `inputs` until every channel has ended. A panic
    /// in a batch is caught and fails only the command that caused it (the batch is retried one
    /// command at a time); a panic anywhere else ends the run, and `supervise` starts another
    /// on the same inputs.
    async fn run(&self, inputs: &mut Inputs) {
        // The writer keeps one connection: its page cache stays warm (only the writer writes),
        // and its prepared statements stay prepared. Replaced after any database error.
        let mut conn: Option<Conn> = None;
        /// The next item of a channel that may be gone (then: never).
        async fn next<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
            match rx {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        }
        let mut stopping = *inputs.stop.borrow();
        if stopping {
            inputs.close();
        }
        while inputs.jobs.is_some() || inputs.records.is_some() || inputs.ingests.is_some() {
            let mut batch = Vec::new();
            let mut recs = Records::default();
            let mut ingests = Vec::new();
            tokio::select! {
                job = next(&mut inputs.jobs) => match job {
                    Some(j) => batch.push(j),
                    None => { inputs.jobs = None; continue; }
                },
                job = next(&mut inputs.ingests) => match job {
                    Some(j) => ingests.push(j),
                    None => { inputs.ingests = None; continue; }
                },
                rec = next(&mut inputs.records) => match rec {
                    Some(r) => recs.push(r),
                    None => { inputs.records = None; continue; }
                },
                changed = inputs.stop.changed(), if !stopping => {
                    // Stopped, or every handle gone: finish what is queued, then end.
                    if changed.is_err() || *inputs.stop.borrow() {
                        stopping = true;
                        inputs.close();
                    }
                    continue;
                }
                Some(()) = inputs.faults.recv() => panic!("the writer was made to fail by a test"),
            }
            if let Some(r) = inputs.jobs.as_mut() {
                while batch.len() < MAX_BATCH {
                    match r.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
            if let Some(r) = inputs.records.as_mut() {
                while recs.len() < MAX_RECORDS {
                    match r.try_recv() {
                        Ok(rec) => recs.push(rec),
                        Err(_) => break,
                    }
                }
            }
            if let Some(r) = inputs.ingests.as_mut() {
                while ingests.len() < MAX_BATCH {
                    match r.try_recv() {
                        Ok(job) => ingests.push(job),
                        Err(_) => break,
                    }
                }
            }
            if batch.is_empty() && recs.is_empty() && ingests.is_empty() {
                continue;
            }
            // Commands, ingest calls and attempt records: one transaction, one fsync.
            let (calls, replies): (Vec<IngestCall>, Vec<_>) =
                ingests.into_iter().map(|j| (j.call, j.reply)).unzip();
            match guarded(self.batch(&mut conn, &batch, &recs, &calls)).await {
                Ok(Ok((results, ingested))) => {
                    for (job, result) in batch.into_iter().zip(results) {
                        let _ = job.reply.send(result);
                    }
                    for (reply, result) in replies.into_iter().zip(ingested) {
                        let _ = reply.send(result);
                    }
                }
                failed => {
                    let size = batch.len() + calls.len();
                    match failed {
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, size, "batch failed; retrying its commands one by one")
                        }
                        Err(panic) => {
                            tracing::error!(%panic, size, "batch panicked; retrying its commands one by one")
                        }
                        Ok(Ok(_)) => {}
                    }
                    conn = None;
                    self.one_by_one(&mut conn, batch, &recs, calls.into_iter().zip(replies))
                        .await;
                }
            }
        }
    }

    /// After a failed batch: its attempt records in a transaction of their own, then each
    /// command alone and each ingest call alone, so one bad command or call cannot fail its
    /// neighbours. A command that fails alone gets the error; one that panics alone gets
    /// [`WriteError::Internal`]. An ingest call that lost a race with another node for a `seq`
    /// or an event id is tried again (it then reads the winner's row).
    async fn one_by_one(
        &self,
        conn: &mut Option<Conn>,
        batch: Vec<Job>,
        recs: &Records,
        ingests: impl Iterator<Item = (IngestCall, IngestReply)>,
    ) {
        if !recs.is_empty() {
            // A record that cannot be written is not lost: the delivery's lease expires and it
            // is sent again (at-least-once).
            let why = match guarded(self.batch(conn, &[], recs, &[])).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(panic) => Some(panic),
            };
            if let Some(error) = why {
                *conn = None;
                tracing::error!(%error, size = recs.len(), "recording attempts failed; the leases will expire and the deliveries be retried");
            }
        }
        for job in batch {
            let result = match guarded(self.batch(
                conn,
                std::slice::from_ref(&job),
                &Records::default(),
                &[],
            ))
            .await
            {
                Ok(Ok((mut r, _))) => r.pop().unwrap_or(Err(WriteError::Internal)),
                Ok(Err(e)) => {
                    *conn = None;
                    Err(WriteError::Store(e))
                }
                Err(panic) => {
                    *conn = None;
                    tracing::error!(%panic, "a command broke an invariant of the writer; it is refused, nothing of it written");
                    Err(WriteError::Internal)
                }
            };
            let _ = job.reply.send(result);
        }
        for (call, reply) in ingests {
            let mut tries = 0;
            let result = loop {
                let none = Records::default();
                match guarded(self.batch(conn, &[], &none, std::slice::from_ref(&call))).await {
                    Ok(Ok((_, mut r))) => break r.pop().unwrap_or(Err(IngestError::Internal)),
                    Ok(Err(StoreError::Sql(sqlx::Error::Database(db))))
                        if db.is_unique_violation() && tries < RACE_RETRIES =>
                    {
                        *conn = None;
                        tries += 1;
                    }
                    Ok(Err(e)) => {
                        *conn = None;
                        break Err(IngestError::Store(e));
                    }
                    Err(panic) => {
                        *conn = None;
                        tracing::error!(%panic, "an ingest call broke an invariant of the writer; it is refused, nothing of it written");
                        break Err(IngestError::Internal);
                    }
                }
            };
            let _ = reply.send(result);
        }
    }

    /// Runs `jobs` in one transaction. `Err` only for a database failure (nothing committed).
    ///
    /// The number of statements does not grow with the batch: one read of every instance the
    /// batch touches (locked on PostgreSQL), the engine in memory (a later command on the same
    /// instance sees the earlier one's result), then multi-row upserts of instances, events,
    /// task rows and cc rows; the ingest calls' reads ([`read_stored!`]) and events with them,
    /// and every new delivery in one insert.
    #[allow(clippy::type_complexity)]
    async fn batch(
        &self,
        conn: &mut Option<Conn>,
        jobs: &[Job],
        recorded: &Records,
        calls: &[IngestCall],
    ) -> Result<
        (
            Vec<Result<Outcome, WriteError>>,
            Vec<Result<Vec<Ingested>, IngestError>>,
        ),
        StoreError,
    > {
        let (records, endpoints) = (&recorded.attempts[..], &recorded.endpoints[..]);
        let lock = if matches!(self.store, Store::Postgres(_)) {
            " FOR UPDATE"
        } else {
            ""
        };
        let wanted = instances_wanted(jobs);
        // SQLite runs the batch's writes as one script (see `Statements`), and keeps its reads
        // prepared; PostgreSQL plans the ingest reads anew each time (see `read_stored!`).
        let script_joined = matches!(self.store, Store::Sqlite(_));
        let conn = self.connection(conn).await?;
        // What the decisions read besides the instances, all at once: one round trip's wait
        // instead of one per organisation and process in turn (before the write gate: nothing
        // here needs it).
        let mut ctx = BatchContext::default();
        self.prefetch(conn, jobs, calls, &mut ctx).await?;
        let named = super::ingest::named(calls);
        let _gate = super::write_gate(&self.store).await;
        on_conn!(conn, |c| {
            // Mutable for PostgreSQL's transaction; SQLite's is a `&mut` already.
            #[allow(unused_mut)]
            let mut tx = Open::open(&mut **c).await?;
            // Load: the instances acted on, locked until the commit.
            let states = load_states!(tx, wanted, lock);
            // Decide: the engine, in memory (a later command on an instance sees the earlier).
            let (results, changes) = self.decide_all(jobs, states, &mut ctx).await?;
            // Ingest: what is stored of the calls' events and instances.
            let stored = super::ingest::read_stored!(tx, named, script_joined);
            // Plan: the rows, the fan-out to deliveries, which of them are handed over.
            self.strategies_for(&changes, &mut ctx).await?;
            let now = now_ms();
            let rows = Rows::of(&changes, &ctx.strategies, now);
            // Lanes with nothing stored before: an instance started here, or an ingested
            // instance with no event yet.
            let mut new: std::collections::HashSet<(&str, &InstanceId)> = changes
                .iter()
                .filter(|c| c.started)
                .map(|c| (c.instance.corp_id.as_str(), &c.instance.id))
                .collect();
            for c in calls {
                for r in &c.events {
                    let key = (c.corp_id.clone(), r.instance_id.clone());
                    if !stored.last_seq.contains_key(&key) {
                        new.insert((c.corp_id.as_str(), &r.instance_id));
                    }
                }
            }
            let ingest = super::ingest::plan(calls, stored, &ctx.strategies, now);
            let relayed: Vec<NewDelivery> = ingest
                .rows
                .iter()
                .filter_map(|e| {
                    let (id, action_id, ordered) = e.delivery.as_ref()?;
                    Some(NewDelivery {
                        id: id.clone(),
                        corp_id: e.corp_id,
                        event_id: &e.stored.id,
                        action_id,
                        instance_id: &e.relayed.instance_id,
                        seq: e.stored.seq,
                        ordered: *ordered,
                        at: now,
                    })
                })
                .collect();
            let deliveries: Vec<&NewDelivery> = rows.deliveries.iter().chain(&relayed).collect();
            let lease = self.lease();
            let room = lease.map_or(0, |l| l.2);
            let busy = if room > 0 {
                let lanes = lanes_to_check(&deliveries, &new);
                busy_lanes!(tx, lanes)
            } else {
                Default::default()
            };
            let fresh = choose_handoff(&deliveries, &busy, room);
            let flagged: Vec<(&NewDelivery, bool)> = deliveries
                .iter()
                .copied()
                .zip(fresh.iter().copied())
                .collect();
            // Write: one script (SQLite) or one WITH statement and a few (PostgreSQL). The
            // ingested events before the deliveries that refer to them.
            let mut script = Statements::new(script_joined);
            if script.joined {
                script.start("BEGIN IMMEDIATE");
            }
            super::ingest::write_events_in!(script, &ingest.rows, now);
            write_rows_in!(script, rows, flagged, lease);
            let owner = self.handoff.as_ref().map(|h| h.owner.as_str());
            super::attempts::write_records_in!(script, records, endpoints, owner);
            let unhanded = fresh.contains(&false);
            let soon = now_ms()
                + self
                    .handoff
                    .as_ref()
                    .map_or(0, |h| h.poll.as_millis() as i64);
            let size = jobs.len() + recorded.len() + calls.len();
            let reopened = endpoints
                .iter()
                .any(|e| matches!(e.change, super::attempts::EndpointChange::Reopened));
            let records_wake = commit_batch!(tx, script, records, reopened, soon, unhanded, size);
            // Announce: handed-over deliveries to the dispatcher; the rest wake it.
            let handed = self.announce(&rows, &ingest.rows, &flagged);
            if deliveries.len() > handed || records_wake {
                self.dispatch.notify_one();
            }
            Ok((results, ingest.results))
        })
    }

    /// The writer's own connection, opened when it has none (outside the write gate:
    /// connecting writes nothing).
    async fn connection<'c>(&self, conn: &'c mut Option<Conn>) -> Result<&'c mut Conn, StoreError> {
        if conn.is_none() {
            *conn = Some(match &self.store {
                Store::Sqlite(pool) => {
                    let mut c = Box::new(
                        <sqlx::SqliteConnection as sqlx::Connection>::connect_with(
                            &pool.connect_options(),
                        )
                        .await?,
                    );
                    // 32 MiB of page cache for the writer's own connection (SQLite's default is
                    // 2 MiB): it keeps the hot index pages instead of re-reading them.
                    sqlx::query("PRAGMA cache_size = -32768")
                        .execute(&mut *c)
                        .await?;
                    Conn::Sqlite(c)
                }
                Store::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
            });
        }
        Ok(conn.as_mut().expect("just set"))
    }

    /// Decide: runs each job's command through the engine against `states` (updated as it goes,
    /// so a later command on the same instance sees the earlier one's result). `Err` only for a
    /// database failure; a refused command has its error in the results.
    async fn decide_all(
        &self,
        jobs: &[Job],
        mut states: HashMap<InstanceId, Instance>,
        ctx: &mut BatchContext,
    ) -> Result<(Vec<Result<Outcome, WriteError>>, Vec<Change>), StoreError> {
        let mut results = Vec::with_capacity(jobs.len());
        let mut changes: Vec<Change> = Vec::new();
        for job in jobs {
            let current = match &job.op {
                Op::Start { .. } => None,
                Op::Act {
                    corp_id,
                    instance_id,
                    ..
                } => match states.get(instance_id) {
                    // Another organisation's instance does not exist for this caller.
                    Some(i) if &i.corp_id == corp_id => Some(i.clone()),
                    _ => {
                        results.push(Err(EngineError::NotFound("instance".into()).into()));
                        continue;
                    }
                },
            };
            match self.decide(&job.op, current, now_ms(), ctx).await {
                Ok(change) => {
                    states.insert(change.instance.id.clone(), change.instance.clone());
                    results.push(Ok(Outcome {
                        instance: change.instance.clone(),
                        events: change.events.iter().map(|(s, _, _)| s.clone()).collect(),
                    }));
                    changes.push(change);
                }
                Err(WriteError::Store(e)) => return Err(e),
                Err(e) => results.push(Err(e)),
            }
        }
        Ok((results, changes))
    }

    /// The sync strategy of each organisation with changes (read once a batch): the fan-out is
    /// made in the same transaction, so no event can exist without its deliveries.
    async fn strategies_for(
        &self,
        changes: &[Change],
        ctx: &mut BatchContext,
    ) -> Result<(), StoreError> {
        for c in changes {
            if !ctx.strategies.contains_key(&c.instance.corp_id) {
                let s = self.store.strategy(&c.instance.corp_id).await?;
                ctx.strategies.insert(c.instance.corp_id.clone(), s);
            }
        }
        Ok(())
    }

    /// Where handed-over deliveries are leased now: (owner, lease end, room in the channel).
    fn lease(&self) -> Option<(&str, i64, usize)> {
        self.handoff.as_ref().map(|h| {
            (
                h.owner.as_str(),
                now_ms() + h.lease.as_millis() as i64,
                h.tx.capacity(),
            )
        })
    }

    /// Announce: gives the handed-over deliveries of a committed batch to the local dispatcher
    /// with everything needed to send them; returns how many.
    fn announce(
        &self,
        rows: &Rows,
        relayed: &[super::ingest::NewEvent],
        flagged: &[(&NewDelivery, bool)],
    ) -> usize {
        let handed = flagged.iter().filter(|(_, handed)| *handed).count();
        let Some(handoff) = self.handoff.as_ref().filter(|_| handed > 0) else {
            return 0;
        };
        let events: HashMap<&str, (&StoredEvent, &String, &str)> = rows
            .events
            .iter()
            .map(|(inst, stored, params)| {
                (
                    stored.id.as_str(),
                    (*stored, *params, inst.app_type.as_str()),
                )
            })
            .collect();
        let relayed: HashMap<&str, &super::ingest::NewEvent> =
            relayed.iter().map(|e| (e.stored.id.as_str(), e)).collect();
        for (d, _) in flagged.iter().filter(|(_, handed)| *handed) {
            let event = match relayed.get(d.event_id) {
                Some(e) => e.delivery_event(),
                None => {
                    let (stored, params, app_type) = events[d.event_id];
                    let Ok(params) = serde_json::from_str(params) else {
                        continue; // not possible: just serialised; the lease would cover it
                    };
                    DeliveryEvent {
                        kind: stored.kind,
                        seq: stored.seq,
                        app_type: app_type.to_owned(),
                        params,
                        source_id: None,
                    }
                }
            };
            // Room was checked and only this task sends: this cannot fail but for a
            // stopped dispatcher, and then the lease brings the delivery back.
            let _ = handoff.tx.try_send(FreshDelivery {
                id: d.id.clone(),
                corp_id: d.corp_id.to_owned(),
                event_id: d.event_id.to_owned(),
                action_id: d.action_id.to_owned(),
                instance_id: d.instance_id.clone(),
                ordered: d.ordered,
                created_at: d.at,
                event,
            });
        }
        handed
    }

    /// Reads, concurrently, what the batch's decisions will ask for besides the instances: each
    /// organisation's directory (reloaded if its version moved) and sync strategy, the latest
    /// version of each process started. Read once a batch — on SQLite, carried over while no
    /// change is announced — so a change applies from the next.
    async fn prefetch(
        &self,
        conn: &mut Conn,
        jobs: &[Job],
        calls: &[IngestCall],
        ctx: &mut BatchContext,
    ) -> Result<(), StoreError> {
        use futures_util::future::try_join_all;
        let mut corps: Vec<&str> = jobs
            .iter()
            .map(|j| match &j.op {
                Op::Start { corp_id, .. } | Op::Act { corp_id, .. } => corp_id.as_str(),
            })
            .collect();
        corps.sort_unstable();
        corps.dedup();
        // Organisations that only relay (ingest calls) need only their strategies.
        let mut relaying: Vec<&str> = calls
            .iter()
            .map(|c| c.corp_id.as_str())
            .filter(|c| corps.binary_search(c).is_err())
            .collect();
        relaying.sort_unstable();
        relaying.dedup();
        let mut started: Vec<(&str, &str)> = jobs
            .iter()
            .filter_map(|j| match &j.op {
                Op::Start {
                    corp_id,
                    process_code,
                    ..
                } => Some((corp_id.as_str(), process_code.as_str())),
                Op::Act { .. } => None,
            })
            .collect();
        started.sort_unstable();
        started.dedup();
        if let Conn::Sqlite(c) = conn {
            // SQLite has one process writing: every change to what is read here is announced
            // in it (`settings_changed`, after its commit, before its answer). So the reads of
            // earlier batches hold while the generation has not moved — taken before reading,
            // so a change during the read is seen by the next batch — and a command sent after
            // a change was answered still sees the change. Only what is missing is read.
            let generation = crate::support::settings_generation();
            let carried = self
                .carried
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .filter(|c| c.generation == generation && c.at.elapsed() < CARRY_FOR);
            let at = match carried {
                Some(c) => {
                    *ctx = c.reads;
                    c.at
                }
                None => std::time::Instant::now(),
            };
            // One script reads both: a relaying organisation's directory comes along (cached).
            corps.extend(relaying);
            corps
                .retain(|c| !(ctx.strategies.contains_key(*c) && ctx.directories.contains_key(*c)));
            started.retain(|(c, p)| !ctx.latest.contains_key(&((*c).to_owned(), (*p).to_owned())));
            if !corps.is_empty() || !started.is_empty() {
                self.prefetch_sqlite(c, &corps, &started, ctx).await?;
            }
            *self
                .carried
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Carried {
                generation,
                at,
                reads: ctx.clone(),
            });
            return Ok(());
        }
        let (directories, strategies, relayed, latest) = tokio::join!(
            try_join_all(corps.iter().map(|c| self.fresh_directory(c))),
            try_join_all(corps.iter().map(|c| self.store.strategy(c))),
            try_join_all(relaying.iter().map(|c| self.store.strategy(c))),
            try_join_all(
                started
                    .iter()
                    .map(|(c, p)| self.store.latest_definition_version(c, p))
            ),
        );
        for (corp, (directory, strategy)) in
            corps.iter().zip(directories?.into_iter().zip(strategies?))
        {
            ctx.directories.insert((*corp).to_owned(), directory);
            ctx.strategies.insert((*corp).to_owned(), strategy);
        }
        for (corp, strategy) in relaying.iter().zip(relayed?) {
            ctx.strategies.insert((*corp).to_owned(), strategy);
        }
        for ((corp, code), latest) in started.iter().zip(latest?) {
            ctx.latest
                .insert(((*corp).to_owned(), (*code).to_owned()), latest);
        }
        Ok(())
    }

    /// SQLite: the reads of [`Self::prefetch`] as one script on the writer's own connection —
    /// one round trip to its thread instead of one on each of three pooled connections, whose
    /// hand-offs and wake-ups cost more than the reads (1.1 ms a batch, a fifth of it, under
    /// load). Each row says by its first column which read it answers.
    async fn prefetch_sqlite(
        &self,
        c: &mut sqlx::SqliteConnection,
        corps: &[&str],
        started: &[(&str, &str)],
        ctx: &mut BatchContext,
    ) -> Result<(), StoreError> {
        use super::connectors::{strategy_from_row, StrategyRow, STRATEGY_COLUMNS};
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT 'd', corp_id, directory_version FROM organisations WHERE corp_id",
        );
        super::push_in_list(&mut q, corps.iter().copied());
        q.push(format!(
            "; SELECT 's', corp_id, {STRATEGY_COLUMNS} FROM sync_strategies WHERE corp_id"
        ));
        super::push_in_list(&mut q, corps.iter().copied());
        for (corp, code) in started {
            q.push("; SELECT 'l', corp_id, process_code, version, app_type FROM process_definitions WHERE corp_id = ");
            q.push_bind(*corp);
            q.push(" AND process_code = ");
            q.push_bind(*code);
            q.push(" ORDER BY version DESC LIMIT 1");
        }
        let rows = q.build().fetch_all(&mut *c).await?;
        for corp in corps {
            ctx.strategies.insert((*corp).to_owned(), None);
        }
        for (corp, code) in started {
            ctx.latest
                .insert(((*corp).to_owned(), (*code).to_owned()), None);
        }
        let mut versions: HashMap<String, i64> = HashMap::new();
        for row in rows {
            let corp: String = row.try_get(1)?;
            match row.try_get::<&str, _>(0)? {
                "d" => {
                    versions.insert(corp, row.try_get(2)?);
                }
                "s" => {
                    let r: StrategyRow = (
                        row.try_get(2)?,
                        row.try_get(3)?,
                        row.try_get(4)?,
                        row.try_get(5)?,
                        row.try_get(6)?,
                        row.try_get(7)?,
                        row.try_get(8)?,
                        row.try_get(9)?,
                        row.try_get(10)?,
                        row.try_get(11)?,
                    );
                    ctx.strategies.insert(corp, Some(strategy_from_row(r)?));
                }
                _ => {
                    let code: String = row.try_get(2)?;
                    let latest = (row.try_get(3)?, row.try_get(4)?);
                    ctx.latest.insert((corp, code), Some(latest));
                }
            }
        }
        for corp in corps {
            let version = versions.get(*corp).copied().unwrap_or(0);
            let directory = self.directory_at(corp, version).await?;
            ctx.directories.insert((*corp).to_owned(), directory);
        }
        Ok(())
    }

    /// Runs the engine: what `op` changes, or why it is refused. Reads only (through caches).
    async fn decide(
        &self,
        op: &Op,
        current: Option<Instance>,
        now: i64,
        ctx: &mut BatchContext,
    ) -> Result<Change, WriteError> {
        match (op, current) {
            (
                Op::Start {
                    corp_id,
                    process_code,
                    actor,
                    title,
                    form_data,
                },
                _,
            ) => {
                let key = (corp_id.clone(), process_code.clone());
                if !ctx.latest.contains_key(&key) {
                    let latest = self
                        .store
                        .latest_definition_version(corp_id, process_code)
                        .await?;
                    ctx.latest.insert(key.clone(), latest);
                }
                let (version, app_type) = ctx.latest[&key]
                    .clone()
                    .ok_or_else(|| EngineError::NotFound(format!("process `{process_code}`")))?;
                let def = self.definition(corp_id, process_code, version).await?;
                let dir = self.directory(corp_id, ctx).await?;
                let (instance, events) = machine::start(
                    &def,
                    Start {
                        id: InstanceId::from_uuid(uuid::Uuid::now_v7()),
                        corp_id: corp_id.clone(),
                        app_type,
                        process_version: version,
                        form_instance_id: uuid::Uuid::now_v7().to_string(),
                        title: title.clone(),
                        originator_id: actor.clone(),
                        form_data: form_data.clone(),
                    },
                    &*dir,
                    now,
                )?;
                Ok(self.change(instance, events, &def, &dir, true))
            }
            (
                Op::Act {
                    corp_id,
                    actor,
                    command,
                    ..
                },
                Some(inst),
            ) => {
                let def = self
                    .definition(corp_id, &inst.process_code, inst.process_version)
                    .await?;
                let dir = self.directory(corp_id, ctx).await?;
                let (instance, events) = inst.apply(&def, actor, command, &*dir, now)?;
                Ok(self.change(instance, events, &def, &dir, false))
            }
            (Op::Act { .. }, None) => Err(EngineError::NotFound("instance".into()).into()),
        }
    }

    fn change(
        &self,
        instance: Instance,
        events: Vec<Event>,
        def: &Definition,
        dir: &DirectorySnapshot,
        started: bool,
    ) -> Change {
        let ctx = RenderContext {
            directory: dir,
            process_name: &def.name,
            public_base_url: &self.public_base_url,
        };
        let events = events
            .into_iter()
            .map(|e| {
                let payload = render(&instance, &e, &ctx);
                let params =
                    serde_json::to_string(&stored_params(&payload)).expect("strings serialise");
                let stored = StoredEvent {
                    id: new_id("evt"),
                    seq: e.seq as i64,
                    kind: payload.kind(),
                    task_id: e.kind.task_id().map(str::to_owned),
                    created_at: e.at,
                };
                (stored, e, params)
            })
            .collect();
        Change {
            instance,
            events,
            started,
        }
    }

    async fn definition(
        &self,
        corp_id: &str,
        code: &str,
        version: i64,
    ) -> Result<Arc<Definition>, WriteError> {
        let key = (corp_id.to_owned(), code.to_owned(), version);
        if let Some(hit) = self
            .caches
            .definitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let stored = self
            .store
            .definition(corp_id, code, Some(version))
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("process `{code}` version {version} is missing"))
            })?;
        let entry = Arc::new(stored.definition);
        crate::support::insert_bounded(
            &mut self
                .caches
                .definitions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            key,
            entry.clone(),
            DEFINITIONS_ROOM,
        );
        Ok(entry)
    }

    /// The organisation's directory, reloaded when its version moved (checked once a batch).
    async fn directory(
        &self,
        corp_id: &str,
        ctx: &mut BatchContext,
    ) -> Result<Arc<DirectorySnapshot>, WriteError> {
        if let Some(d) = ctx.directories.get(corp_id) {
            return Ok(d.clone());
        }
        let snap = self.fresh_directory(corp_id).await?;
        ctx.directories.insert(corp_id.to_owned(), snap.clone());
        Ok(snap)
    }

    async fn fresh_directory(&self, corp_id: &str) -> Result<Arc<DirectorySnapshot>, StoreError> {
        let version = self.store.directory_version(corp_id).await?.unwrap_or(0);
        self.directory_at(corp_id, version).await
    }

    /// The organisation's directory at `version`: cached, or loaded (at its current version).
    async fn directory_at(
        &self,
        corp_id: &str,
        version: i64,
    ) -> Result<Arc<DirectorySnapshot>, StoreError> {
        if let Some((v, snap)) = self
            .caches
            .directories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(corp_id)
        {
            if *v == version {
                return Ok(snap.clone());
            }
        }
        let (v, snap) = self.store.load_directory(corp_id).await?;
        let snap = Arc::new(snap);
        self.caches
            .directories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(corp_id.to_owned(), (v, snap.clone()));
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    //! The plan phase of a batch, alone: which new deliveries are handed over, which lanes are
    //! looked up, what the recorded attempts ask of the dispatchers.
    use std::collections::HashSet;

    use super::*;
    use crate::store::attempts::AttemptRecord;

    fn delivery<'a>(corp: &'a str, instance: &str, seq: i64, ordered: bool) -> NewDelivery<'a> {
        // A plan borrows its instances' ids; a test's few live as long as the test binary.
        let instance: &'static InstanceId = Box::leak(Box::new(instance.into()));
        NewDelivery {
            id: format!("dlv-{corp}-{instance}-{seq}").into(),
            corp_id: corp,
            event_id: "evt",
            action_id: "act",
            instance_id: instance,
            seq,
            ordered,
            at: 0,
        }
    }

    fn record(status: DeliveryStatus, lane: Option<&str>, reopened: &[&str]) -> AttemptRecord {
        AttemptRecord {
            delivery_id: "dlv".into(),
            corp_id: "acme".into(),
            lane: lane.map(InstanceId::from),
            attempt: None,
            held_because: None,
            next_attempt_at: 0,
            status,
            reopened_connectors: reopened.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn refs<'a, 'r>(ds: &'a [NewDelivery<'r>]) -> Vec<&'a NewDelivery<'r>> {
        ds.iter().collect()
    }

    #[test]
    fn only_the_head_of_each_lane_is_handed_over() {
        let ds = [
            delivery("acme", "i1", 1, true),
            delivery("acme", "i1", 2, true),
            delivery("acme", "i2", 1, true),
            delivery("acme", "i2", 1, false),
            delivery("acme", "i2", 2, false),
        ];
        assert_eq!(
            choose_handoff(&refs(&ds), &HashSet::new(), 10),
            [true, false, true, true, true],
            "the second of i1's lane waits; unordered ones all go"
        );
    }

    #[test]
    fn a_busy_lane_waits_and_only_its_own_organisation_s() {
        let ds = [
            delivery("acme", "order-1", 1, true),
            delivery("globex", "order-1", 1, true),
        ];
        let busy = HashSet::from([("acme".to_owned(), "order-1".into())]);
        assert_eq!(
            choose_handoff(&refs(&ds), &busy, 10),
            [false, true],
            "globex's instance of the same id is a lane of its own"
        );
    }

    #[test]
    fn no_more_than_the_room_is_handed_over() {
        let ds: Vec<NewDelivery> = ["a", "b", "c", "d"]
            .iter()
            .map(|i| delivery("acme", i, 1, true))
            .collect();
        assert_eq!(
            choose_handoff(&refs(&ds), &HashSet::new(), 2),
            [true, true, false, false]
        );
        assert_eq!(choose_handoff(&refs(&ds), &HashSet::new(), 0), [false; 4]);
    }

    #[test]
    fn lanes_of_instances_started_in_the_batch_are_not_looked_up() {
        let ds = [
            delivery("acme", "new", 1, true),
            delivery("acme", "old", 3, true),
            delivery("acme", "old", 4, true),
            delivery("acme", "loose", 1, false),
        ];
        let new = InstanceId::from("new");
        let started = HashSet::from([("acme", &new)]);
        assert_eq!(lanes_to_check(&refs(&ds), &started), ["old"]);
        // A new lane is the organisation's: another's instance of the same id is looked up.
        let other = [delivery("globex", "new", 2, true)];
        assert_eq!(lanes_to_check(&refs(&other), &started), ["new"]);
    }

    #[test]
    fn recorded_attempts_wake_the_dispatchers_only_when_there_is_work() {
        // Delivered heads: their lanes are asked about, nobody woken yet.
        let heads = [
            record(DeliveryStatus::Delivered, Some("i2"), &[]),
            record(DeliveryStatus::Delivered, Some("i1"), &[]),
            record(DeliveryStatus::Delivered, Some("i2"), &[]),
            record(DeliveryStatus::Delivered, None, &[]),
        ];
        let (wake, ended) = record_wake(&heads, 1_000);
        assert!(!wake);
        assert_eq!(ended, ["i1", "i2"]);
        // A retry scheduled, or an endpoint back: wake at once, no lane to ask about.
        let retry = [
            record(DeliveryStatus::Delivered, Some("i1"), &[]),
            record(DeliveryStatus::Pending, Some("i3"), &[]),
        ];
        let (wake, ended) = record_wake(&retry, 1_000);
        assert!(wake && ended.is_empty());
        let (wake, _) = record_wake(
            &[record(DeliveryStatus::Delivered, None, &["con-1"])],
            1_000,
        );
        assert!(wake);
        assert_eq!(record_wake(&[], 1_000), (false, Vec::<&InstanceId>::new()));
        // Parked for minutes behind an open breaker: the dispatchers' poll finds it.
        let mut parked = record(DeliveryStatus::Pending, Some("i4"), &[]);
        parked.next_attempt_at = 300_000;
        let (wake, ended) = record_wake(std::slice::from_ref(&parked), 1_000);
        assert!(!wake);
        assert_eq!(ended, ["i4"], "its lane is asked about like any other");
    }
}
