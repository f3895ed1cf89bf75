//! The delivery log as the API shows it: deliveries with their attempts, the log's filter,
//! a connector's backlog and background jobs' progress. Each is the wire form of a store row,
//! converted at the edge (`From`); the store's rows know nothing of JSON or the API document.

use flowhook_sign::event::EventKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::ids::InstanceId;
use crate::store::deliveries::{self, DeliveryId, DeliveryStatus};
use crate::store::jobs;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    #[schema(value_type = String)]
    pub id: DeliveryId,
    pub event_id: String,
    #[schema(value_type = String)]
    pub event_type: EventKind,
    pub task_id: Option<String>,
    #[schema(value_type = String)]
    pub instance_id: InstanceId,
    pub seq: i64,
    pub action_id: String,
    /// pending | delivered | dead | cancelled (its action or connector was deleted while it
    /// was pending; `lastError` says which)
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub backfill: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<deliveries::Delivery> for Delivery {
    fn from(d: deliveries::Delivery) -> Self {
        Delivery {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            task_id: d.task_id,
            instance_id: d.instance_id,
            seq: d.seq,
            action_id: d.action_id,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            backfill: d.backfill,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    /// Credentials in the query masked.
    pub url: String,
    /// Credentials masked.
    #[schema(value_type = Object)]
    pub request_headers: serde_json::Value,
    #[schema(value_type = Object)]
    pub request_params: serde_json::Value,
    pub response_status: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub response_headers: Option<serde_json::Value>,
    /// First 4 KiB.
    pub response_body: Option<String>,
    /// status | timeout | connect | dns | egress | request | other (see `delivery::exchange`)
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

impl From<deliveries::AttemptView> for AttemptView {
    fn from(a: deliveries::AttemptView) -> Self {
        AttemptView {
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            url: a.url,
            request_headers: a.request_headers,
            request_params: a.request_params,
            response_status: a.response_status,
            response_headers: a.response_headers,
            response_body: a.response_body,
            error_kind: a.error_kind,
            error: a.error,
        }
    }
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFilter {
    /// pending | delivered | dead | cancelled
    pub status: Option<String>,
    /// `task.created`, …
    pub event_type: Option<String>,
    pub task_id: Option<String>,
    #[param(value_type = Option<String>)]
    pub instance_id: Option<InstanceId>,
    pub action_id: Option<String>,
    /// The deliveries to any action of this connector.
    pub connector_id: Option<String>,
    /// Created at or after (epoch ms).
    pub from: Option<i64>,
    /// Created before (epoch ms).
    pub to: Option<i64>,
}

impl From<DeliveryFilter> for deliveries::DeliveryFilter {
    fn from(f: DeliveryFilter) -> Self {
        deliveries::DeliveryFilter {
            status: f.status,
            event_type: f.event_type,
            task_id: f.task_id,
            instance_id: f.instance_id,
            action_id: f.action_id,
            connector_id: f.connector_id,
            from: f.from,
            to: f.to,
        }
    }
}

/// The deliveries waiting for one connector (its health view).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorBacklog {
    /// Deliveries not yet delivered nor given up.
    pub pending: i64,
    /// When the oldest of them was created (epoch ms).
    pub oldest_pending_at: Option<i64>,
    /// Deliveries given up after the last retry (redeliver them once the endpoint is fixed).
    pub dead: i64,
}

impl From<deliveries::ConnectorBacklog> for ConnectorBacklog {
    fn from(b: deliveries::ConnectorBacklog) -> Self {
        ConnectorBacklog {
            pending: b.pending,
            oldest_pending_at: b.oldest_pending_at,
            dead: b.dead,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    pub id: String,
    /// `backfill` or `redelivery`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Deliveries the job created.
    pub total: i64,
    pub delivered: i64,
    pub dead: i64,
    /// Cancelled: their action or connector was deleted while they were pending.
    pub cancelled: i64,
    pub pending: i64,
    /// `done` when nothing is pending.
    pub state: String,
    pub created_at: i64,
}

impl From<jobs::JobProgress> for JobProgress {
    fn from(j: jobs::JobProgress) -> Self {
        JobProgress {
            id: j.id,
            kind: j.kind,
            params: j.params,
            total: j.total,
            delivered: j.delivered,
            dead: j.dead,
            cancelled: j.cancelled,
            pending: j.pending,
            state: j.state,
            created_at: j.created_at,
        }
    }
}
