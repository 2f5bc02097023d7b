//! The AWS IoT registration state of our CAs (`ca_aws_registrations`).

use serde::Serialize;
use sqlx::FromRow;

use super::{Bind, HexArg, HexText, Store, StoreResult, TemplateKind, Timestamp};
use crate::aws::{AwsCertificateStatus, CaStatus, CertificateMode};

/// What we know of a CA's registration in AWS IoT.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AwsRegistration {
    pub ca_id: String,
    /// The registration target (`[aws.targets.<name>]`; `default` for the `[aws]` section).
    pub target: String,
    pub aws_certificate_id: String,
    pub certificate_arn: String,
    pub mode: CertificateMode,
    /// As we last set or saw it.
    pub status: CaStatus,
    pub auto_registration: bool,
    /// When a JITP template is attached.
    pub template_kind: Option<TemplateKind>,
    #[serde(skip)]
    pub template_body: Option<String>,
    pub template_name: Option<String>,
    pub role_arn: Option<String>,
    #[serde(with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: Timestamp,
    #[serde(with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

const COLUMNS: &str = "ca_id, target, aws_certificate_id, certificate_arn, mode, status, \
    auto_registration, template_kind, template_body, template_name, role_arn, registered_at, \
    updated_at";

impl Store {
    /// The registration of `ca_id` that describes it on its own: in the target `default` when
    /// it has one, else in the first target by name.
    pub async fn get_aws_registration(&self, ca_id: &str) -> StoreResult<Option<AwsRegistration>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ca_aws_registrations WHERE ca_id = $1 \
             ORDER BY CASE WHEN target = 'default' THEN 0 ELSE 1 END, target LIMIT 1"
        );
        self.fetch_by_key(&sql, ca_id).await
    }

    /// The registration of `ca_id` in `target`.
    pub async fn get_aws_target_registration(
        &self,
        ca_id: &str,
        target: &str,
    ) -> StoreResult<Option<AwsRegistration>> {
        let sql =
            format!("SELECT {COLUMNS} FROM ca_aws_registrations WHERE ca_id = $1 AND target = $2");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(ca_id)
            .bind(target)
            .fetch_optional(pool)
            .await)?)
    }

    /// Every registration of `ca_id`, one per target, by target name.
    pub async fn list_ca_aws_registrations(
        &self,
        ca_id: &str,
    ) -> StoreResult<Vec<AwsRegistration>> {
        let sql =
            format!("SELECT {COLUMNS} FROM ca_aws_registrations WHERE ca_id = $1 ORDER BY target");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(ca_id)
            .fetch_all(pool)
            .await)?)
    }

    /// Every registration, by CA; per CA the target `default` first, then by target name.
    pub async fn list_aws_registrations(&self) -> StoreResult<Vec<AwsRegistration>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ca_aws_registrations \
             ORDER BY ca_id, CASE WHEN target = 'default' THEN 0 ELSE 1 END, target"
        );
        self.fetch_rows(&sql).await
    }

    /// Inserts or replaces the registration of `r.ca_id` in `r.target`.
    pub async fn save_aws_registration(&self, r: &AwsRegistration) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO ca_aws_registrations (ca_id, target, aws_certificate_id, \
             certificate_arn, mode, status, auto_registration, template_kind, template_body, \
             template_name, role_arn, registered_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (ca_id, target) DO UPDATE SET \
             aws_certificate_id = excluded.aws_certificate_id, \
             certificate_arn = excluded.certificate_arn, mode = excluded.mode, \
             status = excluded.status, auto_registration = excluded.auto_registration, \
             template_kind = excluded.template_kind, template_body = excluded.template_body, \
             template_name = excluded.template_name, role_arn = excluded.role_arn, \
             updated_at = excluded.updated_at"
        )
        .bind(&r.ca_id)
        .bind(&r.target)
        .bind(&r.aws_certificate_id)
        .bind(&r.certificate_arn)
        .bind(r.mode)
        .bind(r.status)
        .bind(r.auto_registration)
        .bind(r.template_kind)
        .bind(&r.template_body)
        .bind(&r.template_name)
        .bind(&r.role_arn)
        .bind(r.registered_at)
        .bind(r.updated_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn delete_aws_registration(&self, ca_id: &str, target: &str) -> StoreResult<bool> {
        let n = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM ca_aws_registrations WHERE ca_id = $1 AND target = $2"
        )
        .bind(ca_id)
        .bind(target)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}

