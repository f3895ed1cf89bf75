//! Attempt records: what the dispatcher did with each delivery it held (an attempt made, or
//! held back), written by the command writer inside its group commit ([`write_records_in!`]):
//! a batch of commands and the attempts finished meanwhile share one fsync.

use super::deliveries::{DeliveryId, DeliveryStatus};
use crate::engine::ids::InstanceId;

/// The request of an attempt as the delivery log keeps it: credentials masked.
#[derive(Debug, Clone, Default)]
pub struct LoggedRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
}

/// What happened to one claimed delivery.
pub struct AttemptRecord {
    pub(crate) delivery_id: DeliveryId,
    pub(crate) corp_id: String,
    /// The ordered delivery's instance: when it ends, the lane's next delivery may go.
    pub(crate) lane: Option<InstanceId>,
    /// None: held back — by the breaker, a pause, or a target not ready — with no attempt made
    /// nor counted.
    pub(crate) attempt: Option<Attempt>,
    /// Why it is held, shown as the delivery's `lastError` (None: left as it was).
    pub(crate) held_because: Option<&'static str>,
    pub(crate) next_attempt_at: i64,
    /// The delivery's status after it: still pending (held, or to retry), delivered or dead.
    pub(crate) status: DeliveryStatus,
    /// The connectors of the endpoint whose breaker this success closed: their waiting
    /// deliveries become due now.
    pub(crate) reopened_connectors: Vec<String>,
}

/// What the dispatcher sends the writer: a claimed delivery's record, or a change to all the
/// waiting deliveries of an endpoint's connectors at once.
// Nearly every record is an attempt (the large variant): boxing it would cost an allocation
// per delivery to save room in a rare one.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Attempt(AttemptRecord),
    Endpoint(EndpointRecord),
}

/// The waiting deliveries of an organisation's connectors to one endpoint, rescheduled in one
/// statement.
pub struct EndpointRecord {
    pub(crate) corp_id: String,
    pub(crate) connectors: Vec<String>,
    pub(crate) change: EndpointChange,
}

pub enum EndpointChange {
    /// Its breaker opened: pending deliveries not leased, `at_most` of them, are parked until
    /// `until`, with `because` as its `lastError` (the probe that closes the breaker ends the
    /// park). A large backlog is parked by several, one `until` for all: each takes rows the
    /// earlier ones left, and no one commit carries them all.
    Parked {
        until: i64,
        because: &'static str,
        at_most: usize,
    },
    /// Its breaker closed: every pending delivery is due now.
    Reopened,
}

/// The records taken for one batch of the writer, attempts and endpoint changes apart (each
/// kind keeps the order it came in).
#[derive(Default)]
pub struct Records {
    pub(crate) attempts: Vec<AttemptRecord>,
    pub(crate) endpoints: Vec<EndpointRecord>,
}

impl Records {
    pub fn push(&mut self, record: Record) {
        match record {
            Record::Attempt(r) => self.attempts.push(r),
            Record::Endpoint(e) => self.endpoints.push(e),
        }
    }

