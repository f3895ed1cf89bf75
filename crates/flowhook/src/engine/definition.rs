//! Process definitions: the document (JSON or YAML) after Yida's designer, and its validation.
//!
//! A definition is a sequence of nodes; `route` and `parallel` nodes hold branches that are
//! sequences again. Validation walks the raw document so it can report *every* problem with its
//! JSON path (`$.nodes[2].branches[0].condition`), not just the first one serde meets; only a
//! document without problems becomes a typed [`Definition`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::condition;
use super::limits;

/// A validated process definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    pub process_code: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_uuid: Option<String>,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Node {
    /// Approvers decide (agree / disagree).
    Approval(TaskNode),
    /// Handlers submit; they cannot reject.
    Operator(TaskNode),
    /// Cc recipients are notified; no task.
    Carbon(CarbonNode),
    /// Conditional branches: the first whose condition holds, else the default.
    Route(RouteNode),
    /// Branches that all run; the node completes when every branch has.
    Parallel(ParallelNode),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskNode {
    pub id: String,
    pub name: String,
    pub approvers: Vec<Source>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub when_empty: EmptyPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CarbonNode {
    pub id: String,
    pub name: String,
    pub recipients: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNode {
    pub id: String,
    pub name: String,
    pub branches: Vec<RouteBranch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteBranch {
    pub name: String,
    /// A CEL expression over the form data; absent on the default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<condition::Condition>,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParallelNode {
    pub id: String,
    pub name: String,
    pub branches: Vec<Branch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Branch {
    pub name: String,
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// Who gets a task (or a cc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Source {
    Users {
        ids: Vec<String>,
    },
    Role {
        role: String,
    },
    /// The originator's leader `level` steps up the manager chain (1 = direct manager, at most
    /// [`MAX_LEADER_LEVEL`]).
    Leader {
        #[serde(default = "one")]
        level: u32,
    },
    Originator,
    /// A member field of the form: its value is a user id, or a JSON array of user ids.
    FormField {
        field: String,
    },
}

fn one() -> u32 {
    1
}

/// The highest leader level a definition may ask for (real manager chains are a dozen deep).
pub const MAX_LEADER_LEVEL: u32 = 20;

/// Multi-approver mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// 或签: the first action decides; the others' tasks are cancelled.
    #[default]
    Or,
    /// 会签: everyone must agree; one disagree rejects.
    All,
    /// 依次: one after another.
    OneByOne,
}

/// What an approval node does when its approver set resolves to nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EmptyPolicy {
    AutoApprove,
    Admin,
    #[default]
    Error,
}

/// One problem of a document, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// JSON path, e.g. `$.nodes[1].branches[0].condition`.
    pub path: String,
    pub message: String,
}

/// Which roles exist (validation refuses unknown ones).
pub trait RoleCatalog {
    fn role_exists(&self, role: &str) -> bool;
}

/// Document formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Parses and validates a document; every problem is reported.
pub fn parse(
    text: &str,
    format: Format,
    roles: &dyn RoleCatalog,
) -> Result<Definition, Vec<Problem>> {
    let value: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| {
            vec![Problem {
                path: "$".into(),
                message: format!("not JSON: {e}"),
            }]
        })?,
        Format::Yaml => serde_norway::from_str(text).map_err(|e| {
            vec![Problem {
                path: "$".into(),
                message: format!("not YAML: {e}"),
            }]
        })?,
    };
    validate(&value, roles)
}

