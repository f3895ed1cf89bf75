//! The approval state machine: instance state + command → new state + task events.
//!
//! Pure: no I/O, no clock, no randomness. Time (`now`), ids and the directory are inputs; task
//! ids ([`TaskId`]) are derived from the instance id and a counter, so replaying the same inputs gives the
//! same outputs. A command either succeeds as a whole or changes nothing: it runs on a copy.
//!
//! Invariants (property-tested in `tests`): every created task gets exactly one terminal event
//! (`finished`, `cancelled`, or the instance's `deleted`); open tasks = created − terminated;
//! `seq` is gap-free per instance; an instance that is not running has no open task.
//!
//! Positions: a node's place in the definition tree is a [`Pos`], `[i]` for the i-th top-level
//! node, `[i, b, j]` for the j-th node of branch b of node i, and so on.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::condition;
use super::definition::{Definition, EmptyPolicy, Mode, Node, TaskNode};
use super::ids::{InstanceId, TaskId};
use super::resolve::{resolve, Directory};
use super::EngineError;

/// The pseudo node of a task that asks the originator to resubmit (after a return to them).
pub const ORIGINATOR_NODE: &str = "originator";

pub type Pos = Vec<u32>;
pub type DataMap = BTreeMap<String, Option<String>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Running,
    /// Every node completed.
    Approved,
    /// Someone disagreed.
    Rejected,
    Withdrawn,
    Terminated,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Withdrawn => "withdrawn",
            Status::Terminated => "terminated",
            Status::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskStatus {
    Open,
    /// The assignee acted.
    Finished,
    /// Ended without the assignee acting.
    Cancelled,
    /// The instance was deleted while the task was open.
    Deleted,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Finished => "finished",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Deleted => "deleted",
        }
    }
}

/// What the assignee did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Agree,
    Disagree,
    Forward,
    Append,
    Return,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Agree => "agree",
            Action::Disagree => "disagree",
            Action::Forward => "forward",
            Action::Append => "append",
            Action::Return => "return",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub user_id: String,
    pub node_id: String,
    pub node_name: String,
    pub status: TaskStatus,
    pub action: Option<Action>,
    pub remark: Option<String>,
    /// Who ended it (the assignee, or who caused the cancellation).
    pub ended_by: Option<String>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// Why this task went where it did, when the process did not say so itself: a
    /// `whenEmpty: error` node found empty after the start goes to the organisation's admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cc {
    pub id: String,
    pub user_id: String,
    pub node_id: String,
    pub node_name: String,
    pub created_at: i64,
}

/// A task node that is waiting for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub node_id: String,
    pub node_name: String,
    /// Empty for the originator's resubmit task (completing it restarts the process).
    pub pos: Pos,
    pub operator: bool,
    pub mode: Mode,
    pub slots: Vec<Slot>,
}

/// One seat of an activation: a queue of people who act on it in turn (one for or/all, all
/// approvers for oneByOne; forward and append edit the queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub queue: VecDeque<String>,
    pub open_task: Option<String>,
    pub done: bool,
}

/// A parallel node waiting for its branches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    pub pos: Pos,
    pub remaining: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// `processInstanceId`.
    pub id: InstanceId,
    pub corp_id: String,
    pub app_type: String,
    pub process_code: String,
    pub process_version: i64,
    pub form_uuid: Option<String>,
    pub form_instance_id: String,
    pub title: String,
    pub originator_id: String,
    pub form_data: DataMap,
    pub status: Status,
    /// The `seq` of the last event.
    pub seq: u64,
    pub next_task: u64,
    pub next_cc: u64,
    pub tasks: BTreeMap<String, Task>,
    pub ccs: Vec<Cc>,
    pub activations: Vec<Activation>,
    pub joins: Vec<Join>,
    /// Ids of task nodes completed so far (return targets).
    pub completed: Vec<String>,
    pub created_at: i64,
    pub modified_at: i64,
    pub finished_at: Option<i64>,
}

/// What happened, to which task or cc record: the engine's side of a task event. The store
/// renders it into its Yida payload, whose kind (`flowhook_sign::event::EventKind`, one of the
/// five) is the event's kind everywhere after that: stored, delivered, shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKind {
    TaskCreated { task_id: String },
    TaskFinished { task_id: String, actor: String },
    TaskCancelled { task_id: String, by: String },
    InstanceDeleted { by: String },
    Cc { cc_id: String },
}

