//! External ingest: task events produced by another workflow engine (a Flowable or Camunda task
//! listener, an in-house system) enter the same outbox as Flowhook's own — numbered per process
//! instance, fanned out to the strategy's actions in the same transaction — so Flowhook is the
//! reliable, signed relay for any BPM.
//!
//! Idempotent: a caller that retries with the same `eventId` gets the stored event back, and no
//! second delivery.

use flowhook_sign::event::TaskEvent;

use super::writer::StoredEvent;
use super::{new_id, now_ms, on_pool, write_gate, BeginWrite, Store, StoreError};
use crate::integration::render::stored_params;

/// What was ingested.
pub struct Ingested {
    pub event: StoredEvent,
    /// `false` when `event_id` was already stored (a retry).
    pub created: bool,
    pub deliveries: usize,
}

impl Store {
    /// Stores `event` of the external instance `instance_id` with the next `seq` of that instance
    /// and its deliveries. `event_id`, when given, makes the call idempotent.
    pub async fn ingest(
        &self,
        corp_id: &str,
        process_code: Option<&str>,
        instance_id: &str,
        event: &TaskEvent,
        event_id: Option<&str>,
    ) -> Result<Ingested, StoreError> {
        let strategy = self.strategy(corp_id).await?;
        let kind = event.kind();
        let id = event_id.map_or_else(|| new_id("evt"), str::to_owned);
        let params = serde_json::to_string(&stored_params(event)).expect("strings serialise");
        let task_id = match event {
            TaskEvent::Created(t) => t.task_id.clone(),
            TaskEvent::Finished(e) | TaskEvent::Cancelled(e) => Some(e.task_id.clone()),
            TaskEvent::Deleted(_) | TaskEvent::Cc(_) => None,
        };
        let action = strategy
            .as_ref()
            .filter(|s| s.selects(event.app_type(), process_code.unwrap_or_default()))
            .and_then(|s| s.actions.for_kind(kind).map(|a| (a.to_owned(), s.ordered)));
        let now = now_ms();
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let existing: Option<(String, i64, String, Option<String>, i64)> =
                sqlx::query_as("SELECT id, seq, kind, task_id, created_at FROM events WHERE id = $1 AND corp_id = $2")
                    .bind(&id)
                    .bind(corp_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((id, seq, kind, task_id, created_at)) = existing {
                tx.rollback().await?;
                return Ok(Ingested {
                    event: StoredEvent {
                        id,
                        seq,
                        kind,
                        task_id,
                        created_at,
                    },
                    created: false,
                    deliveries: 0,
                });
            }
            // The instance's row lock (PostgreSQL) is its events: the unique (instance_id, seq)
            // makes a concurrent ingest for the same instance fail rather than share a seq.
            let seq: i64 = sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MAX(seq) FROM events WHERE instance_id = $1",
            )
            .bind(instance_id)
            .fetch_one(&mut *tx)
            .await?
            .unwrap_or(0)
                + 1;
            sqlx::query(
                "INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&id)
            .bind(corp_id)
            .bind(event.app_type())
            .bind(instance_id)
            .bind(seq)
            .bind(kind.event_type())
            .bind(&task_id)
            .bind(&params)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| super::conflict_on_unique(e, format!("event {seq} of instance `{instance_id}` (ingested concurrently; retry)")))?;
            if let Some((action_id, ordered)) = &action {
                sqlx::query(
                    "INSERT INTO deliveries (id, corp_id, event_id, action_id, instance_id, seq, status, ordered, backfill, \
                     attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, 0, $9, $9, $9)",
                )
                .bind(new_id("dlv"))
                .bind(corp_id)
                .bind(&id)
                .bind(action_id)
                .bind(instance_id)
                .bind(seq)
                .bind(*ordered)
                .bind(false)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Ingested {
                event: StoredEvent {
                    id,
                    seq,
                    kind: kind.event_type().to_owned(),
                    task_id,
                    created_at: now,
                },
                created: true,
                deliveries: usize::from(action.is_some()),
            })
        })
    }
}
