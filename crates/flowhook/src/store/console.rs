//! The console's persistence: server-side sessions (`console_sessions`, migration 0008) and the
//! installation's approval-link secret (`flowhook_meta`, key `approval_link_secret`, sealed
//! under the master key like every other secret at rest; see `store::secrets`), and the
//! integration center's cheap counts: attempts per minute (the delivery-rate chart) and the
//! queue depth.
//!
//! These are not the command writer's business: a sign-in, a sign-out or a session's idle
//! touch is one small statement of its own, never on a hot path (a session is touched at most
//! once a minute, see `console::session`), so it takes neither the writer's queue nor its group
//! commit. On SQLite each takes the in-process write gate like the other writers, so it queues
//! in memory behind a batch instead of sleeping in SQLite's busy handler.
//!
//! Sessions are found by the SHA-256 of their cookie value; the value itself is never stored.

use super::deliveries::DeliveryStatus;
use super::{on_pool, write_gate, Store, StoreError};
use crate::engine::ids::InstanceId;
use crate::support::now_ms;

/// The `flowhook_meta` key of the approval-link secret.
const LINK_SECRET_KEY: &str = "approval_link_secret";

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Signed in with an organisation admin key or the bootstrap key.
    Operator,
    /// Opened a signed approval link: acts as that link's assignee.
    Link,
    /// Named by the trusted single-sign-on header.
    Header,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Operator => "operator",
            SessionKind::Link => "link",
            SessionKind::Header => "header",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            SessionKind::Operator,
            SessionKind::Link,
            SessionKind::Header,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 hex of the cookie value.
    pub id_hash: String,
    pub kind: SessionKind,
    /// `None`: a bootstrap operator who has not picked an organisation yet.
    pub corp_id: Option<String>,
    /// The user of a link or header session.
    pub user_id: Option<String>,
    /// The API key an operator signed in with (`None`: the bootstrap key).
    pub key_hash: Option<String>,
    /// The token every state-changing form of this session carries.
    pub csrf: String,
    /// Link sessions: the tasks whose links were opened (the only tasks they may act on).
    pub grants: Vec<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    i64,
    i64,
);

const COLUMNS: &str =
    "id_hash, kind, corp_id, user_id, key_hash, csrf, grants, created_at, last_seen_at, expires_at";

fn from_row(r: Row) -> Result<Session, StoreError> {
    let (
        id_hash,
        kind,
        corp_id,
        user_id,
        key_hash,
        csrf,
        grants,
        created_at,
        last_seen_at,
        expires_at,
    ) = r;
    Ok(Session {
        id_hash,
        kind: SessionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("session kind `{kind}`")))?,
        corp_id,
        user_id,
        key_hash,
        csrf,
        grants: grants.split_whitespace().map(str::to_owned).collect(),
        created_at,
        last_seen_at,
        expires_at,
    })
}

impl Store {
    /// Stores a new session.
    pub async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query(&format!(
                "INSERT INTO console_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(&s.id_hash)
            .bind(s.kind.as_str())
            .bind(&s.corp_id)
            .bind(&s.user_id)
            .bind(&s.key_hash)
            .bind(&s.csrf)
            .bind(s.grants.join(" "))
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .bind(s.expires_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// The session with this hash, if it has not reached its absolute expiry (idle expiry is
    /// the caller's rule: it knows the configured idle time).
    pub async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>, StoreError> {
        let row: Option<Row> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM console_sessions WHERE id_hash = $1 AND expires_at > $2"
            ))
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        row.map(from_row).transpose()
    }

    /// Marks the session used now (idle expiry counts from here).
    pub async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Sets the organisation of a bootstrap operator's session.
    pub async fn set_session_org(&self, id_hash: &str, corp_id: &str) -> Result<(), StoreError> {
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE console_sessions SET corp_id = $1 WHERE id_hash = $2 AND kind = 'operator'",
            )
            .bind(corp_id)
            .bind(id_hash)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Adds a task to a link session's grants, keeping the earlier of the two expiries.
    pub async fn grant_session_task(
        &self,
        id_hash: &str,
        task_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            let grants: Option<String> = sqlx::query_scalar(
                "SELECT grants FROM console_sessions WHERE id_hash = $1 AND kind = 'link'",
            )
            .bind(id_hash)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(grants) = grants {
                let mut list: Vec<&str> = grants.split_whitespace().collect();
                if !list.contains(&task_id) {
                    list.push(task_id);
                }
                sqlx::query(
                    "UPDATE console_sessions SET grants = $1, \
                     expires_at = CASE WHEN expires_at < $2 THEN expires_at ELSE $2 END WHERE id_hash = $3",
                )
                .bind(list.join(" "))
                .bind(expires_at)
                .bind(id_hash)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Ends a session (sign-out); also removes every session past its absolute expiry.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1 OR expires_at <= $2")
                .bind(id_hash)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// The approval-link secret, created on first use.
    pub async fn link_secret(&self) -> Result<String, StoreError> {
        let found: Option<String> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM flowhook_meta WHERE key = $1")
                .bind(LINK_SECRET_KEY)
                .fetch_optional(pool)
                .await?
        });
        if let Some(stored) = found {
            return open_link_secret(self, stored);
        }
        // Two nodes may race to create it: the first insert wins, both read the winner.
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO flowhook_meta (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
            )
            .bind(LINK_SECRET_KEY)
            .bind(seal_link_secret(self, &new_secret())?)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        let stored: String = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM flowhook_meta WHERE key = $1")
                .bind(LINK_SECRET_KEY)
                .fetch_one(pool)
                .await?
        });
        open_link_secret(self, stored)
    }

    /// Replaces the approval-link secret: every link signed with the old one stops working
    /// (deliveries sent from now on carry links signed with the new one). Announced as a
    /// settings change, so this process uses the new secret at once.
    pub async fn rotate_link_secret(&self) -> Result<(), StoreError> {
        let sealed = seal_link_secret(self, &new_secret())?;
        {
            let _gate = write_gate(self).await;
            on_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO flowhook_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )
                .bind(LINK_SECRET_KEY)
                .bind(&sealed)
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
            });
        }
        crate::support::settings_changed();
        Ok(())
    }
}

