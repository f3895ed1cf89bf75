//! The request of one attempt: the stored Yida parameters plus this attempt's `dateTime`,
//! signed with the app's systemToken; the Flowhook headers; the connector's authentication; the
//! Standard Webhooks headers when the organisation has them on. And its loggable twin, with
//! every credential masked.
//!
//! [`prepare`] is the one place a request is built: the dispatcher's deliveries, the test fire
//! and the receiver check's probes all start from it, so what a test fire shows is what a
//! delivery sends. It is pure: the caller reads the tokens and secrets.

use flowhook_sign::event::EventKind;
use flowhook_sign::webhooks::{self, WebhookSecret};
use flowhook_sign::wire::{self, BodyEncoding};
use flowhook_sign::yida;

use crate::integration::connectors::{
    basic_authorization, mask, url_credentials, Action, Auth, Connector, Encoding, KeyLocation,
    MASKED,
};

/// What one attempt sends.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
    pub body: String,
    /// The same, for the attempt log: credentials masked.
    pub logged_url: String,
    pub logged_headers: Vec<(String, String)>,
}

impl Prepared {
    /// The request as the delivery log keeps it (credentials masked).
    pub fn logged(self) -> crate::store::attempts::LoggedRequest {
        crate::store::attempts::LoggedRequest {
            url: self.logged_url,
            headers: self.logged_headers,
            params: self.params,
        }
    }
}

/// Everything about the event that the request carries.
pub struct EventInfo<'a> {
    pub event_id: &'a str,
    pub kind: EventKind,
    pub seq: i64,
    /// The stored parameters (all but `dateTime` and `sign`), in wire order.
    pub params: &'a [(String, String)],
    /// The same parameters as the attempt log shows them, when one holds a credential (a signed
    /// approval link, masked); `None`: [`params`](Self::params) as they are.
    pub logged_params: Option<&'a [(String, String)]>,
    pub backfill: bool,
}

/// What signs a request.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    /// The app's systemToken: Yida's MD5 `sign`.
    pub system_token: &'a str,
    /// The organisation's active Standard Webhooks secrets, newest first; empty when its
    /// strategy has Standard Webhooks off (no `webhook-*` headers).
    pub webhook_secrets: &'a [WebhookSecret],
}

