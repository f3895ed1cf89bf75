//! Engine events → Yida payloads (`flowhook_sign::event::TaskEvent`), rendered once when the
//! event is written, so every delivery and redelivery sends exactly the same parameters.
//!
//! The `task` JSON carries every field of Yida's example plus Flowhook's (`taskId`, `corpId`,
//! `activityId`, `activityName`, `taskUrl`), each with the example's JSON type: a receiver
//! written against Yida's documentation parses it unchanged. Fields Flowhook has no value for
//! are sent as the example sends them empty (`""`, `0`, `true`), never `null` where the example
//! has a value — see [`yida_constants`].

use flowhook_sign::event::{CcRecord, InstanceDeleted, TaskEnded, TaskEvent, TaskRecord};

use crate::engine::machine::{Event, EventKind, Instance, Status};
use crate::engine::resolve::Directory;

/// What rendering needs besides the instance.
pub struct RenderContext<'a> {
    pub directory: &'a dyn Directory,
    pub process_name: &'a str,
    /// The console's base URL; `taskUrl` = `{base}/console/tasks/{taskId}`.
    pub public_base_url: &'a str,
}

fn instance_status(s: Status) -> (&'static str, &'static str) {
    match s {
        Status::Running => ("RUNNING", "审批中"),
        Status::Approved => ("COMPLETED", "已完成"),
        Status::Rejected => ("COMPLETED", "已拒绝"),
        Status::Withdrawn => ("TERMINATED", "已撤销"),
        Status::Terminated => ("TERMINATED", "已终止"),
        Status::Deleted => ("TERMINATED", "已删除"),
    }
}

fn base_record(inst: &Instance, ctx: &RenderContext<'_>) -> TaskRecord {
    let originator = ctx.directory.person(&inst.originator_id);
    let (status, status_text) = instance_status(inst.status);
    let (result, result_text) = match inst.status {
        Status::Approved => ("agree", "同意"),
        Status::Rejected => ("disagree", "拒绝"),
        _ => ("", ""),
    };
    TaskRecord {
        corp_id: Some(inst.corp_id.clone()),
        app_type: inst.app_type.clone(),
        create_time: Some(inst.created_at),
        data_map: inst.form_data.clone(),
        data_type: Some("pinst".into()),
        finish_time: inst.finished_at,
        form_instance_id: Some(inst.form_instance_id.clone()),
        form_uuid: Some(form_uuid(inst.form_uuid.as_deref(), &inst.process_code)),
        modified_time: Some(inst.modified_at),
        modify_user_avatar: Some(String::new()),
        modify_user_display_name: Some(String::new()),
        modify_user_id: Some(inst.originator_id.clone()),
        originator_avatar: Some(originator.map(|p| p.avatar.clone()).unwrap_or_default()),
        originator_corp_id: Some(inst.corp_id.clone()),
        originator_corp_name: Some(String::new()),
        originator_display_name: Some(originator.map(|p| p.name.clone()).unwrap_or_default()),
        originator_id: Some(inst.originator_id.clone()),
        process_approved_result: Some(result.into()),
        process_approved_result_text: Some(result_text.into()),
        process_code: Some(inst.process_code.clone()),
        process_instance_id: Some(inst.id.to_string()),
        process_instance_status: Some(status.into()),
        process_instance_status_text: Some(status_text.into()),
        process_name: Some(ctx.process_name.into()),
        serial_no: Some(String::new()),
        title: Some(inst.title.clone()),
        version: Some(inst.process_version),
        ..yida_constants()
    }
}

/// The `formUuid` sent: the process's form id, or one derived from the process code (Yida's
/// form ids look like `FORM-…`) — a string either way, as in Yida's example.
pub fn form_uuid(declared: Option<&str>, process_code: &str) -> String {
    match declared {
        Some(f) if !f.is_empty() => f.to_owned(),
        _ => format!("FORM-{process_code}"),
    }
}

/// The fields of Yida's example Flowhook has no value of its own for, with the example's types:
/// `deep3` a boolean, `processId` a number (Yida's internal numeric id; Flowhook has none, so
/// `0`, as the example shows), `instValue` and the `open*` fields strings (`""`).
fn yida_constants() -> TaskRecord {
    TaskRecord {
        deep3: Some(true),
        process_id: Some(0),
        inst_value: Some(String::new()),
        open_avatar: Some(String::new()),
        open_id: Some(String::new()),
        open_nickname: Some(String::new()),
        open_source: Some(String::new()),
        ..TaskRecord::default()
    }
}