/// The link secret sealed under the current master key.
fn seal_link_secret(store: &Store, secret: &str) -> Result<String, StoreError> {
    Ok(super::secrets::keyring(store)?.seal(secret, super::secrets::field::LINK_SECRET))
}

/// The link secret as stored: sealed, or plaintext written by a Flowhook before the sealing
/// (used as it is; the start's reseal seals it).
fn open_link_secret(store: &Store, stored: String) -> Result<String, StoreError> {
    if super::secrets::Keyring::sealed_with(&stored).is_none() {
        return Ok(stored);
    }
    Ok(super::secrets::keyring(store)?.open(&stored, super::secrets::field::LINK_SECRET)?)
}

impl Store {
    /// Every organisation, (corp id, name), for the bootstrap operator's picker.
    pub async fn organisations(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as("SELECT corp_id, name FROM organisations ORDER BY corp_id")
                .fetch_all(pool)
                .await?
        }))
    }

    /// The latest version of each of an organisation's processes: (code, name, app, version).
    pub async fn process_list(
        &self,
        corp_id: &str,
    ) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT d.process_code, d.name, d.app_type, d.version FROM process_definitions d \
                 WHERE d.corp_id = $1 AND d.version = (SELECT MAX(v.version) FROM process_definitions v \
                 WHERE v.corp_id = d.corp_id AND v.process_code = d.process_code) ORDER BY d.process_code",
            )
            .bind(corp_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The organisation of an instance, found by its id alone (an approval link names only
    /// the task, whose id starts with its instance's).
    pub async fn instance_corp(
        &self,
        instance_id: &InstanceId,
    ) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT corp_id FROM instances WHERE id = $1")
                .bind(instance_id)
                .fetch_optional(pool)
                .await?
        }))
    }
}

/// Attempts of one minute of the delivery-rate chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteRate {
    /// The minute's start (epoch ms, a multiple of 60 000).
    pub minute: i64,
    /// Attempts that succeeded (a 2xx).
    pub delivered: i64,
    /// Attempts that failed (any error kind: status, timeout, connect, …).
    pub failed: i64,
}

/// An organisation's deliveries waiting or given up: the queue depth the console shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    pub pending: i64,
    pub dead: i64,
}

impl Store {
    /// Attempts per minute since `since` (epoch ms), oldest first; minutes without an attempt
    /// are absent. Read through the `attempts_started` index: at most the window's attempts
    /// (the chart asks for one hour) are read, whatever the size of the log.
    pub async fn delivery_rate(
        &self,
        corp_id: &str,
        since: i64,
    ) -> Result<Vec<MinuteRate>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT (started_at / 60000) * 60000 AS m, \
                 SUM(CASE WHEN error_kind IS NULL THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN error_kind IS NULL THEN 0 ELSE 1 END) \
                 FROM attempts WHERE started_at >= $2 AND corp_id = $1 GROUP BY m ORDER BY m",
            )
            .bind(corp_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(minute, delivered, failed)| MinuteRate {
                minute,
                delivered,
                failed,
            })
            .collect())
    }

    /// The organisation's pending and dead deliveries (read through the status index: the
    /// delivered ones, most of the table, are not read).
    pub async fn queue_depth(&self, corp_id: &str) -> Result<QueueDepth, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT status, COUNT(*) FROM deliveries WHERE status IN ('pending', 'dead') \
                 AND corp_id = $1 GROUP BY status",
            )
            .bind(corp_id)
            .fetch_all(pool)
            .await?
        });
        let mut depth = QueueDepth::default();
        for (status, n) in rows {
            match status.parse()? {
                DeliveryStatus::Pending => depth.pending = n,
                _ => depth.dead = n,
            }
        }
        Ok(depth)
    }
}

/// 244 random bits as hex (two v4 UUIDs, as API keys).
pub fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
