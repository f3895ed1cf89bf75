//! The receiver check (issue 19): a short series of real, clearly marked probe requests to a
//! receiver, each graded PASS / WARN / FAIL against what a correct receiver must do (README
//! "Receiving events"), into a [`Scorecard`].
//!
//! Every probe is built by [`super::request::prepare`] and sent by [`super::exchange::exchange`]
//! — the dispatcher's own code — so the egress policy, the connector's authentication and
//! default headers, its timeout and the scrubbing of secrets from answers apply exactly as for
//! real deliveries. A probe only adds the header `X-Flowhook-Check: true`; the bad probes then
//! spoil what was signed (a forged `sign`, a wrong token, no `sign`, an old `dateTime`).
//!
//! The probes name their instances, tasks, cc records, users and event ids `check-<run>-…` and
//! their title says they are a check. They all belong to probe instances that the check deletes
//! (`task.deleted`) before it ends, so a correct receiver is left with nothing in any list —
//! and so is a receiver that wrongly accepted a forged request.
//!
//! What it must not do: store anything (the API stores the scorecard it returns), retry
//! (a probe's first answer is what is graded), or send more than the fixed series: the
//! number of requests is bounded (about 40, each bounded by the connector's timeout).

use std::collections::BTreeMap;
use std::time::Duration;

use flowhook_sign::event::{
    CcRecord, EventKind, InstanceDeleted, TaskEnded, TaskEvent, TaskRecord,
};
use flowhook_sign::wire::{self, BodyEncoding};
use serde::{Deserialize, Serialize};

use super::egress::EgressPolicy;
use super::exchange::{exchange, Exchange};
use super::request::{prepare, EventInfo, Prepared, Signing};
use crate::integration::connectors::{Action, Auth, Connector, Encoding};

/// The header every probe carries, so a receiver (or its logs) can tell a check from real work.
pub const CHECK_HEADER: &str = "x-flowhook-check";

/// How much of each answer the scorecard shows.
pub const ANSWER_BYTES: usize = 200;

/// Valid requests sent at once by the latency probe.
pub const CONCURRENT: usize = 20;

/// How old the `dateTime` of the replay probe is: twice the usual 5-minute window.
pub const REPLAY_AGE_MS: i64 = 10 * 60 * 1000;

/// A certificate expiring sooner than this is a WARN.
pub const CERT_WARN_DAYS: i64 = 14;

/// Where the probes go: a connector (URL base, authentication, headers, timeout) and, per event
/// kind, the action (path, encoding) that receives that kind.
#[derive(Debug, Clone)]
pub struct Target {
    pub connector: Connector,
    pub auth: Auth,
    /// Every kind has an action; see [`routes`].
    pub routes: BTreeMap<EventKind, Action>,
}

/// Whose probes these are.
#[derive(Clone)]
pub struct Probing {
    pub corp_id: String,
    pub app_type: String,
    /// The systemToken the receiver knows for `app_type`.
    pub system_token: String,
    /// The encodings the five kinds are each sent in; the actions' own when empty.
    pub encodings: Vec<Encoding>,
}

impl std::fmt::Debug for Probing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probing")
            .field("corp_id", &self.corp_id)
            .field("app_type", &self.app_type)
            .field("encodings", &self.encodings)
            .finish_non_exhaustive()
    }
}

/// The kinds' actions when checking `checked`: each kind goes to the action the sync strategy
/// maps it to when that action is on the same connector (the same receiver: a receiver with a
/// path per kind, as flowhook-inbox, is checked whole), otherwise to `checked` itself.
pub fn routes(
    checked: &Action,
    strategy: Option<&crate::integration::connectors::EventActions>,
    actions: &[Action],
) -> BTreeMap<EventKind, Action> {
    EventKind::ALL
        .into_iter()
        .map(|kind| {
            let mapped = strategy
                .and_then(|s| s.for_kind(kind))
                .and_then(|id| actions.iter().find(|a| a.id == id))
                .filter(|a| a.connector_id == checked.connector_id);
            (kind, mapped.unwrap_or(checked).clone())
        })
        .collect()
}

/// A probe's grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Grade {
    Pass,
    Warn,
    Fail,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Pass => "PASS",
            Grade::Warn => "WARN",
            Grade::Fail => "FAIL",
        }
    }
}

