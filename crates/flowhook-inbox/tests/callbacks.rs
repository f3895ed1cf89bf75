//! The callback endpoints against a real database and a real HTTP client: what is refused is
//! refused with its status and stores nothing; what is accepted is idempotent and
//! order-tolerant, and shows in the unified lists across sources.

mod common;

use common::*;
use flowhook_sign::event::TaskEvent;
use flowhook_sign::wire::{encode, BodyEncoding};

const FORM: &str = "application/x-www-form-urlencoded";

fn body(event: &TaskEvent, at: i64, token: &str) -> String {
    encode(&event.to_signed_params(at, token), BodyEncoding::Form)
}

async fn refusals_store_nothing(db: TestDb) {
    let inbox = TestInbox::spawn(&db).await;
    let event = created("APP_Y", "p1", "p1-t1", "u1", "u0");
    let now = now_ms();
    let good = body(&event, now, YIDA_TOKEN);
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "/callbacks/yida/created",
            body(&event, now, "WRONG-TOKEN"),
            FORM,
            401,
            "bad_signature",
        ),
        (
            "/callbacks/yida/created",
            good.replacen("sign=", "sign=f", 1),
            FORM,
            401,
            "bad_signature",
        ),
        (
            "/callbacks/yida/created",
            body(&event, now - 301_000, YIDA_TOKEN),
            FORM,
            401,
            "stale_date_time",
        ),
        (
            "/callbacks/yida/created",
            body(&event, now + 301_000, YIDA_TOKEN),
            FORM,
            401,
            "future_date_time",
        ),
        (
            "/callbacks/yida/created",
            body(
                &created("APP_NOPE", "p1", "p1-t1", "u1", "u0"),
                now,
                YIDA_TOKEN,
            ),
            FORM,
            401,
            "unknown_app",
        ),
        // The app belongs to another source: unknown here.
        (
            "/callbacks/flowhook/created",
            good.clone(),
            FORM,
            401,
            "unknown_app",
        ),
        (
            "/callbacks/nobody/created",
            good.clone(),
            FORM,
            404,
            "unknown_source",
        ),
        (
            "/callbacks/yida/approved",
            good.clone(),
            FORM,
            404,
            "unknown_action",
        ),
        // Truncated: the body cut in the middle of the task JSON.
        (
            "/callbacks/yida/created",
            good[..good.len() / 2].to_owned(),
            FORM,
            400,
            "missing_parameter",
        ),
        (
            "/callbacks/yida/created",
            good[..good.find("%2C").unwrap()].to_owned() + "&dateTime=1&sign=0",
            FORM,
            400,
            "task_not_json",
        ),
        (
            "/callbacks/yida/created",
            "{\"task\": ".into(),
            "application/json",
            400,
            "malformed_body",
        ),
        (
            "/callbacks/yida/created",
            good.clone(),
            "text/plain",
            415,
            "unsupported_content_type",
        ),
    ];
    for (i, (path, body, ct, status, code)) in cases.into_iter().enumerate() {
        let (got, answer) = inbox.post(path, ct, body, &[]).await;
        assert_eq!(
            (i, got, answer["code"].as_str()),
            (i, status, Some(code)),
            "{answer}"
        );
        assert!(
            !answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains(YIDA_TOKEN),
            "no token in an error"
        );
    }
    // A body shorter than its Content-Length, the connection then closed: never a 2xx.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(inbox.addr).await.unwrap();
        let head = format!(
            "POST /callbacks/yida/created HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {}\r\n\r\n",
            good.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&good.as_bytes()[..good.len() - 10])
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer).await;
        assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    }
    assert_eq!(inbox.receipts().await, 0, "nothing refused is stored");
    for list in ["todo", "done", "cc", "created"] {
        assert!(inbox.ids("u1", list, 10).await.is_empty());
        assert!(inbox.ids("u0", list, 10).await.is_empty());
    }
    // And the good one is accepted.
    let (s, a) = inbox.post("/callbacks/yida/created", FORM, good, &[]).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("stored")));
    assert_eq!(inbox.ids("u1", "todo", 10).await, ["p1-t1"]);
    inbox.stop().await;
}

mod refusals {
    use super::*;
    on_both_backends!(refusals_store_nothing);
}

