//! Small building blocks every layer uses: the one clock, fresh ids, and the [`Recent`] cache of
//! settings read on hot paths with the generation that voids it ([`settings_changed`]).
//!
//! Imports no other module of this crate, so the breaker, the dispatcher, the store and the
//! API can all use them without depending on one another. The engine does not: it takes the
//! time as input.

use std::time::Duration;

/// Wall-clock epoch milliseconds: the one clock the service reads (the engine takes it as input).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh id with a type prefix (`evt_…`, `dlv_…`): a UUIDv7, so ids created later sort later
/// and new rows land at the right edge of their B-tree instead of on random pages.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

static SETTINGS_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called after a change of what this process caches: app tokens, webhook secrets, a
/// connector's pause or an API key's revocation ([`Recent`] caches reload at once; other
/// nodes' expire within a second, and a rotated secret stays valid far longer), and the
/// directory, sync strategy or process versions that the SQLite writer carries from batch to
/// batch (see `store::writer::Worker::prefetch`). Called after the change commits, before it is
/// answered.
pub fn settings_changed() {
    SETTINGS_GENERATION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Changes with every [`settings_changed`].
pub fn settings_generation() -> u64 {
    SETTINGS_GENERATION.load(std::sync::atomic::Ordering::SeqCst)
}

/// Settings read on a hot path, by key, and reused: for at most `ttl`, and not at all once this
/// process has announced a change ([`settings_changed`]) — so this node applies its own changes
/// at once and other nodes' within `ttl`. Used for the dispatcher's tokens, secrets and pauses
/// and for API keys.
pub struct Recent<T> {
    ttl: Duration,
    /// Per key: when it was read, at which generation, and the value.
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64, T)>>,
}

/// Inserts into a cache of at most `room` entries, emptied first when full (a key it holds
/// already is replaced, nothing emptied): the caches on hot paths stay bounded whatever any
/// organisation sends.
pub fn insert_bounded<K: std::hash::Hash + Eq, V>(
    map: &mut std::collections::HashMap<K, V>,
    key: K,
    value: V,
    room: usize,
) {
    if map.len() >= room && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}

/// Entries a [`Recent`] keeps at most; it starts over when full.
const RECENT_ROOM: usize = 10_000;

impl<T: Clone> Recent<T> {
    pub fn new(ttl: Duration) -> Self {
        Recent {
            ttl,
            entries: Default::default(),
        }
    }

    /// The value kept for `key`, if still good.
    pub fn get(&self, key: &str) -> Option<T> {
        let entries = self.entries.lock().expect("cache lock");
        let (at, generation, value) = entries.get(key)?;
        (at.elapsed() < self.ttl && *generation == settings_generation()).then(|| value.clone())
    }

    /// Keeps `value`, read at `generation` — taken before the read, so that a change announced
    /// during the read voids it.
    pub fn put(&self, key: &str, generation: u64, value: T) {
        let mut entries = self.entries.lock().expect("cache lock");
        insert_bounded(
            &mut entries,
            key.to_owned(),
            (std::time::Instant::now(), generation, value),
            RECENT_ROOM,
        );
    }

    /// The kept value, or else `load`'s, kept.
    pub async fn get_or_load<F, E>(&self, key: &str, load: F) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let generation = settings_generation();
        let v = load.await?;
        self.put(key, generation, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_starts_over() {
        let mut map = std::collections::HashMap::new();
        for i in 0..10 {
            insert_bounded(&mut map, i, i, 4);
            assert!(map.len() <= 4, "{} entries", map.len());
        }
        assert_eq!(map.get(&9), Some(&9), "the newest is kept");
        let kept = map.len();
        insert_bounded(&mut map, 9, 90, 1);
        assert_eq!(map.len(), kept, "replacing a kept key empties nothing");
        assert_eq!(map.get(&9), Some(&90));
    }
}
