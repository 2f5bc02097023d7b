//! Revocations pushed to AWS IoT: UpdateCertificate to REVOKED, or RegisterCertificate as
//! REVOKED for a certificate AWS has not seen, so that JITP can never activate it.

use super::*;

impl Provisioning<'_> {
    /// Tells AWS IoT of revocations it has not been told of (of one CA, or all), oldest
    /// first: UpdateCertificate to REVOKED, or, for a certificate AWS has not seen (the device
    /// never connected), RegisterCertificate with status REVOKED so that JITP can never
    /// activate it. A failure leaves the revocation pending for the next attempt. Returns how
    /// many were pushed and the first failure.
    pub async fn push_revocations(
        &self,
        ca_id: Option<&str>,
        serial: Option<&str>,
        limit: u32,
    ) -> Result<(usize, Option<AwsError>), ProvisioningError> {
        let registry = self.registry()?;
        let mut pushed = 0;
        let mut first_error = None;
        for pending in self.store.pending_revocations(ca_id, serial, limit).await? {
            match push_one(registry.as_ref(), &pending, self.store, &pending.ca_id).await {
                Ok(()) => {
                    self.store.clear_revocation_pending(&pending.serial).await?;
                    pushed += 1;
                }
                Err(e) => {
                    tracing::warn!(serial = %pending.serial, error = %e, "revocation not yet pushed to AWS IoT; will retry");
                    first_error.get_or_insert(e);
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
