//! One HTTP exchange with a receiver: the prepared request out, what came back in, classified for
//! the retry policy and the log. Used by the dispatcher and by test fire, so both send exactly
//! the same way.
//!
//! Error kinds:
//! - `status`: the receiver answered, not 2xx.
//! - `timeout`, `connect`, `dns`, `tls`: the receiver (or the way to it) did not answer. The
//!   error says so in words (`connection refused`, `timed out after 2000 ms`, `DNS: no such
//!   host h`, `TLS: …`), found in the error's source chain ([`describe`]).
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
    builder(egress).build().expect("an HTTP client")
}

/// The receiver check's client ([`super::check`]): the same as [`client`], and each answer of
/// an https receiver carries its certificate ([`Exchange::peer_certificate`]), for its expiry.
pub fn check_client(egress: &EgressPolicy) -> reqwest::Client {
    builder(egress)
        .tls_info(true)
        .build()
        .expect("an HTTP client")
}

fn builder(egress: &EgressPolicy) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver::new(egress)))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    match &egress.proxy {
        None => builder.no_proxy(),
        Some(proxy) => {
            builder.proxy(reqwest::Proxy::all(proxy.0.clone()).expect("a validated proxy URL"))
        }
    }
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
    /// An https receiver's certificate (DER), when the client keeps it ([`check_client`]).
    pub peer_certificate: Option<Vec<u8>>,
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
        peer_certificate: None,
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
            let (kind, why) = if e.is_builder() {
                ("request", error_chain(&e))
            } else {
                describe(&e, e.is_timeout(), connector.timeout_ms, &prepared.url)
            };
            return failed(kind, why);
        }
    };
    let status = resp.status();
    let peer_certificate = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|tls| tls.peer_certificate())
        .map(<[u8]>::to_vec);
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
        peer_certificate,
    }
}

