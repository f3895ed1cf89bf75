//! Test harness shared by the inbox's test binaries: a fresh database per test (the test kit's
//! [`TestDb`]: a SQLite file, or a new PostgreSQL database when `FLOWHOOK_TEST_POSTGRES` names a
//! server), the real application on 127.0.0.1:0, and signed callback bodies built with
//! `flowhook-sign`.
#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;

use flowhook_inbox::config::{Config, Source, Token, Tokens};
use flowhook_inbox::store::Store;
use flowhook_inbox::Application;
use flowhook_sign::event::{CcRecord, InstanceDeleted, TaskEnded, TaskEvent, TaskRecord};
use flowhook_sign::wire::{encode, BodyEncoding};

use flowhook_testkit::Serving;
pub use flowhook_testkit::TestDb;

/// Runs one async check on SQLite and, when enabled, on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($check:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            $check(common::TestDb::sqlite().await).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            match common::TestDb::postgres().await {
                Some(db) => $check(db).await,
                None => eprintln!(
                    "not run: set {} to run this on PostgreSQL",
                    flowhook_testkit::POSTGRES_ENV
                ),
            }
        }
    };
}

pub const YIDA_TOKEN: &str = "YIDA-TOKEN-0123456789";
pub const FLOWHOOK_NEW: &str = "FLOWHOOK-NEW-TOKEN-abcdef";
pub const FLOWHOOK_OLD: &str = "FLOWHOOK-OLD-TOKEN-uvwxyz";

/// Two sources: `yida` (APP_Y) and `flowhook` (APP_F, two tokens during a rotation).
pub fn sources() -> Vec<Source> {
    vec![
        Source {
            name: "yida".into(),
            apps: BTreeMap::from([("APP_Y".into(), Tokens::One(Token(YIDA_TOKEN.into())))]),
        },
        Source {
            name: "flowhook".into(),
            apps: BTreeMap::from([(
                "APP_F".into(),
                Tokens::Many(vec![Token(FLOWHOOK_NEW.into()), Token(FLOWHOOK_OLD.into())]),
            )]),
        },
    ]
}

pub struct TestInbox {
    pub addr: SocketAddr,
    pub store: Store,
    pub client: reqwest::Client,
    server: Serving<anyhow::Error>,
}

impl TestInbox {
    pub async fn spawn(db: &TestDb) -> Self {
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = db.url.clone();
        config.database_max_connections = 4;
        config.sources = sources();
        config.validate().expect("a valid test configuration");
        let app = Application::build(config).await.expect("the inbox builds");
        let addr = app.local_addr();
        let store = app.store().clone();
        let server = Serving::spawn(|shutdown| app.run_until_stopped(shutdown));
        Self {
            addr,
            store,
            client: reqwest::Client::new(),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts a body; returns the status and the JSON answer.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Sends `event` signed with `token`, form-encoded, to `source`'s action of its kind.
    pub async fn send(
        &self,
        source: &str,
        event: &TaskEvent,
        token: &str,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let body = encode(&event.to_signed_params(now_ms(), token), BodyEncoding::Form);
        self.post(
            &format!("/callbacks/{source}/{}", event.kind().short_name()),
            BodyEncoding::Form.content_type(),
            body,
            headers,
        )
        .await
    }

    /// Every id of one user's list, following the cursor `limit` at a time.
    pub async fn ids(&self, user: &str, list: &str, limit: u32) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("/users/{user}/tasks?list={list}&limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", urlencode(c)));
            }
            let page: serde_json::Value = self
                .client
                .get(self.url(&url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in page["items"].as_array().expect("items") {
                out.push(item["id"].as_str().unwrap().to_owned());
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    /// How many events are stored (receipts).
    pub async fn receipts(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM receipts";
        match &self.store {
            Store::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Store::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    pub async fn stop(mut self) {
        self.server.stop().await;
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A `task.created` of app `app`, instance `inst`, task `task` for `user`, started by `by`.
pub fn created(app: &str, inst: &str, task: &str, user: &str, by: &str) -> TaskEvent {
    TaskEvent::Created(record(app, inst, Some(task), user, by))
}

pub fn record(app: &str, inst: &str, task: Option<&str>, user: &str, by: &str) -> TaskRecord {
    TaskRecord {
        task_id: task.map(str::to_owned),
        corp_id: Some("corp".into()),
        app_type: app.into(),
        actioner_id: Some(user.into()),
        actioner_name: Some(format!("User {user}")),
        activity_name: Some("Approval".into()),
        form_instance_id: Some(format!("FINST-{inst}")),
        process_instance_id: Some(inst.into()),
        process_code: Some("leave".into()),
        originator_id: Some(by.into()),
        originator_display_name: Some(format!("User {by}")),
        title: Some(format!("Request {inst}")),
        task_url: Some(format!("https://tasks.example/{inst}")),
        create_time: Some(now_ms()),
        data_type: Some("pinst".into()),
        ..Default::default()
    }
}

pub fn finished(app: &str, inst: &str, task: &str, by: &str) -> TaskEvent {
    TaskEvent::Finished(ended(app, inst, task, by))
}

pub fn cancelled(app: &str, inst: &str, task: &str, by: &str) -> TaskEvent {
    TaskEvent::Cancelled(ended(app, inst, task, by))
}

fn ended(app: &str, inst: &str, task: &str, by: &str) -> TaskEnded {
    TaskEnded {
        app_type: app.into(),
        corp_id: "corp".into(),
        task_id: task.into(),
        actual_work_id: by.into(),
        form_inst_id: format!("FINST-{inst}"),
    }
}

pub fn cc(app: &str, inst: &str, cc_id: &str, user: &str, by: &str) -> TaskEvent {
    TaskEvent::Cc(CcRecord {
        cc_id: cc_id.into(),
        cc_user_id: user.into(),
        cc_user_name: Some(format!("User {user}")),
        record: record(app, inst, None, user, by),
    })
}

pub fn deleted(app: &str, inst: &str) -> TaskEvent {
    TaskEvent::Deleted(InstanceDeleted {
        app_type: app.into(),
        corp_id: "corp".into(),
        form_inst_id: format!("FINST-{inst}"),
    })
}
