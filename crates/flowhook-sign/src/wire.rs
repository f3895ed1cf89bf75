//! Request bodies: the parameter list as `application/x-www-form-urlencoded` (Yida's default) or
//! as one JSON object of strings, both ways.
//!
//! Decoding is strict: invalid percent-escapes, invalid UTF-8 and non-string JSON values are
//! errors, because a lossy decode would only resurface later as a puzzling signature mismatch.

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// How the parameters travel in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// `application/x-www-form-urlencoded; charset=UTF-8`
    Form,
    /// `application/json`: the same parameters as one JSON object of strings.
    Json,
}

impl BodyEncoding {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyEncoding::Form => "application/x-www-form-urlencoded; charset=UTF-8",
            BodyEncoding::Json => "application/json",
        }
    }

    /// From a `Content-Type` header value (parameters such as `charset` are ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next()?.trim();
        if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(BodyEncoding::Form)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(BodyEncoding::Json)
        } else {
            None
        }
    }
}

/// A body that is not a parameter list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed body: {0}")]
pub struct MalformedBody(pub String);

/// Characters left as they are by the WHATWG `application/x-www-form-urlencoded` serializer.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Encodes parameters in their given order.
///
/// ```
/// use flowhook_sign::wire::{encode, BodyEncoding};
/// let body = encode(&[("title", "张 红&co"), ("dateTime", "1")], BodyEncoding::Form);
/// assert_eq!(body, "title=%E5%BC%A0+%E7%BA%A2%26co&dateTime=1");
/// ```
pub fn encode<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)], encoding: BodyEncoding) -> String {
    match encoding {
        BodyEncoding::Form => params
            .iter()
            .map(|(k, v)| format!("{}={}", form_escape(k.as_ref()), form_escape(v.as_ref())))
            .collect::<Vec<_>>()
            .join("&"),
        BodyEncoding::Json => {
            let map: serde_json::Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), Value::from(v.as_ref())))
                .collect();
            Value::Object(map).to_string()
        }
    }
}

fn form_escape(s: &str) -> String {
    // Space becomes '+', everything else outside the safe set is %-escaped UTF-8.
    s.split(' ')
        .map(|part| utf8_percent_encode(part, FORM).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// Decodes a body into its parameters, in body order (duplicates kept, for the signer to refuse).
pub fn decode(body: &[u8], encoding: BodyEncoding) -> Result<Vec<(String, String)>, MalformedBody> {
    match encoding {
        BodyEncoding::Form => decode_form(body),
        BodyEncoding::Json => decode_json(body),
    }
}

fn decode_form(body: &[u8]) -> Result<Vec<(String, String)>, MalformedBody> {
    let text = std::str::from_utf8(body)
        .map_err(|_| MalformedBody("the form body is not UTF-8".into()))?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((form_unescape(k)?, form_unescape(v)?))
        })
        .collect()
}

fn form_unescape(s: &str) -> Result<String, MalformedBody> {
    let plus_as_space = s.replace('+', " ");
    let bytes = plus_as_space.as_bytes();
    // percent_decode passes a broken escape through verbatim; refuse it instead.
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(MalformedBody(format!("bad percent-escape in `{s}`")));
        }
    }
    percent_decode(bytes)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| MalformedBody("a form value is not UTF-8 once decoded".into()))
}

fn decode_json(body: &[u8]) -> Result<Vec<(String, String)>, MalformedBody> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| MalformedBody(format!("the JSON body does not parse: {e}")))?;
    let Value::Object(map) = value else {
        return Err(MalformedBody("the JSON body is not an object".into()));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(MalformedBody(format!(
                "parameter `{k}` must be a string in a JSON body"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strict_decoding() {
        assert_eq!(
            decode(b"a=1&b=%zz", BodyEncoding::Form),
            Err(MalformedBody("bad percent-escape in `%zz`".into()))
        );
        assert!(decode(b"a=%ff", BodyEncoding::Form).is_err());
        assert!(decode(b"[1]", BodyEncoding::Json).is_err());
        assert!(decode(br#"{"a":1}"#, BodyEncoding::Json).is_err());
        assert!(decode(br#"{"a":"1""#, BodyEncoding::Json).is_err());
        assert_eq!(
            decode(b"a=x+y&b=", BodyEncoding::Form).unwrap(),
            [
                ("a".to_string(), "x y".to_string()),
                ("b".into(), "".into())
            ]
        );
        assert_eq!(
            BodyEncoding::from_content_type("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            Some(BodyEncoding::Form)
        );
        assert_eq!(BodyEncoding::from_content_type("text/plain"), None);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(p in proptest::collection::vec(("[a-zA-Z]{1,6}", any::<String>()), 0..6), json in any::<bool>()) {
            let mut p = p;
            if json {
                // A JSON object has unique keys.
                let mut seen = std::collections::HashSet::new();
                p.retain(|(k, _)| seen.insert(k.clone()));
                p.sort();
            }
            let enc = if json { BodyEncoding::Json } else { BodyEncoding::Form };
            let mut back = decode(encode(&p, enc).as_bytes(), enc).unwrap();
            if json { back.sort(); }
            prop_assert_eq!(back, p);
        }
    }
}
