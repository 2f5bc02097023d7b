//! AWS IoT JITP administration of our CAs: preflight, registration (with the verification
//! certificate), reconciliation with AWS, status changes, deletion and the JITP template.
//!
//! Every gotcha of the manual workflow (`docs/jitp.md`) is checked here before AWS sees a request.
//! Talks to AWS only through [`IotRegistry`]; every action is audited.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aws::{
    AwsError, AwsTargetRegistry, CaDescription, CaUpdate, CertificateMode, IotRegistry,
    RegisterCaRequest, RegistrationConfig,
};
use crate::ca::policy::SubjectField;
use crate::ca::{CertificateAuthority, IssuancePolicy};
use crate::jitp::{self, CertificateField, ResolvedTemplate, TemplateError, TemplateSpec};
pub use crate::services::audit::Actor;
use crate::services::ca_admin::{CaAdmin, CaAdminError};
use crate::store::aws::AwsRegistration;
use crate::store::{CaRecord, Store, StoreError, Timestamp};

mod health;
mod outcome;
mod preflight;
mod register;
mod revocations;
mod sync;
mod sync_job;
mod targets;
mod template;

pub use health::{
    CaHealth, DEFAULT_TARGET, Finding, HealthCode, HealthReport, Severity, TargetHealth,
};
pub use outcome::{FieldOutcome, RegistrationOutcome};
pub use preflight::{Check, PreflightReport, TargetMode};
pub use register::{RegisterRequest, RegistrationState, StatusChange};
pub use sync::SyncReport;
pub use sync_job::{SYNC_LEASE, SyncJobs, SyncRunner, TakenSync};
pub use targets::{
    DeregisterOutcome, RegisterOutcome, StateOutcome, StateTarget, SyncOutcome, TargetFailure,
    TargetOutcome, TargetSync, TemplateOutcome,
};
pub use template::{Attach, PreviewAnswer, PreviewRequest, TemplateRequest};

#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("AWS IoT is not configured (set aws.enabled = true and aws.region)")]
    NotConfigured,
    #[error("no CA with id {0:?}")]
    CaNotFound(String),
    #[error("CA {0} is not registered in AWS IoT; register it first (POST .../aws/register)")]
    NotRegistered(String),
    #[error("preflight failed: {0}")]
    PreflightFailed(String),
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Another sync of the CA in the target is running (this process or another holds it).
    #[error(
        "a sync of CA {ca_id} in AWS target {target} is running already; GET \
         /v1/admin/cas/{ca_id}/aws/sync shows its progress, sync again once it has ended"
    )]
    SyncRunning { ca_id: String, target: String },
    #[error("unknown AWS target {name:?}; the configured targets are: {configured}")]
    UnknownTarget { name: String, configured: String },
    /// Every selected target failed; `first` decides the answer's code, `detail` names each
    /// target's failure.
    #[error("{detail}")]
    AllTargetsFailed {
        first: Box<ProvisioningError>,
        detail: String,
    },
    #[error(transparent)]
    Authority(#[from] CaAdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Provisioning<'a> {
    pub store: &'a Store,
    /// The registration targets; empty when AWS is not configured.
    pub targets: &'a [AwsTargetRegistry],
    pub ca_admin: CaAdmin<'a>,
    pub policy: &'a IssuancePolicy,
    /// This process's sync jobs: its lease holder name, its runner's wake-up.
    pub syncs: &'a SyncRunner,
}

impl<'a> Provisioning<'a> {
    /// The targets a request names (`None`: every configured target), in configuration order.
    fn select(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<&'a AwsTargetRegistry>, ProvisioningError> {
        if self.targets.is_empty() {
            return Err(ProvisioningError::NotConfigured);
        }
        let Some(names) = names else {
            return Ok(self.targets.iter().collect());
        };
        if names.is_empty() {
            return Err(ProvisioningError::InvalidRequest(
                "targets must name at least one AWS target, or be left out for all".into(),
            ));
        }
        for name in names {
            if !self.targets.iter().any(|t| &t.name == name) {
                return Err(ProvisioningError::UnknownTarget {
                    name: name.clone(),
                    configured: self.target_names(),
                });
            }
        }
        Ok(self
            .targets
            .iter()
            .filter(|t| names.contains(&t.name))
            .collect())
    }