async fn idempotent_and_order_tolerant(db: TestDb) {
    let inbox = TestInbox::spawn(&db).await;
    let evt1 = [("X-Flowhook-Event-Id", "evt_1"), ("X-Flowhook-Seq", "1")];

    // The same event twice (a retry): stored once.
    let t1 = created("APP_F", "p1", "p1-t1", "u1", "u0");
    let (s, a) = inbox.send("flowhook", &t1, FLOWHOOK_NEW, &evt1).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("stored")));
    let (s, a) = inbox.send("flowhook", &t1, FLOWHOOK_OLD, &evt1).await;
    assert_eq!(
        (s, a["status"].as_str()),
        (200, Some("duplicate")),
        "the old token still verifies"
    );
    assert_eq!(inbox.ids("u1", "todo", 10).await, ["p1-t1"]);
    assert_eq!(inbox.ids("u0", "created", 10).await, ["p1"]);

    // A Yida sender adds no headers: the natural key de-duplicates.
    let y1 = created("APP_Y", "y1", "y1-t1", "u1", "u9");
    assert_eq!(
        inbox.send("yida", &y1, YIDA_TOKEN, &[]).await.1["status"],
        "stored"
    );
    assert_eq!(
        inbox.send("yida", &y1, YIDA_TOKEN, &[]).await.1["status"],
        "duplicate"
    );
    // One list across both sources, newest first.
    assert_eq!(inbox.ids("u1", "todo", 10).await, ["y1-t1", "p1-t1"]);
    let page: serde_json::Value = inbox
        .client
        .get(inbox.url("/users/u1/tasks?list=todo&source=yida"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["source"], "yida");
    assert_eq!(page["items"][0]["title"], "Request y1");
    assert_eq!(page["items"][0]["url"], "https://tasks.example/y1");
    assert_eq!(page["items"][0]["originatorId"], "u9");

    // finished before created: kept, and it wins when created arrives.
    assert_eq!(
        inbox
            .send(
                "yida",
                &finished("APP_Y", "y1", "y1-t2", "u2"),
                YIDA_TOKEN,
                &[]
            )
            .await
            .0,
        200
    );
    assert!(
        inbox.ids("u2", "done", 10).await.is_empty(),
        "no assignee known yet"
    );
    inbox
        .send(
            "yida",
            &created("APP_Y", "y1", "y1-t2", "u2", "u9"),
            YIDA_TOKEN,
            &[],
        )
        .await;
    assert_eq!(inbox.ids("u2", "done", 10).await, ["y1-t2"]);
    assert!(inbox.ids("u2", "todo", 10).await.is_empty());
    // cancelled before created: in neither list.
    inbox
        .send(
            "yida",
            &cancelled("APP_Y", "y1", "y1-t3", "u9"),
            YIDA_TOKEN,
            &[],
        )
        .await;
    inbox
        .send(
            "yida",
            &created("APP_Y", "y1", "y1-t3", "u3", "u9"),
            YIDA_TOKEN,
            &[],
        )
        .await;
    assert!(inbox.ids("u3", "todo", 10).await.is_empty());
    assert!(inbox.ids("u3", "done", 10).await.is_empty());
    // The first end wins: a finished after a cancelled changes nothing.
    inbox
        .send(
            "yida",
            &finished("APP_Y", "y1", "y1-t3", "u3"),
            YIDA_TOKEN,
            &[],
        )
        .await;
    assert!(inbox.ids("u3", "done", 10).await.is_empty());
    // In order: created, then finished.
    inbox
        .send(
            "yida",
            &finished("APP_Y", "y1", "y1-t1", "u1"),
            YIDA_TOKEN,
            &[],
        )
        .await;
    assert_eq!(inbox.ids("u1", "todo", 10).await, ["p1-t1"]);
    assert_eq!(inbox.ids("u1", "done", 10).await, ["y1-t1"]);

    // cc, as JSON.
    let c = cc("APP_Y", "y1", "y1-c1", "u4", "u9");
    let (s, _) = inbox
        .post(
            "/callbacks/yida/cc",
            "application/json",
            encode(
                &c.to_signed_params(now_ms(), YIDA_TOKEN),
                BodyEncoding::Json,
            ),
            &[],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(inbox.ids("u4", "cc", 10).await, ["y1-c1"]);
    assert_eq!(inbox.ids("u9", "created", 10).await, ["y1"]);

    // deleted removes the instance's rows, and late events do not bring them back.
    assert_eq!(
        inbox
            .send("yida", &deleted("APP_Y", "y1"), YIDA_TOKEN, &[])
            .await
            .1["status"],
        "stored"
    );
    for (user, list) in [
        ("u1", "done"),
        ("u2", "done"),
        ("u4", "cc"),
        ("u9", "created"),
    ] {
        assert!(inbox.ids(user, list, 10).await.is_empty(), "{user} {list}");
    }
    assert_eq!(
        inbox.ids("u1", "todo", 10).await,
        ["p1-t1"],
        "other instances untouched"
    );
    let late = created("APP_Y", "y1", "y1-t9", "u5", "u9");
    assert_eq!(
        inbox.send("yida", &late, YIDA_TOKEN, &[]).await.1["status"],
        "instance_deleted"
    );
    assert_eq!(
        inbox
            .send(
                "yida",
                &cc("APP_Y", "y1", "y1-c2", "u5", "u9"),
                YIDA_TOKEN,
                &[]
            )
            .await
            .0,
        200
    );
    assert!(inbox.ids("u5", "todo", 10).await.is_empty());
    assert!(inbox.ids("u5", "cc", 10).await.is_empty());
    assert!(inbox.ids("u9", "created", 10).await.is_empty());
    assert_eq!(
        inbox
            .send("yida", &deleted("APP_Y", "y1"), YIDA_TOKEN, &[])
            .await
            .1["status"],
        "duplicate"
    );

    // Pagination: 7 open tasks, 3 at a time: every one once, newest first.
    for n in 0..7 {
        inbox
            .send(
                "yida",
                &created("APP_Y", "y2", &format!("y2-t{n}"), "u6", "u0"),
                YIDA_TOKEN,
                &[],
            )
            .await;
    }
    let all = inbox.ids("u6", "todo", 3).await;
    let expected: Vec<String> = (0..7).rev().map(|n| format!("y2-t{n}")).collect();
    assert_eq!(all, expected);
    let counts: serde_json::Value = inbox
        .client
        .get(inbox.url("/users/u6/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["todo"], 7);
    let (s, a) = {
        let r = inbox
            .client
            .get(inbox.url("/users/u6/tasks?list=mine"))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!((s, a["code"].as_str()), (400, Some("unknown_list")));

    // The page lists them, escaped.
    let html = inbox
        .client
        .get(inbox.url("/users/u6"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Request y2") && html.contains("data-id=\"y2-t6\""),
        "{html}"
    );
    inbox.stop().await;
}

mod idempotency {
    use super::*;
    on_both_backends!(idempotent_and_order_tolerant);
}

/// Many callbacks at once share commits, and every one is answered after its own is stored.
async fn concurrent_callbacks_all_stored(db: TestDb) {
    let inbox = std::sync::Arc::new(TestInbox::spawn(&db).await);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            let e = created(
                "APP_Y",
                &format!("c{}", n % 20),
                &format!("c-t{n}"),
                &format!("w{}", n % 5),
                "u0",
            );
            inbox.send("yida", &e, YIDA_TOKEN, &[]).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(inbox.receipts().await, 200);
    let mut total = 0;
    for w in 0..5 {
        total += inbox.ids(&format!("w{w}"), "todo", 500).await.len();
    }
    assert_eq!(total, 200);
}

mod concurrency {
    use super::*;
    on_both_backends!(concurrent_callbacks_all_stored);
}

/// A captured request replayed within the replay window is a duplicate however its unsigned
/// headers are changed — a new or no `X-Flowhook-Event-Id`, a forged `X-Flowhook-Seq` — with
/// its `sign` in upper case, or with a value moved across two adjacent parameters (which keeps
/// the sign valid but names another task).
async fn replays_are_recognised_by_their_signed_content(db: TestDb) {
    let inbox = TestInbox::spawn(&db).await;
    let event = finished("APP_F", "p1", "p1-t1", "u1");
    let params: Vec<(String, String)> = event
        .to_signed_params(now_ms(), FLOWHOOK_NEW)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let form = |params: &[(String, String)]| encode(params, BodyEncoding::Form);
    let path = "/callbacks/flowhook/finished";
    let first = [("X-Flowhook-Event-Id", "evt_1"), ("X-Flowhook-Seq", "3")];
    let (s, a) = inbox.post(path, FORM, form(&params), &first).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("stored")), "{a}");

    let upper: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            let v = if k == "sign" {
                v.to_uppercase()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    // formInstId and taskId sort next to each other: "FINST-p1" + "p1-t1" signs as
    // "FINST-p" + "1p1-t1" does.
    let shifted: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "formInstId" => v.strip_suffix('1').unwrap().to_owned(),
                "taskId" => format!("1{v}"),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    // (what, body, headers) of each replay.
    type Replay<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let replays: Vec<Replay> = vec![
        (
            "a new event id and a forged seq",
            form(&params),
            vec![("X-Flowhook-Event-Id", "evt_2"), ("X-Flowhook-Seq", "99")],
        ),
        ("no headers", form(&params), vec![]),
        ("the sign in upper case", form(&upper), vec![]),
        (
            "a value moved across adjacent parameters",
            form(&shifted),
            vec![("X-Flowhook-Event-Id", "evt_3")],
        ),
    ];
    for (what, body, headers) in replays {
        let (s, a) = inbox.post(path, FORM, body, &headers).await;
        assert_eq!(
            (s, a["status"].as_str()),
            (200, Some("duplicate")),
            "replayed with {what}: {a}"
        );
    }
    assert_eq!(inbox.receipts().await, 1, "the replays stored nothing");
    let ended: i64 = {
        let sql = "SELECT COUNT(*) FROM tasks";
        match &inbox.store {
            flowhook_inbox::store::Store::Sqlite(p) => {
                sqlx::query_scalar(sql).fetch_one(p).await.unwrap()
            }
            flowhook_inbox::store::Store::Postgres(p) => {
                sqlx::query_scalar(sql).fetch_one(p).await.unwrap()
            }
        }
    };
    assert_eq!(ended, 1, "no task `1p1-t1` was made up");

    // What is new in its signed content is still stored, with or without headers.
    let next = created("APP_F", "p1", "p1-t2", "u2", "u0");
    let (s, a) = inbox
        .send(
            "flowhook",
            &next,
            FLOWHOOK_NEW,
            &[("X-Flowhook-Event-Id", "evt_4")],
        )
        .await;
    assert_eq!((s, a["status"].as_str()), (200, Some("stored")), "{a}");
    let (s, a) = inbox
        .send(
            "flowhook",
            &finished("APP_F", "p1", "p1-t2", "u2"),
            FLOWHOOK_NEW,
            &[],
        )
        .await;
    assert_eq!((s, a["status"].as_str()), (200, Some("stored")), "{a}");
    assert_eq!(inbox.ids("u2", "done", 10).await, ["p1-t2"]);
    inbox.stop().await;
}

mod replays {
    use super::*;
    on_both_backends!(replays_are_recognised_by_their_signed_content);
}

/// A database written before the replay keys — where a replay was stored twice — takes them:
/// the first receipt keeps the event, the replay stays recorded, and the event replayed once
/// more is a duplicate.
async fn receipts_from_before_the_replay_keys_are_carried_over(db: TestDb) {
    // Schema version 1 alone, as an older inbox left it.
    let backend = if db.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let old = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!(
            "{}/migrations/{backend}/0001_inbox.sql",
            env!("CARGO_MANIFEST_DIR")
        ),
        old.path().join("0001_inbox.sql"),
    )
    .unwrap();
    let v1 = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    let insert = "INSERT INTO receipts (source, dedup_key, kind, app_type, form_inst_id, item_id, event_id, \
                  seq, backfill, outcome, received_at, arrival) \
                  VALUES ('flowhook', $1, 'finished', 'APP_F', 'FINST-p1', 'p1-t1', $2, 3, FALSE, 'applied', 1, $3)";
    let rows = [("evt:evt_1", "evt_1", 10_i64), ("evt:evt_2", "evt_2", 20)];
    if backend == "sqlite" {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        v1.run(&pool).await.unwrap();
        for (key, id, arrival) in rows {
            sqlx::query(insert)
                .bind(key)
                .bind(id)
                .bind(arrival)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        v1.run(&pool).await.unwrap();
        for (key, id, arrival) in rows {
            sqlx::query(insert)
                .bind(key)
                .bind(id)
                .bind(arrival)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }

    let inbox = TestInbox::spawn(&db).await;
    assert_eq!(inbox.receipts().await, 2, "both receipts kept");
    let event = finished("APP_F", "p1", "p1-t1", "u1");
    let (s, a) = inbox
        .send(
            "flowhook",
            &event,
            FLOWHOOK_NEW,
            &[("X-Flowhook-Event-Id", "evt_9")],
        )
        .await;
    assert_eq!((s, a["status"].as_str()), (200, Some("duplicate")), "{a}");
    inbox.stop().await;
}

mod carried_over {
    use super::*;
    on_both_backends!(receipts_from_before_the_replay_keys_are_carried_over);
}
