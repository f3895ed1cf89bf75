//! Claims: the dispatcher's reads and leases of due deliveries — the claim itself (ordered
//! deliveries only at the head of their lane, leases by node), the events it sends, the next
//! due time, the deliveries parked by open breakers, and PostgreSQL's wake-ups (`LISTEN`). The
//! policy (what to claim, when, what to leave out) is the dispatcher's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flowhook_sign::event::EventKind;
use sqlx::Row;
use tokio::sync::{watch, Notify};

use super::deliveries::DeliveryId;
use super::{on_pool, Store, StoreError};
use crate::engine::ids::InstanceId;
use crate::support::now_ms;

/// One claimed delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: DeliveryId,
    pub corp_id: String,
    pub event_id: String,
    pub action_id: String,
    /// The instance, when the delivery is ordered: its lane.
    pub lane: Option<InstanceId>,
    pub attempts: i64,
    pub backfill: bool,
    pub created_at: i64,
}

/// Claimed deliveries and, on PostgreSQL, their events (read by the claim's own statement; on
/// SQLite, whose `UPDATE … RETURNING` cannot feed a join, [`load_events`] reads them).
pub type ClaimedBatch = (Vec<Claimed>, Option<HashMap<String, DeliveryEvent>>);

/// Which deliveries a claim takes.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Up to this many due ones.
    Due(usize),
    /// One of this connector's pending ones, due or parked: the probe of its endpoint's open
    /// breaker.
    Probe(&'a str),
}

/// Who claims, for how long, and what to leave out.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The lease owner: this node's dispatcher.
    pub owner: &'a str,
    pub lease: Duration,
    /// A lease whose owner's heartbeat is older than this is free.
    pub node_timeout: Duration,
    pub scope: Scope<'a>,
    /// Left out: the actions of endpoints at their concurrency cap, and organisations at their
    /// share (what would only come back busy; both usually empty).
    pub excluded_actions: &'a [String],
    pub excluded_orgs: &'a [String],
}

impl Store {
    /// Leases due deliveries to `claim.owner` (ordered ones only at the head of their lane) and
    /// returns them; on PostgreSQL with their events, read by the same statement.
    pub async fn claim(&self, claim: Claim<'_>) -> Result<ClaimedBatch, StoreError> {
        let Claim {
            owner,
            lease,
            node_timeout,
            scope,
            excluded_actions,
            excluded_orgs,
        } = claim;
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let postgres = matches!(self, Store::Postgres(_));
        let lock = if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // Ordered by due time only: within a lane only the head is claimable anyway, and a sort
        // on (due, seq) would read every due row when a recovered endpoint makes its whole backlog
        // due at the same instant.
        // A probe: the connector's earliest pending delivery, whenever it is due (`$4` is the
        // connector in place of the limit, so the parameters keep their order on SQLite too).
        let (which, limit) = match scope {
            Scope::Due(_) => ("d.next_attempt_at <= $3", "$4"),
            Scope::Probe(_) => (
                "d.action_id IN (SELECT a.id FROM actions a WHERE a.connector_id = $4)",
                "1",
            ),
        };
        // Usually nothing is left out: the statement is then the usual one.
        let (excluded_actions, excluded_orgs) = match scope {
            Scope::Due(_) => (excluded_actions, excluded_orgs),
            Scope::Probe(_) => (&[][..], &[][..]),
        };
        let mut which = which.to_owned();
        let db_now = super::nodes::db_now_ms(self);
        let mut n = 5;
        for (column, ids) in [("action_id", excluded_actions), ("corp_id", excluded_orgs)] {
            if ids.is_empty() {
                continue;
            }
            let list: Vec<String> = (0..ids.len())
                .map(|_| {
                    n += 1;
                    format!("${n}")
                })
                .collect();
            which.push_str(&format!(" AND d.{column} NOT IN ({})", list.join(", ")));
        }
        // A lease holds until it expires, and only while its owner's heartbeat is fresh: a dead
        // node's leases are free within the node timeout (by the database's clock, like the beats).
        let update = format!(
        "UPDATE deliveries SET lease_owner = $1, lease_until = $2, updated_at = $3 WHERE id IN ( \
           SELECT d.id FROM deliveries d WHERE d.status = 'pending' AND {which} \
           AND (d.lease_until IS NULL OR d.lease_until < $3 OR NOT EXISTS (SELECT 1 FROM nodes n \
                WHERE n.id = d.lease_owner AND n.heartbeat_at >= {db_now} - $5)) \
           AND (NOT d.ordered OR NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.instance_id = d.instance_id \
                AND p.corp_id = d.corp_id AND p.status = 'pending' AND p.seq < d.seq)) \
           ORDER BY d.next_attempt_at LIMIT {limit}{lock}) \
         RETURNING id, corp_id, event_id, action_id, instance_id, ordered, attempts, backfill, created_at"
    );
        // PostgreSQL: the events in the same round trip — under load each round trip waits for
        // the server's backend and this task to be scheduled, and the claim loop is serial.
        let sql = if postgres {
            format!(
            "WITH c AS ({update}) SELECT c.*, e.kind, e.seq AS event_seq, e.app_type, e.params, e.source_event_id \
             FROM c JOIN events e ON e.id = c.event_id"
        )
        } else {
            update
        };
        let _gate = super::write_gate(self).await;
        let mut events = postgres.then(HashMap::new);
        let rows = on_pool!(self, |pool| {
            let q = sqlx::query(&sql).bind(owner).bind(until).bind(now);
            let mut q = match scope {
                Scope::Due(limit) => q.bind(limit as i64),
                Scope::Probe(connector) => q.bind(connector),
            };
            q = q.bind(node_timeout.as_millis() as i64);
            for id in excluded_actions.iter().chain(excluded_orgs) {
                q = q.bind(id);
            }
            let rows = q.fetch_all(pool).await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for r in rows {
                let c = Claimed {
                    id: r.try_get("id")?,
                    corp_id: r.try_get("corp_id")?,
                    event_id: r.try_get("event_id")?,
                    action_id: r.try_get("action_id")?,
                    lane: if r.try_get("ordered")? {
                        Some(r.try_get("instance_id")?)
                    } else {
                        None
                    },
                    attempts: i64::from(r.try_get::<i32, _>("attempts")?),
                    backfill: r.try_get("backfill")?,
                    created_at: r.try_get("created_at")?,
                };
                if let Some(events) = events.as_mut() {
                    let event = DeliveryEvent::parse(
                        r.try_get("kind")?,
                        r.try_get("event_seq")?,
                        r.try_get("app_type")?,
                        r.try_get("params")?,
                        r.try_get("source_event_id")?,
                    )?;
                    events.insert(c.event_id.clone(), event);
                }
                claimed.push(c);
            }
            claimed
        });
        Ok((rows, events))
    }
}

