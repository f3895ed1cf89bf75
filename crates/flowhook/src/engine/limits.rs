//! What ids and texts may look like, and how long they may be: the rules the engine applies to
//! definitions and the API to every write (`http::validate`, which names the JSON field), so that
//! both backends store the same things. SQLite stores anything; PostgreSQL refuses a NUL in any
//! text and an index entry over about 2.7 KB, and HTTP refuses control characters in headers —
//! each answered 500 before these rules, now 422 at the door.
//!
//! Pure: each check returns what is wrong, in words, without the value (which may be huge or
//! unprintable); the caller adds the field's name.

use std::collections::BTreeMap;

use super::condition::FormBounds;

/// The longest id (of an organisation, app, user, role, process, node, instance, event, …).
pub const ID_MAX_CHARS: usize = 128;

/// The characters of an id, as the documentation writes them.
pub const ID_CHARS: &str = "A-Z a-z 0-9 _ - . : @";

/// The longest name (of an organisation, app, API key, user, role, process, node, branch,
/// connector, action).
pub const NAME_MAX_CHARS: usize = 200;

/// The longest instance title.
pub const TITLE_MAX_CHARS: usize = 500;

/// The longest free text (a task's remark).
pub const TEXT_MAX_CHARS: usize = 4000;

/// The longest URL or URL path (an avatar, a connector's base URL, an action's path).
pub const URL_MAX_CHARS: usize = 2048;

/// The longest credential or header value.
pub const SECRET_MAX_CHARS: usize = 4096;

/// The most items in one list of ids (role members, strategy filters, appended users).
pub const MAX_LIST: usize = 1000;

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@')
}

/// A character as a message may show it: control characters by their code point.
fn shown(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

/// An id: 1 to [`ID_MAX_CHARS`] characters of [`ID_CHARS`] — Yida's `APP_…`, `FORM-…`,
/// `TPROC--…`, `ding…` and numeric user ids, UUIDs and Flowhook's `pi_…`, `dlv_…` all are.
pub fn id(value: &str) -> Result<(), String> {
    let rule = format!("1 to {ID_MAX_CHARS} characters of {ID_CHARS}");
    if value.is_empty() {
        return Err(format!("is empty; an id is {rule}"));
    }
    let n = value.chars().count();
    if n > ID_MAX_CHARS {
        return Err(format!("is {n} characters long; an id is {rule}"));
    }
    match value.chars().find(|c| !is_id_char(*c)) {
        Some(c) => Err(format!("contains {}; an id is {rule}", shown(c))),
        None => Ok(()),
    }
}

/// One line of text up to `max` characters, without control characters (a name, a title, a
/// URL, a credential: each may end up in a header, a log line or a page).
pub fn line(value: &str, max: usize) -> Result<(), String> {
    let n = value.chars().count();
    if n > max {
        return Err(format!("is {n} characters long; at most {max}"));
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "contains the control character {}; none is allowed here",
            shown(c)
        )),
        None => Ok(()),
    }
}

/// Free text up to `max` characters: lines and tabs, but no other control character.
pub fn text(value: &str, max: usize) -> Result<(), String> {
    let n = value.chars().count();
    if n > max {
        return Err(format!("is {n} characters long; at most {max}"));
    }
    match value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        Some(c) => Err(format!(
            "contains the control character {}; only line breaks and tabs are allowed",
            shown(c)
        )),
        None => Ok(()),
    }
}

/// The name of a form field: 1 to [`FormBounds::API`]`.key_bytes` bytes, no control character.
pub fn form_key(key: &str) -> Result<(), String> {
    let max = FormBounds::API.key_bytes as usize;
    if key.is_empty() {
        return Err("is empty; a form field has a name".into());
    }
    if key.len() > max {
        return Err(format!("is {} bytes long; at most {max}", key.len()));
    }
    line(key, max)
}

/// Form data (`dataMap`) within [`FormBounds::API`]: what a route condition is measured
/// against. Values may hold line breaks and any text (tables are JSON strings), but no NUL.
/// On error: the field at fault (`None` for the whole form) and what is wrong.
pub fn form(data: &BTreeMap<String, Option<String>>) -> Result<(), (Option<String>, String)> {
    let b = FormBounds::API;
    if data.len() as u64 > b.fields {
        return Err((
            None,
            format!("has {} fields; at most {}", data.len(), b.fields),
        ));
    }
    let mut total = 0u64;
    for (k, v) in data {
        form_key(k).map_err(|e| (Some(k.clone()), format!("the name {e}")))?;
        let v = v.as_deref().unwrap_or("");
        if v.len() as u64 > b.value_bytes {
            return Err((
                Some(k.clone()),
                format!("is {} bytes long; at most {}", v.len(), b.value_bytes),
            ));
        }
        if v.contains('\0') {
            return Err((Some(k.clone()), "contains a NUL character (U+0000)".into()));
        }
        total += (k.len() + v.len()) as u64;
    }
    if total > b.total_bytes {
        return Err((
            None,
            format!(
                "holds {total} bytes of names and values; at most {}",
                b.total_bytes
            ),
        ));
    }
    Ok(())
}