/// The last AWS operation of factory-ca for one CA in one target, and what failed.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TargetAttempt {
    #[serde(skip)]
    pub ca_id: String,
    #[serde(skip)]
    pub target: String,
    /// `register`, `template`, `update`, `delete`, `sync` or `revocation_push`.
    pub operation: String,
    #[serde(with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub attempted_at: Timestamp,
    pub ok: bool,
    /// What failed: `throttled`, `unreachable`, `unavailable`, `access_denied`, `not_found`,
    /// `already_exists`, `certificate_validation`, `invalid_state` or `rejected`.
    pub error_kind: Option<String>,
    /// AWS's error code, e.g. `ThrottlingException`; null when AWS sent none.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl Store {
    /// Inserts or replaces the last attempt of `a.ca_id` in `a.target`.
    pub async fn save_target_attempt(&self, a: &TargetAttempt) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO aws_target_attempts (ca_id, target, operation, attempted_at, ok, \
             error_kind, error_code, error_message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (ca_id, target) DO UPDATE SET operation = excluded.operation, \
             attempted_at = excluded.attempted_at, ok = excluded.ok, \
             error_kind = excluded.error_kind, error_code = excluded.error_code, \
             error_message = excluded.error_message"
        )
        .bind(&a.ca_id)
        .bind(&a.target)
        .bind(&a.operation)
        .bind(a.attempted_at)
        .bind(a.ok)
        .bind(&a.error_kind)
        .bind(&a.error_code)
        .bind(&a.error_message)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The last attempt of every target of `ca_id`, by target.
    pub async fn list_target_attempts(&self, ca_id: &str) -> StoreResult<Vec<TargetAttempt>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT ca_id, target, operation, attempted_at, ok, error_kind, error_code, \
             error_message FROM aws_target_attempts WHERE ca_id = $1 ORDER BY target"
        )
        .bind(ca_id)
        .fetch_all(pool)
        .await)?)
    }
}

/// A revocation AWS IoT must still be told of.
#[derive(Debug, Clone, FromRow)]
pub struct PendingRevocation {
    #[sqlx(try_from = "HexText")]
    pub serial: String,
    pub ca_id: String,
    #[sqlx(try_from = "HexText")]
    pub aws_certificate_id: String,
    pub certificate_der: Vec<u8>,
}

