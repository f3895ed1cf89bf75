//! External ingest: task events produced by another workflow engine (a Flowable or Camunda task
//! listener, an in-house system) enter the same outbox as Flowhook's own — numbered per process
//! instance, fanned out to the strategy's actions in the same transaction — so Flowhook is the
//! reliable, signed relay for any BPM.
//!
//! Every key is the organisation's: an ingested instance id lives in its organisation's
//! namespace (its `seq` and its ordering lane are per `(corp_id, instance_id)`), and the
//! caller's `eventId` is unique per organisation (`events.source_event_id`; the row's own id is
//! Flowhook's). What one organisation relays can neither block, renumber nor reveal another's.
//! An id naming one of the organisation's own Flowhook instances is refused: that lane's `seq`
//! belongs to the engine.
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

/// Why an event was not ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The instance id is one of the organisation's own Flowhook instances.
    #[error("processInstanceId `{0}` is one of this organisation's Flowhook instances; relayed instances need ids of their own")]
    OwnInstance(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How often an ingest whose `seq` or `eventId` was taken concurrently (PostgreSQL: two calls
/// for one instance at once) is tried again; the next try reads the winner's row.
const RACE_RETRIES: usize = 5;

impl Store {
    /// Stores `event` of the external instance `instance_id` of `corp_id` with the next `seq` of
    /// that instance and its deliveries. `event_id`, when given, makes the call idempotent.
    pub async fn ingest(
        &self,
        corp_id: &str,
        process_code: Option<&str>,
        instance_id: &str,
        event: &TaskEvent,
        event_id: Option<&str>,
    ) -> Result<Ingested, IngestError> {
        let mut tries = 0;
        loop {
            match self
                .ingest_once(corp_id, process_code, instance_id, event, event_id)
                .await
            {
                Err(IngestError::Store(StoreError::Sql(sqlx::Error::Database(db))))
                    if db.is_unique_violation() && tries < RACE_RETRIES =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    async fn ingest_once(
        &self,
        corp_id: &str,
        process_code: Option<&str>,
        instance_id: &str,
        event: &TaskEvent,
        event_id: Option<&str>,
    ) -> Result<Ingested, IngestError> {
        let strategy = self.strategy(corp_id).await?;
        let kind = event.kind();
        let id = new_id("evt");
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
        let result: Result<Ingested, IngestError> = on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await.map_err(StoreError::from)?;
            if let Some(event_id) = event_id {
                let existing: Option<(String, i64, String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT id, seq, kind, task_id, created_at FROM events \
                     WHERE corp_id = $1 AND source_event_id = $2",
                )
                .bind(corp_id)
                .bind(event_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                if let Some((id, seq, kind, task_id, created_at)) = existing {
                    tx.rollback().await.map_err(StoreError::from)?;
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
            }
            let own: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM instances WHERE id = $1 AND corp_id = $2")
                    .bind(instance_id)
                    .bind(corp_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            if own.is_some() {
                return Err(IngestError::OwnInstance(instance_id.to_owned()));
            }
            // PostgreSQL: two calls for one instance at once read the same MAX; the unique
            // (corp_id, instance_id, seq) fails the later one, which `ingest` tries again.
            let seq: i64 = sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MAX(seq) FROM events WHERE corp_id = $1 AND instance_id = $2",
            )
            .bind(corp_id)
            .bind(instance_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .unwrap_or(0)
                + 1;
            sqlx::query(
                "INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, created_at, \
                 source_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
            .bind(event_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
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
                .await
                .map_err(StoreError::from)?;
            }
            tx.commit().await.map_err(StoreError::from)?;
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
        });
        result
    }
}
