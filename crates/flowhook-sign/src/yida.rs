//! The Yida callback signature: MD5 over the values of every parameter but `sign`, in key order
//! of Java's `String.CASE_INSENSITIVE_ORDER`, followed by the application's `systemToken`.
//!
//! Signing refuses ambiguous input rather than guessing: a key given twice, or two keys equal
//! ignoring case (Yida's `TreeMap` would keep only one of them, so no order is "right").
//! Verification compares in constant time and accepts upper-case hex.

use std::cmp::Ordering;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use crate::order::java_case_insensitive_cmp;

/// The parameter that carries the signature; it is never part of what is signed.
pub const SIGN_PARAM: &str = "sign";

/// Why a parameter set cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("parameter `{0}` is given more than once")]
    DuplicateKey(String),
    #[error("parameters `{0}` and `{1}` differ only in case; Yida's key order cannot place them")]
    KeysEqualIgnoringCase(String, String),
}

/// Why a signed parameter set does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the `sign` parameter is missing")]
    MissingSign,
    #[error("the `sign` parameter is not 32 hexadecimal digits")]
    MalformedSign,
    #[error("the signature does not match the parameters and the systemToken")]
    Mismatch,
    #[error(transparent)]
    Params(#[from] SignError),
}

/// The unsigned parameters, sorted as Yida sorts them; `sign` (if present) left out.
///
/// ```
/// let params = [("taskId", "t1"), ("appType", "APP_X"), ("sign", "ignored")];
/// let sorted = flowhook_sign::yida::sorted_params(&params).unwrap();
/// assert_eq!(sorted, [("appType", "APP_X"), ("taskId", "t1")]);
/// ```
pub fn sorted_params<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
) -> Result<Vec<(&str, &str)>, SignError> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != SIGN_PARAM)
        .collect();
    sorted.sort_by(|a, b| java_case_insensitive_cmp(a.0, b.0).then_with(|| a.0.cmp(b.0)));
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        if java_case_insensitive_cmp(a, b) == Ordering::Equal {
            return Err(if a == b {
                SignError::DuplicateKey(a.to_owned())
            } else {
                SignError::KeysEqualIgnoringCase(a.to_owned(), b.to_owned())
            });
        }
    }
    // `sign` itself differing only in case from another key ("Sign") is just as ambiguous.
    if let Some((k, _)) = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .find(|(k, _)| {
            *k != SIGN_PARAM && java_case_insensitive_cmp(k, SIGN_PARAM) == Ordering::Equal
        })
    {
        return Err(SignError::KeysEqualIgnoringCase(
            SIGN_PARAM.to_owned(),
            k.to_owned(),
        ));
    }
    Ok(sorted)
}

/// The exact string that is hashed: sorted values, then the systemToken.
///
/// ```
/// let s = flowhook_sign::yida::signing_string(&[("b", "2"), ("A", "1")], "TOKEN").unwrap();
/// assert_eq!(s, "12TOKEN");
/// ```
pub fn signing_string<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    system_token: &str,
) -> Result<String, SignError> {
    let sorted = sorted_params(params)?;
    let mut out = String::with_capacity(
        sorted.iter().map(|(_, v)| v.len()).sum::<usize>() + system_token.len(),
    );
    for (_, v) in sorted {
        out.push_str(v);
    }
    out.push_str(system_token);
    Ok(out)
}

/// The Yida `sign`: 32 lower-case hex digits of MD5 over the UTF-8 signing string.
///
/// ```
/// // The finish-task vector of shared/vectors/yida-sign.json, made with the JDK.
/// let params = [
///     ("appType", "APP_RY60OCRF33Z7534XYZ"),
///     ("corpId", "ding5d17e3add038d44535c2f4657eb6378f"),
///     ("taskId", "10245689123"),
///     ("actualWorkId", "01690741902689"),
///     ("formInstId", "65ab8549-aa06-486a-b5b7-8abe845303a5"),
///     ("dateTime", "1693462062502"),
/// ];
/// let sign = flowhook_sign::yida::sign(&params, "K3W66CB1YLN8W4FKB6YJ9D1WJ3E23KN0WNPGLK3").unwrap();
/// assert_eq!(sign, "7e046ad2bcb1bd638cfc597ad6e4f93c");
/// ```
pub fn sign<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    system_token: &str,
) -> Result<String, SignError> {
    let signing = signing_string(params, system_token)?;
    Ok(md5_hex(signing.as_bytes()))
}

/// Verifies the `sign` parameter of `params` against `system_token`.
///
/// The comparison runs in constant time; upper-case hex is accepted.
///
/// ```
/// use flowhook_sign::yida::{sign, verify, VerifyError};
/// let mut params = vec![("formInstId", "f1".to_string()), ("dateTime", "1".to_string())];
/// let s = sign(&params, "tok").unwrap();
/// params.push(("sign", s.to_uppercase()));
/// assert_eq!(verify(&params, "tok"), Ok(()));
/// assert_eq!(verify(&params, "other"), Err(VerifyError::Mismatch));
/// ```
pub fn verify<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    system_token: &str,
) -> Result<(), VerifyError> {
    verify_any(params, std::iter::once(system_token))
}

