//! Route conditions: CEL expressions over the form data, through the maintained
//! `cel` crate (no home-made parser).
//!
//! Form values are strings (Yida's `dataMap`); a value that reads as a number is offered to the
//! expression as a number, so `days > 3` works on `"days": "5"`. Each field is a variable of its
//! own when its name is an identifier, and all are in the map `form` (`form["field-1"]`).
//!
//! Bounded work: the `cel` crate offers no evaluation budget and no deadline, and a 300-byte
//! condition of nested `.all()` once ran for a minute on the writer's thread. So every program is
//! measured before it runs, by static analysis of its syntax tree ([`estimate`]): its length
//! ([`MAX_CONDITION_BYTES`]), how deep comprehension macros nest ([`MAX_NESTING`]) and an upper
//! bound of its work given the largest form data the API accepts ([`FormBounds`]), which must
//! stay within [`MAX_COST`] — a few milliseconds. Validation refuses a condition over a bound;
//! at run time one (saved before these bounds existed) does not match. The engine stays pure:
//! no clock, no thread, only arithmetic on the tree.
//!
//! Compiled once: a [`Condition`] keeps its program after its first evaluation, and lives in the
//! [`Definition`](super::definition::Definition) that holds it — which the writer caches per
//! (organisation, process, version). So a process version's conditions are compiled once per
//! process, and no organisation's programs are shared with, or evicted by, another's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{operators, ComprehensionExpr, EntryExpr, Expr, LiteralValue};
use cel::{Context, IdedExpr, Program, Value};

/// The longest condition, in bytes: a condition compares a few fields.
pub const MAX_CONDITION_BYTES: usize = 1024;

/// How deep comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`) may nest:
/// each level multiplies the work by the length of a list.
pub const MAX_NESTING: usize = 2;

/// The most work a condition may do, in the units of [`estimate`] (about one for each byte
/// compared or copied, [`NODE_COST`] for each operation evaluated). Measured on a debug build
/// (the slowest), a unit takes 0.3 to 7 ns: this is at most about 15 ms.
pub const MAX_COST: u64 = 2_000_000;

/// The most work all the conditions of one definition may do together: one command evaluates
/// each route at most once (about 70 ms on a debug build, far less on a release one).
pub const MAX_DEFINITION_COST: u64 = 10_000_000;

/// The cost of evaluating one node of the tree (a call, a variable, a literal), beside the
/// bytes it touches.
pub const NODE_COST: u64 = 100;

/// The largest form data a condition can be given: what the API accepts when an instance
/// starts (see `http::validate`), and what a condition is measured against when it is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormBounds {
    /// Fields in one form.
    pub fields: u64,
    /// Bytes of one field name.
    pub key_bytes: u64,
    /// Bytes of one value.
    pub value_bytes: u64,
    /// Bytes of every name and value together.
    pub total_bytes: u64,
}

impl FormBounds {
    /// The limits the API enforces on `formData`.
    pub const API: FormBounds = FormBounds {
        fields: 500,
        key_bytes: 128,
        value_bytes: 64 * 1024,
        total_bytes: 1024 * 1024,
    };

    /// The bounds of one actual form (at run time: its data may predate the API's limits).
    pub fn of(form: &BTreeMap<String, Option<String>>) -> FormBounds {
        let mut b = FormBounds {
            fields: form.len() as u64,
            key_bytes: 0,
            value_bytes: 0,
            total_bytes: 0,
        };
        for (k, v) in form {
            let v = v.as_deref().map_or(0, str::len) as u64;
            b.key_bytes = b.key_bytes.max(k.len() as u64);
            b.value_bytes = b.value_bytes.max(v);
            b.total_bytes = b.total_bytes.saturating_add(k.len() as u64 + v);
        }
        b
    }
}

/// What a check learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The expression's value when it is a constant `true` or `false`.
    pub constant: Option<bool>,
    /// The bound of its work on the largest form data the API accepts (see [`estimate`]).
    pub cost: u64,
}

