//! The five task events as typed payloads, with Yida's exact parameter names.
//!
//! Each event renders to its ordered parameter list (what the sender puts in the body, `sign`
//! added by [`crate::yida`]) and parses back from that list. The `task` JSON of `task.created`
//! and `task.cc` is a superset of the seed's example: every field of it, same name, same type,
//! plus Flowhook's own (`taskId`, `corpId`, `activityId`, …). Fields a sender adds that this
//! version does not know are kept in `extra`, so nothing a Yida tenant sends is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The five task events (Yida's five connector actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Created,
    Finished,
    Cancelled,
    Deleted,
    Cc,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Created,
        EventKind::Finished,
        EventKind::Cancelled,
        EventKind::Deleted,
        EventKind::Cc,
    ];

    /// `task.created`, … — the event type (`X-Flowhook-Event-Type`).
    pub fn event_type(self) -> &'static str {
        match self {
            EventKind::Created => "task.created",
            EventKind::Finished => "task.finished",
            EventKind::Cancelled => "task.cancelled",
            EventKind::Deleted => "task.deleted",
            EventKind::Cc => "task.cc",
        }
    }

    /// `created`, … — the short name (a receiver's path segment).
    pub fn short_name(self) -> &'static str {
        &self.event_type()[5..]
    }

    /// The parameter names of this event, in the order the sender writes them (without `sign`).
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            EventKind::Created | EventKind::Cc => &[params::TASK, params::DATE_TIME],
            EventKind::Finished | EventKind::Cancelled => &[
                params::APP_TYPE,
                params::CORP_ID,
                params::TASK_ID,
                params::ACTUAL_WORK_ID,
                params::FORM_INST_ID,
                params::DATE_TIME,
            ],
            EventKind::Deleted => &[
                params::APP_TYPE,
                params::CORP_ID,
                params::FORM_INST_ID,
                params::DATE_TIME,
            ],
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.event_type())
    }
}

/// An unknown event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event `{0}`: expected created, finished, cancelled, deleted or cc")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;
    /// Accepts `task.created` or `created` (case-sensitive, as on the wire).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let short = s.strip_prefix("task.").unwrap_or(s);
        EventKind::ALL
            .into_iter()
            .find(|k| k.short_name() == short)
            .ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

/// As its event type, `task.created`, …
impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.event_type())
    }
}

/// From `task.created` or `created`, as [`FromStr`].
impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Yida's parameter names.
pub mod params {
    pub const TASK: &str = "task";
    pub const DATE_TIME: &str = "dateTime";
    pub const APP_TYPE: &str = "appType";
    pub const CORP_ID: &str = "corpId";
    pub const TASK_ID: &str = "taskId";
    pub const ACTUAL_WORK_ID: &str = "actualWorkId";
    pub const FORM_INST_ID: &str = "formInstId";
}

/// Form data as Yida sends it: every value a string or null (tables as JSON strings).
///
/// A receiver is lenient: a number, boolean, array or object sent by another platform is kept
/// as its JSON text, so the map is always strings.
pub type DataMap = BTreeMap<String, Option<String>>;

fn lenient_data_map<'de, D: Deserializer<'de>>(d: D) -> Result<DataMap, D::Error> {
    let raw: Option<Map<String, Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (k, v)
        })
        .collect())
}

