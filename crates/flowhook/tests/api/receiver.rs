//! A real HTTP receiver on 127.0.0.1 for delivery tests: it records every request and answers
//! with the status the test's rule chooses.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use flowhook_testkit::eventually;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered.
    pub answered: u16,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }
}

type Rule = dyn Fn(&Captured, &[Captured]) -> u16 + Send + Sync;
type DelayRule = dyn Fn(&Captured) -> std::time::Duration + Send + Sync;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    log: Arc<Mutex<Vec<Captured>>>,
    rule: Arc<Mutex<Arc<Rule>>>,
    /// How long each answer takes.
    delay: Arc<Mutex<Arc<DelayRule>>>,
}

impl Receiver {
    /// Starts a receiver answering 200 to everything.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            log: Arc::default(),
            rule: Arc::new(Mutex::new(Arc::new(|_: &Captured, _: &[Captured]| 200))),
            delay: Arc::new(Mutex::new(Arc::new(|_: &Captured| {
                std::time::Duration::ZERO
            }))),
        };
        let app = Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    /// Sets the status rule: (this request, earlier requests) → status.
    pub fn answer(&self, rule: impl Fn(&Captured, &[Captured]) -> u16 + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Arc::new(rule);
    }

    /// Makes each answer take `delay` (a slow receiver: its requests stay in flight).
    pub fn delay(&self, delay: std::time::Duration) {
        self.delay_when(move |_| delay);
    }

    /// Makes each answer take what `rule` says for it (one endpoint of several slow).
    pub fn delay_when(
        &self,
        rule: impl Fn(&Captured) -> std::time::Duration + Send + Sync + 'static,
    ) {
        *self.delay.lock().unwrap() = Arc::new(rule);
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.log.lock().unwrap().clone()
    }

    /// Requests answered 2xx.
    pub fn accepted(&self) -> Vec<Captured> {
        self.requests()
            .into_iter()
            .filter(|c| (200..300).contains(&c.answered))
            .collect()
    }

    /// Waits (at most `secs`) until `done` holds for the accepted requests.
    pub async fn wait_until(&self, secs: u64, what: &str, done: impl Fn(&[Captured]) -> bool) {
        self.wait(secs, what, |r| done(&r.accepted())).await
    }

    /// Waits (at most `secs`) until `done` holds for every request received, whatever it was
    /// answered.
    pub async fn wait_for_requests(
        &self,
        secs: u64,
        what: &str,
        done: impl Fn(&[Captured]) -> bool,
    ) {
        self.wait(secs, what, |r| done(&r.requests())).await
    }

    async fn wait(&self, secs: u64, what: &str, done: impl Fn(&Receiver) -> bool) {
        let wait = std::time::Duration::from_secs(secs);
        eventually(what, wait, async || {
            if done(self) {
                Ok(())
            } else {
                Err(format!(
                    "received {} requests ({} accepted)",
                    self.requests().len(),
                    self.accepted().len()
                ))
            }
        })
        .await
    }
}

async fn handle(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut c = Captured {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        answered: 0,
    };
    let delay = r.delay.lock().unwrap().clone();
    tokio::time::sleep(delay(&c)).await;
    let rule = r.rule.lock().unwrap().clone();
    let mut log = r.log.lock().unwrap();
    c.answered = rule(&c, &log);
    let status = c.answered;
    log.push(c);
    StatusCode::from_u16(status).unwrap()
}
