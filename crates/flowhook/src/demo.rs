//! Demo data for `flowhook serve --demo`: an organisation a newcomer recognises, with a manager
//! chain, roles, an app, the two classic processes and a few running instances.
//!
//! - leave request: the leader approves; more than 3 days → HR countersign; HR is cc'd.
//! - purchase: finance or-sign, then the director.
//!
//! Seeding is skipped when the organisation exists, so restarting with `--demo` is harmless.
//! The demo API key is written to a file (mode 0600), never to the log; the demo app's
//! systemToken (what a receiver such as `flowhook-inbox` verifies signatures with) beside it,
//! in [`SYSTEM_TOKEN_FILE`] (mode 0600), since the API shows it only once.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::engine::definition::{self, Definition};
use crate::engine::resolve::Person;
use crate::store::writer::{Op, Writer};
use crate::store::Store;

pub const CORP_ID: &str = "demo-corp";
pub const APP_TYPE: &str = "APP_DEMO";
/// The file, beside the key file, that holds `APP_DEMO`'s systemToken.
pub const SYSTEM_TOKEN_FILE: &str = "flowhook-demo-system-token.txt";

/// Where the demo app's systemToken is written, for a key file at `key_file`.
pub fn system_token_file(key_file: &Path) -> std::path::PathBuf {
    key_file.with_file_name(SYSTEM_TOKEN_FILE)
}

/// The demo organisation's people: (id, name, manager, admin).
pub const PEOPLE: &[(&str, &str, Option<&str>, bool)] = &[
    ("alice", "Alice Zhang", Some("bob"), false),
    ("dave", "Dave Li", Some("bob"), false),
    ("bob", "Bob Wang", Some("carol"), false),
    ("carol", "Carol Chen", None, false),
    ("hr1", "Helen (HR)", Some("carol"), false),
    ("hr2", "Henry (HR)", Some("carol"), false),
    ("fin1", "Fiona (Finance)", Some("carol"), false),
    ("fin2", "Frank (Finance)", Some("carol"), false),
    ("admin", "Ada (Admin)", None, true),
];

/// Leave request: leader → (days > 3: HR countersign) → cc HR.
pub fn leave_document() -> serde_json::Value {
    json!({
        "processCode": "leave",
        "name": "Leave request",
        "nodes": [
            {"id": "leader", "type": "approval", "name": "Leader approval",
             "approvers": [{"type": "leader", "level": 1}], "whenEmpty": "admin"},
            {"id": "length", "type": "route", "name": "How long?", "branches": [
                {"name": "More than 3 days", "condition": "days > 3", "nodes": [
                    {"id": "hr", "type": "approval", "name": "HR countersign",
                     "approvers": [{"type": "role", "role": "hr"}], "mode": "all"}]},
                {"name": "Otherwise", "default": true, "nodes": []}]},
            {"id": "cc-hr", "type": "carbon", "name": "Inform HR",
             "recipients": [{"type": "role", "role": "hr"}]}
        ]
    })
}

/// Purchase: finance or-sign → director.
pub fn purchase_document() -> serde_json::Value {
    json!({
        "processCode": "purchase",
        "name": "Purchase request",
        "nodes": [
            {"id": "finance", "type": "approval", "name": "Finance review",
             "approvers": [{"type": "role", "role": "finance"}], "mode": "or"},
            {"id": "director", "type": "approval", "name": "Director approval",
             "approvers": [{"type": "users", "ids": ["carol"]}]}
        ]
    })
}

/// Seeds the demo organisation unless it exists; writes the demo API key to `key_file`.
pub async fn seed(store: &Store, writer: &Writer, key_file: &Path) -> anyhow::Result<bool> {
    if store.org(CORP_ID).await?.is_some() {
        return Ok(false);
    }
    store.create_org(CORP_ID, "Demo Corporation").await?;
    for (id, name, manager, admin) in PEOPLE {
        let person = Person {
            user_id: (*id).into(),
            name: (*name).into(),
            avatar: String::new(),
            manager_id: manager.map(Into::into),
            admin: *admin,
        };
        store.put_user(CORP_ID, &person).await?;
    }
    store
        .put_role(
            CORP_ID,
            "hr",
            "Human resources",
            &["hr1".into(), "hr2".into()],
        )
        .await?;
    store
        .put_role(
            CORP_ID,
            "finance",
            "Finance",
            &["fin1".into(), "fin2".into()],
        )
        .await?;
    let token = format!("{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    store
        .create_app(CORP_ID, APP_TYPE, "Demo approvals", &token)
        .await?;
    let (_, dir) = store.load_directory(CORP_ID).await?;
    for doc in [leave_document(), purchase_document()] {
        let def: Definition = definition::validate(&doc, &dir)
            .map_err(|p| anyhow::anyhow!("demo definition invalid: {p:?}"))?;
        store.put_definition(CORP_ID, APP_TYPE, &def).await?;
    }
    let start = |code: &str, who: &str, title: &str, form: &[(&str, &str)]| Op::Start {
        corp_id: CORP_ID.into(),
        process_code: code.into(),
        actor: who.into(),
        title: title.into(),
        form_data: form
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect(),
    };
    writer
        .submit(start(
            "leave",
            "alice",
            "Alice: 5 days of leave",
            &[("days", "5"), ("reason", "family")],
        ))
        .await?;
    writer
        .submit(start(
            "leave",
            "dave",
            "Dave: 2 days of leave",
            &[("days", "2"), ("reason", "moving")],
        ))
        .await?;
    writer
        .submit(start(
            "purchase",
            "alice",
            "Alice: a new laptop",
            &[("amount", "1299.00"), ("item", "laptop")],
        ))
        .await?;

    let key = crate::http::auth::new_key();
    store
        .create_api_key(
            CORP_ID,
            "demo",
            &crate::http::auth::hash_key(&key),
            &["admin".into()],
        )
        .await?;
    write_secret(key_file, &format!("{key}\n"))
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let token_file = system_token_file(key_file);
    write_secret(&token_file, &format!("{token}\n"))
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    Ok(true)
}

fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
