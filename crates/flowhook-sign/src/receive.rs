//! The receiver's entry point: a raw callback request in, a verified typed event out.
//!
//! Order of checks: the body is decoded and the event's parameters are parsed first (a malformed
//! request is refused without touching any secret), then the app's tokens are looked up, then
//! the signature is checked, and only a correctly signed request has its `dateTime` judged, so a
//! forged request always reads as a bad signature. Every refusal names its reason and maps to an
//! HTTP status through [`ReceiveError::http_status`].

use std::collections::HashMap;
use std::time::Duration;

use crate::event::{EventKind, PayloadError, TaskEvent};
use crate::wire::{self, BodyEncoding, MalformedBody};
use crate::yida::{self, VerifyError};

/// The Flowhook headers (absent when the sender is Yida itself).
pub mod headers {
    /// Stable across retries: the receiver's idempotency key.
    pub const EVENT_ID: &str = "x-flowhook-event-id";
    pub const EVENT_TYPE: &str = "x-flowhook-event-type";
    pub const ATTEMPT: &str = "x-flowhook-attempt";
    /// The event's position within its process instance.
    pub const SEQ: &str = "x-flowhook-seq";
    /// `true` for events pushed by a backfill.
    pub const BACKFILL: &str = "x-flowhook-backfill";
}

/// Default allowed difference between the request's `dateTime` and the receiver's clock.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Where a receiver finds the systemTokens of an application (several during a rotation).
pub trait SystemTokens {
    /// The valid tokens of `app_type`; empty when the app is unknown.
    fn tokens(&self, app_type: &str) -> Vec<String>;
}

impl SystemTokens for HashMap<String, String> {
    fn tokens(&self, app_type: &str) -> Vec<String> {
        self.get(app_type).cloned().into_iter().collect()
    }
}

impl SystemTokens for HashMap<String, Vec<String>> {
    fn tokens(&self, app_type: &str) -> Vec<String> {
        self.get(app_type).cloned().unwrap_or_default()
    }
}

/// A request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// All headers, names in any case.
    pub headers: &'a [(&'a str, &'a str)],
}

impl RawRequest<'_> {
    /// A header by name, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// The Flowhook delivery metadata of a request, when the sender provided it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryMeta {
    pub event_id: Option<String>,
    pub attempt: Option<u32>,
    pub seq: Option<u64>,
    pub backfill: bool,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvent {
    pub event: TaskEvent,
    /// The request's `dateTime`, epoch milliseconds.
    pub date_time_ms: i64,
    pub meta: DeliveryMeta,
    /// Every parameter as received, `sign` included.
    pub params: Vec<(String, String)>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("unsupported content type `{0}`: send application/x-www-form-urlencoded or application/json")]
    UnsupportedContentType(String),
    #[error(transparent)]
    MalformedBody(#[from] MalformedBody),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("unknown application `{0}`")]
    UnknownApp(String),
    #[error("bad signature: {0}")]
    BadSignature(#[from] VerifyError),
    #[error("stale request: `dateTime` is {0} ms behind this clock")]
    Stale(i64),
    #[error("request from the future: `dateTime` is {0} ms ahead of this clock")]
    Future(i64),
}

impl ReceiveError {
    /// 401 for what fails authentication (unknown app, signature, replay window), 415 for the
    /// content type, 400 for the rest.
    pub fn http_status(&self) -> u16 {
        match self {
            ReceiveError::UnsupportedContentType(_) => 415,
            ReceiveError::MalformedBody(_) | ReceiveError::Payload(_) => 400,
            ReceiveError::UnknownApp(_)
            | ReceiveError::BadSignature(_)
            | ReceiveError::Stale(_)
            | ReceiveError::Future(_) => 401,
        }
    }

    /// A stable machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiveError::UnsupportedContentType(_) => "unsupported_content_type",
            ReceiveError::MalformedBody(_) => "malformed_body",
            ReceiveError::Payload(PayloadError::MissingParameter(_)) => "missing_parameter",
            ReceiveError::Payload(PayloadError::TaskNotJson(_)) => "task_not_json",
            ReceiveError::Payload(PayloadError::InvalidDateTime) => "invalid_date_time",
            ReceiveError::UnknownApp(_) => "unknown_app",
            ReceiveError::BadSignature(_) => "bad_signature",
            ReceiveError::Stale(_) => "stale_date_time",
            ReceiveError::Future(_) => "future_date_time",
        }
    }
}

