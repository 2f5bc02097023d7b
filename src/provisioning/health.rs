//! CA health: what an AWS IoT Device Defender audit, or a device that cannot connect, would
//! find wrong with our CAs, checked before either does. Per CA: expiry and key strength; per CA
//! and AWS target: AWS's status and auto-registration beside ours (DescribeCACertificate, asked
//! now), and revocations AWS has not caught up with (from the ledger). Each finding has a
//! stable code, a severity and the fix.

use super::*;
use crate::aws::CaStatus;
use crate::ca::KeyAlgorithm;
use crate::store::aws::RevocationLag;

/// The name of the one AWS target the `[aws]` settings make when no target is named.
pub const DEFAULT_TARGET: &str = crate::config::DEFAULT_AWS_TARGET;

/// How urgent a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Act soon: something will break, or an audit will flag it.
    Warning,
    /// Act now: devices cannot connect, or devices that should not can.
    Critical,
}

/// What a finding is about; the stable `code` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthCode {
    /// The CA certificate has expired.
    CaExpired,
    /// The CA certificate expires within `ca.expiry_warn_days`.
    CaExpiring,
    /// An RSA key under 2048 bits.
    CaKeyWeak,
    /// Registered here, unknown to AWS IoT.
    CaNotInAws,
    /// INACTIVE here (or expired), ACTIVE in AWS IoT.
    CaActiveInAws,
    /// ACTIVE here, INACTIVE in AWS IoT.
    CaInactiveInAws,
    /// Auto-registration on for a CA that is INACTIVE in AWS IoT.
    AutoRegistrationOnInactiveCa,
    /// Device certificates revoked in the ledger that AWS IoT reported ACTIVE at the last sync.
    RevokedDeviceActiveInAws,
    /// Revocations AWS IoT has not been told of yet.
    RevocationsPendingInAws,
    /// AWS IoT could not be asked; the other target checks are missing.
    AwsCheckFailed,
}

impl HealthCode {
    pub const ALL: &'static [HealthCode] = &[
        HealthCode::CaExpired,
        HealthCode::CaExpiring,
        HealthCode::CaKeyWeak,
        HealthCode::CaNotInAws,
        HealthCode::CaActiveInAws,
        HealthCode::CaInactiveInAws,
        HealthCode::AutoRegistrationOnInactiveCa,
        HealthCode::RevokedDeviceActiveInAws,
        HealthCode::RevocationsPendingInAws,
        HealthCode::AwsCheckFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthCode::CaExpired => "ca_expired",
            HealthCode::CaExpiring => "ca_expiring",
            HealthCode::CaKeyWeak => "ca_key_weak",
            HealthCode::CaNotInAws => "ca_not_in_aws",
            HealthCode::CaActiveInAws => "ca_active_in_aws",
            HealthCode::CaInactiveInAws => "ca_inactive_in_aws",
            HealthCode::AutoRegistrationOnInactiveCa => "auto_registration_on_inactive_ca",
            HealthCode::RevokedDeviceActiveInAws => "revoked_device_active_in_aws",
            HealthCode::RevocationsPendingInAws => "revocations_pending_in_aws",
            HealthCode::AwsCheckFailed => "aws_check_failed",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            HealthCode::CaExpired
            | HealthCode::CaKeyWeak
            | HealthCode::CaNotInAws
            | HealthCode::CaActiveInAws
            | HealthCode::RevokedDeviceActiveInAws => Severity::Critical,
            HealthCode::CaExpiring
            | HealthCode::CaInactiveInAws
            | HealthCode::AutoRegistrationOnInactiveCa
            | HealthCode::RevocationsPendingInAws
            | HealthCode::AwsCheckFailed => Severity::Warning,
        }
    }

    /// What to do, with `{id}` standing for the CA id.
    fn fix(self) -> &'static str {
        match self {
            HealthCode::CaExpired | HealthCode::CaExpiring => {
                "create or import a new CA (POST /v1/admin/cas), register it in AWS IoT and \
                 activate it (POST /v1/admin/cas/{new}/activate) before this one expires; \
                 devices keep their certificates until those expire"
            }
            HealthCode::CaKeyWeak => {
                "replace the CA with one of an RSA key of 2048 bits or more, or an ECDSA key \
                 (POST /v1/admin/cas), and deregister this one from AWS IoT"
            }
            HealthCode::CaNotInAws => {
                "someone deleted the CA in AWS IoT: register it again (DELETE \
                 /v1/admin/cas/{id}/aws, then POST /v1/admin/cas/{id}/aws/register)"
            }
            HealthCode::CaActiveInAws => {
                "deactivate it in AWS IoT (PATCH /v1/admin/cas/{id}/aws {\"status\": \
                 \"inactive\"}), or, if it should stay active, record that (PATCH with \
                 {\"status\": \"active\"})"
            }
            HealthCode::CaInactiveInAws => {
                "devices of this CA cannot connect: activate it again (PATCH \
                 /v1/admin/cas/{id}/aws {\"status\": \"active\"}), or record the change (PATCH \
                 with {\"status\": \"inactive\"})"
            }
            HealthCode::AutoRegistrationOnInactiveCa => {
                "turn auto-registration off (PATCH /v1/admin/cas/{id}/aws \
                 {\"auto_registration\": false}), or activate the CA"
            }
            HealthCode::RevokedDeviceActiveInAws => {
                "these devices can still connect: list them (GET \
                 /v1/certificates?status=revoked&aws_status=ACTIVE&aws_target={target}), set \
                 them REVOKED in AWS IoT in that target (aws iot update-certificate \
                 --new-status REVOKED), then sync it (POST \
                 /v1/admin/cas/{id}/aws/sync?targets={target})"
            }
            HealthCode::RevocationsPendingInAws => {
                "factory-ca pushes them every aws.revocation_retry_secs; if the number does \
                 not fall, read the log for the AWS error (credentials, throttling, network)"
            }
            HealthCode::AwsCheckFailed => {
                "check the AWS credentials, region and network (the message has AWS's words), \
                 then ask again"
            }
        }
    }
}