/// Compiles `source` and measures it against the largest form data the API accepts; a
/// constant `true`/`false` is reported as such.
pub fn check(source: &str) -> Result<Checked, String> {
    let program = compile(source)?;
    let cost = estimate(program.expression(), FormBounds::API)?;
    if cost > MAX_COST {
        return Err(format!(
            "the condition may take up to {cost} units of work on the largest form data \
             accepted, more than the {MAX_COST} allowed: iterate over shorter lists, nest less, \
             or compare fewer fields"
        ));
    }
    let mut constant = None;
    if program.references().variables().is_empty() {
        if let Ok(Value::Bool(b)) = program.execute(&Context::default()) {
            constant = Some(b);
        }
    }
    Ok(Checked { constant, cost })
}

fn compile(source: &str) -> Result<Program, String> {
    #[cfg(test)]
    tests::COMPILED.with(|n| n.set(n.get() + 1));
    if source.len() > MAX_CONDITION_BYTES {
        return Err(format!(
            "the condition is {} bytes long; at most {MAX_CONDITION_BYTES}",
            source.len()
        ));
    }
    Program::compile(source).map_err(|e| {
        // The parser's message is several lines (the source with a caret): keep the first.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("syntax error").trim();
        format!("not a valid CEL expression: {first}")
    })
}

/// A route condition: its CEL source, and its program once compiled.
///
/// Serialized as the source alone; equal when the sources are. Clones share the program.
#[derive(Clone)]
pub struct Condition {
    source: String,
    /// Compiled at the first evaluation; `None`: it does not compile (saved before a bound
    /// existed), so it never matches.
    program: Arc<OnceLock<Option<Program>>>,
}

