//! The process drawn as an SVG by the server, from the definition alone: nodes top to bottom,
//! a route's branches and a parallel node's lanes side by side between a split and a join.
//! With an instance, each node is marked: `current` (people are working on it), `done` (passed)
//! or neither; the branches an instance took are marked `taken`.
//!
//! Pure: definition (+ instance state) in, markup out. Styles come from the console's style
//! sheet (classes only: the Content-Security-Policy forbids inline styles).

use std::collections::HashSet;
use std::fmt::Write;

use super::i18n::{self as t, Lang};
use crate::engine::definition::{Definition, Mode, Node};
use crate::engine::machine::{Instance, Status, ORIGINATOR_NODE};

const NODE_W: i32 = 176;
const NODE_H: i32 = 50;
const SPLIT_H: i32 = 34;
const GAP: i32 = 26;
const LANE_GAP: i32 = 20;
const LABEL_H: i32 = 20;
const JOIN_H: i32 = 10;
const END_R: i32 = 16;
const MARGIN: i32 = 16;

/// Where an instance stands, by node id.
#[derive(Default)]
struct Marks {
    current: HashSet<String>,
    done: HashSet<String>,
    started: bool,
    resubmit: bool,
    finished: bool,
}

impl Marks {
    fn of(inst: Option<&Instance>) -> Marks {
        let Some(i) = inst else {
            return Marks::default();
        };
        let mut m = Marks {
            started: true,
            finished: i.status != Status::Running,
            ..Marks::default()
        };
        for a in &i.activations {
            if a.node_id == ORIGINATOR_NODE {
                m.resubmit = true;
            } else {
                m.current.insert(a.node_id.clone());
            }
        }
        m.done.extend(i.completed.iter().cloned());
        m.done.extend(i.ccs.iter().map(|c| c.node_id.clone()));
        // A node whose task ended while the instance ended with it (a reject) was reached too.
        for t in i.tasks.values() {
            if t.status != crate::engine::machine::TaskStatus::Open
                && !m.current.contains(&t.node_id)
            {
                m.done.insert(t.node_id.clone());
            }
        }
        m
    }

    fn class(&self, id: &str) -> &'static str {
        if self.current.contains(id) {
            "current"
        } else if self.done.contains(id) {
            "done"
        } else {
            "pending"
        }
    }

    /// Whether any node of `seq` was reached.
    fn reached(&self, seq: &[Node]) -> bool {
        seq.iter().any(|n| {
            self.current.contains(n.id())
                || self.done.contains(n.id())
                || match n {
                    Node::Route(r) => r.branches.iter().any(|b| self.reached(&b.nodes)),
                    Node::Parallel(p) => p.branches.iter().any(|b| self.reached(&b.nodes)),
                    _ => false,
                }
        })
    }
}

/// Width and height of a sequence.
fn measure(seq: &[Node]) -> (i32, i32) {
    let mut w = NODE_W;
    let mut h = 0;
    for (k, n) in seq.iter().enumerate() {
        let (nw, nh) = measure_node(n);
        w = w.max(nw);
        h += nh + if k > 0 { GAP } else { 0 };
    }
    (w, h)
}

/// A branch: its name, its condition (`Some("")` for a route's default), its nodes.
type BranchView<'a> = (&'a str, Option<String>, &'a [Node]);

fn branches_of(n: &Node) -> Option<Vec<BranchView<'_>>> {
    match n {
        Node::Route(r) => Some(
            r.branches
                .iter()
                .map(|b| {
                    (
                        b.name.as_str(),
                        b.condition
                            .as_ref()
                            .map(|c| c.source().to_owned())
                            .or(b.default.then(String::new)),
                        b.nodes.as_slice(),
                    )
                })
                .collect(),
        ),
        Node::Parallel(p) => Some(
            p.branches
                .iter()
                .map(|b| (b.name.as_str(), None, b.nodes.as_slice()))
                .collect(),
        ),
        _ => None,
    }
}

