//! Receiver checks (issue 19): the scorecard of each `POST …/actions/{id}/check`, kept per
//! action and listed newest first. A scorecard holds no secret (the check masks URLs and scrubs
//! answers as the delivery log does), so it is stored as it is shown.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{new_id, on_pool, write_gate, Store, StoreError};
use crate::delivery::check::Scorecard;

/// A stored check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredCheck {
    /// `chk_…`
    pub id: String,
    pub action_id: String,
    pub scorecard: Scorecard,
}

/// Most checks one listing returns.
pub const MAX_LISTED: u32 = 100;

impl Store {
    /// Keeps the scorecard of a check of `action_id`; returns it with its id.
    pub async fn record_check(
        &self,
        corp_id: &str,
        action_id: &str,
        scorecard: Scorecard,
    ) -> Result<StoredCheck, StoreError> {
        let id = new_id("chk");
        let json = serde_json::to_string(&scorecard).expect("a scorecard serialises");
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO receiver_checks (id, corp_id, action_id, started_at, passed, warned, failed, scorecard) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(corp_id)
            .bind(action_id)
            .bind(scorecard.started_at)
            .bind(scorecard.passed as i32)
            .bind(scorecard.warned as i32)
            .bind(scorecard.failed as i32)
            .bind(&json)
            .execute(pool)
            .await?;
        });
        Ok(StoredCheck {
            id,
            action_id: action_id.to_owned(),
            scorecard,
        })
    }

    /// The checks of `action_id`, newest first, at most `limit` (capped at [`MAX_LISTED`]).
    pub async fn checks(
        &self,
        corp_id: &str,
        action_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredCheck>, StoreError> {
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
            .filter_map(|(id, action_id, json)| {
                // A scorecard this version cannot read (written by a newer one) is left out.
                let scorecard = serde_json::from_str(&json).ok()?;
                Some(StoredCheck {
                    id,
                    action_id,
                    scorecard,
                })
            })
            .collect())
    }
}
