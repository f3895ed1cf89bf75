//! Secrets at rest: every secret column (app systemTokens, connector credentials and default
//! headers, a base URL that carries a password, Standard Webhooks secrets) is stored as an
//! AES-256-GCM envelope under the installation's master key, never in plaintext.
//!
//! An envelope is `v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`: a random 96-bit nonce per
//! value, and as associated data the row's identity and the field's purpose
//! (`apps/<corpId>/<appType>/token`, `connectors/<corpId>/<id>/auth`, …), so a ciphertext copied
//! to another row, organisation or field fails to decrypt. The key id (8 hex digits of a
//! SHA-256 of the key) names the key an envelope was sealed with, so a keyring holding the new
//! key and the old ones reads everything during a rotation (`flowhook rotate-master-key`).
//!
//! The master key comes from the configuration (`master_key`, base64 of 32 bytes; several,
//! comma-separated, the first one sealing) or a key file (`master_key_file`; created with mode
//! 0600 on first start when absent — but never for a database that already holds secrets).
//! The database keeps a check value sealed under the key: a start with a key that does not open
//! it stops with an error naming the key ids, before anything is read or sent.
//!
//! A value that does not decrypt is an error naming its row ([`SecretError`]); it is never
//! used in any other form. Decrypted values are plain `String`s in the types that carry them,
//! whose `Debug` output redacts them; this module never logs one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{on_pool, Store, StoreError};
use crate::support::now_ms;

/// The envelope format this code writes.
const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// Why a secret or a master key cannot be used. Messages name rows and key ids, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{what} is not encrypted: expected a `v1:` envelope (was the database written by an older Flowhook after this one started?)")]
    NotEncrypted { what: String },
    #[error("{what} is malformed ({why})")]
    Malformed { what: String, why: &'static str },
    #[error("{what} is sealed under master key `{key_id}`, which is not configured (configured: {configured})")]
    UnknownKey {
        what: String,
        key_id: String,
        configured: String,
    },
    #[error("{what} does not decrypt under master key `{key_id}`: the key is wrong, or the value was altered or copied from another row")]
    Forged { what: String, key_id: String },
    #[error("master key: {0}")]
    BadKey(String),
    #[error(
        "the master key does not open this database: its secrets are sealed under key `{sealed}`, \
         the configured key(s) are {configured}; configure the key this database was set up with \
         (`master_key`, FLOWHOOK_MASTER_KEY or `master_key_file`)"
    )]
    WrongKey { sealed: String, configured: String },
    #[error(
        "the master key file {} does not exist, but this database's secrets are sealed under key \
         `{sealed}`: restore that file (or set FLOWHOOK_MASTER_KEY) — a new key could not read them",
        path.display()
    )]
    MissingKeyFile { path: PathBuf, sealed: String },
    #[error("master key file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One AES-256 key and its id.
struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The master keys: the first seals, every one opens what was sealed under it.
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({})", self.ids().join(", "))
    }
}

/// A fresh random key, base64: what a key file holds.
pub fn generate_key() -> Zeroizing<String> {
    let key = Aes256Gcm::generate_key(OsRng);
    Zeroizing::new(B64.encode(key.as_slice()))
}

