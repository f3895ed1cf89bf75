//! Backfill (Yida has none): push the current state of existing tasks through the same pipeline,
//! marked `X-Flowhook-Backfill: true`, as a job whose progress is the state of its deliveries.
//! A bulk redelivery is a job of the same shape (`kind = redelivery`, see
//! [`Store::redeliver_job`](super::Store::redeliver_job)).
//!
//! `open` re-sends the stored `task.created` event of every task open now; `range` re-sends
//! every event created in a time range. The deliveries carry the events' own ids and `seq`, so
//! receivers de-duplicate them and per-instance order holds as for live deliveries.

use serde::{Deserialize, Serialize};

use super::deliveries::{DeliveryId, DeliveryStatus};
use super::{on_pool, Store, StoreError};
use crate::engine::ids::InstanceId;
use crate::support::{new_id, now_ms};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(
    tag = "mode",
    rename_all = "camelCase",
    deny_unknown_fields,
    try_from = "BackfillBody"
)]
pub enum BackfillRequest {
    /// Every task open now (its `task.created`).
    Open,
    /// Every event created in `[from, to)` (epoch ms).
    Range { from: i64, to: i64 },
}

/// A [`BackfillRequest`] as sent: read as a plain struct first, so a refusal names the field
/// (an internally tagged enum's errors cannot say which field they are about).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BackfillBody {
    mode: String,
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    to: Option<i64>,
}

impl TryFrom<BackfillBody> for BackfillRequest {
    type Error = String;

    fn try_from(b: BackfillBody) -> Result<Self, String> {
        match (b.mode.as_str(), b.from, b.to) {
            ("open", None, None) => Ok(BackfillRequest::Open),
            ("open", _, _) => Err("`from` and `to` belong to mode `range`".into()),
            ("range", Some(from), Some(to)) => Ok(BackfillRequest::Range { from, to }),
            ("range", None, _) => Err("`from` is required with mode `range`".into()),
            ("range", _, None) => Err("`to` is required with mode `range`".into()),
            (other, _, _) => Err(format!(
                "`mode`: unknown mode `{other}`: expected open or range"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobProgress {
    pub id: String,
    /// `backfill` or `redelivery`.
    pub kind: String,
    pub params: serde_json::Value,
    /// Deliveries the job created.
    pub total: i64,
    pub delivered: i64,
    pub dead: i64,
    /// Cancelled: their action or connector was deleted while they were pending.
    pub cancelled: i64,
    pub pending: i64,
    /// `done` when nothing is pending.
    pub state: String,
    pub created_at: i64,
}

impl Store {
    /// Creates the job and its deliveries (one transaction) to the actions of the organisation's
    /// strategy. `Ok(None)` when the organisation has no strategy.
    pub async fn backfill(
        &self,
        corp_id: &str,
        req: &BackfillRequest,
    ) -> Result<Option<JobProgress>, StoreError> {
        let Some(strategy) = self.strategy(corp_id).await? else {
            return Ok(None);
        };
        let id = new_id("job");
        let now = now_ms();
        let params = serde_json::to_string(req).expect("a request serialises");
        // Candidate events: (event id, kind, app, process, instance, seq).
        let rows: Vec<(String, String, String, String, InstanceId, i64)> = on_pool!(self, |pool| {
            match req {
            BackfillRequest::Open => sqlx::query_as(
                "SELECT e.id, e.kind, e.app_type, i.process_code, e.instance_id, e.seq FROM tasks t \
                 JOIN events e ON e.task_id = t.id AND e.instance_id = t.instance_id AND e.corp_id = t.corp_id AND e.kind = 'task.created' \
                 JOIN instances i ON i.id = t.instance_id AND i.corp_id = t.corp_id \
                 WHERE t.corp_id = $1 AND t.status = 'open' ORDER BY e.instance_id, e.seq",
            )
            .bind(corp_id)
            .fetch_all(pool)
            .await?,
            BackfillRequest::Range { from, to } => sqlx::query_as(
                "SELECT e.id, e.kind, e.app_type, i.process_code, e.instance_id, e.seq FROM events e \
                 JOIN instances i ON i.id = e.instance_id AND i.corp_id = e.corp_id \
                 WHERE e.corp_id = $1 AND e.created_at >= $2 AND e.created_at < $3 ORDER BY e.instance_id, e.seq",
            )
            .bind(corp_id)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?,
        }
        });
        let mut deliveries: Vec<(String, &str, &InstanceId, i64)> = Vec::new();
        for (event, kind, app, process, instance, seq) in &rows {
            if !strategy.selects(app, process) {
                continue;
            }
            if let Some(action) = strategy.actions.for_kind(kind.parse()?) {
                deliveries.push((event.clone(), action, instance, *seq));
            }
        }
        let total = deliveries.len() as i64;
        on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            sqlx::query("INSERT INTO jobs (id, corp_id, kind, params, total, created_at) VALUES ($1, $2, 'backfill', $3, $4, $5)")
                .bind(&id)
                .bind(corp_id)
                .bind(&params)
                .bind(total)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            for chunk in deliveries.chunks(500) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO deliveries (id, corp_id, event_id, action_id, instance_id, seq, status, ordered, backfill, \
                     job_id, attempts, next_attempt_at, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, (event, action, instance, seq)| {
                    b.push_bind(DeliveryId::fresh())
                        .push_bind(corp_id)
                        .push_bind(event)
                        .push_bind(*action)
                        .push_bind(*instance)
                        .push_bind(*seq)
                        .push_bind(DeliveryStatus::Pending.as_str())
                        .push_bind(strategy.ordered)
                        .push_bind(true)
                        .push_bind(&id)
                        .push_bind(0i32)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        self.job(corp_id, &id).await
    }

    pub async fn job(&self, corp_id: &str, id: &str) -> Result<Option<JobProgress>, StoreError> {
        type Row = (String, String, String, i64, i64);
        let row: Option<Row> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, kind, params, total, created_at FROM jobs WHERE corp_id = $1 AND id = $2")
                .bind(corp_id)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let Some((id, kind, params, total, created_at)) = row else {
            return Ok(None);
        };
        let counts: Vec<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT status, COUNT(*) FROM deliveries WHERE job_id = $1 OR redelivery_job_id = $1 GROUP BY status",
            )
            .bind(&id)
            .fetch_all(pool)
            .await?
        });
        let count = |s: DeliveryStatus| {
            counts
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map_or(0, |(_, n)| *n)
        };
        let pending = count(DeliveryStatus::Pending);
        Ok(Some(JobProgress {
            id,
            kind,
            params: serde_json::from_str(&params).unwrap_or_default(),
            total,
            delivered: count(DeliveryStatus::Delivered),
            dead: count(DeliveryStatus::Dead),
            cancelled: count(DeliveryStatus::Cancelled),
            pending,
            state: if pending == 0 {
                "done".into()
            } else {
                "running".into()
            },
            created_at,
        }))
    }
}