/// One probe's result, with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    /// Stable name: `created`, `duplicate`, `out_of_order`, `forged_sign`, `replay`,
    /// `wrong_token`, `missing_sign`, `kinds_form`, `kinds_json`, `concurrency`, `tls`, `cleanup`.
    pub probe: String,
    /// What was sent and what a correct receiver answers.
    pub expectation: String,
    pub grade: Grade,
    /// What happened, in a few words.
    pub verdict: String,
    /// The deciding request's answer status (none: no answer).
    pub status: Option<u16>,
    /// The first 200 bytes of that answer (or why there was none); secrets scrubbed.
    pub answer: Option<String>,
    pub latency_ms: Option<u64>,
    /// For WARN and FAIL: what to do, and the README section that says how.
    pub advice: Option<String>,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scorecard {
    /// `check-<run>`: the prefix of every id the probes used.
    pub run: String,
    /// Where `task.created` probes went (credentials masked).
    pub url: String,
    pub started_at: i64,
    pub duration_ms: u64,
    /// The probe instances (`formInstId`), all deleted by the last probe.
    pub instances: Vec<String>,
    /// The users the probe tasks and cc records were assigned to.
    pub users: Vec<String>,
    pub passed: u32,
    pub warned: u32,
    pub failed: u32,
    pub probes: Vec<ProbeResult>,
}

impl Scorecard {
    /// 0 all PASS (or WARNs without `strict`), 1 any FAIL, 2 a WARN with `strict`.
    pub fn exit_code(&self, strict: bool) -> u8 {
        if self.failed > 0 {
            1
        } else if strict && self.warned > 0 {
            2
        } else {
            0
        }
    }

    /// The scorecard as text, one block per probe.
    pub fn render(&self) -> String {
        let mut out = format!(
            "receiver check {} of {} ({} ms)\n\n",
            self.run, self.url, self.duration_ms
        );
        for p in &self.probes {
            out.push_str(&format!(
                "{:<4}  {:<13} {}\n      {}",
                p.grade.as_str(),
                p.probe,
                p.expectation,
                p.verdict
            ));
            if let Some(s) = p.status {
                out.push_str(&format!(" · HTTP {s}"));
            }
            if let Some(ms) = p.latency_ms {
                out.push_str(&format!(" · {ms} ms"));
            }
            out.push('\n');
            if let Some(a) = p.answer.as_deref().filter(|a| !a.is_empty()) {
                out.push_str(&format!("      answer: {}\n", a.replace('\n', " ")));
            }
            if let Some(a) = &p.advice {
                out.push_str(&format!("      advice: {a}\n"));
            }
        }
        out.push_str(&format!(
            "\n{} PASS, {} WARN, {} FAIL\n",
            self.passed, self.warned, self.failed
        ));
        out
    }
}

/// How a probe spoils its request after signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spoil {
    None,
    /// `sign` replaced by 32 other hex digits.
    ForgeSign,
    /// `sign` left out.
    DropSign,
}

/// One request of a probe.
#[derive(Clone)]
struct Shot {
    event: TaskEvent,
    event_id: String,
    seq: i64,
    attempt: u32,
    date_ms: i64,
    /// The token it is signed with.
    token: String,
    encoding: Option<Encoding>,
    spoil: Spoil,
}

const VERIFYING: &str = "README \"Receiving events\" › \"Verifying\"";
const DEDUP: &str = "README \"Receiving events\" › \"De-duplicating and ordering\"";
const ANSWERING: &str = "README \"Receiving events\" › \"Answering\"";
const FIVE: &str = "README \"Receiving events\" › \"The five requests\"";
const EGRESS: &str = "README \"Integration center: pushing task events\" › Egress policy";

/// Runs the check: sends the probes in order and grades each answer.
pub async fn run(
    client: &reqwest::Client,
    egress: &EgressPolicy,
    target: &Target,
    probing: &Probing,
) -> Scorecard {
    Checker::new(client, egress, target, probing).run().await
}

struct Checker<'a> {
    client: &'a reqwest::Client,
    egress: &'a EgressPolicy,
    target: &'a Target,
    probing: &'a Probing,
    run: String,
    events: u32,
    started_at: i64,
}

impl<'a> Checker<'a> {
    fn new(
        client: &'a reqwest::Client,
        egress: &'a EgressPolicy,
        target: &'a Target,
        probing: &'a Probing,
    ) -> Self {
        let run = format!("check-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Checker {
            client,
            egress,
            target,
            probing,
            run,
            events: 0,
            started_at: now_ms(),
        }
    }