/// A failed exchange as an operator reads it — `connection refused`, `timed out after 2000 ms`,
/// `DNS: no such host h.example`, `TLS: invalid peer certificate: UnknownIssuer` — from the
/// error's source chain, with its kind. Never the HTTP client's "error sending request for url
/// (…)": that says nothing, and quotes the URL (secrets are scrubbed by the caller either way).
fn describe(
    e: &(dyn std::error::Error + 'static),
    timed_out: bool,
    timeout_ms: u64,
    url: &str,
) -> (&'static str, String) {
    use std::io::ErrorKind as K;
    let mut chain: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        if chain.len() >= 32 {
            break; // bounded, whatever the chain
        }
        chain.push(c);
        cause = c.source();
    }
    let innermost = chain.last().map(|c| c.to_string()).unwrap_or_default();
    let io_kind = chain
        .iter()
        .rev()
        .find_map(|c| c.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
    let text = chain
        .iter()
        .map(|c| c.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join(": ");
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    if timed_out || io_kind == Some(K::TimedOut) {
        return ("timeout", format!("timed out after {timeout_ms} ms"));
    }
    if text.contains("dns error") || text.contains("failed to lookup address") {
        let why = if text.contains("has no address") {
            format!("DNS: {host} has no address")
        } else if text.contains("not known")
            || text.contains("no such host")
            || text.contains("no address associated")
            || text.contains("nodename nor servname")
        {
            format!("DNS: no such host {host}")
        } else {
            format!("DNS: {host}: {innermost}")
        };
        return ("dns", why);
    }
    match io_kind {
        Some(K::ConnectionRefused) => return ("connect", "connection refused".into()),
        Some(K::ConnectionReset) => return ("connect", "connection reset by the receiver".into()),
        Some(K::ConnectionAborted) => return ("connect", "connection aborted".into()),
        Some(K::AddrNotAvailable) => return ("connect", "address not available".into()),
        _ => {}
    }
    let tls = url.starts_with("https:")
        && (io_kind == Some(K::InvalidData)
            || ["tls", "certificate", "handshake", "alert"]
                .iter()
                .any(|w| text.contains(w)));
    if tls {
        return ("tls", format!("TLS: {innermost}"));
    }
    if text.contains("unreachable") {
        return ("connect", format!("unreachable: {innermost}"));
    }
    if text.contains("connection closed") || text.contains("incomplete message") {
        return (
            "other",
            "the receiver closed the connection before answering".into(),
        );
    }
    // Something else: the causes without the client's own wrapper.
    let kind = if chain
        .iter()
        .any(|c| c.to_string().to_lowercase().contains("connect"))
    {
        "connect"
    } else {
        "other"
    };
    let causes: Vec<String> = chain.iter().skip(1).map(|c| c.to_string()).collect();
    let why = if causes.is_empty() {
        innermost
    } else {
        causes.join(": ")
    };
    (kind, why)
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

    /// An error wrapping another, as the HTTP client's layers do.
    #[derive(Debug)]
    struct Wrap(
        &'static str,
        Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    );
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static))
        }
    }
    fn client_error(inner: Box<dyn std::error::Error + Send + Sync>) -> Wrap {
        Wrap(
            "error sending request for url (http://h/x?key=s)",
            Some(Box::new(Wrap("client error (Connect)", Some(inner)))),
        )
    }

    /// Issue 18 item 13: the log says what happened in words, from the source chain.
    #[test]
    fn failures_are_described_from_the_source_chain() {
        let io = |k: std::io::ErrorKind, m: &str| -> Box<dyn std::error::Error + Send + Sync> {
            Box::new(std::io::Error::new(k, m.to_owned()))
        };
        let cases: Vec<(Wrap, &str, (&str, &str))> = vec![
            (
                client_error(Box::new(Wrap(
                    "tcp connect error",
                    Some(io(
                        std::io::ErrorKind::ConnectionRefused,
                        "Connection refused",
                    )),
                ))),
                "http://h/x",
                ("connect", "connection refused"),
            ),
            (
                client_error(Box::new(Wrap(
                    "dns error",
                    Some(io(
                        std::io::ErrorKind::Other,
                        "failed to lookup address information: Name or service not known",
                    )),
                ))),
                "http://nohost.invalid/x",
                ("dns", "DNS: no such host nohost.invalid"),
            ),
            (
                client_error(io(
                    std::io::ErrorKind::InvalidData,
                    "invalid peer certificate: UnknownIssuer",
                )),
                "https://h/x",
                ("tls", "TLS: invalid peer certificate: UnknownIssuer"),
            ),
            (
                client_error(io(std::io::ErrorKind::TimedOut, "operation timed out")),
                "http://h/x",
                ("timeout", "timed out after 2000 ms"),
            ),
        ];
        for (e, url, (kind, why)) in cases {
            let got = describe(&e, false, 2000, url);
            assert_eq!(got, (kind, why.to_owned()), "{e:?}");
            assert!(!got.1.contains("error sending request"));
        }
        let e = Wrap("error sending request for url (http://h/)", None);
        assert_eq!(
            describe(&e, true, 500, "http://h/"),
            ("timeout", "timed out after 500 ms".to_owned())
        );
    }

    /// Against real sockets: a closed port says `connection refused`, a listener that never
    /// answers `timed out after …`.
    #[tokio::test]
    async fn refused_and_timed_out_say_so() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let open = EgressPolicy::default();
        let ex = exchange(
            &client(&open),
            &open,
            &connector(&url),
            &Auth::None,
            &prepared(&url, &[]),
        )
        .await;
        assert_eq!(ex.error_kind, Some("connect"), "{ex:?}");
        assert_eq!(ex.error.as_deref(), Some("connection refused"), "{ex:?}");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", silent.local_addr().unwrap());
        let mut slow = connector(&url);
        slow.timeout_ms = 200;
        let ex = exchange(
            &client(&open),
            &open,
            &slow,
            &Auth::None,
            &prepared(&url, &[]),
        )
        .await;
        assert_eq!(ex.error_kind, Some("timeout"), "{ex:?}");
        assert_eq!(
            ex.error.as_deref(),
            Some("timed out after 200 ms"),
            "{ex:?}"
        );
        drop(silent);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abcdef".into(), 4), "abcd");
        assert_eq!(truncate("ab".into(), 4), "ab");
        assert_eq!(truncate("aé".into(), 2), "a", "é is two bytes");
    }
}