fn key_id(bytes: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"flowhook master key id\0")
        .chain_update(bytes)
        .finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl Keyring {
    /// Keys as base64 (32 bytes each), separated by commas, whitespace or newlines; the first
    /// seals. Lines starting with `#` are comments.
    pub fn parse(text: &str) -> Result<Keyring, SecretError> {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            for item in line.split([',', ' ', '\t']).filter(|s| !s.is_empty()) {
                let bytes = Zeroizing::new(B64.decode(item).map_err(|_| {
                    SecretError::BadKey(format!("key {} is not base64", keys.len() + 1))
                })?);
                if bytes.len() != 32 {
                    return Err(SecretError::BadKey(format!(
                        "key {} is {} bytes; AES-256 needs 32 (e.g. `openssl rand -base64 32`)",
                        keys.len() + 1,
                        bytes.len()
                    )));
                }
                let id = key_id(&bytes);
                if keys.iter().any(|k: &MasterKey| k.id == id) {
                    continue;
                }
                keys.push(MasterKey {
                    id,
                    cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
                });
            }
        }
        if keys.is_empty() {
            return Err(SecretError::BadKey("no key given".into()));
        }
        Ok(Keyring { keys })
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key id, the sealing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    fn shown_ids(&self) -> String {
        self.ids()
            .iter()
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Seals `plaintext` for the field `what` (its associated data) under the current key.
    pub fn seal(&self, plaintext: &str, what: &str) -> String {
        let key = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: what.as_bytes(),
                },
            )
            .expect("AES-GCM seals any message of this size");
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        format!("{VERSION}:{}:{}", key.id, B64.encode(raw))
    }

    /// The id of the key `stored` is sealed under (`None`: not an envelope).
    pub fn sealed_with(stored: &str) -> Option<&str> {
        let rest = stored.strip_prefix("v1:")?;
        rest.split_once(':').map(|(id, _)| id)
    }

    /// Opens an envelope sealed for `what`.
    pub fn open(&self, stored: &str, what: &str) -> Result<String, SecretError> {
        let Some(rest) = stored.strip_prefix("v1:") else {
            return Err(SecretError::NotEncrypted { what: what.into() });
        };
        let malformed = |why| SecretError::Malformed {
            what: what.into(),
            why,
        };
        let (id, body) = rest.split_once(':').ok_or(malformed("no key id"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey {
                what: what.into(),
                key_id: id.into(),
                configured: self.shown_ids(),
            })?;
        let raw = B64.decode(body).map_err(|_| malformed("not base64"))?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(malformed("too short"));
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: what.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Forged {
                what: what.into(),
                key_id: id.into(),
            })?;
        String::from_utf8(plain).map_err(|_| malformed("not UTF-8"))
    }

    /// Opens an optional column.
    pub fn open_opt(
        &self,
        stored: Option<&str>,
        what: &str,
    ) -> Result<Option<String>, SecretError> {
        stored.map(|s| self.open(s, what)).transpose()
    }
}

/// The associated data of each secret field: the row's identity and the field's purpose.
pub mod field {
    /// Both tokens of an app (the current and the previous one move between the two columns).
    pub fn app_token(corp_id: &str, app_type: &str) -> String {
        format!("apps/{corp_id}/{app_type}/token")
    }
    pub fn connector_auth(corp_id: &str, id: &str) -> String {
        format!("connectors/{corp_id}/{id}/auth")
    }
    pub fn connector_headers(corp_id: &str, id: &str) -> String {
        format!("connectors/{corp_id}/{id}/default_headers")
    }
    pub fn connector_base_url(corp_id: &str, id: &str) -> String {
        format!("connectors/{corp_id}/{id}/base_url")
    }
    pub fn webhook_secrets(corp_id: &str) -> String {
        format!("sync_strategies/{corp_id}/webhook_secrets")
    }
    pub(super) const CHECK: &str = "flowhook_meta/master_key_check";
    pub(crate) const LINK_SECRET: &str = "flowhook_meta/approval_link_secret";
}

/// A connector's base URL as stored: sealed when it carries a password (`user:PASS@`), plain
/// otherwise (it names no secret, and operators read it).
pub fn store_base_url(keyring: &Keyring, corp_id: &str, id: &str, base_url: &str) -> String {
    let has_password = url::Url::parse(base_url)
        .map(|u| u.password().is_some())
        .unwrap_or(false);
    if has_password {
        keyring.seal(base_url, &field::connector_base_url(corp_id, id))
    } else {
        base_url.to_owned()
    }
}

/// A stored base URL, opened when sealed.
pub fn read_base_url(
    keyring: &Keyring,
    corp_id: &str,
    id: &str,
    stored: &str,
) -> Result<String, SecretError> {
    if stored.starts_with("v1:") {
        keyring.open(stored, &field::connector_base_url(corp_id, id))
    } else {
        Ok(stored.to_owned())
    }
}

/// A connector's secret fields as stored: (base URL, auth config, default headers).
pub fn seal_connector(
    keyring: &Keyring,
    corp_id: &str,
    id: &str,
    input: &crate::integration::connectors::ConnectorInput,
) -> (String, String, String) {
    let auth = Zeroizing::new(serde_json::to_string(&input.auth).expect("auth serialises"));
    let headers =
        Zeroizing::new(serde_json::to_string(&input.default_headers).expect("headers serialise"));
    (
        store_base_url(keyring, corp_id, id, &input.base_url),
        keyring.seal(&auth, &field::connector_auth(corp_id, id)),
        keyring.seal(&headers, &field::connector_headers(corp_id, id)),
    )
}

