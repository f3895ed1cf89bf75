//! External ingest: task events produced by another workflow engine (a Flowable or Camunda task
//! listener, an in-house system) enter the same outbox as Flowhook's own — numbered per process
//! instance, fanned out to the strategy's actions in the same transaction — so Flowhook is the
//! reliable, signed relay for any BPM.
//!
//! Every key is the organisation's: an ingested instance id lives in its organisation's
//! namespace (its `seq` and its ordering lane are per `(corp_id, instance_id)`), and the
//! caller's `eventId` is unique per organisation (`events.source_event_id`; the row's own id is
//! Flowhook's). What one organisation relays can neither block, renumber nor reveal another's.
//! An id naming one of the organisation's own Flowhook instances is refused: that lane's `seq`
//! belongs to the engine.
//!
//! Idempotent: a caller that retries with the same `eventId` gets the stored event back, and no
//! second delivery.
//!
//! Group commit: ingest calls are jobs of the command writer (`store::writer`), decided and
//! written in its batches with the commands and attempt records queued meanwhile — ONE
//! transaction, one fsync for all — with a constant number of statements: the idempotency,
//! own-instance and `seq` reads are set-based ([`read_stored!`]), the decisions pure
//! ([`plan`]), the event inserts multi-row ([`write_events_in!`]) and their deliveries inserted
//! with the batch's others. Each call is all or nothing (a batch call's events with it). The
//! heads of their lanes are leased to the local dispatcher in the same transaction and handed
//! to it at commit, as the engine's fresh deliveries are.

use std::collections::{HashMap, HashSet};

use flowhook_sign::event::TaskEvent;

use super::claims::DeliveryEvent;
use super::deliveries::DeliveryId;
use super::writer::StoredEvent;
use super::StoreError;
use crate::engine::ids::InstanceId;
use crate::integration::connectors::Strategy;
use crate::integration::render::stored_params;
use crate::support::new_id;

/// Rows per multi-row statement (well under both backends' bind-parameter limits).
pub(crate) const CHUNK: usize = 500;

/// One event to relay.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// For the strategy's process filter.
    pub process_code: Option<String>,
    /// The other engine's instance: the lane and the `seq` counter, in the organisation's
    /// namespace.
    pub instance_id: InstanceId,
    pub event: TaskEvent,
    /// The caller's id of the event: a retry with it is answered with the stored event.
    pub event_id: Option<String>,
}

/// One ingest call: the events of one organisation, stored all or none.
#[derive(Debug, Clone)]
pub struct IngestCall {
    pub corp_id: String,
    pub events: Vec<Relayed>,
}

/// What was ingested, per event.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub event: StoredEvent,
    /// `false` when `event_id` was already stored (a retry).
    pub created: bool,
    pub deliveries: usize,
}

/// Why a call was not ingested (none of its events were).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The instance id of the call's event `index` is one of the organisation's own Flowhook
    /// instances.
    #[error("processInstanceId `{instance}` is one of this organisation's Flowhook instances; relayed instances need ids of their own")]
    OwnInstance { index: usize, instance: InstanceId },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the writer has stopped")]
    Stopped,
    /// The call broke an invariant of the writer (a bug, logged with its panic): nothing of it
    /// was written.
    #[error("the events could not be stored: an internal error (logged); nothing was written")]
    Internal,
}

/// What an ingest batch's decisions read from the database (see [`read_stored!`]).
#[derive(Default)]
pub(crate) struct Stored {
    /// Events stored before, by (organisation, caller's event id).
    pub(crate) known: HashMap<(String, String), StoredEvent>,
    /// The organisations' own Flowhook instances among the ids named.
    pub(crate) own: HashSet<(String, InstanceId)>,
    /// The last `seq` of each instance named.
    pub(crate) last_seq: HashMap<(String, InstanceId), i64>,
}

/// Per organisation: the caller's event ids and the instance ids `calls` name, each once.
pub(crate) fn named(calls: &[IngestCall]) -> HashMap<&str, (Vec<&str>, Vec<&str>)> {
    let mut named: HashMap<&str, (Vec<&str>, Vec<&str>)> = HashMap::new();
    for c in calls {
        let entry = named.entry(&c.corp_id).or_default();
        for r in &c.events {
            entry.0.extend(r.event_id.as_deref());
            entry.1.push(r.instance_id.as_str());
        }
    }
    for (ids, instances) in named.values_mut() {
        ids.sort_unstable();
        ids.dedup();
        instances.sort_unstable();
        instances.dedup();
    }
    named
}