impl Store {
    /// Revoked certificates `target` has not been told of, oldest first, of CAs registered in
    /// `target` (a CA AWS does not trust connects no device; registering it pushes its
    /// revocations): those of `ca_id`, or the one `serial`, when given.
    pub async fn pending_revocations(
        &self,
        target: &str,
        ca_id: Option<&str>,
        serial: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<PendingRevocation>> {
        let sql = format!(
            "SELECT serial, ca_id, aws_certificate_id, certificate_der FROM issued_certificates c \
             WHERE aws_revocation_pending \
             AND ca_id IN (SELECT ca_id FROM ca_aws_registrations WHERE target = $3) \
             AND NOT EXISTS (SELECT 1 FROM aws_revocation_targets p \
                 WHERE p.serial = c.serial AND p.target = $3) \
             AND ($1 IS NULL OR ca_id = $1) AND ($2 IS NULL OR serial = $2) \
             ORDER BY revoked_at LIMIT {limit}"
        );
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(ca_id)
            .bind(serial.map(HexArg))
            .bind(target)
            .fetch_all(pool)
            .await)?)
    }

    /// A CA newly registered in `target`: its revocations the CA's other targets already have
    /// become pending again, for `target` only (the others are recorded as having them).
    pub async fn repend_revocations_for_target(
        &self,
        ca_id: &str,
        target: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO aws_revocation_targets (serial, target, pushed_at) \
             SELECT c.serial, r.target, $3 FROM issued_certificates c \
             JOIN ca_aws_registrations r ON r.ca_id = c.ca_id AND r.target <> $2 \
             WHERE c.ca_id = $1 AND c.status = 'revoked' AND NOT c.aws_revocation_pending \
             ON CONFLICT (serial, target) DO NOTHING"
        )
        .bind(ca_id)
        .bind(target)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE issued_certificates SET aws_revocation_pending = true \
             WHERE ca_id = $1 AND status = 'revoked' AND NOT aws_revocation_pending"
        )
        .bind(ca_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n)
    }

    /// Records what AWS IoT in `target` reports for the certificates of one page of a sync,
    /// in one transaction: each certificate's row of `target`, then its summary `aws_status`.
    /// Returns, per certificate, whether the ledger has it (false: issued elsewhere, or by
    /// another CA database).
    pub async fn record_aws_statuses(
        &self,
        target: &str,
        reported: &[ReportedStatus],
        now: Timestamp,
    ) -> StoreResult<Vec<bool>> {
        if reported.is_empty() {
            return Ok(Vec::new());
        }
        if let Store::Postgres(pool) = self {
            return Ok(record_page_postgres(pool, target, reported, now).await?);
        }
        Ok(on_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            let mut found = Vec::with_capacity(reported.len());
            for r in reported {
                let n = sqlx::query(
                    "INSERT INTO certificate_aws_status (serial, target, aws_status, \
                     aws_first_seen_at, recorded_at, issued_at) \
                     SELECT serial, $2, $3, $4, $5, issued_at FROM issued_certificates \
                     WHERE aws_certificate_id = $1 \
                     ON CONFLICT (serial, target) DO UPDATE SET \
                     aws_status = excluded.aws_status, \
                     aws_first_seen_at = COALESCE(certificate_aws_status.aws_first_seen_at, \
                         excluded.aws_first_seen_at), \
                     recorded_at = excluded.recorded_at",
                )
                .bind(HexArg(&r.aws_certificate_id))
                .bind(target)
                .bind(r.status)
                .bind(r.first_seen_at)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n > 0 {
                    sqlx::query(SUMMARY_BY_AWS_ID_SQL)
                        .bind(HexArg(&r.aws_certificate_id))
                        .bind(Some(now))
                        .execute(&mut *tx)
                        .await?;
                }
                found.push(n > 0);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(found)
        }
        .await)?)
    }

    /// What each target reports for the certificates `serials` (rows of targets that have
    /// seen them), by serial and target.
    pub async fn aws_target_statuses(
        &self,
        serials: &[&str],
    ) -> StoreResult<Vec<CertificateTargetStatus>> {
        self.rows_for_serials(serials, |serials| {
            format!(
                "SELECT serial, target, aws_status, aws_first_seen_at, recorded_at \
                 FROM certificate_aws_status WHERE serial IN ({serials}) ORDER BY serial, target"
            )
        })
        .await
    }

    /// The targets that have the revocations of `serials` while they are pending elsewhere,
    /// as (serial, target).
    pub async fn revocations_pushed_to(
        &self,
        serials: &[&str],
    ) -> StoreResult<Vec<(String, String)>> {
        let rows: Vec<(HexText, String)> = self
            .rows_for_serials(serials, |serials| {
                format!(
                    "SELECT serial, target FROM aws_revocation_targets WHERE serial IN ({serials})"
                )
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(serial, target)| (serial.0, target))
            .collect())
    }

    /// The rows `select` finds for `serials`, asked 500 serials at a time (well under SQLite's
    /// limit of bound parameters per statement): `select` is given the list of placeholders
    /// (`$1, $2, ...`) to put in its `IN (...)`.
    async fn rows_for_serials<T>(
        &self,
        serials: &[&str],
        select: impl Fn(&str) -> String,
    ) -> StoreResult<Vec<T>>
    where
        T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        let mut rows = Vec::new();
        for chunk in serials.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = select(&placeholders.join(", "));
            let part: Vec<T> = on_pool!(self, |pool| {
                let mut query = sqlx::query_as(&sql);
                for serial in chunk {
                    query = query.bind(HexArg(serial));
                }
                query.fetch_all(pool).await
            })?;
            rows.extend(part);
        }
        Ok(rows)
    }
}

