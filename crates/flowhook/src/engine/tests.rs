//! Engine tests: scenarios for each command, then the invariants as properties over random
//! definitions and random command sequences.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use serde_json::json;

use super::definition::{self, Definition, RoleCatalog};
use super::machine::*;
use super::resolve::{DirectorySnapshot, Person};
use super::EngineError;

fn person(id: &str, manager: Option<&str>, admin: bool) -> Person {
    Person {
        user_id: id.into(),
        name: format!("name of {id}"),
        avatar: String::new(),
        manager_id: manager.map(Into::into),
        admin,
    }
}

/// u0..u5; u0 → u1 → u2 is a manager chain; `hr` = [u4, u5]; `admin` is an admin.
fn directory() -> DirectorySnapshot {
    let mut d = DirectorySnapshot::default();
    for p in [
        person("u0", Some("u1"), false),
        person("u1", Some("u2"), false),
        person("u2", None, false),
        person("u3", Some("u2"), false),
        person("u4", None, false),
        person("u5", None, false),
        person("admin", None, true),
    ] {
        d.people.insert(p.user_id.clone(), p);
    }
    d.roles.insert("hr".into(), vec!["u4".into(), "u5".into()]);
    d
}

fn def(nodes: serde_json::Value) -> Definition {
    let doc = json!({"processCode": "P", "name": "p", "nodes": nodes});
    definition::validate(&doc, &directory()).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn begin(d: &Definition, originator: &str, form: &[(&str, &str)]) -> (Instance, Vec<Event>) {
    let form = form
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
    start(
        d,
        Start {
            id: "i1".into(),
            corp_id: "c".into(),
            app_type: "APP".into(),
            process_version: 1,
            form_instance_id: "f1".into(),
            title: "t".into(),
            originator_id: originator.into(),
            form_data: form,
        },
        &directory(),
        1,
    )
    .unwrap()
}

fn act(inst: &Instance, d: &Definition, actor: &str, c: Command) -> (Instance, Vec<Event>) {
    inst.apply(d, actor, &c, &directory(), 2)
        .unwrap_or_else(|e| panic!("{c:?} by {actor}: {e}"))
}

fn open(inst: &Instance) -> Vec<(String, String)> {
    inst.open_tasks()
        .map(|t| (t.user_id.clone(), t.node_id.clone()))
        .collect()
}

fn task_of(inst: &Instance, user: &str) -> String {
    inst.open_tasks()
        .find(|t| t.user_id == user)
        .unwrap()
        .id
        .clone()
}

fn agree(t: String) -> Command {
    Command::Agree {
        task_id: t,
        remark: None,
    }
}

#[test]
fn or_sign_first_action_cancels_the_others() {
    let d = def(
        json!([{"id": "a", "type": "approval", "name": "A", "mode": "or",
                        "approvers": [{"type": "users", "ids": ["u3", "u4"]}]}]),
    );
    let (i, ev) = begin(&d, "u0", &[]);
    assert_eq!(ev.len(), 2);
    let (i, ev) = act(&i, &d, "u4", agree(task_of(&i, "u4")));
    assert_eq!(i.status, Status::Approved);
    assert!(matches!(&ev[0].kind, EventKind::TaskFinished { actor, .. } if actor == "u4"));
    assert!(matches!(&ev[1].kind, EventKind::TaskCancelled { by, .. } if by == "u4"));
    assert_eq!(ev.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
}

/// Issue 18 item 1: forward or append to someone already holding (or waiting for) a task at
/// the node, or appending oneself, is refused — they would have to act twice.
#[test]
fn forward_or_append_to_an_existing_assignee_is_refused() {
    let d = def(
        json!([{"id": "a", "type": "approval", "name": "A", "mode": "all",
                        "approvers": [{"type": "users", "ids": ["u3", "u4", "u5"]}]}]),
    );
    let (i, _) = begin(&d, "u0", &[]);
    let t3 = task_of(&i, "u3");
    let already = |user: &str| EngineError::AlreadyAssignee {
        user: user.into(),
        node: "a".into(),
    };
    let forward = |to: &str| Command::Forward {
        task_id: t3.clone(),
        to: to.into(),
        remark: None,
    };
    let append = |users: &[&str], position| Command::Append {
        task_id: t3.clone(),
        users: users.iter().map(|u| u.to_string()).collect(),
        position,
    };
    let refused = |c: Command| i.apply(&d, "u3", &c, &directory(), 2).unwrap_err();
    assert_eq!(refused(forward("u4")), already("u4"));
    assert_eq!(
        refused(append(&["u3"], AppendPosition::Before)),
        already("u3")
    );
    assert_eq!(
        refused(append(&["u3"], AppendPosition::After)),
        already("u3")
    );
    assert_eq!(
        refused(append(&["u1", "u5"], AppendPosition::After)),
        already("u5")
    );
    assert_eq!(
        refused(append(&["u1", "u1"], AppendPosition::After)),
        already("u1")
    );
    // Someone new is fine, and then holds the node too.
    let (i2, _) = act(&i, &d, "u3", forward("u1"));
    assert_eq!(open(&i2).len(), 3);
    let t4 = task_of(&i2, "u4");
    let again = Command::Forward {
        task_id: t4,
        to: "u1".into(),
        remark: None,
    };
    assert_eq!(
        i2.apply(&d, "u4", &again, &directory(), 3).unwrap_err(),
        already("u1")
    );
    // One by one: someone still queued later at the node counts too.
    let d = def(
        json!([{"id": "a", "type": "approval", "name": "A", "mode": "oneByOne",
                        "approvers": [{"type": "users", "ids": ["u3", "u4"]}]}]),
    );
    let (i, _) = begin(&d, "u0", &[]);
    let c = Command::Forward {
        task_id: task_of(&i, "u3"),
        to: "u4".into(),
        remark: None,
    };
    assert_eq!(
        i.apply(&d, "u3", &c, &directory(), 2).unwrap_err(),
        already("u4")
    );
}

/// Issue 18 item 2: a `whenEmpty: error` node is checked when the instance starts, for every
/// node the form data leads to — not only the first — and refused naming it; found empty later
/// (the directory changed), it goes to the admins with a note instead of blocking the approver
/// before it.
#[test]
fn when_empty_error_is_checked_at_the_start_and_later_goes_to_the_admins() {
    let d = def(json!([
        {"id": "l1", "type": "approval", "name": "L1", "whenEmpty": "error",
         "approvers": [{"type": "leader", "level": 1}]},
        {"id": "l2", "type": "approval", "name": "L2", "whenEmpty": "error",
         "approvers": [{"type": "leader", "level": 2}]}
    ]));
    // u1's leader is u2, who has none: l2 would be empty.
    let err = start(
        &d,
        Start {
            id: "i".into(),
            corp_id: "c".into(),
            app_type: "A".into(),
            process_version: 1,
            form_instance_id: "f".into(),
            title: "t".into(),
            originator_id: "u1".into(),
            form_data: BTreeMap::new(),
        },
        &directory(),
        1,
    );
    assert_eq!(err.unwrap_err(), EngineError::NoApprover("l2".into()));

    // u0: l1 = u1, l2 = u2. Then u1 loses their manager before agreeing.
    let (i, _) = begin(&d, "u0", &[]);
    let mut dir = directory();
    dir.people.get_mut("u1").unwrap().manager_id = None;
    let (i2, ev) = i
        .apply(&d, "u1", &agree(task_of(&i, "u1")), &dir, 2)
        .expect("u1's agree is not blocked");
    assert_eq!(open(&i2), [("admin".to_string(), "l2".to_string())]);
    let t = i2.open_tasks().next().unwrap();
    assert!(t.note.as_deref().unwrap().contains("admins"), "{t:?}");
    assert!(matches!(&ev[1].kind, EventKind::TaskCreated { .. }));
}

#[test]
fn countersign_needs_everyone_and_one_disagree_rejects() {
    let d = def(
        json!([{"id": "a", "type": "approval", "name": "A", "mode": "all",
                        "approvers": [{"type": "role", "role": "hr"}]}]),
    );
    let (i, _) = begin(&d, "u0", &[]);
    let (i2, _) = act(&i, &d, "u4", agree(task_of(&i, "u4")));
    assert_eq!(i2.status, Status::Running);
    let (i3, _) = act(&i2, &d, "u5", agree(task_of(&i2, "u5")));
    assert_eq!(i3.status, Status::Approved);
    let (r, ev) = act(
        &i,
        &d,
        "u5",
        Command::Disagree {
            task_id: task_of(&i, "u5"),
            remark: Some("no".into()),
        },
    );
    assert_eq!(r.status, Status::Rejected);
    assert_eq!(r.open_tasks().count(), 0);
    assert!(matches!(&ev[1].kind, EventKind::TaskCancelled { by, .. } if by == "u5"));
}

#[test]
fn one_by_one_follows_the_leader_chain() {
    let d = def(
        json!([{"id": "a", "type": "approval", "name": "A", "mode": "oneByOne",
                        "approvers": [{"type": "leader", "level": 1}, {"type": "leader", "level": 2}]}]),
    );
    let (i, _) = begin(&d, "u0", &[]);
    assert_eq!(open(&i), [("u1".to_string(), "a".to_string())]);
    let (i, _) = act(&i, &d, "u1", agree(task_of(&i, "u1")));
    assert_eq!(open(&i), [("u2".to_string(), "a".to_string())]);
    let (i, _) = act(&i, &d, "u2", agree(task_of(&i, "u2")));
    assert_eq!(i.status, Status::Approved);
}

#[test]
fn route_parallel_and_carbon() {
    let d = def(json!([
        {"id": "r", "type": "route", "name": "R", "branches": [
            {"name": "long", "condition": "days > 3", "nodes": [
                {"id": "hr", "type": "approval", "name": "HR", "approvers": [{"type": "role", "role": "hr"}], "mode": "all"}]},
            {"name": "short", "default": true, "nodes": []}]},
        {"id": "p", "type": "parallel", "name": "P", "branches": [
            {"name": "x", "nodes": [{"id": "x", "type": "operator", "name": "X", "approvers": [{"type": "users", "ids": ["u3"]}]}]},
            {"name": "y", "nodes": [{"id": "cc", "type": "carbon", "name": "CC", "recipients": [{"type": "originator"}]}]}]}
    ]));
    let (short, _) = begin(&d, "u0", &[("days", "2")]);
    assert_eq!(open(&short), [("u3".to_string(), "x".to_string())]);
    assert_eq!(short.ccs.len(), 1, "the cc branch ran at once");
    let (done, _) = act(&short, &d, "u3", agree(task_of(&short, "u3")));
    assert_eq!(
        done.status,
        Status::Approved,
        "the join waited for the operator branch only"
    );

    let (long, _) = begin(&d, "u0", &[("days", "5")]);
    assert_eq!(open(&long).len(), 2);
    assert!(open(&long).iter().all(|(_, n)| n == "hr"));
}

#[test]
fn forward_append_and_return() {
    let d = def(json!([
        {"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "users", "ids": ["u3"]}]},
        {"id": "b", "type": "approval", "name": "B", "approvers": [{"type": "users", "ids": ["u4"]}]}
    ]));
    let (i, _) = begin(&d, "u0", &[]);
    let (i, ev) = act(
        &i,
        &d,
        "u3",
        Command::Forward {
            task_id: task_of(&i, "u3"),
            to: "u5".into(),
            remark: None,
        },
    );
    assert_eq!(open(&i), [("u5".to_string(), "a".to_string())]);
    assert_eq!(ev.len(), 2, "finished + created");
    // Append before: u1 first, then back to u5.
    let (i, _) = act(
        &i,
        &d,
        "u5",
        Command::Append {
            task_id: task_of(&i, "u5"),
            users: vec!["u1".into()],
            position: AppendPosition::Before,
        },
    );
    let (i, _) = act(&i, &d, "u1", agree(task_of(&i, "u1")));
    assert_eq!(open(&i), [("u5".to_string(), "a".to_string())]);
    let (i, _) = act(&i, &d, "u5", agree(task_of(&i, "u5")));
    assert_eq!(open(&i), [("u4".to_string(), "b".to_string())]);
    // Return to node a, then to the originator, who resubmits.
    let (i, _) = act(
        &i,
        &d,
        "u4",
        Command::Return {
            task_id: task_of(&i, "u4"),
            target: ReturnTarget::Node("a".into()),
        },
    );
    assert_eq!(open(&i), [("u3".to_string(), "a".to_string())]);
    let (i, _) = act(
        &i,
        &d,
        "u3",
        Command::Return {
            task_id: task_of(&i, "u3"),
            target: ReturnTarget::Originator,
        },
    );
    assert_eq!(open(&i), [("u0".to_string(), ORIGINATOR_NODE.to_string())]);
    let (i, _) = act(&i, &d, "u0", agree(task_of(&i, "u0")));
    assert_eq!(open(&i), [("u3".to_string(), "a".to_string())]);
    // Return to a node not yet reached is refused and changes nothing.
    let err = i.apply(
        &d,
        "u3",
        &Command::Return {
            task_id: task_of(&i, "u3"),
            target: ReturnTarget::Node("b".into()),
        },
        &directory(),
        3,
    );
    assert!(matches!(err, Err(EngineError::Invalid(_))), "{err:?}");
}

#[test]
fn withdraw_terminate_delete_are_authorised() {
    let d = def(
        json!([{"id": "a", "type": "approval", "name": "A", "approvers": [{"type": "users", "ids": ["u3"]}]}]),
    );
    let (i, _) = begin(&d, "u0", &[]);
    let t = task_of(&i, "u3");
    let refuse = |actor: &str, c: Command| i.apply(&d, actor, &c, &directory(), 2).unwrap_err();
    assert!(matches!(
        refuse("u3", Command::Withdraw),
        EngineError::Forbidden(_)
    ));
    assert!(matches!(
        refuse("u0", Command::Terminate),
        EngineError::Forbidden(_)
    ));
    assert!(matches!(
        refuse("u0", Command::Delete),
        EngineError::Forbidden(_)
    ));
    assert!(matches!(
        refuse("u4", agree(t.clone())),
        EngineError::Forbidden(_)
    ));
    let (w, _) = act(&i, &d, "u0", Command::Withdraw);
    assert_eq!((w.status, w.open_tasks().count()), (Status::Withdrawn, 0));
    assert!(matches!(
        w.apply(&d, "u3", &agree(t.clone()), &directory(), 3),
        Err(EngineError::Conflict(_))
    ));
    let (x, ev) = act(&i, &d, "admin", Command::Delete);
    assert_eq!(ev.len(), 1);
    assert!(matches!(ev[0].kind, EventKind::InstanceDeleted { .. }));
    assert_eq!(x.tasks[&t].status, TaskStatus::Deleted);
    assert!(matches!(
        x.apply(&d, "admin", &Command::Delete, &directory(), 3),
        Err(EngineError::NotFound(_))
    ));
}

#[test]
fn empty_approver_policies() {
    let make = |policy: &str| {
        def(
            json!([{"id": "a", "type": "approval", "name": "A", "whenEmpty": policy,
        "approvers": [{"type": "formField", "field": "who"}]}]),
        )
    };
    assert_eq!(
        begin(&make("autoApprove"), "u0", &[]).0.status,
        Status::Approved
    );
    assert_eq!(
        open(&begin(&make("admin"), "u0", &[]).0),
        [("admin".to_string(), "a".to_string())]
    );
    let err = start(
        &make("error"),
        Start {
            id: "i".into(),
            corp_id: "c".into(),
            app_type: "A".into(),
            process_version: 1,
            form_instance_id: "f".into(),
            title: "t".into(),
            originator_id: "u0".into(),
            form_data: BTreeMap::new(),
        },
        &directory(),
        1,
    );
    assert_eq!(err.unwrap_err(), EngineError::NoApprover("a".into()));
    assert_eq!(
        open(&begin(&make("error"), "u0", &[("who", "[\"u4\",\"u5\"]")]).0).len(),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

/// The form field `formField` approvers name in the properties.
const WHO: &str = "who";

/// The `who` field of the form: left out, null, a known user, an unknown one, or a list of both.
fn who_strategy() -> impl Strategy<Value = Option<Option<String>>> {
    prop_oneof![
        Just(None),
        Just(Some(None)),
        prop_oneof![Just("u3"), Just("u4"), Just("admin")].prop_map(|u| Some(Some(u.to_string()))),
        Just(Some(Some("ghost".to_string()))),
        Just(Some(Some(r#"["ghost","u5"]"#.to_string()))),
    ]
}

/// The `whenEmpty: error` task node `id` of `d`, if there is one.
fn error_node<'d>(nodes: &'d [definition::Node], id: &str) -> Option<&'d definition::TaskNode> {
    nodes.iter().find_map(|node| match node {
        definition::Node::Approval(n) | definition::Node::Operator(n) => {
            (n.id == id && n.when_empty == definition::EmptyPolicy::Error).then_some(n)
        }
        definition::Node::Carbon(_) => None,
        definition::Node::Route(r) => r.branches.iter().find_map(|b| error_node(&b.nodes, id)),
        definition::Node::Parallel(p) => p.branches.iter().find_map(|b| error_node(&b.nodes, id)),
    })
}

/// A random node tree (ids assigned afterwards).
fn node_strategy() -> impl Strategy<Value = serde_json::Value> {
    let source = prop_oneof![
        proptest::sample::subsequence(vec!["u0", "u1", "u2", "u3", "u4", "u5"], 1..4)
            .prop_map(|ids| json!({"type": "users", "ids": ids})),
        Just(json!({"type": "role", "role": "hr"})),
        (1u32..3).prop_map(|l| json!({"type": "leader", "level": l})),
        Just(json!({"type": "originator"})),
        Just(json!({"type": "formField", "field": WHO})),
    ];
    let sources = proptest::collection::vec(source, 1..3);
    let leaf = prop_oneof![
        (sources.clone(), prop_oneof![Just("or"), Just("all"), Just("oneByOne")], prop_oneof![Just("autoApprove"), Just("admin"), Just("error")], any::<bool>())
            .prop_map(|(s, mode, empty, op)| json!({"type": if op { "operator" } else { "approval" }, "name": "n",
                "approvers": s, "mode": mode, "whenEmpty": empty})),
        sources.prop_map(|s| json!({"type": "carbon", "name": "cc", "recipients": s})),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        let seq = proptest::collection::vec(inner, 0..3);
        prop_oneof![
            (seq.clone(), seq.clone(), 0..10i32).prop_map(|(a, b, k)| json!({"type": "route", "name": "r", "branches": [
                {"name": "c", "condition": format!("n > {k}"), "nodes": a},
                {"name": "d", "default": true, "nodes": b}]})),
            proptest::collection::vec(seq, 1..4).prop_map(|bs| json!({"type": "parallel", "name": "p",
                "branches": bs.into_iter().map(|n| json!({"name": "b", "nodes": n})).collect::<Vec<_>>()})),
        ]
    })
}

fn assign_ids(v: &mut serde_json::Value, next: &mut u32) {
    if let Some(obj) = v.as_object_mut() {
        if obj.contains_key("type") && obj.contains_key("name") && !obj.contains_key("nodes") {
            obj.insert("id".into(), json!(format!("n{next}")));
            *next += 1;
        }
        for (_, child) in obj.iter_mut() {
            assign_ids(child, next);
        }
    } else if let Some(arr) = v.as_array_mut() {
        for child in arr {
            assign_ids(child, next);
        }
    }
}

fn definition_strategy() -> impl Strategy<Value = Definition> {
    proptest::collection::vec(node_strategy(), 1..4).prop_map(|nodes| {
        let mut nodes = json!(nodes);
        assign_ids(&mut nodes, &mut 0);
        def(nodes)
    })
}

/// The commands that make sense now, valid and invalid, in a stable order.
fn candidates(inst: &Instance, users: &[&str]) -> Vec<(String, Command)> {
    let mut out = Vec::new();
    for t in inst.open_tasks() {
        let u = t.user_id.clone();
        let id = t.id.clone();
        out.push((
            u.clone(),
            Command::Agree {
                task_id: id.clone(),
                remark: None,
            },
        ));
        out.push((
            u.clone(),
            Command::Agree {
                task_id: id.clone(),
                remark: None,
            },
        ));
        out.push((
            u.clone(),
            Command::Disagree {
                task_id: id.clone(),
                remark: None,
            },
        ));
        for other in users.iter().filter(|o| **o != u).take(2) {
            out.push((
                u.clone(),
                Command::Forward {
                    task_id: id.clone(),
                    to: other.to_string(),
                    remark: None,
                },
            ));
            out.push((
                u.clone(),
                Command::Append {
                    task_id: id.clone(),
                    users: vec![other.to_string()],
                    position: AppendPosition::Before,
                },
            ));
            out.push((
                u.clone(),
                Command::Append {
                    task_id: id.clone(),
                    users: vec![other.to_string()],
                    position: AppendPosition::After,
                },
            ));
            out.push((
                other.to_string(),
                Command::Agree {
                    task_id: id.clone(),
                    remark: None,
                },
            )); // wrong actor
        }
        out.push((
            u.clone(),
            Command::Return {
                task_id: id.clone(),
                target: ReturnTarget::Originator,
            },
        ));
        for c in inst.completed.iter().take(2) {
            out.push((
                u.clone(),
                Command::Return {
                    task_id: id.clone(),
                    target: ReturnTarget::Node(c.clone()),
                },
            ));
        }
    }
    out.push((inst.originator_id.clone(), Command::Withdraw));
    out.push(("admin".into(), Command::Terminate));
    out.push(("admin".into(), Command::Delete));
    out.push(("u5".into(), Command::Delete)); // not an admin
    out
}

/// Each user's lists, as a task center shows them.
#[derive(Debug, Default, PartialEq)]
struct Lists {
    todo: BTreeMap<String, BTreeSet<String>>,
    done: BTreeMap<String, BTreeSet<String>>,
    cc: BTreeMap<String, BTreeSet<String>>,
}

fn lists_from_state(inst: &Instance) -> Lists {
    let mut l = Lists::default();
    if inst.status == Status::Deleted {
        return l;
    }
    for t in inst.tasks.values() {
        match t.status {
            TaskStatus::Open => {
                l.todo
                    .entry(t.user_id.clone())
                    .or_default()
                    .insert(t.id.clone());
            }
            TaskStatus::Finished => {
                l.done
                    .entry(t.user_id.clone())
                    .or_default()
                    .insert(t.id.clone());
            }
            _ => {}
        }
    }
    for c in &inst.ccs {
        l.cc.entry(c.user_id.clone())
            .or_default()
            .insert(c.id.clone());
    }
    l
}

/// Rebuilds the lists from the event log alone (as a receiver does); `owner` maps ids to users.
fn lists_from_events(events: &[Event], owner: &HashMap<String, String>) -> Lists {
    let mut l = Lists::default();
    for e in events {
        match &e.kind {
            EventKind::TaskCreated { task_id } => {
                l.todo
                    .entry(owner[task_id].clone())
                    .or_default()
                    .insert(task_id.clone());
            }
            EventKind::TaskFinished { task_id, .. } => {
                l.todo.get_mut(&owner[task_id]).unwrap().remove(task_id);
                l.done
                    .entry(owner[task_id].clone())
                    .or_default()
                    .insert(task_id.clone());
            }
            EventKind::TaskCancelled { task_id, .. } => {
                l.todo.get_mut(&owner[task_id]).unwrap().remove(task_id);
            }
            EventKind::InstanceDeleted { .. } => l = Lists::default(),
            EventKind::Cc { cc_id } => {
                l.cc.entry(owner[cc_id].clone())
                    .or_default()
                    .insert(cc_id.clone());
            }
        }
    }
    for m in [&mut l.todo, &mut l.done, &mut l.cc] {
        m.retain(|_, s| !s.is_empty());
    }
    l
}

fn check_invariants(inst: &Instance, log: &[Event]) -> Result<(), TestCaseError> {
    // seq is gap-free from 1.
    for (i, e) in log.iter().enumerate() {
        prop_assert_eq!(e.seq, i as u64 + 1);
    }
    prop_assert_eq!(inst.seq, log.len() as u64);
    // Every created task has at most one terminal event, and none before its creation.
    let mut created = BTreeSet::new();
    let mut terminated = BTreeSet::new();
    let mut deleted = false;
    for e in log {
        prop_assert!(!deleted, "no event after the instance's deletion");
        match &e.kind {
            EventKind::TaskCreated { task_id } => {
                prop_assert!(created.insert(task_id.clone()), "created twice")
            }
            EventKind::TaskFinished { task_id, .. } | EventKind::TaskCancelled { task_id, .. } => {
                prop_assert!(created.contains(task_id), "terminal before created");
                prop_assert!(
                    terminated.insert(task_id.clone()),
                    "two terminal events for {}",
                    task_id
                );
            }
            EventKind::InstanceDeleted { .. } => deleted = true,
            EventKind::Cc { .. } => {}
        }
    }
    let open: BTreeSet<String> = inst.open_tasks().map(|t| t.id.clone()).collect();
    if deleted {
        prop_assert!(open.is_empty());
    } else {
        let expected: BTreeSet<String> = created.difference(&terminated).cloned().collect();
        prop_assert_eq!(&open, &expected, "open tasks = created - terminated");
    }
    if inst.status != Status::Running {
        prop_assert!(
            open.is_empty(),
            "a {:?} instance has open tasks",
            inst.status
        );
    }
    let owner: HashMap<String, String> = inst
        .tasks
        .values()
        .map(|t| (t.id.clone(), t.user_id.clone()))
        .chain(inst.ccs.iter().map(|c| (c.id.clone(), c.user_id.clone())))
        .collect();
    prop_assert_eq!(
        lists_from_events(log, &owner),
        lists_from_state(inst),
        "replay rebuilds the lists"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_command_sequences(
        d in definition_strategy(),
        originator in prop_oneof![Just("u0"), Just("u1"), Just("u3")],
        n in 0..10i32,
        who in who_strategy(),
        choices in proptest::collection::vec(any::<proptest::sample::Index>(), 1..60),
    ) {
        let dir = directory();
        let mut form: DataMap = [("n".to_string(), Some(n.to_string()))].into();
        if let Some(who) = who {
            form.insert(WHO.to_string(), who);
        }
        let started = start(&d, Start {
            id: "i".into(), corp_id: "c".into(), app_type: "A".into(), process_version: 1,
            form_instance_id: "f".into(), title: "t".into(), originator_id: originator.into(),
            form_data: form.clone(),
        }, &dir, 0);
        let (mut inst, mut log) = match started {
            Ok(started) => started,
            // Refused: only for a `whenEmpty: error` node that has nobody, and nothing exists.
            Err(EngineError::NoApprover(id)) => {
                let n = error_node(&d.nodes, &id);
                prop_assert!(n.is_some(), "refused for `{}`, not a `whenEmpty: error` node", id);
                prop_assert!(
                    super::resolve::resolve(&n.unwrap().approvers, originator, &form, &dir).is_empty(),
                    "refused for `{}`, which has approvers", id
                );
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("start refused: {e}"))),
        };
        check_invariants(&inst, &log)?;
        let users = ["u0", "u1", "u2", "u3", "u4", "u5"];
        for (step, choice) in choices.iter().enumerate() {
            if inst.status == Status::Deleted { break; }
            let options = candidates(&inst, &users);
            let (actor, cmd) = &options[choice.index(options.len())];
            match inst.apply(&d, actor, cmd, &dir, step as i64 + 1) {
                Ok((next, events)) => {
                    prop_assert_eq!(next.seq, inst.seq + events.len() as u64);
                    log.extend(events);
                    inst = next;
                }
                Err(EngineError::Corrupt(why)) => prop_assert!(false, "corrupt state: {}", why),
                Err(_) => {} // refused; `inst` is untouched by construction
            }
            check_invariants(&inst, &log)?;
            // The directory never changes here, and the start checked every `whenEmpty: error`
            // node the form leads to: none is ever handed to the admins with a note.
            prop_assert!(
                inst.tasks.values().all(|t| t.note.is_none()),
                "a task with a note, the directory unchanged: {:?}",
                inst.tasks.values().find(|t| t.note.is_some())
            );
        }
    }

    #[test]
    fn every_random_definition_is_valid_and_round_trips(d in definition_strategy()) {
        let text = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(definition::parse(&text, definition::Format::Json, &directory()).unwrap(), d);
    }
}

#[test]
fn role_catalog_is_the_directory() {
    assert!(directory().role_exists("hr"));
    assert!(!directory().role_exists("finance"));
}