/// One thing wrong.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Finding {
    pub code: HealthCode,
    pub severity: Severity,
    /// The AWS target the finding is about; null for the CA itself (expiry, key).
    pub target: Option<String>,
    /// What is wrong, with the figures.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    fn new(code: HealthCode, ca_id: &str, target: Option<&str>, message: String) -> Self {
        Finding {
            code,
            severity: code.severity(),
            target: target.map(str::to_owned),
            message,
            fix: code
                .fix()
                .replace("{id}", ca_id)
                .replace("{target}", target.unwrap_or("default")),
        }
    }
}

/// A CA in one AWS target, as AWS reports it now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TargetHealth {
    /// `default`: the `[aws]` settings.
    pub target: String,
    pub region: String,
    /// Whether factory-ca registered the CA there.
    pub registered: bool,
    /// AWS's status now; null when not registered, unknown to AWS, or AWS could not be asked.
    pub aws_status: Option<String>,
    /// AWS's auto-registration now; null as for `aws_status`.
    pub aws_auto_registration: Option<bool>,
    /// Revoked in the ledger, ACTIVE in this target at its last sync.
    pub revoked_but_active: i64,
    /// Revocations not yet pushed to this target.
    pub revocations_pending: i64,
    /// A sync that stopped part way and resumes at the next sync; null when none.
    pub sync_in_progress: Option<crate::store::aws::SyncProgress>,
}

/// One CA's health.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaHealth {
    pub ca_id: String,
    pub subject: String,
    pub is_issuing: bool,
    /// e.g. `ecdsa-p256`, `rsa-2048`.
    pub key_algorithm: String,
    /// RFC 3339.
    pub not_after: String,
    /// Whole days until the CA certificate expires; negative once expired.
    pub days_until_expiry: i64,
    /// One entry per AWS target; empty when AWS is not configured.
    pub targets: Vec<TargetHealth>,
    pub findings: Vec<Finding>,
}

/// `GET /v1/admin/health`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// When the checks ran (RFC 3339).
    pub checked_at: String,
    /// `ca.expiry_warn_days`.
    pub expiry_warn_days: i64,
    /// Findings of severity `critical`, over all CAs.
    pub critical: usize,
    /// Findings of severity `warning`, over all CAs.
    pub warning: usize,
    pub cas: Vec<CaHealth>,
}