/// One certificate in one registration target, as the certificate view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateAwsTarget {
    pub target: String,
    /// What the target reported at its last sync (or REVOKED once told of the revocation);
    /// `None`: the target has not seen the certificate.
    pub aws_status: Option<AwsCertificateStatus>,
    pub aws_first_seen_at: Option<Timestamp>,
    /// The certificate is revoked and this target, one its CA is registered in, has not been
    /// told yet.
    pub revocation_pending: bool,
}

impl Store {
    /// Per certificate of `records` (by serial), its entry in each target that has seen it or
    /// that its CA is registered in, by target name.
    pub async fn certificate_aws_targets(
        &self,
        records: &[super::CertificateRecord],
    ) -> StoreResult<std::collections::HashMap<String, Vec<CertificateAwsTarget>>> {
        use std::collections::{BTreeMap, HashMap, HashSet};
        let mut out: HashMap<String, Vec<CertificateAwsTarget>> = HashMap::new();
        if records.is_empty() {
            return Ok(out);
        }
        let serials: Vec<&str> = records.iter().map(|r| r.serial.as_str()).collect();
        let mut statuses: HashMap<String, Vec<CertificateTargetStatus>> = HashMap::new();
        for row in self.aws_target_statuses(&serials).await? {
            statuses.entry(row.serial.clone()).or_default().push(row);
        }
        let mut registered: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.list_aws_registrations().await? {
            registered.entry(r.ca_id).or_default().push(r.target);
        }
        let pending: Vec<&str> = records
            .iter()
            .filter(|r| r.aws_revocation_pending)
            .map(|r| r.serial.as_str())
            .collect();
        let pushed: HashSet<(String, String)> = if pending.is_empty() {
            HashSet::new()
        } else {
            self.revocations_pushed_to(&pending)
                .await?
                .into_iter()
                .collect()
        };
        for record in records {
            let mut entries: BTreeMap<String, CertificateAwsTarget> = BTreeMap::new();
            for target in registered.get(&record.ca_id).into_iter().flatten() {
                entries.insert(
                    target.clone(),
                    CertificateAwsTarget {
                        target: target.clone(),
                        aws_status: None,
                        aws_first_seen_at: None,
                        revocation_pending: record.aws_revocation_pending
                            && !pushed.contains(&(record.serial.clone(), target.clone())),
                    },
                );
            }
            for row in statuses.remove(&record.serial).into_iter().flatten() {
                let entry =
                    entries
                        .entry(row.target.clone())
                        .or_insert_with(|| CertificateAwsTarget {
                            target: row.target.clone(),
                            aws_status: None,
                            aws_first_seen_at: None,
                            revocation_pending: false,
                        });
                entry.aws_status = Some(row.aws_status);
                entry.aws_first_seen_at = row.aws_first_seen_at;
            }
            out.insert(record.serial.clone(), entries.into_values().collect());
        }
        Ok(out)
    }
}

/// One certificate as AWS IoT in one target listed it, for [`Store::record_aws_statuses`].
#[derive(Debug, Clone)]
pub struct ReportedStatus {
    pub aws_certificate_id: String,
    pub status: AwsCertificateStatus,
    /// AWS's creation date of the certificate there.
    pub first_seen_at: Option<Timestamp>,
}

/// What one target reports for one certificate (`certificate_aws_status`).
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct CertificateTargetStatus {
    #[sqlx(try_from = "HexText")]
    pub serial: String,
    pub target: String,
    pub aws_status: AwsCertificateStatus,
    pub aws_first_seen_at: Option<Timestamp>,
    /// When factory-ca recorded it (a sync, or a revocation push).
    pub recorded_at: Timestamp,
}

