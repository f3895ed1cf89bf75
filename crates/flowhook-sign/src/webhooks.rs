//! The Standard Webhooks scheme (<https://www.standardwebhooks.com>), optional beside Yida's MD5.
//!
//! Headers `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`, the latter
//! a space-separated list of `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per active
//! secret so that a receiver holding either the old or the new secret verifies during a rotation.
//! Secrets are `whsec_<base64>`; their `Debug` output is redacted so they never reach a log.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header with the message id (stable across retries).
pub const HEADER_ID: &str = "webhook-id";
/// The header with the attempt's unix time in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header with one or more `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Default tolerance between the sender's and the receiver's clocks.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const SECRET_PREFIX: &str = "whsec_";

/// Problems with Standard Webhooks secrets or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("a webhook secret must be `whsec_` followed by base64 of at least 16 bytes")]
    InvalidSecret,
    #[error("header `{0}` is missing")]
    MissingHeader(&'static str),
    #[error("header `webhook-timestamp` is not a unix time in seconds")]
    InvalidTimestamp,
    #[error("the message is too old: its timestamp is {0} s behind this clock")]
    TimestampTooOld(i64),
    #[error("the message is from the future: its timestamp is {0} s ahead of this clock")]
    TimestampTooNew(i64),
    #[error("no `v1` signature matches any of the secrets")]
    NoMatchingSignature,
}

/// A signing secret. Cloneable, comparable, and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// A secret from raw key bytes (at least 16, as the specification recommends 24 to 64).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, WebhookError> {
        let bytes = bytes.into();
        if bytes.len() < 16 {
            return Err(WebhookError::InvalidSecret);
        }
        Ok(Self(bytes))
    }

    /// Parses `whsec_<base64>`.
    ///
    /// ```
    /// use flowhook_sign::webhooks::WebhookSecret;
    /// let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// assert_eq!(s.expose(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    /// assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let b64 = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(WebhookError::InvalidSecret)?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| WebhookError::InvalidSecret)?;
        Self::from_bytes(bytes)
    }

    /// The `whsec_…` text, for storing or showing once at creation. Call sites are easy to audit.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<base64 HMAC-SHA256("id.timestamp.body")>`.
    ///
    /// ```
    /// // The example of the Standard Webhooks specification.
    /// use flowhook_sign::webhooks::WebhookSecret;
    /// let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// let sig = s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
    /// assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /// ```
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(msg_id, timestamp, body)))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

/// The `webhook-signature` value for all active secrets (new and, during a grace period, old).
pub fn signature_header(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies a received message. `header` looks a header up by its lower-case name.
///
/// Accepts if any `v1` signature of the header matches any of `secrets` and the timestamp is
/// within `tolerance` of `now_unix`. Other signature versions are ignored, as the specification
/// asks.
pub fn verify<'h>(
    secrets: &[WebhookSecret],
    header: impl Fn(&str) -> Option<&'h str>,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let id = header(HEADER_ID).ok_or(WebhookError::MissingHeader(HEADER_ID))?;
    let ts_text = header(HEADER_TIMESTAMP).ok_or(WebhookError::MissingHeader(HEADER_TIMESTAMP))?;
    let signatures =
        header(HEADER_SIGNATURE).ok_or(WebhookError::MissingHeader(HEADER_SIGNATURE))?;
    let timestamp: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| WebhookError::InvalidTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let behind = now_unix.saturating_sub(timestamp);
    if behind > tolerance {
        return Err(WebhookError::TimestampTooOld(behind));
    }
    if -behind > tolerance {
        return Err(WebhookError::TimestampTooNew(-behind));
    }
    let given: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = secret.mac(id, timestamp, body);
        for g in &given {
            matched |= subtle::ConstantTimeEq::ct_eq(&expected[..], &g[..]);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(WebhookError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(n: u8) -> WebhookSecret {
        WebhookSecret::from_bytes(vec![n; 24]).unwrap()
    }

    fn lookup<'a>(h: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn rotation_verifies_with_old_or_new_secret() {
        let (old, new) = (secret(1), secret(2));
        let body = b"task=1";
        let sig = signature_header(&[new.clone(), old.clone()], "evt_1", 1_000, body);
        let h = [
            (HEADER_ID, "evt_1".to_string()),
            (HEADER_TIMESTAMP, "1000".to_string()),
            (HEADER_SIGNATURE, sig),
        ];
        for s in [&old, &new] {
            assert_eq!(
                verify(
                    std::slice::from_ref(s),
                    lookup(&h),
                    body,
                    1_010,
                    DEFAULT_TOLERANCE
                ),
                Ok(())
            );
        }
        assert_eq!(
            verify(&[secret(3)], lookup(&h), body, 1_010, DEFAULT_TOLERANCE),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&old),
                lookup(&h),
                b"task=2",
                1_010,
                DEFAULT_TOLERANCE
            ),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_outside_tolerance_are_refused() {
        let s = secret(7);
        let sig = s.sign("m", 1_000, b"");
        let h = [
            (HEADER_ID, "m".to_string()),
            (HEADER_TIMESTAMP, "1000".to_string()),
            (HEADER_SIGNATURE, sig),
        ];
        let ok = |now| {
            verify(
                std::slice::from_ref(&s),
                lookup(&h),
                b"",
                now,
                DEFAULT_TOLERANCE,
            )
        };
        assert_eq!(ok(1_300), Ok(()));
        assert_eq!(ok(1_301), Err(WebhookError::TimestampTooOld(301)));
        assert_eq!(ok(699), Err(WebhookError::TimestampTooNew(301)));
        let missing = [(HEADER_ID, "m".to_string())];
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                lookup(&missing),
                b"",
                1_000,
                DEFAULT_TOLERANCE
            ),
            Err(WebhookError::MissingHeader(HEADER_TIMESTAMP))
        );
    }

    #[test]
    fn secrets_are_validated_and_redacted() {
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(WebhookError::InvalidSecret)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_!!!"),
            Err(WebhookError::InvalidSecret)
        );
        let s = secret(9);
        assert_eq!(WebhookSecret::parse(&s.expose()).unwrap(), s);
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
    }
}