impl EventKind {
    /// The task the event is about (created, finished, cancelled).
    pub fn task_id(&self) -> Option<&str> {
        match self {
            EventKind::TaskCreated { task_id }
            | EventKind::TaskFinished { task_id, .. }
            | EventKind::TaskCancelled { task_id, .. } => Some(task_id),
            EventKind::InstanceDeleted { .. } | EventKind::Cc { .. } => None,
        }
    }
}

/// One task event, numbered within its instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: i64,
    pub kind: EventKind,
}

/// How to start an instance.
#[derive(Debug, Clone)]
pub struct Start {
    pub id: InstanceId,
    pub corp_id: String,
    pub app_type: String,
    pub process_version: i64,
    pub form_instance_id: String,
    pub title: String,
    pub originator_id: String,
    pub form_data: DataMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AppendPosition {
    /// The added people act first, then the task comes back to its assignee.
    Before,
    /// The assignee's part is done; the added people act next.
    After,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReturnTarget {
    Originator,
    Node(String),
}

/// A command on a running instance; `actor` is the acting user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Agree {
        task_id: String,
        remark: Option<String>,
    },
    Disagree {
        task_id: String,
        remark: Option<String>,
    },
    Forward {
        task_id: String,
        to: String,
        remark: Option<String>,
    },
    Append {
        task_id: String,
        users: Vec<String>,
        position: AppendPosition,
    },
    Return {
        task_id: String,
        target: ReturnTarget,
    },
    Withdraw,
    Terminate,
    Delete,
}

/// Starts an instance: runs from the first node until people are needed (or the end).
pub fn start(
    def: &Definition,
    s: Start,
    dir: &dyn Directory,
    now: i64,
) -> Result<(Instance, Vec<Event>), EngineError> {
    if dir.person(&s.originator_id).is_none() {
        return Err(EngineError::Invalid(format!(
            "unknown user `{}`",
            s.originator_id
        )));
    }
    let inst = Instance {
        id: s.id,
        corp_id: s.corp_id,
        app_type: s.app_type,
        process_code: def.process_code.clone(),
        process_version: s.process_version,
        form_uuid: def.form_uuid.clone(),
        form_instance_id: s.form_instance_id,
        title: s.title,
        originator_id: s.originator_id,
        form_data: s.form_data,
        status: Status::Running,
        seq: 0,
        next_task: 0,
        next_cc: 0,
        tasks: BTreeMap::new(),
        ccs: Vec::new(),
        activations: Vec::new(),
        joins: Vec::new(),
        completed: Vec::new(),
        created_at: now,
        modified_at: now,
        finished_at: None,
    };
    // Every `whenEmpty: error` node the form data leads to must have someone now, as the
    // designer's approver preview shows: refused at the start, naming the node, rather than
    // leaving an earlier approver unable to act.
    check_when_empty(&def.nodes, &inst, dir)?;
    let mut run = Run {
        def,
        dir,
        now,
        inst,
        events: Vec::new(),
        starting: true,
    };
    run.enter(vec![0])?;
    Ok((run.inst, run.events))
}

/// The first `whenEmpty: error` task node on the path `inst`'s form data selects through
/// `nodes` (routes: the branch the form data picks; parallels: every branch) that resolves to
/// nobody, as `NoApprover`.
fn check_when_empty(
    nodes: &[Node],
    inst: &Instance,
    dir: &dyn Directory,
) -> Result<(), EngineError> {
    for node in nodes {
        match node {
            Node::Approval(n) | Node::Operator(n) => {
                if n.when_empty == EmptyPolicy::Error
                    && resolve(&n.approvers, &inst.originator_id, &inst.form_data, dir).is_empty()
                {
                    return Err(EngineError::NoApprover(n.id.clone()));
                }
            }
            Node::Carbon(_) => {}
            Node::Route(r) => {
                let chosen = r.branches.iter().find(|b| {
                    b.default
                        || b.condition
                            .as_ref()
                            .is_some_and(|c| condition::holds(c, &inst.form_data))
                });
                if let Some(b) = chosen {
                    check_when_empty(&b.nodes, inst, dir)?;
                }
            }
            Node::Parallel(p) => {
                for b in &p.branches {
                    check_when_empty(&b.nodes, inst, dir)?;
                }
            }
        }
    }
    Ok(())
}