/// Validates a parsed document.
pub fn validate(doc: &Value, roles: &dyn RoleCatalog) -> Result<Definition, Vec<Problem>> {
    let mut v = Validator {
        problems: Vec::new(),
        ids: HashSet::new(),
        roles,
        cost: 0,
    };
    let Some(obj) = doc.as_object() else {
        return Err(vec![Problem {
            path: "$".into(),
            message: "a definition is an object".into(),
        }]);
    };
    // PostgreSQL cannot store a NUL anywhere in the document: one problem, before the rest
    // (whose checks would report the same character again).
    if let Some(path) = limits::nul_in(doc, "$") {
        return Err(vec![Problem {
            path,
            message: "contains a NUL character (U+0000), which cannot be stored".into(),
        }]);
    }
    for key in obj.keys() {
        if !["processCode", "name", "formUuid", "nodes"].contains(&key.as_str()) {
            v.problem(&format!("$.{key}"), "unknown field");
        }
    }
    match obj.get("processCode") {
        Some(Value::String(s)) => v.check("$.processCode", limits::id(s)),
        _ => v.problem("$.processCode", "required: a non-empty string"),
    }
    match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => v.name("$.name", s),
        _ => v.problem("$.name", "required: a non-empty string"),
    }
    match obj.get("formUuid") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => v.check("$.formUuid", limits::id(s)),
        Some(_) => v.problem("$.formUuid", "a string"),
    }
    match obj.get("nodes") {
        Some(Value::Array(nodes)) if !nodes.is_empty() => v.sequence("$.nodes", nodes),
        _ => v.problem("$.nodes", "required: a non-empty list of nodes"),
    }
    if v.cost > condition::MAX_DEFINITION_COST {
        v.problem(
            "$.nodes",
            format!(
                "the route conditions together may take up to {} units of work, more than the {} \
                 allowed for one definition: use fewer or simpler conditions",
                v.cost,
                condition::MAX_DEFINITION_COST
            ),
        );
    }
    if !v.problems.is_empty() {
        return Err(v.problems);
    }
    serde_json::from_value(doc.clone()).map_err(|e| {
        vec![Problem {
            path: "$".into(),
            message: e.to_string(),
        }]
    })
}

struct Validator<'r> {
    problems: Vec<Problem>,
    ids: HashSet<String>,
    roles: &'r dyn RoleCatalog,
    /// The work bound of every route condition so far (see [`condition::estimate`]).
    cost: u64,
}