    fn id(&self, what: &str) -> String {
        format!("{}-{what}", self.run)
    }

    fn next_event_id(&mut self) -> String {
        self.events += 1;
        self.id(&format!("evt-{}", self.events))
    }

    fn users(&self) -> [String; 3] {
        [
            self.id("approver"),
            self.id("originator"),
            self.id("cc-user"),
        ]
    }

    fn record(&self, instance: &str, task: Option<&str>) -> TaskRecord {
        let now = now_ms();
        TaskRecord {
            task_id: task.map(str::to_owned),
            corp_id: Some(self.probing.corp_id.clone()),
            activity_id: Some("check-node".into()),
            activity_name: Some("Receiver check".into()),
            actioner_id: task.map(|_| self.id("approver")),
            actioner_name: task.map(|_| "Flowhook receiver check".into()),
            app_type: self.probing.app_type.clone(),
            create_time: Some(now),
            data_map: [("check".to_string(), Some("true".to_string()))].into(),
            data_type: Some("pinst".into()),
            form_instance_id: Some(instance.into()),
            modified_time: Some(now),
            originator_id: Some(self.id("originator")),
            originator_display_name: Some("Flowhook receiver check".into()),
            process_code: Some("flowhook-receiver-check".into()),
            process_instance_id: Some(instance.into()),
            process_instance_status: Some("RUNNING".into()),
            process_name: Some("Flowhook receiver check".into()),
            title: Some(
                "Flowhook receiver check: not a real task, deleted when the check ends".into(),
            ),
            version: Some(1),
            ..TaskRecord::default()
        }
    }

    fn created(&self, instance: &str, task: &str) -> TaskEvent {
        TaskEvent::Created(self.record(instance, Some(task)))
    }

    fn ended(&self, instance: &str, task: &str) -> TaskEnded {
        TaskEnded {
            app_type: self.probing.app_type.clone(),
            corp_id: self.probing.corp_id.clone(),
            task_id: task.into(),
            actual_work_id: self.id("approver"),
            form_inst_id: instance.into(),
        }
    }

    fn deleted(&self, instance: &str) -> TaskEvent {
        TaskEvent::Deleted(InstanceDeleted {
            app_type: self.probing.app_type.clone(),
            corp_id: self.probing.corp_id.clone(),
            form_inst_id: instance.into(),
        })
    }

    /// A valid, fresh request for `event`.
    fn shot(&mut self, event: TaskEvent, seq: i64) -> Shot {
        Shot {
            event,
            event_id: self.next_event_id(),
            seq,
            attempt: 1,
            date_ms: now_ms(),
            token: self.probing.system_token.clone(),
            encoding: None,
            spoil: Spoil::None,
        }
    }

    /// The request of `shot`, as the dispatcher builds it, marked and then spoiled as asked.
    fn prepare(&self, shot: &Shot) -> Prepared {
        let kind = shot.event.kind();
        let mut action = self.target.routes[&kind].clone();
        if let Some(e) = shot.encoding {
            action.encoding = e;
        }
        let params: Vec<(String, String)> = crate::integration::render::stored_params(&shot.event)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let info = EventInfo {
            event_id: &shot.event_id,
            kind,
            seq: shot.seq,
            params: &params,
            logged_params: None,
            backfill: false,
        };
        // The check grades Yida's signature; it sends no Standard Webhooks headers (a spoiled
        // body would carry a signature that no longer matches it).
        let signing = Signing {
            system_token: &shot.token,
            webhook_secrets: &[],
        };
        let mut prepared = prepare(
            &info,
            shot.attempt,
            shot.date_ms,
            signing,
            &self.target.connector,
            &self.target.auth,
            &action,
        );
        let mark = (CHECK_HEADER.to_owned(), "true".to_owned());
        prepared.headers.push(mark.clone());
        prepared.logged_headers.push(mark);
        if shot.spoil != Spoil::None {
            let sign = prepared.params.iter().position(|(k, _)| k == "sign");
            match (shot.spoil, sign) {
                (Spoil::ForgeSign, Some(i)) => {
                    let mut forged = uuid::Uuid::new_v4().simple().to_string();
                    if forged == prepared.params[i].1 {
                        forged = forged.chars().rev().collect();
                    }
                    prepared.params[i].1 = forged;
                }
                (Spoil::DropSign, Some(i)) => {
                    prepared.params.remove(i);
                }
                _ => {}
            }
            let encoding = match action.encoding {
                Encoding::Form => BodyEncoding::Form,
                Encoding::Json => BodyEncoding::Json,
            };
            prepared.body = wire::encode(&prepared.params, encoding);
        }
        prepared
    }

