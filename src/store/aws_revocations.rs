//! Revocations told to AWS IoT, target by target (`aws_revocation_targets`), and the moment a
//! revocation is done: when every target its CA is registered in has it, the ledger's
//! `aws_revocation_pending` flag is cleared in the same transaction as the last target's record.
//!
//! Which targets a revocation needs is decided here, under a lock of the certificate's row: the
//! targets the CA is registered in (`ca_aws_registrations`) among those the service is
//! configured with. Two replicas pushing different targets of one certificate at once thus
//! serialise on that row, and the second to commit sees the first's record and finishes it.

use super::aws::{SUMMARY_BY_SERIAL_SQL, UPSERT_REVOKED_SQL};
use super::{HexArg, HexText, Store, StoreResult, Timestamp};

/// Takes the certificate's row lock (PostgreSQL; SQLite has one writer at a time anyway), so
/// that the record of a target and the check of the others see every committed record.
const LOCK_SQL: &str = "UPDATE issued_certificates SET aws_revocation_pending = \
    aws_revocation_pending WHERE serial = $1";

const RECORD_TARGET_SQL: &str = "INSERT INTO aws_revocation_targets (serial, target, pushed_at) \
    VALUES ($1, $2, $3) ON CONFLICT (serial, target) DO NOTHING";

/// Each target that has the revocation reports it REVOKED (a target recorded before the
/// per-target status existed gets its row here).
const STATUS_FROM_TARGETS_SQL: &str = "INSERT INTO certificate_aws_status (serial, target, \
    aws_status, aws_first_seen_at, recorded_at, issued_at) \
    SELECT p.serial, p.target, 'REVOKED', NULL, p.pushed_at, c.issued_at \
    FROM aws_revocation_targets p JOIN issued_certificates c ON c.serial = p.serial \
    WHERE p.serial = $1 \
    ON CONFLICT (serial, target) DO UPDATE SET aws_status = 'REVOKED'";

const CLEAR_FLAG_SQL: &str =
    "UPDATE issued_certificates SET aws_revocation_pending = false WHERE serial = $1";

const DROP_TARGETS_SQL: &str = "DELETE FROM aws_revocation_targets WHERE serial = $1";

/// The targets among `$2...` the certificate `$1`'s CA is registered in and that lack the
/// revocation, with whether it is still pending and how many targets have it.
fn state_sql(needed_among: &str) -> String {
    format!(
        "SELECT c.aws_revocation_pending, \
         (SELECT COUNT(*) FROM aws_revocation_targets p WHERE p.serial = c.serial) AS told, \
         (SELECT COUNT(*) FROM ca_aws_registrations r \
             WHERE r.ca_id = c.ca_id AND r.target IN ({needed_among}) \
             AND NOT EXISTS (SELECT 1 FROM aws_revocation_targets p \
                 WHERE p.serial = c.serial AND p.target = r.target)) AS missing \
         FROM issued_certificates c WHERE c.serial = $1"
    )
}

