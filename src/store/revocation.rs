//! Revocation in the ledger: marking a certificate revoked, which frees its thing name and marks
//! its CA's stored CRL as behind, and reading the revoked certificates of a CA for its CRL.

use sqlx::FromRow;

use super::certificate_counts::{CountChanges, REVOKED_RETURNING, RevokedCounted};
use super::{HexArg, HexText, Store, StoreResult, Timestamp};
use crate::ca::authority::{RevocationReason, RevokedEntry};

/// How a revocation attempt ended. Anything but `Revoked` changed nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    NotFound,
    /// The certificate was revoked before; that revocation stands unchanged.
    AlreadyRevoked {
        revoked_at: Timestamp,
        reason: Option<String>,
    },
}

#[derive(FromRow)]
struct RevokedRow {
    #[sqlx(try_from = "HexText")]
    serial: String,
    revoked_at: Timestamp,
    revocation_reason: Option<String>,
}

impl Store {
    /// Revokes an active (or superseded: renewed, still valid) certificate, in one transaction: the ledger row becomes `revoked` with
    /// `now` and `reason`, the thing claim it holds is deleted (so the thing name can be issued
    /// again under `duplicate_thing_name = "reject"`), and `aws_revocation_pending` records that
    /// AWS IoT has not been told yet.
    pub async fn revoke_certificate(
        &self,
        serial: &str,
        reason: RevocationReason,
        now: Timestamp,
    ) -> StoreResult<RevokeOutcome> {
        Ok(on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                // `status = 'active'` makes concurrent revocations of one certificate race
                // safely: the row lock serializes them and only the first changes the row.
                let updated: Option<RevokedCounted> = sqlx::query_as(&format!(
                    "UPDATE issued_certificates SET status = 'revoked', revoked_at = $2, \
                     revocation_reason = $3, aws_revocation_pending = true \
                     WHERE serial = $1 AND status IN ('active', 'superseded') \
                     RETURNING {REVOKED_RETURNING}"
                ))
                .bind(HexArg(serial))
                .bind(now)
                .bind(reason.name())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(revoked) = updated else {
                    let existing: Option<(Option<Timestamp>, Option<String>)> = sqlx::query_as(
                        "SELECT revoked_at, revocation_reason FROM issued_certificates \
                         WHERE serial = $1",
                    )
                    .bind(HexArg(serial))
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    return match existing {
                        None => Ok(RevokeOutcome::NotFound),
                        Some((Some(revoked_at), reason)) => {
                            Ok(RevokeOutcome::AlreadyRevoked { revoked_at, reason })
                        }
                        // The schema's CHECK ties revoked_at to status = 'revoked', and a
                        // revoked row never becomes active again.
                        Some((None, _)) => Err(sqlx::Error::Protocol(format!(
                            "certificate {serial} is active but could not be revoked"
                        ))),
                    };
                };
                sqlx::query("DELETE FROM thing_claims WHERE serial = $1")
                    .bind(HexArg(serial))
                    .execute(&mut *tx)
                    .await?;
                // The CA's stored CRL is now behind; it is signed again before it is served.
                sqlx::query(&super::crls::bump_revocation_generation_sql(
                    "SELECT ca_id FROM issued_certificates WHERE serial = $1",
                ))
                .bind(HexArg(serial))
                .execute(&mut *tx)
                .await?;
                let ca_id = revoked.counted.ca_id.as_str();
                let event = super::chain::revoked_event(ca_id, serial, now, reason.name());
                append_chain!(tx, ca_id, &[event])?;
                let mut counts = CountChanges::default();
                counts.revoked(&revoked, now);
                add_counts!(tx, &counts)?;
                tx.commit().await?;
                Ok::<RevokeOutcome, sqlx::Error>(RevokeOutcome::Revoked)
            }
            .await
        })?)
    }

    /// Every revoked certificate issued by `ca_id`, oldest revocation first, as its CRL lists
    /// them. Each call is counted in `factory_ca_crl_ledger_scans_total`: CRLs are built from
    /// this, served from storage.
    pub async fn revoked_entries(&self, ca_id: &str) -> StoreResult<Vec<RevokedEntry>> {
        self.revoked_entries_since(ca_id, None).await
    }

    /// The revoked certificates of `ca_id` with `revoked_at` at or after `since` (all with
    /// `None`), oldest revocation first: the entries of a delta CRL. Counted like
    /// [`Store::revoked_entries`].
    pub async fn revoked_entries_since(
        &self,
        ca_id: &str,
        since: Option<Timestamp>,
    ) -> StoreResult<Vec<RevokedEntry>> {
        metrics::counter!("factory_ca_crl_ledger_scans_total", "ca_id" => ca_id.to_owned())
            .increment(1);
        let rows: Vec<RevokedRow> = match since {
            None => on_pool!(self, |pool| sqlx::query_as(
                "SELECT serial, revoked_at, revocation_reason FROM issued_certificates \
                 WHERE ca_id = $1 AND status = 'revoked' ORDER BY revoked_at, serial"
            )
            .bind(ca_id)
            .fetch_all(pool)
            .await)?,
            Some(since) => on_pool!(self, |pool| sqlx::query_as(
                "SELECT serial, revoked_at, revocation_reason FROM issued_certificates \
                 WHERE ca_id = $1 AND status = 'revoked' AND revoked_at >= $2 \
                 ORDER BY revoked_at, serial"
            )
            .bind(ca_id)
            .bind(since)
            .fetch_all(pool)
            .await)?,
        };
        Ok(rows
            .into_iter()
            .map(|row| {
                let reason = row
                    .revocation_reason
                    .as_deref()
                    .and_then(RevocationReason::from_name);
                if reason.is_none() {
                    // Only a hand-edited row gets here. Listing the certificate matters more
                    // than its reason, so it goes on the CRL as unspecified.
                    tracing::warn!(
                        serial = %row.serial,
                        revocation_reason = ?row.revocation_reason,
                        "revoked certificate has no known revocation reason; listed as unspecified"
                    );
                }
                RevokedEntry {
                    serial_hex: row.serial,
                    revoked_at: row.revoked_at.get(),
                    reason: reason.unwrap_or(RevocationReason::Unspecified),
                }
            })
            .collect())
    }
}
