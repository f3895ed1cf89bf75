//! Retention of the delivery log: once an hour (and at start), the request parameters and
//! response bodies of attempts older than `attempt_body_retention_days` are purged. The
//! attempts themselves stay, so the log still shows when each was tried and how it ended.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;
use crate::support::now_ms;

const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Runs as the supervised task `retention` of `tasks` until `stop` turns true; does nothing
/// when `retention_days` is 0 (keep forever).
pub fn spawn(
    tasks: &std::sync::Arc<crate::supervise::Tasks>,
    store: Store,
    retention_days: u64,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if retention_days == 0 {
        return tokio::spawn(async {});
    }
    crate::supervise::supervise(tasks, "retention", move || {
        sweep(store.clone(), retention_days, stop.clone())
    })
}

/// Purges now, then once every [`SWEEP_EVERY`], until `stop` turns true.
async fn sweep(store: Store, retention_days: u64, mut stop: watch::Receiver<bool>) {
    let keep_ms = i64::try_from(retention_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    loop {
        match store
            .purge_attempt_bodies(now_ms().saturating_sub(keep_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(attempts = n, retention_days, "purged old attempt bodies"),
            Err(e) => tracing::warn!(error = %e, "could not purge old attempt bodies"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
