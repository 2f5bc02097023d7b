//! `aws_sync_jobs`: the latest sync of each (CA, AWS target), its state and counts, and the lease
//! that lets one process at a time run it. A lease is a row claim: an update that succeeds only
//! while nobody holds the row or its holder's lease has expired, so it works the same on
//! PostgreSQL and SQLite and across replicas sharing the database. Where the sync stands (its
//! page marker and counts while it runs) stays in `aws_sync_progress` ([`super::aws`]).

use serde::Serialize;
use sqlx::FromRow;

use super::*;

/// Where a sync is: running (being run, or waiting for a process to run it), finished, or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Running,
    Finished,
    Failed,
}

impl SyncState {
    fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "running" => Ok(Self::Running),
            "finished" => Ok(Self::Finished),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError(sqlx::Error::Decode(
                format!("aws_sync_jobs.state {other:?}").into(),
            ))),
        }
    }
}

/// Counts of a sync: the running one's so far, or the final ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SyncCounts {
    /// Pages of ListCertificatesByCA done.
    pub pages: i64,
    /// Certificates AWS listed under the CA.
    pub listed: i64,
    /// Of those, the ones found in the ledger and marked.
    pub matched: i64,
    /// Listed by AWS but not issued by this ledger.
    pub not_in_ledger: i64,
    /// Listed with a status factory-ca does not know (logged, not recorded).
    pub unknown_status: i64,
}

/// What made a sync fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SyncError {
    /// `throttled`, `unreachable`, `unavailable`, `access_denied`, `not_found`, `rejected`,
    /// `not_registered`, ... (as a target's failure in the other AWS answers), or `failed`.
    pub kind: String,
    /// AWS's error code, e.g. `ThrottlingException`; null when AWS sent none.
    pub code: Option<String>,
    pub message: String,
}

/// The latest sync of a CA in one target.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncJob {
    pub ca_id: String,
    pub target: String,
    pub state: SyncState,
    /// Who started it: a token name, or `system:sync` for the periodic sync.
    pub started_by: String,
    #[serde(flatten)]
    pub counts: SyncCounts,
    #[serde(with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// When a page was last recorded, or the state last changed.
    #[serde(with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[serde(with = "super::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    /// What failed; null unless `state` is `failed`.
    pub error: Option<SyncError>,
    /// Whether a process is running it now (false: waiting for one, e.g. after a restart).
    pub claimed: bool,
}

/// How a sync run ended, as its holder records it.
#[derive(Debug, Clone)]
pub enum SyncEnd {
    Finished(SyncCounts),
    Failed(SyncError),
    /// Not done (AWS has more pages than one run takes): stays running, for any process to take.
    Unfinished,
}

#[derive(FromRow)]
struct JobRow {
    ca_id: String,
    target: String,
    state: String,
    actor: String,
    started_at: Timestamp,
    updated_at: Timestamp,
    finished_at: Option<Timestamp>,
    pages: i64,
    listed: i64,
    matched: i64,
    not_in_ledger: i64,
    unknown_status: i64,
    error_kind: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    claimed: bool,
    /// The page counts of `aws_sync_progress`, when the sync has done a page and not finished.
    p_pages: Option<i64>,
    p_listed: Option<i64>,
    p_matched: Option<i64>,
    p_not_in_ledger: Option<i64>,
    p_unknown_status: Option<i64>,
    p_updated_at: Option<Timestamp>,
}

impl JobRow {
    fn into_job(self) -> StoreResult<SyncJob> {
        let state = SyncState::parse(&self.state)?;
        // A finished sync's progress row is gone; a running or failed one's holds the pages
        // done (a failed sync resumes there).
        let progress = (state != SyncState::Finished)
            .then_some(())
            .and(self.p_pages);
        let (counts, updated_at) = match progress {
            Some(pages) => (
                SyncCounts {
                    pages,
                    listed: self.p_listed.unwrap_or_default(),
                    matched: self.p_matched.unwrap_or_default(),
                    not_in_ledger: self.p_not_in_ledger.unwrap_or_default(),
                    unknown_status: self.p_unknown_status.unwrap_or_default(),
                },
                self.p_updated_at
                    .map_or(self.updated_at, |p| p.max(self.updated_at)),
            ),
            None => (
                SyncCounts {
                    pages: self.pages,
                    listed: self.listed,
                    matched: self.matched,
                    not_in_ledger: self.not_in_ledger,
                    unknown_status: self.unknown_status,
                },
                self.updated_at,
            ),
        };
        Ok(SyncJob {
            ca_id: self.ca_id,
            target: self.target,
            state,
            started_by: self.actor,
            counts,
            started_at: self.started_at,
            updated_at,
            finished_at: self.finished_at,
            error: self.error_kind.map(|kind| SyncError {
                kind,
                code: self.error_code,
                message: self.error_message.unwrap_or_default(),
            }),
            claimed: self.claimed,
        })
    }
}

