//! Organisations, API keys, applications and the directory (users, roles).
//!
//! Every change to users or roles bumps the organisation's `directory_version`, in the same
//! transaction, so the writer on every node knows when its cached snapshot is stale.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{conflict_on_unique, on_pool, Store, StoreError};
use crate::engine::resolve::{DirectorySnapshot, Person};
use crate::support::{new_id, now_ms};

#[derive(Debug, Clone)]
pub struct Org {
    pub corp_id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Clone)]
pub struct App {
    pub app_type: String,
    pub corp_id: String,
    pub name: String,
    /// Shown in full only when created or rotated; masked otherwise. During a pending
    /// rotation this is the new token, not yet signing.
    pub system_token: String,
    /// Until when the previous token is still honoured after a rotation.
    pub previous_token_valid_until: Option<i64>,
    /// True while a rotation awaits its commit: Flowhook still signs with the previous token
    /// until `rotate-token/commit` or `previousTokenValidUntil`, whichever comes first.
    pub rotation_pending: bool,
    pub created_at: i64,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_type", &self.app_type)
            .field("corp_id", &self.corp_id)
            .field("name", &self.name)
            .field("system_token", &"<redacted>")
            .field(
                "previous_token_valid_until",
                &self.previous_token_valid_until,
            )
            .field("rotation_pending", &self.rotation_pending)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl App {
    pub fn masked(mut self) -> Self {
        let keep: String = self.system_token.chars().take(4).collect();
        self.system_token = format!("{keep}…");
        self
    }
}

/// An organisation API key as listed: never the key itself, which is stored only as a hash.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
}

/// A caller identified by an API key.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub corp_id: String,
    pub scopes: Vec<String>,
}

/// Every change to the directory runs this first, in its transaction: the new version tells
/// the writers their snapshot is stale, and on PostgreSQL the organisation's row lock orders
/// the organisation's directory changes one after the other (SQLite's `BEGIN IMMEDIATE` does
/// already), so a check such as the manager chain's reads what the previous change committed,
/// and two changes never wait for each other's locks in opposite orders.
const BUMP_DIRECTORY_VERSION: &str =
    "UPDATE organisations SET directory_version = directory_version + 1 WHERE corp_id = $1";

/// The longest manager chain a user may be saved under (real ones are a dozen deep).
pub const MAX_MANAGER_CHAIN: usize = 1000;

/// The manager chain from `$2` upwards, `$2` first, at most `$3` + 1 long: a cycle already
/// stored (from before cycles were refused) repeats until that bound.
const MANAGER_CHAIN: &str = "WITH RECURSIVE chain (user_id, depth) AS ( \
        SELECT CAST($2 AS TEXT), 0 \
        UNION ALL \
        SELECT u.manager_id, c.depth + 1 FROM chain c \
        JOIN users u ON u.corp_id = $1 AND u.user_id = c.user_id \
        WHERE u.manager_id IS NOT NULL AND c.depth < $3) \
    SELECT user_id FROM chain ORDER BY depth";

/// Refuses `user`'s save under the manager chain `chain` (the new manager first) when the
/// chain comes back to `user`, holds a cycle already, or is too long.
fn manager_chain_check(user: &str, chain: &[String]) -> Result<(), StoreError> {
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for (i, id) in chain.iter().enumerate() {
        if id == user {
            let mut cycle = vec![user];
            cycle.extend(chain[..=i].iter().map(String::as_str));
            return Err(StoreError::Invalid(format!(
                "managerId `{}` would close a cycle in the manager chain: {}",
                chain[0],
                cycle.join(" → ")
            )));
        }
        if let Some(first) = seen.insert(id, i) {
            let cycle: Vec<&str> = chain[first..=i].iter().map(String::as_str).collect();
            return Err(StoreError::Invalid(format!(
                "the manager chain above managerId `{}` has a cycle: {}; give one of them \
                 another manager first",
                chain[0],
                cycle.join(" → ")
            )));
        }
    }
    if chain.len() > MAX_MANAGER_CHAIN {
        return Err(StoreError::Invalid(format!(
            "the manager chain above managerId `{}` is longer than {MAX_MANAGER_CHAIN}",
            chain[0]
        )));
    }
    Ok(())
}

