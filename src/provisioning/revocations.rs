//! Revocations pushed to AWS IoT: UpdateCertificate to REVOKED, or RegisterCertificate as
//! REVOKED for a certificate AWS has not seen, so that JITP can never activate it.

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::*;

/// Failures in a row (unavailable, access denied) after which a target's batch of revocation
/// pushes stops until the next round.
const CONSECUTIVE_OUTAGE: usize = 3;

/// Completed pushes written to the ledger in one transaction, at most.
const LEDGER_BATCH: usize = 64;

/// Revocations finished per round by [`Provisioning::finish_told_revocations`], at most.
const SWEEP_LIMIT: u32 = 1_000;

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

    /// Finishes revocations every target they need already has while the ledger still flags
    /// them pending (see [`Store::finish_told_revocations`]); the retry job runs it each round.
    pub async fn finish_told_revocations(&self) -> Result<usize, ProvisioningError> {
        let finished = self
            .store
            .finish_told_revocations(&self.configured_target_names(), SWEEP_LIMIT)
            .await?;
        if finished > 0 {
            tracing::info!(
                finished,
                "revocations every target had, still flagged pending: now done"
            );
        }
        Ok(finished)
    }

    /// The configured targets' names: a revocation needs those its CA is registered in.
    fn configured_target_names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// [`Provisioning::push_revocations`] in one target, with up to the target's
    /// `revocation_push_concurrency` pushes in flight at once (each call still takes a token
    /// of the target's bucket and waits out its throttling back-off, in the registry). Each
    /// completed push is written to the ledger as it comes, those that completed together in
    /// one transaction, while the others are in flight; a failed push leaves exactly that
    /// revocation pending in this target. After [`CONSECUTIVE_OUTAGE`] failures in a row that
    /// say the target is down, throttles beyond the retries or refuses our credentials, no
    /// further push starts this round (those in flight finish and are recorded): a round then
    /// makes at most `CONSECUTIVE_OUTAGE + concurrency - 1` calls to a target that is down.
    pub(super) async fn push_revocations_to(
        &self,
        target: &AwsTargetRegistry,
        ca_id: Option<&str>,
        serial: Option<&str>,
        limit: u32,
    ) -> Result<(usize, Option<AwsError>), ProvisioningError> {
        let pending = self
            .store
            .pending_revocations(&target.name, ca_id, serial, limit)
            .await?;
        if pending.is_empty() {
            return Ok((0, None));
        }
        let registry = target.registry.as_ref();
        let store = self.store;
        let concurrency = target.push_concurrency.max(1);
        let (done, mut completed) = tokio::sync::mpsc::unbounded_channel();
        let pushes = async move {
            let mut queue = pending.into_iter();
            let mut in_flight = FuturesUnordered::new();
            let mut outage = 0;
            loop {
                while outage < CONSECUTIVE_OUTAGE && in_flight.len() < concurrency {
                    let Some(pending) = queue.next() else { break };
                    in_flight.push(async move {
                        let result = push_one(registry, &pending, store).await;
                        (pending, result)
                    });
                }
                let Some((pending, result)) = in_flight.next().await else {
                    break;
                };
                if matches!(
                    result,
                    Err(AwsError::Unavailable(_) | AwsError::Unauthorized(_))
                ) {
                    outage += 1;
                } else {
                    outage = 0;
                }
                // The ledger side gave up (a store error): stop pushing what it cannot record.
                if done.send((pending, result)).is_err() {
                    break;
                }
            }
        };
        let needed_among = self.configured_target_names();
        let ledger = async {
            let mut pushed = 0;
            let mut first_error = None;
            while let Some(first) = completed.recv().await {
                let mut batch = vec![first];
                while batch.len() < LEDGER_BATCH {
                    match completed.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let mut told = Vec::with_capacity(batch.len());
                let mut failed = Vec::new();
                for (pending, result) in batch {
                    match result {
                        Ok(()) => told.push(pending.serial),
                        Err(e) => failed.push((pending, e)),
                    }
                }
                if !told.is_empty() {
                    self.store
                        .record_revocations_pushed(
                            &target.name,
                            &told,
                            &needed_among,
                            Timestamp::now(),
                        )
                        .await?;
                    pushed += told.len();
                }
                for (pending, e) in failed {
                    tracing::warn!(serial = %pending.serial, target = %target.name, error = %e, "revocation not yet pushed to AWS IoT; will retry");
                    let failure = ProvisioningError::Aws(e.clone());
                    self.record_attempt(
                        &pending.ca_id,
                        &target.name,
                        "revocation_push",
                        Some(&failure),
                    )
                    .await?;
                    first_error.get_or_insert(e);
                }
            }
            Ok::<_, ProvisioningError>((pushed, first_error))
        };
        let ((), written) = tokio::join!(pushes, ledger);
        written
    }
}

async fn push_one(
    registry: &dyn IotRegistry,
    pending: &crate::store::aws::PendingRevocation,
    store: &Store,
) -> Result<(), AwsError> {
    let ca_id = &pending.ca_id;
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
