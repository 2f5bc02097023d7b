//! Background jobs of a running service: the rejection-count flush, the database reachability
//! probe (`services::store_health`), the ledger checkpoints (`[ledger]`), and with AWS configured the
//! revocation push retry, the sync runner and the periodic sync. Each round is bounded; errors are logged and
//! retried on the next round.

use std::time::Duration;

use super::AppState;

/// How often refused-request counts go from memory to the store.
const REJECTION_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// How often the CA health checks refresh the metrics gauges (`GET /v1/admin/health` refreshes
/// them too), and when the first check runs after start.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(300);
const HEALTH_FIRST_CHECK: Duration = Duration::from_secs(30);

/// How often the CAs trusted for device certificates are re-read from the store.
const DEVICE_TRUST_INTERVAL: Duration = Duration::from_secs(60);

/// How often the chains' heads are compared with their last checkpoints (two index lookups per
/// CA): a checkpoint is made at most this long after it is due.
const CHECKPOINT_POLL: Duration = Duration::from_secs(1);

/// How often the sync runner looks for syncs nobody runs (a queued sync wakes it at once; one
/// that a dead process held is free once its lease, `provisioning::SYNC_LEASE`, runs out).
const SYNC_POLL: Duration = Duration::from_secs(5);

/// Most syncs one process runs at once (each its own CA and target; each target's calls go
/// through its rate limit).
const MAX_SYNCS: usize = 8;

/// Revocations pushed per batch of the retry job.
const PUSH_BATCH: u32 = 500;

/// The running jobs. At shutdown the flush job is stopped between two flushes (a flush it has
/// begun, which has taken its counts from memory, completes), the others are aborted.
pub(super) struct Jobs {
    flush: tokio::task::JoinHandle<()>,
    stop_flush: tokio::sync::watch::Sender<bool>,
    others: Vec<tokio::task::JoinHandle<()>>,
}

impl Jobs {
    pub(super) fn push(&mut self, job: tokio::task::JoinHandle<()>) {
        self.others.push(job);
    }

    /// Returns once no job can write to the store any more.
    pub(super) async fn stop(self) {
        for job in &self.others {
            job.abort();
        }
        let _ = self.stop_flush.send(true);
        let _ = self.flush.await;
        for job in self.others {
            let _ = job.await;
        }
    }
}

/// Flushes the refused-request counts every few seconds. With AWS configured also: retry pending
/// revocation pushes, and sync registered CAs when `aws.sync_interval_secs` is set. Each round
/// is bounded; errors are logged and retried.
pub(super) fn background_jobs(state: &AppState) -> Jobs {
    let (stop_flush, mut stopping) = tokio::sync::watch::channel(false);
    let s = state.clone();
    let flush = tokio::spawn(async move {
        let mut tick = tokio::time::interval(REJECTION_FLUSH_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.changed() => return,
            }
            if let Err(e) = s.rejections.flush(&s.store).await {
                tracing::warn!(error = %e, "rejection counts not flushed; retrying");
            }
        }
    });
    let mut jobs = Jobs {
        flush,
        stop_flush,
        others: Vec::new(),
    };
    // The CAs trusted for device certificates (EST simplereenroll) follow the store: CAs that
    // the CLI or another replica created are picked up within this interval (this process's
    // own admin routes update it at once).
    if let Some(devices) = state.device_trust.clone() {
        let s = state.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(DEVICE_TRUST_INTERVAL);
            loop {
                tick.tick().await;
                match s.store.list_cas().await {
                    Ok(cas) => devices.update(&cas),
                    Err(e) => tracing::warn!(error = %e, "CAs for device certificates not re-read"),
                }
            }
        }));
    }
    jobs.push(tokio::spawn(state.store_health.clone().run_probe(
        crate::store::probe::ProbeConnection::new(&state.settings),
    )));
    let s = state.clone();
    jobs.push(tokio::spawn(async move {
        let start = tokio::time::Instant::now() + HEALTH_FIRST_CHECK;
        let mut tick = tokio::time::interval_at(start, HEALTH_CHECK_INTERVAL);
        loop {
            tick.tick().await;
            match s.health().await {
                Ok(report) => report.record_gauges(),
                Err(e) => tracing::warn!(error = %e, "CA health check failed; retrying"),
            }
        }
    }));
    jobs.push(super::upkeep::spawn(state.clone()));
    if state.settings.ledger.checkpoints_enabled() {
        let s = state.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Polled every second: a store outage is logged when it starts and when it ends,
            // not on every poll.
            let mut failing = false;
            loop {
                tick.tick().await;
                let when = crate::services::ledger::CheckpointWhen::Due(&s.settings.ledger);
                let now = crate::store::Timestamp::now();
                match crate::services::ledger::checkpoint_chains(&s.store, &s.audit_key, when, now)
                    .await
                {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("ledger checkpoints: the store answers again");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "ledger checkpoint: store unavailable; will retry");
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    if state.iot.is_none() {
        return jobs;
    }
    let retry = state.settings.aws.revocation_retry_secs;
    let s = state.clone();
    jobs.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(retry);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Revocations every target has but still flagged pending (a kill between two steps
            // of an older version, a CA deregistered from a target) are done: finish them.
            if let Err(e) = s.provisioning().finish_told_revocations().await {
                tracing::warn!(error = %e, "finishing revocations told to every target failed");
            }
            // Batch after batch while each goes through whole: the registry paces the calls
            // (aws.api_rate_per_sec), so a large backlog drains at AWS's rate. Bounded by the
            // backlog, which each full batch shrinks.
            loop {
                match s
                    .provisioning()
                    .push_revocations(None, None, PUSH_BATCH)
                    .await
                {
                    Ok((pushed, None)) if pushed >= PUSH_BATCH as usize => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation retry round failed");
                        break;
                    }
                }
            }
        }
    }));
    jobs.push(tokio::spawn(run_syncs(state.clone())));
    let every = state.settings.aws.sync_interval_secs;
    if !every.is_zero() {
        let s = state.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let registrations = match s.store.list_aws_registrations().await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "periodic AWS sync: store unavailable");
                        continue;
                    }
                };
                let mut ca_ids: Vec<String> = registrations.into_iter().map(|r| r.ca_id).collect();
                ca_ids.dedup();
                for ca_id in ca_ids {
                    let actor = crate::services::audit::Actor::system("system:sync");
                    // Queued for the sync runner, every target the CA is registered in; a sync
                    // still running from the last round goes on.
                    if let Err(e) = s.provisioning().start_sync(&ca_id, None, actor).await {
                        tracing::warn!(%ca_id, error = %e, "periodic AWS sync not started");
                    }
                }
            }
        }));
    }
    jobs
}

/// The sync runner: takes the running syncs nobody holds (queued ones, and those a stopped or
/// dead process left, which resume at their stored page) and runs them side by side, each
/// (CA, target) in one process at a time, at most [`MAX_SYNCS`] at once. A sync that fails
/// ends failed without holding up the others. Aborted at shutdown with the syncs it runs (their
/// leases are then released, `Application::run_until`).
async fn run_syncs(state: AppState) {
    use futures_util::StreamExt;
    let provisioning = state.provisioning();
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut tick = tokio::time::interval(SYNC_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.syncs.queued() => {}
            Some(()) = running.next(), if !running.is_empty() => {}
        }
        match provisioning.take_unheld(MAX_SYNCS - running.len()).await {
            Ok(taken) => {
                for sync in taken {
                    running.push(provisioning.run_taken(sync));
                }
            }
            Err(e) => tracing::warn!(error = %e, "AWS sync runner: store unavailable; will retry"),
        }
    }
}