impl Validator<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Records `result`'s problem, if any, at `path`.
    fn check(&mut self, path: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.problem(path, e);
        }
    }

    fn name(&mut self, path: &str, name: &str) {
        self.check(path, limits::line(name, limits::NAME_MAX_CHARS));
    }

    fn sequence(&mut self, path: &str, nodes: &[Value]) {
        for (i, node) in nodes.iter().enumerate() {
            self.node(&format!("{path}[{i}]"), node);
        }
    }

    fn node(&mut self, path: &str, node: &Value) {
        let Some(obj) = node.as_object() else {
            return self.problem(path, "a node is an object");
        };
        if let Some(name) = obj.get("name").and_then(Value::as_str) {
            self.name(&format!("{path}.name"), name);
        }
        match obj.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => {
                if let Err(e) = limits::id(id) {
                    self.problem(&format!("{path}.id"), e);
                } else if id == super::machine::ORIGINATOR_NODE {
                    self.problem(&format!("{path}.id"), "`originator` is reserved");
                } else if !self.ids.insert(id.to_owned()) {
                    self.problem(&format!("{path}.id"), format!("duplicate node id `{id}`"));
                }
            }
            _ => self.problem(&format!("{path}.id"), "required: a non-empty string"),
        }
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "approval" | "operator" => {
                if let Err(e) = serde_json::from_value::<TaskNode>(without_type(node)) {
                    self.problem(path, e.to_string());
                }
                self.sources(&format!("{path}.approvers"), obj.get("approvers"));
            }
            "carbon" => {
                if let Err(e) = serde_json::from_value::<CarbonNode>(without_type(node)) {
                    self.problem(path, e.to_string());
                }
                self.sources(&format!("{path}.recipients"), obj.get("recipients"));
            }
            "route" => self.route(path, obj),
            "parallel" => self.parallel(path, obj),
            "" => self.problem(&format!("{path}.type"), "required: the node type"),
            other => self.problem(
                &format!("{path}.type"),
                format!("unknown node type `{other}`: expected approval, operator, carbon, route or parallel"),
            ),
        }
    }

    fn sources(&mut self, path: &str, sources: Option<&Value>) {
        let Some(Value::Array(list)) = sources else {
            return self.problem(path, "required: a list of sources");
        };
        if list.is_empty() {
            self.problem(path, "at least one source is required");
        }
        for (i, s) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match serde_json::from_value::<Source>(s.clone()) {
                Err(e) => self.problem(&p, e.to_string()),
                Ok(Source::Role { role }) if limits::id(&role).is_err() => {
                    self.check(&format!("{p}.role"), limits::id(&role))
                }
                Ok(Source::Users { ids }) if ids.iter().any(|u| limits::id(u).is_err()) => {
                    for (j, u) in ids.iter().enumerate() {
                        self.check(&format!("{p}.ids[{j}]"), limits::id(u));
                    }
                }
                Ok(Source::FormField { field }) if limits::form_key(&field).is_err() => {
                    self.check(&format!("{p}.field"), limits::form_key(&field))
                }
                Ok(Source::Role { role }) if !self.roles.role_exists(&role) => {
                    self.problem(&format!("{p}.role"), format!("unknown role `{role}`"))
                }
                Ok(Source::Leader { level }) if !(1..=MAX_LEADER_LEVEL).contains(&level) => self
                    .problem(
                        &format!("{p}.level"),
                        format!("levels run from 1 to {MAX_LEADER_LEVEL}, not {level}"),
                    ),
                Ok(Source::Users { ids }) if ids.is_empty() => {
                    self.problem(&format!("{p}.ids"), "at least one user id")
                }
                Ok(_) => {}
            }
        }
    }

    fn branches<'a>(&mut self, path: &str, obj: &'a serde_json::Map<String, Value>) -> &'a [Value] {
        if !obj.get("name").is_some_and(Value::is_string) {
            self.problem(&format!("{path}.name"), "required: a string");
        }
        match obj.get("branches") {
            Some(Value::Array(b)) if !b.is_empty() => b,
            _ => {
                self.problem(&format!("{path}.branches"), "required: a non-empty list");
                &[]
            }
        }
    }

    fn branch_nodes(&mut self, path: &str, branch: &Value) {
        match branch.get("name").and_then(Value::as_str) {
            Some(name) => self.name(&format!("{path}.name"), name),
            None => self.problem(&format!("{path}.name"), "required: a string"),
        }
        match branch.get("nodes") {
            None => {}
            Some(Value::Array(nodes)) => self.sequence(&format!("{path}.nodes"), nodes),
            Some(_) => self.problem(&format!("{path}.nodes"), "a list of nodes"),
        }
    }

    fn route(&mut self, path: &str, obj: &serde_json::Map<String, Value>) {
        let branches = self.branches(path, obj);
        let mut default_at = None;
        for (i, b) in branches.iter().enumerate() {
            let bp = format!("{path}.branches[{i}]");
            let is_default = b.get("default").and_then(Value::as_bool).unwrap_or(false);
            if let Some(d) = default_at {
                self.problem(
                    &bp,
                    format!(
                        "unreachable: it comes after the default branch {d}, which always matches"
                    ),
                );
            }
            if is_default {
                default_at.get_or_insert(i);
                if b.get("condition").is_some_and(|c| !c.is_null()) {
                    self.problem(
                        &format!("{bp}.condition"),
                        "the default branch has no condition",
                    );
                }
            } else {
                match b.get("condition") {
                    Some(Value::String(c)) => match condition::check(c) {
                        Err(e) => self.problem(&format!("{bp}.condition"), e),
                        Ok(checked) => {
                            self.cost = self.cost.saturating_add(checked.cost);
                            if checked.constant == Some(false) {
                                self.problem(
                                    &format!("{bp}.condition"),
                                    "unreachable: the condition is always false",
                                )
                            }
                        }
                    },
                    _ => self.problem(
                        &format!("{bp}.condition"),
                        "required: a CEL expression (or mark the branch `default: true`)",
                    ),
                }
            }
            self.branch_nodes(&bp, b);
        }
        if !branches.is_empty() && default_at.is_none() {
            self.problem(
                &format!("{path}.branches"),
                "a route needs a default branch (`default: true`) taken when no condition holds",
            );
        }
    }

    fn parallel(&mut self, path: &str, obj: &serde_json::Map<String, Value>) {
        let branches = self.branches(path, obj);
        for (i, b) in branches.iter().enumerate() {
            self.branch_nodes(&format!("{path}.branches[{i}]"), b);
        }
    }
}

