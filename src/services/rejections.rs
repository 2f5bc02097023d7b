//! Refused signing requests, counted for the dashboards (`GET /v1/stats`).
//!
//! A refusal is counted in memory per (UTC hour, station, error code, issuing CA) and the counts
//! are added to the store's durable counters by [`RejectionCounter::flush`]: every few seconds
//! in the background, before each stats query (so a replica reads its own refusals), and at
//! shutdown. A flood of bad requests therefore costs one upsert per key and flush, not a write
//! per request. When the store is down the counts stay pending and are retried; the number of
//! pending keys is bounded, and what does not fit is dropped and logged.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::store::stats::RejectionKey;
use crate::store::{Store, StoreResult, Timestamp};

/// At most this many distinct keys wait for a flush (hours x stations x codes x CAs).
const MAX_PENDING_KEYS: usize = 50_000;

#[derive(Default)]
pub struct RejectionCounter {
    pending: Mutex<HashMap<RejectionKey, u64>>,
}

impl RejectionCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one refused request. `station` is `None` when the caller was not authenticated.
    pub fn record(&self, station: Option<&str>, code: &str, ca_id: &str, at: OffsetDateTime) {
        metrics::counter!("factory_ca_rejections_total", "code" => code.to_owned()).increment(1);
        let key = RejectionKey {
            bucket: Timestamp::new(at).hour_start(),
            station: station.unwrap_or_default().to_owned(),
            code: code.to_owned(),
            ca_id: ca_id.to_owned(),
        };
        let mut pending = self.lock();
        let len = pending.len();
        match pending.get_mut(&key) {
            Some(n) => *n += 1,
            None if len < MAX_PENDING_KEYS => {
                pending.insert(key, 1);
            }
            None => {
                tracing::warn!(
                    code,
                    "rejection counters: too many pending keys (is the store down?); one \
                     refusal was not counted"
                );
            }
        }
    }

    /// Adds the pending counts to the store. On failure, or when the caller stops waiting (a
    /// stats client that hangs up, shutdown), they go back to pending for the next flush.
    pub async fn flush(&self, store: &Store) -> StoreResult<()> {
        let mut taken = Taken {
            counter: self,
            batch: self.lock().drain().collect(),
        };
        if taken.batch.is_empty() {
            return Ok(());
        }
        store.add_rejection_counts(&taken.batch).await?;
        taken.batch.clear();
        Ok(())
    }

    /// Refusals counted but not flushed yet.
    pub fn pending(&self) -> u64 {
        self.lock().values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RejectionKey, u64>> {
        // A panic while holding the lock cannot leave the map inconsistent (each operation is
        // one insert or one drain), so a poisoned lock is safe to keep using.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counts taken out of memory for one flush; whatever is still here when it is dropped (the
/// write failed or was cancelled) is pending again.
struct Taken<'a> {
    counter: &'a RejectionCounter,
    batch: Vec<(RejectionKey, u64)>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut pending = self.counter.lock();
        for (key, n) in self.batch.drain(..) {
            *pending.entry(key).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn counts_aggregate_per_hour_station_code_and_ca() {
        let counter = RejectionCounter::new();
        counter.record(
            Some("line-1"),
            "invalid_csr",
            "ca-1",
            datetime!(2026-11-28 10:05 UTC),
        );
        counter.record(
            Some("line-1"),
            "invalid_csr",
            "ca-1",
            datetime!(2026-11-28 10:59 UTC),
        );
        counter.record(
            Some("line-1"),
            "invalid_csr",
            "ca-1",
            datetime!(2026-11-28 11:00 UTC),
        );
        counter.record(
            None,
            "unauthorized",
            "ca-1",
            datetime!(2026-11-28 10:10 UTC),
        );
        let pending = counter.lock().clone();
        assert_eq!(pending.len(), 3);
        let ten = RejectionKey {
            bucket: Timestamp::new(datetime!(2026-11-28 10:00 UTC)),
            station: "line-1".into(),
            code: "invalid_csr".into(),
            ca_id: "ca-1".into(),
        };
        assert_eq!(pending[&ten], 2);
        let anonymous = RejectionKey {
            station: String::new(),
            code: "unauthorized".into(),
            ..ten.clone()
        };
        assert_eq!(pending[&anonymous], 1);
        assert_eq!(counter.pending(), 4);
    }

    #[test]
    fn counts_taken_for_a_flush_that_does_not_finish_are_pending_again() {
        let counter = RejectionCounter::new();
        let at = datetime!(2026-11-28 10:05 UTC);
        counter.record(Some("line-1"), "invalid_csr", "ca-1", at);
        let taken = Taken {
            counter: &counter,
            batch: counter.lock().drain().collect(),
        };
        assert_eq!(counter.pending(), 0);
        counter.record(Some("line-1"), "invalid_csr", "ca-1", at);
        drop(taken);
        assert_eq!(
            counter.pending(),
            2,
            "the taken count is back beside the new one"
        );
    }

    #[test]
    fn hours_start_on_the_hour_in_utc() {
        let t = datetime!(2026-11-28 19:30:12.5 +09:00);
        assert_eq!(
            Timestamp::new(t).hour_start(),
            Timestamp::new(datetime!(2026-11-28 10:00 UTC))
        );
    }
}
