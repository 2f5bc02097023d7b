//! Whether the database is reachable, as a background probe last found it. While it is not,
//! requests that need the ledger are refused at once (503 `store_unavailable` with
//! Retry-After) instead of each waiting for the pool's connect timeout, and `/readyz` answers
//! at once. The probe keeps running and notices recovery by itself.
//!
//! The probe uses a connection of its own ([`ProbeConnection`]), so a pool busy with requests
//! is never taken for an outage. Refusing early changes nothing in the issuance guarantee: a
//! refused request never reaches the signer, and no certificate leaves without its committed
//! ledger row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::store::probe::ProbeConnection;

/// Time between probes while the database answers.
pub const PROBE_INTERVAL_UP: Duration = Duration::from_secs(1);
/// Time between probes after a failure, until it answers again.
pub const PROBE_INTERVAL_DOWN: Duration = Duration::from_millis(500);
/// A probe that takes longer has failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed probes in a row that mark the database unreachable (one slow round trip is not an
/// outage).
const FAILURES_TO_MARK_DOWN: u32 = 2;

#[derive(Debug)]
pub struct StoreHealth {
    reachable: AtomicBool,
    /// Wakes the probe early: a request just failed on the store.
    suspect: Notify,
}

impl StoreHealth {
    /// Reachable until a probe says otherwise (the service has just connected).
    pub fn new() -> Arc<StoreHealth> {
        metrics::gauge!("factory_ca_store_reachable").set(1.0);
        Arc::new(StoreHealth {
            reachable: AtomicBool::new(true),
            suspect: Notify::new(),
        })
    }

    /// False once the probe has failed [`FAILURES_TO_MARK_DOWN`] times in a row, true again
    /// after one success.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// A request failed on the store: probe now rather than at the next interval.
    pub fn suspect(&self) {
        self.suspect.notify_one();
    }

    fn set(&self, reachable: bool, detail: &str) {
        if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            metrics::gauge!("factory_ca_store_reachable").set(if reachable { 1.0 } else { 0.0 });
            if reachable {
                tracing::info!("the database answers again; serving requests");
            } else {
                tracing::error!(
                    error = detail,
                    "the database is unreachable: refusing requests that need it with 503 \
                     store_unavailable until a probe succeeds"
                );
            }
        }
    }

    /// Probes forever (the caller aborts the task at shutdown).
    pub async fn run_probe(self: Arc<Self>, mut probe: ProbeConnection) {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            metrics::histogram!("factory_ca_store_probe_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            let interval = match outcome {
                Ok(()) => {
                    failures = 0;
                    self.set(true, "");
                    PROBE_INTERVAL_UP
                }
                Err(detail) => {
                    failures += 1;
                    tracing::debug!(error = %detail, failures, "database probe failed");
                    if failures >= FAILURES_TO_MARK_DOWN {
                        self.set(false, &detail);
                    }
                    PROBE_INTERVAL_DOWN
                }
            };
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.suspect.notified() => {
                    // Many failing requests wake the probe at most every PROBE_INTERVAL_DOWN.
                    tokio::time::sleep_until(started + PROBE_INTERVAL_DOWN).await;
                }
            }
        }
    }
}
