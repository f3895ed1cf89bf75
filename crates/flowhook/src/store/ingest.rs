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
//! Group commit: ingest calls are jobs of the command writer (`store::writer`), which takes the
//! calls queued meanwhile and stores them with [`Store::ingest_batch`] in ONE transaction — one
//! fsync for many calls — with a constant number of statements (the idempotency, own-instance,
//! `seq` and lane reads are set-based, the inserts multi-row). Each call is all or nothing (a
//! batch call's events with it). The heads of their lanes are leased to the local dispatcher in
//! the same transaction and handed to it at commit, as the engine's fresh deliveries are.

use std::collections::{HashMap, HashSet};

use flowhook_sign::event::TaskEvent;

use super::claims::DeliveryEvent;
use super::deliveries::DeliveryId;
use super::writer::{FreshDelivery, StoredEvent};
use super::{on_pool, push_in_list, BeginWrite, Store, StoreError};
use crate::engine::ids::InstanceId;
use crate::integration::connectors::Strategy;
use crate::integration::render::stored_params;
use crate::support::{new_id, now_ms};

/// Rows per multi-row statement (well under both backends' bind-parameter limits).
const CHUNK: usize = 500;

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

/// Where fresh deliveries may go: the local dispatcher as lease owner `owner` until `until`,
/// at most `room` of them.
#[derive(Debug, Clone, Copy)]
pub struct HandoffRoom<'a> {
    pub owner: &'a str,
    pub until: i64,
    pub room: usize,
}

/// The result of [`Store::ingest_batch`].
pub struct IngestBatch {
    /// One per call, in order.
    pub results: Vec<Result<Vec<Ingested>, IngestError>>,
    /// Deliveries leased to the local dispatcher, to hand over now that they are committed.
    pub fresh: Vec<FreshDelivery>,
    /// Deliveries left for the dispatchers' claims.
    pub unhanded: usize,
}

/// A new event row and its delivery, decided before anything is written.
struct NewEvent<'a> {
    corp_id: &'a str,
    relayed: &'a Relayed,
    stored: StoredEvent,
    params: Vec<(String, String)>,
    params_json: String,
    /// The delivery's (id, action, ordered), when the strategy takes this event.
    delivery: Option<(DeliveryId, String, bool)>,
}

impl Store {
    /// Stores `calls` in one transaction: each call's events with the next `seq` of their
    /// instance (in order), and their deliveries. A call whose every event id was stored
    /// before is answered from the stored events. `handoff`: lease the heads of their lanes to
    /// the local dispatcher. `Err` only for a database failure (nothing committed).
    pub(crate) async fn ingest_batch(
        &self,
        calls: &[IngestCall],
        handoff: Option<HandoffRoom<'_>>,
    ) -> Result<IngestBatch, StoreError> {
        // Each organisation's strategy, read before the write lock.
        let mut strategies: HashMap<&str, Option<Strategy>> = HashMap::new();
        for c in calls {
            if !strategies.contains_key(c.corp_id.as_str()) {
                strategies.insert(&c.corp_id, self.strategy(&c.corp_id).await?);
            }
        }
        // Per organisation: the event ids and instance ids the batch names.
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
        let now = now_ms();
        let _gate = super::write_gate(self).await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // What is stored already: events by caller id, the organisation's own instances,
            // the last `seq` of each instance, the lanes with a delivery waiting.
            let mut known: HashMap<(String, String), StoredEvent> = HashMap::new();
            let mut own: HashSet<(String, InstanceId)> = HashSet::new();
            let mut last_seq: HashMap<(String, InstanceId), i64> = HashMap::new();
            let mut waiting: HashSet<(String, InstanceId)> = HashSet::new();
            for (corp, (ids, instances)) in &named {
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT source_event_id, id, seq, kind, task_id, created_at FROM events WHERE corp_id = ",
                    );
                    q.push_bind(*corp);
                    q.push(" AND source_event_id IS NOT NULL AND source_event_id");
                    push_in_list(&mut q, chunk.iter().copied());
                    let rows: Vec<(String, String, i64, String, Option<String>, i64)> =
                        q.build_query_as().fetch_all(&mut *tx).await?;
                    for (eid, id, seq, kind, task_id, created_at) in rows {
                        known.insert(
                            ((*corp).to_owned(), eid),
                            StoredEvent {
                                id,
                                seq,
                                kind: kind.parse()?,
                                task_id,
                                created_at,
                            },
                        );
                    }
                }
                for chunk in instances.chunks(CHUNK) {
                    let mut q =
                        sqlx::QueryBuilder::new("SELECT id FROM instances WHERE corp_id = ");
                    q.push_bind(*corp);
                    q.push(" AND id");
                    push_in_list(&mut q, chunk.iter().copied());
                    let rows: Vec<(InstanceId,)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    own.extend(rows.into_iter().map(|(id,)| ((*corp).to_owned(), id)));

                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT instance_id, MAX(seq) FROM events WHERE corp_id = ",
                    );
                    q.push_bind(*corp);
                    q.push(" AND instance_id");
                    push_in_list(&mut q, chunk.iter().copied());
                    q.push(" GROUP BY instance_id");
                    let rows: Vec<(InstanceId, i64)> =
                        q.build_query_as().fetch_all(&mut *tx).await?;
                    last_seq.extend(rows.into_iter().map(|(i, s)| (((*corp).to_owned(), i), s)));

