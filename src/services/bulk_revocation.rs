//! Bulk revocation: revoke every active certificate that a filter matches, with one reason, as
//! a job with an id, progress and a result. A dry run answers how many certificates and which
//! first ones a filter touches. The job runs in batches ([`Store::revoke_batch`]); the service's
//! upkeep job runs it (and resumes unfinished jobs after a restart), the CLI runs it in the
//! foreground. Revoked certificates reach AWS IoT through the revocation push and its retry,
//! like single revocations.

use tokio::sync::Notify;

use crate::ca::RevocationReason;
use crate::services::audit::Actor;
use crate::store::bulk_revocation::{
    NewRevocationJob, RevocationCandidate, RevocationFilter, RevocationJob,
};
use crate::store::{Store, StoreError, Timestamp};

/// Most entries of `serials` and of `thing_names` in one filter. 1,000 serials are ~43 KB of
/// JSON, within the default `server.body_limit_bytes`; larger sets go in several jobs, or are
/// better described by a station, prefix or time window.
pub const MAX_LISTED: usize = 1000;

/// How many matching certificates a dry run lists.
pub const DRY_RUN_LISTED: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum BulkRevocationError {
    /// The filter is empty, or one of its criteria is malformed.
    #[error("{0}")]
    InvalidFilter(String),
    /// `serials` or `thing_names` is longer than [`MAX_LISTED`].
    #[error("{0}")]
    ListTooLong(String),
    #[error("no CA with id {0:?}")]
    CaNotFound(String),
    #[error("no bulk revocation job with id {0:?}")]
    JobNotFound(String),
    /// The Idempotency-Key belongs to a job with another filter or reason.
    #[error(
        "Idempotency-Key {0:?} was used for another bulk revocation (its filter or reason \
         differ); use a new key for a new job"
    )]
    IdempotencyKeyReused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a dry run found.
#[derive(Debug)]
pub struct DryRun {
    /// Active certificates the filter matches now.
    pub matched: i64,
    /// The first of them, oldest issuance first, at most [`DRY_RUN_LISTED`].
    pub first: Vec<RevocationCandidate>,
}

pub struct BulkRevocations {
    batch_size: u32,
    /// Wakes the upkeep job when a job is submitted.
    submitted: Notify,
}

impl BulkRevocations {
    pub fn new(batch_size: u32) -> Self {
        Self {
            batch_size: batch_size.max(1),
            submitted: Notify::new(),
        }
    }

