//! Route conditions: CEL expressions over the form data, through the maintained
//! `cel` crate (no home-made parser).
//!
//! Form values are strings (Yida's `dataMap`); a value that reads as a number is offered to the
//! expression as a number, so `days > 3` works on `"days": "5"`. Each field is a variable of its
//! own when its name is an identifier, and all are in the map `form` (`form["field-1"]`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::{Context, Program, Value};

/// What a check learnt: the expression's value when it is a constant.
pub struct Constant(pub Option<bool>);

/// Compiles `source`; a constant `true`/`false` is reported as such.
pub fn check(source: &str) -> Result<Constant, String> {
    let program = compile(source)?;
    let refs = program.references();
    if refs.variables().is_empty() {
        if let Ok(Value::Bool(b)) = program.execute(&Context::default()) {
            return Ok(Constant(Some(b)));
        }
    }
    Ok(Constant(None))
}

fn compile(source: &str) -> Result<Program, String> {
    Program::compile(source).map_err(|e| {
        // The parser's message is several lines (the source with a caret): keep the first.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("syntax error").trim();
        format!("not a valid CEL expression: {first}")
    })
}

/// Evaluates a condition; anything but `true` (false, an error such as a missing field, a
/// non-boolean) does not match, so the route falls through to later branches or the default.
pub fn holds(source: &str, form: &BTreeMap<String, Option<String>>) -> bool {
    let Ok(program) = compile(source) else {
        return false;
    };
    let mut ctx = Context::default();
    let mut map: HashMap<String, Value> = HashMap::new();
    for (k, v) in form {
        let value = to_value(v.as_deref());
        if is_identifier(k) {
            ctx.add_variable_from_value(k.clone(), value.clone());
        }
        map.insert(k.clone(), value);
    }
    ctx.add_variable_from_value("form", map);
    matches!(program.execute(&ctx), Ok(Value::Bool(true)))
}

fn to_value(v: Option<&str>) -> Value {
    match v {
        None => Value::Null,
        Some(s) => {
            if let Ok(i) = s.trim().parse::<i64>() {
                Value::Int(i)
            } else if let Ok(f) = s.trim().parse::<f64>() {
                if f.is_finite() {
                    Value::Float(f)
                } else {
                    Value::String(Arc::new(s.to_owned()))
                }
            } else {
                Value::String(Arc::new(s.to_owned()))
            }
        }
    }
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["form", "true", "false", "null", "in"].contains(&k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn numbers_strings_and_missing_fields() {
        let f = form(&[
            ("days", Some("5")),
            ("kind", Some("sick")),
            ("amount-x", Some("2.5")),
        ]);
        assert!(holds("days > 3", &f));
        assert!(!holds("days > 5", &f));
        assert!(holds("kind == 'sick' && days >= 5", &f));
        assert!(holds("form['amount-x'] > 2.0", &f));
        assert!(!holds("missing > 1", &f), "an error does not match");
        assert!(!holds("days", &f), "a non-boolean does not match");
        assert!(check("days >").is_err());
        assert_eq!(check("1 > 2").unwrap().0, Some(false));
        assert_eq!(check("days > 2").unwrap().0, None);
    }
}
