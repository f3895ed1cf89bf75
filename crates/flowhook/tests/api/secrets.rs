//! Secrets over their life: a systemToken rotation that a receiver can follow without a
//! single refused delivery; every secret sealed at rest (none in the SQLite file, its WAL or
//! PostgreSQL's rows), plaintext from older versions sealed at start, a wrong master key
//! refused loudly, and `flowhook rotate-master-key`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flowhook_sign::receive::{RawRequest, Verifier};
use reqwest::StatusCode;
use serde_json::json;

use flowhook::store::Store;

use crate::delivery::{connect, fast, kind_of};
use crate::helpers::{AppConfig, TestDb};
use crate::receiver::{Captured, Receiver};
use crate::task_center::Org;

/// Whether a request's Yida signature verifies with `token`.
fn signed_with(c: &Captured, app_type: &str, token: &str) -> bool {
    let tokens = HashMap::from([(app_type.to_owned(), token.to_owned())]);
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = RawRequest {
        content_type: c.content_type(),
        body: &c.body,
        headers: &headers,
    };
    Verifier::new(&tokens)
        .verify(kind_of(c), &req, flowhook::support::now_ms())
        .is_ok()
}

/// Starts a rotation of the organisation's app; returns the new token, shown this once.
async fn rotate(org: &Org, grace_seconds: u64) -> String {
    let (s, rotated) = org
        .send(
            "POST",
            &org.path("/apps/APP_ACME/rotate-token"),
            None,
            Some(json!({"graceSeconds": grace_seconds})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    rotated["systemToken"].as_str().unwrap().to_owned()
}

mod a_receiver_follows_a_token_rotation_without_a_refusal {
    crate::on_both_backends!(super::a_receiver_follows_a_token_rotation_without_a_refusal);
}

/// The receiver knows only the tokens the operator installed: the old one; after the rotation
/// the old and the new; after the commit the new one alone. Not one request is refused: the
/// old token signs until the commit, the new one after. A second rotation left uncommitted
/// switches when its grace ends.
async fn a_receiver_follows_a_token_rotation_without_a_refusal(db: TestDb) {
    let mut org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(&org, &receiver, json!({"type": "none"})).await;
    let old = org.system_token.clone();
    let installed: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![old.clone()]));
    let known = installed.clone();
    receiver.answer(move |c, _| {
        let ok = known
            .lock()
            .unwrap()
            .iter()
            .any(|t| signed_with(c, "APP_ACME", t));
        if ok {
            200
        } else {
            401
        }
    });
    // Rotated; the receiver still holds only the old token: deliveries go on verifying.
    let new = rotate(&org, 3600).await;
    assert_ne!(new, old);
    org.start("alice", "purchase", "laptop", json!({})).await;
    receiver
        .wait_until(10, "two created after the rotation", |got| got.len() >= 2)
        .await;
    let after_rotation = receiver.requests();
    assert!(
        after_rotation
            .iter()
            .all(|c| c.answered == 200 && signed_with(c, "APP_ACME", &old)),
        "signed with the old token until the commit: {:?}",
        after_rotation
            .iter()
            .map(|c| c.answered)
            .collect::<Vec<_>>()
    );

    // The operator installs the new token beside the old, commits, then removes the old.
    installed.lock().unwrap().push(new.clone());
    let (s, committed) = org
        .send(
            "POST",
            &org.path("/apps/APP_ACME/rotate-token/commit"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{committed}");
    *installed.lock().unwrap() = vec![new.clone()];
    let before = receiver.requests().len();
    org.start("dave", "leave", "2 days", json!({"days": "2"}))
        .await;
    receiver
        .wait_until(10, "the created after the commit", |got| {
            got.len() > after_rotation.len()
        })
        .await;
    let after_commit = &receiver.requests()[before..];
    assert!(!after_commit.is_empty());
    for c in after_commit {
        assert_eq!(c.answered, 200, "accepted with the new token alone");
        assert!(signed_with(c, "APP_ACME", &new));
        assert!(!signed_with(c, "APP_ACME", &old), "no longer the old token");
    }

    // Another rotation, never committed: the new token signs once the grace is over.
    let newer = rotate(&org, 1).await;
    installed.lock().unwrap().push(newer.clone());
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let before = receiver.requests().len();
    let accepted = receiver.accepted().len();
    org.start("dave", "leave", "3 days", json!({"days": "3"}))
        .await;
    receiver
        .wait_until(10, "the created after the grace", |got| {
            got.len() > accepted
        })
        .await;
    for c in &receiver.requests()[before..] {
        assert_eq!(c.answered, 200);
        assert!(
            signed_with(c, "APP_ACME", &newer),
            "grace over, uncommitted: the newest token signs"
        );
    }
    org.app.stop().await;
}

/// Every secret the organisation configures, with what to search the database for.
struct Configured {
    secrets: Vec<String>,
    /// A connector of every authentication type, by type.
    connectors: Vec<String>,
}

/// Apps (one rotated: a current and a previous token), a connector of each authentication type
/// (one with a secret default header and a password in its base URL), Standard Webhooks on and
/// rotated once.
async fn configure_secrets(org: &Org) -> Configured {
    let mut secrets = vec![org.system_token.clone()];
    let (s, app) = org
        .send(
            "POST",
            &org.path("/apps"),
            None,
            Some(json!({"appType": "APP_TWO", "name": "two"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    secrets.push(app["systemToken"].as_str().unwrap().to_owned());
    secrets.push(rotate_app(org, "APP_TWO", 3600).await);
    let auths = [
        json!({"type": "none"}),
        json!({"type": "basic", "username": "basic-user", "password": "basic-pass-5e1f0c93d2"}),
        json!({"type": "apiKey", "in": "header", "name": "X-Api-Key", "value": "header-key-8b27aa41c6"}),
        json!({"type": "apiKey", "in": "query", "name": "key", "value": "query-key-3d90e7f215"}),
        json!({"type": "bearer", "token": "bearer-token-c4a1b8e6f0"}),
    ];
    secrets.extend(
        [
            "basic-pass-5e1f0c93d2",
            "header-key-8b27aa41c6",
            "query-key-3d90e7f215",
            "bearer-token-c4a1b8e6f0",
            "header-value-19fe2b7d44",
            "url-pass-a7c3e91b05",
        ]
        .map(String::from),
    );
    let mut connectors = Vec::new();
    for (n, auth) in auths.into_iter().enumerate() {
        let mut body =
            json!({"name": format!("c{n}"), "baseUrl": "http://127.0.0.1:9/cb", "auth": auth});
        if n == 0 {
            body["baseUrl"] = json!("http://hooks:url-pass-a7c3e91b05@127.0.0.1:9/cb");
            body["defaultHeaders"] = json!({"X-Tenant-Secret": "header-value-19fe2b7d44"});
        }
        let (s, con) = org
            .send("POST", &org.path("/connectors"), None, Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{con}");
        connectors.push(con["id"].as_str().unwrap().to_owned());
    }
    let (s, saved) = org
        .send(
            "PUT",
            &org.path("/sync-strategy"),
            None,
            Some(json!({"actions": {}, "standardWebhooks": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    secrets.push(saved["webhookSecret"].as_str().unwrap().to_owned());
    let (s, rotated) = org
        .send(
            "POST",
            &org.path("/sync-strategy/rotate-webhook-secret"),
            None,
            Some(json!({"graceSeconds": 3600})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    secrets.push(rotated["webhookSecret"].as_str().unwrap().to_owned());
    // The installation's approval-link secret (made on first use).
    secrets.push(org.app.store.link_secret().await.unwrap());
    // A `whsec_` secret is a prefix and base64: search for the key part alone too.
    let keys: Vec<String> = secrets
        .iter()
        .filter_map(|s| s.strip_prefix("whsec_").map(str::to_owned))
        .collect();
    secrets.extend(keys);
    Configured {
        secrets,
        connectors,
    }
}

/// Starts a rotation of an app's token; returns the new token.
async fn rotate_app(org: &Org, app_type: &str, grace_seconds: u64) -> String {
    let (s, rotated) = org
        .send(
            "POST",
            &org.path(&format!("/apps/{app_type}/rotate-token")),
            None,
            Some(json!({"graceSeconds": grace_seconds})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    rotated["systemToken"].as_str().unwrap().to_owned()
}

/// The secrets found in the bytes of the SQLite file and its WAL, or in the rows of the tables
/// that hold secrets on PostgreSQL (each row as text).
async fn secrets_at_rest(store: &Store, db: &TestDb, secrets: &[String]) -> Vec<String> {
    let mut haystack: Vec<u8> = Vec::new();
    match store {
        Store::Sqlite(_) => {
            let file = db.url.strip_prefix("sqlite://").unwrap();
            for path in [file.to_owned(), format!("{file}-wal")] {
                if let Ok(bytes) = std::fs::read(&path) {
                    haystack.extend_from_slice(&bytes);
                }
            }
            assert!(haystack.len() > 4096, "the database file was read");
        }
        Store::Postgres(pool) => {
            for table in ["apps", "connectors", "sync_strategies", "flowhook_meta"] {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                assert!(!rows.is_empty(), "{table} has rows");
                for r in rows {
                    haystack.extend_from_slice(r.as_bytes());
                }
            }
        }
    }
    secrets
        .iter()
        .filter(|s| haystack.windows(s.len()).any(|w| w == s.as_bytes()))
        .cloned()
        .collect()
}

/// The raw values of the secret columns.
async fn raw_secret_columns(store: &Store) -> Vec<String> {
    let sql = "SELECT system_token FROM apps UNION ALL SELECT previous_token FROM apps WHERE previous_token IS NOT NULL \
               UNION ALL SELECT auth_config FROM connectors UNION ALL SELECT default_headers FROM connectors \
               UNION ALL SELECT webhook_secrets FROM sync_strategies WHERE webhook_secrets IS NOT NULL \
               UNION ALL SELECT value FROM flowhook_meta WHERE key = 'approval_link_secret'";
    match store {
        Store::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        Store::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
    }
}

/// The key id of an envelope.
fn key_id(v: &str) -> &str {
    v.strip_prefix("v1:")
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("not an envelope: {} characters", v.len()))
}

mod no_secret_is_stored_in_plaintext {
    crate::on_both_backends!(super::no_secret_is_stored_in_plaintext);
}

/// After every kind of secret is configured, none is in the database (SQLite: the bytes of
/// the file and the WAL, running and stopped; PostgreSQL: every row of the tables holding them),
/// and every one still reads back for sending.
async fn no_secret_is_stored_in_plaintext(db: TestDb) {
    let org = Org::setup(&db, "acme").await;
    let configured = configure_secrets(&org).await;
    let store = org.app.store.clone();
    assert_eq!(
        secrets_at_rest(&store, &db, &configured.secrets).await,
        Vec::<String>::new(),
        "secrets found at rest while running"
    );
    for v in raw_secret_columns(&store).await {
        key_id(&v);
    }
    // They still serve: the tokens sign, the credentials authenticate.
    let now = flowhook::support::now_ms();
    assert_eq!(
        store.app_tokens("APP_ACME", now).await.unwrap(),
        std::slice::from_ref(&org.system_token)
    );
    assert_eq!(store.app_tokens("APP_TWO", now).await.unwrap().len(), 2);
    let connectors = store.connectors("acme", None).await.unwrap();
    assert_eq!(connectors.len(), configured.connectors.len());
    let first = &connectors[0];
    assert_eq!(
        first.0.base_url, "http://hooks:url-pass-a7c3e91b05@127.0.0.1:9/cb",
        "the base URL is read back whole"
    );
    assert!(matches!(
        &connectors[4].1,
        flowhook::integration::connectors::Auth::Bearer { token } if token == "bearer-token-c4a1b8e6f0"
    ));
    assert_eq!(store.webhook_secrets("acme", now).await.unwrap().len(), 2);
    org.app.stop().await;
    if !db.is_postgres() {
        // Stopped: the WAL checkpointed into the file.
        assert_eq!(
            secrets_at_rest(&store, &db, &configured.secrets).await,
            Vec::<String>::new(),
            "secrets found at rest after the stop"
        );
    }
}

mod plaintext_from_an_older_flowhook_is_sealed_at_start {
    crate::on_both_backends!(super::plaintext_from_an_older_flowhook_is_sealed_at_start);
}

/// Rows written in plaintext (as before the sealing) are sealed when Flowhook starts — the
/// SQLite file rewritten so no old byte is left — and read back the same; a second start
/// finds nothing to do.
async fn plaintext_from_an_older_flowhook_is_sealed_at_start(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    configure_secrets(&org).await;
    let old_token = "OLDPLAINTEXTTOKEN0123456789ABCDEFGHIJKLM";
    let old_auth = r#"{"type":"bearer","token":"old-plain-bearer-6b0d2e"}"#;
    let old_headers = r#"{"X-Old":"old-plain-header-91c4f7"}"#;
    let old_secrets =
        r#"[{"secret":"whsec_b2xkLXBsYWluLXdlYmhvb2stc2VjcmV0LTQ4Mg==","expiresAt":null}]"#;
    let statements = [
        format!("UPDATE apps SET system_token = '{old_token}', previous_token = NULL WHERE app_type = 'APP_ACME'"),
        format!("UPDATE connectors SET auth_config = '{old_auth}', auth_type = 'bearer', default_headers = '{old_headers}'"),
        format!("UPDATE sync_strategies SET webhook_secrets = '{old_secrets}'"),
        "UPDATE flowhook_meta SET value = 'old-plain-link-secret-2f7a9c' WHERE key = 'approval_link_secret'".to_owned(),
    ];
    match &org.app.store {
        Store::Sqlite(p) => {
            for s in &statements {
                sqlx::query(s).execute(p).await.unwrap();
            }
        }
        Store::Postgres(p) => {
            for s in &statements {
                sqlx::query(s).execute(p).await.unwrap();
            }
        }
    }
    let plain: Vec<String> = [
        old_token,
        "old-plain-bearer-6b0d2e",
        "old-plain-header-91c4f7",
        "b2xkLXBsYWluLXdlYmhvb2stc2VjcmV0LTQ4Mg==",
        "old-plain-link-secret-2f7a9c",
    ]
    .map(String::from)
    .to_vec();
    org.restart_with(&db, |_| {}).await;
    let store = org.app.store.clone();
    for v in raw_secret_columns(&store).await {
        key_id(&v);
    }
    let now = flowhook::support::now_ms();
    assert_eq!(
        store.app_tokens("APP_ACME", now).await.unwrap(),
        [old_token.to_owned()],
        "sealed, the same token"
    );
    assert!(store
        .connectors("acme", None)
        .await
        .unwrap()
        .iter()
        .all(|(c, auth)| c.default_headers["X-Old"] == "old-plain-header-91c4f7"
            && matches!(auth, flowhook::integration::connectors::Auth::Bearer { token } if token == "old-plain-bearer-6b0d2e")));
    assert_eq!(store.webhook_secrets("acme", now).await.unwrap().len(), 1);
    assert_eq!(
        store.link_secret().await.unwrap(),
        "old-plain-link-secret-2f7a9c",
        "sealed, the same link secret"
    );
    if !db.is_postgres() {
        assert_eq!(
            secrets_at_rest(&store, &db, &plain).await,
            Vec::<String>::new(),
            "the old plaintext is gone from the file and the WAL"
        );
    }
    let before = raw_secret_columns(&store).await;
    org.restart_with(&db, |_| {}).await;
    assert_eq!(
        raw_secret_columns(&org.app.store).await,
        before,
        "a second start seals nothing again"
    );
    org.app.stop().await;
}

mod a_wrong_master_key_is_refused_loudly {
    crate::on_both_backends!(super::a_wrong_master_key_is_refused_loudly);
}

/// A start with another master key (or, on SQLite, without the key file) stops with an error
/// naming the keys; a value moved to another row does not open, and nothing is sent with it.
async fn a_wrong_master_key_is_refused_loudly(db: TestDb) {
    let org = Org::setup_with(&db, "acme", |c| fast(c, 60_000)).await;
    let receiver = Receiver::start().await;
    connect(
        &org,
        &receiver,
        json!({"type": "bearer", "token": "moved-bearer-0f4c2a"}),
    )
    .await;
    let (s, two) = org
        .send(
            "POST",
            &org.path("/apps"),
            None,
            Some(json!({"appType": "APP_TWO", "name": "two"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{two}");

    // A value copied to another row is an error naming that row, and is not used.
    let copy = "UPDATE apps SET system_token = (SELECT system_token FROM apps WHERE app_type = 'APP_ACME') \
                WHERE app_type = 'APP_TWO'";
    match &org.app.store {
        Store::Sqlite(p) => sqlx::query(copy).execute(p).await.unwrap(),
        Store::Postgres(p) => sqlx::query(copy)
            .execute(p)
            .await
            .map(|_| ())
            .map(|_| Default::default())
            .unwrap(),
    };
    let err = org
        .app
        .store
        .app_tokens("APP_TWO", flowhook::support::now_ms())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("apps/acme/APP_TWO/token") && err.contains("does not decrypt"),
        "{err}"
    );
    assert!(!err.contains(&org.system_token), "{err}");
    let (_, actions) = org.send("GET", &org.path("/actions"), None, None).await;
    let action = actions[0]["id"].as_str().unwrap();
    let (s, fired) = org
        .send(
            "POST",
            &org.path(&format!("/actions/{action}/test")),
            None,
            Some(json!({"appType": "APP_TWO", "events": ["task.created"]})),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{fired}");
    assert!(receiver.requests().is_empty(), "nothing sent with it");
    org.app.stop().await;

    let other = base64_key(7);
    let err = match flowhook::Application::build({
        let mut c = db.config();
        c.master_key = Some(flowhook::config::Secret(other));
        c
    })
    .await
    {
        Ok(_) => panic!("started with another master key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("does not open this database"), "{err}");
    if !db.is_postgres() {
        let file = std::path::Path::new(db.url.strip_prefix("sqlite://").unwrap())
            .with_file_name("flowhook-master.key");
        std::fs::remove_file(&file).unwrap();
        let err = match flowhook::Application::build(db.config()).await {
            Ok(_) => panic!("started without its key file"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("does not exist, but this database"), "{err}");
        assert!(
            !file.exists(),
            "no new key was made for a database that has secrets"
        );
    }
}

/// A base64 AES-256 key made of one repeated byte (tests only).
fn base64_key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

mod rotate_master_key_reseals_every_secret {
    crate::on_both_backends!(super::rotate_master_key_reseals_every_secret);
}

/// `flowhook rotate-master-key`: with the key file (SQLite), a new key is made and every secret
/// re-sealed under it, the file then holding it alone; with FLOWHOOK_MASTER_KEY=NEW,OLD
/// (PostgreSQL), every secret goes under NEW. Flowhook then starts with the new key alone and
/// reads every secret.
async fn rotate_master_key_reseals_every_secret(db: TestDb) {
    let mut org = Org::setup(&db, "acme").await;
    let configured = configure_secrets(&org).await;
    let old_id = key_id(&raw_secret_columns(&org.app.store).await[0]).to_owned();
    org.app.shut_down().await;

    let new_key = base64_key(42);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flowhook"));
    cmd.args([
        "rotate-master-key",
        "--database-url",
        &db.url,
        "--log-level",
        "warn",
    ]);
    if db.is_postgres() {
        let old = db.config().master_key.unwrap().0;
        cmd.env("FLOWHOOK_MASTER_KEY", format!("{new_key},{old}"));
    }
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("re-sealed"), "{said}");

    let tune = |c: &mut flowhook::config::Config| {
        if c.master_key.is_some() {
            c.master_key = Some(flowhook::config::Secret(base64_key(42)));
        }
    };
    org.app = crate::helpers::TestApp::spawn({
        let mut c = db.config();
        tune(&mut c);
        c.admin_key = Some("test-bootstrap-key-0123456789".into());
        c
    })
    .await;
    let raw = raw_secret_columns(&org.app.store).await;
    let new_id = key_id(&raw[0]).to_owned();
    assert_ne!(new_id, old_id, "a new key");
    assert!(
        raw.iter().all(|v| key_id(v) == new_id),
        "every secret under it"
    );
    if !db.is_postgres() {
        let file = std::path::Path::new(db.url.strip_prefix("sqlite://").unwrap())
            .with_file_name("flowhook-master.key");
        let text = std::fs::read_to_string(&file).unwrap();
        let keys = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        assert_eq!(keys, 1, "the key file holds the new key alone");
    }
    let now = flowhook::support::now_ms();
    assert_eq!(
        org.app.store.app_tokens("APP_ACME", now).await.unwrap(),
        [org.system_token.clone()]
    );
    assert_eq!(
        org.app.store.connectors("acme", None).await.unwrap().len(),
        configured.connectors.len()
    );
    assert_eq!(
        secrets_at_rest(&org.app.store, &db, &configured.secrets).await,
        Vec::<String>::new()
    );
    org.app.stop().await;
}