/// The summary columns of the certificates that `$condition` selects (with `$1`), from their
/// per-target rows; `$2` is the time of a sync (null: keep `aws_synced_at`).
///
/// The summary `aws_status` is the status of the target under which the device can connect
/// first: ACTIVE in any target is ACTIVE (so `aws_status = ACTIVE` means "ACTIVE in at least
/// one target", the same as asking every target), REVOKED only when every target that has seen
/// the certificate has it REVOKED, null when no target has seen it. `aws_first_seen_at` is the
/// earliest over the targets. With one target, both are that target's, as before targets.
macro_rules! summary_sql {
    ($condition:literal) => {
        concat!(
            "UPDATE issued_certificates SET aws_status = (SELECT s.aws_status \
             FROM certificate_aws_status s WHERE s.serial = issued_certificates.serial \
             ORDER BY CASE s.aws_status WHEN 'ACTIVE' THEN 0 \
             WHEN 'PENDING_ACTIVATION' THEN 1 WHEN 'PENDING_TRANSFER' THEN 2 \
             WHEN 'REGISTER_INACTIVE' THEN 3 WHEN 'INACTIVE' THEN 4 ELSE 5 END, s.target \
             LIMIT 1), \
             aws_first_seen_at = (SELECT MIN(s.aws_first_seen_at) FROM certificate_aws_status s \
             WHERE s.serial = issued_certificates.serial), \
             aws_synced_at = COALESCE($2, aws_synced_at) WHERE ",
            $condition
        )
    };
}
pub(super) const SUMMARY_BY_SERIAL_SQL: &str = summary_sql!("serial = $1");
const SUMMARY_BY_AWS_ID_SQL: &str = summary_sql!("aws_certificate_id = $1");
/// PostgreSQL: the summaries of the certificates whose serials are the array `$1`.
const SUMMARY_BY_SERIALS_SQL: &str = summary_sql!("serial = ANY($1)");

/// PostgreSQL: one page of a sync in one statement. `$1`, `$2`, `$3`: the AWS ids, statuses and
/// first-seen times AWS listed; `$4` the target; `$5` now. Writes `$4`'s row of each listed
/// certificate the ledger has (in serial order, as the other writers of these rows lock them)
/// and returns `(serial, aws_certificate_id)` of those.
const RECORD_PAGE_SQL: &str = "WITH found AS ( \
         SELECT c.serial, c.issued_at, c.aws_certificate_id, i.aws_status, i.first_seen \
         FROM UNNEST($1::bytea[], $2::text[], $3::timestamptz[]) \
             AS i (aws_certificate_id, aws_status, first_seen) \
         JOIN issued_certificates c ON c.aws_certificate_id = i.aws_certificate_id \
     ), recorded AS ( \
         INSERT INTO certificate_aws_status (serial, target, aws_status, aws_first_seen_at, \
             recorded_at, issued_at) \
         SELECT serial, $4, aws_status, first_seen, $5, issued_at FROM found ORDER BY serial \
         ON CONFLICT (serial, target) DO UPDATE SET aws_status = excluded.aws_status, \
         aws_first_seen_at = COALESCE(certificate_aws_status.aws_first_seen_at, \
             excluded.aws_first_seen_at), \
         recorded_at = excluded.recorded_at \
     ) \
     SELECT serial, aws_certificate_id FROM found";

/// `target` reports `serial` REVOKED (`$3`: now); AWS's first-seen date stays.
pub(super) const UPSERT_REVOKED_SQL: &str = "INSERT INTO certificate_aws_status (serial, target, \
    aws_status, aws_first_seen_at, recorded_at, issued_at) \
    SELECT serial, $2, 'REVOKED', NULL, $3, issued_at FROM issued_certificates WHERE serial = $1 \
    ON CONFLICT (serial, target) DO UPDATE SET aws_status = 'REVOKED', \
    recorded_at = excluded.recorded_at";

