//! Storage: migrations, schema version guard, durability settings, persistence across restarts.

use flowhook::store::{Store, StoreError};
use flowhook::Application;
use std::time::Duration;

use crate::helpers::{AppConfig, TestDb};

async fn open(db: &TestDb) -> Store {
    Store::connect(&db.url, 2, Duration::from_secs(5))
        .await
        .expect("the test database opens")
}

mod migrations_apply_once_and_persist {
    crate::on_both_backends!(super::migrations_apply_once_and_persist);
}

async fn migrations_apply_once_and_persist(db: TestDb) {
    let store = open(&db).await;
    assert_eq!(store.schema_version().await.unwrap(), 0);
    let first = store.migrate().await.unwrap();
    assert_eq!(
        (first.before, first.after),
        (0, store.known_schema_version())
    );
    let id = store.installation_id().await.unwrap();
    assert_eq!(id.len(), 32, "installation id {id}");
    store.close().await;

    // Reopened (a restart): nothing to apply, same installation.
    let store = open(&db).await;
    let again = store.migrate().await.unwrap();
    assert_eq!(again.before, again.after);
    assert_eq!(store.installation_id().await.unwrap(), id);
    store.close().await;
}

mod refuses_a_newer_schema {
    crate::on_both_backends!(super::refuses_a_newer_schema);
}

async fn refuses_a_newer_schema(db: TestDb) {
    let store = open(&db).await;
    store.migrate().await.unwrap();
    let future = store.known_schema_version() + 1;
    let insert =
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                  VALUES (999, 'from the future', TRUE, X'00', 0)";
    let insert_pg = insert.replace("X'00'", "'\\x00'::bytea");
    match &store {
        Store::Sqlite(pool) => sqlx::query(insert).execute(pool).await.map(drop),
        Store::Postgres(pool) => sqlx::query(&insert_pg).execute(pool).await.map(drop),
    }
    .expect("a future migration row");
    assert!(future <= 999);
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { database: 999, .. }),
        "{err:?}"
    );
    store.close().await;

    let err = Application::build(db.config())
        .await
        .err()
        .expect("start refused");
    let text = format!("{err:#}");
    assert!(text.contains("schema is at version 999"), "{text}");
}

mod commits_are_durable {
    crate::on_both_backends!(super::commits_are_durable);
}

/// A commit is on disk before it is acknowledged: SQLite in WAL with synchronous=FULL on every
/// pooled connection, PostgreSQL with fsync and synchronous_commit on.
async fn commits_are_durable(db: TestDb) {
    let store = open(&db).await;
    match &store {
        Store::Sqlite(pool) => {
            for _ in 0..2 {
                let mut conn = pool.acquire().await.unwrap();
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!((mode.as_str(), sync), ("wal", 2), "WAL + FULL");
            }
        }
        Store::Postgres(pool) => {
            let fsync: String = sqlx::query_scalar("SHOW fsync")
                .fetch_one(pool)
                .await
                .unwrap();
            let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(fsync, "on");
            assert_ne!(sync, "off");
        }
    }
    store.close().await;
}

mod the_tenant_lanes_migration_keeps_what_receivers_saw {
    crate::on_both_backends!(super::the_tenant_lanes_migration_keeps_what_receivers_saw);
}

