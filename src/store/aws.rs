//! The AWS IoT registration state of our CAs (`ca_aws_registrations`).

use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreResult, TemplateKind, Timestamp};
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
    pub serial: String,
    pub ca_id: String,
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
            .bind(serial)
            .bind(target)
            .fetch_all(pool)
            .await)?)
    }

    /// How many revocations of `ca_id` `target` has not been told of.
    pub async fn pending_revocation_count(&self, ca_id: &str, target: &str) -> StoreResult<i64> {
        let (n,): (i64,) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT COUNT(*) FROM issued_certificates c \
             WHERE aws_revocation_pending AND ca_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM aws_revocation_targets p \
                 WHERE p.serial = c.serial AND p.target = $2)"
        )
        .bind(ca_id)
        .bind(target)
        .fetch_one(pool)
        .await)?;
        Ok(n)
    }

    /// Records that `target` has the revocation of `serial`.
    pub async fn mark_revocation_pushed(
        &self,
        serial: &str,
        target: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO aws_revocation_targets (serial, target, pushed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (serial, target) DO NOTHING"
        )
        .bind(serial)
        .bind(target)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The targets that have the revocation of `serial` (while it is pending elsewhere).
    pub async fn revocation_pushed_targets(&self, serial: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT target FROM aws_revocation_targets WHERE serial = $1 ORDER BY target"
        )
        .bind(serial)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
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

    /// Marks the revocation as told to AWS IoT in every target: AWS now has the certificate as
    /// REVOKED (updated, or registered as REVOKED when the device never connected), which is
    /// what the next sync would record; `aws_first_seen_at` stays as it is (null: the device
    /// never connected). The per-target records of the revocation go.
    pub async fn clear_revocation_pending(&self, serial: &str) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query(
            "UPDATE issued_certificates SET aws_revocation_pending = false, \
             aws_status = 'REVOKED' \
             WHERE serial = $1"
        )
        .bind(serial)
        .execute(pool)
        .await
        .map(|_| ()))?;
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM aws_revocation_targets WHERE serial = $1"
        )
        .bind(serial)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Records what AWS IoT reports for one certificate; false when the ledger has no
    /// certificate with this AWS id (issued elsewhere, or by another CA database).
    pub async fn record_aws_status(
        &self,
        aws_certificate_id: &str,
        status: AwsCertificateStatus,
        first_seen_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE issued_certificates SET aws_status = $2, \
             aws_first_seen_at = COALESCE(aws_first_seen_at, $3), aws_synced_at = $4 \
             WHERE aws_certificate_id = $1"
        )
        .bind(aws_certificate_id)
        .bind(status)
        .bind(first_seen_at)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}

/// Per CA, the revoked certificates AWS IoT has not caught up with.
#[derive(Debug, Clone, Default, FromRow, PartialEq, Eq)]
pub struct RevocationLag {
    pub ca_id: String,
    /// Revoked in the ledger, ACTIVE in AWS at the last sync.
    pub revoked_but_active: i64,
    /// Revoked in the ledger, not yet pushed to AWS.
    pub pending: i64,
}

impl Store {
    /// [`RevocationLag`] of each CA with at least one lagging revocation.
    pub async fn revocation_lag(&self) -> StoreResult<Vec<RevocationLag>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT ca_id, \
             SUM(CASE WHEN aws_status = 'ACTIVE' THEN 1 ELSE 0 END) AS revoked_but_active, \
             SUM(CASE WHEN aws_revocation_pending THEN 1 ELSE 0 END) AS pending \
             FROM issued_certificates \
             WHERE status = 'revoked' AND (aws_status = 'ACTIVE' OR aws_revocation_pending) \
             GROUP BY ca_id ORDER BY ca_id"
        )
        .fetch_all(pool)
        .await)?)
    }
}

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