    /// The one target an account-wide action (e.g. the certificate provider) applies to: the
    /// named one, or the only one configured; with several configured, one must be named.
    pub fn one_target(
        &self,
        name: Option<&str>,
    ) -> Result<&'a AwsTargetRegistry, ProvisioningError> {
        match name {
            Some(name) => Ok(self.select(Some(&[name.to_owned()]))?[0]),
            None => match self.select(None)?.as_slice() {
                [only] => Ok(only),
                _ => Err(ProvisioningError::InvalidRequest(format!(
                    "several AWS targets are configured ({}): name one with target",
                    self.target_names()
                ))),
            },
        }
    }

    fn target_names(&self) -> String {
        self.targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `detail` as the audit log keeps it: with the target named when there are several.
    fn labelled(&self, target: &str, detail: &str) -> String {
        if self.targets.len() > 1 {
            format!("target {target}: {detail}")
        } else {
            detail.to_owned()
        }
    }

    /// Records the last operation in `target` and what failed.
    async fn record_attempt(
        &self,
        ca_id: &str,
        target: &str,
        operation: &str,
        error: Option<&ProvisioningError>,
    ) -> Result<(), StoreError> {
        let aws = match error {
            Some(ProvisioningError::Aws(e)) => Some(e),
            _ => None,
        };
        self.store
            .save_target_attempt(&crate::store::aws::TargetAttempt {
                ca_id: ca_id.to_owned(),
                target: target.to_owned(),
                operation: operation.to_owned(),
                attempted_at: Timestamp::now(),
                ok: error.is_none(),
                error_kind: error.map(|_| aws.map_or("failed", AwsError::kind).to_owned()),
                error_code: aws.and_then(|e| e.failure().code.clone()),
                error_message: error.map(|e| match aws {
                    Some(a) => a.failure().to_string(),
                    None => e.to_string(),
                }),
            })
            .await
    }

    async fn ca_record(&self, ca_id: &str) -> Result<CaRecord, ProvisioningError> {
        self.store
            .get_ca(ca_id)
            .await?
            .ok_or_else(|| ProvisioningError::CaNotFound(ca_id.to_owned()))
    }

    async fn load_ca(&self, ca_id: &str) -> Result<CertificateAuthority, ProvisioningError> {
        Ok(self.ca_admin.load_by_id(ca_id).await?)
    }

    async fn registration(&self, ca_id: &str) -> Result<AwsRegistration, ProvisioningError> {
        self.store
            .get_aws_registration(ca_id)
            .await?
            .ok_or_else(|| ProvisioningError::NotRegistered(ca_id.to_owned()))
    }

    /// The CA's registrations in the selected targets, each with its target; NotRegistered
    /// when it has none there.
    async fn registrations_in<'t>(
        &self,
        ca_id: &str,
        selected: &[&'t AwsTargetRegistry],
    ) -> Result<Vec<(&'t AwsTargetRegistry, AwsRegistration)>, ProvisioningError> {
        let all = self.store.list_ca_aws_registrations(ca_id).await?;
        let found: Vec<_> = selected
            .iter()
            .filter_map(|t| {
                all.iter()
                    .find(|r| r.target == t.name)
                    .map(|r| (*t, r.clone()))
            })
            .collect();
        if found.is_empty() {
            return Err(ProvisioningError::NotRegistered(ca_id.to_owned()));
        }
        Ok(found)
    }

    async fn audit(
        &self,
        action: &str,
        ca_id: &str,
        success: bool,
        detail: &str,
        actor: Actor<'_>,
    ) -> Result<(), StoreError> {
        actor
            .record(self.store, action, Some(ca_id), success, Some(detail))
            .await
    }
}