/// Verifies callback requests of one source.
///
/// ```
/// use std::collections::HashMap;
/// use flowhook_sign::event::{EventKind, InstanceDeleted, TaskEvent};
/// use flowhook_sign::receive::{RawRequest, Verifier};
/// use flowhook_sign::wire::{encode, BodyEncoding};
///
/// let tokens = HashMap::from([("APP_X".to_string(), "TOKEN".to_string())]);
/// let event = TaskEvent::Deleted(InstanceDeleted {
///     app_type: "APP_X".into(), corp_id: "corp".into(), form_inst_id: "f1".into() });
/// let now = 1_700_000_000_000;
/// let body = encode(&event.to_signed_params(now, "TOKEN"), BodyEncoding::Form);
/// let request = RawRequest {
///     content_type: Some("application/x-www-form-urlencoded"), body: body.as_bytes(), headers: &[] };
/// let verified = Verifier::new(&tokens).verify(EventKind::Deleted, &request, now + 1_000).unwrap();
/// assert_eq!(verified.event, event);
/// ```
pub struct Verifier<'t, T: SystemTokens + ?Sized> {
    tokens: &'t T,
    max_skew: Duration,
}

impl<'t, T: SystemTokens + ?Sized> Verifier<'t, T> {
    pub fn new(tokens: &'t T) -> Self {
        Self {
            tokens,
            max_skew: DEFAULT_MAX_SKEW,
        }
    }

    /// How far `dateTime` may be from the receiver's clock, either way.
    pub fn max_skew(mut self, max_skew: Duration) -> Self {
        self.max_skew = max_skew;
        self
    }