    /// Checks a filter and returns it normalized (serials in lowercase).
    pub async fn validate(
        &self,
        store: &Store,
        mut filter: RevocationFilter,
    ) -> Result<RevocationFilter, BulkRevocationError> {
        use BulkRevocationError::*;
        if filter.is_empty() {
            return Err(InvalidFilter(
                "the filter is empty, which would revoke every certificate; give at least one \
                 of ca_id, station, thing_name_prefix, issued_after, issued_before, serials, \
                 thing_names"
                    .into(),
            ));
        }
        for (name, list) in [
            ("serials", &filter.serials),
            ("thing_names", &filter.thing_names),
        ] {
            if list.len() > MAX_LISTED {
                return Err(ListTooLong(format!(
                    "{name} has {} entries; at most {MAX_LISTED} are accepted per job (split \
                     the list, or filter by station, thing_name_prefix or time)",
                    list.len()
                )));
            }
        }
        for serial in &mut filter.serials {
            if serial.len() != 40 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(InvalidFilter(format!(
                    "serials: {:?} is not a serial (40 hex characters)",
                    serial.chars().take(64).collect::<String>()
                )));
            }
            serial.make_ascii_lowercase();
        }
        for (name, value) in [
            ("ca_id", &filter.ca_id),
            ("station", &filter.station),
            ("thing_name_prefix", &filter.thing_name_prefix),
        ] {
            if value.as_deref().is_some_and(|v| v.is_empty()) {
                return Err(InvalidFilter(format!(
                    "{name} is empty; leave it out to not filter by it"
                )));
            }
        }
        if filter.thing_names.iter().any(String::is_empty) {
            return Err(InvalidFilter("thing_names has an empty name".into()));
        }
        if let (Some(after), Some(before)) = (filter.issued_after, filter.issued_before)
            && after >= before
        {
            return Err(InvalidFilter(
                "issued_after must be before issued_before".into(),
            ));
        }
        if let Some(ca_id) = &filter.ca_id
            && store.get_ca(ca_id).await?.is_none()
        {
            return Err(CaNotFound(ca_id.clone()));
        }
        Ok(filter)
    }

    /// How many active certificates `filter` (validated) matches now, and the first ones.
    pub async fn dry_run(
        &self,
        store: &Store,
        filter: &RevocationFilter,
    ) -> Result<DryRun, BulkRevocationError> {
        let (matched, first) = store
            .revocation_candidates(filter, Timestamp::now(), DRY_RUN_LISTED)
            .await?;
        Ok(DryRun { matched, first })
    }

    /// Creates a job for `filter` (validated) and wakes the upkeep job to run it. The job
    /// revokes the certificates matching when it is created, not ones issued later. With an
    /// `idempotency_key` an earlier job holds, returns that job (`false`) when it has the same
    /// filter and reason.
    pub async fn submit(
        &self,
        store: &Store,
        filter: &RevocationFilter,
        reason: RevocationReason,
        actor: Actor<'_>,
        idempotency_key: Option<&str>,
    ) -> Result<(RevocationJob, bool), BulkRevocationError> {
        let id = format!("rev-{}", uuid::Uuid::new_v4().simple());
        let (job, created) = store
            .create_revocation_job(&NewRevocationJob {
                id: &id,
                now: Timestamp::now(),
                actor: actor.name,
                request_id: actor.request_id,
                idempotency_key,
                filter,
                reason,
            })
            .await?;
        if !created && (job.filter != *filter || job.reason != reason) {
            return Err(BulkRevocationError::IdempotencyKeyReused(
                idempotency_key.unwrap_or_default().to_owned(),
            ));
        }
        if created {
            tracing::info!(job = %job.id, matched = job.matched, reason = reason.name(), actor = actor.name, "bulk revocation job created");
            self.submitted.notify_one();
        }
        Ok((job, created))
    }

    pub async fn job(&self, store: &Store, id: &str) -> Result<RevocationJob, BulkRevocationError> {
        store
            .revocation_job(id)
            .await?
            .ok_or_else(|| BulkRevocationError::JobNotFound(id.to_owned()))
    }

    /// Runs `job` to its end: batches until nothing matching is left active, then marks it
    /// finished with its audit record. `progress` is called after each batch with the job's
    /// revoked count so far. Safe to call for a job another process is running too: each
    /// certificate is revoked and counted once.
    pub async fn run(
        &self,
        store: &Store,
        job: &RevocationJob,
        mut progress: impl FnMut(i64),
    ) -> Result<RevocationJob, BulkRevocationError> {
        let mut revoked = job.revoked;
        if !job.is_finished() {
            loop {
                let n = store
                    .revoke_batch(job, self.batch_size, Timestamp::now())
                    .await?;
                if n == 0 {
                    break;
                }
                revoked += i64::try_from(n).unwrap_or(i64::MAX);
                progress(revoked);
            }
            if let Some(finished) = store
                .finish_revocation_job(&job.id, Timestamp::now())
                .await?
            {
                tracing::info!(job = %finished.id, revoked = finished.revoked, "bulk revocation job finished");
            }
        }
        self.job(store, &job.id).await
    }

    /// Runs every unfinished job, oldest first (after a restart, the ones it interrupted).
    /// Returns how many it finished.
    pub async fn run_unfinished(&self, store: &Store) -> Result<usize, BulkRevocationError> {
        let mut finished = 0;
        for job in store.unfinished_revocation_jobs().await? {
            self.run(store, &job, |_| {}).await?;
            finished += 1;
        }
        Ok(finished)
    }

    /// Returns when a job was submitted since the last call.
    pub async fn submitted(&self) {
        self.submitted.notified().await
    }
}
