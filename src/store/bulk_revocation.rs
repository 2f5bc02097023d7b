//! `revocation_jobs`: bulk revocations. A job holds a filter and a reason; it revokes the
//! active certificates that match in batches, each batch one set-based transaction (a few
//! statements for up to `revocation.bulk_batch_size` rows, never one per row) that also counts
//! its rows into the job. A job interrupted anywhere resumes from its last committed batch and
//! counts each certificate once; finishing it writes its one audit record in the same
//! transaction.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use time::OffsetDateTime;

use super::certificate_counts::{CountChanges, REVOKED_RETURNING, RevokedCounted};
use super::*;
use crate::ca::RevocationReason;

/// Which certificates a bulk revocation touches: the active ones matching every criterion
/// given (an empty list or an absent field does not narrow).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationFilter {
    /// Certificates issued by this CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_id: Option<String>,
    /// Certificates requested by this station (its token or client certificate name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// Thing names starting with this (case-sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name_prefix: Option<String>,
    /// Issued at or after this time (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub issued_after: Option<OffsetDateTime>,
    /// Issued before this time (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub issued_before: Option<OffsetDateTime>,
    /// These serials only (40 hex characters each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serials: Vec<String>,
    /// These thing names only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thing_names: Vec<String>,
}

impl RevocationFilter {
    /// Whether no criterion is given (such a filter would match the whole ledger).
    pub fn is_empty(&self) -> bool {
        self.ca_id.is_none()
            && self.station.is_none()
            && self.thing_name_prefix.is_none()
            && self.issued_after.is_none()
            && self.issued_before.is_none()
            && self.serials.is_empty()
            && self.thing_names.is_empty()
    }
}

/// A bulk revocation job as stored.
#[derive(Debug, Clone)]
pub struct RevocationJob {
    pub id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub actor: String,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub filter: RevocationFilter,
    pub reason: RevocationReason,
    /// Active certificates that matched when the job was created.
    pub matched: i64,
    /// Certificates this job has revoked so far.
    pub revoked: i64,
}

impl RevocationJob {
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }
}

#[derive(FromRow)]
struct JobRow {
    id: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    finished_at: Option<Timestamp>,
    actor: String,
    request_id: Option<String>,
    idempotency_key: Option<String>,
    filter: String,
    reason: RevocationReason,
    matched: i64,
    revoked: i64,
}

impl JobRow {
    fn into_job(self) -> StoreResult<RevocationJob> {
        let filter = serde_json::from_str(&self.filter).map_err(|e| {
            StoreError(sqlx::Error::Decode(
                format!("revocation job {}: stored filter: {e}", self.id).into(),
            ))
        })?;
        Ok(RevocationJob {
            id: self.id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            actor: self.actor,
            request_id: self.request_id,
            idempotency_key: self.idempotency_key,
            filter,
            reason: self.reason,
            matched: self.matched,
            revoked: self.revoked,
        })
    }
}

const JOB_COLUMNS: &str = "id, created_at, updated_at, finished_at, actor, request_id, \
    idempotency_key, filter, reason, matched, revoked";

/// One certificate a bulk revocation would touch, as a dry run shows it.
#[derive(Debug, Clone, FromRow)]
pub struct RevocationCandidate {
    #[sqlx(try_from = "HexText")]
    pub serial: String,
    pub thing_name: String,
    pub ca_id: String,
    pub station: String,
    pub issued_at: Timestamp,
}

/// A job to create.
#[derive(Debug)]
pub struct NewRevocationJob<'a> {
    pub id: &'a str,
    pub now: Timestamp,
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub filter: &'a RevocationFilter,
    pub reason: RevocationReason,
}

/// The audit action of a finished bulk revocation.
pub const BULK_REVOKE_ACTION: &str = "certificate.bulk_revoke";

/// A certificate a revocation batch revoked.
#[derive(FromRow)]
struct RevokedRow {
    #[sqlx(try_from = "HexText")]
    serial: String,
    #[sqlx(flatten)]
    revoked: RevokedCounted,
}

