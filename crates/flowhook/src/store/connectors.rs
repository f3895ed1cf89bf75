//! Edits and deletions of connectors and actions (their creation and reads live with their
//! types in `integration::connectors`).
//!
//! An edit applies from the next delivery: it announces itself ([`super::settings_changed`]),
//! which voids the dispatcher's cached targets on this node at once (other nodes reload theirs
//! within a second).
//!
//! A deletion never makes a delivery vanish. The deleted connector or action stays, marked
//! (`deleted_at`), because the delivery log names it; in the same transaction its pending
//! deliveries become `cancelled`, the reason in their `lastError`. An action the sync strategy
//! maps an event to cannot go (nor a connector one of whose actions it maps): the strategy
//! would create deliveries for it. The deletion marks the actions first, then reads the
//! strategy — and saving a strategy reads its actions with their rows locked — so the two
//! cannot cross unseen.

use flowhook_sign::event::EventKind;

use super::{now_ms, on_pool, push_in_list, BeginWrite, Store, StoreError};
use crate::integration::connectors::{
    action_from, auth_kind, strategy_from_row, Action, ActionInput, ActionRow, Connector,
    ConnectorInput, StrategyRow, STRATEGY_COLUMNS,
};

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// No such connector or action in this organisation (or deleted already).
    NotFound,
    /// The sync strategy maps these events to these actions: nothing was changed.
    InUse(Vec<(EventKind, String)>),
    /// Deleted, with this many pending deliveries cancelled.
    Deleted { cancelled: u64 },
}