    async fn send(&self, shot: &Shot) -> Exchange {
        let prepared = self.prepare(shot);
        exchange(
            self.client,
            self.egress,
            &self.target.connector,
            &self.target.auth,
            &prepared,
        )
        .await
    }

    async fn run(mut self) -> Scorecard {
        let main = self.run.clone();
        let mut probes = Vec::new();
        let mut seq = 0;
        let mut next_seq = || {
            seq += 1;
            seq
        };

        // 1. A correctly signed task.created.
        let first = self.shot(self.created(&main, &self.id("t1")), next_seq());
        let ex = self.send(&first).await;
        let certificate = ex.peer_certificate.clone();
        let advice = match (ex.status, ex.error_kind) {
            (Some(_), _) => format!("answer 2xx once a correctly signed event is stored ({ANSWERING})"),
            (None, Some("egress")) => format!("Flowhook's egress policy refuses this address: allow it (`egress_allow`) or send elsewhere ({EGRESS})"),
            (None, _) => "make the receiver reachable from Flowhook and answering within the timeout".into(),
        };
        probes.push(must_accept(
            "created",
            "a correctly signed task.created → 2xx",
            &ex,
            &advice,
        ));
        if ex.status.is_none() {
            // Nothing answered (refused by the egress policy, no connection, a timeout): every
            // other probe would wait as long again for nothing. The scorecard says why.
            if let Some(r) = self.tls(&probes, None) {
                probes.push(r);
            }
            return self.scorecard(probes, vec![main], &first);
        }

        // 2. The same event again: a retry (same event id, attempt 2, a fresh dateTime).
        let retry = Shot {
            attempt: 2,
            date_ms: now_ms(),
            ..first.clone()
        };
        let ex = self.send(&retry).await;
        probes.push(must_accept(
            "duplicate",
            "the same event again (same X-Flowhook-Event-Id) → 2xx",
            &ex,
            &format!("a repeated event is a retry: change nothing and answer 2xx ({DEDUP})"),
        ));

        // 3. A task.finished before its task.created, then the created.
        let t2 = self.id("t2");
        let finished = self.shot(TaskEvent::Finished(self.ended(&main, &t2)), next_seq() + 1);
        let created = self.shot(self.created(&main, &t2), finished.seq - 1);
        next_seq();
        let a = self.send(&finished).await;
        let b = self.send(&created).await;
        let advice = format!(
            "keep a finished that arrives before its created, and let it win when the created comes ({DEDUP})"
        );
        probes.push(if is_2xx(&a) {
            must_accept(
                "out_of_order",
                "task.finished before its task.created, then the created → both 2xx",
                &b,
                &advice,
            )
        } else {
            let mut r = must_accept(
                "out_of_order",
                "task.finished before its task.created, then the created → both 2xx",
                &a,
                &advice,
            );
            r.verdict = format!("the early task.finished was refused; {}", r.verdict);
            r
        });

        // 4. A forged sign.
        let mut forged = self.shot(self.created(&main, &self.id("t3")), next_seq());
        forged.spoil = Spoil::ForgeSign;
        let ex = self.send(&forged).await;
        probes.push(must_refuse(
            "forged_sign",
            "a forged sign → refused (4xx)",
            &ex,
            Grade::Fail,
            "accepts forged requests",
            &format!("verify `sign` with the app's systemToken and answer 401 when it does not match ({VERIFYING})"),
        ));

        // 5. Correctly signed, but its dateTime 10 minutes old: a replay.
        let mut replay = self.shot(self.created(&main, &self.id("t4")), next_seq());
        replay.date_ms = now_ms() - REPLAY_AGE_MS;
        let ex = self.send(&replay).await;
        probes.push(must_refuse(
            "replay",
            "correctly signed, dateTime 10 minutes old → refused (4xx)",
            &ex,
            Grade::Warn,
            "accepts replays",
            &format!("refuse a `dateTime` more than 5 minutes from your clock with 401 ({VERIFYING}, step 4)"),
        ));

        // 6. Signed with a token that is not the app's.
        let wrong = format!("{}-not-the-token", uuid::Uuid::new_v4().simple());
        let mut bad = self.shot(self.created(&main, &self.id("t5")), next_seq());
        bad.token = wrong;
        let ex = self.send(&bad).await;
        probes.push(must_refuse(
            "wrong_token",
            "signed with a wrong token → refused (4xx)",
            &ex,
            Grade::Fail,
            "accepts requests signed with another token",
            &format!("compute the sign with this app's systemToken only, and answer 401 on a mismatch ({VERIFYING})"),
        ));

        // 7. No sign at all.
        let mut unsigned = self.shot(self.created(&main, &self.id("t6")), next_seq());
        unsigned.spoil = Spoil::DropSign;
        let ex = self.send(&unsigned).await;
        probes.push(must_refuse(
            "missing_sign",
            "no sign → refused (4xx)",
            &ex,
            Grade::Fail,
            "accepts unsigned requests",
            &format!("require the `sign` parameter and answer 401 without it ({VERIFYING})"),
        ));

        // 8. The five kinds, once each, in each encoding asked for (an instance per encoding,
        // ended by its own task.deleted).
        let encodings: Vec<Option<Encoding>> = if self.probing.encodings.is_empty() {
            vec![None]
        } else {
            self.probing.encodings.iter().copied().map(Some).collect()
        };
        let mut instances = vec![main.clone()];
        for encoding in encodings {
            let name = match encoding {
                Some(e) => format!("kinds_{}", e.as_str()),
                None => "kinds".to_owned(),
            };
            let inst = self.id(&name.replace('_', "-"));
            instances.push(inst.clone());
            let task = format!("{inst}-t1");
            let other = format!("{inst}-t2");
            let cc = TaskEvent::Cc(CcRecord {
                cc_id: format!("{inst}-cc1"),
                cc_user_id: self.id("cc-user"),
                cc_user_name: Some("Flowhook receiver check".into()),
                record: self.record(&inst, None),
            });
            let events = vec![
                self.created(&inst, &task),
                cc,
                TaskEvent::Finished(self.ended(&inst, &task)),
                TaskEvent::Cancelled(self.ended(&inst, &other)),
                self.deleted(&inst),
            ];
            let mut graded = None;
            let mut total = Duration::ZERO;
            for (i, event) in events.into_iter().enumerate() {
                let kind = event.kind();
                let mut shot = self.shot(event, i as i64 + 1);
                shot.encoding = encoding;
                let ex = self.send(&shot).await;
                total += ex.duration;
                if !is_2xx(&ex) {
                    let mut r = must_accept(&name, "", &ex, "");
                    r.verdict = format!("{} refused: {}", kind.event_type(), r.verdict);
                    graded = Some(r);
                    break;
                }
            }
            let expectation = format!(
                "created, cc, finished, cancelled, deleted{} → each 2xx",
                encoding
                    .map(|e| format!(" as {}", e.as_str()))
                    .unwrap_or_default()
            );
            probes.push(match graded {
                Some(mut r) => {
                    r.expectation = expectation;
                    r.advice = Some(format!(
                        "accept each of the five requests, form-encoded or JSON as the action says ({FIVE})"
                    ));
                    r
                }
                None => ProbeResult {
                    probe: name,
                    expectation,
                    grade: Grade::Pass,
                    verdict: "all five accepted".into(),
                    status: None,
                    answer: None,
                    latency_ms: Some(total.as_millis() as u64),
                    advice: None,
                },
            });
        }

        // 9. Concurrent valid requests: latency under load.
        let shots: Vec<Shot> = (1..=CONCURRENT)
            .map(|i| {
                let s = next_seq();
                self.shot(self.created(&main, &self.id(&format!("c{i}"))), s)
            })
            .collect();
        let exchanges = futures_util::future::join_all(shots.iter().map(|s| self.send(s))).await;
        probes.push(concurrency(&exchanges, self.target.connector.timeout_ms));

        // 10. https: what the TLS handshake proved.
        if let Some(r) = self.tls(&probes, certificate.as_deref()) {
            probes.push(r);
        }

        // 11. Leave the receiver clean.
        let end = self.shot(self.deleted(&main), next_seq());
        let ex = self.send(&end).await;
        probes.push(must_accept(
            "cleanup",
            "task.deleted of the probe instance → 2xx (the receiver is left clean)",
            &ex,
            &format!("a task.deleted removes the instance and all its tasks and cc records ({DEDUP}); the probe tasks may still be in your lists"),
        ));

        self.scorecard(probes, instances, &first)
    }