/// The `task` JSON of `task.created` (and the instance part of a cc record).
///
/// Field names and types are those of the seed's example; `None` is sent as `null`, as Yida does.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    // --- Flowhook's additions (DESIGN §3) ---
    /// The task's id (the seed's text promises it; its example omits it).
    #[serde(default)]
    pub task_id: Option<String>,
    /// The organisation.
    #[serde(default)]
    pub corp_id: Option<String>,
    /// The node the task belongs to.
    #[serde(default)]
    pub activity_id: Option<String>,
    #[serde(default)]
    pub activity_name: Option<String>,
    /// Where the assignee approves (from a configurable base URL).
    #[serde(default)]
    pub task_url: Option<String>,

    // --- The seed's example, field for field ---
    /// The assignee.
    #[serde(default)]
    pub actioner_id: Option<String>,
    #[serde(default)]
    pub actioner_name: Option<String>,
    /// The application: required, it selects the systemToken.
    pub app_type: String,
    #[serde(default)]
    pub create_time: Option<i64>,
    #[serde(default)]
    pub current_activity_instances: Option<Value>,
    #[serde(default, deserialize_with = "lenient_data_map")]
    pub data_map: DataMap,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub deep3: Option<bool>,
    #[serde(default)]
    pub finish_time: Option<i64>,
    #[serde(default)]
    pub form_instance_id: Option<String>,
    #[serde(default)]
    pub form_uuid: Option<String>,
    #[serde(default)]
    pub inst_value: Option<String>,
    #[serde(default)]
    pub modified_time: Option<i64>,
    #[serde(default)]
    pub modify_user_avatar: Option<String>,
    #[serde(default)]
    pub modify_user_display_name: Option<String>,
    #[serde(default)]
    pub modify_user_id: Option<String>,
    #[serde(default)]
    pub open_avatar: Option<String>,
    #[serde(default)]
    pub open_id: Option<String>,
    #[serde(default)]
    pub open_nickname: Option<String>,
    #[serde(default)]
    pub open_source: Option<String>,
    #[serde(default)]
    pub originator_avatar: Option<String>,
    #[serde(default)]
    pub originator_corp_id: Option<String>,
    #[serde(default)]
    pub originator_corp_name: Option<String>,
    #[serde(default)]
    pub originator_display_name: Option<String>,
    #[serde(default)]
    pub originator_id: Option<String>,
    #[serde(default)]
    pub process_approved_result: Option<String>,
    #[serde(default)]
    pub process_approved_result_text: Option<String>,
    #[serde(default)]
    pub process_code: Option<String>,
    #[serde(default)]
    pub process_id: Option<i64>,
    #[serde(default)]
    pub process_instance_id: Option<String>,
    #[serde(default)]
    pub process_instance_status: Option<String>,
    #[serde(default)]
    pub process_instance_status_text: Option<String>,
    #[serde(default)]
    pub process_name: Option<String>,
    #[serde(default)]
    pub serial_no: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,

    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `task` JSON of `task.cc`: who is cc'd, and the instance fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CcRecord {
    pub cc_id: String,
    pub cc_user_id: String,
    #[serde(default)]
    pub cc_user_name: Option<String>,
    #[serde(flatten)]
    pub record: TaskRecord,
}

/// `task.finished` / `task.cancelled`: who ended which task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEnded {
    pub app_type: String,
    pub corp_id: String,
    pub task_id: String,
    /// Who acted (finished) or who caused the end (cancelled).
    pub actual_work_id: String,
    /// The form instance id.
    pub form_inst_id: String,
}

/// `task.deleted`: the instance (and with it all its tasks) was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDeleted {
    pub app_type: String,
    pub corp_id: String,
    pub form_inst_id: String,
}

/// One of the five events, without its `dateTime` (that belongs to each attempt).
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Created(TaskRecord),
    Finished(TaskEnded),
    Cancelled(TaskEnded),
    Deleted(InstanceDeleted),
    Cc(CcRecord),
}

/// Why a parameter list is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("parameter `{0}` is missing")]
    MissingParameter(&'static str),
    #[error("parameter `task` is not a JSON object of the expected shape: {0}")]
    TaskNotJson(String),
    #[error("parameter `dateTime` must be epoch milliseconds as a decimal string")]
    InvalidDateTime,
}

