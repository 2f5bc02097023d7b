//! Syncs as jobs: a sync of a CA in a target is a row of `aws_sync_jobs` that one process at a
//! time holds (a lease it renews while it works), whether an admin waits for it (POST
//! .../aws/sync), started it to run in the background (`?wait=false`), or the periodic sync
//! queued it. The service's sync runner takes the running syncs nobody holds: the queued ones,
//! and those a stopped or dead process left, which resume at their stored page.

use std::time::Duration;

use tokio::sync::Notify;

use super::*;
use crate::store::sync_jobs::{SyncClaim, SyncCounts, SyncEnd, SyncError, SyncJob};

/// How long a claim on a sync holds without renewal: a process that dies leaves its syncs to
/// others after this long. Replicas' clocks must agree to well within it.
pub const SYNC_LEASE: Duration = Duration::from_secs(30);

/// How often the holder renews its lease while the sync works.
const LEASE_RENEWAL: Duration = Duration::from_secs(10);

/// This process's side of the sync jobs: its name as a lease holder, and the signal that wakes
/// its runner when a sync is queued.
pub struct SyncRunner {
    owner: String,
    queued: Notify,
}

impl Default for SyncRunner {
    fn default() -> Self {
        Self {
            owner: format!("sync-{}", uuid::Uuid::new_v4().simple()),
            queued: Notify::new(),
        }
    }
}

impl SyncRunner {
    /// Returns when a sync was queued since the last call.
    pub async fn queued(&self) {
        self.queued.notified().await
    }

    /// Gives up this process's leases (at shutdown), so that its unfinished syncs are taken
    /// over at once instead of when the leases run out.
    pub async fn release(&self, store: &Store) {
        match store.release_sync_leases(&self.owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(syncs = n, "unfinished AWS syncs left for the next start"),
            Err(e) => tracing::warn!(error = %e, "AWS sync leases not released; they expire"),
        }
    }
}

/// A sync this process took, to run with [`Provisioning::run_taken`].
pub struct TakenSync {
    ca_id: String,
    target: String,
    actor: String,
    request_id: Option<String>,
}

/// The syncs of a CA: the latest in each target.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncJobs {
    pub ca_id: String,
    /// Whether a sync is running in any of these targets.
    pub running: bool,
    /// The latest sync in each target the CA was synced in (of `?targets=` when given), by
    /// target name.
    pub targets: Vec<SyncJob>,
}

fn lease_until(now: Timestamp) -> Timestamp {
    now.checked_add(time::Duration::try_from(SYNC_LEASE).expect("the lease fits"))
        .unwrap_or(now)
}