    /// The scorecard of `probes`.
    fn scorecard(
        self,
        probes: Vec<ProbeResult>,
        instances: Vec<String>,
        first: &Shot,
    ) -> Scorecard {
        let count = |g: Grade| probes.iter().filter(|p| p.grade == g).count() as u32;
        Scorecard {
            url: self.prepare(first).logged_url,
            started_at: self.started_at,
            duration_ms: (now_ms() - self.started_at).max(0) as u64,
            instances,
            users: self.users().to_vec(),
            passed: count(Grade::Pass),
            warned: count(Grade::Warn),
            failed: count(Grade::Fail),
            probes,
            run: self.run,
        }
    }

    /// For an https receiver: every probe's handshake verified the certificate chain, its
    /// dates and that it names the host (rustls refuses otherwise, and the probes fail with
    /// that error); this grades what is left, the time to its expiry.
    fn tls(&self, probes: &[ProbeResult], certificate: Option<&[u8]>) -> Option<ProbeResult> {
        let https = self.target.routes.values().any(|a| {
            format!("{}{}", self.target.connector.base_url, a.path)
                .to_ascii_lowercase()
                .starts_with("https:")
        });
        https.then(|| {
            tls_probe(
                &probes[0],
                certificate.and_then(certificate_not_after),
                now_ms(),
            )
        })
    }
}