/// What is deleted: a connector with all its actions, or one action.
enum Which<'a> {
    Connector(&'a str),
    Action(&'a str),
}

impl Store {
    /// Replaces a connector's settings (the secrets already resolved, see
    /// [`ConnectorUpdate::resolve`](crate::integration::connectors::ConnectorUpdate::resolve));
    /// `None` when it does not exist.
    pub async fn update_connector(
        &self,
        corp_id: &str,
        id: &str,
        input: &ConnectorInput,
    ) -> Result<Option<Connector>, StoreError> {
        let (base_url, auth, headers) =
            super::secrets::seal_connector(&*super::secrets::keyring(self)?, corp_id, id, input);
        let changed = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE connectors SET name = $3, base_url = $4, auth_type = $5, auth_config = $6, \
                 default_headers = $7, timeout_ms = $8, updated_at = $9, max_concurrency = $10 \
                 WHERE corp_id = $1 AND id = $2 AND deleted_at IS NULL",
            )
            .bind(corp_id)
            .bind(id)
            .bind(&input.name)
            .bind(&base_url)
            .bind(auth_kind(&input.auth))
            .bind(&auth)
            .bind(&headers)
            .bind(input.timeout_ms as i64)
            .bind(now_ms())
            .bind(input.max_concurrency as i32)
            .execute(pool)
            .await?
            .rows_affected()
        });
        super::settings_changed();
        if changed == 0 {
            return Ok(None);
        }
        Ok(self
            .connectors(corp_id, Some(id))
            .await?
            .pop()
            .map(|(c, _)| c))
    }

    /// Replaces an action's settings; `None` when the action, or the connector it names, does
    /// not exist in the organisation.
    pub async fn update_action(
        &self,
        corp_id: &str,
        id: &str,
        input: &ActionInput,
    ) -> Result<Option<Action>, StoreError> {
        let row: Option<ActionRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE actions SET connector_id = $3, name = $4, method = $5, path = $6, encoding = $7 \
                 WHERE corp_id = $1 AND id = $2 AND deleted_at IS NULL AND EXISTS (SELECT 1 FROM connectors c \
                 WHERE c.id = $3 AND c.corp_id = $1 AND c.deleted_at IS NULL) \
                 RETURNING id, corp_id, connector_id, name, method, path, encoding, created_at",
            )
            .bind(corp_id)
            .bind(id)
            .bind(&input.connector_id)
            .bind(&input.name)
            .bind(&input.method)
            .bind(&input.path)
            .bind(input.encoding.as_str())
            .fetch_optional(pool)
            .await?
        });
        super::settings_changed();
        Ok(row.map(action_from))
    }

    /// Deletes a connector and its actions, cancelling their pending deliveries; refused
    /// (`InUse`) while the sync strategy maps an event to one of its actions.
    pub async fn delete_connector(&self, corp_id: &str, id: &str) -> Result<Deletion, StoreError> {
        self.delete(corp_id, Which::Connector(id)).await
    }

    /// Deletes an action, cancelling its pending deliveries; refused (`InUse`) while the sync
    /// strategy maps an event to it.
    pub async fn delete_action(&self, corp_id: &str, id: &str) -> Result<Deletion, StoreError> {
        self.delete(corp_id, Which::Action(id)).await
    }

    async fn delete(&self, corp_id: &str, which: Which<'_>) -> Result<Deletion, StoreError> {
        let now = now_ms();
        let gate = super::write_gate(self).await;
        let outcome = on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // Mark first (taking the rows' locks), then read the strategy: see the module doc.
            let (actions, reason): (Vec<String>, String) = match which {
                Which::Connector(id) => {
                    let name: Option<String> = sqlx::query_scalar(
                        "UPDATE connectors SET deleted_at = $3, updated_at = $3 \
                         WHERE corp_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING name",
                    )
                    .bind(corp_id)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(name) = name else {
                        return Ok(Deletion::NotFound);
                    };
                    let actions = sqlx::query_scalar(
                        "UPDATE actions SET deleted_at = $3 \
                         WHERE corp_id = $1 AND connector_id = $2 AND deleted_at IS NULL RETURNING id",
                    )
                    .bind(corp_id)
                    .bind(id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                    (
                        actions,
                        format!("cancelled: its connector `{name}` ({id}) was deleted"),
                    )
                }
                Which::Action(id) => {
                    let name: Option<String> = sqlx::query_scalar(
                        "UPDATE actions SET deleted_at = $3 \
                         WHERE corp_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING name",
                    )
                    .bind(corp_id)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(name) = name else {
                        return Ok(Deletion::NotFound);
                    };
                    (
                        vec![id.to_owned()],
                        format!("cancelled: its action `{name}` ({id}) was deleted"),
                    )
                }
            };
            let strategy: Option<StrategyRow> = sqlx::query_as(&format!(
                "SELECT {STRATEGY_COLUMNS} FROM sync_strategies WHERE corp_id = $1"
            ))
            .bind(corp_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(strategy) = strategy.map(strategy_from_row).transpose()? {
                let used: Vec<(EventKind, String)> = strategy
                    .actions
                    .events_using(&actions)
                    .into_iter()
                    .map(|(k, a)| (k, a.to_owned()))
                    .collect();
                if !used.is_empty() {
                    // Dropped without commit: rolled back, nothing marked.
                    return Ok(Deletion::InUse(used));
                }
            }
            let mut cancelled = 0;
            for chunk in actions.chunks(500) {
                let mut q = sqlx::QueryBuilder::new(
                    "UPDATE deliveries SET status = 'cancelled', lease_owner = NULL, lease_until = NULL, last_error = ",
                );
                q.push_bind(&reason)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(" WHERE corp_id = ")
                    .push_bind(corp_id)
                    .push(" AND status = 'pending' AND action_id");
                push_in_list(&mut q, chunk.iter().map(String::as_str));
                cancelled += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Deletion::Deleted { cancelled }
        });
        drop(gate);
        if matches!(outcome, Deletion::Deleted { .. }) {
            super::settings_changed();
        }
        Ok(outcome)
    }

    /// Cancels the pending deliveries of `action_id` if it was deleted: the dispatcher's
    /// safety net for a delivery created after the deletion from a strategy read before it (a
    /// command batch that began before the strategy changed). Returns how many.
    pub async fn cancel_deliveries_of_deleted_action(
        &self,
        corp_id: &str,
        action_id: &str,
    ) -> Result<u64, StoreError> {
        let _gate = super::write_gate(self).await;
        Ok(on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE deliveries SET status = 'cancelled', last_error = $3, lease_owner = NULL, \
                 lease_until = NULL, updated_at = $4 \
                 WHERE corp_id = $1 AND action_id = $2 AND status = 'pending' \
                 AND EXISTS (SELECT 1 FROM actions a WHERE a.id = $2 AND a.deleted_at IS NOT NULL)",
            )
            .bind(corp_id)
            .bind(action_id)
            .bind(format!("cancelled: its action ({action_id}) was deleted"))
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}
