//! `/healthz`, `/readyz`, `/metrics`, the OpenAPI document and the error shape.

use flowhook::http::error::ErrorBody;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestDb};

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
