//! Receiver checks (issue 19): the scorecard of each `POST …/actions/{id}/check`, kept per
//! action and listed newest first. A scorecard holds no secret (the check masks URLs and scrubs
//! answers as the delivery log does), so it is stored as it is shown.

use super::{on_pool, write_gate, Store, StoreError};
use crate::support::new_id;

/// A stored check: its id, its action, and its scorecard as stored (JSON; the API reads it).
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// `chk_…`
    pub id: String,
    pub action_id: String,
    pub scorecard: String,
}

/// What a check is listed and counted by.
#[derive(Debug, Clone, Copy)]
pub struct CheckCounts {
    pub started_at: i64,
    pub passed: u32,
    pub warned: u32,
    pub failed: u32,
}

/// Most checks one listing returns.
pub const MAX_LISTED: u32 = 100;

impl Store {
    /// Keeps the scorecard (JSON) of a check of `action_id`; returns its id.
    pub async fn record_check(
        &self,
        corp_id: &str,
        action_id: &str,
        counts: CheckCounts,
        scorecard: &str,
    ) -> Result<String, StoreError> {
        let id = new_id("chk");
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO receiver_checks (id, corp_id, action_id, started_at, passed, warned, failed, scorecard) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(corp_id)
            .bind(action_id)
            .bind(counts.started_at)
            .bind(counts.passed as i32)
            .bind(counts.warned as i32)
            .bind(counts.failed as i32)
            .bind(scorecard)
            .execute(pool)
            .await?;
        });
        Ok(id)
    }

    /// The checks of `action_id`, newest first, at most `limit` (capped at [`MAX_LISTED`]).
    pub async fn checks(
        &self,
        corp_id: &str,
        action_id: &str,
        limit: u32,
    ) -> Result<Vec<CheckRow>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_LISTED));
        let rows: Vec<(String, String, String)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, action_id, scorecard FROM receiver_checks \
                 WHERE corp_id = $1 AND action_id = $2 ORDER BY started_at DESC, id DESC LIMIT $3",
            )
            .bind(corp_id)
            .bind(action_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, action_id, scorecard)| CheckRow {
                id,
                action_id,
                scorecard,
            })
            .collect())
    }
}