/// Verifies against any of several tokens (a rotated token stays valid for a grace period).
/// Every token is tried, so the time taken does not tell which one matched.
pub fn verify_any<'t, K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    system_tokens: impl IntoIterator<Item = &'t str>,
) -> Result<(), VerifyError> {
    let given = given_sign(params)?;
    let mut matched = subtle::Choice::from(0);
    let mut any_token = false;
    for token in system_tokens {
        any_token = true;
        let expected = sign(params, token)?;
        matched |= expected.as_bytes().ct_eq(&given);
    }
    if any_token && bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The `sign` value, lower-cased, checked to be 32 hex digits.
fn given_sign<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Result<[u8; 32], VerifyError> {
    let mut signs = params.iter().filter(|(k, _)| k.as_ref() == SIGN_PARAM);
    let value = signs.next().ok_or(VerifyError::MissingSign)?.1.as_ref();
    if signs.next().is_some() {
        return Err(SignError::DuplicateKey(SIGN_PARAM.to_owned()).into());
    }
    let bytes = value.as_bytes();
    if bytes.len() != 32 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err(VerifyError::MalformedSign);
    }
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    Ok(out)
}

fn md5_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(data);
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xF)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    #[test]
    fn refuses_ambiguous_keys() {
        assert_eq!(
            sign(&[("a", "1"), ("a", "2")], "t"),
            Err(SignError::DuplicateKey("a".into()))
        );
        assert_eq!(
            sign(&[("taskId", "1"), ("TaskId", "2")], "t"),
            Err(SignError::KeysEqualIgnoringCase(
                "TaskId".into(),
                "taskId".into()
            ))
        );
        assert!(matches!(
            sign(&[("Sign", "1"), ("a", "2")], "t"),
            Err(SignError::KeysEqualIgnoringCase(..))
        ));
    }

    #[test]
    fn verify_reports_why() {
        let params = [("a", "1")];
        assert_eq!(verify(&params, "t"), Err(VerifyError::MissingSign));
        assert_eq!(
            verify(&[("a", "1"), ("sign", "xyz")], "t"),
            Err(VerifyError::MalformedSign)
        );
        let good = sign(&params, "t").unwrap();
        assert_eq!(
            verify(&[("a", "1"), ("sign", &good), ("sign", &good)], "t"),
            Err(VerifyError::Params(SignError::DuplicateKey("sign".into())))
        );
        assert_eq!(
            verify_any(&[("a", "1"), ("sign", good.as_str())], ["old", "t"]),
            Ok(())
        );
        assert_eq!(
            verify_any(&[("a", "1"), ("sign", good.as_str())], []),
            Err(VerifyError::Mismatch)
        );
    }

    /// Parameter sets with distinct keys (ignoring case), as real callbacks have.
    fn params() -> impl Strategy<Value = Vec<(String, String)>> {
        vec(("[a-zA-Z_][a-zA-Z0-9_]{0,8}", any::<String>()), 0..8).prop_map(|mut v| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|(k, _)| k != SIGN_PARAM && seen.insert(k.to_lowercase()));
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn sign_then_verify_round_trips(mut p in params(), token in any::<String>(), upper in any::<bool>()) {
            let s = sign(&p, &token).unwrap();
            prop_assert_eq!(s.len(), 32);
            p.push((SIGN_PARAM.into(), if upper { s.to_uppercase() } else { s }));
            prop_assert_eq!(verify(&p, &token), Ok(()));
        }

        #[test]
        fn any_change_breaks_verification(
            p in params().prop_filter("need a parameter", |p| !p.is_empty()),
            token in "[A-Z0-9]{1,20}",
            which in any::<proptest::sample::Index>(),
            suffix in "[a-z0-9]{1,4}",
        ) {
            let s = sign(&p, &token).unwrap();
            let i = which.index(p.len());
            let signed = |p: &Vec<(String, String)>| {
                let mut p = p.clone();
                p.push((SIGN_PARAM.into(), s.clone()));
                p
            };
            // A changed value.
            let mut changed = p.clone();
            changed[i].1.push_str(&suffix);
            prop_assert_eq!(verify(&signed(&changed), &token), Err(VerifyError::Mismatch));
            // A changed key moves the value elsewhere in the order or adds a parameter; either
            // way the signature must not survive when it changes what is hashed.
            let mut renamed = p.clone();
            renamed[i].0 = format!("{}{}", renamed[i].0, suffix);
            let unique = renamed.iter().filter(|(k, _)| k.eq_ignore_ascii_case(&renamed[i].0)).count() == 1;
            if unique && signing_string(&renamed, &token).unwrap() != signing_string(&p, &token).unwrap() {
                prop_assert_eq!(verify(&signed(&renamed), &token), Err(VerifyError::Mismatch));
            }
            // An added parameter with a non-empty value.
            let mut added = p.clone();
            added.push(("zz_extra_param".into(), suffix.clone()));
            prop_assert_eq!(verify(&signed(&added), &token), Err(VerifyError::Mismatch));
            // Another token.
            prop_assert_eq!(verify(&signed(&p), &format!("{token}x")), Err(VerifyError::Mismatch));
        }
    }
}