/// Reads what is stored already for the calls `$named` ([`named`]) on `$tx` (the writer's
/// connection, under its write gate): events by caller id, the organisations' own instances,
/// the last `seq` of each instance. Set-based: a constant number of statements however many
/// calls. A macro: each backend's connection is its own type.
///
/// `$prepared` false (PostgreSQL): the statements are planned anew each time, for their
/// parameters and the tables' size now. Kept prepared, PostgreSQL switches a statement to a
/// generic plan after five runs — here chosen while a new database's `events` was small, a
/// sequential scan — and keeps it as the table grows until the next `ANALYZE`: measured, these
/// reads took 23 ms each after 10,000 events and the ingest throughput fell fourfold within
/// the run (`bench delivery --via ingest`, 490–894 events/s against 2,100–2,400).
macro_rules! read_stored {
    ($tx:ident, $named:expr, $prepared:expr) => {{
        let mut stored = $crate::store::ingest::Stored::default();
        for (corp, (ids, instances)) in $named.iter() {
            for chunk in ids.chunks($crate::store::ingest::CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT source_event_id, id, seq, kind, task_id, created_at FROM events WHERE corp_id = ",
                );
                q.push_bind(*corp);
                q.push(" AND source_event_id IS NOT NULL AND source_event_id");
                $crate::store::push_in_list(&mut q, chunk.iter().copied());
                let rows: Vec<(String, String, i64, String, Option<String>, i64)> =
                    q.build_query_as().persistent($prepared).fetch_all(&mut *$tx).await?;
                for (eid, id, seq, kind, task_id, created_at) in rows {
                    stored.known.insert(
                        ((*corp).to_owned(), eid),
                        $crate::store::writer::StoredEvent {
                            id,
                            seq,
                            kind: kind.parse()?,
                            task_id,
                            created_at,
                        },
                    );
                }
            }
            for chunk in instances.chunks($crate::store::ingest::CHUNK) {
                let mut q = sqlx::QueryBuilder::new("SELECT id FROM instances WHERE corp_id = ");
                q.push_bind(*corp);
                q.push(" AND id");
                $crate::store::push_in_list(&mut q, chunk.iter().copied());
                let rows: Vec<(InstanceId,)> = q.build_query_as().persistent($prepared).fetch_all(&mut *$tx).await?;
                stored.own.extend(rows.into_iter().map(|(id,)| ((*corp).to_owned(), id)));

                let mut q = sqlx::QueryBuilder::new(
                    "SELECT instance_id, MAX(seq) FROM events WHERE corp_id = ",
                );
                q.push_bind(*corp);
                q.push(" AND instance_id");
                $crate::store::push_in_list(&mut q, chunk.iter().copied());
                q.push(" GROUP BY instance_id");
                let rows: Vec<(InstanceId, i64)> = q.build_query_as().persistent($prepared).fetch_all(&mut *$tx).await?;
                stored.last_seq.extend(rows.into_iter().map(|(id, s)| (((*corp).to_owned(), id), s)));
            }
        }
        stored
    }};
}
pub(crate) use read_stored;

/// A new event row and its delivery, decided before anything is written.
pub(crate) struct NewEvent<'a> {
    pub(crate) corp_id: &'a str,
    pub(crate) relayed: &'a Relayed,
    pub(crate) stored: StoredEvent,
    params: Vec<(String, String)>,
    pub(crate) params_json: String,
    /// The delivery's (id, action, ordered), when the strategy takes this event.
    pub(crate) delivery: Option<(DeliveryId, String, bool)>,
}

impl NewEvent<'_> {
    /// The event as its delivery's request needs it (a handed-over delivery carries it).
    pub(crate) fn delivery_event(&self) -> DeliveryEvent {
        DeliveryEvent {
            kind: self.stored.kind,
            seq: self.stored.seq,
            app_type: self.relayed.event.app_type().to_owned(),
            params: self.params.clone(),
            source_id: self.relayed.event_id.clone(),
        }
    }
}

/// The decisions of an ingest batch: each call's answer and the rows to write.
pub(crate) struct Plan<'a> {
    /// One per call, in order.
    pub(crate) results: Vec<Result<Vec<Ingested>, IngestError>>,
    /// The new events of the accepted calls, in order.
    pub(crate) rows: Vec<NewEvent<'a>>,
}

