//! Connectors, actions and sync strategies in the database: their rows, creation, reads, edits
//! and deletions (their types and rules live in `integration::connectors`, which knows no SQL).
//!
//! An edit applies from the next delivery: it announces itself
//! ([`crate::support::settings_changed`]), which voids the dispatcher's cached targets on this node at once (other nodes reload theirs
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

use serde::{Deserialize, Serialize};

use super::{on_pool, push_in_list, BeginWrite, Store, StoreError};
use crate::integration::connectors::{
    Action, ActionInput, Auth, Connector, ConnectorInput, Encoding, EventActions, Strategy,
};
use crate::support::{new_id, now_ms};

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
        crate::support::settings_changed();
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
        crate::support::settings_changed();
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
            crate::support::settings_changed();
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

/// A Standard Webhooks secret as stored (the list sealed whole, see `store::secrets`): valid
/// until `expires_at` (during a rotation's grace).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSecret {
    secret: String,
    expires_at: Option<i64>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

fn new_webhook_secret() -> flowhook_sign::webhooks::WebhookSecret {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    flowhook_sign::webhooks::WebhookSecret::from_bytes(bytes).expect("32 bytes")
}

pub(crate) type ActionRow = (String, String, String, String, String, String, String, i64);

/// An action from its row (`id, corp_id, connector_id, name, method, path, encoding, created_at`).
pub(crate) fn action_from(
    (id, corp_id, connector_id, name, method, path, encoding, created_at): ActionRow,
) -> Action {
    Action {
        id,
        corp_id,
        connector_id,
        name,
        method,
        path,
        encoding: if encoding == "json" {
            Encoding::Json
        } else {
            Encoding::Form
        },
        created_at,
    }
}
pub(crate) type ConnectorRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i32,
);

pub(crate) fn connector_from(row: ConnectorRow) -> Result<(Connector, Auth), StoreError> {
    let (
        id,
        corp_id,
        name,
        base_url,
        auth_type,
        auth_config,
        headers,
        timeout_ms,
        created_at,
        paused_at,
        paused_reason,
        max_concurrency,
    ) = row;
    let auth: Auth = serde_json::from_str(&auth_config)
        .map_err(|e| StoreError::Corrupt(format!("connector auth: {e}")))?;
    debug_assert_eq!(auth_type, auth_kind(&auth));
    let default_headers = serde_json::from_str(&headers)
        .map_err(|e| StoreError::Corrupt(format!("connector headers: {e}")))?;
    Ok((
        Connector {
            id,
            corp_id,
            name,
            base_url,
            auth: auth.masked(),
            default_headers,
            timeout_ms: timeout_ms as u64,
            max_concurrency: max_concurrency.max(1) as u32,
            created_at,
            paused_at,
            paused_reason,
        },
        auth,
    ))
}

pub(crate) fn auth_kind(a: &Auth) -> &'static str {
    match a {
        Auth::None => "none",
        Auth::Basic { .. } => "basic",
        Auth::ApiKey { .. } => "apiKey",
        Auth::Bearer { .. } => "bearer",
    }
}

impl Store {
    pub async fn create_connector(
        &self,
        corp_id: &str,
        input: &ConnectorInput,
    ) -> Result<Connector, StoreError> {
        let id = new_id("con");
        let now = now_ms();
        let (base_url, auth, headers) = crate::store::secrets::seal_connector(
            &*crate::store::secrets::keyring(self)?,
            corp_id,
            &id,
            input,
        );
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO connectors (id, corp_id, name, base_url, auth_type, auth_config, default_headers, timeout_ms, \
                 created_at, updated_at, max_concurrency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
            )
            .bind(&id)
            .bind(corp_id)
            .bind(&input.name)
            .bind(&base_url)
            .bind(auth_kind(&input.auth))
            .bind(&auth)
            .bind(&headers)
            .bind(input.timeout_ms as i64)
            .bind(now)
            .bind(input.max_concurrency as i32)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(Connector {
            id,
            corp_id: corp_id.into(),
            name: input.name.clone(),
            base_url: input.base_url.clone(),
            auth: input.auth.masked(),
            default_headers: input.default_headers.clone(),
            timeout_ms: input.timeout_ms,
            max_concurrency: input.max_concurrency,
            created_at: now,
            paused_at: None,
            paused_reason: None,
        })
    }

