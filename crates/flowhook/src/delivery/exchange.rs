//! One HTTP exchange with a receiver: the prepared request out, what came back in, classified
//! (`status`, `timeout`, `connect`, `dns`, `egress`, `other`) for the retry policy and the log.
//! Used by the dispatcher and by test fire, so both send exactly the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::egress::{EgressPolicy, PolicyResolver, REFUSED};
use super::request::Prepared;
use super::retry::Outcome;
use crate::integration::connectors::{Auth, Connector};

/// The HTTP client of deliveries: pooled, no redirects, resolving through the egress policy.
pub fn client(egress: &EgressPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver(Arc::new(egress.clone()))))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// What one exchange gave.
#[derive(Debug)]
pub struct Exchange {
    pub outcome: Outcome,
    pub status: Option<u16>,
    /// Response headers as a JSON array of pairs.
    pub headers: Option<String>,
    /// The first 4 KiB of the response body.
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
    // An IP-literal host never reaches the resolver: check it here.
    let literal_refusal = url::Url::parse(&connector.base_url)
        .ok()
        .and_then(|u| match u.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        })
        .and_then(|ip| egress.check(ip).err());
    let failed = |kind: &'static str, why: String, started: Instant| Exchange {
        outcome: Outcome::Failed { retry_after: None },
        status: None,
        headers: None,
        body: None,
        error_kind: Some(kind),
        error: Some(scrub(&why, auth)),
        duration: started.elapsed(),
    };
    let started = Instant::now();
    if let Some(why) = literal_refusal {
        return failed("egress", why, started);
    }
    let mut req = client
        .post(&prepared.url)
        .timeout(Duration::from_millis(connector.timeout_ms))
        .body(prepared.body.clone());
    for (k, v) in &prepared.headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
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
            return failed("egress", why, started);
        }
        Err(e) => {
            let kind = if e.is_timeout() {
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
            return failed(kind, e.to_string(), started);
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
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
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

/// Removes the connector's secrets from a text (an error message may quote the URL).
fn scrub(text: &str, auth: &Auth) -> String {
    auth.secrets()
        .into_iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |t, s| t.replace(s, "***"))
}
