//! The sync: ListCertificatesByCA for a registered CA in one target, recording each ledger
//! row's AWS status in that target. Where it stands is stored after each page, so that an interrupted sync (a restart, an
//! outage, throttling beyond the retries) resumes at the page it reached.

use super::*;
use crate::aws::AwsCertificateStatus;
use crate::store::aws::{ReportedStatus, SyncProgress};

/// Most pages of one sync call; a sync with more continues at the next call.
const MAX_PAGES: usize = 10_000;

impl Provisioning<'_> {
    /// ListCertificatesByCA for a registered CA in one target: records, per certificate, the
    /// status this target reports and when it first saw it (`certificate_aws_status`), and
    /// summarises the targets in the ledger row's `aws_status`. A certificate this target does
    /// not list has no status there: its device never connected there. Resumes an unfinished
    /// sync of the same registration at its next page.
    pub(super) async fn sync_in(
        &self,
        target: &AwsTargetRegistry,
        reg: &AwsRegistration,
        actor: Actor<'_>,
    ) -> Result<SyncReport, ProvisioningError> {
        let registry = target.registry.as_ref();
        let ca_id = reg.ca_id.as_str();
        let label = |detail: &str| self.labelled(&target.name, detail);
        let now = Timestamp::now();
        let mut report = SyncReport::default();
        let mut progress = match self.store.get_sync_progress(ca_id, &target.name).await? {
            Some(p) if p.aws_certificate_id == reg.aws_certificate_id => {
                report.resumed = true;
                report.pages = p.pages as usize;
                report.listed = p.listed as usize;
                report.matched = p.matched as usize;
                report.not_in_ledger = p.not_in_ledger as usize;
                report.unknown_status = p.unknown_status as usize;
                p
            }
            _ => SyncProgress {
                ca_id: ca_id.to_owned(),
                target: target.name.clone(),
                aws_certificate_id: reg.aws_certificate_id.clone(),
                marker: String::new(),
                pages: 0,
                listed: 0,
                matched: 0,
                not_in_ledger: 0,
                unknown_status: 0,
                started_at: now,
                updated_at: now,
            },
        };
        let mut marker = report.resumed.then(|| progress.marker.clone());
        let mut pages_now = 0;
        loop {
            let page = match registry
                .list_certificates_by_ca(&reg.aws_certificate_id, marker.as_deref())
                .await
            {
                Ok(page) => page,
                // A marker AWS no longer honours: start over next time.
                Err(AwsError::InvalidRequest(f)) if report.resumed && pages_now == 0 => {
                    self.store.delete_sync_progress(ca_id, &target.name).await?;
                    let e = AwsError::InvalidRequest(f);
                    let detail = format!("{e}; the stored page marker was dropped, sync again");
                    self.audit("ca.aws.sync", ca_id, false, &label(&detail), actor)
                        .await?;
                    return Err(e.into());
                }
                Err(e) => {
                    let detail = format!(
                        "{e}; {} page(s) done, the next sync resumes there",
                        report.pages
                    );
                    self.audit("ca.aws.sync", ca_id, false, &label(&detail), actor)
                        .await?;
                    return Err(e.into());
                }
            };
            report.pages += 1;
            pages_now += 1;
            let mut reported = Vec::with_capacity(page.certificates.len());
            for c in &page.certificates {
                report.listed += 1;
                let Some(status) = AwsCertificateStatus::from_aws(&c.status) else {
                    tracing::warn!(
                        certificate_id = %c.certificate_id,
                        status = %c.status,
                        "AWS IoT reports a certificate status factory-ca does not know; not recorded"
                    );
                    report.unknown_status += 1;
                    continue;
                };
                reported.push(ReportedStatus {
                    aws_certificate_id: c.certificate_id.clone(),
                    status,
                    first_seen_at: c.created_at.map(Timestamp::new),
                });
            }
            // This target's row of each certificate; the other targets' rows stay as they are.
            for found in self
                .store
                .record_aws_statuses(&target.name, &reported, now)
                .await?
            {
                if found {
                    report.matched += 1;
                } else {
                    report.not_in_ledger += 1;
                }
            }
            match page.next_marker {
                Some(next) if Some(&next) != marker.as_ref() => {
                    progress.marker = next.clone();
                    progress.pages = report.pages as i64;
                    progress.listed = report.listed as i64;
                    progress.matched = report.matched as i64;
                    progress.not_in_ledger = report.not_in_ledger as i64;
                    progress.unknown_status = report.unknown_status as i64;
                    progress.updated_at = Timestamp::now();
                    self.store.save_sync_progress(&progress).await?;
                    if pages_now >= MAX_PAGES {
                        report.more = true;
                        break;
                    }
                    marker = Some(next)
                }
                _ => break,
            }
        }
        if !report.more {
            self.store.delete_sync_progress(ca_id, &target.name).await?;
        }
        let detail = format!(
            "listed={}; matched={}; not_in_ledger={}{}",
            report.listed,
            report.matched,
            report.not_in_ledger,
            match (report.resumed, report.more) {
                (_, true) => "; more pages: the next sync continues",
                (true, false) => "; resumed",
                (false, false) => "",
            }
        );
        self.audit("ca.aws.sync", ca_id, true, &label(&detail), actor)
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
    /// Whether this sync resumed one that had stopped part way (the counts include its pages).
    pub resumed: bool,
    /// Whether AWS has more pages than one call syncs; the next sync continues there.
    pub more: bool,
}