/// The event of a delivery, as its request needs it: read by a claim, or handed over fresh
/// with its delivery ([`FreshDelivery`](super::writer::FreshDelivery)).
/// (Not the same type as [`StoredEvent`](super::writer::StoredEvent), which says why.)
#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    pub kind: EventKind,
    pub seq: i64,
    pub app_type: String,
    pub params: Vec<(String, String)>,
    /// An ingested event's id as its caller gave it (unique within its organisation): sent as
    /// `X-Flowhook-Event-Id` in place of Flowhook's own id, which receivers never saw.
    pub source_id: Option<String>,
}

impl DeliveryEvent {
    /// From an `events` row; `params` is its stored JSON.
    fn parse(
        kind: &str,
        seq: i64,
        app_type: String,
        params: &str,
        source_id: Option<String>,
    ) -> Result<Self, StoreError> {
        Ok(DeliveryEvent {
            kind: kind.parse()?,
            seq,
            app_type,
            params: serde_json::from_str(params)
                .map_err(|e| StoreError::Corrupt(format!("event params: {e}")))?,
            source_id,
        })
    }
}

/// `events` row: id, kind, seq, app type, params, source event id.
type EventRow = (String, String, i64, String, String, Option<String>);

impl Store {
    /// The events of `claimed`, by event id (SQLite: its claim cannot read them itself).
    pub async fn load_events(
        &self,
        claimed: &[Claimed],
    ) -> Result<HashMap<String, DeliveryEvent>, StoreError> {
        let mut out = HashMap::new();
        for chunk in claimed.chunks(500) {
            let rows: Vec<EventRow> = on_pool!(self, |pool| {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT id, kind, seq, app_type, params, source_event_id FROM events WHERE id",
                );
                super::push_in_list(&mut q, chunk.iter().map(|c| c.event_id.as_str()));
                q.build_query_as().fetch_all(pool).await?
            });
            for (id, kind, seq, app_type, params, source_id) in rows {
                out.insert(
                    id,
                    DeliveryEvent::parse(&kind, seq, app_type, &params, source_id)?,
                );
            }
        }
        Ok(out)
    }

    /// When the earliest pending delivery is due.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'",
            )
            .fetch_one(pool)
            .await?
        }))
    }

    /// The organisations and actions of deliveries parked (due later) with `held_because`.
    pub async fn parked(
        &self,
        held_because: &str,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT DISTINCT corp_id, action_id FROM deliveries \
             WHERE status = 'pending' AND next_attempt_at > $1 AND last_error = $2",
            )
            .bind(now)
            .bind(held_because)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Whether [`Store::analyze_deliveries`] does anything (PostgreSQL).
    pub fn has_planner_statistics(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// PostgreSQL: refreshes the planner's statistics of `deliveries` (`ANALYZE`); SQLite: nothing.
    pub async fn analyze_deliveries(&self) -> Result<(), StoreError> {
        if let Store::Postgres(pool) = self {
            sqlx::query("ANALYZE deliveries").execute(pool).await?;
        }
        Ok(())
    }

    /// PostgreSQL: wakes `notify` whenever any node announces deliveries (`LISTEN`), until `stop`;
    /// SQLite (one node): returns at once.
    pub async fn listen_for_deliveries(&self, notify: Arc<Notify>, stop: watch::Receiver<bool>) {
        if let Store::Postgres(pool) = self {
            listen(pool.clone(), notify, stop).await;
        }
    }
}

/// PostgreSQL: wakes this dispatcher when any node announces deliveries (`LISTEN`); reconnects
/// after a lost connection. The poll still runs behind it.
async fn listen(pool: sqlx::PgPool, notify: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(super::DELIVERIES_CHANNEL).await {
                Ok(()) => loop {
                    tokio::select! {
                        n = listener.recv() => match n {
                            Ok(_) => notify.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the notification connection; reconnecting");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                },
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "no notification connection; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