    /// Verifies a `kind` request (the kind comes from the action it was sent to: `created` and
    /// `cc`, `finished` and `cancelled` have the same parameters). `now_ms`: epoch milliseconds.
    pub fn verify(
        &self,
        kind: EventKind,
        request: &RawRequest<'_>,
        now_ms: i64,
    ) -> Result<VerifiedEvent, ReceiveError> {
        let encoding = match request.content_type {
            None => BodyEncoding::Form, // Yida's default; a missing header is common
            Some(ct) => BodyEncoding::from_content_type(ct)
                .ok_or_else(|| ReceiveError::UnsupportedContentType(ct.to_owned()))?,
        };
        let params = wire::decode(request.body, encoding)?;
        let (event, date_time_ms) = TaskEvent::from_params(kind, &params)?;
        let tokens = self.tokens.tokens(event.app_type());
        if tokens.is_empty() {
            return Err(ReceiveError::UnknownApp(event.app_type().to_owned()));
        }
        yida::verify_any(&params, tokens.iter().map(String::as_str))?;
        let skew = i64::try_from(self.max_skew.as_millis()).unwrap_or(i64::MAX);
        let behind = now_ms.saturating_sub(date_time_ms);
        if behind > skew {
            return Err(ReceiveError::Stale(behind));
        }
        if -behind > skew {
            return Err(ReceiveError::Future(-behind));
        }
        let meta = DeliveryMeta {
            event_id: request.header(headers::EVENT_ID).map(str::to_owned),
            attempt: request
                .header(headers::ATTEMPT)
                .and_then(|v| v.parse().ok()),
            seq: request.header(headers::SEQ).and_then(|v| v.parse().ok()),
            backfill: request
                .header(headers::BACKFILL)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        };
        Ok(VerifiedEvent {
            event,
            date_time_ms,
            meta,
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{TaskEnded, TaskRecord};
    use crate::wire::encode;

    const NOW: i64 = 1_700_000_000_000;

    fn tokens() -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "APP_X".to_string(),
            vec!["NEW".to_string(), "OLD".to_string()],
        )])
    }

    fn finished() -> TaskEvent {
        TaskEvent::Finished(TaskEnded {
            app_type: "APP_X".into(),
            corp_id: "c".into(),
            task_id: "t1".into(),
            actual_work_id: "u1".into(),
            form_inst_id: "f1".into(),
        })
    }

    fn check(kind: EventKind, ct: Option<&str>, body: &str) -> Result<VerifiedEvent, ReceiveError> {
        let headers = [("X-Flowhook-Event-Id", "evt_1"), ("X-Flowhook-Seq", "7")];
        let req = RawRequest {
            content_type: ct,
            body: body.as_bytes(),
            headers: &headers,
        };
        Verifier::new(&tokens()).verify(kind, &req, NOW)
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn accepts_form_and_json_with_either_token_and_reads_the_headers() {
        for (token, enc) in [("NEW", BodyEncoding::Form), ("OLD", BodyEncoding::Json)] {
            let body = encode(&finished().to_signed_params(NOW - 1_000, token), enc);
            let v = check(EventKind::Finished, Some(enc.content_type()), &body).unwrap();
            assert_eq!(v.event, finished());
            assert_eq!(v.date_time_ms, NOW - 1_000);
            assert_eq!(v.meta.event_id.as_deref(), Some("evt_1"));
            assert_eq!(v.meta.seq, Some(7));
        }
    }

    #[test]
    fn each_refusal_has_its_reason_and_status() {
        let signed = |e: &TaskEvent, at: i64, tok: &str| {
            encode(&e.to_signed_params(at, tok), BodyEncoding::Form)
        };
        let good = signed(&finished(), NOW, "NEW");
        let cases: Vec<(Result<VerifiedEvent, ReceiveError>, &str, u16)> = vec![
            (
                check(EventKind::Finished, Some("text/plain"), &good),
                "unsupported_content_type",
                415,
            ),
            (
                check(EventKind::Finished, FORM, &good[..good.len() / 2]),
                "missing_parameter",
                400,
            ),
            (
                check(EventKind::Finished, FORM, &good.replace("sign=", "sign=0")),
                "bad_signature",
                401,
            ),
            (
                check(
                    EventKind::Finished,
                    FORM,
                    &signed(&finished(), NOW, "WRONG"),
                ),
                "bad_signature",
                401,
            ),
            (
                check(
                    EventKind::Finished,
                    FORM,
                    &signed(&finished(), NOW - 300_001, "NEW"),
                ),
                "stale_date_time",
                401,
            ),
            (
                check(
                    EventKind::Finished,
                    FORM,
                    &signed(&finished(), NOW + 300_001, "NEW"),
                ),
                "future_date_time",
                401,
            ),
            (
                check(EventKind::Finished, FORM, &good.replace("APP_X", "APP_Y")),
                "unknown_app",
                401,
            ),
            (
                check(EventKind::Created, FORM, "task=%7Bnot&dateTime=1"),
                "task_not_json",
                400,
            ),
            (
                check(EventKind::Finished, FORM, "a=%GG"),
                "malformed_body",
                400,
            ),
        ];
        for (i, (result, code, status)) in cases.into_iter().enumerate() {
            let err = result.expect_err(code);
            assert_eq!(
                (i, err.code(), err.http_status()),
                (i, code, status),
                "{err}"
            );
        }
        let created = TaskEvent::Created(TaskRecord {
            app_type: "APP_X".into(),
            ..Default::default()
        });
        // The kind comes from the action: a created body at the finished action is incomplete.
        let body = signed(&created, NOW, "NEW");
        assert!(check(EventKind::Created, FORM, &body).is_ok());
        assert_eq!(
            check(EventKind::Finished, FORM, &body).unwrap_err(),
            ReceiveError::Payload(PayloadError::MissingParameter("appType"))
        );
    }
}
