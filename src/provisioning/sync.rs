//! The sync: ListCertificatesByCA for a registered CA, marking each ledger row with its AWS
//! status.

use super::*;
use crate::aws::AwsCertificateStatus;

impl Provisioning<'_> {
    /// ListCertificatesByCA for a registered CA: marks each ledger row with its AWS status and
    /// when AWS first saw it. Rows AWS does not list keep `aws_status` null: devices that never
    /// connected.
    pub async fn sync(
        &self,
        ca_id: &str,
        actor: Actor<'_>,
    ) -> Result<SyncReport, ProvisioningError> {
        let registry = self.registry()?;
        let reg = self.registration(ca_id).await?;
        let now = Timestamp::now();
        let mut report = SyncReport::default();
        let mut marker: Option<String> = None;
        loop {
            let page = match registry
                .list_certificates_by_ca(&reg.aws_certificate_id, marker.as_deref())
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    self.audit("ca.aws.sync", ca_id, false, &e.to_string(), actor)
                        .await?;
                    return Err(e.into());
                }
            };
            report.pages += 1;
            for c in &page.certificates {
                report.listed += 1;
                let seen = c.created_at.map(Timestamp::new);
                let Some(status) = AwsCertificateStatus::from_aws(&c.status) else {
                    tracing::warn!(
                        certificate_id = %c.certificate_id,
                        status = %c.status,
                        "AWS IoT reports a certificate status factory-ca does not know; not recorded"
                    );
                    report.unknown_status += 1;
                    continue;
                };
                if self
                    .store
                    .record_aws_status(&c.certificate_id, status, seen, now)
                    .await?
                {
                    report.matched += 1;
                } else {
                    report.not_in_ledger += 1;
                }
            }
            match page.next_marker {
                Some(next) if Some(&next) != marker.as_ref() && report.pages < 10_000 => {
                    marker = Some(next)
                }
                _ => break,
            }
        }
        let detail = format!(
            "listed={}; matched={}; not_in_ledger={}",
            report.listed, report.matched, report.not_in_ledger
        );
        self.audit("ca.aws.sync", ca_id, true, &detail, actor)
            .await?;
        Ok(report)
    }
}

/// What a sync found.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub pages: usize,
    /// Certificates AWS listed under the CA.
    pub listed: usize,
    /// Of those, the ones found in the ledger and marked.
    pub matched: usize,
    /// Listed by AWS but not issued by this ledger.
    pub not_in_ledger: usize,
    /// Listed with a status factory-ca does not know (logged, not recorded).
    pub unknown_status: usize,
}
