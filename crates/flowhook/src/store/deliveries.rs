//! Reads and repairs of the delivery log: deliveries by filter with their attempts, and
//! redelivery (one, or in bulk by filter), which makes deliveries due again at once; and the
//! types of a delivery everywhere: its [`DeliveryId`] and [`DeliveryStatus`], the states it
//! takes (both stored as their text; an unknown stored status is [`StoreError::Corrupt`]).

use std::fmt;
use std::str::FromStr;

use flowhook_sign::event::EventKind;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{on_pool, Store, StoreError};
use crate::engine::ids::InstanceId;
use crate::support::now_ms;

/// A delivery's id (`dlv_…`): one event to one action. Stored and shown as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct DeliveryId(String);

impl DeliveryId {
    /// A new delivery's id.
    pub fn fresh() -> Self {
        DeliveryId(crate::support::new_id("dlv"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An id as given from outside (a path, a form): looked up, never trusted to exist.
impl From<String> for DeliveryId {
    fn from(id: String) -> Self {
        DeliveryId(id)
    }
}

impl From<&str> for DeliveryId {
    fn from(id: &str) -> Self {
        DeliveryId(id.to_owned())
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a delivery stands: `pending` until delivered, given up (`dead`) or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt, or leased to a dispatcher for it.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up after the last retry (or refused before leaving the machine); redeliverable.
    Dead,
    /// Its action or connector was deleted while it was pending; not redeliverable.
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
        DeliveryStatus::Cancelled,
    ];

    /// The stored (and shown) text.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not a delivery status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery status `{0}`")]
pub struct UnknownDeliveryStatus(pub String);

impl FromStr for DeliveryStatus {
    type Err = UnknownDeliveryStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownDeliveryStatus(s.to_owned()))
    }
}

impl From<UnknownDeliveryStatus> for StoreError {
    fn from(e: UnknownDeliveryStatus) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: String,
    pub event_type: EventKind,
    pub task_id: Option<String>,
    pub instance_id: InstanceId,
    pub seq: i64,
    pub action_id: String,
    /// pending | delivered | dead | cancelled (its action or connector was deleted while it
    /// was pending; `lastError` says which)
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub backfill: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    /// Credentials in the query masked.
    pub url: String,
    /// Credentials masked.
    pub request_headers: serde_json::Value,
    pub request_params: serde_json::Value,
    pub response_status: Option<i64>,
    pub response_headers: Option<serde_json::Value>,
    /// First 4 KiB.
    pub response_body: Option<String>,
    /// status | timeout | connect | dns | egress | request | other (see `delivery::exchange`)
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

/// Filters of the delivery log (a bulk redelivery's job keeps them as its JSON `params`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFilter {
    /// pending | delivered | dead | cancelled
    pub status: Option<String>,
    /// `task.created`, …
    pub event_type: Option<String>,
    pub task_id: Option<String>,
    pub instance_id: Option<InstanceId>,
    pub action_id: Option<String>,
    /// The deliveries to any action of this connector.
    pub connector_id: Option<String>,
    /// Created at or after (epoch ms).
    pub from: Option<i64>,
    /// Created before (epoch ms).
    pub to: Option<i64>,
}

const COLUMNS: &str = "d.id, d.event_id, e.kind, e.task_id, d.instance_id, d.seq, d.action_id, d.status, d.attempts, \
    d.next_attempt_at, d.last_error, d.backfill, d.created_at, d.updated_at";

const FILTER: &str = "d.corp_id = $1 AND ($2 IS NULL OR d.status = $2) AND ($3 IS NULL OR e.kind = $3) \
    AND ($4 IS NULL OR e.task_id = $4) AND ($5 IS NULL OR d.instance_id = $5) AND ($6 IS NULL OR d.action_id = $6) \
    AND ($7 IS NULL OR d.created_at >= $7) AND ($8 IS NULL OR d.created_at < $8)";

/// Binds [`FILTER`]'s parameters `$1`–`$8` (the organisation, then the filter's fields) to a
/// query of either backend; the query's own parameters follow from `$9`.
macro_rules! bind_filter {
    ($query:expr, $corp_id:expr, $f:expr) => {
        $query
            .bind($corp_id)
            .bind(&$f.status)
            .bind(&$f.event_type)
            .bind(&$f.task_id)
            .bind(&$f.instance_id)
            .bind(&$f.action_id)
            .bind($f.from)
            .bind($f.to)
    };
}

/// The connector condition of the filter, its parameter numbered `n` (after the query's own).
fn connector_filter(n: u8) -> String {
    format!(
        "(${n} IS NULL OR d.action_id IN (SELECT a.id FROM actions a WHERE a.corp_id = $1 AND a.connector_id = ${n}))"
    )
}

impl Store {
    /// A page of deliveries, newest first (`cursor` = the last item's `(created_at, id)`).
    pub async fn deliveries(
        &self,
        corp_id: &str,
        f: &DeliveryFilter,
        id: Option<&DeliveryId>,
        cursor: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (cursor_at, cursor_id) = match cursor {
            Some((t, id)) => (Some(t), Some(id)),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE {FILTER} \
             AND ($9 IS NULL OR d.created_at < $9 OR (d.created_at = $9 AND d.id < $10)) \
             AND ($12 IS NULL OR d.id = $12) AND {} ORDER BY d.created_at DESC, d.id DESC LIMIT $11",
            connector_filter(13)
        );
        Ok(on_pool!(self, |pool| {
            bind_filter!(sqlx::query(&sql), corp_id, f)
                .bind(cursor_at)
                .bind(&cursor_id)
                .bind(i64::from(limit))
                .bind(id)
                .bind(&f.connector_id)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| {
                    Ok(Delivery {
                        id: r.try_get("id")?,
                        event_id: r.try_get("event_id")?,
                        event_type: r.try_get::<String, _>("kind")?.parse()?,
                        task_id: r.try_get("task_id")?,
                        instance_id: r.try_get("instance_id")?,
                        seq: r.try_get("seq")?,
                        action_id: r.try_get("action_id")?,
                        status: r.try_get::<String, _>("status")?.parse()?,
                        attempts: i64::from(r.try_get::<i32, _>("attempts")?),
                        next_attempt_at: r.try_get("next_attempt_at")?,
                        last_error: r.try_get("last_error")?,
                        backfill: r.try_get("backfill")?,
                        created_at: r.try_get("created_at")?,
                        updated_at: r.try_get("updated_at")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        }))
    }

    pub async fn delivery_attempts(
        &self,
        corp_id: &str,
        delivery_id: &DeliveryId,
    ) -> Result<Vec<AttemptView>, StoreError> {
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "SELECT attempt, started_at, duration_ms, url, request_headers, request_params, response_status, \
                 response_headers, response_body, error_kind, error FROM attempts \
                 WHERE corp_id = $1 AND delivery_id = $2 ORDER BY attempt",
            )
            .bind(corp_id)
            .bind(delivery_id)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| {
                let json = |s: Option<String>| s.and_then(|t| serde_json::from_str(&t).ok());
                Ok(AttemptView {
                    attempt: i64::from(r.try_get::<i32, _>("attempt")?),
                    started_at: r.try_get("started_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    url: r.try_get("url")?,
                    request_headers: json(r.try_get("request_headers")?).unwrap_or_default(),
                    request_params: json(r.try_get("request_params")?).unwrap_or_default(),
                    response_status: r.try_get::<Option<i32>, _>("response_status")?.map(i64::from),
                    response_headers: json(r.try_get("response_headers")?),
                    response_body: r.try_get("response_body")?,
                    error_kind: r.try_get("error_kind")?,
                    error: r.try_get("error")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// Makes the matching delivered or dead deliveries (or the one `id`) due again now;
    /// returns how many. Attempts so far stay in the log. Pending ones are on their way, and
    /// cancelled ones have no target any more (their action or connector was deleted).
    pub async fn redeliver(
        &self,
        corp_id: &str,
        f: &DeliveryFilter,
        id: Option<&DeliveryId>,
    ) -> Result<u64, StoreError> {
        self.redeliver_as(corp_id, f, id, None).await
    }

    /// Redelivers every delivery the filter selects (delivered or dead) as a job, whose progress is
    /// the state of those deliveries (`job`): one transaction marks them due and theirs.
    pub async fn redeliver_job(
        &self,
        corp_id: &str,
        f: &DeliveryFilter,
    ) -> Result<super::jobs::JobProgress, StoreError> {
        let id = crate::support::new_id("job");
        self.redeliver_as(corp_id, f, None, Some(&id)).await?;
        self.job(corp_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the job just written is missing".into()))
    }

    /// The one redelivery: marks the deliveries due in one transaction and, for a bulk job,
    /// records the job (`total` = how many) and points the deliveries at it.
    async fn redeliver_as(
        &self,
        corp_id: &str,
        f: &DeliveryFilter,
        id: Option<&DeliveryId>,
        job: Option<&str>,
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $9, lease_owner = NULL, lease_until = NULL, \
             updated_at = $9, redelivery_job_id = COALESCE($11, redelivery_job_id) WHERE id IN ( \
             SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE {FILTER} AND d.status IN ('delivered', 'dead') AND ($10 IS NULL OR d.id = $10) AND {})",
            connector_filter(12)
        );
        let _gate = super::write_gate(self).await;
        Ok(on_pool!(self, |pool| {
            let mut tx = super::BeginWrite::begin_write(pool).await?;
            let n = bind_filter!(sqlx::query(&sql), corp_id, f)
                .bind(now)
                .bind(id)
                .bind(job)
                .bind(&f.connector_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let Some(job) = job {
                sqlx::query("INSERT INTO jobs (id, corp_id, kind, params, total, created_at) VALUES ($1, $2, 'redelivery', $3, $4, $5)")
                    .bind(job)
                    .bind(corp_id)
                    .bind(serde_json::to_string(f).expect("a filter serialises"))
                    .bind(n as i64)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n
        }))
    }
}

/// The deliveries waiting for one connector (its health view).
#[derive(Debug, Clone, Default)]
pub struct ConnectorBacklog {
    /// Deliveries not yet delivered nor given up.
    pub pending: i64,
    /// When the oldest of them was created (epoch ms).
    pub oldest_pending_at: Option<i64>,
    /// Deliveries given up after the last retry (redeliver them once the endpoint is fixed).
    pub dead: i64,
}

/// Counts for `/metrics`.
pub struct DeliveryStats {
    pub by_status: Vec<(DeliveryStatus, i64)>,
    /// Age of the oldest pending delivery that is due (0 when none).
    pub oldest_due_age_ms: i64,
}

impl Store {
    /// The pending and dead deliveries of `connector_id`'s actions (read through the status
    /// index: the delivered ones, most of the table, are not read).
    pub async fn connector_backlog(
        &self,
        connector_id: &str,
    ) -> Result<ConnectorBacklog, StoreError> {
        let rows: Vec<(String, i64, Option<i64>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT d.status, COUNT(*), MIN(d.created_at) FROM deliveries d \
                 WHERE d.status IN ('pending', 'dead') \
                 AND d.action_id IN (SELECT a.id FROM actions a WHERE a.connector_id = $1) \
                 GROUP BY d.status",
            )
            .bind(connector_id)
            .fetch_all(pool)
            .await?
        });
        let mut backlog = ConnectorBacklog::default();
        for (status, n, oldest) in rows {
            match status.parse()? {
                DeliveryStatus::Pending => {
                    backlog.pending = n;
                    backlog.oldest_pending_at = oldest;
                }
                _ => backlog.dead = n,
            }
        }
        Ok(backlog)
    }

    pub async fn delivery_stats(&self, now: i64) -> Result<DeliveryStats, StoreError> {
        let (by_status, oldest): (Vec<(String, i64)>, Option<i64>) = on_pool!(self, |pool| {
            let by: Vec<(String, i64)> =
                // Not the delivered ones: most of the table, counted by every scrape.
                sqlx::query_as(
                    "SELECT status, COUNT(*) FROM deliveries WHERE status IN ('pending', 'dead', 'cancelled') \
                     GROUP BY status",
                )
                    .fetch_all(pool)
                    .await?;
            let oldest: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1",
            )
            .bind(now)
            .fetch_one(pool)
            .await?;
            (by, oldest)
        });
        Ok(DeliveryStats {
            by_status: by_status
                .into_iter()
                .map(|(s, n)| Ok((s.parse()?, n)))
                .collect::<Result<_, StoreError>>()?,
            oldest_due_age_ms: oldest.map_or(0, |t| (now - t).max(0)),
        })
    }
}

/// Attempts purged per statement: short write transactions, so the hot writers are not held up.
const PURGE_CHUNK: i64 = 1_000;

impl Store {
    /// Purges the request parameters and response body (they hold form data) of attempts
    /// started before `before_ms`; the attempt itself — time, status, duration, error — stays.
    /// Returns how many attempts were purged.
    pub async fn purge_attempt_bodies(&self, before_ms: i64) -> Result<u64, StoreError> {
        let sql = "UPDATE attempts SET request_params = '[]', response_body = NULL \
                   WHERE id IN (SELECT id FROM attempts WHERE started_at < $1 \
                   AND (response_body IS NOT NULL OR request_params <> '[]') LIMIT $2)";
        let mut total = 0;
        loop {
            let _gate = super::write_gate(self).await;
            let n = on_pool!(self, |pool| sqlx::query(sql)
                .bind(before_ms)
                .bind(PURGE_CHUNK)
                .execute(pool)
                .await?
                .rows_affected());
            total += n;
            if n < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_round_trips_through_its_stored_text_and_an_unknown_one_is_corrupt() {
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let unknown = "Delivered".parse::<DeliveryStatus>().unwrap_err();
        assert!(
            matches!(StoreError::from(unknown), StoreError::Corrupt(m) if m.contains("`Delivered`"))
        );
    }
}