/// The Yida payload of one event of `inst` (the state right after the command).
pub fn render(inst: &Instance, event: &Event, ctx: &RenderContext<'_>) -> TaskEvent {
    let ended = |task_id: &str, who: &str| TaskEnded {
        app_type: inst.app_type.clone(),
        corp_id: inst.corp_id.clone(),
        task_id: task_id.to_owned(),
        actual_work_id: who.to_owned(),
        form_inst_id: inst.form_instance_id.clone(),
    };
    match &event.kind {
        EventKind::TaskCreated { task_id } => {
            let task = &inst.tasks[task_id];
            let mut record = base_record(inst, ctx);
            record.task_id = Some(task.id.clone());
            record.activity_id = Some(task.node_id.clone());
            record.activity_name = Some(task.node_name.clone());
            record.actioner_id = Some(task.user_id.clone());
            record.actioner_name = ctx.directory.person(&task.user_id).map(|p| p.name.clone());
            record.task_url = Some(format!(
                "{}/console/tasks/{}",
                ctx.public_base_url.trim_end_matches('/'),
                task.id
            ));
            TaskEvent::Created(record)
        }
        EventKind::TaskFinished { task_id, actor } => TaskEvent::Finished(ended(task_id, actor)),
        EventKind::TaskCancelled { task_id, by } => TaskEvent::Cancelled(ended(task_id, by)),
        EventKind::InstanceDeleted { .. } => TaskEvent::Deleted(InstanceDeleted {
            app_type: inst.app_type.clone(),
            corp_id: inst.corp_id.clone(),
            form_inst_id: inst.form_instance_id.clone(),
        }),
        EventKind::Cc { cc_id } => {
            let cc = inst
                .ccs
                .iter()
                .find(|c| &c.id == cc_id)
                .expect("the cc of its event");
            let mut record = base_record(inst, ctx);
            record.activity_id = Some(cc.node_id.clone());
            record.activity_name = Some(cc.node_name.clone());
            TaskEvent::Cc(CcRecord {
                cc_id: cc.id.clone(),
                cc_user_id: cc.user_id.clone(),
                cc_user_name: ctx.directory.person(&cc.user_id).map(|p| p.name.clone()),
                record,
            })
        }
    }
}

/// The parameters to store: everything but `dateTime` (and `sign`), in wire order.
pub fn stored_params(event: &TaskEvent) -> Vec<(&'static str, String)> {
    event
        .to_params(0)
        .into_iter()
        .filter(|(k, _)| *k != flowhook_sign::event::params::DATE_TIME)
        .collect()
}

/// A sample of each event for test fire: realistic fields, ids marked as tests.
pub fn sample(
    kind: flowhook_sign::event::EventKind,
    app_type: &str,
    corp_id: &str,
    now: i64,
) -> TaskEvent {
    use flowhook_sign::event::EventKind as K;
    let record = TaskRecord {
        task_id: Some("test-task-1".into()),
        corp_id: Some(corp_id.into()),
        activity_id: Some("test-node".into()),
        activity_name: Some("Test approval".into()),
        task_url: None,
        actioner_id: Some("test-approver".into()),
        actioner_name: Some("Test Approver".into()),
        app_type: app_type.into(),
        create_time: Some(now),
        data_map: [("days".to_string(), Some("3".to_string()))].into(),
        data_type: Some("pinst".into()),
        form_instance_id: Some("test-form-instance".into()),
        form_uuid: Some(form_uuid(None, "test-process")),
        modified_time: Some(now),
        modify_user_avatar: Some(String::new()),
        modify_user_display_name: Some(String::new()),
        modify_user_id: Some("test-originator".into()),
        originator_avatar: Some(String::new()),
        originator_corp_id: Some(corp_id.into()),
        originator_corp_name: Some(String::new()),
        originator_id: Some("test-originator".into()),
        originator_display_name: Some("Test Originator".into()),
        process_approved_result: Some(String::new()),
        process_approved_result_text: Some(String::new()),
        process_code: Some("test-process".into()),
        process_instance_id: Some("test-process-instance".into()),
        process_instance_status: Some("RUNNING".into()),
        process_instance_status_text: Some("审批中".into()),
        process_name: Some("Test process".into()),
        serial_no: Some(String::new()),
        title: Some("Flowhook test fire".into()),
        version: Some(1),
        ..yida_constants()
    };
    let ended = TaskEnded {
        app_type: app_type.into(),
        corp_id: corp_id.into(),
        task_id: "test-task-1".into(),
        actual_work_id: "test-approver".into(),
        form_inst_id: "test-form-instance".into(),
    };
    match kind {
        K::Created => TaskEvent::Created(record),
        K::Finished => TaskEvent::Finished(ended),
        K::Cancelled => TaskEvent::Cancelled(ended),
        K::Deleted => TaskEvent::Deleted(InstanceDeleted {
            app_type: app_type.into(),
            corp_id: corp_id.into(),
            form_inst_id: "test-form-instance".into(),
        }),
        K::Cc => TaskEvent::Cc(CcRecord {
            cc_id: "test-cc-1".into(),
            cc_user_id: "test-cc-user".into(),
            cc_user_name: Some("Test Cc".into()),
            record,
        }),
    }
}