/// A stored connector row with its sealed fields opened.
pub(crate) fn open_connector(
    keyring: &Keyring,
    mut row: super::connectors::ConnectorRow,
) -> Result<super::connectors::ConnectorRow, StoreError> {
    let (id, corp_id) = (row.0.clone(), row.1.clone());
    row.3 = read_base_url(keyring, &corp_id, &id, &row.3)?;
    row.5 = keyring.open(&row.5, &field::connector_auth(&corp_id, &id))?;
    row.6 = keyring.open(&row.6, &field::connector_headers(&corp_id, &id))?;
    Ok(row)
}

/// The keyrings of the databases this process opened, by database: the store functions that
/// read or write a secret find theirs here ([`keyring`]).
fn registry() -> &'static Mutex<HashMap<String, Arc<Keyring>>> {
    static KEYRINGS: OnceLock<Mutex<HashMap<String, Arc<Keyring>>>> = OnceLock::new();
    KEYRINGS.get_or_init(Default::default)
}

/// What identifies a database: the SQLite file, or PostgreSQL's host, port and database.
fn identity(store: &Store) -> String {
    match store {
        Store::Sqlite(pool) => {
            format!("sqlite:{}", pool.connect_options().get_filename().display())
        }
        Store::Postgres(pool) => {
            let o = pool.connect_options();
            format!(
                "postgres:{}:{}/{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            )
        }
    }
}

/// The keyring opened for this database ([`open_keyring`]).
pub fn keyring(store: &Store) -> Result<Arc<Keyring>, StoreError> {
    registry()
        .lock()
        .expect("keyring registry lock")
        .get(&identity(store))
        .cloned()
        .ok_or(StoreError::NoMasterKey)
}

/// Makes `keyring` the one of this database in this process.
pub fn install(store: &Store, keyring: Arc<Keyring>) {
    registry()
        .lock()
        .expect("keyring registry lock")
        .insert(identity(store), keyring);
}

/// Where the master key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// Keys given in the configuration (base64, comma-separated).
    Given(Zeroizing<String>),
    /// A key file, created on first start when absent.
    File(PathBuf),
}

impl KeySource {
    /// Where the configuration says the master key is: `master_key`, else `master_key_file`,
    /// else the default key file beside the database. Keys given are checked here.
    pub fn from_config(c: &crate::config::Config) -> Result<Self, String> {
        Ok(match &c.master_key {
            Some(key) => {
                Keyring::parse(&key.0).map_err(|e| format!("`master_key`: {e}"))?;
                KeySource::Given(Zeroizing::new(key.0.clone()))
            }
            None => KeySource::File(
                c.master_key_file
                    .clone()
                    .unwrap_or_else(|| default_key_file(&c.database_url)),
            ),
        })
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Given(_) => f.write_str("KeySource::Given(<redacted>)"),
            KeySource::File(p) => write!(f, "KeySource::File({})", p.display()),
        }
    }
}

/// The default key file: beside a SQLite database file, else in the working directory.
pub fn default_key_file(database_url: &str) -> PathBuf {
    const NAME: &str = "flowhook-master.key";
    if let Some(rest) = database_url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or_default();
        if !path.is_empty() && !path.starts_with(':') {
            if let Some(dir) = Path::new(path).parent() {
                return dir.join(NAME);
            }
        }
    }
    PathBuf::from(NAME)
}

async fn check_value(store: &Store) -> Result<Option<String>, StoreError> {
    Ok(on_pool!(store, |pool| {
        sqlx::query_scalar("SELECT value FROM flowhook_meta WHERE key = 'master_key_check'")
            .fetch_optional(pool)
            .await?
    }))
}

const CHECK_PLAINTEXT: &str = "flowhook master key check";

fn read_key_file(path: &Path) -> Result<Zeroizing<String>, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::KeyFile {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "the master key file is readable by others; restrict it to its owner (chmod 600)"
                );
            }
        }
    }
    Ok(Zeroizing::new(text))
}

