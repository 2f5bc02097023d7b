//! AWS IoT JITP administration of our CAs: preflight, registration (with the verification
//! certificate), reconciliation with AWS, status changes, deletion and the JITP template.
//!
//! Every gotcha of the manual workflow (`docs/jitp.md`) is checked here before AWS sees a request.
//! Talks to AWS only through [`IotRegistry`]; every action is audited.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aws::{
    AwsError, CaDescription, CaUpdate, CertificateMode, IotRegistry, RegisterCaRequest,
    RegistrationConfig,
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
mod template;

pub use health::{
    CaHealth, DEFAULT_TARGET, Finding, HealthCode, HealthReport, Severity, TargetHealth,
};
pub use outcome::{FieldOutcome, RegistrationOutcome};
pub use preflight::{Check, PreflightReport};
pub use register::{RegisterRequest, RegistrationState, StatusChange};
pub use sync::SyncReport;
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
    #[error(transparent)]
    Authority(#[from] CaAdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Provisioning<'a> {
    pub store: &'a Store,
    pub registry: Option<&'a Arc<dyn IotRegistry>>,
    pub ca_admin: CaAdmin<'a>,
    pub policy: &'a IssuancePolicy,
}

impl Provisioning<'_> {
    fn registry(&self) -> Result<&Arc<dyn IotRegistry>, ProvisioningError> {
        self.registry.ok_or(ProvisioningError::NotConfigured)
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