fn measure_node(n: &Node) -> (i32, i32) {
    match branches_of(n) {
        None => (NODE_W, NODE_H),
        Some(branches) => {
            let mut w = 0;
            let mut h = 0;
            for (k, (_, _, nodes)) in branches.iter().enumerate() {
                let (bw, bh) = measure(nodes);
                w += bw + if k > 0 { LANE_GAP } else { 0 };
                h = h.max(bh);
            }
            (w.max(NODE_W), SPLIT_H + GAP + LABEL_H + h + GAP + JOIN_H)
        }
    }
}

/// Shortens a label to about `units` (a CJK character counts two).
fn fit(s: &str, units: usize) -> String {
    let mut used = 0;
    let mut out = String::new();
    for c in s.chars() {
        let w = if (c as u32) >= 0x2E80 { 2 } else { 1 };
        if used + w > units {
            out.push('…');
            return out;
        }
        used += w;
        out.push(c);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Draw<'a> {
    out: String,
    marks: &'a Marks,
    lang: Lang,
    arrow: String,
}

impl Draw<'_> {
    fn line(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, arrow: bool) {
        let _ = write!(
            self.out,
            r#"<path class="edge" d="M{x1} {y1} L{x2} {y2}"{}/>"#,
            if arrow {
                format!(r#" marker-end="url(#{})""#, self.arrow)
            } else {
                String::new()
            }
        );
    }

    /// An elbow: down from (x1, y1) to mid-height, across, down to (x2, y2).
    fn elbow(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, arrow: bool) {
        let mid = (y1 + y2) / 2;
        let _ = write!(
            self.out,
            r#"<path class="edge" d="M{x1} {y1} L{x1} {mid} L{x2} {mid} L{x2} {y2}"{}/>"#,
            if arrow {
                format!(r#" marker-end="url(#{})""#, self.arrow)
            } else {
                String::new()
            }
        );
    }

    /// Draws `seq` centred on `cx` from `y`; returns the bottom.
    fn seq(&mut self, seq: &[Node], cx: i32, mut y: i32) -> i32 {
        for (k, n) in seq.iter().enumerate() {
            if k > 0 {
                self.line(cx, y, cx, y + GAP, true);
                y += GAP;
            }
            y = self.node(n, cx, y);
        }
        y
    }

    fn node(&mut self, n: &Node, cx: i32, y: i32) -> i32 {
        let lang = self.lang;
        let state = self.marks.class(n.id());
        let Some(branches) = branches_of(n) else {
            let (kind, mode) = match n {
                Node::Approval(t) => (lang.t(&t::DG_APPROVAL), Some(t.mode)),
                Node::Operator(t) => (lang.t(&t::DG_OPERATOR), Some(t.mode)),
                _ => (lang.t(&t::DG_CARBON), None),
            };
            let mode = match mode {
                Some(Mode::Or) => format!(" · {}", lang.t(&t::DG_OR)),
                Some(Mode::All) => format!(" · {}", lang.t(&t::DG_ALL)),
                Some(Mode::OneByOne) => format!(" · {}", lang.t(&t::DG_ONE_BY_ONE)),
                None => String::new(),
            };
            let x = cx - NODE_W / 2;
            let _ = write!(
                self.out,
                r#"<g class="node {state} {ty}"><title>{title}</title><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/><text class="kind" x="{cx}" y="{ky}">{kind}{mode}</text><text class="name" x="{cx}" y="{ny}">{name}</text></g>"#,
                ty = match n {
                    Node::Carbon(_) => "carbon",
                    _ => "task",
                },
                title = esc(&format!(
                    "{} ({}) — {}",
                    n.name(),
                    n.id(),
                    state_label(lang, state)
                )),
                ky = y + 18,
                ny = y + 38,
                kind = esc(kind),
                mode = esc(&mode),
                name = esc(&fit(n.name(), 22)),
            );
            return y + NODE_H;
        };
        let parallel = matches!(n, Node::Parallel(_));
        let kind = if parallel {
            lang.t(&t::DG_PARALLEL)
        } else {
            lang.t(&t::DG_ROUTE)
        };
        let split_state = if self.marks.reached(std::slice::from_ref(n)) {
            "done"
        } else {
            "pending"
        };
        let x = cx - NODE_W / 2;
        let _ = write!(
            self.out,
            r#"<g class="split {split_state} {ty}"><title>{title}</title><rect x="{x}" y="{y}" width="{NODE_W}" height="{SPLIT_H}" rx="17"/><text class="name" x="{cx}" y="{ty_y}">{kind}: {name}</text></g>"#,
            ty = if parallel { "parallel" } else { "route" },
            title = esc(&format!("{} ({})", n.name(), n.id())),
            ty_y = y + 22,
            kind = esc(kind),
            name = esc(&fit(n.name(), 14)),
        );
        let widths: Vec<(i32, i32)> = branches.iter().map(|(_, _, b)| measure(b)).collect();
        let total: i32 =
            widths.iter().map(|(w, _)| w).sum::<i32>() + LANE_GAP * (widths.len() as i32 - 1);
        let inner_h = widths.iter().map(|(_, h)| *h).max().unwrap_or(0);
        let top = y + SPLIT_H;
        let lanes_y = top + GAP;
        let join_y = lanes_y + LABEL_H + inner_h + GAP;
        let mut left = cx - total / 2;
        for ((name, cond, nodes), (w, _)) in branches.iter().zip(&widths) {
            let bx = left + w / 2;
            let taken = if self.marks.reached(nodes)
                || (self.marks.reached(std::slice::from_ref(n))
                    && nodes.is_empty()
                    && !parallel
                    && {
                        // An empty branch was taken if no other branch was.
                        !branches.iter().any(|(_, _, b)| self.marks.reached(b))
                    }) {
                " taken"
            } else {
                ""
            };
            self.elbow(cx, top, bx, lanes_y, false);
            let label = match cond {
                Some(c) if c.is_empty() => format!("{} ({})", name, lang.t(&t::DG_DEFAULT)),
                Some(c) => format!("{name}: {c}"),
                None => (*name).to_owned(),
            };
            let _ = write!(
                self.out,
                r#"<text class="branch{taken}" x="{bx}" y="{ly}"><title>{full}</title>{short}</text>"#,
                ly = lanes_y + 14,
                full = esc(&label),
                short = esc(&fit(&label, (*w as usize) / 7)),
            );
            let start = lanes_y + LABEL_H;
            let bottom = if nodes.is_empty() {
                start
            } else {
                self.line(bx, lanes_y + LABEL_H - 4, bx, start, false);
                self.seq(nodes, bx, start)
            };
            self.elbow(bx, bottom, cx, join_y, false);
            left += w + LANE_GAP;
        }
        let _ = write!(
            self.out,
            r#"<rect class="join {split_state}" x="{}" y="{join_y}" width="{}" height="{JOIN_H}" rx="5"/>"#,
            cx - NODE_W / 4,
            NODE_W / 2,
        );
        join_y + JOIN_H
    }
}

fn state_label(lang: Lang, state: &str) -> &'static str {
    match state {
        "current" => lang.t(&t::DG_CURRENT),
        "done" => lang.t(&t::DG_DONE),
        _ => lang.t(&t::DG_PENDING),
    }
}

/// The diagram of `def`, marked with `inst`'s progress when given. `id` makes the SVG's
/// internal ids unique on its page.
pub fn svg(def: &Definition, inst: Option<&Instance>, lang: Lang, id: &str) -> String {
    let marks = Marks::of(inst);
    let (w, h) = measure(&def.nodes);
    let width = w + 2 * MARGIN;
    let cx = width / 2;
    let height = MARGIN + 2 * END_R + GAP + h + GAP + 2 * END_R + MARGIN;
    let mut d = Draw {
        out: String::new(),
        marks: &marks,
        lang,
        arrow: format!("{id}-arrow"),
    };
    let start_state = if marks.resubmit {
        "current"
    } else if marks.started {
        "done"
    } else {
        "pending"
    };
    let y0 = MARGIN + END_R;
    let _ = write!(
        d.out,
        r#"<g class="terminal {start_state}"><title>{t}</title><circle cx="{cx}" cy="{y0}" r="{END_R}"/><text x="{cx}" y="{ty}">{t}</text></g>"#,
        t = esc(lang.t(&t::DG_START)),
        ty = y0 + 4,
    );
    d.line(cx, y0 + END_R, cx, y0 + END_R + GAP, true);
    let bottom = d.seq(&def.nodes, cx, y0 + END_R + GAP);
    let end_y = bottom + GAP + END_R;
    d.line(cx, bottom, cx, bottom + GAP, true);
    let end_state = if marks.finished { "done" } else { "pending" };
    let _ = write!(
        d.out,
        r#"<g class="terminal {end_state}"><title>{t}</title><circle cx="{cx}" cy="{end_y}" r="{END_R}"/><text x="{cx}" y="{ty}">{t}</text></g>"#,
        t = esc(lang.t(&t::DG_END)),
        ty = end_y + 4,
    );
    format!(
        r#"<svg class="diagram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">{title}</title><defs><marker id="{id}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path class="arrowhead" d="M0 0 L10 5 L0 10 z"/></marker></defs>{body}</svg>"#,
        title = esc(&format!("{}: {}", lang.t(&t::DIAGRAM), def.name)),
        body = d.out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_node_and_branch_and_marks_progress() {
        let def: Definition = serde_json::from_value(crate::demo::leave_document()).unwrap();
        let plain = svg(&def, None, Lang::En, "d");
        for name in [
            "Leader approval",
            "HR countersign",
            "Inform HR",
            "More than 3 days",
            "Otherwise",
        ] {
            assert!(plain.contains(name), "{name} in {plain}");
        }
        assert!(!plain.contains("node current"), "no instance, no progress");
        let mut inst: Instance = serde_json::from_value(serde_json::json!({
            "id": "i", "corpId": "c", "appType": "A", "processCode": "leave", "processVersion": 1,
            "formUuid": null, "formInstanceId": "f", "title": "t", "originatorId": "alice",
            "formData": {"days": "5"}, "status": "running", "seq": 2, "nextTask": 2, "nextCc": 0,
            "tasks": {}, "ccs": [], "activations": [{"node_id": "hr", "node_name": "HR countersign",
            "pos": [1, 0, 0], "operator": false, "mode": "all", "slots": []}], "joins": [],
            "completed": ["leader"], "createdAt": 0, "modifiedAt": 0, "finishedAt": null
        }))
        .unwrap();
        let marked = svg(&def, Some(&inst), Lang::Zh, "d");
        assert!(
            marked.contains(r#"<g class="node current task"><title>HR countersign (hr)"#),
            "{marked}"
        );
        assert!(marked.contains(r#"<g class="node done task"><title>Leader approval (leader)"#));
        assert!(marked.contains(r#"class="branch taken""#));
        assert!(marked.contains("会签"), "Chinese labels");
        inst.activations.clear();
        inst.status = Status::Approved;
        assert!(svg(&def, Some(&inst), Lang::En, "d")
            .contains(r#"<g class="terminal done"><title>End"#));
    }
    #[test]
    fn parallel_lanes_side_by_side() {
        let def: Definition = serde_json::from_value(serde_json::json!({
            "processCode": "p", "name": "Parallel",
            "nodes": [{"id": "both", "type": "parallel", "name": "Both teams", "branches": [
                {"name": "Finance", "nodes": [{"id": "f", "type": "approval", "name": "Finance check",
                    "approvers": [{"type": "originator"}]}]},
                {"name": "Legal", "nodes": [{"id": "l", "type": "operator", "name": "Legal check",
                    "approvers": [{"type": "originator"}]}]}]}]
        }))
        .unwrap();
        let svg = svg(&def, None, Lang::En, "p");
        assert!(svg.contains(r#"class="split pending parallel""#), "{svg}");
        let x = |name: &str| {
            let at = svg.find(&format!("<title>{name}")).unwrap();
            let rect = &svg[at..];
            let x = &rect[rect.find(r#"x=""#).unwrap() + 3..];
            x[..x.find('"').unwrap()].parse::<i32>().unwrap()
        };
        assert!(
            x("Finance check") + 176 <= x("Legal check"),
            "two lanes, side by side"
        );
        assert!(svg.contains("Handler"), "an operator node says so");
    }
}