fn without_type(node: &Value) -> Value {
    let mut n = node.clone();
    if let Some(o) = n.as_object_mut() {
        o.remove("type");
    }
    n
}

impl Definition {
    /// The node at a position (see [`super::machine::Pos`]), if any.
    pub fn node_at(&self, pos: &[u32]) -> Option<&Node> {
        let mut seq: &[Node] = &self.nodes;
        let mut i = 0;
        loop {
            let node = seq.get(*pos.get(i)? as usize)?;
            if i + 1 == pos.len() {
                return Some(node);
            }
            let b = pos[i + 1] as usize;
            seq = match node {
                Node::Route(r) => &r.branches.get(b)?.nodes,
                Node::Parallel(p) => &p.branches.get(b)?.nodes,
                _ => return None,
            };
            i += 2;
        }
    }

    /// The position of the node with this id.
    pub fn find(&self, id: &str) -> Option<Vec<u32>> {
        fn walk(seq: &[Node], id: &str, prefix: &mut Vec<u32>) -> bool {
            for (i, n) in seq.iter().enumerate() {
                prefix.push(i as u32);
                if n.id() == id {
                    return true;
                }
                let branches: Vec<&[Node]> = match n {
                    Node::Route(r) => r.branches.iter().map(|b| b.nodes.as_slice()).collect(),
                    Node::Parallel(p) => p.branches.iter().map(|b| b.nodes.as_slice()).collect(),
                    _ => vec![],
                };
                for (b, nodes) in branches.into_iter().enumerate() {
                    prefix.push(b as u32);
                    if walk(nodes, id, prefix) {
                        return true;
                    }
                    prefix.pop();
                }
                prefix.pop();
            }
            false
        }
        let mut pos = Vec::new();
        walk(&self.nodes, id, &mut pos).then_some(pos)
    }
}