impl Condition {
    pub fn new(source: impl Into<String>) -> Self {
        Condition {
            source: source.into(),
            program: Arc::default(),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The program, compiled on the first call only.
    fn program(&self) -> Option<&Program> {
        self.program
            .get_or_init(|| compile(&self.source).ok())
            .as_ref()
    }
}

impl From<&str> for Condition {
    fn from(source: &str) -> Self {
        Condition::new(source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Condition::new)
    }
}

/// Evaluates a condition; anything but `true` (false, an error such as a missing field, a
/// non-boolean, a program over the bounds for this form) does not match, so the route falls
/// through to later branches or the default.
pub fn holds(condition: &Condition, form: &BTreeMap<String, Option<String>>) -> bool {
    let Some(program) = condition.program() else {
        return false;
    };
    // Measured against this form at each evaluation: the bound depends on its data.
    if !estimate(program.expression(), FormBounds::of(form)).is_ok_and(|c| c <= MAX_COST) {
        return false;
    }
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

/// An upper bound of the work of evaluating `expr` against form data within `bounds`, or why
/// it is refused outright (comprehensions nested deeper than [`MAX_NESTING`]).
///
/// The model, in units of about one byte touched: every node costs [`NODE_COST`]; an operation
/// also costs the sizes of its operands (a concatenation copies them, `contains` scans them, a
/// comparison reads the shorter one); a comprehension costs its range and its initial value
/// once, and its condition and step once per element of the range. Sizes are bounded the same
/// way: a form field by `value_bytes`, the map `form` by `total_bytes`, a literal by its own
/// size, a concatenation by the sum of its operands. `map` and `filter` append to their list in
/// place (the `cel` interpreter builds it in one buffer), so their step is charged for what it
/// appends, not for the list so far. Arithmetic saturates: a bound too large to count is refused.
pub fn estimate(expr: &IdedExpr, bounds: FormBounds) -> Result<u64, String> {
    let depth = nesting(expr);
    if depth > MAX_NESTING {
        return Err(format!(
            "comprehension macros (all, exists, exists_one, map, filter) are nested {depth} \
             deep; at most {MAX_NESTING}"
        ));
    }
    let mut scope = Vec::new();
    Ok(Estimator { bounds }.est(expr, &mut scope).cost)
}

/// How deep comprehensions nest: one inside another's condition or step counts; one in its
/// range, initial value or result runs once and does not.
fn nesting(expr: &IdedExpr) -> usize {
    match &expr.expr {
        Expr::Comprehension(c) => {
            let inner = nesting(&c.loop_cond).max(nesting(&c.loop_step)) + 1;
            inner
                .max(nesting(&c.iter_range))
                .max(nesting(&c.accu_init))
                .max(nesting(&c.result))
        }
        Expr::Call(call) => call
            .target
            .iter()
            .map(|t| nesting(t))
            .chain(call.args.iter().map(nesting))
            .max()
            .unwrap_or(0),
        Expr::List(list) => list.elements.iter().map(nesting).max().unwrap_or(0),
        Expr::Map(map) => entries_nesting(&map.entries),
        Expr::Struct(s) => entries_nesting(&s.entries),
        Expr::Select(select) => nesting(&select.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    }
}

fn entries_nesting(entries: &[cel::common::ast::IdedEntryExpr]) -> usize {
    entries
        .iter()
        .map(|e| match &e.expr {
            EntryExpr::MapEntry(m) => nesting(&m.key).max(nesting(&m.value)),
            EntryExpr::StructField(f) => nesting(&f.value),
        })
        .max()
        .unwrap_or(0)
}

/// Bounds of one value and of the work that made it.
#[derive(Debug, Clone, Copy)]
struct Est {
    /// Its size: bytes of a string, plus one for each value within.
    size: u64,
    /// Its elements (list) or entries (map): how often a comprehension over it iterates.
    len: u64,
    /// The size of what iterating over it yields (a list's elements, a map's keys).
    item: u64,
    /// The size of what indexing it yields (a list's elements, a map's values).
    member: u64,
    /// The work of evaluating it.
    cost: u64,
}

impl Est {
    /// A value of at most `size` whose parts are unknown: any of them may be that large.
    fn opaque(size: u64, cost: u64) -> Est {
        Est {
            size,
            len: size,
            item: size,
            member: size,
            cost,
        }
    }

    /// A string, a number, a boolean or null: nothing to iterate over.
    fn scalar(size: u64, cost: u64) -> Est {
        Est {
            size,
            len: 0,
            item: 0,
            member: 0,
            cost,
        }
    }
}

/// The size of a number or boolean, and of what a number becomes as a string.
const SCALAR: u64 = 32;

struct Estimator {
    bounds: FormBounds,
}

impl Estimator {
    fn est(&self, expr: &IdedExpr, scope: &mut Vec<(String, Est)>) -> Est {
        match &expr.expr {
            Expr::Literal(lit) => Est::scalar(
                match lit {
                    LiteralValue::String(s) => s.inner().len() as u64 + 1,
                    LiteralValue::Bytes(b) => b.inner().len() as u64 + 1,
                    _ => 8,
                },
                NODE_COST,
            ),
            Expr::Ident(name) => {
                let found = scope.iter().rev().find(|(n, _)| n == name).map(|(_, e)| *e);
                let mut e = found.unwrap_or_else(|| self.global(name));
                e.cost = NODE_COST;
                e
            }
            Expr::List(list) => {
                let parts: Vec<Est> = list.elements.iter().map(|e| self.est(e, scope)).collect();
                let biggest = parts.iter().map(|p| p.size).max().unwrap_or(0);
                Est {
                    size: sum(parts.iter().map(|p| p.size)).saturating_add(1),
                    len: parts.len() as u64,
                    item: biggest,
                    member: biggest,
                    cost: sum(parts.iter().map(|p| p.cost)).saturating_add(NODE_COST),
                }
            }
            Expr::Map(map) => self.entries(&map.entries, scope),
            Expr::Struct(s) => self.entries(&s.entries, scope),
            Expr::Select(select) => {
                let operand = self.est(&select.operand, scope);
                let cost = operand
                    .cost
                    .saturating_add(NODE_COST)
                    .saturating_add(select.field.len() as u64);
                if select.test {
                    Est::scalar(SCALAR, cost)
                } else {
                    Est::opaque(operand.member, cost)
                }
            }
            Expr::Call(call) => {
                let mut args: Vec<Est> = Vec::with_capacity(call.args.len() + 1);
                if let Some(t) = &call.target {
                    args.push(self.est(t, scope));
                }
                for a in &call.args {
                    args.push(self.est(a, scope));
                }
                self.call(&call.func_name, &args)
            }
            Expr::Comprehension(c) => self.comprehension(c, scope),
            Expr::Unspecified => Est::scalar(0, NODE_COST),
        }
    }

    /// A variable that is not a comprehension's: the map `form` or one of its fields.
    fn global(&self, name: &str) -> Est {
        let b = self.bounds;
        if name == "form" {
            Est {
                size: b.total_bytes.saturating_add(b.fields),
                len: b.fields,
                item: b.key_bytes.saturating_add(1),
                member: b.value_bytes.saturating_add(1),
                cost: 0,
            }
        } else {
            Est::scalar(b.value_bytes.saturating_add(1).max(SCALAR), 0)
        }
    }

    fn entries(
        &self,
        entries: &[cel::common::ast::IdedEntryExpr],
        scope: &mut Vec<(String, Est)>,
    ) -> Est {
        let (mut size, mut cost, mut item, mut member) = (1u64, NODE_COST, 0u64, 0u64);
        for entry in entries {
            let (key, value) = match &entry.expr {
                EntryExpr::MapEntry(m) => (self.est(&m.key, scope), self.est(&m.value, scope)),
                EntryExpr::StructField(f) => (
                    Est::scalar(f.field.len() as u64 + 1, 0),
                    self.est(&f.value, scope),
                ),
            };
            size = size.saturating_add(key.size).saturating_add(value.size);
            // Keys are hashed: their bytes are read.
            cost = cost
                .saturating_add(key.cost)
                .saturating_add(value.cost)
                .saturating_add(key.size);
            item = item.max(key.size);
            member = member.max(value.size);
        }
        Est {
            size,
            len: entries.len() as u64,
            item,
            member,
            cost,
        }
    }

    fn call(&self, name: &str, args: &[Est]) -> Est {
        let work = sum(args.iter().map(|a| a.cost)).saturating_add(NODE_COST);
        let sizes = sum(args.iter().map(|a| a.size));
        match name {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::NOT_STRICTLY_FALSE => Est::scalar(SCALAR, work),
            // Comparisons stop at the shorter operand.
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => {
                let shorter = args.iter().map(|a| a.size).min().unwrap_or(0);
                Est::scalar(SCALAR, work.saturating_add(shorter))
            }
            // Arithmetic on numbers (durations and timestamps are not compiled in).
            operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => Est::scalar(SCALAR, work),
            // Scans of their operands with a small answer.
            operators::IN
            | "size"
            | "contains"
            | "startsWith"
            | "endsWith"
            | "int"
            | "uint"
            | "double"
            | "bool"
            | "type" => Est::scalar(SCALAR, work.saturating_add(sizes)),
            "string" => Est::scalar(sizes.saturating_add(SCALAR), work.saturating_add(sizes)),
            operators::CONDITIONAL => {
                let (a, b) = (
                    args.get(1).copied().unwrap_or(Est::scalar(0, 0)),
                    args.get(2).copied().unwrap_or(Est::scalar(0, 0)),
                );
                Est {
                    size: a.size.max(b.size),
                    len: a.len.max(b.len),
                    item: a.item.max(b.item),
                    member: a.member.max(b.member),
                    cost: work,
                }
            }
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => {
                let operand = args.first().map_or(0, |a| a.member);
                let key = sum(args.iter().skip(1).map(|a| a.size));
                Est::opaque(operand, work.saturating_add(key))
            }
            // Concatenation copies both sides (numbers add).
            operators::ADD => Est {
                size: sizes,
                len: sum(args.iter().map(|a| a.len)),
                item: args.iter().map(|a| a.item).max().unwrap_or(0),
                member: args.iter().map(|a| a.member).max().unwrap_or(0),
                cost: work.saturating_add(sizes),
            },
            // Anything else: its result is no larger than its operands together and a little.
            _ => Est::opaque(sizes.saturating_add(SCALAR), work.saturating_add(sizes)),
        }
    }

    fn comprehension(&self, c: &ComprehensionExpr, scope: &mut Vec<(String, Est)>) -> Est {
        let range = self.est(&c.iter_range, scope);
        let init = self.est(&c.accu_init, scope);
        let n = range.len;
        let mark = scope.len();
        // One variable: the element (list) or key (map); two: the index or key, then the value.
        scope.push((c.iter_var.clone(), Est::opaque(range.item.max(SCALAR), 0)));
        if let Some(v2) = &c.iter_var2 {
            scope.push((v2.clone(), Est::opaque(range.member.max(SCALAR), 0)));
        }
        let initial = Est { cost: 0, ..init };
        scope.push((c.accu_var.clone(), initial));
        let step = self.est(&c.loop_step, scope);
        // `map` and `filter` start from an empty list and append once per element; the other
        // macros keep a boolean or a count.
        let accu = if matches!(c.accu_init.expr, Expr::List(_)) {
            let appended = step.size.saturating_sub(init.size);
            Est {
                size: init.size.saturating_add(n.saturating_mul(appended)),
                len: init.len.saturating_add(n),
                item: step.item,
                member: step.member,
                cost: 0,
            }
        } else {
            Est {
                size: init.size.max(step.size),
                cost: 0,
                ..step
            }
        };
        scope.last_mut().expect("the accumulator").1 = accu;
        let cond = self.est(&c.loop_cond, scope);
        let per_element = cond
            .cost
            .saturating_add(step.cost)
            .saturating_add(NODE_COST);
        scope.truncate(mark);
        scope.push((c.accu_var.clone(), accu));
        let result = self.est(&c.result, scope);
        scope.truncate(mark);
        Est {
            cost: range
                .cost
                .saturating_add(init.cost)
                .saturating_add(n.saturating_mul(per_element))
                .saturating_add(result.cost),
            ..result
        }
    }
}

fn sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Programs compiled on this thread (each test runs on its own).
        pub(super) static COMPILED: Cell<u64> = const { Cell::new(0) };
    }

    /// Evaluates `source` as a fresh condition.
    fn holds(source: &str, form: &BTreeMap<String, Option<String>>) -> bool {
        super::holds(&Condition::from(source), form)
    }

    #[test]
    fn a_condition_is_compiled_once_whatever_it_is_evaluated_on() {
        let condition = Condition::from("days > 3 && kind == 'sick'");
        let copy = condition.clone();
        let before = COMPILED.with(Cell::get);
        for days in 0..10 {
            let f = form(&[("days", Some(&days.to_string())), ("kind", Some("sick"))]);
            assert_eq!(super::holds(&condition, &f), days > 3);
            assert_eq!(super::holds(&copy, &f), days > 3);
        }
        assert_eq!(
            COMPILED.with(Cell::get) - before,
            1,
            "compiled once, shared by clones"
        );

        let broken = Condition::from("days >");
        assert!(!super::holds(&broken, &form(&[("days", Some("5"))])));
        assert!(!super::holds(&broken, &form(&[("days", Some("5"))])));
        assert_eq!(
            COMPILED.with(Cell::get) - before,
            2,
            "a failure is kept too"
        );

        let json = serde_json::to_string(&condition).unwrap();
        assert_eq!(json, r#""days > 3 && kind == 'sick'""#);
        let back: Condition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, condition);
    }

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
        assert_eq!(check("1 > 2").unwrap().constant, Some(false));
        assert_eq!(check("days > 2").unwrap().constant, None);
    }

    /// `[1,1,…]` with `n` elements.
    fn list(n: usize) -> String {
        format!("[{}]", vec!["1"; n].join(","))
    }

    #[test]
    fn the_length_is_bounded() {
        // 1024 bytes pass, 1025 do not — before the parser runs.
        let ok = format!("'{}' != ''", "a".repeat(MAX_CONDITION_BYTES - 8));
        assert_eq!(ok.len(), MAX_CONDITION_BYTES);
        assert!(compile(&ok).is_ok());
        let long = format!("{ok} ");
        let e = check(&long).err().unwrap();
        assert!(e.contains("1025 bytes long; at most 1024"), "{e}");
        assert!(!holds(&long, &form(&[("days", Some("5"))])));
    }

    #[test]
    fn comprehension_nesting_is_bounded() {
        let two = "[1,2].all(a, [1,2].all(b, a <= b || a > b))";
        assert!(check(two).is_ok());
        // The shape of the attack: each level multiplies the work by the list's length.
        let three = "[1,2].all(a, [1,2].all(b, [1,2].all(c, true)))";
        let e = check(three).err().unwrap();
        assert!(e.contains("nested 3 deep; at most 2"), "{e}");
        let maps = "[1,2].map(a, [1,2].map(b, [1,2].map(c, [a, b, c]))).size() > 0";
        assert!(check(maps).err().unwrap().contains("nested 3 deep"));
        // Sequential comprehensions are not nested: a range or a result runs once.
        assert!(check("[1,2].map(a, a).all(b, b > 0) && [3].exists(c, c == 3)").is_ok());
        assert!(!holds(three, &BTreeMap::new()));
    }

    #[test]
    fn the_work_is_bounded() {
        // Ordinary conditions cost little.
        for ok in [
            "days > 3",
            "kind == 'sick' && days >= 5 || form['amount-x'] > 2.0",
            "kind in ['sick', 'annual', 'unpaid'] && reason.contains('surgery')",
            "form.exists(k, k.startsWith('urgent') && form[k] == 'yes')",
            "[1, 2, 3].all(a, [4, 5].exists(b, a < b))",
        ] {
            let c = check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(c.cost <= MAX_COST / 2, "{ok}: {}", c.cost);
        }
        // Two nested loops over long lists: 40,000 iterations.
        let loops = format!("{}.all(a, {}.all(b, a == b))", list(200), list(200));
        let e = check(&loops).err().unwrap();
        assert!(e.contains("units of work"), "{e}");
        // Concatenating the largest field with itself, over and over: copies grow each time.
        let concat = vec!["note"; 40].join(" + ") + " == ''";
        assert!(check(&concat).err().unwrap().contains("units of work"));
        // The same on a small form is within bounds at run time (and evaluates)...
        let small = form(&[("note", Some("ab"))]);
        assert!(!holds(&concat, &small), "a non-empty note");
        assert!(holds(&(vec!["note"; 40].join(" + ") + " != ''"), &small));
        // ...but not on a form as large as the API allows: it does not match, and is not run.
        let huge = form(&[("note", Some(&"x".repeat(64 * 1024)))]);
        assert!(!holds(&(vec!["note"; 40].join(" + ") + " != ''"), &huge));
    }

    #[test]
    fn the_estimate_follows_the_form_bounds() {
        let p = Program::compile("form.all(k, form[k] != '')").unwrap();
        let small = estimate(p.expression(), FormBounds::of(&form(&[("a", Some("1"))]))).unwrap();
        let large = estimate(p.expression(), FormBounds::API).unwrap();
        assert!(small < large / 100, "{small} {large}");
        // A loop over a list made by `map` iterates once per element of the map's range.
        let p = Program::compile(&format!("{}.map(a, a + 1).all(b, b > 0)", list(10))).unwrap();
        let ten = estimate(p.expression(), FormBounds::API).unwrap();
        let p = Program::compile(&format!("{}.map(a, a + 1).all(b, b > 0)", list(20))).unwrap();
        let twenty = estimate(p.expression(), FormBounds::API).unwrap();
        assert!(twenty < ten * 3, "linear, not quadratic: {ten} {twenty}");
    }
}
