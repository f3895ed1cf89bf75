//! The command writer: every state-changing command goes through here, and is acknowledged only
//! after the transaction that holds its new state, its task rows and its outbox events commits.
//!
//! Group commit: one task takes queued commands in batches (up to [`MAX_BATCH`]) and runs each
//! batch in ONE transaction — one fsync for many commands, durability untouched. A command the
//! engine refuses writes nothing and does not disturb its batch; if the database fails mid-batch,
//! the batch is rolled back and its commands are retried one transaction each, so one bad
//! command cannot fail its neighbours.
//!
//! Serialisation: within a node the writer is the only writer, so commands on one instance
//! apply in order; across PostgreSQL nodes the instance row is locked (`FOR UPDATE`) for the
//! transaction. A lost update is impossible either way: the loser sees the new state and gets
//! a conflict from the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{new_id, now_ms, on_pool, Store, StoreError};
use crate::engine::definition::Definition;
use crate::engine::machine::{self, Command, DataMap, Event, EventKind, Instance, Start};
use crate::engine::resolve::DirectorySnapshot;
use crate::engine::EngineError;
use crate::integration::render::{render, stored_params, RenderContext};

/// Most commands in one transaction.
pub const MAX_BATCH: usize = 256;

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
        instance_id: String,
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
}

/// A stored event, as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub id: String,
    pub seq: i64,
    pub kind: String,
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

/// Parsed definitions (immutable per version) and directory snapshots (per version).
#[derive(Default)]
struct Caches {
    definitions: Mutex<HashMap<(String, String, i64), Arc<Definition>>>,
    directories: Mutex<HashMap<String, (i64, Arc<DirectorySnapshot>)>>,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer; it stops when every handle is dropped.
    pub fn spawn(store: Store, public_base_url: String) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let worker = Worker {
            store,
            caches: Caches::default(),
            public_base_url,
        };
        tokio::spawn(worker.run(rx));
        Self { jobs }
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
}