impl Node {
    pub fn id(&self) -> &str {
        match self {
            Node::Approval(n) | Node::Operator(n) => &n.id,
            Node::Carbon(n) => &n.id,
            Node::Route(n) => &n.id,
            Node::Parallel(n) => &n.id,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Node::Approval(n) | Node::Operator(n) => &n.name,
            Node::Carbon(n) => &n.name,
            Node::Route(n) => &n.name,
            Node::Parallel(n) => &n.name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Roles;
    impl RoleCatalog for Roles {
        fn role_exists(&self, role: &str) -> bool {
            role == "hr"
        }
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let doc = serde_json::json!({
            "processCode": "P", "name": "n",
            "nodes": [
                {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "role", "role": "nobody"}]},
                {"id": "b", "type": "teleport", "name": "B"},
                {"id": "r", "type": "route", "name": "R", "branches": [
                    {"name": "big", "condition": "days >", "nodes": []},
                    {"name": "never", "condition": "false"}
                ]},
                {"id": "a", "type": "carbon", "name": "C", "recipients": [{"type": "role", "role": "hr"}]}
            ]
        });
        let problems = validate(&doc, &Roles).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.nodes[0].approvers[0].role",
                "$.nodes[1].type",
                "$.nodes[2].branches[0].condition",
                "$.nodes[2].branches[1].condition",
                "$.nodes[2].branches",
                "$.nodes[3].id",
            ],
            "{problems:#?}"
        );
        assert!(problems[1].message.contains("unknown node type `teleport`"));
        assert!(problems[4].message.contains("default branch"));
    }

    #[test]
    fn ids_names_and_nuls_are_checked_with_their_path() {
        let doc = serde_json::json!({
            "processCode": "p".repeat(129), "name": "n\u{1b}[31m", "formUuid": "FORM 1",
            "nodes": [
                {"id": "a b", "type": "approval", "name": "A\nB",
                 "approvers": [{"type": "users", "ids": ["ok", "no/slash"]},
                               {"type": "role", "role": "hr\r\n"},
                               {"type": "formField", "field": ""}]},
                {"id": "r", "type": "route", "name": "R", "branches": [
                    {"name": "x".repeat(201), "condition": "true"},
                    {"name": "else", "default": true}]}
            ]
        });
        let problems = validate(&doc, &Roles).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.processCode",
                "$.name",
                "$.formUuid",
                "$.nodes[0].name",
                "$.nodes[0].id",
                "$.nodes[0].approvers[0].ids[1]",
                "$.nodes[0].approvers[1].role",
                "$.nodes[0].approvers[2].field",
                "$.nodes[1].branches[0].name",
            ],
            "{problems:#?}"
        );
        assert!(problems[0].message.contains("129 characters long"));
        assert!(problems[1].message.contains("U+001B"));
        // A NUL anywhere: one problem, where it is.
        let doc = serde_json::json!({"processCode": "P", "name": "n", "nodes": [
            {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "originator"}]},
            {"id": "r", "type": "route", "name": "R", "branches": [
                {"name": "c", "condition": "kind == 'a\u{0}'"}, {"name": "d", "default": true}]}]});
        let problems = validate(&doc, &Roles).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "$.nodes[1].branches[0].condition");
        assert!(problems[0].message.contains("NUL"));
    }

    #[test]
    fn leader_levels_are_bounded() {
        let doc = |level: u64| {
            serde_json::json!({"processCode": "P", "name": "n", "nodes": [
                {"id": "a", "type": "approval", "name": "A",
                 "approvers": [{"type": "leader", "level": level}]}]})
        };
        assert!(validate(&doc(1), &Roles).is_ok());
        assert!(validate(&doc(MAX_LEADER_LEVEL as u64), &Roles).is_ok());
        for level in [0, 21, 100_000_000, u32::MAX as u64] {
            let problems = validate(&doc(level), &Roles).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "$.nodes[0].approvers[0].level");
            assert!(problems[0].message.contains("from 1 to 20"), "{problems:?}");
        }
    }

    #[test]
    fn the_conditions_of_a_definition_are_bounded_together() {
        let list = format!("[{}]", vec!["1"; 30].join(","));
        let condition = format!("{list}.all(a, {list}.exists(b, a == b)) && days > 1");
        let one = condition::check(&condition).unwrap().cost;
        assert!(one > condition::MAX_COST / 10 && one <= condition::MAX_COST);
        let doc = |branches: u64| {
            let mut list: Vec<Value> = (0..branches)
                .map(|i| serde_json::json!({"name": format!("b{i}"), "condition": condition}))
                .collect();
            list.push(serde_json::json!({"name": "else", "default": true}));
            serde_json::json!({"processCode": "P", "name": "n", "nodes": [
                {"id": "r", "type": "route", "name": "R", "branches": list}]})
        };
        let within = condition::MAX_DEFINITION_COST / one;
        assert!(validate(&doc(within), &Roles).is_ok());
        let problems = validate(&doc(within + 1), &Roles).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "$.nodes");
        assert!(problems[0].message.contains("together"), "{problems:?}");
    }

    #[test]
    fn yaml_and_json_give_the_same_definition() {
        let yaml = "processCode: leave\nname: Leave\nnodes:\n  - id: lead\n    type: approval\n    name: Leader\n    approvers: [{type: leader, level: 1}]\n    mode: oneByOne\n";
        let d = parse(yaml, Format::Yaml, &Roles).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(parse(&json, Format::Json, &Roles).unwrap(), d);
        assert_eq!(d.find("lead"), Some(vec![0]));
    }
}