/// A running sync nobody holds: (ca_id, target, actor, request_id).
pub type UnheldSync = (String, String, String, Option<String>);

/// The sync of `ca_id` in `target`, at `now`.
#[derive(Debug, Clone, Copy)]
pub struct SyncClaim<'a> {
    pub ca_id: &'a str,
    pub target: &'a str,
    pub now: Timestamp,
}

/// Resets a row to a new running sync; `$1`..`$5` are ca_id, target, actor, request_id, now and
/// `$6`, `$7` the lease (null: nobody runs it yet). Followed by the condition under which an
/// existing row may be reset.
const START_SQL: &str = "INSERT INTO aws_sync_jobs (ca_id, target, state, actor, request_id, \
     started_at, updated_at, lease_owner, lease_expires_at) \
     VALUES ($1, $2, 'running', $3, $4, $5, $5, $6, $7) \
     ON CONFLICT (ca_id, target) DO UPDATE SET state = 'running', actor = excluded.actor, \
     request_id = excluded.request_id, started_at = excluded.started_at, \
     updated_at = excluded.updated_at, finished_at = NULL, pages = 0, listed = 0, matched = 0, \
     not_in_ledger = 0, unknown_status = 0, error_kind = NULL, error_code = NULL, \
     error_message = NULL, lease_owner = excluded.lease_owner, \
     lease_expires_at = excluded.lease_expires_at WHERE ";

/// Nobody holds the row, or its holder's lease ran out (`$5` is now).
const UNHELD: &str = "(aws_sync_jobs.lease_owner IS NULL OR aws_sync_jobs.lease_expires_at < $5)";

impl Store {
    /// Starts a sync for a process to run (the service's sync runner): a new row, or the
    /// previous finished or failed sync's row reset. Returns false when a sync of this CA in
    /// this target is running already (that one is left as it is).
    pub async fn queue_sync(
        &self,
        c: SyncClaim<'_>,
        actor: &str,
        request_id: Option<&str>,
    ) -> StoreResult<bool> {
        let sql = format!("{START_SQL} aws_sync_jobs.state <> 'running'");
        self.start_sync(&sql, c, actor, request_id, None).await
    }

    /// Starts a sync that this process runs at once (`owner` holds it until `until`): a new row,
    /// or one nobody holds (a finished, failed or interrupted sync, or one queued and not taken
    /// yet). Returns false when another process holds it.
    pub async fn begin_sync(
        &self,
        c: SyncClaim<'_>,
        actor: &str,
        request_id: Option<&str>,
        owner: &str,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let sql = format!("{START_SQL} {UNHELD}");
        self.start_sync(&sql, c, actor, request_id, Some((owner, until)))
            .await
    }