/// Decides, call by call, from what is `stored` and each organisation's strategy: the next
/// `seq` of each instance (in order), the answers to retries, the refusals. A refused call
/// leaves no trace in what later calls see. Pure: nothing is written.
pub(crate) fn plan<'a>(
    calls: &'a [IngestCall],
    mut stored: Stored,
    strategies: &HashMap<String, Option<Strategy>>,
    now: i64,
) -> Plan<'a> {
    let Stored {
        known,
        own,
        last_seq,
    } = &mut stored;
    let mut results = Vec::with_capacity(calls.len());
    let mut rows: Vec<NewEvent> = Vec::new();
    for call in calls {
        let corp = call.corp_id.as_str();
        let strategy = strategies.get(corp).and_then(Option::as_ref);
        let mut answer = Vec::with_capacity(call.events.len());
        let mut staged: Vec<NewEvent> = Vec::new();
        let mut seqs: HashMap<&InstanceId, i64> = HashMap::new();
        let mut ids: HashMap<&str, StoredEvent> = HashMap::new();
        let mut refused = None;
        for (index, r) in call.events.iter().enumerate() {
            if let Some(eid) = r.event_id.as_deref() {
                let before = ids
                    .get(eid)
                    .or_else(|| known.get(&(corp.to_owned(), eid.to_owned())));
                if let Some(stored) = before {
                    answer.push(Ingested {
                        event: stored.clone(),
                        created: false,
                        deliveries: 0,
                    });
                    continue;
                }
            }
            if own.contains(&(corp.to_owned(), r.instance_id.clone())) {
                refused = Some(IngestError::OwnInstance {
                    index,
                    instance: r.instance_id.clone(),
                });
                break;
            }
            let seq = match seqs.get(&r.instance_id) {
                Some(s) => s + 1,
                None => {
                    last_seq
                        .get(&(corp.to_owned(), r.instance_id.clone()))
                        .copied()
                        .unwrap_or(0)
                        + 1
                }
            };
            seqs.insert(&r.instance_id, seq);
            let kind = r.event.kind();
            let task_id = match &r.event {
                TaskEvent::Created(t) => t.task_id.clone(),
                TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => Some(e.task_id.clone()),
                TaskEvent::Deleted(_) | TaskEvent::Cc(_) => None,
            };
            let stored = StoredEvent {
                id: new_id("evt"),
                seq,
                kind,
                task_id,
                created_at: now,
            };
            let params: Vec<(String, String)> = stored_params(&r.event)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let params_json = serde_json::to_string(&params).expect("strings serialise");
            let delivery = strategy
                .filter(|s| s.selects(r.event.app_type(), r.process_code.as_deref().unwrap_or("")))
                .and_then(|s| s.actions.for_kind(kind).map(|a| (a.to_owned(), s.ordered)))
                .map(|(action, ordered)| (DeliveryId::fresh(), action, ordered));
            if let Some(eid) = r.event_id.as_deref() {
                ids.insert(eid, stored.clone());
            }
            answer.push(Ingested {
                event: stored.clone(),
                created: true,
                deliveries: usize::from(delivery.is_some()),
            });
            staged.push(NewEvent {
                corp_id: corp,
                relayed: r,
                stored,
                params,
                params_json,
                delivery,
            });
        }
        match refused {
            Some(e) => results.push(Err(e)),
            None => {
                // What later calls of the batch see: these seqs and event ids.
                for (instance, seq) in seqs {
                    last_seq.insert((corp.to_owned(), instance.clone()), seq);
                }
                for (eid, stored) in ids {
                    known.insert((corp.to_owned(), eid.to_owned()), stored);
                }
                rows.extend(staged);
                results.push(Ok(answer));
            }
        }
    }
    Plan { results, rows }
}

/// Write: the multi-row inserts of a plan's events, added to the writer's `$script` (their
/// deliveries are written with the batch's others, after them).
macro_rules! write_events_in {
    ($script:ident, $rows:expr, $now:expr) => {{
        let rows: &[$crate::store::ingest::NewEvent] = $rows;
        for chunk in rows.chunks($crate::store::ingest::CHUNK) {
            let q = $script.start_with(
                "INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, \
                 created_at, source_event_id) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.stored.id)
                    .push_bind(e.corp_id)
                    .push_bind(e.relayed.event.app_type())
                    .push_bind(&e.relayed.instance_id)
                    .push_bind(e.stored.seq)
                    .push_bind(e.stored.kind.event_type())
                    .push_bind(&e.stored.task_id)
                    .push_bind(&e.params_json)
                    .push_bind($now)
                    .push_bind(e.relayed.event_id.as_deref());
            });
        }
    }};
}
pub(crate) use write_events_in;
