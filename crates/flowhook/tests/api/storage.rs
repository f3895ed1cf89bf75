//! Storage: migrations, schema version guard, durability settings, persistence across restarts.

use flowhook::store::{Store, StoreError};
use flowhook::Application;
use std::time::Duration;

use crate::helpers::TestDb;

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