/// Grades an https receiver from the first probe (`first`) and its certificate's expiry.
fn tls_probe(first: &ProbeResult, not_after: Option<i64>, now: i64) -> ProbeResult {
    let mut r = ProbeResult {
        probe: "tls".into(),
        expectation: format!(
            "https: a trusted certificate for this host name, valid {CERT_WARN_DAYS} days more at least"
        ),
        grade: Grade::Pass,
        verdict: String::new(),
        status: None,
        answer: None,
        latency_ms: None,
        advice: None,
    };
    let advice = "serve a certificate for this host name from an authority the sender trusts, and renew it weeks before it expires";
    if first.status.is_none() {
        r.grade = Grade::Fail;
        r.verdict = "no answer to the first probe: the handshake or the connection failed".into();
        r.answer = first.answer.clone();
        r.advice = Some(advice.into());
        return r;
    }
    match not_after {
        None => {
            r.verdict =
                "chain, dates and host name verified by the handshake; expiry date not read".into()
        }
        Some(at) => {
            let days = (at - now).div_euclid(86_400_000);
            if days < CERT_WARN_DAYS {
                r.grade = Grade::Warn;
                r.verdict = format!("the certificate expires in {days} days");
                r.advice = Some(advice.into());
            } else {
                r.verdict =
                    format!("chain and host name verified by the handshake; {days} days to expiry");
            }
        }
    }
    r
}

/// The `notAfter` of a DER X.509 certificate in epoch ms; `None` when it cannot be read.
/// (Certificate → tbsCertificate → [version], serial, signature, issuer, validity → notAfter.)
pub fn certificate_not_after(der: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = der_tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = der_tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if let (0xA0, _, after) = der_tlv(rest)? {
        rest = after;
    }
    for _ in 0..3 {
        rest = der_tlv(rest)?.2;
    }
    let (0x30, validity, _) = der_tlv(rest)? else {
        return None;
    };
    let (tag, not_after, _) = der_tlv(der_tlv(validity)?.2)?;
    der_time(tag, not_after)
}

/// One DER element: (tag, contents, what follows).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A DER UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`) in
/// epoch ms.
fn der_time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest[i..i + 2].parse::<i64>().unwrap_or(0);
    let (month, day) = (n(0), n(2));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + n(4) * 3600 + n(6) * 60 + n(8)) * 1000)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn now_ms() -> i64 {
    crate::support::now_ms()
}

fn is_2xx(ex: &Exchange) -> bool {
    ex.status.is_some_and(|s| (200..300).contains(&s))
}

/// The first [`ANSWER_BYTES`] of the answer, or the error when there was none.
fn evidence(ex: &Exchange) -> Option<String> {
    match (&ex.body, &ex.error) {
        (Some(body), _) if ex.status.is_some() => {
            let mut cut = body.len().min(ANSWER_BYTES);
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            Some(body[..cut].to_owned())
        }
        (_, Some(e)) => Some(e.clone()),
        _ => None,
    }
}

