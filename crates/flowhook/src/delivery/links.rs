//! Signed approval links: the `taskUrl` every `task.created` carries, signed here at send time;
//! the console's task page checks them (`console::tasks`).
//!
//! `{public_base_url}/console/tasks/{taskId}?u={assignee}&e={expiry, epoch seconds}&s={mac}`,
//! where `mac` is the unpadded base64url HMAC-SHA256, under the installation's link secret
//! (kept in the database, `flowhook rotate-link-secret` replaces it), of the organisation, the
//! task, the assignee and the expiry. Opening it signs the browser in as that assignee for that
//! task (`console::session::open_link`); a changed, expired or other-task link is refused with
//! 403 and a page that says so.
//!
//! **When links are signed.** An event's Yida parameters are rendered and stored once, when the
//! event is written, and every delivery of it sends them again — retries up to 3 days later,
//! redeliveries and backfills any time later. A link signed then would be stale by the time a
//! backfill re-sends it. So the stored `task` keeps the plain `…/console/tasks/{taskId}`, and
//! the dispatcher signs it at send time ([`Links::refresh`]): every attempt carries a link valid
//! for `console_link_valid_days` from that attempt, and a rotated secret applies to everything
//! sent after it. Only the `taskUrl` string inside the `task` JSON changes; the wire format
//! stays Yida's (`taskUrl` is a string field of `task`). The attempt log keeps the link with its
//! signature masked: an `integration` key reads the log and must not gain approvers' power.

use std::time::Duration;

use base64::Engine;
use flowhook_sign::event::EventKind;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{Store, StoreError};
use crate::support::Recent;

/// How long this node reuses the secret it read (a rotation by another process applies within
/// this time; by this process at once).
const SECRET_TTL: Duration = Duration::from_secs(5);

/// What a link carries besides the task id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkParams {
    pub user: String,
    /// Epoch seconds.
    pub expires: i64,
    pub mac: String,
}

/// The MAC of a link.
pub fn mac(secret: &str, corp_id: &str, task_id: &str, user: &str, expires: i64) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    // Length-prefixed fields: no two different tuples give the same message.
    for part in [
        "flowhook-approval-link-v1",
        corp_id,
        task_id,
        user,
        &expires.to_string(),
    ] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part.as_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

/// Whether `p` is a valid, unexpired link to `task_id` of `corp_id` for `assignee`.
pub fn verify(
    secret: &str,
    corp_id: &str,
    task_id: &str,
    assignee: &str,
    p: &LinkParams,
    now_ms: i64,
) -> bool {
    let expected = mac(secret, corp_id, task_id, &p.user, p.expires);
    let mac_ok: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), p.mac.as_bytes()).into();
    mac_ok && p.user == assignee && p.expires.saturating_mul(1000) > now_ms
}

/// The unsigned address of a task's page (what the stored `task` JSON holds).
pub fn plain_url(base: &str, task_id: &str) -> String {
    format!("{}/console/tasks/{task_id}", base.trim_end_matches('/'))
}

/// The signed address.
pub fn signed_url(
    base: &str,
    secret: &str,
    corp_id: &str,
    task_id: &str,
    user: &str,
    expires: i64,
) -> String {
    format!(
        "{}?u={}&e={expires}&s={}",
        plain_url(base, task_id),
        query_value(user),
        mac(secret, corp_id, task_id, user, expires)
    )
}

/// Signs links at send time; shared by the dispatcher and the console.
pub struct Links {
    store: Store,
    base: String,
    valid_for_secs: i64,
    secret: Recent<String>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .field("valid_for_secs", &self.valid_for_secs)
            .finish_non_exhaustive()
    }
}

impl Links {
    pub fn new(store: Store, public_base_url: &str, valid_days: u64) -> Self {
        Links {
            store,
            base: public_base_url.trim_end_matches('/').to_owned(),
            valid_for_secs: valid_days as i64 * 86_400,
            secret: Recent::new(SECRET_TTL),
        }
    }

    pub async fn secret(&self) -> Result<String, StoreError> {
        self.secret
            .get_or_load("secret", self.store.link_secret())
            .await
    }

    /// The `task` parameter of a `task.created` with its plain `taskUrl` replaced by a link
    /// signed now, and the same with the signature masked (for the attempt log). `None` when
    /// there is nothing to sign: another event, or a `taskUrl` that is not this console's
    /// (an external engine's, relayed by ingest).
    pub async fn refresh(
        &self,
        kind: EventKind,
        params: &[(String, String)],
        now_ms: i64,
    ) -> Result<Option<(Vec<(String, String)>, Vec<(String, String)>)>, StoreError> {
        if kind != EventKind::Created {
            return Ok(None);
        }
        let Some(i) = params.iter().position(|(k, _)| k == "task") else {
            return Ok(None);
        };
        let json = &params[i].1;
        let Ok(record) = serde_json::from_str::<flowhook_sign::event::TaskRecord>(json) else {
            return Ok(None);
        };
        let (Some(corp), Some(task), Some(user)) = (
            record.corp_id.as_deref(),
            record.task_id.as_deref(),
            record.actioner_id.as_deref(),
        ) else {
            return Ok(None);
        };
        let plain = plain_url(&self.base, task);
        if record.task_url.as_deref() != Some(plain.as_str()) {
            return Ok(None);
        }
        // Replace the one string, leaving every other byte of the stored JSON as it was.
        let needle = format!(
            "\"taskUrl\":{}",
            serde_json::to_string(&plain).expect("a string")
        );
        if json.matches(&needle).count() != 1 {
            return Ok(None);
        }
        let secret = self.secret().await?;
        let expires = now_ms / 1000 + self.valid_for_secs;
        let signed = signed_url(&self.base, &secret, corp, task, user, expires);
        let masked = format!("{}?u={}&e={expires}&s=***", plain, query_value(user));
        let with = |url: &str| {
            let mut p = params.to_vec();
            p[i].1 = json.replacen(
                &needle,
                &format!(
                    "\"taskUrl\":{}",
                    serde_json::to_string(url).expect("a string")
                ),
                1,
            );
            p
        };
        Ok(Some((with(&signed), with(&masked))))
    }
}

/// `s` encoded as a query value.
fn query_value(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_only_unchanged_unexpired_and_for_its_task() {
        let now = 1_700_000_000_000;
        let exp = now / 1000 + 60;
        let p = LinkParams {
            user: "bob".into(),
            expires: exp,
            mac: mac("s3cret", "corp", "i-t1", "bob", exp),
        };
        assert!(verify("s3cret", "corp", "i-t1", "bob", &p, now));
        assert!(
            !verify("s3cret", "corp", "i-t2", "bob", &p, now),
            "other task"
        );
        assert!(
            !verify("s3cret", "other", "i-t1", "bob", &p, now),
            "other org"
        );
        assert!(
            !verify("rotated", "corp", "i-t1", "bob", &p, now),
            "other secret"
        );
        assert!(
            !verify("s3cret", "corp", "i-t1", "bob", &p, exp * 1000),
            "expired"
        );
        let alice = LinkParams {
            user: "alice".into(),
            ..p.clone()
        };
        assert!(
            !verify("s3cret", "corp", "i-t1", "alice", &alice, now),
            "user changed"
        );
        let later = LinkParams {
            expires: exp + 1,
            ..p.clone()
        };
        assert!(
            !verify("s3cret", "corp", "i-t1", "bob", &later, now),
            "expiry changed"
        );
        // Field boundaries are part of the MAC.
        assert_ne!(mac("k", "ab", "c", "u", 1), mac("k", "a", "bc", "u", 1));
    }
}