impl Instance {
    /// Applies `command` by `actor`; `self` is left unchanged.
    pub fn apply(
        &self,
        def: &Definition,
        actor: &str,
        command: &Command,
        dir: &dyn Directory,
        now: i64,
    ) -> Result<(Instance, Vec<Event>), EngineError> {
        let mut run = Run {
            def,
            dir,
            now,
            inst: self.clone(),
            events: Vec::new(),
            starting: false,
        };
        run.command(actor, command)?;
        run.inst.modified_at = now;
        Ok((run.inst, run.events))
    }

    pub fn open_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().filter(|t| t.status == TaskStatus::Open)
    }

    pub fn is_admin(dir: &dyn Directory, user: &str) -> bool {
        dir.person(user).is_some_and(|p| p.admin)
    }
}

/// What one user may do on an instance now: the console shows exactly these actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// The user's open tasks and, for each, what the engine allows on it.
    pub tasks: Vec<TaskActions>,
    pub withdraw: bool,
    pub terminate: bool,
    pub delete: bool,
}

/// The commands a user may run on one of their open tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskActions {
    pub task_id: String,
    pub agree: bool,
    pub disagree: bool,
    pub forward: bool,
    pub append: bool,
    /// Nodes already passed that a return may go back to, as (id, name).
    pub return_nodes: Vec<(String, String)>,
    pub return_to_originator: bool,
}

impl Instance {
    /// What `actor` may do now, by the same checks the commands make. Agree, disagree,
    /// withdraw, terminate and delete are tried on a copy (pure), so an action that would fail
    /// further on (no approver at the next node) is not offered; forward, append and return
    /// take arguments and are offered when their preconditions hold.
    pub fn allowed(&self, def: &Definition, actor: &str, dir: &dyn Directory) -> Allowed {
        let now = self.modified_at;
        let works = |c: Command| self.apply(def, actor, &c, dir, now).is_ok();
        let run = Run {
            def,
            dir,
            now,
            inst: self.clone(),
            events: Vec::new(),
            starting: false,
        };
        let mut tasks = Vec::new();
        for t in self.open_tasks().filter(|t| t.user_id == actor) {
            let Ok((a, _)) = run.acting_on(&t.id, actor) else {
                continue;
            };
            let full = run.require_not_resubmit(a).is_ok();
            let mut seen = std::collections::HashSet::new();
            let return_nodes = if full {
                self.completed
                    .iter()
                    .filter(|id| seen.insert(id.as_str()))
                    .filter(|id| run.return_position(id).is_ok())
                    .map(|id| {
                        let name = def
                            .find(id)
                            .and_then(|p| def.node_at(&p))
                            .map_or_else(|| id.clone(), |n| n.name().to_owned());
                        (id.clone(), name)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            tasks.push(TaskActions {
                task_id: t.id.clone(),
                agree: works(Command::Agree {
                    task_id: t.id.clone(),
                    remark: None,
                }),
                disagree: works(Command::Disagree {
                    task_id: t.id.clone(),
                    remark: None,
                }),
                forward: full,
                append: full,
                return_nodes,
                return_to_originator: full,
            });
        }
        tasks.sort_by_key(|t| TaskId::order_key(&t.task_id));
        Allowed {
            tasks,
            withdraw: works(Command::Withdraw),
            terminate: works(Command::Terminate),
            delete: works(Command::Delete),
        }
    }
}

struct Run<'a> {
    def: &'a Definition,
    dir: &'a dyn Directory,
    now: i64,
    inst: Instance,
    events: Vec<Event>,
    /// Starting: an empty `whenEmpty: error` node refuses the start. After it, such a node
    /// (the directory changed since) goes to the organisation's admins, with a note.
    starting: bool,
}

fn next(pos: &[u32]) -> Pos {
    let mut p = pos.to_vec();
    if let Some(last) = p.last_mut() {
        *last += 1;
    }
    p
}

impl Run<'_> {
    fn emit(&mut self, kind: EventKind) {
        self.inst.seq += 1;
        self.events.push(Event {
            seq: self.inst.seq,
            at: self.now,
            kind,
        });
    }

    fn create_task(&mut self, user: &str, node_id: &str, node_name: &str) -> String {
        self.inst.next_task += 1;
        let id = TaskId::new(self.inst.id.clone(), self.inst.next_task).to_string();
        self.inst.tasks.insert(
            id.clone(),
            Task {
                id: id.clone(),
                user_id: user.to_owned(),
                node_id: node_id.to_owned(),
                node_name: node_name.to_owned(),
                status: TaskStatus::Open,
                action: None,
                remark: None,
                ended_by: None,
                created_at: self.now,
                ended_at: None,
                note: None,
            },
        );
        self.emit(EventKind::TaskCreated {
            task_id: id.clone(),
        });
        id
    }

    fn finish_task(&mut self, id: &str, actor: &str, action: Action, remark: Option<String>) {
        let t = self.inst.tasks.get_mut(id).expect("checked by the caller");
        t.status = TaskStatus::Finished;
        t.action = Some(action);
        t.remark = remark;
        t.ended_by = Some(actor.to_owned());
        t.ended_at = Some(self.now);
        self.emit(EventKind::TaskFinished {
            task_id: id.to_owned(),
            actor: actor.to_owned(),
        });
    }

    fn cancel_task(&mut self, id: &str, by: &str) {
        let t = self.inst.tasks.get_mut(id).expect("a known task");
        if t.status != TaskStatus::Open {
            return;
        }
        t.status = TaskStatus::Cancelled;
        t.ended_by = Some(by.to_owned());
        t.ended_at = Some(self.now);
        self.emit(EventKind::TaskCancelled {
            task_id: id.to_owned(),
            by: by.to_owned(),
        });
    }

    /// Cancels every open task and forgets every activation and join.
    fn cancel_everything(&mut self, by: &str) {
        let open: Vec<String> = self.open_task_ids();
        for id in open {
            self.cancel_task(&id, by);
        }
        self.inst.activations.clear();
        self.inst.joins.clear();
    }

    /// Open task ids in creation order.
    fn open_task_ids(&self) -> Vec<String> {
        let mut open: Vec<(&String, u64)> = self
            .inst
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Open)
            .map(|t| (&t.id, TaskId::order_key(&t.id)))
            .collect();
        open.sort_by_key(|(_, n)| *n);
        open.into_iter().map(|(id, _)| id.clone()).collect()
    }