    pub fn len(&self) -> usize {
        self.attempts.len() + self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Attempt {
    pub(crate) number: i64,
    pub(crate) started_at: i64,
    pub(crate) duration_ms: i64,
    /// The request as the log keeps it (credentials masked).
    pub(crate) request: LoggedRequest,
    pub(crate) response_status: Option<u16>,
    pub(crate) response_headers: Option<String>,
    pub(crate) response_body: Option<String>,
    pub(crate) error_kind: Option<&'static str>,
    pub(crate) error: Option<String>,
}

/// Adds the statements writing attempt records to `$script` (the writer's [`Statements`] of
/// either backend): the writer runs them inside its own group commit, so a command batch and
/// the attempts finished meanwhile share one fsync.
///
/// `$owner` is this node's lease owner id: a delivery's state is written only while the lease
/// is still this node's. Another node that took it over (this node's heartbeat went stale) owns
/// its state from then on; this node's attempt stays in the log.
///
/// [`Statements`]: crate::store::writer
macro_rules! write_records_in {
    ($script:ident, $batch:expr, $endpoints:expr, $owner:expr) => {{
        let batch: &[$crate::store::attempts::AttemptRecord] = $batch;
        let endpoints: &[$crate::store::attempts::EndpointRecord] = $endpoints;
        let owner: Option<&str> = $owner;
        let now = $crate::support::now_ms();
        // The common case — an attempt that delivered — is written with multi-row statements:
        // one INSERT of every attempt, one UPDATE of every delivered delivery. Failures and
        // holds are rarer and carry their own schedule: one UPDATE each.
        let attempts: Vec<(
            &$crate::store::attempts::AttemptRecord,
            &$crate::store::attempts::Attempt,
        )> = batch
            .iter()
            .filter_map(|r| r.attempt.as_ref().map(|a| (r, a)))
            .collect();
        let delivered: Vec<&str> = attempts
            .iter()
            .filter(|(r, _)| r.status == $crate::store::deliveries::DeliveryStatus::Delivered)
            .map(|(r, _)| r.delivery_id.as_str())
            .collect();
        for chunk in attempts.chunks(200) {
            let q = $script.start_with(
                "INSERT INTO attempts (id, delivery_id, corp_id, attempt, started_at, duration_ms, url, request_headers, \
                 request_params, response_status, response_headers, response_body, error_kind, error) ",
            );
            q.push_values(chunk, |mut b, (r, a)| {
                b.push_bind($crate::support::new_id("att"))
                    .push_bind(&r.delivery_id)
                    .push_bind(&r.corp_id)
                    .push_bind(a.number as i32)
                    .push_bind(a.started_at)
                    .push_bind(a.duration_ms)
                    .push_bind(&a.request.url)
                    .push_bind(serde_json::to_string(&a.request.headers).unwrap_or_default())
                    .push_bind(serde_json::to_string(&a.request.params).unwrap_or_default())
                    .push_bind(a.response_status.map(i32::from))
                    .push_bind(&a.response_headers)
                    .push_bind(&a.response_body)
                    .push_bind(a.error_kind)
                    .push_bind(&a.error);
            });
        }
        for chunk in delivered.chunks(500) {
            // `attempts + 1`: the attempt just made (the delivery is leased to this node).
            let q = $script.start_with(
                "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, last_error = NULL, \
                 lease_owner = NULL, lease_until = NULL, updated_at = ",
            );
            q.push_bind(now).push(" WHERE id");
            $crate::store::push_in_list(q, chunk.iter().copied());
            if let Some(owner) = owner {
                q.push(" AND lease_owner = ").push_bind(owner.to_owned());
            }
        }
        // Held back (an open breaker) or not prepared: no attempt, only a new due time. Grouped
        // by that time to the second, one UPDATE per group: during an outage every fresh
        // delivery comes back this way.
        let mut held: std::collections::BTreeMap<(i64, Option<&str>), Vec<&str>> =
            Default::default();
        for r in batch.iter().filter(|r| r.attempt.is_none()) {
            let due = (r.next_attempt_at + 999) / 1000 * 1000;
            held.entry((due, r.held_because))
                .or_default()
                .push(r.delivery_id.as_str());
        }
        for ((due, because), ids) in &held {
            for chunk in ids.chunks(500) {
                let q = $script.start("UPDATE deliveries SET next_attempt_at = ");
                q.push_bind(*due);
                if let Some(because) = because {
                    q.push(", last_error = ").push_bind(*because);
                }
                // `pending`: a delivery cancelled meanwhile (its connector deleted) stays so.
                q.push(", lease_owner = NULL, lease_until = NULL, updated_at = ")
                    .push_bind(now)
                    .push(" WHERE status = 'pending' AND id");
                $crate::store::push_in_list(q, chunk.iter().copied());
                if let Some(owner) = owner {
                    q.push(" AND lease_owner = ").push_bind(owner.to_owned());
                }
            }
        }
        // Failed attempts: each with its own schedule and error.
        for (r, a) in attempts.iter().filter(|(r, _)| r.status != $crate::store::deliveries::DeliveryStatus::Delivered) {
            let q = $script.start("UPDATE deliveries SET status = ");
            q.push_bind(r.status.as_str())
                .push(", attempts = ")
                .push_bind(a.number as i32)
                .push(", next_attempt_at = ")
                .push_bind(r.next_attempt_at)
                .push(", last_error = ")
                .push_bind(&a.error)
                .push(", lease_owner = NULL, lease_until = NULL, updated_at = ")
                .push_bind(now)
                .push(" WHERE status = 'pending' AND id = ")
                .push_bind(&r.delivery_id);
            if let Some(owner) = owner {
                q.push(" AND lease_owner = ").push_bind(owner.to_owned());
            }
        }
        // Endpoint changes: the dispatcher's parks (not of leased rows: their records say what
        // became of them) and reopens in the order they came, then the reopens of the successes
        // above — last, so nothing written above pushes them back: an endpoint that is back gets
        // its backlog due now, not when each backoff expires.
        let parks = endpoints.iter().map(|e| {
            let park = match e.change {
                $crate::store::attempts::EndpointChange::Parked { until, because, at_most } => {
                    Some((until, because, at_most))
                }
                $crate::store::attempts::EndpointChange::Reopened => None,
            };
            (e.corp_id.as_str(), &e.connectors[..], park)
        });
        let reopens = batch
            .iter()
            .filter(|r| !r.reopened_connectors.is_empty())
            .map(|r| (r.corp_id.as_str(), &r.reopened_connectors[..], None));
        for (corp_id, connectors, park) in parks.chain(reopens) {
            let q = $script.start("UPDATE deliveries SET next_attempt_at = ");
            match park {
                Some((until, because, _)) => {
                    q.push_bind(until)
                        .push(", last_error = ")
                        .push_bind(because)
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at < ")
                        .push_bind(until)
                        .push(" AND (lease_until IS NULL OR lease_until < ")
                        .push_bind(now)
                        // Not those parked already (by a record of their own, or a step before).
                        .push(") AND (last_error IS NULL OR last_error <> ")
                        .push_bind(because)
                        .push(")");
                }
                None => {
                    q.push_bind(now)
                        .push(" WHERE status = 'pending' AND next_attempt_at > ")
                        .push_bind(now);
                }
            }
            q.push(" AND corp_id = ")
                .push_bind(corp_id)
                .push(" AND action_id IN (SELECT id FROM actions WHERE connector_id");
            $crate::store::push_in_list(q, connectors.iter().map(String::as_str));
            q.push(")");
            if let Some((_, _, at_most)) = park {
                q.push(" LIMIT ").push_bind(i64::try_from(at_most).unwrap_or(i64::MAX)).push(")");
            }
        }
    }};
}
pub(crate) use write_records_in;