/// Per CA and target, the revoked certificates AWS IoT has not caught up with.
#[derive(Debug, Clone, Default, FromRow, PartialEq, Eq)]
pub struct RevocationLag {
    pub ca_id: String,
    pub target: String,
    /// Revoked in the ledger, ACTIVE in this target at its last sync.
    pub revoked_but_active: i64,
    /// Revoked in the ledger, not yet pushed to this target.
    pub pending: i64,
}

impl Store {
    /// [`RevocationLag`] of each (CA, target the CA is registered in) with at least one
    /// lagging revocation, by CA and target. Each count starts from the CA's revoked
    /// certificates (a partial index each: `issued_certificates_revoked`,
    /// `issued_certificates_aws_revocation_pending`) and looks each up by its serial and the
    /// target (a primary key each), so it costs what the revocations number, not the ledger
    /// or the certificates AWS lists (docs/query-plans.md, "GET /v1/admin/health").
    pub async fn revocation_lag(&self) -> StoreResult<Vec<RevocationLag>> {
        let lags: Vec<RevocationLag> = on_pool!(self, |pool| sqlx::query_as(REVOCATION_LAG_SQL)
            .fetch_all(pool)
            .await)?;
        Ok(lags
            .into_iter()
            .filter(|l| l.revoked_but_active > 0 || l.pending > 0)
            .collect())
    }

    /// The plan of [`Store::revocation_lag`]'s query, one line per plan node.
    pub async fn explain_revocation_lag(&self) -> StoreResult<Vec<String>> {
        self.explain(REVOCATION_LAG_SQL, &[]).await
    }

    /// The plan (`EXPLAIN`, PostgreSQL) of one AWS sync page's statement for these AWS ids:
    /// how it finds their ledger rows.
    pub async fn explain_aws_sync_page(&self, aws_ids: &[String]) -> StoreResult<Vec<String>> {
        let array = |item: &str| format!("{{{}}}", vec![item; aws_ids.len()].join(","));
        // The ids as a bytea[] literal: each element `\x` and its hex.
        let ids: Vec<String> = aws_ids.iter().map(|id| format!("\"\\\\x{id}\"")).collect();
        let binds = [
            Bind::Text(format!("{{{}}}", ids.join(","))),
            Bind::Text(array("ACTIVE")),
            Bind::Text(array("NULL")),
            Bind::Text("query-plan".to_owned()),
            Bind::Time(Timestamp::now()),
        ];
        self.explain(RECORD_PAGE_SQL, &binds).await
    }
}

/// Per (CA, registered target): revoked in the ledger and ACTIVE in that target at its last
/// sync; revoked and not yet told to that target. The target's status is a scalar subquery,
/// evaluated per revoked certificate by primary key: as a join, PostgreSQL would rather hash
/// every ACTIVE row of every target than look up the few revoked ones.
const REVOCATION_LAG_SQL: &str = "SELECT r.ca_id, r.target, \
    (SELECT COUNT(*) FROM issued_certificates c \
        WHERE c.ca_id = r.ca_id AND c.status = 'revoked' \
        AND (SELECT s.aws_status FROM certificate_aws_status s \
            WHERE s.serial = c.serial AND s.target = r.target) = 'ACTIVE') \
        AS revoked_but_active, \
    (SELECT COUNT(*) FROM issued_certificates c \
        WHERE c.ca_id = r.ca_id AND c.aws_revocation_pending \
        AND NOT EXISTS (SELECT 1 FROM aws_revocation_targets p \
            WHERE p.serial = c.serial AND p.target = r.target)) AS pending \
    FROM ca_aws_registrations r ORDER BY r.ca_id, r.target";