/// `$first, $first+1, ...`, one per name (`NULL` for none: no target is needed then).
fn placeholders(first: usize, names: &[String]) -> String {
    if names.is_empty() {
        return "NULL".to_owned();
    }
    (first..first + names.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Records that `target` has the revocations of `serials`: AWS reports each REVOKED there
    /// now (updated, or registered as REVOKED when the device never connected there), which is
    /// what the next sync of `target` would record. Each revocation that every target it needs
    /// (its CA's registrations among `configured_targets`) now has is finished in the same
    /// transaction: see [`Store::finish_told_revocations`]. Returns how many were finished.
    pub async fn record_revocations_pushed(
        &self,
        target: &str,
        serials: &[String],
        configured_targets: &[String],
        now: Timestamp,
    ) -> StoreResult<usize> {
        self.settle_revocations(Some((target, now)), serials, configured_targets)
            .await
    }

    /// Finishes revocations that every target they need has, though the ledger still flags
    /// them pending: a process killed between two steps of an older version, or targets
    /// deregistered since. The retry job runs it each round; it starts from the pending flag's
    /// partial index (`issued_certificates_aws_revocation_pending`) and looks each candidate up
    /// by primary key, so it costs what the backlog numbers. At most `limit` per call; returns
    /// how many were finished.
    pub async fn finish_told_revocations(
        &self,
        configured_targets: &[String],
        limit: u32,
    ) -> StoreResult<usize> {
        let needed = placeholders(1, configured_targets);
        let sql = format!(
            "SELECT c.serial FROM issued_certificates c WHERE c.aws_revocation_pending \
             AND EXISTS (SELECT 1 FROM aws_revocation_targets p WHERE p.serial = c.serial) \
             AND NOT EXISTS (SELECT 1 FROM ca_aws_registrations r \
                 WHERE r.ca_id = c.ca_id AND r.target IN ({needed}) \
                 AND NOT EXISTS (SELECT 1 FROM aws_revocation_targets p \
                     WHERE p.serial = c.serial AND p.target = r.target)) \
             ORDER BY c.revoked_at LIMIT {limit}"
        );
        let rows: Vec<(HexText,)> = on_pool!(self, |pool| {
            let mut query = sqlx::query_as(&sql);
            for name in configured_targets {
                query = query.bind(name);
            }
            query.fetch_all(pool).await
        })?;
        let serials: Vec<String> = rows.into_iter().map(|(s,)| s.0).collect();
        self.settle_revocations(None, &serials, configured_targets)
            .await
    }

    /// In one transaction, for each of `serials` in serial order (so that two transactions
    /// lock rows in the same order): lock the certificate's row, record `pushed` (the target
    /// and when) if given, and finish the revocation if it is still pending, at least one
    /// target has it and no needed target lacks it. Finishing writes each target's REVOKED
    /// status, clears the flag, removes the per-target records and summarises `aws_status`
    /// again (`aws_first_seen_at` stays: null when the device never connected).
    async fn settle_revocations(
        &self,
        pushed: Option<(&str, Timestamp)>,
        serials: &[String],
        configured_targets: &[String],
    ) -> StoreResult<usize> {
        if serials.is_empty() {
            return Ok(0);
        }
        let mut serials = serials.to_vec();
        serials.sort_unstable();
        serials.dedup();
        let state_sql = state_sql(&placeholders(2, configured_targets));
        let finished = on_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            let mut finished = 0;
            for serial in &serials {
                sqlx::query(LOCK_SQL)
                    .bind(HexArg(serial))
                    .execute(&mut *tx)
                    .await?;
                if let Some((target, now)) = pushed {
                    sqlx::query(RECORD_TARGET_SQL)
                        .bind(HexArg(serial))
                        .bind(target)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(UPSERT_REVOKED_SQL)
                        .bind(HexArg(serial))
                        .bind(target)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(SUMMARY_BY_SERIAL_SQL)
                        .bind(HexArg(serial))
                        .bind(None::<Timestamp>)
                        .execute(&mut *tx)
                        .await?;
                }
                let mut state =
                    sqlx::query_as::<_, (bool, i64, i64)>(&state_sql).bind(HexArg(serial));
                for name in configured_targets {
                    state = state.bind(name);
                }
                let Some((true, told, 0)) = state.fetch_optional(&mut *tx).await? else {
                    continue;
                };
                if told == 0 {
                    continue;
                }
                for finish in [STATUS_FROM_TARGETS_SQL, CLEAR_FLAG_SQL, DROP_TARGETS_SQL] {
                    sqlx::query(finish)
                        .bind(HexArg(serial))
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(SUMMARY_BY_SERIAL_SQL)
                    .bind(HexArg(serial))
                    .bind(None::<Timestamp>)
                    .execute(&mut *tx)
                    .await?;
                finished += 1;
            }
            tx.commit().await?;
            Ok::<usize, sqlx::Error>(finished)
        }
        .await)?;
        Ok(finished)
    }
}