/// Writes `content` to `path` with mode 0600, replacing it atomically (a temporary file beside
/// it, synced, then renamed), or creating it only if absent when `create_new`.
pub fn write_key_file(path: &Path, content: &str, create_new: bool) -> Result<(), SecretError> {
    use std::io::Write;
    let err = |source| SecretError::KeyFile {
        path: path.to_owned(),
        source,
    };
    let target = if create_new {
        path.to_owned()
    } else {
        path.with_extension("key.tmp")
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&target).map_err(err)?;
    file.write_all(content.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    if !create_new {
        std::fs::rename(&target, path).map_err(err)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Loads the keyring of `source` for `store` and checks it opens the database's secrets: the
/// key file is created (0600) when absent and the database holds no secret yet; the check value
/// is written on first use. Fails, naming the key ids, when the key is not this database's.
pub async fn load_keyring(store: &Store, source: &KeySource) -> Result<Keyring, StoreError> {
    let check = check_value(store).await?;
    let text = match source {
        KeySource::Given(text) => text.clone(),
        KeySource::File(path) if path.exists() => read_key_file(path)?,
        KeySource::File(path) => {
            if let Some(sealed) = check.as_deref() {
                return Err(SecretError::MissingKeyFile {
                    path: path.clone(),
                    sealed: Keyring::sealed_with(sealed).unwrap_or("?").into(),
                }
                .into());
            }
            let key = generate_key();
            let content = Zeroizing::new(format!(
                "# Flowhook master key: it seals the secrets in the database. Keep it, apart from\n\
                 # the database's backups; without it they cannot be read.\n{}\n",
                key.as_str()
            ));
            write_key_file(path, &content, true)?;
            tracing::info!(file = %path.display(), "created a master key file");
            content
        }
    };
    let keyring = Keyring::parse(&text)?;
    let check = match check {
        Some(c) => c,
        None => {
            let sealed = keyring.seal(CHECK_PLAINTEXT, field::CHECK);
            on_pool!(store, |pool| {
                sqlx::query(
                    "INSERT INTO flowhook_meta (key, value, updated_at) VALUES ('master_key_check', $1, $2) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(&sealed)
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
            });
            // Another node may have written its own first: that one counts.
            check_value(store).await?.unwrap_or(sealed)
        }
    };
    match keyring.open(&check, field::CHECK) {
        Ok(plain) if plain == CHECK_PLAINTEXT => Ok(keyring),
        _ => Err(SecretError::WrongKey {
            sealed: Keyring::sealed_with(&check).unwrap_or("?").into(),
            configured: keyring.shown_ids(),
        }
        .into()),
    }
}

/// One secret column: its table, the column naming the row beside `corp_id`, and the
/// associated data of a row.
struct Column {
    table: &'static str,
    id: &'static str,
    column: &'static str,
    what: fn(&str, &str) -> String,
    /// Plaintext is left as is when it names no secret (a base URL without a password).
    keep_plain: fn(&str) -> bool,
}

fn never(_: &str) -> bool {
    false
}

fn no_password(url: &str) -> bool {
    url::Url::parse(url).map_or(true, |u| u.password().is_none())
}

const COLUMNS: &[Column] = &[
    Column {
        table: "apps",
        id: "app_type",
        column: "system_token",
        what: field::app_token,
        keep_plain: never,
    },
    Column {
        table: "apps",
        id: "app_type",
        column: "previous_token",
        what: field::app_token,
        keep_plain: never,
    },
    Column {
        table: "connectors",
        id: "id",
        column: "auth_config",
        what: field::connector_auth,
        keep_plain: never,
    },
    Column {
        table: "connectors",
        id: "id",
        column: "default_headers",
        what: field::connector_headers,
        keep_plain: never,
    },
    Column {
        table: "connectors",
        id: "id",
        column: "base_url",
        what: field::connector_base_url,
        keep_plain: no_password,
    },
    Column {
        table: "sync_strategies",
        id: "corp_id",
        column: "webhook_secrets",
        what: |corp_id, _| field::webhook_secrets(corp_id),
        keep_plain: never,
    },
];

/// What [`reseal`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// Plaintext values sealed.
    pub sealed: u64,
    /// Values sealed under another key, sealed again under the current one.
    pub rekeyed: u64,
}

/// Seals every plaintext secret (`rekey`: and re-seals every one sealed under another key) with
/// the current key. Idempotent; each value is replaced only if unchanged since it was read, so
/// it can run beside a live service. A value that does not open stops it with its row named.
pub async fn reseal(store: &Store, keyring: &Keyring, rekey: bool) -> Result<Resealed, StoreError> {
    let mut done = Resealed::default();
    for c in COLUMNS {
        let rows: Vec<(String, String, String)> = on_pool!(store, |pool| {
            sqlx::query_as(&format!(
                "SELECT corp_id, {id}, {col} FROM {table} WHERE {col} IS NOT NULL",
                id = c.id,
                col = c.column,
                table = c.table
            ))
            .fetch_all(pool)
            .await?
        });
        for (corp_id, id, stored) in rows {
            let what = (c.what)(&corp_id, &id);
            let plaintext = match Keyring::sealed_with(&stored) {
                None if (c.keep_plain)(&stored) => continue,
                None => Zeroizing::new(stored.clone()),
                Some(kid) if kid == keyring.current_id() || !rekey => continue,
                Some(_) => Zeroizing::new(keyring.open(&stored, &what)?),
            };
            let sealed = keyring.seal(&plaintext, &what);
            let changed = on_pool!(store, |pool| {
                sqlx::query(&format!(
                    "UPDATE {table} SET {col} = $1 WHERE corp_id = $2 AND {id} = $3 AND {col} = $4",
                    id = c.id,
                    col = c.column,
                    table = c.table
                ))
                .bind(&sealed)
                .bind(&corp_id)
                .bind(&id)
                .bind(&stored)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if changed > 0 {
                if Keyring::sealed_with(&stored).is_some() {
                    done.rekeyed += 1;
                } else {
                    done.sealed += 1;
                }
            }
        }
    }
    // The approval-link secret: one value of its own in `flowhook_meta`.
    let link = stored_link_secret(store).await?;
    if let Some(stored) = link {
        let plaintext = match Keyring::sealed_with(&stored) {
            None => Some(Zeroizing::new(stored.clone())),
            Some(kid) if kid == keyring.current_id() || !rekey => None,
            Some(_) => Some(Zeroizing::new(keyring.open(&stored, field::LINK_SECRET)?)),
        };
        if let Some(plaintext) = plaintext {
            let sealed = keyring.seal(&plaintext, field::LINK_SECRET);
            let changed = on_pool!(store, |pool| {
                sqlx::query(
                    "UPDATE flowhook_meta SET value = $1, updated_at = $2 \
                     WHERE key = 'approval_link_secret' AND value = $3",
                )
                .bind(&sealed)
                .bind(now_ms())
                .bind(&stored)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if changed > 0 {
                if Keyring::sealed_with(&stored).is_some() {
                    done.rekeyed += 1;
                } else {
                    done.sealed += 1;
                }
            }
        }
    }
    if rekey {
        let sealed = keyring.seal(CHECK_PLAINTEXT, field::CHECK);
        on_pool!(store, |pool| {
            sqlx::query(
                "UPDATE flowhook_meta SET value = $1, updated_at = $2 WHERE key = 'master_key_check'",
            )
            .bind(&sealed)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
    }
    if done != Resealed::default() {
        crate::support::settings_changed();
    }
    Ok(done)
}

/// After plaintext secrets were sealed in place: SQLite keeps the old bytes in freed space and
/// in old WAL frames, so the file is rewritten (`VACUUM`) and the WAL emptied; PostgreSQL keeps
/// old row versions until they are vacuumed, which is left to the operator (logged).
pub async fn scrub(store: &Store) -> Result<(), StoreError> {
    match store {
        Store::Sqlite(pool) => {
            let mut conn = pool.acquire().await?;
            sqlx::query("VACUUM").execute(&mut *conn).await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await?;
        }
        Store::Postgres(_) => tracing::warn!(
            "old row versions may still hold the plaintext until vacuumed: \
             run VACUUM FULL apps, connectors, sync_strategies"
        ),
    }
    Ok(())
}

/// The approval-link secret as stored (`flowhook_meta`), if made yet.
async fn stored_link_secret(store: &Store) -> Result<Option<String>, StoreError> {
    Ok(on_pool!(store, |pool| {
        sqlx::query_scalar("SELECT value FROM flowhook_meta WHERE key = 'approval_link_secret'")
            .fetch_optional(pool)
            .await?
    }))
}

/// Every key id a stored secret is sealed under, with how many (plaintext under `None`).
pub async fn census(store: &Store) -> Result<Vec<(Option<String>, u64)>, StoreError> {
    let mut counts: std::collections::BTreeMap<Option<String>, u64> = Default::default();
    for c in COLUMNS {
        let values: Vec<String> = on_pool!(store, |pool| {
            sqlx::query_scalar(&format!(
                "SELECT {col} FROM {table} WHERE {col} IS NOT NULL",
                col = c.column,
                table = c.table
            ))
            .fetch_all(pool)
            .await?
        });
        for v in values {
            if Keyring::sealed_with(&v).is_none() && (c.keep_plain)(&v) {
                continue;
            }
            *counts
                .entry(Keyring::sealed_with(&v).map(str::to_owned))
                .or_default() += 1;
        }
    }
    let link = stored_link_secret(store).await?;
    if let Some(v) = link {
        *counts
            .entry(Keyring::sealed_with(&v).map(str::to_owned))
            .or_default() += 1;
    }
    Ok(counts.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::parse(&generate_key()).unwrap()
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let k = ring();
        let a = k.seal("s3cret", "apps/acme/APP/token");
        let b = k.seal("s3cret", "apps/acme/APP/token");
        assert_ne!(a, b, "a random nonce per value");
        assert!(a.starts_with(&format!("v1:{}:", k.current_id())));
        assert!(!a.contains("s3cret"));
        assert_eq!(k.open(&a, "apps/acme/APP/token").unwrap(), "s3cret");
    }

    #[test]
    fn a_value_moved_to_another_row_or_altered_does_not_open() {
        let k = ring();
        let a = k.seal("s3cret", "apps/acme/APP/token");
        let e = k.open(&a, "apps/other/APP/token").unwrap_err();
        assert!(matches!(e, SecretError::Forged { .. }), "{e}");
        assert!(e.to_string().contains("apps/other/APP/token"));
        let mut raw = a.clone().into_bytes();
        let last = raw.len() - 3;
        raw[last] = if raw[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(raw).unwrap();
        assert!(k.open(&altered, "apps/acme/APP/token").is_err());
        assert!(matches!(
            k.open("PLAINTEXT", "x").unwrap_err(),
            SecretError::NotEncrypted { .. }
        ));
    }

    #[test]
    fn a_keyring_opens_every_key_it_holds_and_seals_with_the_first() {
        let old_key = generate_key();
        let new_key = generate_key();
        let old = Keyring::parse(&old_key).unwrap();
        let sealed_old = old.seal("v", "f");
        let both = Keyring::parse(&format!("{}, {}", new_key.as_str(), old_key.as_str())).unwrap();
        assert_eq!(both.open(&sealed_old, "f").unwrap(), "v");
        assert_ne!(both.current_id(), old.current_id());
        assert_eq!(
            Keyring::sealed_with(&both.seal("v", "f")),
            Some(both.current_id())
        );
        let e = Keyring::parse(&new_key)
            .unwrap()
            .open(&sealed_old, "f")
            .unwrap_err();
        assert!(matches!(e, SecretError::UnknownKey { .. }), "{e}");
        assert!(!format!("{both:?}").contains(new_key.as_str()));
    }

    #[test]
    fn keys_that_are_not_32_bytes_of_base64_are_refused() {
        assert!(Keyring::parse("not base64!").is_err());
        assert!(Keyring::parse(&B64.encode([0u8; 16])).is_err());
        assert!(Keyring::parse("# only a comment\n").is_err());
    }

    #[test]
    fn the_default_key_file_sits_beside_a_sqlite_database() {
        assert_eq!(
            default_key_file("sqlite:///var/lib/flowhook/flowhook.db"),
            PathBuf::from("/var/lib/flowhook/flowhook-master.key")
        );
        assert_eq!(
            default_key_file("sqlite://flowhook.db"),
            PathBuf::from("flowhook-master.key")
        );
        assert_eq!(
            default_key_file("postgres://u@h/db"),
            PathBuf::from("flowhook-master.key")
        );
    }
}