                    if handoff.is_some() {
                        let mut q = sqlx::QueryBuilder::new(
                            "SELECT DISTINCT instance_id FROM deliveries WHERE status = 'pending' AND corp_id = ",
                        );
                        q.push_bind(*corp);
                        q.push(" AND instance_id");
                        push_in_list(&mut q, chunk.iter().copied());
                        let rows: Vec<(InstanceId,)> =
                            q.build_query_as().fetch_all(&mut *tx).await?;
                        waiting.extend(rows.into_iter().map(|(i,)| ((*corp).to_owned(), i)));
                    }
                }
            }

            // Decide, call by call: a refused call leaves no trace in what later calls see.
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
                        .filter(|s| {
                            s.selects(r.event.app_type(), r.process_code.as_deref().unwrap_or(""))
                        })
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

            // Which deliveries go straight to the local dispatcher: the heads of their lanes
            // (an ordered lane with a delivery waiting, or an earlier one in this batch, waits
            // its turn), within its room.
            let mut handed = vec![false; rows.len()];
            if let Some(h) = handoff {
                let mut room = h.room;
                let mut taken: HashSet<(&str, &InstanceId)> = HashSet::new();
                for (e, flag) in rows.iter().zip(handed.iter_mut()) {
                    let Some((_, _, ordered)) = &e.delivery else {
                        continue;
                    };
                    if room == 0 {
                        break;
                    }
                    let lane = (e.corp_id, &e.relayed.instance_id);
                    if *ordered
                        && (waiting.contains(&(lane.0.to_owned(), lane.1.clone()))
                            || !taken.insert(lane))
                    {
                        continue;
                    }
                    *flag = true;
                    room -= 1;
                }
            }

            for chunk in rows.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
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
                        .push_bind(now)
                        .push_bind(e.relayed.event_id.as_deref());
                });
                q.build().execute(&mut *tx).await?;
            }
            let deliveries: Vec<(&NewEvent, bool)> = rows
                .iter()
                .zip(handed.iter().copied())
                .filter(|(e, _)| e.delivery.is_some())
                .collect();
            for chunk in deliveries.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO deliveries (id, corp_id, event_id, action_id, instance_id, seq, status, ordered, \
                     backfill, attempts, next_attempt_at, created_at, updated_at, lease_owner, lease_until) ",
                );
                q.push_values(chunk, |mut b, (e, handed)| {
                    let (id, action, ordered) = e.delivery.as_ref().expect("filtered");
                    let (owner, until) = match handoff {
                        Some(h) if *handed => (Some(h.owner), Some(h.until)),
                        _ => (None, None),
                    };
                    b.push_bind(id)
                        .push_bind(e.corp_id)
                        .push_bind(&e.stored.id)
                        .push_bind(action)
                        .push_bind(&e.relayed.instance_id)
                        .push_bind(e.stored.seq)
                        .push_bind(super::deliveries::DeliveryStatus::Pending.as_str())
                        .push_bind(*ordered)
                        .push_bind(false)
                        .push_bind(0i32)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(owner)
                        .push_bind(until);
                });
                q.build().execute(&mut *tx).await?;
            }
            let unhanded = deliveries.iter().filter(|(_, h)| !h).count();
            if unhanded > 0 && matches!(self, Store::Postgres(_)) {
                // Other nodes may claim them: told at commit.
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(super::DELIVERIES_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            let fresh = deliveries
                .iter()
                .filter(|(_, handed)| *handed)
                .map(|(e, _)| {
                    let (id, action, ordered) = e.delivery.clone().expect("filtered");
                    FreshDelivery {
                        id,
                        corp_id: e.corp_id.to_owned(),
                        event_id: e.stored.id.clone(),
                        action_id: action,
                        instance_id: e.relayed.instance_id.clone(),
                        ordered,
                        created_at: now,
                        event: DeliveryEvent {
                            kind: e.stored.kind,
                            seq: e.stored.seq,
                            app_type: e.relayed.event.app_type().to_owned(),
                            params: e.params.clone(),
                            source_id: e.relayed.event_id.clone(),
                        },
                    }
                })
                .collect();
            Ok(IngestBatch {
                results,
                fresh,
                unhanded,
            })
        })
    }
}
