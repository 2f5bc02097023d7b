//! Revocations pushed to AWS IoT: UpdateCertificate to REVOKED, or RegisterCertificate as
//! REVOKED for a certificate AWS has not seen, so that JITP can never activate it.

use super::*;

/// Failures in a row (unavailable, access denied) after which a target's batch of revocation
/// pushes stops until the next round.
const CONSECUTIVE_OUTAGE: usize = 3;

impl Provisioning<'_> {
    /// Tells AWS IoT of revocations it has not been told of (of one CA, or all), in every
    /// target, oldest first: UpdateCertificate to REVOKED, or, for a certificate AWS has not
    /// seen (the device never connected), RegisterCertificate with status REVOKED so that JITP
    /// can never activate it. A revocation is done when every target its CA is registered in
    /// has it; a failure leaves it pending for the next attempt in that target only. Returns
    /// how many pushes succeeded (over the targets) and the first failure.
    pub async fn push_revocations(
        &self,
        ca_id: Option<&str>,
        serial: Option<&str>,
        limit: u32,
    ) -> Result<(usize, Option<AwsError>), ProvisioningError> {
        if self.targets.is_empty() {
            return Err(ProvisioningError::NotConfigured);
        }
        let mut pushed = 0;
        let mut first_error = None;
        for target in self.targets {
            let (n, error) = self
                .push_revocations_to(target, ca_id, serial, limit)
                .await?;
            pushed += n;
            if let Some(e) = error {
                first_error.get_or_insert(e);
            }
        }
        Ok((pushed, first_error))
    }

    /// [`Provisioning::push_revocations`] in one target. A target that is down, throttles
    /// beyond the retries or refuses our credentials ends its batch after
    /// [`CONSECUTIVE_OUTAGE`] such failures in a row.
    pub(super) async fn push_revocations_to(
        &self,
        target: &AwsTargetRegistry,
        ca_id: Option<&str>,
        serial: Option<&str>,
        limit: u32,
    ) -> Result<(usize, Option<AwsError>), ProvisioningError> {
        let registry = target.registry.as_ref();
        let mut pushed = 0;
        let mut first_error = None;
        let mut outage = 0;
        let mut targets_of_ca: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        let pending = self
            .store
            .pending_revocations(&target.name, ca_id, serial, limit)
            .await?;
        for pending in pending {
            match push_one(registry, &pending, self.store, &pending.ca_id).await {
                Ok(()) => {
                    outage = 0;
                    let now = Timestamp::now();
                    self.store
                        .mark_revocation_pushed(&pending.serial, &target.name, now)
                        .await?;
                    if !targets_of_ca.contains_key(&pending.ca_id) {
                        let names = self
                            .store
                            .list_ca_aws_registrations(&pending.ca_id)
                            .await?
                            .into_iter()
                            .map(|r| r.target)
                            .filter(|t| self.targets.iter().any(|c| &c.name == t))
                            .collect();
                        targets_of_ca.insert(pending.ca_id.clone(), names);
                    }
                    let needed = &targets_of_ca[&pending.ca_id];
                    let have = self
                        .store
                        .revocation_pushed_targets(&pending.serial)
                        .await?;
                    if needed.iter().all(|t| have.contains(t)) {
                        self.store.clear_revocation_pending(&pending.serial).await?;
                    }
                    pushed += 1;
                }
                Err(e) => {
                    tracing::warn!(serial = %pending.serial, target = %target.name, error = %e, "revocation not yet pushed to AWS IoT; will retry");
                    if matches!(e, AwsError::Unavailable(_) | AwsError::Unauthorized(_)) {
                        outage += 1;
                    } else {
                        outage = 0;
                    }
                    let failure = ProvisioningError::Aws(e.clone());
                    self.record_attempt(
                        &pending.ca_id,
                        &target.name,
                        "revocation_push",
                        Some(&failure),
                    )
                    .await?;
                    first_error.get_or_insert(e);
                    if outage >= CONSECUTIVE_OUTAGE {
                        break;
                    }
                }
            }
        }
        Ok((pushed, first_error))
    }
}

async fn push_one(
    registry: &dyn IotRegistry,
    pending: &crate::store::aws::PendingRevocation,
    store: &Store,
    ca_id: &str,
) -> Result<(), AwsError> {
    match registry
        .update_certificate(&pending.aws_certificate_id, "REVOKED")
        .await
    {
        Ok(()) => return Ok(()),
        Err(AwsError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let ca_pem = store
        .get_ca(ca_id)
        .await
        .map_err(|e| AwsError::Unavailable(e.to_string().into()))?
        .map(|ca| ca.certificate_pem)
        .ok_or_else(|| {
            AwsError::InvalidRequest(format!("CA {ca_id} is gone from the store").into())
        })?;
    let cert_pem = crate::ca::to_pem("CERTIFICATE", &pending.certificate_der);
    match registry
        .register_certificate(&cert_pem, &ca_pem, "REVOKED")
        .await
    {
        Ok(_) => Ok(()),
        // The device connected in between: AWS has it now, so revoke it there.
        Err(AwsError::AlreadyExists(_)) => {
            registry
                .update_certificate(&pending.aws_certificate_id, "REVOKED")
                .await
        }
        Err(e) => Err(e),
    }
}