/// What one command will write, computed before touching the database.
struct Change {
    instance: Instance,
    new: bool,
    events: Vec<(StoredEvent, Event, String)>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            match self.batch(&batch).await {
                Ok(results) => {
                    for (job, result) in batch.into_iter().zip(results) {
                        let _ = job.reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, size = batch.len(), "batch failed; retrying its commands one by one");
                    for job in batch {
                        let result = match self.batch(std::slice::from_ref(&job)).await {
                            Ok(mut r) => r.pop().expect("one result per job"),
                            Err(e) => Err(WriteError::Store(e)),
                        };
                        let _ = job.reply.send(result);
                    }
                }
            }
        }
    }

    /// Runs `jobs` in one transaction. `Err` only for a database failure (nothing committed).
    async fn batch(&self, jobs: &[Job]) -> Result<Vec<Result<Outcome, WriteError>>, StoreError> {
        let lock = if matches!(self.store, Store::Postgres(_)) {
            " FOR UPDATE"
        } else {
            ""
        };
        on_pool!(&self.store, |pool| {
            let mut tx = pool.begin().await?;
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                let now = now_ms();
                // Read the current state inside the transaction (locked on PostgreSQL).
                let current: Option<Instance> = match &job.op {
                    Op::Start { .. } => None,
                    Op::Act {
                        corp_id,
                        instance_id,
                        ..
                    } => {
                        let sql = format!(
                            "SELECT state FROM instances WHERE id = $1 AND corp_id = $2{lock}"
                        );
                        let state: Option<String> = sqlx::query_scalar(&sql)
                            .bind(instance_id)
                            .bind(corp_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        match state {
                            None => {
                                results.push(Err(EngineError::NotFound("instance".into()).into()));
                                continue;
                            }
                            Some(s) => Some(serde_json::from_str(&s).map_err(|e| {
                                StoreError::Corrupt(format!("instance state: {e}"))
                            })?),
                        }
                    }
                };
                let change = match self.decide(&job.op, current, now).await {
                    Ok(c) => c,
                    Err(WriteError::Store(e)) => return Err(e),
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                let inst = &change.instance;
                let state =
                    serde_json::to_string(inst).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if change.new {
                    sqlx::query(
                        "INSERT INTO instances (id, corp_id, app_type, process_code, process_version, form_instance_id, \
                         title, originator_id, status, state, seq, created_at, modified_at, finished_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    )
                    .bind(&inst.id)
                    .bind(&inst.corp_id)
                    .bind(&inst.app_type)
                    .bind(&inst.process_code)
                    .bind(inst.process_version)
                    .bind(&inst.form_instance_id)
                    .bind(&inst.title)
                    .bind(&inst.originator_id)
                    .bind(inst.status.as_str())
                    .bind(&state)
                    .bind(inst.seq as i64)
                    .bind(inst.created_at)
                    .bind(inst.modified_at)
                    .bind(inst.finished_at)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "UPDATE instances SET status = $2, state = $3, seq = $4, modified_at = $5, finished_at = $6 WHERE id = $1",
                    )
                    .bind(&inst.id)
                    .bind(inst.status.as_str())
                    .bind(&state)
                    .bind(inst.seq as i64)
                    .bind(inst.modified_at)
                    .bind(inst.finished_at)
                    .execute(&mut *tx)
                    .await?;
                }
                for (stored, event, params) in &change.events {
                    sqlx::query(
                        "INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(&stored.id)
                    .bind(&inst.corp_id)
                    .bind(&inst.app_type)
                    .bind(&inst.id)
                    .bind(stored.seq)
                    .bind(&stored.kind)
                    .bind(&stored.task_id)
                    .bind(params)
                    .bind(stored.created_at)
                    .execute(&mut *tx)
                    .await?;
                    match &event.kind {
                        EventKind::TaskCreated { task_id } => {
                            let t = &inst.tasks[task_id];
                            sqlx::query(
                                "INSERT INTO tasks (id, corp_id, app_type, instance_id, process_code, user_id, node_id, \
                                 node_name, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9)",
                            )
                            .bind(&t.id)
                            .bind(&inst.corp_id)
                            .bind(&inst.app_type)
                            .bind(&inst.id)
                            .bind(&inst.process_code)
                            .bind(&t.user_id)
                            .bind(&t.node_id)
                            .bind(&t.node_name)
                            .bind(t.created_at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        EventKind::TaskFinished { task_id, .. }
                        | EventKind::TaskCancelled { task_id, .. } => {
                            let t = &inst.tasks[task_id];
                            let action = t.action.map(|a| a.as_str());
                            sqlx::query("UPDATE tasks SET status = $2, action = $3, ended_at = $4 WHERE id = $1")
                                .bind(&t.id)
                                .bind(t.status.as_str())
                                .bind(action)
                                .bind(t.ended_at)
                                .execute(&mut *tx)
                                .await?;
                        }
                        EventKind::Cc { cc_id } => {
                            let c = inst
                                .ccs
                                .iter()
                                .find(|c| &c.id == cc_id)
                                .expect("the cc of its event");
                            sqlx::query(
                                "INSERT INTO ccs (id, corp_id, app_type, instance_id, process_code, user_id, node_id, created_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                            )
                            .bind(&c.id)
                            .bind(&inst.corp_id)
                            .bind(&inst.app_type)
                            .bind(&inst.id)
                            .bind(&inst.process_code)
                            .bind(&c.user_id)
                            .bind(&c.node_id)
                            .bind(c.created_at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        EventKind::InstanceDeleted { .. } => {
                            for table in ["tasks", "ccs"] {
                                sqlx::query(&format!("DELETE FROM {table} WHERE instance_id = $1"))
                                    .bind(&inst.id)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                    }
                }
                results.push(Ok(Outcome {
                    instance: change.instance.clone(),
                    events: change.events.iter().map(|(s, _, _)| s.clone()).collect(),
                }));
            }
            tx.commit().await?;
            Ok(results)
        })
    }

    /// Runs the engine: what `op` changes, or why it is refused. Reads only (caches).
    async fn decide(
        &self,
        op: &Op,
        current: Option<Instance>,
        now: i64,
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
                let stored = self
                    .store
                    .definition(corp_id, process_code, None)
                    .await?
                    .ok_or_else(|| EngineError::NotFound(format!("process `{process_code}`")))?;
                let def = self
                    .definition(corp_id, process_code, stored.version)
                    .await?;
                let dir = self.directory(corp_id).await?;
                let (instance, events) = machine::start(
                    &def,
                    Start {
                        id: uuid::Uuid::new_v4().to_string(),
                        corp_id: corp_id.clone(),
                        app_type: stored.app_type.clone(),
                        process_version: stored.version,
                        form_instance_id: uuid::Uuid::new_v4().to_string(),
                        title: title.clone(),
                        originator_id: actor.clone(),
                        form_data: form_data.clone(),
                    },
                    &*dir,
                    now,
                )?;
                Ok(self.change(instance, events, true, &def, &dir))
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
                let dir = self.directory(corp_id).await?;
                let (instance, events) = inst.apply(&def, actor, command, &*dir, now)?;
                Ok(self.change(instance, events, false, &def, &dir))
            }
            (Op::Act { .. }, None) => Err(EngineError::NotFound("instance".into()).into()),
        }
    }

    fn change(
        &self,
        instance: Instance,
        events: Vec<Event>,
        new: bool,
        def: &Definition,
        dir: &DirectorySnapshot,
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
                let task_id = match &e.kind {
                    EventKind::TaskCreated { task_id }
                    | EventKind::TaskFinished { task_id, .. }
                    | EventKind::TaskCancelled { task_id, .. } => Some(task_id.clone()),
                    _ => None,
                };
                let stored = StoredEvent {
                    id: new_id("evt"),
                    seq: e.seq as i64,
                    kind: payload.kind().event_type().to_owned(),
                    task_id,
                    created_at: e.at,
                };
                (stored, e, params)
            })
            .collect();
        Change {
            instance,
            new,
            events,
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
            .expect("cache lock")
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
        self.caches
            .definitions
            .lock()
            .expect("cache lock")
            .insert(key, entry.clone());
        Ok(entry)
    }

    /// The organisation's directory, reloaded when its version moved.
    async fn directory(&self, corp_id: &str) -> Result<Arc<DirectorySnapshot>, WriteError> {
        let version = self.store.directory_version(corp_id).await?.unwrap_or(0);
        if let Some((v, snap)) = self
            .caches
            .directories
            .lock()
            .expect("cache lock")
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
            .expect("cache lock")
            .insert(corp_id.to_owned(), (v, snap.clone()));
        Ok(snap)
    }
}
