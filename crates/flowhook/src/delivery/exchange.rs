//! One HTTP exchange with a receiver: the prepared request out, what came back in, classified for
//! the retry policy and the log. Used by the dispatcher and by test fire, so both send exactly
//! the same way.
//!
//! Error kinds:
//! - `status`: the receiver answered, not 2xx.
//! - `timeout`, `connect`, `dns`: the receiver (or the way to it) did not answer.
//! - `egress`: refused by the egress policy before anything was sent ([`super::egress`]).
//! - `request`: the request could not be built (an invalid header name or value, a URL the
//!   client cannot use) — nothing was sent.
//! - `other`: anything else the HTTP client reports.
//!
//! `egress` and `request` never left this machine: they are not the endpoint's failure.
//!
//! What is kept of an answer is bounded: the status, the headers and the first
//! [`KEPT_BODY_BYTES`] of the body. The rest of the body is never read: the response is dropped
//! and its connection closed, so an endless answer costs nothing. Whatever is kept, and every
//! error text, has the connector's secrets scrubbed ([`Secrets`]): a receiver echoing our
//! headers must not put a credential into the delivery log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::egress::{EgressPolicy, PolicyResolver, TargetError, REFUSED};
use super::request::Prepared;
use super::retry::Outcome;
use crate::integration::connectors::{Auth, Connector, Secrets};

/// How much of a response body is kept for the log.
pub const KEPT_BODY_BYTES: usize = 4096;

/// The HTTP client of deliveries: pooled, no redirects, resolving through the egress policy, and
/// never through a proxy of the environment: only through the one the policy names.
pub fn client(egress: &EgressPolicy) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver::new(egress)))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    let builder = match &egress.proxy {
        None => builder.no_proxy(),
        Some(proxy) => {
            builder.proxy(reqwest::Proxy::all(proxy.0.clone()).expect("a validated proxy URL"))
        }
    };
    builder.build().expect("an HTTP client")
}

/// What one exchange gave.
#[derive(Debug)]
pub struct Exchange {
    pub outcome: Outcome,
    pub status: Option<u16>,
    /// Response headers as a JSON array of pairs, secrets scrubbed.
    pub headers: Option<String>,
    /// The first [`KEPT_BODY_BYTES`] of the response body, secrets scrubbed.
    pub body: Option<String>,
    pub error_kind: Option<&'static str>,
    /// Why it failed, with the connector's secrets scrubbed.
    pub error: Option<String>,
    pub duration: Duration,
}