/// RSA keys under this many bits are weak (AWS IoT Device Defender's CA key quality check).
const MIN_RSA_BITS: usize = 2048;

impl Provisioning<'_> {
    /// Checks every CA, and every registered CA in each AWS target. AWS failures are
    /// findings, not errors: the other checks still run.
    pub async fn health(&self, expiry_warn_days: i64) -> Result<HealthReport, ProvisioningError> {
        let now = Timestamp::now();
        let lags = self.store.revocation_lag().await?;
        let mut cas = Vec::new();
        for record in self.store.list_cas().await? {
            let mut findings = Vec::new();
            let days = (record.not_after.get() - now.get()).whole_days();
            let expired = record.not_after.get() <= now.get();
            if expired {
                findings.push(Finding::new(
                    HealthCode::CaExpired,
                    &record.id,
                    None,
                    format!(
                        "the CA certificate expired on {}",
                        record.not_after.rfc3339()
                    ),
                ));
            } else if days < expiry_warn_days {
                findings.push(Finding::new(
                    HealthCode::CaExpiring,
                    &record.id,
                    None,
                    format!(
                        "the CA certificate expires in {days} days ({}), within \
                         ca.expiry_warn_days = {expiry_warn_days}",
                        record.not_after.rfc3339()
                    ),
                ));
            }
            if let KeyAlgorithm::Rsa { bits } = record.key_algorithm
                && bits < MIN_RSA_BITS
            {
                findings.push(Finding::new(
                    HealthCode::CaKeyWeak,
                    &record.id,
                    None,
                    format!(
                        "the CA key is RSA with {bits} bits; AWS IoT Device Defender flags \
                         CA keys under {MIN_RSA_BITS} bits"
                    ),
                ));
            }
            let mut targets = Vec::new();
            for target in self.targets {
                let lag = lags
                    .iter()
                    .find(|l| l.ca_id == record.id && l.target == target.name)
                    .cloned()
                    .unwrap_or_default();
                targets.push(
                    self.target_health(target, &record, expired, lag, &mut findings)
                        .await?,
                );
            }
            cas.push(CaHealth {
                ca_id: record.id,
                subject: record.subject,
                is_issuing: record.is_issuing,
                key_algorithm: record.key_algorithm.name(),
                not_after: record.not_after.rfc3339(),
                days_until_expiry: days,
                targets,
                findings,
            });
        }
        let count = |severity| {
            cas.iter()
                .flat_map(|c| &c.findings)
                .filter(|f| f.severity == severity)
                .count()
        };
        Ok(HealthReport {
            checked_at: now.rfc3339(),
            expiry_warn_days,
            critical: count(Severity::Critical),
            warning: count(Severity::Warning),
            cas,
        })
    }

    async fn target_health(
        &self,
        aws_target: &AwsTargetRegistry,
        record: &CaRecord,
        expired: bool,
        lag: RevocationLag,
        findings: &mut Vec<Finding>,
    ) -> Result<TargetHealth, ProvisioningError> {
        let registry = aws_target.registry.as_ref();
        let target = Some(aws_target.name.as_str());
        let id = record.id.as_str();
        let mut health = TargetHealth {
            target: aws_target.name.clone(),
            region: aws_target.region.clone(),
            registered: false,
            aws_status: None,
            aws_auto_registration: None,
            revoked_but_active: 0,
            revocations_pending: 0,
            sync_in_progress: None,
        };
        let Some(stored) = self
            .store
            .get_aws_target_registration(id, &aws_target.name)
            .await?
        else {
            return Ok(health);
        };
        health.registered = true;
        health.sync_in_progress = self
            .store
            .get_sync_progress(id, &aws_target.name)
            .await?
            .filter(|p| p.aws_certificate_id == stored.aws_certificate_id);
        health.revoked_but_active = lag.revoked_but_active;
        health.revocations_pending = lag.pending;
        if lag.revoked_but_active > 0 {
            findings.push(Finding::new(
                HealthCode::RevokedDeviceActiveInAws,
                id,
                target,
                format!(
                    "{} device certificate(s) revoked in the ledger were ACTIVE in AWS IoT in \
                     this target at its last sync",
                    lag.revoked_but_active
                ),
            ));
        }
        if lag.pending > 0 {
            findings.push(Finding::new(
                HealthCode::RevocationsPendingInAws,
                id,
                target,
                format!("{} revocation(s) not yet pushed to AWS IoT", lag.pending),
            ));
        }
        let live = match registry
            .describe_ca_certificate(&stored.aws_certificate_id)
            .await
        {
            Ok(live) => live,
            Err(AwsError::NotFound(_)) => {
                findings.push(Finding::new(
                    HealthCode::CaNotInAws,
                    id,
                    target,
                    format!(
                        "AWS IoT does not know CA certificate {} any more; devices of this CA \
                         cannot connect",
                        stored.aws_certificate_id
                    ),
                ));
                return Ok(health);
            }
            Err(e) => {
                findings.push(Finding::new(
                    HealthCode::AwsCheckFailed,
                    id,
                    target,
                    format!("DescribeCACertificate failed: {e}"),
                ));
                return Ok(health);
            }
        };
        let live_active = live.status == CaStatus::Active.as_aws();
        let live_auto = live.auto_registration_status == "ENABLE";
        health.aws_status = Some(live.status.clone());
        health.aws_auto_registration = Some(live_auto);
        let active_here = stored.status == CaStatus::Active && !expired;
        if live_active && !active_here {
            let why = if expired {
                "the CA certificate has expired"
            } else {
                "factory-ca set it INACTIVE"
            };
            findings.push(Finding::new(
                HealthCode::CaActiveInAws,
                id,
                target,
                format!("the CA is ACTIVE in AWS IoT, but {why}"),
            ));
        } else if !live_active && active_here {
            findings.push(Finding::new(
                HealthCode::CaInactiveInAws,
                id,
                target,
                format!(
                    "factory-ca set the CA ACTIVE, AWS IoT reports {}",
                    live.status
                ),
            ));
        }
        if !live_active && live_auto {
            findings.push(Finding::new(
                HealthCode::AutoRegistrationOnInactiveCa,
                id,
                target,
                format!(
                    "auto-registration is on in AWS IoT for a CA that is {} there",
                    live.status
                ),
            ));
        }
        Ok(health)
    }
}