impl TaskEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            TaskEvent::Created(_) => EventKind::Created,
            TaskEvent::Finished(_) => EventKind::Finished,
            TaskEvent::Cancelled(_) => EventKind::Cancelled,
            TaskEvent::Deleted(_) => EventKind::Deleted,
            TaskEvent::Cc(_) => EventKind::Cc,
        }
    }

    /// The application, which selects the systemToken.
    pub fn app_type(&self) -> &str {
        match self {
            TaskEvent::Created(t) => &t.app_type,
            TaskEvent::Cc(c) => &c.record.app_type,
            TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => &e.app_type,
            TaskEvent::Deleted(d) => &d.app_type,
        }
    }

    /// The ordered, unsigned parameters of one attempt at `date_time_ms`.
    ///
    /// ```
    /// use flowhook_sign::event::{InstanceDeleted, TaskEvent};
    /// let e = TaskEvent::Deleted(InstanceDeleted {
    ///     app_type: "APP_X".into(), corp_id: "corp".into(), form_inst_id: "f1".into() });
    /// let p = e.to_params(1700000000000);
    /// assert_eq!(p, [("appType", "APP_X".to_string()), ("corpId", "corp".into()),
    ///                ("formInstId", "f1".into()), ("dateTime", "1700000000000".into())]);
    /// ```
    pub fn to_params(&self, date_time_ms: i64) -> Vec<(&'static str, String)> {
        let date_time = (params::DATE_TIME, date_time_ms.to_string());
        let json = |v: &dyn erased::Json| (params::TASK, v.to_json());
        match self {
            TaskEvent::Created(t) => vec![json(t), date_time],
            TaskEvent::Cc(c) => vec![json(c), date_time],
            TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => vec![
                (params::APP_TYPE, e.app_type.clone()),
                (params::CORP_ID, e.corp_id.clone()),
                (params::TASK_ID, e.task_id.clone()),
                (params::ACTUAL_WORK_ID, e.actual_work_id.clone()),
                (params::FORM_INST_ID, e.form_inst_id.clone()),
                date_time,
            ],
            TaskEvent::Deleted(d) => vec![
                (params::APP_TYPE, d.app_type.clone()),
                (params::CORP_ID, d.corp_id.clone()),
                (params::FORM_INST_ID, d.form_inst_id.clone()),
                date_time,
            ],
        }
    }

    /// The ordered parameters with `sign` appended: what goes on the wire.
    pub fn to_signed_params(
        &self,
        date_time_ms: i64,
        system_token: &str,
    ) -> Vec<(&'static str, String)> {
        let mut p = self.to_params(date_time_ms);
        let sign = crate::yida::sign(&p, system_token)
            .expect("an event's parameter names are distinct and fixed");
        p.push((crate::yida::SIGN_PARAM, sign));
        p
    }

    /// Parses the parameters of a `kind` event; extra parameters are allowed (and were signed).
    /// Returns the event and its `dateTime`.
    pub fn from_params<K: AsRef<str>, V: AsRef<str>>(
        kind: EventKind,
        params: &[(K, V)],
    ) -> Result<(TaskEvent, i64), PayloadError> {
        let get = |name: &'static str| {
            params
                .iter()
                .find(|(k, _)| k.as_ref() == name)
                .map(|(_, v)| v.as_ref().to_owned())
                .ok_or(PayloadError::MissingParameter(name))
        };
        let date_time = parse_date_time(&get(params::DATE_TIME)?)?;
        let ended = || -> Result<TaskEnded, PayloadError> {
            Ok(TaskEnded {
                app_type: get(params::APP_TYPE)?,
                corp_id: get(params::CORP_ID)?,
                task_id: get(params::TASK_ID)?,
                actual_work_id: get(params::ACTUAL_WORK_ID)?,
                form_inst_id: get(params::FORM_INST_ID)?,
            })
        };
        let task_json = |text: String| {
            serde_json::from_str::<Value>(&text)
                .map_err(|e| PayloadError::TaskNotJson(e.to_string()))
        };
        let event = match kind {
            EventKind::Created => {
                let v = task_json(get(params::TASK)?)?;
                TaskEvent::Created(
                    serde_json::from_value(v)
                        .map_err(|e| PayloadError::TaskNotJson(e.to_string()))?,
                )
            }
            EventKind::Cc => {
                let v = task_json(get(params::TASK)?)?;
                TaskEvent::Cc(
                    serde_json::from_value(v)
                        .map_err(|e| PayloadError::TaskNotJson(e.to_string()))?,
                )
            }
            EventKind::Finished => TaskEvent::Finished(ended()?),
            EventKind::Cancelled => TaskEvent::Cancelled(ended()?),
            EventKind::Deleted => TaskEvent::Deleted(InstanceDeleted {
                app_type: get(params::APP_TYPE)?,
                corp_id: get(params::CORP_ID)?,
                form_inst_id: get(params::FORM_INST_ID)?,
            }),
        };
        Ok((event, date_time))
    }
}

/// `dateTime`: epoch milliseconds, decimal digits only.
pub fn parse_date_time(text: &str) -> Result<i64, PayloadError> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayloadError::InvalidDateTime);
    }
    text.parse().map_err(|_| PayloadError::InvalidDateTime)
}

