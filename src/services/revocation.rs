//! Revoking a certificate in the ledger: the one function the admin route and the
//! `factory-ca certificate revoke` command call, audited as `certificate.revoke` whatever the
//! outcome. Telling AWS IoT is separate (`provisioning::push_revocations`, retried in the
//! background while `aws_revocation_pending` is set).

use crate::ca::authority::RevocationReason;
use crate::services::audit::Actor;
use crate::store::revocation::RevokeOutcome;
use crate::store::{Store, StoreError, Timestamp};

/// The audit action of every revocation attempt.
pub const AUDIT_ACTION: &str = "certificate.revoke";

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("no certificate with serial {0:?} in the ledger")]
    NotFound(String),
    #[error(
        "certificate {serial} was already revoked at {revoked_at} (reason {reason}); a revocation is final and stays as it was"
    )]
    AlreadyRevoked {
        serial: String,
        revoked_at: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RevocationError {
    /// How the audit record names the refusal: the API's error code for it, so that the log
    /// reads the same whichever way the revocation was asked for.
    fn audit_label(&self) -> &'static str {
        match self {
            RevocationError::NotFound(_) => "refused: certificate_not_found",
            RevocationError::AlreadyRevoked { .. } => "refused: certificate_already_revoked",
            RevocationError::Store(_) => "store unavailable",
        }
    }
}

/// Revokes the active certificate `serial` (40 hex characters, any case) for `reason`, and
/// records the attempt in the audit log as `actor`. Returns the serial as the ledger spells it.
pub async fn revoke_certificate(
    store: &Store,
    serial: &str,
    reason: RevocationReason,
    actor: Actor<'_>,
) -> Result<String, RevocationError> {
    let serial = serial.to_ascii_lowercase();
    // Serials in the ledger are 40 hex characters; anything else is not there.
    let outcome = if serial.len() == 40 && serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        store
            .revoke_certificate(&serial, reason, Timestamp::now())
            .await
    } else {
        Ok(RevokeOutcome::NotFound)
    };
    let result = match outcome {
        Ok(RevokeOutcome::Revoked) => Ok(()),
        Ok(RevokeOutcome::NotFound) => Err(RevocationError::NotFound(clip(&serial))),
        Ok(RevokeOutcome::AlreadyRevoked {
            revoked_at,
            reason: original,
        }) => Err(RevocationError::AlreadyRevoked {
            serial: serial.clone(),
            revoked_at: revoked_at.rfc3339(),
            reason: original.unwrap_or_else(|| "unknown".into()),
        }),
        Err(e) => Err(RevocationError::Store(e)),
    };
    let target = clip(&serial);
    match result {
        Ok(()) => {
            let detail = format!("reason={}", reason.name());
            actor
                .record(store, AUDIT_ACTION, Some(&target), true, Some(&detail))
                .await?;
            Ok(serial)
        }
        Err(e) => {
            let detail = format!("reason={}; {}", reason.name(), e.audit_label());
            let recorded = actor
                .record(store, AUDIT_ACTION, Some(&target), false, Some(&detail))
                .await;
            // With the store failing the audit record likely fails too; the store error is
            // the one to report either way.
            match (e, recorded) {
                (e @ RevocationError::Store(_), _) => Err(e),
                (_, Err(audit)) => Err(audit.into()),
                (e, Ok(())) => Err(e),
            }
        }
    }
}

/// Client text shown back or audited is cut at 64 characters.
pub fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}
