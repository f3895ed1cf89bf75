//! The dispatchers alive: each node's heartbeat (`nodes`), so that a node that died — SIGKILL,
//! a lost machine — loses its delivery leases within seconds instead of when each lease expires.
//!
//! A node registers as it starts and beats every second, by the database's clock (no skew
//! between nodes). A claim treats a lease as held only while its owner's heartbeat is younger
//! than the node timeout: a node that died, or stopped, loses its leases that long after its
//! last beat (a stopped node simply stops beating: its last attempt records are long written
//! by then). The node that lost its leases that way may still be alive (a pause,
//! a partition from the database): it stops sending once its own last heartbeat is that old
//! (the dispatcher's fence), and its late attempt records do not overwrite the deliveries'
//! state once another node holds them (see `write_records_in!`). At-least-once either way.

use super::{on_pool, write_gate, Store, StoreError};

/// The database's own clock in epoch milliseconds, as SQL: heartbeats are written and judged
/// by one clock, so no node's clock skew can make another node look dead (SQLite has one node).
pub(crate) fn db_now_ms(store: &Store) -> &'static str {
    match store {
        Store::Postgres(_) => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        Store::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

impl Store {
    /// Registers (or re-registers) node `id` as alive now, by the database's clock.
    pub async fn beat(&self, id: &str) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, {now}, {now}) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = {now}",
            now = db_now_ms(self)
        );
        let _gate = write_gate(self).await;
        on_pool!(self, |pool| {
            sqlx::query(&sql).bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Forgets nodes silent for longer than `older_than_ms` (their leases are free already:
    /// this only keeps the table small).
    pub async fn forget_silent_nodes(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM nodes WHERE heartbeat_at < {} - $1",
            db_now_ms(self)
        );
        let _gate = write_gate(self).await;
        Ok(on_pool!(self, |pool| {
            sqlx::query(&sql)
                .bind(older_than_ms)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
