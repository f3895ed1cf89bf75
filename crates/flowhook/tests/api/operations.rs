//! `/healthz`, `/readyz`, `/metrics`, the OpenAPI document and the error shape.

use flowhook::http::error::ErrorBody;
use flowhook_testkit::eventually;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{AppConfig, TestApp, TestDb};

mod endpoints_answer {
    crate::on_both_backends!(super::endpoints_answer);
}

async fn endpoints_answer(db: TestDb) {
    let app = TestApp::spawn(db.config()).await;

    let health: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    let backend = if db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(ready["database"], backend);
    assert_eq!(ready["schema_version"], app.store.known_schema_version());

    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("flowhook_build_info{version=\""), "{text}");
    assert!(
        text.contains(
            r#"flowhook_http_requests_total{method="GET",route="/readyz",status="200"} 1"#
        ),
        "{text}"
    );

    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/orgs/{corp_id}/instances",
        "/api/v1/orgs/{corp_id}/tasks/{task_id}/{action}",
        "/api/v1/orgs/{corp_id}/users/{user_id}/tasks",
        "/api/v1/orgs/{corp_id}/processes/{process_code}",
        "/api/v1/orgs/{corp_id}/connectors/{id}/health",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    app.stop().await;
}

mod a_failed_writer_is_named_by_readyz_and_restarts {
    crate::on_both_backends!(super::a_failed_writer_is_named_by_readyz_and_restarts);
}

/// The writer panics (as a broken invariant would): `/readyz` answers 503 naming it while it
/// pauses, then it runs again on the same queue — a command sent meanwhile waits and commits.
async fn a_failed_writer_is_named_by_readyz_and_restarts(db: TestDb) {
    let mut org = crate::task_center::Org::setup(&db, "acme").await;
    org.start("alice", "leave", "before", serde_json::json!({"days": "1"}))
        .await;
    assert_eq!(org.app.get("/readyz").await.status(), StatusCode::OK);

    org.app.writer.crash_for_test().await;
    // The writer pauses 250 ms before it restarts: polled every 20 ms, the 503 is seen.
    let wait = std::time::Duration::from_secs(2);
    let body = eventually(
        "/readyz answering 503 while the writer restarts",
        wait,
        async || {
            let r = org.app.get("/readyz").await;
            if r.status() != StatusCode::SERVICE_UNAVAILABLE {
                return Err(r.status());
            }
            assert!(r.headers().contains_key("retry-after"));
            Ok(r.json::<ErrorBody>().await.unwrap())
        },
    )
    .await;
    assert_eq!(body.code, "unavailable", "{body:?}");
    assert!(
        body.message
            .starts_with("the writer failed and is restarting"),
        "{body:?}"
    );

    // Sent while it pauses: queued, then committed by the restarted writer.
    let during = org
        .start("bob", "leave", "during", serde_json::json!({"days": "2"}))
        .await;
    assert!(!during.is_empty());
    let r = org.app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK, "ready again once it runs");
    let (s, page) = org
        .send("GET", &org.path("/instances?limit=10"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    org.app.stop().await;
}

mod errors_are_json {
    crate::on_both_backends!(super::errors_are_json);
}

async fn errors_are_json(db: TestDb) {
    let mut config = db.config();
    config.body_limit_bytes = 4096;
    let app = TestApp::spawn(config).await;

    let missing = app.get("/api/v1/nothing-here").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: ErrorBody = missing.json().await.unwrap();
    assert_eq!(body.code, "not_found");

    let wrong_method = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.headers().contains_key("allow"));
    let body: ErrorBody = wrong_method.json().await.unwrap();
    assert_eq!(body.code, "method_not_allowed");

    let oversize = app
        .client
        .post(app.url("/healthz"))
        .body(vec![b'x'; 4097])
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: ErrorBody = oversize.json().await.unwrap();
    assert_eq!(body.code, "payload_too_large");
    app.stop().await;
}

mod not_ready_without_database {
    crate::on_both_backends!(super::not_ready_without_database);
}

/// Readiness reflects the database: with the pool closed, `/readyz` says 503 while `/healthz`
/// (liveness) still answers.
async fn not_ready_without_database(db: TestDb) {
    let app = TestApp::spawn(db.config()).await;
    app.store.close().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: ErrorBody = ready.json().await.unwrap();
    assert_eq!(body.code, "unavailable");
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    app.stop().await;
}

/// A database outage is answered 503 with `Retry-After`, never 500, on reads, writes and key
/// lookups; `/readyz` says why; and the node answers again once the database is back. On
/// PostgreSQL, where an outage is a matter of the network: the test's database stops accepting
/// connections and its sessions are ended, as a failover or a restart would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_then_recovers() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("not run: set {} to run this", crate::helpers::POSTGRES_ENV);
        return;
    };
    crate::helpers::bounded(async {
        use sqlx::Connection;
        let mut org = crate::task_center::Org::setup_with(&db, "acme", |c| {
            c.database_connect_timeout_secs = 2;
        })
        .await;
        let first = org
            .start("alice", "leave", "before", serde_json::json!({"days": "1"}))
            .await;
        let (admin, name) = db.postgres_admin().unwrap();
        let mut admin = sqlx::PgConnection::connect(admin).await.unwrap();
        let outage = |allow: bool| format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {allow}");
        sqlx::query(&outage(false))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .execute(&mut admin)
        .await
        .unwrap();

        let ready = org.app.get("/readyz").await;
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready.headers()["retry-after"], "5");
        let body: ErrorBody = ready.json().await.unwrap();
        assert_eq!(body.code, "unavailable");
        assert!(body.message.contains("database"), "{}", body.message);
        assert!(
            !body.message.contains(name),
            "no database name: {}",
            body.message
        );

        // A read, a write and a key that is not cached yet: 503, never 500.
        let (s, r) = org
            .send("GET", &org.path(&format!("/instances/{first}")), None, None)
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{r}");
        let (s, r) = org
            .send(
                "POST",
                &org.path("/instances"),
                Some("alice"),
                Some(
                    serde_json::json!({"processCode": "leave", "title": "during",
                    "formData": {"days": "1"}}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{r}");
        assert!(r["message"].as_str().unwrap().contains("retry"), "{r}");
        let unknown = org
            .app
            .client
            .get(org.app.url(&org.path("/instances")))
            .bearer_auth("fh_never_seen_0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::SERVICE_UNAVAILABLE);

        sqlx::query(&outage(true))
            .execute(&mut admin)
            .await
            .unwrap();
        let wait = std::time::Duration::from_secs(30);
        eventually("ready again once the database is back", wait, async || {
            let status = org.app.get("/readyz").await.status();
            if status == StatusCode::OK {
                Ok(())
            } else {
                Err(status)
            }
        })
        .await;
        org.start("alice", "leave", "after", serde_json::json!({"days": "1"}))
            .await;
        admin.close().await.ok();
        org.app.stop().await;
    })
    .await;
}
