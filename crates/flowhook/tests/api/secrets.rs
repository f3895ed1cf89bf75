//! Secrets over their life: a systemToken rotation that a receiver can follow without a
//! single refused delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flowhook_sign::receive::{RawRequest, Verifier};
use reqwest::StatusCode;
use serde_json::json;

use crate::delivery::{connect, fast, kind_of};
use crate::helpers::TestDb;
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
        .verify(kind_of(c), &req, flowhook::store::now_ms())
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