/// Sends `prepared` to `connector`'s endpoint.
pub async fn exchange(
    client: &reqwest::Client,
    egress: &EgressPolicy,
    connector: &Connector,
    auth: &Auth,
    prepared: &Prepared,
) -> Exchange {
    let secrets = Secrets::of(connector, auth);
    let started = Instant::now();
    let timeout = Duration::from_millis(connector.timeout_ms);
    let failed = |kind: &'static str, why: String| Exchange {
        outcome: Outcome::Failed { retry_after: None },
        status: None,
        headers: None,
        body: None,
        error_kind: Some(kind),
        error: Some(secrets.scrub(&why)),
        duration: started.elapsed(),
    };
    let target = match url::Url::parse(&prepared.url) {
        Ok(u) => u,
        Err(e) => return failed("request", format!("invalid URL: {e}")),
    };
    // An IP literal never reaches the resolver, and through a proxy no target name does: the
    // policy is checked here for those.
    match tokio::time::timeout(timeout, egress.check_target(&target)).await {
        Ok(Ok(())) => {}
        Ok(Err(TargetError::Refused(why))) => return failed("egress", why),
        Ok(Err(TargetError::Unresolved(why))) => return failed("dns", why),
        Err(_) => return failed("timeout", "resolving the target timed out".into()),
    }
    let mut req = client
        .post(target)
        .timeout(timeout)
        .body(prepared.body.clone());
    for (k, v) in &prepared.headers {
        req = req.header(k, v);
    }
    let mut resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) if format!("{e:?}").contains(REFUSED) => {
            // The refusal is deep in the chain (client error → connect → resolver): record it.
            let mut why = e.to_string();
            let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            while let Some(c) = cause {
                if c.to_string().contains(REFUSED) {
                    why = c.to_string();
                }
                cause = c.source();
            }
            return failed("egress", why);
        }
        Err(e) => {
            let kind = if e.is_builder() {
                "request"
            } else if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                if format!("{e:?}").to_lowercase().contains("dns") {
                    "dns"
                } else {
                    "connect"
                }
            } else {
                "other"
            };
            return failed(kind, error_chain(&e));
        }
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                secrets.scrub(&String::from_utf8_lossy(v.as_bytes())),
            )
        })
        .collect();
    // Read what is kept, plus enough for a secret straddling the cut to be seen whole and
    // scrubbed; then stop. A read error (the timeout, a reset) keeps what came.
    let wanted = KEPT_BODY_BYTES + secrets.longest();
    let mut bytes: Vec<u8> = Vec::with_capacity(wanted.min(64 * 1024));
    while bytes.len() < wanted {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(wanted - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Dropped unread: hyper closes the connection rather than drain the rest.
    drop(resp);
    let body = truncate(
        secrets.scrub(&String::from_utf8_lossy(&bytes)),
        KEPT_BODY_BYTES,
    );
    let outcome = if status.is_success() {
        Outcome::Delivered
    } else if status.as_u16() == 410 {
        Outcome::Gone
    } else {
        let honour = matches!(status.as_u16(), 429 | 503);
        Outcome::Failed {
            retry_after: retry_after.filter(|_| honour),
        }
    };
    Exchange {
        outcome,
        status: Some(status.as_u16()),
        headers: Some(serde_json::to_string(&headers).unwrap_or_default()),
        body: Some(body),
        error_kind: (!status.is_success()).then_some("status"),
        error: (!status.is_success()).then(|| format!("HTTP {status}")),
        duration: started.elapsed(),
    }
}

/// An error with its causes (`a: b: c`): "builder error" alone does not say which header.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(url: &str, headers: &[(&str, &str)]) -> Prepared {
        Prepared {
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            params: vec![],
            body: String::new(),
            logged_url: url.into(),
            logged_headers: vec![],
        }
    }

    fn connector(base_url: &str) -> Connector {
        Connector {
            id: "con_1".into(),
            corp_id: "c".into(),
            name: "n".into(),
            base_url: base_url.into(),
            auth: Auth::None,
            default_headers: Default::default(),
            timeout_ms: 1000,
            max_concurrency: 8,
            created_at: 0,
            paused_at: None,
            paused_reason: None,
        }
    }

    /// Failures that never leave the machine have kinds of their own: `request` for a request
    /// the client cannot build (here a header name with a space and CR/LF), `egress` for a
    /// refused target; neither opens a connection.
    #[tokio::test]
    async fn failures_before_sending_are_classified_request_or_egress() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let open = EgressPolicy::default();
        let ex = exchange(
            &client(&open),
            &open,
            &connector(&url),
            &Auth::None,
            &prepared(&url, &[("bad header\r\n", "v")]),
        )
        .await;
        assert_eq!(ex.error_kind, Some("request"), "{ex:?}");
        assert!(ex.error.as_deref().unwrap().contains("header"), "{ex:?}");

        let closed = EgressPolicy {
            deny_private: true,
            ..Default::default()
        };
        let ex = exchange(
            &client(&closed),
            &closed,
            &connector(&url),
            &Auth::None,
            &prepared(&url, &[]),
        )
        .await;
        assert_eq!(ex.error_kind, Some("egress"), "{ex:?}");
        assert!(
            listener.accept().is_err(),
            "no connection was opened by either"
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abcdef".into(), 4), "abcd");
        assert_eq!(truncate("ab".into(), 4), "ab");
        assert_eq!(truncate("aé".into(), 2), "a", "é is two bytes");
    }
}