impl Store {
    pub async fn create_org(&self, corp_id: &str, name: &str) -> Result<Org, StoreError> {
        let now = now_ms();
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO organisations (corp_id, name, created_at) VALUES ($1, $2, $3)")
                .bind(corp_id)
                .bind(name)
                .bind(now)
                .execute(pool)
                .await
                .map_err(|e| conflict_on_unique(e, format!("organisation `{corp_id}`")))?
                .rows_affected()
        });
        Ok(Org {
            corp_id: corp_id.into(),
            name: name.into(),
            created_at: now,
        })
    }

    pub async fn org(&self, corp_id: &str) -> Result<Option<Org>, StoreError> {
        let row: Option<(String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT corp_id, name, created_at FROM organisations WHERE corp_id = $1")
                .bind(corp_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(corp_id, name, created_at)| Org {
            corp_id,
            name,
            created_at,
        }))
    }

    /// Stores the hash of a new key; returns its id.
    pub async fn create_api_key(
        &self,
        corp_id: &str,
        name: &str,
        key_hash: &str,
        scopes: &[String],
    ) -> Result<String, StoreError> {
        let id = new_id("key");
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO api_keys (id, corp_id, name, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&id)
                .bind(corp_id)
                .bind(name)
                .bind(key_hash)
                .bind(scopes.join(" "))
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(id)
    }

    /// The organisation's keys, oldest first.
    pub async fn api_keys(&self, corp_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, scopes, created_at FROM api_keys WHERE corp_id = $1 ORDER BY created_at, id",
            )
            .bind(corp_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name, scopes, created_at)| ApiKey {
                id,
                name,
                scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                created_at,
            })
            .collect())
    }

    /// Deletes the key; false if the organisation has no such key. Announced as a settings
    /// change, so this process stops accepting the key at once (others within their cache's
    /// lifetime, see `http::auth`).
    pub async fn revoke_api_key(&self, corp_id: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM api_keys WHERE corp_id = $1 AND id = $2")
                .bind(corp_id)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if deleted > 0 {
            crate::support::settings_changed();
        }
        Ok(deleted > 0)
    }

    pub async fn key_owner(&self, key_hash: &str) -> Result<Option<KeyOwner>, StoreError> {
        let row: Option<(String, String)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT corp_id, scopes FROM api_keys WHERE key_hash = $1")
                .bind(key_hash)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(corp_id, scopes)| KeyOwner {
            corp_id,
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        }))
    }

    pub async fn create_app(
        &self,
        corp_id: &str,
        app_type: &str,
        name: &str,
        system_token: &str,
    ) -> Result<App, StoreError> {
        let now = now_ms();
        let sealed = super::secrets::keyring(self)?.seal(
            system_token,
            &super::secrets::field::app_token(corp_id, app_type),
        );
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO apps (app_type, corp_id, name, system_token, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(app_type)
                .bind(corp_id)
                .bind(name)
                .bind(&sealed)
                .bind(now)
                .execute(pool)
                .await
                .map_err(|e| conflict_on_unique(e, format!("application `{app_type}`")))?
                .rows_affected()
        });
        Ok(App {
            app_type: app_type.into(),
            corp_id: corp_id.into(),
            name: name.into(),
            system_token: system_token.into(),
            previous_token_valid_until: None,
            rotation_pending: false,
            created_at: now,
        })
    }

    pub async fn apps(&self, corp_id: &str) -> Result<Vec<App>, StoreError> {
        self.app_query(corp_id, None).await
    }

    pub async fn app(&self, corp_id: &str, app_type: &str) -> Result<Option<App>, StoreError> {
        Ok(self.app_query(corp_id, Some(app_type)).await?.pop())
    }

    async fn app_query(
        &self,
        corp_id: &str,
        app_type: Option<&str>,
    ) -> Result<Vec<App>, StoreError> {
        type AppRow = (String, String, String, String, Option<i64>, bool, i64);
        let rows: Vec<AppRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT app_type, corp_id, name, system_token, previous_valid_until, previous_signs, created_at \
                 FROM apps WHERE corp_id = $1 AND ($2 IS NULL OR app_type = $2) ORDER BY app_type",
            )
            .bind(corp_id)
            .bind(app_type)
            .fetch_all(pool)
            .await?
        });
        let now = now_ms();
        let keyring = super::secrets::keyring(self)?;
        rows.into_iter()
            .map(
                |(app_type, corp_id, name, sealed, until, previous_signs, created_at)| {
                    let what = super::secrets::field::app_token(&corp_id, &app_type);
                    Ok(App {
                        system_token: keyring.open(&sealed, &what)?,
                        app_type,
                        corp_id,
                        name,
                        previous_token_valid_until: until,
                        rotation_pending: previous_signs && until.is_some_and(|t| t > now),
                        created_at,
                    })
                },
            )
            .collect()
    }

    /// Starts a rotation to `new_token`. Flowhook keeps signing with the token that signs now
    /// until [`Store::commit_app_token`] or `grace_until` (epoch ms), whichever comes first, and
    /// honours it until `grace_until`; a grace already over switches at once. A second rotation
    /// before the commit replaces the pending token and keeps the one that signs.
    pub async fn rotate_app_token(
        &self,
        corp_id: &str,
        app_type: &str,
        new_token: &str,
        grace_until: i64,
    ) -> Result<Option<App>, StoreError> {
        let result = self
            .rotate_app_token_unannounced(corp_id, app_type, new_token, grace_until)
            .await;
        crate::support::settings_changed();
        result
    }

    async fn rotate_app_token_unannounced(
        &self,
        corp_id: &str,
        app_type: &str,
        new_token: &str,
        grace_until: i64,
    ) -> Result<Option<App>, StoreError> {
        let now = now_ms();
        // Both columns are sealed for the same field, so the SQL below moves them as they are.
        let sealed = super::secrets::keyring(self)?.seal(
            new_token,
            &super::secrets::field::app_token(corp_id, app_type),
        );
        // The token that signs now becomes the previous one: the current token, or — during a
        // pending rotation — the previous one still signing (the pending one never signed).
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE apps SET \
                 previous_token = CASE WHEN previous_signs AND previous_valid_until > $5 \
                   THEN previous_token ELSE system_token END, \
                 previous_valid_until = $3, system_token = $4, previous_signs = $3 > $5 \
                 WHERE corp_id = $1 AND app_type = $2",
            )
            .bind(corp_id)
            .bind(app_type)
            .bind(grace_until)
            .bind(&sealed)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Ok(None);
        }
        self.app(corp_id, app_type).await
    }

    /// Commits a pending rotation: the new token signs from now on (the previous one stays
    /// honoured until its grace ends). The app, and whether a rotation was pending (`None`:
    /// no such app).
    pub async fn commit_app_token(
        &self,
        corp_id: &str,
        app_type: &str,
    ) -> Result<Option<(App, bool)>, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE apps SET previous_signs = FALSE \
                 WHERE corp_id = $1 AND app_type = $2 AND previous_signs AND previous_valid_until > $3",
            )
            .bind(corp_id)
            .bind(app_type)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done > 0 {
            crate::support::settings_changed();
        }
        Ok(self
            .app(corp_id, app_type)
            .await?
            .map(|app| (app, done > 0)))
    }

    /// The organisation an application belongs to.
    pub async fn app_corp(&self, app_type: &str) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT corp_id FROM apps WHERE app_type = $1")
                .bind(app_type)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The tokens valid now for `app_type`, the one to sign with first: the current token,
    /// and the previous one during its grace — first while a rotation awaits its commit.
    pub async fn app_tokens(&self, app_type: &str, now: i64) -> Result<Vec<String>, StoreError> {
        type TokenRow = (String, String, Option<String>, Option<i64>, bool);
        let row: Option<TokenRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT corp_id, system_token, previous_token, previous_valid_until, previous_signs FROM apps \
                 WHERE app_type = $1",
            )
            .bind(app_type)
            .fetch_optional(pool)
            .await?
        });
        let row = match row {
            None => None,
            Some((corp_id, current, previous, until, signs)) => {
                let keyring = super::secrets::keyring(self)?;
                let what = super::secrets::field::app_token(&corp_id, app_type);
                Some((
                    keyring.open(&current, &what)?,
                    keyring.open_opt(previous.as_deref(), &what)?,
                    until,
                    signs,
                ))
            }
        };
        Ok(match row {
            None => vec![],
            Some((current, Some(previous), Some(until), true)) if until > now => {
                vec![previous, current]
            }
            Some((current, Some(previous), Some(until), false)) if until > now => {
                vec![current, previous]
            }
            Some((current, ..)) => vec![current],
        })
    }

    /// Creates or replaces a user. A manager that would close a cycle in the manager chain
    /// (`alice → bob → alice`, of any length) is refused with [`StoreError::Invalid`] naming it.
    pub async fn put_user(&self, corp_id: &str, p: &Person) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            // First (see `BUMP_DIRECTORY_VERSION`): two saves cannot each pass the check below
            // and close a cycle together.
            sqlx::query(BUMP_DIRECTORY_VERSION)
                .bind(corp_id)
                .execute(&mut *tx)
                .await?;
            if let Some(manager) = &p.manager_id {
                let chain: Vec<Option<String>> = sqlx::query_scalar(MANAGER_CHAIN)
                    .bind(corp_id)
                    .bind(manager)
                    .bind(MAX_MANAGER_CHAIN as i32)
                    .fetch_all(&mut *tx)
                    .await?;
                let chain: Vec<String> = chain.into_iter().flatten().collect();
                manager_chain_check(&p.user_id, &chain)?;
            }
            sqlx::query(
                "INSERT INTO users (corp_id, user_id, name, avatar, manager_id, admin) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (corp_id, user_id) DO UPDATE SET name = $3, avatar = $4, manager_id = $5, admin = $6",
            )
            .bind(corp_id)
            .bind(&p.user_id)
            .bind(&p.name)
            .bind(&p.avatar)
            .bind(&p.manager_id)
            .bind(p.admin)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        crate::support::settings_changed();
        Ok(())
    }

    pub async fn delete_user(&self, corp_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            sqlx::query(BUMP_DIRECTORY_VERSION)
                .bind(corp_id)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM users WHERE corp_id = $1 AND user_id = $2")
                .bind(corp_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM role_members WHERE corp_id = $1 AND user_id = $2")
                .bind(corp_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            n
        });
        crate::support::settings_changed();
        Ok(n > 0)
    }

    /// Creates or replaces a role and its members (in order).
    pub async fn put_role(
        &self,
        corp_id: &str,
        role_id: &str,
        name: &str,
        members: &[String],
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            sqlx::query(BUMP_DIRECTORY_VERSION)
                .bind(corp_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO roles (corp_id, role_id, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (corp_id, role_id) DO UPDATE SET name = $3",
            )
            .bind(corp_id)
            .bind(role_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM role_members WHERE corp_id = $1 AND role_id = $2")
                .bind(corp_id)
                .bind(role_id)
                .execute(&mut *tx)
                .await?;
            for (i, m) in members.iter().enumerate() {
                sqlx::query("INSERT INTO role_members (corp_id, role_id, user_id, position) VALUES ($1, $2, $3, $4)")
                    .bind(corp_id)
                    .bind(role_id)
                    .bind(m)
                    .bind(i as i32)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_on_unique(e, format!("member `{m}` (listed twice)")))?;
            }
            tx.commit().await?;
        });
        crate::support::settings_changed();
        Ok(())
    }

    pub async fn delete_role(&self, corp_id: &str, role_id: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            sqlx::query(BUMP_DIRECTORY_VERSION)
                .bind(corp_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM role_members WHERE corp_id = $1 AND role_id = $2")
                .bind(corp_id)
                .bind(role_id)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM roles WHERE corp_id = $1 AND role_id = $2")
                .bind(corp_id)
                .bind(role_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            n
        });
        crate::support::settings_changed();
        Ok(n > 0)
    }

    pub async fn directory_version(&self, corp_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT directory_version FROM organisations WHERE corp_id = $1")
                .bind(corp_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The whole directory of an organisation, with the version it was read at.
    pub async fn load_directory(
        &self,
        corp_id: &str,
    ) -> Result<(i64, DirectorySnapshot), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(
                "SELECT directory_version FROM organisations WHERE corp_id = $1",
            )
            .bind(corp_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
            let people = sqlx::query(
                "SELECT user_id, name, avatar, manager_id, admin FROM users WHERE corp_id = $1",
            )
            .bind(corp_id)
            .fetch_all(&mut *tx)
            .await?;
            let members = sqlx::query(
                "SELECT r.role_id, m.user_id FROM roles r LEFT JOIN role_members m \
                 ON m.corp_id = r.corp_id AND m.role_id = r.role_id WHERE r.corp_id = $1 ORDER BY r.role_id, m.position",
            )
            .bind(corp_id)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let mut snapshot = DirectorySnapshot::default();
            for row in people {
                let p = Person {
                    user_id: row.try_get("user_id")?,
                    name: row.try_get("name")?,
                    avatar: row.try_get("avatar")?,
                    manager_id: row.try_get("manager_id")?,
                    admin: row.try_get("admin")?,
                };
                snapshot.people.insert(p.user_id.clone(), p);
            }
            let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for row in members {
                let role: String = row.try_get("role_id")?;
                let user: Option<String> = row.try_get("user_id")?;
                let entry = roles.entry(role).or_default();
                entry.extend(user);
            }
            snapshot.roles = roles;
            Ok((version, snapshot))
        })
    }

    pub async fn role_names(&self, corp_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as("SELECT role_id, name FROM roles WHERE corp_id = $1 ORDER BY role_id")
                .bind(corp_id)
                .fetch_all(pool)
                .await?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn manager_chains_without_cycles_pass_and_cycles_are_named() {
        assert!(manager_chain_check("alice", &chain(&["bob", "carol"])).is_ok());
        let two = manager_chain_check("alice", &chain(&["bob", "alice"])).unwrap_err();
        assert!(two.to_string().ends_with("alice → bob → alice"), "{two}");
        let three = manager_chain_check("carol", &chain(&["alice", "bob", "carol"])).unwrap_err();
        assert!(
            three.to_string().ends_with("carol → alice → bob → carol"),
            "{three}"
        );
        // A cycle stored before cycles were refused, above the new manager.
        let old =
            manager_chain_check("dave", &chain(&["bob", "carol", "eve", "carol"])).unwrap_err();
        assert!(
            old.to_string().contains("has a cycle: carol → eve → carol"),
            "{old}"
        );
        let long: Vec<String> = (0..=MAX_MANAGER_CHAIN).map(|i| format!("u{i}")).collect();
        assert!(manager_chain_check("x", &long)
            .unwrap_err()
            .to_string()
            .contains("longer than 1000"));
        assert!(manager_chain_check("x", &long[..MAX_MANAGER_CHAIN]).is_ok());
    }
}
