//! Engine events → Yida payloads (`flowhook_sign::event::TaskEvent`), rendered once when the
//! event is written, so every delivery and redelivery sends exactly the same parameters.
//!
//! The `task` JSON carries every field of Yida's example plus Flowhook's (`taskId`, `corpId`,
//! `activityId`, `activityName`, `taskUrl`).

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
        form_uuid: inst.form_uuid.clone(),
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
        process_instance_id: Some(inst.id.clone()),
        process_instance_status: Some(status.into()),
        process_instance_status_text: Some(status_text.into()),
        process_name: Some(ctx.process_name.into()),
        serial_no: Some(String::new()),
        title: Some(inst.title.clone()),
        version: Some(inst.process_version),
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