mod erased {
    /// Serialises a record to its compact JSON text (the value of the `task` parameter).
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).expect("records serialise: string keys, finite numbers")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's example, with the missing comma after `instValue` restored.
    const SEED_TASK: &str = r#"{ "actionerId": null, "actionerName": null, "appType": "APP_RY60OCRF33Z7534***",
  "createTime": 1693462062502, "currentActivityInstances": null,
  "dataMap": { "numberField_l4s57vma": "1", "textField_l4s57vm9": "",
               "tableField_l4s57vmb": "[{\"numberField_li9yr6gs\":\"\",\"textField_l4s57vmc\":\"\"}]" },
  "dataType": "pinst", "deep3": true, "finishTime": null,
  "formInstanceId": "65ab8549-aa06-486a-b5b7-8abe845303a5",
  "formUuid": "FORM-MT866EA1X3N9W79GDQM2HB400M413OS76A2GL51", "instValue": "***",
  "modifiedTime": 1693462062502, "modifyUserAvatar": "", "modifyUserDisplayName": "",
  "modifyUserId": "01690741902689", "openAvatar": "", "openId": "", "openNickname": "", "openSource": "",
  "originatorAvatar": "https://x/440_440.png", "originatorCorpId": "ding5d17e3add038d44535c2f4657eb6378f",
  "originatorCorpName": "", "originatorDisplayName": "张红", "originatorId": "01690741902689",
  "processApprovedResult": "", "processApprovedResultText": "",
  "processCode": "TPROC--9BC6687125N9XAJ8873I0864QY122BZ96A2GL1", "processId": 0,
  "processInstanceId": "", "processInstanceStatus": "", "processInstanceStatusText": "",
  "processName": "", "serialNo": "", "title": "**的1位访客申请", "version": 10 }"#;

    #[test]
    fn the_seed_example_parses_and_renders_every_field_with_its_type() {
        let seed: Value = serde_json::from_str(SEED_TASK).unwrap();
        let task: TaskRecord = serde_json::from_value(seed.clone()).unwrap();
        assert!(
            task.extra.is_empty(),
            "every seed field is typed: {:?}",
            task.extra
        );
        assert_eq!(task.data_map["numberField_l4s57vma"].as_deref(), Some("1"));
        let rendered: Value = serde_json::to_value(&task).unwrap();
        for (key, value) in seed.as_object().unwrap() {
            assert_eq!(&rendered[key], value, "field {key}");
        }
        for extra in ["taskId", "corpId", "activityId", "activityName", "taskUrl"] {
            assert!(rendered.get(extra).is_some(), "{extra} is rendered");
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_params() {
        let record = TaskRecord {
            task_id: Some("t1".into()),
            app_type: "APP_X".into(),
            title: Some("张红的请假".into()),
            data_map: [("n".to_string(), Some("3".to_string())), ("e".into(), None)].into(),
            extra: [("futureField".to_string(), Value::from(1))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let ended = TaskEnded {
            app_type: "APP_X".into(),
            corp_id: "c".into(),
            task_id: "t1".into(),
            actual_work_id: "u1".into(),
            form_inst_id: "f1".into(),
        };
        let events = [
            TaskEvent::Created(record.clone()),
            TaskEvent::Finished(ended.clone()),
            TaskEvent::Cancelled(ended),
            TaskEvent::Deleted(InstanceDeleted {
                app_type: "APP_X".into(),
                corp_id: "c".into(),
                form_inst_id: "f1".into(),
            }),
            TaskEvent::Cc(CcRecord {
                cc_id: "cc1".into(),
                cc_user_id: "u9".into(),
                cc_user_name: Some("HR".into()),
                record,
            }),
        ];
        for e in events {
            let p = e.to_params(42);
            let names: Vec<&str> = p.iter().map(|(k, _)| *k).collect();
            assert_eq!(names, e.kind().param_names());
            assert_eq!(TaskEvent::from_params(e.kind(), &p), Ok((e.clone(), 42)));
            assert_eq!(e.kind().short_name().parse::<EventKind>(), Ok(e.kind()));
            let json = serde_json::to_string(&e.kind()).unwrap();
            assert_eq!(json, format!("\"{}\"", e.kind().event_type()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), e.kind());
        }
    }

    #[test]
    fn lenient_data_map_keeps_foreign_values_as_text() {
        let t: TaskRecord = serde_json::from_str(
            r#"{"appType":"A","dataMap":{"n":3,"b":true,"t":[{"x":1}],"z":null}}"#,
        )
        .unwrap();
        assert_eq!(t.data_map["n"].as_deref(), Some("3"));
        assert_eq!(t.data_map["b"].as_deref(), Some("true"));
        assert_eq!(t.data_map["t"].as_deref(), Some(r#"[{"x":1}]"#));
        assert_eq!(t.data_map["z"], None);
    }

    #[test]
    fn bad_params_say_which() {
        let p = [("appType", "A"), ("dateTime", "1")];
        assert_eq!(
            TaskEvent::from_params(EventKind::Deleted, &p),
            Err(PayloadError::MissingParameter("corpId"))
        );
        assert_eq!(
            TaskEvent::from_params(EventKind::Created, &[("task", "{"), ("dateTime", "1")]),
            Err(PayloadError::TaskNotJson(
                "EOF while parsing an object at line 1 column 1".into()
            ))
        );
        assert!(matches!(
            TaskEvent::from_params(EventKind::Created, &[("task", "{}"), ("dateTime", "1")]),
            Err(PayloadError::TaskNotJson(m)) if m.contains("appType")
        ));
        assert_eq!(
            TaskEvent::from_params(EventKind::Deleted, &[("dateTime", "-1")]),
            Err(PayloadError::InvalidDateTime)
        );
    }
}