impl HealthReport {
    /// Sets the metrics gauges: `factory_ca_ca_days_until_expiry` per CA, and
    /// `factory_ca_health_finding` per CA, target and code (1 while found, 0 once cleared).
    pub fn record_gauges(&self) {
        for ca in &self.cas {
            metrics::gauge!("factory_ca_ca_days_until_expiry", "ca_id" => ca.ca_id.clone())
                .set(ca.days_until_expiry as f64);
            for t in &ca.targets {
                metrics::gauge!(
                    "factory_ca_aws_revocations_pending",
                    "ca_id" => ca.ca_id.clone(),
                    "target" => t.target.clone()
                )
                .set(t.revocations_pending as f64);
            }
            let mut scopes: Vec<&str> = vec!["ca"];
            scopes.extend(ca.targets.iter().map(|t| t.target.as_str()));
            for code in HealthCode::ALL {
                let per_target = !matches!(
                    code,
                    HealthCode::CaExpired | HealthCode::CaExpiring | HealthCode::CaKeyWeak
                );
                for scope in &scopes {
                    if per_target == (*scope == "ca") {
                        continue;
                    }
                    let found = ca
                        .findings
                        .iter()
                        .any(|f| f.code == *code && f.target.as_deref().unwrap_or("ca") == *scope);
                    metrics::gauge!(
                        "factory_ca_health_finding",
                        "ca_id" => ca.ca_id.clone(),
                        "target" => scope.to_string(),
                        "code" => code.as_str(),
                        "severity" => match code.severity() {
                            Severity::Warning => "warning",
                            Severity::Critical => "critical",
                        }
                    )
                    .set(if found { 1.0 } else { 0.0 });
                }
            }
        }
    }
}