impl Store {
    /// `AND`-joined conditions selecting the active (or superseded) certificates that `filter` matches and
    /// that were issued at or before `issued_by`; its placeholders start at `$first`.
    fn revocation_conditions(
        &self,
        filter: &RevocationFilter,
        issued_by: Timestamp,
        first: usize,
    ) -> (String, Vec<Bind>) {
        // Superseded (renewed) certificates are still valid: a bulk revocation takes them too.
        let mut conditions = vec!["status IN ('active', 'superseded')".to_owned()];
        let mut binds = Vec::new();
        let mut push = |sql: &str, bind: Bind| {
            binds.push(bind);
            conditions.push(sql.replace('?', &format!("${}", first + binds.len() - 1)));
        };
        push("issued_at <= ?", Bind::Time(issued_by));
        // Byte order, as the listing compares thing names (see `list_query`).
        let thing_name = match self {
            Store::Postgres(_) => "thing_name COLLATE \"C\"",
            Store::Sqlite(_) => "thing_name",
        };
        if let Some(v) = &filter.ca_id {
            push("ca_id = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = &filter.station {
            push("station = ?", Bind::Text(v.clone()));
        }
        if let Some(prefix) = &filter.thing_name_prefix {
            push(&format!("{thing_name} >= ?"), Bind::Text(prefix.clone()));
            if let Some(end) = certificates::prefix_end(prefix) {
                push(&format!("{thing_name} < ?"), Bind::Text(end));
            }
        }
        if let Some(v) = filter.issued_after {
            push("issued_at >= ?", Bind::Time(Timestamp::new(v)));
        }
        if let Some(v) = filter.issued_before {
            push("issued_at < ?", Bind::Time(Timestamp::new(v)));
        }
        // `column IN (...)`: serials in their column's encoding, thing names as text.
        let serials = filter.serials.iter().cloned().map(Bind::Hex);
        let thing_names = filter.thing_names.iter().cloned().map(Bind::Text);
        for (column, values) in [
            ("serial", serials.collect::<Vec<_>>()),
            ("thing_name", thing_names.collect()),
        ] {
            if values.is_empty() {
                continue;
            }
            let start = first + binds.len();
            let placeholders: Vec<String> = (start..start + values.len())
                .map(|n| format!("${n}"))
                .collect();
            binds.extend(values);
            conditions.push(format!("{column} IN ({})", placeholders.join(", ")));
        }
        (conditions.join(" AND "), binds)
    }

    /// How many active certificates `filter` matches now, and the first `limit` of them
    /// (oldest first): the answer of a dry run.
    pub async fn revocation_candidates(
        &self,
        filter: &RevocationFilter,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<(i64, Vec<RevocationCandidate>)> {
        let (conditions, binds) = self.revocation_conditions(filter, now, 1);
        let count_sql = format!("SELECT COUNT(*) FROM issued_certificates WHERE {conditions}");
        let first_sql = format!(
            "SELECT serial, thing_name, ca_id, station, issued_at FROM issued_certificates \
             WHERE {conditions} ORDER BY issued_at, serial LIMIT {limit}"
        );
        let (count,): (i64,) = on_pool!(self, |pool| {
            bind_all!(sqlx::query_as(&count_sql), &binds)
                .fetch_one(pool)
                .await
        })?;
        let first = on_pool!(self, |pool| {
            bind_all!(sqlx::query_as(&first_sql), &binds)
                .fetch_all(pool)
                .await
        })?;
        Ok((count, first))
    }

    /// Creates a job, counting the certificates it matches now. With an idempotency key that
    /// an earlier job holds, nothing is created and that job is returned with `false`.
    pub async fn create_revocation_job(
        &self,
        new: &NewRevocationJob<'_>,
    ) -> StoreResult<(RevocationJob, bool)> {
        if let Some(key) = new.idempotency_key
            && let Some(job) = self.revocation_job_by_key(key).await?
        {
            return Ok((job, false));
        }
        let (matched, _) = self.revocation_candidates(new.filter, new.now, 0).await?;
        let filter = serde_json::to_string(new.filter).expect("a filter serializes");
        let inserted = on_pool!(self, |pool| sqlx::query(
            "INSERT INTO revocation_jobs (id, created_at, updated_at, actor, request_id, \
             idempotency_key, filter, reason, status, matched) \
             VALUES ($1, $2, $2, $3, $4, $5, $6, $7, 'running', $8) \
             ON CONFLICT (idempotency_key) DO NOTHING"
        )
        .bind(new.id)
        .bind(new.now)
        .bind(new.actor)
        .bind(new.request_id)
        .bind(new.idempotency_key)
        .bind(&filter)
        .bind(new.reason)
        .bind(matched)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        if inserted == 0
            && let Some(key) = new.idempotency_key
            && let Some(job) = self.revocation_job_by_key(key).await?
        {
            // A concurrent request with the same key created it first.
            return Ok((job, false));
        }
        let job = self.revocation_job(new.id).await?.ok_or_else(|| {
            StoreError(sqlx::Error::Protocol(format!(
                "revocation job {} vanished after its insert",
                new.id
            )))
        })?;
        Ok((job, true))
    }

    pub async fn revocation_job(&self, id: &str) -> StoreResult<Option<RevocationJob>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM revocation_jobs WHERE id = $1");
        self.fetch_by_key::<JobRow>(&sql, id)
            .await?
            .map(JobRow::into_job)
            .transpose()
    }

    async fn revocation_job_by_key(&self, key: &str) -> StoreResult<Option<RevocationJob>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM revocation_jobs WHERE idempotency_key = $1");
        self.fetch_by_key::<JobRow>(&sql, key)
            .await?
            .map(JobRow::into_job)
            .transpose()
    }

    /// Jobs not finished yet, oldest first: those to resume.
    pub async fn unfinished_revocation_jobs(&self) -> StoreResult<Vec<RevocationJob>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM revocation_jobs WHERE status = 'running' \
             ORDER BY created_at"
        );
        let rows: Vec<JobRow> = on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)?;
        rows.into_iter().map(JobRow::into_job).collect()
    }

    /// Revokes up to `batch` more certificates of `job` in one transaction: marks them revoked
    /// (with `aws_revocation_pending`, so the AWS push takes them), frees their thing claims,
    /// marks their CAs' CRLs behind, and adds their count to the job. Returns that count; 0
    /// means the job has nothing left to revoke.
    pub async fn revoke_batch(
        &self,
        job: &RevocationJob,
        batch: u32,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let (conditions, binds) = self.revocation_conditions(&job.filter, job.created_at, 4);
        // The status condition is repeated outside the subquery: when two processes resume one
        // job, PostgreSQL re-checks a row that the other changed first, and skips it.
        let update = format!(
            "UPDATE issued_certificates SET status = 'revoked', revoked_at = $1, \
             revocation_reason = $2, aws_revocation_pending = true, revocation_job = $3 \
             WHERE status IN ('active', 'superseded') AND serial IN \
             (SELECT serial FROM issued_certificates WHERE {conditions} LIMIT {batch}) \
             RETURNING serial, {REVOKED_RETURNING}"
        );
        let free_claims = "DELETE FROM thing_claims WHERE (thing_name, serial) IN \
             (SELECT thing_name, serial FROM issued_certificates \
             WHERE revocation_job = $1 AND revoked_at = $2)";
        let bump = crls::bump_revocation_generation_sql(
            "SELECT ca_id FROM issued_certificates WHERE revocation_job = $1 AND revoked_at = $2",
        );
        let started = std::time::Instant::now();
        let revoked = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let query = sqlx::query_as(&update)
                    .bind(now)
                    .bind(job.reason)
                    .bind(&job.id);
                let rows: Vec<RevokedRow> = bind_all!(query, &binds).fetch_all(&mut *tx).await?;
                let revoked = rows.len() as u64;
                if revoked == 0 {
                    tx.rollback().await?;
                    return Ok::<u64, sqlx::Error>(0);
                }
                for sql in [free_claims, bump.as_str()] {
                    sqlx::query(sql)
                        .bind(&job.id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "UPDATE revocation_jobs SET revoked = revoked + $2, updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(&job.id)
                .bind(i64::try_from(revoked).unwrap_or(i64::MAX))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Into the hash chains: CAs in id order (so batches cannot deadlock on their
                // heads), serials in order within each.
                let mut chained: Vec<(&str, &str)> = rows
                    .iter()
                    .map(|r| (r.revoked.counted.ca_id.as_str(), r.serial.as_str()))
                    .collect();
                chained.sort_unstable();
                for group in chained.chunk_by(|a, b| a.0 == b.0) {
                    let ca_id = group[0].0;
                    let events: Vec<chain::Event> = group
                        .iter()
                        .map(|(_, serial)| {
                            chain::revoked_event(ca_id, serial, now, job.reason.name())
                        })
                        .collect();
                    append_chain!(tx, ca_id, &events)?;
                }
                let mut counts = CountChanges::default();
                for row in &rows {
                    counts.revoked(&row.revoked, now);
                }
                add_counts!(tx, &counts)?;
                tx.commit().await?;
                Ok(revoked)
            }
            .await
        })?;
        observe_duration("revoke_batch", started);
        Ok(revoked)
    }

    /// Marks `job` finished and writes its one audit record, in one transaction. Returns the
    /// finished job, or `None` when another process finished it first (which wrote the
    /// record).
    pub async fn finish_revocation_job(
        &self,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<Option<RevocationJob>> {
        let finished = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let row: Option<JobRow> = sqlx::query_as(&format!(
                    "UPDATE revocation_jobs SET status = 'succeeded', finished_at = $2, \
                     updated_at = $2 WHERE id = $1 AND status = 'running' RETURNING {JOB_COLUMNS}"
                ))
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok::<Option<JobRow>, sqlx::Error>(None);
                };
                let detail = format!(
                    "reason={}; revoked={}; matched={}; filter={}",
                    row.reason.name(),
                    row.revoked,
                    row.matched,
                    row.filter
                );
                let entry = AuditEntry {
                    actor: &row.actor,
                    action: BULK_REVOKE_ACTION,
                    target: Some(row.id.as_str()),
                    success: true,
                    detail: Some(detail.as_str()),
                    request_id: row.request_id.as_deref(),
                };
                insert_audit!(&mut *tx, now, &entry).await?;
                tx.commit().await?;
                Ok(Some(row))
            }
            .await
        })?;
        finished.map(JobRow::into_job).transpose()
    }
}