/// Builds the request of attempt `attempt` at `now_ms`.
pub fn prepare(
    event: &EventInfo<'_>,
    attempt: u32,
    now_ms: i64,
    signing: Signing<'_>,
    connector: &Connector,
    auth: &Auth,
    action: &Action,
) -> Prepared {
    let mut params: Vec<(String, String)> = event.params.to_vec();
    params.push(("dateTime".into(), now_ms.to_string()));
    let sign =
        yida::sign(&params, signing.system_token).expect("stored parameter names are distinct");
    params.push(("sign".into(), sign));
    let encoding = match action.encoding {
        Encoding::Form => BodyEncoding::Form,
        Encoding::Json => BodyEncoding::Json,
    };
    let body = wire::encode(&params, encoding);
    if let Some(logged) = event.logged_params {
        // The log keeps this attempt's `dateTime` and `sign`, not the credential.
        let signed = params.split_off(params.len() - 2);
        params = logged.to_vec();
        params.extend(signed);
    }

    // Credentials in the base URL become the Basic authentication the HTTP client would make
    // of them, sent first as it would: so the request log shows that header (masked) and the URL
    // it records, or an error quotes, holds no password.
    let mut url_auth = None;
    let base = url::Url::parse(&connector.base_url).ok().map(|mut u| {
        if let Some((user, password)) = url_credentials(&u) {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            url_auth = Some((basic_authorization(&user, &password), user));
        }
        u
    });
    let key_in_query = match auth {
        Auth::ApiKey {
            location: KeyLocation::Query,
            name,
            value,
        } => Some((name.as_str(), value.as_str())),
        _ => None,
    };
    let (url, logged_url) = match &base {
        Some(base) => (
            join_url(base, &action.path, key_in_query),
            join_url(
                base,
                &action.path,
                key_in_query.map(|(name, value)| (name, mask(value))),
            ),
        ),
        // Validated at save, so never here; sent as it stands, the client refuses it.
        None => (connector.base_url.clone(), connector.base_url.clone()),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut logged_headers: Vec<(String, String)> = Vec::new();
    if let Some((authorization, user)) = url_auth {
        headers.push(("authorization".into(), authorization));
        logged_headers.push(("authorization".into(), format!("Basic <{user}:{MASKED}>")));
    }
    // Default header values may be credentials: masked in the log.
    for (k, v) in &connector.default_headers {
        headers.push((k.clone(), v.clone()));
        logged_headers.push((k.clone(), mask(v)));
    }
    let mut flowhook_headers: Vec<(String, String)> = vec![
        ("content-type".into(), encoding.content_type().into()),
        ("x-flowhook-event-id".into(), event.event_id.into()),
        (
            "x-flowhook-event-type".into(),
            event.kind.event_type().into(),
        ),
        ("x-flowhook-attempt".into(), attempt.to_string()),
        ("x-flowhook-seq".into(), event.seq.to_string()),
    ];
    if event.backfill {
        flowhook_headers.push(("x-flowhook-backfill".into(), "true".into()));
    }
    headers.extend(flowhook_headers.iter().cloned());
    logged_headers.extend(flowhook_headers);
    match auth {
        Auth::None => {}
        Auth::Basic { username, password } => {
            headers.push((
                "authorization".into(),
                basic_authorization(username, password),
            ));
            logged_headers.push((
                "authorization".into(),
                format!("Basic <{username}:{}>", mask(password)),
            ));
        }
        Auth::Bearer { token } => {
            headers.push(("authorization".into(), format!("Bearer {token}")));
            logged_headers.push(("authorization".into(), format!("Bearer {}", mask(token))));
        }
        Auth::ApiKey {
            location: KeyLocation::Header,
            name,
            value,
        } => {
            headers.push((name.to_lowercase(), value.clone()));
            logged_headers.push((name.to_lowercase(), mask(value)));
        }
        // In the URL, joined above.
        Auth::ApiKey {
            location: KeyLocation::Query,
            ..
        } => {}
    }
    // Standard Webhooks: signed over the exact body sent, the event id as the message id (stable
    // across retries). The signature is shown in the log: it is no credential.
    if !signing.webhook_secrets.is_empty() {
        let ts = now_ms / 1000;
        let signature = webhooks::signature_header(
            signing.webhook_secrets,
            event.event_id,
            ts,
            body.as_bytes(),
        );
        for (k, v) in [
            (webhooks::HEADER_ID, event.event_id.to_owned()),
            (webhooks::HEADER_TIMESTAMP, ts.to_string()),
            (webhooks::HEADER_SIGNATURE, signature),
        ] {
            headers.push((k.into(), v.clone()));
            logged_headers.push((k.into(), v));
        }
    }
    Prepared {
        url,
        headers,
        params,
        body,
        logged_url,
        logged_headers,
    }
}

/// The URL of an action: the connector's base URL and the action's path joined as paths (one
/// `/` between them, whatever slashes either side has), their queries merged (the base's, then
/// the action's, then the API-key parameter when it travels in the query), percent-encoded
/// parts kept as written. A fragment is never sent (a base URL with one is refused at save).
pub fn join_url<V: AsRef<str>>(
    base: &url::Url,
    action_path: &str,
    query_key: Option<(&str, V)>,
) -> String {
    let (path, action_query) = match action_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (action_path, None),
    };
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    let action_query = action_query.map(|q| q.split_once('#').map_or(q, |(q, _)| q));
    let mut url = base.clone();
    url.set_fragment(None);
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let key = query_key.map(|(name, value)| format!("{}={}", encode(name), encode(value.as_ref())));
    let parts: Vec<&str> = [base.query(), action_query, key.as_deref()]
        .into_iter()
        .flatten()
        .filter(|q| !q.is_empty())
        .collect();
    let query = parts.join("&");
    url.set_query((!query.is_empty()).then_some(query.as_str()));
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn yida_only(system_token: &str) -> Signing<'_> {
        Signing {
            system_token,
            webhook_secrets: &[],
        }
    }

    #[test]
    fn signed_with_headers_and_masked_for_the_log() {
        let connector = Connector {
            id: "con_1".into(),
            corp_id: "c".into(),
            name: "n".into(),
            base_url: "http://127.0.0.1:9/base/".into(),
            auth: Auth::None,
            default_headers: BTreeMap::from([("x-tenant".into(), "t1".into())]),
            timeout_ms: 1000,
            max_concurrency: 8,
            created_at: 0,
            paused_at: None,
            paused_reason: None,
        };
        let action = Action {
            id: "act_1".into(),
            corp_id: "c".into(),
            connector_id: "con_1".into(),
            name: "finished".into(),
            method: "POST".into(),
            path: "/finished".into(),
            encoding: Encoding::Form,
            created_at: 0,
        };
        let params: Vec<(String, String)> = [
            ("appType", "APP"),
            ("corpId", "c"),
            ("taskId", "t"),
            ("actualWorkId", "u"),
            ("formInstId", "f"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let event = EventInfo {
            event_id: "evt_1",
            kind: EventKind::Finished,
            seq: 3,
            params: &params,
            logged_params: None,
            backfill: true,
        };
        let auth = Auth::ApiKey {
            location: KeyLocation::Query,
            name: "key".into(),
            value: "supersecretvalue".into(),
        };
        let p = prepare(
            &event,
            2,
            1_700_000_000_000,
            yida_only("TOKEN"),
            &connector,
            &auth,
            &action,
        );
        assert_eq!(
            p.url,
            "http://127.0.0.1:9/base/finished?key=supersecretvalue"
        );
        assert_eq!(p.logged_url, "http://127.0.0.1:9/base/finished?key=***");
        assert_eq!(yida::verify(&p.params, "TOKEN"), Ok(()));
        let h = |name: &str| {
            p.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("x-flowhook-attempt"), Some("2"));
        assert_eq!(h("x-flowhook-seq"), Some("3"));
        assert_eq!(h("x-flowhook-backfill"), Some("true"));
        assert_eq!(h("x-tenant"), Some("t1"));
        let bearer = Auth::Bearer {
            token: "tok-0123456789".into(),
        };
        let p = prepare(
            &event,
            1,
            1,
            yida_only("TOKEN"),
            &connector,
            &bearer,
            &action,
        );
        assert!(p
            .headers
            .contains(&("authorization".into(), "Bearer tok-0123456789".into())));
        assert!(!format!("{:?}", p.logged_headers).contains("tok-0123456789"));
    }

    #[test]
    fn standard_webhooks_headers_sign_the_body_sent_and_the_log_shows_the_masked_params() {
        let connector = Connector {
            id: "con_1".into(),
            corp_id: "c".into(),
            name: "n".into(),
            base_url: "http://127.0.0.1:9/".into(),
            auth: Auth::None,
            default_headers: BTreeMap::new(),
            timeout_ms: 1000,
            max_concurrency: 8,
            created_at: 0,
            paused_at: None,
            paused_reason: None,
        };
        let action = Action {
            id: "act_1".into(),
            corp_id: "c".into(),
            connector_id: "con_1".into(),
            name: "created".into(),
            method: "POST".into(),
            path: "/created".into(),
            encoding: Encoding::Json,
            created_at: 0,
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let sent = [pair("appType", "APP"), pair("task", "link?s=SIGNED")];
        let masked = [pair("appType", "APP"), pair("task", "link?s=***")];
        let event = EventInfo {
            event_id: "evt_1",
            kind: EventKind::Created,
            seq: 1,
            params: &sent,
            logged_params: Some(&masked),
            backfill: false,
        };
        let old = WebhookSecret::from_bytes([1u8; 24]).unwrap();
        let new = WebhookSecret::from_bytes([2u8; 24]).unwrap();
        let secrets = [new.clone(), old.clone()];
        let now = 1_700_000_000_123;
        let signing = Signing {
            system_token: "TOKEN",
            webhook_secrets: &secrets,
        };
        let p = prepare(&event, 1, now, signing, &connector, &Auth::None, &action);

        let names: Vec<&str> = p.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names[names.len() - 3..],
            [
                webhooks::HEADER_ID,
                webhooks::HEADER_TIMESTAMP,
                webhooks::HEADER_SIGNATURE
            ],
            "after the Flowhook headers"
        );
        assert_eq!(p.logged_headers, p.headers, "no credential among them");
        let h = |name: &str| {
            p.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h(webhooks::HEADER_ID), Some("evt_1"));
        assert_eq!(h(webhooks::HEADER_TIMESTAMP), Some("1700000000"));
        for secret in [&old, &new] {
            assert_eq!(
                webhooks::verify(
                    std::slice::from_ref(secret),
                    h,
                    p.body.as_bytes(),
                    now / 1000,
                    webhooks::DEFAULT_TOLERANCE
                ),
                Ok(()),
                "each active secret verifies"
            );
        }

        assert!(p.body.contains("SIGNED"), "the body carries the real link");
        let logged: Vec<&str> = p.params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(logged, ["appType", "task", "dateTime", "sign"]);
        assert_eq!(p.params[1].1, "link?s=***");
        let log = format!("{} {:?} {:?}", p.logged_url, p.logged_headers, p.params);
        assert!(!log.contains("SIGNED"), "{log}");
        let mut signed = sent.to_vec();
        signed.extend(p.params[2..].iter().cloned());
        assert_eq!(yida::verify(&signed, "TOKEN"), Ok(()), "signed as sent");

        let plain = prepare(
            &event,
            1,
            now,
            yida_only("TOKEN"),
            &connector,
            &Auth::None,
            &action,
        );
        assert!(
            !plain.headers.iter().any(|(k, _)| k.starts_with("webhook-")),
            "no secrets: Standard Webhooks off"
        );
    }

    #[test]
    fn credentials_of_the_base_url_become_basic_auth_and_are_masked_for_the_log() {
        let connector = Connector {
            id: "con_1".into(),
            corp_id: "c".into(),
            name: "n".into(),
            base_url: "http://ops:s3cret%21pw@127.0.0.1:9/base".into(),
            auth: Auth::None,
            default_headers: BTreeMap::from([("x-api-token".into(), "hdr-secret-1".into())]),
            timeout_ms: 1000,
            max_concurrency: 8,
            created_at: 0,
            paused_at: None,
            paused_reason: None,
        };
        let action = Action {
            id: "act_1".into(),
            corp_id: "c".into(),
            connector_id: "con_1".into(),
            name: "finished".into(),
            method: "POST".into(),
            path: "/finished".into(),
            encoding: Encoding::Json,
            created_at: 0,
        };
        let event = EventInfo {
            event_id: "evt_1",
            kind: EventKind::Finished,
            seq: 1,
            params: &[],
            logged_params: None,
            backfill: false,
        };
        let p = prepare(
            &event,
            1,
            1,
            yida_only("TOKEN"),
            &connector,
            &Auth::None,
            &action,
        );
        assert_eq!(p.url, "http://127.0.0.1:9/base/finished");
        assert_eq!(p.logged_url, p.url);
        assert_eq!(
            p.headers[0],
            (
                "authorization".into(),
                basic_authorization("ops", "s3cret!pw")
            )
        );
        assert!(p
            .headers
            .contains(&("x-api-token".into(), "hdr-secret-1".into())));
        let logged = format!("{:?}", p.logged_headers);
        assert!(logged.contains("Basic <ops:***>"), "{logged}");
        assert!(logged.contains("(\"x-api-token\", \"***\")"), "{logged}");
        for secret in [
            "s3cret",
            "hdr-secret",
            &basic_authorization("ops", "s3cret!pw")[6..],
        ] {
            assert!(!logged.contains(secret), "{secret} in {logged}");
        }
    }
}

#[cfg(test)]
mod join_tests {
    use super::join_url;

    /// (base URL, action path, API key in the query, expected URL)
    type Case = (
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
        &'static str,
    );

    #[test]
    fn base_url_and_action_path_join_as_paths_with_queries_merged() {
        let table: &[Case] = &[
            ("http://h", "/created", None, "http://h/created"),
            ("http://h/", "/created", None, "http://h/created"),
            ("http://h/base", "/created", None, "http://h/base/created"),
            ("http://h/base/", "/created", None, "http://h/base/created"),
            ("http://h/base/", "//created", None, "http://h/base/created"),
            ("http://h/base", "/", None, "http://h/base/"),
            (
                "http://h/akq?fixed=1",
                "/created",
                Some(("api_key", "k")),
                "http://h/akq/created?fixed=1&api_key=k",
            ),
            (
                "http://h/akq/?fixed=1",
                "/created?kind=c",
                None,
                "http://h/akq/created?fixed=1&kind=c",
            ),
            (
                "http://h/akq?fixed=1",
                "/created?kind=c",
                Some(("api key", "a&b=c d")),
                "http://h/akq/created?fixed=1&kind=c&api+key=a%26b%3Dc+d",
            ),
            (
                "http://h:8080/a%2Fb/",
                "/c%20d?x=%26y",
                None,
                "http://h:8080/a%2Fb/c%20d?x=%26y",
            ),
            ("https://h/", "/created?", None, "https://h/created"),
            (
                "http://h/base",
                "/created",
                Some(("key", "v")),
                "http://h/base/created?key=v",
            ),
        ];
        for (base, path, key, expected) in table {
            let base_url = url::Url::parse(base).unwrap();
            assert_eq!(
                join_url(&base_url, path, *key),
                *expected,
                "{base} + {path} + {key:?}"
            );
        }
    }
}