/// The JSON path (`$.a.b[2]`) of the first string, or object key, of `value` holding a NUL
/// character — which PostgreSQL cannot store.
pub fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0').then(|| path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if is_plain_key(k) {
                format!("{path}.{k}")
            } else {
                format!("{path}[{}]", serde_json::Value::String(k.clone()))
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_in(v, &here)
            }
        }),
        _ => None,
    }
}

/// A key a JSON path can show after a dot.
fn is_plain_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_yida_dingtalk_and_flowhook_pass() {
        for ok in [
            "APP_RY60OCRF33Z7534XYZ",
            "FORM-MT866EA1X3N9W79GDQM2HB400M413OS76A2GL51",
            "TPROC--9BC6687125N9XAJ8873I0864QY122BZ96A2GL1",
            "65ab8549-aa06-486a-b5b7-8abe845303a5",
            "01690741902689",
            "ding1234abcd",
            "c-1",
            "pi_0190a1b2c3d4e5f60718293a4b5c6d7e-t12",
            "user@example.com",
            "urn:flowable:task:42",
            &"a".repeat(ID_MAX_CHARS),
        ] {
            assert_eq!(id(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn ids_that_cannot_be_stored_or_sent_are_refused() {
        for (bad, says) in [
            ("", "is empty"),
            (
                &"a".repeat(ID_MAX_CHARS + 1) as &str,
                "is 129 characters long",
            ),
            ("a\0b", "contains U+0000"),
            ("evt\r\nX-Injected: 1", "contains U+000D"),
            ("a\u{1b}[31m", "contains U+001B"),
            ("a b", "contains U+0020"),
            ("a/b", "contains `/`"),
            ("张三", "contains `张`"),
        ] {
            let e = id(bad).unwrap_err();
            assert!(e.starts_with(says), "{bad:?}: {e}");
            assert!(e.contains("A-Z a-z 0-9 _ - . : @"), "{e}");
        }
    }

    #[test]
    fn lines_and_texts() {
        assert!(line("Alice Zhang 张三 ✓", NAME_MAX_CHARS).is_ok());
        assert!(line(&"名".repeat(NAME_MAX_CHARS), NAME_MAX_CHARS).is_ok());
        assert!(line(&"名".repeat(NAME_MAX_CHARS + 1), NAME_MAX_CHARS)
            .unwrap_err()
            .contains("201 characters long; at most 200"));
        for c in ['\0', '\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{85}'] {
            assert!(line(&format!("a{c}b"), 10).is_err(), "{c:?}");
        }
        assert!(text("line one\r\nline two\tend", 100).is_ok());
        assert!(text("a\0b", 100).unwrap_err().contains("U+0000"));
        assert!(text("a\u{1b}b", 100).unwrap_err().contains("U+001B"));
    }

    #[test]
    fn form_data_within_the_bounds_conditions_are_measured_against() {
        let form = |pairs: Vec<(String, Option<String>)>| -> BTreeMap<_, _> {
            pairs.into_iter().collect()
        };
        let table = r#"[{"item": "laptop", "note": "line one
line two"}]"#;
        assert!(super::form(&form(vec![
            ("days".into(), Some("5".into())),
            ("items".into(), Some(table.into())),
            ("none".into(), None),
        ]))
        .is_ok());
        let (field, e) = super::form(&form(vec![("n".into(), Some("a\0".into()))])).unwrap_err();
        assert_eq!(
            (field.as_deref(), e.as_str()),
            (Some("n"), "contains a NUL character (U+0000)")
        );
        let (field, _) =
            super::form(&form(vec![("big".into(), Some("x".repeat(64 * 1024 + 1)))])).unwrap_err();
        assert_eq!(field.as_deref(), Some("big"));
        let (field, e) = super::form(&form(vec![("a\nb".into(), None)])).unwrap_err();
        assert_eq!(field.as_deref(), Some("a\nb"));
        assert!(e.starts_with("the name contains"), "{e}");
        let many = (0..501).map(|i| (format!("f{i}"), None)).collect();
        assert!(super::form(&form(many))
            .unwrap_err()
            .1
            .contains("501 fields"));
        let total = (0..20)
            .map(|i| (format!("f{i}"), Some("x".repeat(60 * 1024))))
            .collect();
        assert!(super::form(&form(total))
            .unwrap_err()
            .1
            .contains("at most 1048576"));
    }

    #[test]
    fn the_path_of_a_nul() {
        let v = serde_json::json!({"a": [1, {"b": "ok", "c d": ["x", "y\u{0}"]}]});
        assert_eq!(nul_in(&v, "$").as_deref(), Some("$.a[1][\"c d\"][1]"));
        let k = serde_json::json!({"form": {"k\u{0}": "v"}});
        assert_eq!(nul_in(&k, "$").as_deref(), Some("$.form[\"k\\u0000\"]"));
        assert_eq!(nul_in(&serde_json::json!({"a": "b"}), "$"), None);
    }
}