    async fn start_sync(
        &self,
        sql: &str,
        c: SyncClaim<'_>,
        actor: &str,
        request_id: Option<&str>,
        lease: Option<(&str, Timestamp)>,
    ) -> StoreResult<bool> {
        let changed = on_pool!(self, |pool| sqlx::query(sql)
            .bind(c.ca_id)
            .bind(c.target)
            .bind(actor)
            .bind(request_id)
            .bind(c.now)
            .bind(lease.map(|(owner, _)| owner))
            .bind(lease.map(|(_, until)| until))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }

    /// Running syncs nobody holds (queued, or left by a process that stopped or died), oldest
    /// first: those a sync runner may take.
    /// Each as (ca_id, target, actor, request_id).
    pub async fn unheld_syncs(&self, now: Timestamp) -> StoreResult<Vec<UnheldSync>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT ca_id, target, actor, request_id FROM aws_sync_jobs WHERE state = 'running' \
             AND (lease_owner IS NULL OR lease_expires_at < $1) ORDER BY started_at"
        )
        .bind(now)
        .fetch_all(pool)
        .await)?)
    }

    /// Takes a running sync nobody holds for `owner` until `until`. False when another process
    /// holds it or it is not running any more.
    pub async fn claim_sync(
        &self,
        c: SyncClaim<'_>,
        owner: &str,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE aws_sync_jobs SET lease_owner = $3, lease_expires_at = $4 \
             WHERE ca_id = $1 AND target = $2 AND state = 'running' \
             AND (lease_owner IS NULL OR lease_expires_at < $5)"
        )
        .bind(c.ca_id)
        .bind(c.target)
        .bind(owner)
        .bind(until)
        .bind(c.now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }

    /// Extends `owner`'s lease to `until`. False when `owner` no longer holds it (it expired
    /// and another process took the sync over).
    pub async fn renew_sync_lease(
        &self,
        ca_id: &str,
        target: &str,
        owner: &str,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE aws_sync_jobs SET lease_expires_at = $4 \
             WHERE ca_id = $1 AND target = $2 AND lease_owner = $3"
        )
        .bind(ca_id)
        .bind(target)
        .bind(owner)
        .bind(until)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }

    /// Records how `owner`'s run of a sync ended and gives its lease up. Nothing happens when
    /// `owner` no longer holds it.
    pub async fn end_sync(&self, c: SyncClaim<'_>, owner: &str, end: &SyncEnd) -> StoreResult<()> {
        let (state, counts, error, finished_at) = match end {
            SyncEnd::Finished(counts) => ("finished", *counts, None, Some(c.now)),
            SyncEnd::Failed(e) => ("failed", SyncCounts::default(), Some(e), Some(c.now)),
            SyncEnd::Unfinished => ("running", SyncCounts::default(), None, None),
        };
        on_pool!(self, |pool| sqlx::query(
            "UPDATE aws_sync_jobs SET state = $4, updated_at = $5, finished_at = $6, \
             pages = $7, listed = $8, matched = $9, not_in_ledger = $10, unknown_status = $11, \
             error_kind = $12, error_code = $13, error_message = $14, \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE ca_id = $1 AND target = $2 AND lease_owner = $3"
        )
        .bind(c.ca_id)
        .bind(c.target)
        .bind(owner)
        .bind(state)
        .bind(c.now)
        .bind(finished_at)
        .bind(counts.pages)
        .bind(counts.listed)
        .bind(counts.matched)
        .bind(counts.not_in_ledger)
        .bind(counts.unknown_status)
        .bind(error.map(|e| e.kind.as_str()))
        .bind(error.and_then(|e| e.code.as_deref()))
        .bind(error.map(|e| e.message.as_str()))
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Gives up every lease `owner` holds (at shutdown): its unfinished syncs stay running,
    /// for the next process to take at once rather than when the leases run out.
    pub async fn release_sync_leases(&self, owner: &str) -> StoreResult<u64> {
        Ok(on_pool!(self, |pool| sqlx::query(
            "UPDATE aws_sync_jobs SET lease_owner = NULL, lease_expires_at = NULL \
             WHERE lease_owner = $1"
        )
        .bind(owner)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?)
    }

    /// The latest sync of `ca_id` in each target it was synced in, by target name; a running
    /// or failed one with the counts of the pages it has done.
    pub async fn list_sync_jobs(&self, ca_id: &str, now: Timestamp) -> StoreResult<Vec<SyncJob>> {
        let rows: Vec<JobRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT j.ca_id, j.target, j.state, j.actor, j.started_at, j.updated_at, \
             j.finished_at, j.pages, j.listed, j.matched, j.not_in_ledger, j.unknown_status, \
             j.error_kind, j.error_code, j.error_message, \
             (j.lease_owner IS NOT NULL AND j.lease_expires_at >= $2) AS claimed, \
             p.pages AS p_pages, p.listed AS p_listed, p.matched AS p_matched, \
             p.not_in_ledger AS p_not_in_ledger, p.unknown_status AS p_unknown_status, \
             p.updated_at AS p_updated_at \
             FROM aws_sync_jobs j LEFT JOIN aws_sync_progress p \
             ON p.ca_id = j.ca_id AND p.target = j.target \
             WHERE j.ca_id = $1 ORDER BY j.target"
        )
        .bind(ca_id)
        .bind(now)
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(JobRow::into_job).collect()
    }
}