fn what_came(ex: &Exchange) -> String {
    match ex.status {
        Some(s) => format!("answered {s}"),
        None => format!("no answer ({})", ex.error_kind.unwrap_or("other")),
    }
}

fn result(
    probe: &str,
    expectation: &str,
    ex: &Exchange,
    grade: Grade,
    verdict: String,
    advice: &str,
) -> ProbeResult {
    ProbeResult {
        probe: probe.into(),
        expectation: expectation.into(),
        grade,
        verdict,
        status: ex.status,
        answer: evidence(ex),
        latency_ms: Some(ex.duration.as_millis() as u64),
        advice: (grade != Grade::Pass && !advice.is_empty()).then(|| advice.to_owned()),
    }
}

/// A valid request: 2xx passes, anything else fails.
fn must_accept(probe: &str, expectation: &str, ex: &Exchange, advice: &str) -> ProbeResult {
    if is_2xx(ex) {
        result(
            probe,
            expectation,
            ex,
            Grade::Pass,
            "accepted".into(),
            advice,
        )
    } else {
        let why = what_came(ex);
        result(probe, expectation, ex, Grade::Fail, why, advice)
    }
}

/// A request a correct receiver refuses: 4xx passes, 2xx is `on_accept`, anything else (a 5xx,
/// no answer) a WARN: refused, but as if the receiver were broken, so Flowhook would retry it.
fn must_refuse(
    probe: &str,
    expectation: &str,
    ex: &Exchange,
    on_accept: Grade,
    accepted: &str,
    advice: &str,
) -> ProbeResult {
    match ex.status {
        Some(400..=499) => result(
            probe,
            expectation,
            ex,
            Grade::Pass,
            "refused".into(),
            advice,
        ),
        Some(200..=299) => result(probe, expectation, ex, on_accept, accepted.into(), advice),
        _ => {
            let why = format!("not accepted, but {}: answer 4xx", what_came(ex));
            result(probe, expectation, ex, Grade::Warn, why, advice)
        }
    }
}