/// Migration 7 scopes the outbox's keys by organisation. A database left by the version before
/// it (an engine event, a relayed one with the caller's id, their deliveries) comes through with
/// every row, every reference and every id receivers saw: the relayed event's id becomes its
/// organisation's `source_event_id`, and the lanes' `seq` is unique per organisation.
async fn the_tenant_lanes_migration_keeps_what_receivers_saw(db: TestDb) {
    let store = open(&db).await;
    store.migrate_to(6).await.unwrap();
    let rows = [
        "INSERT INTO organisations (corp_id, name, created_at) VALUES ('acme', 'a', 0), ('globex', 'g', 0)",
        "INSERT INTO apps (app_type, corp_id, name, system_token, created_at) VALUES ('APP_A', 'acme', 'a', 't', 0)",
        "INSERT INTO instances (id, corp_id, app_type, process_code, process_version, form_instance_id, title, \
         originator_id, status, state, seq, created_at, modified_at) \
         VALUES ('inst-1', 'acme', 'APP_A', 'leave', 1, 'f', 't', 'alice', 'running', '{}', 1, 0, 0)",
        "INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, created_at) VALUES \
         ('evt_own', 'acme', 'APP_A', 'inst-1', 1, 'task.created', 'inst-1-t1', '[]', 0), \
         ('cam-1', 'acme', 'APP_A', 'order-1001', 1, 'task.created', 'x-t1', '[]', 0)",
        "INSERT INTO connectors (id, corp_id, name, base_url, auth_type, auth_config, default_headers, timeout_ms, \
         created_at, updated_at) VALUES ('con_1', 'acme', 'c', 'http://127.0.0.1:9', 'none', '{\"type\":\"none\"}', '{}', 1000, 0, 0)",
        "INSERT INTO actions (id, corp_id, connector_id, name, method, path, encoding, created_at) \
         VALUES ('act_1', 'acme', 'con_1', 'a', 'POST', '/', 'form', 0)",
        "INSERT INTO deliveries (id, corp_id, event_id, action_id, instance_id, seq, status, ordered, backfill, \
         attempts, next_attempt_at, created_at, updated_at) VALUES \
         ('dlv_1', 'acme', 'evt_own', 'act_1', 'inst-1', 1, 'pending', TRUE, FALSE, 0, 0, 0, 0), \
         ('dlv_2', 'acme', 'cam-1', 'act_1', 'order-1001', 1, 'pending', TRUE, FALSE, 0, 0, 0, 0)",
    ];
    for sql in rows {
        match &store {
            Store::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Store::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    store.migrate().await.unwrap();

    let select = "SELECT e.id, e.source_event_id, d.id FROM events e JOIN deliveries d ON d.event_id = e.id ORDER BY e.id";
    let got: Vec<(String, Option<String>, String)> = match &store {
        Store::Sqlite(pool) => sqlx::query_as(select).fetch_all(pool).await,
        Store::Postgres(pool) => sqlx::query_as(select).fetch_all(pool).await,
    }
    .unwrap();
    assert_eq!(
        got,
        [
            ("cam-1".into(), Some("cam-1".into()), "dlv_2".into()),
            ("evt_own".into(), None, "dlv_1".into()),
        ]
    );
    // Another organisation may now relay the same instance id and event id.
    let other = "INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, created_at, \
                 source_event_id) VALUES ('evt_g', 'globex', 'APP_G', 'order-1001', 1, 'task.created', 'x-t1', '[]', 0, 'cam-1')";
    let twice = other.replace("'evt_g'", "'evt_g2'");
    for (sql, ok) in [(other, true), (twice.as_str(), false)] {
        let result = match &store {
            Store::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Store::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        };
        assert_eq!(result.is_ok(), ok, "{sql}: {result:?}");
    }
    if let Store::Sqlite(pool) = &store {
        let broken: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(broken.is_empty(), "{broken:?}");
    }
    store.close().await;
}

/// A PostgreSQL pool opens all its connections at start and keeps them: a connection opened on
/// demand costs a server process's start, which the first burst of calls after a start (or an
/// idle spell) waited for — the first 40 calls of a 1,000/s ingest run arrived 30–55 ms late.
/// (SQLite opens a file: nothing to warm.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_pool_opens_its_connections_at_start() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("not run: set {} to run this", crate::helpers::POSTGRES_ENV);
        return;
    };
    let store = Store::connect(&db.url, 4, Duration::from_secs(5))
        .await
        .expect("the test database opens");
    let Store::Postgres(pool) = &store else {
        panic!("a postgres:// URL opens a PostgreSQL store");
    };
    // Nothing asked for a connection: the pool opened them on its own.
    flowhook_testkit::eventually("4 open connections", Duration::from_secs(10), async || {
        let open = (pool.size(), pool.num_idle());
        if open == (4, 4) {
            Ok(())
        } else {
            Err(open)
        }
    })
    .await;
    store.close().await;
}