/// A sync under way: where it stands (`aws_sync_progress`), kept after each page.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SyncProgress {
    pub ca_id: String,
    pub target: String,
    #[serde(skip)]
    pub aws_certificate_id: String,
    /// AWS's marker of the next page (opaque).
    #[serde(skip)]
    pub marker: String,
    /// Pages done so far.
    pub pages: i64,
    pub listed: i64,
    pub matched: i64,
    pub not_in_ledger: i64,
    pub unknown_status: i64,
    #[serde(with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[serde(with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl Store {
    pub async fn get_sync_progress(
        &self,
        ca_id: &str,
        target: &str,
    ) -> StoreResult<Option<SyncProgress>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT ca_id, target, aws_certificate_id, marker, pages, listed, matched, \
             not_in_ledger, unknown_status, started_at, updated_at FROM aws_sync_progress \
             WHERE ca_id = $1 AND target = $2"
        )
        .bind(ca_id)
        .bind(target)
        .fetch_optional(pool)
        .await)?)
    }

    /// Inserts or replaces the progress of `p.ca_id` in `p.target`.
    pub async fn save_sync_progress(&self, p: &SyncProgress) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO aws_sync_progress (ca_id, target, aws_certificate_id, marker, pages, \
             listed, matched, not_in_ledger, unknown_status, started_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (ca_id, target) DO UPDATE SET \
             aws_certificate_id = excluded.aws_certificate_id, marker = excluded.marker, \
             pages = excluded.pages, listed = excluded.listed, matched = excluded.matched, \
             not_in_ledger = excluded.not_in_ledger, unknown_status = excluded.unknown_status, \
             started_at = excluded.started_at, updated_at = excluded.updated_at"
        )
        .bind(&p.ca_id)
        .bind(&p.target)
        .bind(&p.aws_certificate_id)
        .bind(&p.marker)
        .bind(p.pages)
        .bind(p.listed)
        .bind(p.matched)
        .bind(p.not_in_ledger)
        .bind(p.unknown_status)
        .bind(p.started_at)
        .bind(p.updated_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn delete_sync_progress(&self, ca_id: &str, target: &str) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM aws_sync_progress WHERE ca_id = $1 AND target = $2"
        )
        .bind(ca_id)
        .bind(target)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}

/// [`Store::record_aws_statuses`] on PostgreSQL: two statements for the page, whatever its
/// size (a row each per certificate otherwise: 500 round trips for a page of 250).
async fn record_page_postgres(
    pool: &sqlx::PgPool,
    target: &str,
    reported: &[ReportedStatus],
    now: Timestamp,
) -> Result<Vec<bool>, sqlx::Error> {
    // AWS lists a certificate once; were one listed twice, the last report wins, as it would
    // row by row (and one statement may not upsert a row twice).
    let mut last: std::collections::HashMap<&str, &ReportedStatus> =
        std::collections::HashMap::with_capacity(reported.len());
    for r in reported {
        last.insert(r.aws_certificate_id.as_str(), r);
    }
    let ids: Vec<&str> = last.keys().copied().collect();
    let statuses: Vec<&str> = ids.iter().map(|id| last[id].status.as_aws()).collect();
    let first_seen: Vec<Option<time::OffsetDateTime>> = ids
        .iter()
        .map(|id| last[id].first_seen_at.map(Timestamp::get))
        .collect();
    let mut tx = pool.begin().await?;
    let found: Vec<(HexText, HexText)> = sqlx::query_as(RECORD_PAGE_SQL)
        .bind(ids.iter().map(|id| HexArg(id)).collect::<Vec<_>>())
        .bind(&statuses)
        .bind(&first_seen)
        .bind(target)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    let mut serials: Vec<HexArg> = found.iter().map(|(serial, _)| HexArg(&serial.0)).collect();
    serials.sort_unstable_by_key(|serial| serial.0);
    sqlx::query(SUMMARY_BY_SERIALS_SQL)
        .bind(&serials)
        .bind(Some(now))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let known: std::collections::HashSet<&str> =
        found.iter().map(|(_, id)| id.0.as_str()).collect();
    Ok(reported
        .iter()
        .map(|r| known.contains(r.aws_certificate_id.as_str()))
        .collect())
}