/// The p-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Grades the concurrent requests: all 2xx, and p99 under half the timeout.
fn concurrency(exchanges: &[Exchange], timeout_ms: u64) -> ProbeResult {
    let mut ms: Vec<u64> = exchanges
        .iter()
        .map(|e| e.duration.as_millis() as u64)
        .collect();
    ms.sort_unstable();
    let (p50, p99) = (percentile(&ms, 50), percentile(&ms, 99));
    let refused: Vec<&Exchange> = exchanges.iter().filter(|e| !is_2xx(e)).collect();
    let expectation = format!(
        "{} valid requests at once → all 2xx, p99 under half the timeout ({} ms)",
        exchanges.len(),
        timeout_ms / 2
    );
    let stats = format!("p50 {p50} ms, p99 {p99} ms");
    let advice = format!("store, answer, then do slow work asynchronously ({ANSWERING})");
    if let Some(first) = refused.first() {
        let mut r = result(
            "concurrency",
            &expectation,
            first,
            Grade::Fail,
            format!(
                "{} of {} not accepted, e.g. {}; {stats}",
                refused.len(),
                exchanges.len(),
                what_came(first)
            ),
            &advice,
        );
        r.latency_ms = Some(p99);
        return r;
    }
    let grade = if p99 > timeout_ms / 2 {
        Grade::Warn
    } else {
        Grade::Pass
    };
    ProbeResult {
        probe: "concurrency".into(),
        expectation,
        grade,
        verdict: if grade == Grade::Pass {
            format!("all accepted; {stats}")
        } else {
            format!("all accepted, but slowly: {stats}")
        },
        status: exchanges.first().and_then(|e| e.status),
        answer: None,
        latency_ms: Some(p99),
        advice: (grade != Grade::Pass).then_some(advice),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), 10);
        assert_eq!(percentile(&v, 99), 20);
        assert_eq!(percentile(&[7], 50), 7);
        assert_eq!(percentile(&[], 99), 0);
    }

    /// A certificate made by `openssl req -x509 -days 10` (notAfter 2026-12-11 03:07:56Z).
    const CERT: &str = "MIIBizCCATGgAwIBAgIUDKHz615YQDzPvGZo5r/YM4Zy1UowCgYIKoZIzj0EAwIwGzEZMBcGA1UEAwwQcmVjZWl2ZXIuZXhhbXBsZTAeFw0yNjEyMDEwMzA3NTZaFw0yNjEyMTEwMzA3NTZaMBsxGTAXBgNVBAMMEHJlY2VpdmVyLmV4YW1wbGUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQAePoD56N2u3Nz4YhBoNkHjJjpM8cx4yqjjXm/aJH5kraeGIwsm8KgNOOKRYlOUEMR2ZuDzbwzYgjWlryMnYMzo1MwUTAdBgNVHQ4EFgQUsxeCLK15EaQoqeZGNnJ2y4vgCrcwHwYDVR0jBBgwFoAUsxeCLK15EaQoqeZGNnJ2y4vgCrcwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA+5+pPA5X+v7cpNfH+LVJCd+VEzqXA4H2wZaqw8oEXHACIAmrmoiaFRbeeQxobJuHLKePWESP6HeQ62malzVRNZzK";

    #[test]
    fn a_certificate_expiry_is_read_and_graded() {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(CERT)
            .unwrap();
        let not_after = certificate_not_after(&der).unwrap();
        assert_eq!(not_after, 1_796_958_476_000);
        assert_eq!(certificate_not_after(&der[..200]), None, "cut short");
        assert_eq!(certificate_not_after(b"junk"), None);
        assert_eq!(der_time(0x18, b"20500101000000Z"), Some(2_524_608_000_000));
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"701301000000Z"), None);

        let answered = ProbeResult {
            probe: "created".into(),
            expectation: String::new(),
            grade: Grade::Pass,
            verdict: String::new(),
            status: Some(200),
            answer: None,
            latency_ms: None,
            advice: None,
        };
        let day = 86_400_000;
        let soon = tls_probe(&answered, Some(not_after), not_after - 10 * day);
        assert_eq!(soon.grade, Grade::Warn, "{soon:?}");
        assert!(soon.verdict.contains("10 days"), "{soon:?}");
        let fine = tls_probe(&answered, Some(not_after), not_after - 90 * day);
        assert_eq!(fine.grade, Grade::Pass);
        let refused = ProbeResult {
            status: None,
            answer: Some("invalid peer certificate: NotValidForName".into()),
            ..answered
        };
        let failed = tls_probe(&refused, None, 0);
        assert_eq!(failed.grade, Grade::Fail);
        assert!(failed.answer.unwrap().contains("NotValidForName"));
    }

    #[test]
    fn exit_codes() {
        let card = |warned, failed| Scorecard {
            run: "check-x".into(),
            url: String::new(),
            started_at: 0,
            duration_ms: 0,
            instances: vec![],
            users: vec![],
            passed: 1,
            warned,
            failed,
            probes: vec![],
        };
        assert_eq!(card(0, 0).exit_code(true), 0);
        assert_eq!(card(1, 0).exit_code(false), 0);
        assert_eq!(card(1, 0).exit_code(true), 2);
        assert_eq!(card(1, 1).exit_code(true), 1);
    }

    fn action(id: &str, connector: &str, path: &str) -> Action {
        Action {
            id: id.into(),
            corp_id: "c".into(),
            connector_id: connector.into(),
            name: id.into(),
            method: "POST".into(),
            path: path.into(),
            encoding: Encoding::Form,
            created_at: 0,
        }
    }

    #[test]
    fn each_kind_goes_to_its_mapped_action_on_the_same_connector() {
        let created = action("a1", "con1", "/created");
        let finished = action("a2", "con1", "/finished");
        let elsewhere = action("a3", "con2", "/deleted");
        let strategy = crate::integration::connectors::EventActions {
            created: Some("a1".into()),
            finished: Some("a2".into()),
            deleted: Some("a3".into()),
            ..Default::default()
        };
        let all = [created.clone(), finished, elsewhere];
        let r = routes(&created, Some(&strategy), &all);
        assert_eq!(r[&EventKind::Created].path, "/created");
        assert_eq!(r[&EventKind::Finished].path, "/finished");
        assert_eq!(
            r[&EventKind::Deleted].path,
            "/created",
            "another connector's"
        );
        assert_eq!(r[&EventKind::Cc].path, "/created", "unmapped");
        assert!(routes(&created, None, &[]).values().all(|a| a.id == "a1"));
    }
}