    fn end_instance(&mut self, status: Status) {
        self.inst.status = status;
        self.inst.finished_at = Some(self.now);
    }

    /// Runs from `pos` until people are needed or the process ends.
    fn enter(&mut self, mut pos: Pos) -> Result<(), EngineError> {
        let def = self.def;
        loop {
            let Some(node) = def.node_at(&pos) else {
                // The end of a sequence.
                if pos.len() <= 1 {
                    self.end_instance(Status::Approved);
                    return Ok(());
                }
                let parent: Pos = pos[..pos.len() - 2].to_vec();
                match def.node_at(&parent) {
                    Some(Node::Route(_)) => {
                        pos = next(&parent);
                        continue;
                    }
                    Some(Node::Parallel(_)) => {
                        let j = self
                            .inst
                            .joins
                            .iter()
                            .position(|j| j.pos == parent)
                            .ok_or_else(|| {
                                EngineError::Corrupt("a branch ended without its join".into())
                            })?;
                        self.inst.joins[j].remaining -= 1;
                        if self.inst.joins[j].remaining > 0 {
                            return Ok(());
                        }
                        self.inst.joins.remove(j);
                        pos = next(&parent);
                        continue;
                    }
                    _ => {
                        return Err(EngineError::Corrupt(
                            "a position outside the definition".into(),
                        ))
                    }
                }
            };
            match node {
                Node::Approval(n) | Node::Operator(n) => {
                    let operator = matches!(node, Node::Operator(_));
                    if self.activate(&pos, n, operator)? {
                        return Ok(());
                    }
                    self.inst.completed.push(n.id.clone());
                    pos = next(&pos);
                }
                Node::Carbon(n) => {
                    let users = resolve(
                        &n.recipients,
                        &self.inst.originator_id,
                        &self.inst.form_data,
                        self.dir,
                    );
                    for user in users {
                        self.inst.next_cc += 1;
                        let id = format!("{}-c{}", self.inst.id, self.inst.next_cc);
                        self.inst.ccs.push(Cc {
                            id: id.clone(),
                            user_id: user,
                            node_id: n.id.clone(),
                            node_name: n.name.clone(),
                            created_at: self.now,
                        });
                        self.emit(EventKind::Cc { cc_id: id });
                    }
                    pos = next(&pos);
                }
                Node::Route(r) => {
                    let form = &self.inst.form_data;
                    let chosen = r
                        .branches
                        .iter()
                        .position(|b| {
                            b.default
                                || b.condition
                                    .as_ref()
                                    .is_some_and(|c| condition::holds(c, form))
                        })
                        .ok_or_else(|| {
                            EngineError::Corrupt(format!("route `{}` has no default branch", r.id))
                        })?;
                    pos.extend([chosen as u32, 0]);
                }
                Node::Parallel(p) => {
                    if p.branches.is_empty() {
                        pos = next(&pos);
                        continue;
                    }
                    self.inst.joins.push(Join {
                        pos: pos.clone(),
                        remaining: p.branches.len() as u32,
                    });
                    for b in 0..p.branches.len() {
                        let mut branch = pos.clone();
                        branch.extend([b as u32, 0]);
                        self.enter(branch)?;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Creates the tasks of a task node; `false` when nobody is needed (auto-approved).
    fn activate(&mut self, pos: &[u32], n: &TaskNode, operator: bool) -> Result<bool, EngineError> {
        let mut users = resolve(
            &n.approvers,
            &self.inst.originator_id,
            &self.inst.form_data,
            self.dir,
        );
        let mut note = None;
        if users.is_empty() {
            match n.when_empty {
                EmptyPolicy::AutoApprove => return Ok(false),
                EmptyPolicy::Admin => users = self.dir.admins(),
                EmptyPolicy::Error if self.starting => {}
                EmptyPolicy::Error => {
                    // Checked at the start; empty now means the directory changed since. The
                    // approver before must not be stuck: the admins decide, and the task says why.
                    users = self.dir.admins();
                    note = Some(format!(
                        "`{}` had no approver (whenEmpty: error; the directory changed since the \
                         start): assigned to the organisation's admins",
                        n.id
                    ));
                }
            }
            if users.is_empty() {
                return Err(EngineError::NoApprover(n.id.clone()));
            }
        }
        let slots: Vec<Slot> = match n.mode {
            Mode::OneByOne => vec![Slot {
                queue: users.into(),
                open_task: None,
                done: false,
            }],
            Mode::Or | Mode::All => users
                .into_iter()
                .map(|u| Slot {
                    queue: VecDeque::from([u]),
                    open_task: None,
                    done: false,
                })
                .collect(),
        };
        self.inst.activations.push(Activation {
            node_id: n.id.clone(),
            node_name: n.name.clone(),
            pos: pos.to_vec(),
            operator,
            mode: n.mode,
            slots,
        });
        let a = self.inst.activations.len() - 1;
        for s in 0..self.inst.activations[a].slots.len() {
            self.open_slot(a, s);
            if let Some(note) = &note {
                let id = self.inst.activations[a].slots[s].open_task.clone();
                if let Some(t) = id.and_then(|id| self.inst.tasks.get_mut(&id)) {
                    t.note = Some(note.clone());
                }
            }
        }
        Ok(true)
    }

    /// Gives the slot's first queued person a task.
    fn open_slot(&mut self, a: usize, s: usize) {
        let act = &self.inst.activations[a];
        let user = act.slots[s]
            .queue
            .front()
            .expect("a slot being opened has a queue")
            .clone();
        let (node_id, node_name) = (act.node_id.clone(), act.node_name.clone());
        let id = self.create_task(&user, &node_id, &node_name);
        self.inst.activations[a].slots[s].open_task = Some(id);
    }

    /// The activation and slot holding an open task.
    fn locate(&self, task_id: &str) -> Result<(usize, usize), EngineError> {
        for (a, act) in self.inst.activations.iter().enumerate() {
            for (s, slot) in act.slots.iter().enumerate() {
                if slot.open_task.as_deref() == Some(task_id) {
                    return Ok((a, s));
                }
            }
        }
        Err(EngineError::Corrupt(format!(
            "open task `{task_id}` belongs to no node"
        )))
    }

    /// Refuses `user` as a new assignee of activation `a` when they already hold an open task
    /// there or wait in one of its queues (appending oneself included): they would act twice.
    fn require_not_assignee(&self, a: usize, user: &str) -> Result<(), EngineError> {
        let act = &self.inst.activations[a];
        let holds = act.slots.iter().any(|slot| {
            slot.queue.iter().any(|q| q == user)
                || slot
                    .open_task
                    .as_ref()
                    .and_then(|t| self.inst.tasks.get(t))
                    .is_some_and(|t| t.user_id == user)
        });
        if holds {
            return Err(EngineError::AlreadyAssignee {
                user: user.to_owned(),
                node: act.node_id.clone(),
            });
        }
        Ok(())
    }

    fn command(&mut self, actor: &str, command: &Command) -> Result<(), EngineError> {
        if self.inst.status == Status::Deleted {
            return Err(EngineError::NotFound("instance".into()));
        }
        match command {
            Command::Withdraw => {
                self.require_running()?;
                if actor != self.inst.originator_id {
                    return Err(EngineError::Forbidden(
                        "only the originator withdraws an instance".into(),
                    ));
                }
                self.cancel_everything(actor);
                self.end_instance(Status::Withdrawn);
                Ok(())
            }
            Command::Terminate => {
                self.require_running()?;
                self.require_admin(actor, "terminates")?;
                self.cancel_everything(actor);
                self.end_instance(Status::Terminated);
                Ok(())
            }
            Command::Delete => {
                self.require_admin(actor, "deletes")?;
                for t in self
                    .inst
                    .tasks
                    .values_mut()
                    .filter(|t| t.status == TaskStatus::Open)
                {
                    t.status = TaskStatus::Deleted;
                    t.ended_by = Some(actor.to_owned());
                    t.ended_at = Some(self.now);
                }
                self.inst.activations.clear();
                self.inst.joins.clear();
                // A tombstone: Yida deletes the form data with the instance.
                self.inst.form_data.clear();
                self.emit(EventKind::InstanceDeleted {
                    by: actor.to_owned(),
                });
                self.end_instance(Status::Deleted);
                Ok(())
            }
            Command::Agree { task_id, remark } => {
                let (a, s) = self.acting_on(task_id, actor)?;
                self.finish_task(task_id, actor, Action::Agree, remark.clone());
                let slot = &mut self.inst.activations[a].slots[s];
                slot.open_task = None;
                slot.queue.pop_front();
                if slot.queue.is_empty() {
                    slot.done = true;
                } else {
                    self.open_slot(a, s);
                }
                self.after_progress(a, actor)
            }
            Command::Disagree { task_id, remark } => {
                let (a, _) = self.acting_on(task_id, actor)?;
                if self.inst.activations[a].operator {
                    return Err(EngineError::Conflict(
                        "this task cannot be rejected: submit it, or return it".into(),
                    ));
                }
                self.finish_task(task_id, actor, Action::Disagree, remark.clone());
                self.cancel_everything(actor);
                self.end_instance(Status::Rejected);
                Ok(())
            }
            Command::Forward {
                task_id,
                to,
                remark,
            } => {
                let (a, s) = self.acting_on(task_id, actor)?;
                self.require_not_resubmit(a)?;
                self.require_user(to)?;
                if to == actor {
                    return Err(EngineError::Invalid(
                        "a task cannot be forwarded to its own assignee".into(),
                    ));
                }
                self.require_not_assignee(a, to)?;
                self.finish_task(task_id, actor, Action::Forward, remark.clone());
                let slot = &mut self.inst.activations[a].slots[s];
                slot.open_task = None;
                slot.queue.pop_front();
                slot.queue.push_front(to.clone());
                self.open_slot(a, s);
                Ok(())
            }
            Command::Append {
                task_id,
                users,
                position,
            } => {
                let (a, s) = self.acting_on(task_id, actor)?;
                self.require_not_resubmit(a)?;
                if users.is_empty() {
                    return Err(EngineError::Invalid("name at least one user to add".into()));
                }
                for (i, u) in users.iter().enumerate() {
                    self.require_user(u)?;
                    self.require_not_assignee(a, u)?;
                    if users[..i].contains(u) {
                        return Err(EngineError::AlreadyAssignee {
                            user: u.clone(),
                            node: self.inst.activations[a].node_id.clone(),
                        });
                    }
                }
                self.finish_task(task_id, actor, Action::Append, None);
                let slot = &mut self.inst.activations[a].slots[s];
                slot.open_task = None;
                if *position == AppendPosition::After {
                    slot.queue.pop_front();
                }
                for u in users.iter().rev() {
                    slot.queue.push_front(u.clone());
                }
                self.open_slot(a, s);
                Ok(())
            }
            Command::Return { task_id, target } => {
                let (a, _) = self.acting_on(task_id, actor)?;
                self.require_not_resubmit(a)?;
                let target_pos = match target {
                    ReturnTarget::Originator => None,
                    ReturnTarget::Node(id) => Some(self.return_position(id)?),
                };
                self.finish_task(task_id, actor, Action::Return, None);
                self.cancel_everything(actor);
                match target_pos {
                    Some(pos) => self.enter(pos),
                    None => {
                        let originator = self.inst.originator_id.clone();
                        self.inst.activations.push(Activation {
                            node_id: ORIGINATOR_NODE.into(),
                            node_name: "Resubmit".into(),
                            pos: Vec::new(),
                            operator: true,
                            mode: Mode::Or,
                            slots: vec![Slot {
                                queue: VecDeque::from([originator]),
                                open_task: None,
                                done: false,
                            }],
                        });
                        let a = self.inst.activations.len() - 1;
                        self.open_slot(a, 0);
                        Ok(())
                    }
                }
            }
        }
    }

    /// After a slot progressed: completes the node when its mode says so.
    fn after_progress(&mut self, a: usize, actor: &str) -> Result<(), EngineError> {
        let act = &self.inst.activations[a];
        let complete = match act.mode {
            Mode::Or => act.slots.iter().any(|s| s.done),
            Mode::All | Mode::OneByOne => act.slots.iter().all(|s| s.done),
        };
        if !complete {
            return Ok(());
        }
        let act = self.inst.activations.remove(a);
        for slot in &act.slots {
            if let Some(t) = &slot.open_task {
                self.cancel_task(t, actor);
            }
        }
        if act.pos.is_empty() {
            // The originator resubmitted: the process starts over.
            return self.enter(vec![0]);
        }
        self.inst.completed.push(act.node_id.clone());
        self.enter(next(&act.pos))
    }

    fn return_position(&self, node_id: &str) -> Result<Pos, EngineError> {
        let pos = self
            .def
            .find(node_id)
            .ok_or_else(|| EngineError::Invalid(format!("no node `{node_id}` in this process")))?;
        if !matches!(
            self.def.node_at(&pos),
            Some(Node::Approval(_) | Node::Operator(_))
        ) {
            return Err(EngineError::Invalid(format!(
                "`{node_id}` is not an approval or operator node"
            )));
        }
        if !self.inst.completed.iter().any(|c| c == node_id) {
            return Err(EngineError::Invalid(format!(
                "`{node_id}` is not an earlier node of this instance"
            )));
        }
        for k in (1..pos.len()).step_by(2) {
            if matches!(self.def.node_at(&pos[..k]), Some(Node::Parallel(_))) {
                return Err(EngineError::Invalid(format!(
                    "`{node_id}` is inside a parallel branch; return to a node before the parallel node"
                )));
            }
        }
        Ok(pos)
    }

    fn require_running(&self) -> Result<(), EngineError> {
        if self.inst.status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "the instance is {}",
                self.inst.status.as_str()
            )));
        }
        Ok(())
    }

    fn require_admin(&self, actor: &str, what: &str) -> Result<(), EngineError> {
        if !Instance::is_admin(self.dir, actor) {
            return Err(EngineError::Forbidden(format!(
                "only an admin {what} an instance"
            )));
        }
        Ok(())
    }

    fn require_user(&self, user: &str) -> Result<(), EngineError> {
        if self.dir.person(user).is_none() {
            return Err(EngineError::Invalid(format!("unknown user `{user}`")));
        }
        Ok(())
    }

    fn require_not_resubmit(&self, a: usize) -> Result<(), EngineError> {
        if self.inst.activations[a].pos.is_empty() {
            return Err(EngineError::Conflict(
                "a returned instance can only be resubmitted (agree) or withdrawn".into(),
            ));
        }
        Ok(())
    }

    /// Checks that `actor` may act on `task_id` now; returns its activation and slot.
    fn acting_on(&self, task_id: &str, actor: &str) -> Result<(usize, usize), EngineError> {
        let task = self
            .inst
            .tasks
            .get(task_id)
            .ok_or_else(|| EngineError::NotFound(format!("task `{task_id}`")))?;
        if task.user_id != actor {
            return Err(EngineError::Forbidden(
                "only the task's assignee acts on it".into(),
            ));
        }
        if task.status != TaskStatus::Open {
            return Err(EngineError::Conflict(format!(
                "the task is {}",
                task.status.as_str()
            )));
        }
        self.require_running()?;
        self.locate(task_id)
    }
}