impl Provisioning<'_> {
    /// Starts a background sync of the CA in each selected target it is registered in (default:
    /// all), for the sync runner to run; where one is running already, that one goes on. The
    /// start is audited as `ca.aws.sync_started` (its end as `ca.aws.sync`, by the same actor).
    pub async fn start_sync(
        &self,
        ca_id: &str,
        targets: Option<&[String]>,
        actor: Actor<'_>,
    ) -> Result<SyncJobs, ProvisioningError> {
        let selected = self.select(targets)?;
        self.ca_record(ca_id).await?;
        let registrations = self.registrations_in(ca_id, &selected).await?;
        let now = Timestamp::now();
        let (mut started, mut running) = (Vec::new(), Vec::new());
        for (target, _) in &registrations {
            let claim = SyncClaim {
                ca_id,
                target: &target.name,
                now,
            };
            if self
                .store
                .queue_sync(claim, actor.name, actor.request_id)
                .await?
            {
                started.push(target.name.as_str());
            } else {
                running.push(target.name.as_str());
            }
        }
        let mut detail = format!("started in {}", list_or_none(&started));
        if !running.is_empty() {
            detail += &format!("; running already in {}", running.join(", "));
        }
        self.audit("ca.aws.sync_started", ca_id, true, &detail, actor)
            .await?;
        if !started.is_empty() {
            self.syncs.queued.notify_one();
        }
        let names: Vec<String> = registrations.iter().map(|(t, _)| t.name.clone()).collect();
        self.sync_jobs_in(ca_id, &names).await
    }

    /// The latest sync of the CA in each selected target (default: all) it was synced in.
    pub async fn sync_jobs(
        &self,
        ca_id: &str,
        targets: Option<&[String]>,
    ) -> Result<SyncJobs, ProvisioningError> {
        let selected = self.select(targets)?;
        self.ca_record(ca_id).await?;
        let names: Vec<String> = selected.iter().map(|t| t.name.clone()).collect();
        self.sync_jobs_in(ca_id, &names).await
    }

    async fn sync_jobs_in(
        &self,
        ca_id: &str,
        names: &[String],
    ) -> Result<SyncJobs, ProvisioningError> {
        let targets: Vec<SyncJob> = self
            .store
            .list_sync_jobs(ca_id, Timestamp::now())
            .await?
            .into_iter()
            .filter(|j| names.contains(&j.target))
            .collect();
        Ok(SyncJobs {
            ca_id: ca_id.to_owned(),
            running: targets
                .iter()
                .any(|j| j.state == crate::store::sync_jobs::SyncState::Running),
            targets,
        })
    }

    /// Syncs the CA in `target` now, holding the sync's lease; `SyncRunning` when another
    /// process holds it.
    pub(super) async fn sync_now(
        &self,
        target: &AwsTargetRegistry,
        reg: &AwsRegistration,
        actor: Actor<'_>,
    ) -> Result<SyncReport, ProvisioningError> {
        let now = Timestamp::now();
        let claim = SyncClaim {
            ca_id: &reg.ca_id,
            target: &target.name,
            now,
        };
        let owner = self.syncs.owner.as_str();
        if !self
            .store
            .begin_sync(claim, actor.name, actor.request_id, owner, lease_until(now))
            .await?
        {
            return Err(ProvisioningError::SyncRunning {
                ca_id: reg.ca_id.clone(),
                target: target.name.clone(),
            });
        }
        self.run_held(target, reg, actor).await
    }

    /// Takes up to `slots` running syncs nobody holds, oldest first, for this process.
    pub async fn take_unheld(&self, slots: usize) -> Result<Vec<TakenSync>, ProvisioningError> {
        let mut taken = Vec::new();
        if slots == 0 {
            return Ok(taken);
        }
        let now = Timestamp::now();
        for (ca_id, target, actor, request_id) in self.store.unheld_syncs(now).await? {
            let claim = SyncClaim {
                ca_id: &ca_id,
                target: &target,
                now,
            };
            if self
                .store
                .claim_sync(claim, &self.syncs.owner, lease_until(now))
                .await?
            {
                taken.push(TakenSync {
                    ca_id,
                    target,
                    actor,
                    request_id,
                });
                if taken.len() == slots {
                    break;
                }
            }
        }
        Ok(taken)
    }

    /// Runs a sync [`Provisioning::take_unheld`] took, to its end (or to where it stops:
    /// AWS failing, the store failing, the lease lost). Errors are logged.
    pub async fn run_taken(&self, job: TakenSync) {
        let actor = Actor {
            name: &job.actor,
            request_id: job.request_id.as_deref(),
        };
        let found = match self.targets.iter().find(|t| t.name == job.target) {
            // A target taken out of the settings since the sync was started.
            None => Err(ProvisioningError::UnknownTarget {
                name: job.target.clone(),
                configured: self.target_names(),
            }),
            Some(t) => match self
                .store
                .get_aws_target_registration(&job.ca_id, &t.name)
                .await
            {
                Ok(Some(reg)) => Ok((t, reg)),
                // Deregistered since the sync was started: nothing to list there any more.
                Ok(None) => Err(ProvisioningError::NotRegistered(job.ca_id.clone())),
                Err(e) => Err(e.into()),
            },
        };
        let result = match found {
            Ok((target, reg)) => self.run_held(target, &reg, actor).await.map(|_| ()),
            // The lease runs out and the sync is taken again when the store answers.
            Err(e @ ProvisioningError::Store(_)) => Err(e),
            Err(e) => {
                let claim = SyncClaim {
                    ca_id: &job.ca_id,
                    target: &job.target,
                    now: Timestamp::now(),
                };
                let end = SyncEnd::Failed(sync_error(&e));
                match self.store.end_sync(claim, &self.syncs.owner, &end).await {
                    Ok(()) => Err(e),
                    Err(store) => Err(store.into()),
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(ca_id = %job.ca_id, target = %job.target, error = %e, "AWS sync stopped");
        }
    }

    /// Runs the sync whose lease this process holds, renewing the lease while it works, and
    /// records how it ended: finished, failed (what AWS answered), or still running (AWS has
    /// more pages than one run takes, or the store failed) for a runner to resume.
    async fn run_held(
        &self,
        target: &AwsTargetRegistry,
        reg: &AwsRegistration,
        actor: Actor<'_>,
    ) -> Result<SyncReport, ProvisioningError> {
        let (ca_id, owner) = (reg.ca_id.as_str(), self.syncs.owner.as_str());
        let work = self.sync_in(target, reg, actor);
        tokio::pin!(work);
        let mut renewal =
            tokio::time::interval_at(tokio::time::Instant::now() + LEASE_RENEWAL, LEASE_RENEWAL);
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renewal.tick() => {
                    let until = lease_until(Timestamp::now());
                    match self.store.renew_sync_lease(ca_id, &target.name, owner, until).await {
                        Ok(true) => {}
                        // Another process took the sync over: it goes on there.
                        Ok(false) => return Err(ProvisioningError::SyncRunning {
                            ca_id: ca_id.to_owned(),
                            target: target.name.clone(),
                        }),
                        Err(e) => tracing::warn!(%ca_id, target = %target.name, error = %e,
                            "AWS sync lease not renewed; retrying"),
                    }
                }
            }
        };
        let end = match &result {
            Ok(report) if report.more => SyncEnd::Unfinished,
            Ok(report) => SyncEnd::Finished(SyncCounts {
                pages: report.pages as i64,
                listed: report.listed as i64,
                matched: report.matched as i64,
                not_in_ledger: report.not_in_ledger as i64,
                unknown_status: report.unknown_status as i64,
            }),
            // Not the target's failure: the sync resumes when the store answers again.
            Err(ProvisioningError::Store(_)) => SyncEnd::Unfinished,
            Err(e) => SyncEnd::Failed(sync_error(e)),
        };
        let claim = SyncClaim {
            ca_id,
            target: &target.name,
            now: Timestamp::now(),
        };
        self.store.end_sync(claim, owner, &end).await?;
        self.record_attempt(ca_id, &target.name, "sync", result.as_ref().err())
            .await?;
        result
    }
}

fn sync_error(e: &ProvisioningError) -> SyncError {
    let f = TargetFailure::of(e);
    SyncError {
        kind: f.kind,
        code: f.code,
        message: f.message,
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "no target".to_owned()
    } else {
        names.join(", ")
    }
}