    /// Connectors of an organisation (`id` to pick one); with their unmasked auth, for sending.
    pub async fn connectors(
        &self,
        corp_id: &str,
        id: Option<&str>,
    ) -> Result<Vec<(Connector, Auth)>, StoreError> {
        let rows: Vec<ConnectorRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, corp_id, name, base_url, auth_type, auth_config, default_headers, timeout_ms, created_at, \
                 paused_at, paused_reason, max_concurrency \
                 FROM connectors WHERE corp_id = $1 AND ($2 IS NULL OR id = $2) AND deleted_at IS NULL \
                 ORDER BY created_at, id",
            )
            .bind(corp_id)
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        let keyring = crate::store::secrets::keyring(self)?;
        rows.into_iter()
            .map(|row| connector_from(crate::store::secrets::open_connector(&keyring, row)?))
            .collect()
    }

    /// Pauses a connector (`410 Gone`, or an operator); `false` when it does not exist or was
    /// paused already.
    pub async fn pause_connector(
        &self,
        corp_id: &str,
        id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE connectors SET paused_at = $3, paused_reason = $4 \
             WHERE corp_id = $1 AND id = $2 AND paused_at IS NULL AND deleted_at IS NULL"
        )
        .bind(corp_id)
        .bind(id)
        .bind(now)
        .bind(reason)
        .execute(pool)
        .await?
        .rows_affected());
        crate::support::settings_changed();
        Ok(changed == 1)
    }

    /// Resumes a paused connector: its waiting deliveries are due at once. Returns how many,
    /// or `None` when the connector does not exist.
    pub async fn resume_connector(
        &self,
        corp_id: &str,
        id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let now = now_ms();
        let _gate = crate::store::write_gate(self).await;
        let due = on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            let found = sqlx::query(
                "UPDATE connectors SET paused_at = NULL, paused_reason = NULL \
                 WHERE corp_id = $1 AND id = $2 AND deleted_at IS NULL",
            )
            .bind(corp_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if found == 0 {
                return Ok(None);
            }
            let due = sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $2 WHERE status = 'pending' AND next_attempt_at > $2 \
                 AND action_id IN (SELECT id FROM actions WHERE connector_id = $1)",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            due
        });
        crate::support::settings_changed();
        Ok(Some(due))
    }

    pub async fn create_action(
        &self,
        corp_id: &str,
        input: &ActionInput,
    ) -> Result<Action, StoreError> {
        let id = new_id("act");
        let now = now_ms();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO actions (id, corp_id, connector_id, name, method, path, encoding, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(corp_id)
            .bind(&input.connector_id)
            .bind(&input.name)
            .bind(&input.method)
            .bind(&input.path)
            .bind(input.encoding.as_str())
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(Action {
            id,
            corp_id: corp_id.into(),
            connector_id: input.connector_id.clone(),
            name: input.name.clone(),
            method: input.method.clone(),
            path: input.path.clone(),
            encoding: input.encoding,
            created_at: now,
        })
    }

    pub async fn actions(
        &self,
        corp_id: &str,
        id: Option<&str>,
    ) -> Result<Vec<Action>, StoreError> {
        let rows: Vec<ActionRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, corp_id, connector_id, name, method, path, encoding, created_at FROM actions \
                 WHERE corp_id = $1 AND ($2 IS NULL OR id = $2) AND deleted_at IS NULL ORDER BY created_at, id",
            )
            .bind(corp_id)
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(action_from).collect())
    }

    /// Saves the strategy; every named action must belong to the organisation. Returns the new
    /// Standard Webhooks secret when signing was just turned on (shown this once).
    pub async fn put_strategy(
        &self,
        corp_id: &str,
        s: &Strategy,
    ) -> Result<Result<Option<String>, String>, StoreError> {
        let result = self.put_strategy_unannounced(corp_id, s).await;
        crate::support::settings_changed();
        result
    }

    async fn put_strategy_unannounced(
        &self,
        corp_id: &str,
        s: &Strategy,
    ) -> Result<Result<Option<String>, String>, StoreError> {
        let json = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|v| serde_json::to_string(v).expect("strings serialise"))
        };
        // The actions are checked in the transaction that saves the strategy, their rows locked
        // (PostgreSQL), so an action deleted meanwhile is either seen deleted here or sees this
        // strategy and refuses to go (`delete_action` marks it first, then reads the strategy).
        let lock = match self {
            Store::Postgres(_) => " FOR SHARE",
            Store::Sqlite(_) => "",
        };
        let known_sql =
            format!("SELECT id FROM actions WHERE corp_id = $1 AND deleted_at IS NULL{lock}");
        let gate = crate::store::write_gate(self).await;
        let unknown = on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            let known: Vec<String> = sqlx::query_scalar(&known_sql)
                .bind(corp_id)
                .fetch_all(&mut *tx)
                .await?;
            if let Some(unknown) = s.actions.all().find(|a| !known.contains(a)) {
                Some(unknown.clone())
            } else {
                sqlx::query(
                    "INSERT INTO sync_strategies (corp_id, enabled, created_action, finished_action, cancelled_action, \
                     deleted_action, cc_action, app_filter, process_filter, ordered, updated_at, standard_webhooks) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (corp_id) DO UPDATE SET enabled = $2, created_action = $3, finished_action = $4, \
                     cancelled_action = $5, deleted_action = $6, cc_action = $7, app_filter = $8, process_filter = $9, \
                     ordered = $10, updated_at = $11, standard_webhooks = $12",
                )
                .bind(corp_id)
                .bind(s.enabled)
                .bind(&s.actions.created)
                .bind(&s.actions.finished)
                .bind(&s.actions.cancelled)
                .bind(&s.actions.deleted)
                .bind(&s.actions.cc)
                .bind(json(&s.app_types))
                .bind(json(&s.process_codes))
                .bind(s.ordered)
                .bind(now_ms())
                .bind(s.standard_webhooks)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                None
            }
        });
        drop(gate);
        if let Some(unknown) = unknown {
            return Ok(Err(format!("unknown action `{unknown}`")));
        }
        let mut new_secret = None;
        if s.standard_webhooks && self.webhook_secrets(corp_id, now_ms()).await?.is_empty() {
            new_secret = Some(self.rotate_webhook_secret(corp_id, 0).await?);
        }
        Ok(Ok(new_secret))
    }

    pub async fn strategy(&self, corp_id: &str) -> Result<Option<Strategy>, StoreError> {
        let row: Option<StrategyRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {STRATEGY_COLUMNS} FROM sync_strategies WHERE corp_id = $1"
            ))
            .bind(corp_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(strategy_from_row).transpose()
    }

    /// Starts signing with a new Standard Webhooks secret; the others stay valid for `grace_ms`.
    /// Returns the new secret (`whsec_…`), shown this once.
    pub async fn rotate_webhook_secret(
        &self,
        corp_id: &str,
        grace_ms: i64,
    ) -> Result<String, StoreError> {
        let result = self
            .rotate_webhook_secret_unannounced(corp_id, grace_ms)
            .await;
        crate::support::settings_changed();
        result
    }

    async fn rotate_webhook_secret_unannounced(
        &self,
        corp_id: &str,
        grace_ms: i64,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let mut secrets = self.stored_secrets(corp_id, true).await?;
        secrets.retain(|s| s.expires_at.is_none_or(|t| t > now));
        for s in &mut secrets {
            s.expires_at = Some(
                s.expires_at
                    .map_or(now + grace_ms, |t| t.min(now + grace_ms)),
            );
        }
        let secret = new_webhook_secret().expose();
        secrets.insert(
            0,
            StoredSecret {
                secret: secret.clone(),
                expires_at: None,
            },
        );
        let json = crate::store::secrets::keyring(self)?.seal(
            &serde_json::to_string(&secrets).expect("secrets serialise"),
            &crate::store::secrets::field::webhook_secrets(corp_id),
        );
        on_pool!(self, |pool| {
            sqlx::query("UPDATE sync_strategies SET webhook_secrets = $2 WHERE corp_id = $1")
                .bind(corp_id)
                .bind(&json)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(secret)
    }

    /// The Standard Webhooks secrets to sign with now (newest first); empty when disabled.
    pub async fn webhook_secrets(
        &self,
        corp_id: &str,
        now: i64,
    ) -> Result<Vec<flowhook_sign::webhooks::WebhookSecret>, StoreError> {
        self.stored_secrets(corp_id, false)
            .await?
            .into_iter()
            .filter(|s| s.expires_at.is_none_or(|t| t > now))
            .map(|s| {
                flowhook_sign::webhooks::WebhookSecret::parse(&s.secret)
                    .map_err(|e| StoreError::Corrupt(format!("webhook secret: {e}")))
            })
            .collect()
    }

    /// Stored secrets; only when signing is enabled unless `even_if_disabled`.
    async fn stored_secrets(
        &self,
        corp_id: &str,
        even_if_disabled: bool,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let row: Option<(bool, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT standard_webhooks, webhook_secrets FROM sync_strategies WHERE corp_id = $1",
            )
            .bind(corp_id)
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some((enabled, Some(sealed))) if enabled || even_if_disabled => {
                let json = zeroize::Zeroizing::new(crate::store::secrets::keyring(self)?.open(
                    &sealed,
                    &crate::store::secrets::field::webhook_secrets(corp_id),
                )?);
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("webhook secrets: {e}")))
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// The columns of `sync_strategies` that [`strategy_from_row`] reads, in its order.
pub(crate) const STRATEGY_COLUMNS: &str =
    "enabled, created_action, finished_action, cancelled_action, \
     deleted_action, cc_action, app_filter, process_filter, ordered, standard_webhooks";

/// A row of [`STRATEGY_COLUMNS`].
pub(crate) type StrategyRow = (
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    bool,
);

/// A stored sync strategy from its row (the filters are JSON arrays).
pub(crate) fn strategy_from_row(
    (
        enabled,
        created,
        finished,
        cancelled,
        deleted,
        cc,
        apps,
        processes,
        ordered,
        standard_webhooks,
    ): StrategyRow,
) -> Result<Strategy, StoreError> {
    let parse = |v: Option<String>| -> Result<Option<Vec<String>>, StoreError> {
        v.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("strategy filter: {e}")))
        })
        .transpose()
    };
    Ok(Strategy {
        enabled,
        actions: EventActions {
            created,
            finished,
            cancelled,
            deleted,
            cc,
        },
        app_types: parse(apps)?,
        process_codes: parse(processes)?,
        ordered,
        standard_webhooks,
    })
}
