//! AWS IoT JITP administration of our CAs: preflight, registration (with the verification
//! certificate), reconciliation with AWS, status changes, deletion and the JITP template.
//!
//! Every gotcha of the manual workflow (`JITP.md`) is checked here before AWS sees a request.
//! Talks to AWS only through [`IotRegistry`]; every action is audited.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use crate::authorities::Actor;
use crate::authorities::{Authorities, AuthorityError};
use crate::aws::{
    AwsError, CaDescription, CaUpdate, CertificateMode, IotRegistry, RegisterCaRequest,
    RegistrationConfig,
};
use crate::ca::policy::SubjectField;
use crate::ca::{CertificateAuthority, IssuancePolicy};
use crate::jitp::{self, CertificateField, ResolvedTemplate, TemplateError, TemplateSpec};
use crate::store::aws::AwsRegistration;
use crate::store::{AuditEntry, CaRecord, Store, StoreError, Timestamp};

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
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One preflight check and its outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `ca_true`, `key_cert_sign`, `validity`, `key_strength` or `template_fields`.
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreflightReport {
    pub ca_id: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl PreflightReport {
    fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `POST /v1/admin/cas/{id}/aws/register`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(value_type = crate::http::openapi::schemas::CertificateMode)]
    pub mode: CertificateMode,
    /// Register the CA as ACTIVE (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub activate: bool,
    /// Allow auto-registration; JITP needs it (default false).
    #[serde(default)]
    pub auto_registration: bool,
    /// `arn:<partition>:iam::<12 digits>:role/<name>`: required with a `simple` or `body`
    /// template.
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::schemas::TemplateSpec>)]
    pub template: Option<TemplateSpec>,
}

fn yes() -> bool {
    true
}

/// How a template body is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attach {
    /// `registrationConfig {templateBody, roleArn}` on the CA.
    #[default]
    Inline,
    /// `CreateProvisioningTemplate` (type JITP), then `registrationConfig {templateName}`.
    Named,
}

/// `PUT /v1/admin/cas/{id}/aws/template`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    #[serde(default)]
    pub role_arn: Option<String>,
    #[schema(value_type = crate::http::openapi::schemas::TemplateSpec)]
    pub template: TemplateSpec,
    #[serde(default)]
    pub attach: Attach,
}

/// `PATCH /v1/admin/cas/{id}/aws`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `active` or `inactive`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub auto_registration: Option<bool>,
}

/// The stored registration beside AWS's live view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrationState {
    pub stored: Option<AwsRegistration>,
    /// AWS's DescribeCACertificate; null when the CA is not registered or AWS no longer
    /// knows it.
    #[schema(value_type = Option<crate::http::openapi::schemas::CaDescription>)]
    pub live: Option<CaDescription>,
    /// Differences between what we set and what AWS reports, in words.
    pub drift: Vec<String>,
}

pub struct Provisioning<'a> {
    pub store: &'a Store,
    pub registry: Option<&'a Arc<dyn IotRegistry>>,
    pub authorities: Authorities<'a>,
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
        Ok(self.authorities.load_by_id(ca_id).await?)
    }

    async fn registration(&self, ca_id: &str) -> Result<AwsRegistration, ProvisioningError> {
        self.store
            .get_aws_registration(ca_id)
            .await?
            .ok_or_else(|| ProvisioningError::NotRegistered(ca_id.to_owned()))
    }

    /// The checks AWS (and JITP) would otherwise fail on, with `template` (or the attached
    /// one) checked against the issuance policy.
    pub async fn preflight(
        &self,
        ca_id: &str,
        template: Option<&ResolvedTemplate>,
    ) -> Result<PreflightReport, ProvisioningError> {
        let record = self.ca_record(ca_id).await?;
        let ca = self.load_ca(ca_id).await?;
        let mut checks = ca_checks(&ca, OffsetDateTime::now_utc());
        let attached;
        let template = match template {
            Some(t) => Some(t),
            None => {
                attached = self.attached_template(ca_id).await?;
                attached.as_ref()
            }
        };
        checks.push(template_check(template, self.policy));
        Ok(PreflightReport {
            ca_id: record.id,
            ok: checks.iter().all(|c| c.ok),
            checks,
        })
    }

    async fn attached_template(
        &self,
        ca_id: &str,
    ) -> Result<Option<ResolvedTemplate>, ProvisioningError> {
        let Some(reg) = self.store.get_aws_registration(ca_id).await? else {
            return Ok(None);
        };
        Ok(match (reg.template_body, reg.template_name) {
            (Some(body), _) => {
                let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                    ProvisioningError::InvalidRequest(format!("stored template: {e}"))
                })?;
                Some(ResolvedTemplate::Body(Box::new(jitp::validate(&value)?)))
            }
            (None, Some(name)) => Some(ResolvedTemplate::Named(name)),
            (None, None) => None,
        })
    }

    /// Registers the CA in AWS IoT. Idempotent: for a CA already registered it reconciles the
    /// stored registration with DescribeCACertificate and returns it.
    pub async fn register(
        &self,
        ca_id: &str,
        req: RegisterRequest,
        actor: Actor<'_>,
    ) -> Result<(AwsRegistration, bool), ProvisioningError> {
        let registry = self.registry()?;
        let record = self.ca_record(ca_id).await?;
        if let Some(existing) = self.store.get_aws_registration(ca_id).await? {
            let reconciled = self.reconcile(existing).await?;
            return Ok((reconciled, true));
        }
        let template = req
            .template
            .as_ref()
            .map(TemplateSpec::resolve)
            .transpose()?;
        let config = registration_config(template.as_ref(), req.role_arn.as_deref())?;
        let report = self.preflight(ca_id, template.as_ref()).await?;
        if !report.ok {
            self.audit("ca.aws.register", ca_id, false, &report.failures(), actor)
                .await?;
            return Err(ProvisioningError::PreflightFailed(report.failures()));
        }
        let ca = self.load_ca(ca_id).await?;
        let verification = match req.mode {
            CertificateMode::Default => {
                let code = match registry.get_registration_code().await {
                    Ok(code) => code,
                    Err(e) => {
                        self.audit("ca.aws.register", ca_id, false, &e.to_string(), actor)
                            .await?;
                        return Err(e.into());
                    }
                };
                Some(
                    ca.verification_certificate(&code, OffsetDateTime::now_utc())
                        .map_err(|e| ProvisioningError::InvalidRequest(e.to_string()))?,
                )
            }
            CertificateMode::SniOnly => None,
        };
        let result = registry
            .register_ca_certificate(RegisterCaRequest {
                ca_certificate_pem: record.certificate_pem.clone(),
                verification_certificate_pem: verification,
                mode: req.mode,
                set_as_active: req.activate,
                allow_auto_registration: req.auto_registration,
                registration_config: config.clone(),
            })
            .await;
        let (certificate_id, certificate_arn) = match result {
            Ok(r) => (r.certificate_id, r.certificate_arn),
            // Registered before (by hand, or our record was lost): adopt what AWS has.
            Err(AwsError::AlreadyExists(_)) => {
                let live = registry
                    .describe_ca_certificate(&record.aws_certificate_id)
                    .await?;
                (live.certificate_id, live.certificate_arn)
            }
            Err(e) => {
                self.audit("ca.aws.register", ca_id, false, &e.to_string(), actor)
                    .await?;
                return Err(e.into());
            }
        };
        let now = Timestamp::now();
        let (template_kind, template_body, template_name, role_arn) = template_columns(&config);
        let registration = AwsRegistration {
            ca_id: ca_id.to_owned(),
            aws_certificate_id: certificate_id,
            certificate_arn,
            mode: mode_name(req.mode).to_owned(),
            status: if req.activate { "ACTIVE" } else { "INACTIVE" }.to_owned(),
            auto_registration: req.auto_registration,
            template_kind,
            template_body,
            template_name,
            role_arn,
            registered_at: now,
            updated_at: now,
        };
        self.store.save_aws_registration(&registration).await?;
        let reconciled = self.reconcile(registration).await?;
        let detail = format!(
            "aws_certificate_id={}; mode={}; status={}; auto_registration={}",
            reconciled.aws_certificate_id,
            reconciled.mode,
            reconciled.status,
            reconciled.auto_registration
        );
        self.audit("ca.aws.register", ca_id, true, &detail, actor)
            .await?;
        // Certificates revoked before the CA was registered must never be activated by JITP.
        // A bounded batch here keeps the answer fast; the background retry does the rest.
        if let (_, Some(e)) = self.push_revocations(Some(ca_id), None, 50).await? {
            tracing::warn!(%ca_id, error = %e, "some revocations are still to be pushed to AWS IoT");
        }
        Ok((reconciled, false))
    }

    /// Updates the stored status and auto-registration from DescribeCACertificate.
    async fn reconcile(
        &self,
        mut stored: AwsRegistration,
    ) -> Result<AwsRegistration, ProvisioningError> {
        let live = self
            .registry()?
            .describe_ca_certificate(&stored.aws_certificate_id)
            .await?;
        let auto = live.auto_registration_status == "ENABLE";
        if live.status != stored.status || auto != stored.auto_registration {
            stored.status = live.status;
            stored.auto_registration = auto;
            stored.updated_at = Timestamp::now();
            self.store.save_aws_registration(&stored).await?;
        }
        Ok(stored)
    }

    /// What we stored beside what AWS reports now, with the drift named.
    pub async fn state(&self, ca_id: &str) -> Result<RegistrationState, ProvisioningError> {
        let registry = self.registry()?;
        self.ca_record(ca_id).await?;
        let Some(stored) = self.store.get_aws_registration(ca_id).await? else {
            return Ok(RegistrationState {
                stored: None,
                live: None,
                drift: Vec::new(),
            });
        };
        let live = match registry
            .describe_ca_certificate(&stored.aws_certificate_id)
            .await
        {
            Ok(live) => Some(live),
            Err(AwsError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let drift = drift(&stored, live.as_ref());
        Ok(RegistrationState {
            stored: Some(stored),
            live,
            drift,
        })
    }

    /// Changes status and/or auto-registration in AWS, then in our record.
    pub async fn change_status(
        &self,
        ca_id: &str,
        change: StatusChange,
        actor: Actor<'_>,
    ) -> Result<AwsRegistration, ProvisioningError> {
        let registry = self.registry()?;
        let mut reg = self.registration(ca_id).await?;
        let active = match change.status.as_deref() {
            None => None,
            Some("active") => Some(true),
            Some("inactive") => Some(false),
            Some(other) => {
                return Err(ProvisioningError::InvalidRequest(format!(
                    "status must be \"active\" or \"inactive\", not {other:?}"
                )));
            }
        };
        if active.is_none() && change.auto_registration.is_none() {
            return Err(ProvisioningError::InvalidRequest(
                "send status and/or auto_registration".into(),
            ));
        }
        let update = CaUpdate {
            active,
            auto_registration: change.auto_registration,
            registration_config: None,
        };
        if let Err(e) = registry
            .update_ca_certificate(&reg.aws_certificate_id, update)
            .await
        {
            self.audit("ca.aws.update", ca_id, false, &e.to_string(), actor)
                .await?;
            return Err(e.into());
        }
        if let Some(a) = active {
            reg.status = if a { "ACTIVE" } else { "INACTIVE" }.to_owned();
        }
        if let Some(auto) = change.auto_registration {
            reg.auto_registration = auto;
        }
        reg.updated_at = Timestamp::now();
        self.store.save_aws_registration(&reg).await?;
        let detail = format!(
            "status={}; auto_registration={}",
            reg.status, reg.auto_registration
        );
        self.audit("ca.aws.update", ca_id, true, &detail, actor)
            .await?;
        Ok(reg)
    }

    /// Deactivates the CA in AWS (AWS deletes only INACTIVE CAs), deletes it, and forgets the
    /// registration. A CA AWS no longer knows is forgotten too.
    pub async fn deregister(&self, ca_id: &str, actor: Actor<'_>) -> Result<(), ProvisioningError> {
        let registry = self.registry()?;
        let reg = self.registration(ca_id).await?;
        let deactivate = CaUpdate {
            active: Some(false),
            ..CaUpdate::default()
        };
        let result = match registry
            .update_ca_certificate(&reg.aws_certificate_id, deactivate)
            .await
        {
            Ok(()) => {
                registry
                    .delete_ca_certificate(&reg.aws_certificate_id)
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) | Err(AwsError::NotFound(_)) => {}
            Err(e) => {
                self.audit("ca.aws.delete", ca_id, false, &e.to_string(), actor)
                    .await?;
                return Err(e.into());
            }
        }
        self.store.delete_aws_registration(ca_id).await?;
        self.audit("ca.aws.delete", ca_id, true, &reg.aws_certificate_id, actor)
            .await?;
        Ok(())
    }

    /// Validates and attaches a JITP template to a registered CA: inline, or as a named JITP
    /// provisioning template.
    pub async fn attach_template(
        &self,
        ca_id: &str,
        req: TemplateRequest,
        actor: Actor<'_>,
    ) -> Result<AwsRegistration, ProvisioningError> {
        let registry = self.registry()?;
        let mut reg = self.registration(ca_id).await?;
        let template = req.template.resolve()?;
        let check = template_check(Some(&template), self.policy);
        if !check.ok {
            self.audit("ca.aws.template", ca_id, false, &check.detail, actor)
                .await?;
            return Err(ProvisioningError::PreflightFailed(format!(
                "{}: {}",
                check.check, check.detail
            )));
        }
        let mut config = registration_config(Some(&template), req.role_arn.as_deref())?
            .expect("a template gives a registration config");
        if req.attach == Attach::Named
            && let (Some(body), Some(role)) =
                (config.template_body.clone(), config.role_arn.clone())
        {
            // Content-addressed name: attaching the same body again reuses the template.
            let name = format!(
                "factory-ca-{}",
                &crate::ca::sha256_hex(body.as_bytes())[..16]
            );
            match registry.create_jitp_template(&name, &body, &role).await {
                Ok(_) | Err(AwsError::AlreadyExists(_)) => {}
                Err(e) => {
                    self.audit("ca.aws.template", ca_id, false, &e.to_string(), actor)
                        .await?;
                    return Err(e.into());
                }
            }
            config = RegistrationConfig {
                template_body: None,
                role_arn: None,
                template_name: Some(name),
            };
        }
        let update = CaUpdate {
            registration_config: Some(config.clone()),
            ..CaUpdate::default()
        };
        if let Err(e) = registry
            .update_ca_certificate(&reg.aws_certificate_id, update)
            .await
        {
            self.audit("ca.aws.template", ca_id, false, &e.to_string(), actor)
                .await?;
            return Err(e.into());
        }
        let (kind, body, name, role) = template_columns(&Some(config));
        reg.template_kind = kind;
        reg.template_body = body;
        reg.template_name = name;
        reg.role_arn = role.or(req.role_arn);
        reg.updated_at = Timestamp::now();
        self.store.save_aws_registration(&reg).await?;
        let detail = format!(
            "attach={}; template={}",
            reg.template_kind.as_deref().unwrap_or("-"),
            reg.template_name.as_deref().unwrap_or("inline body")
        );
        self.audit("ca.aws.template", ca_id, true, &detail, actor)
            .await?;
        Ok(reg)
    }

    /// The `--registration-config` file for `aws iot update-ca-certificate`, from the attached
    /// template.
    pub async fn registration_config_file(
        &self,
        ca_id: &str,
    ) -> Result<serde_json::Value, ProvisioningError> {
        self.ca_record(ca_id).await?;
        let reg = self.registration(ca_id).await?;
        match (&reg.template_body, &reg.template_name, &reg.role_arn) {
            (Some(body), _, Some(role)) => {
                let value: serde_json::Value = serde_json::from_str(body).map_err(|e| {
                    ProvisioningError::InvalidRequest(format!("stored template: {e}"))
                })?;
                Ok(jitp::registration_config(&value, role))
            }
            (None, Some(name), _) => Ok(jitp::registration_config_named(name)),
            _ => Err(ProvisioningError::InvalidRequest(
                "no JITP template is attached to this CA; attach one with PUT .../aws/template"
                    .into(),
            )),
        }
    }

    /// What JITP would create for one device under this CA's template (or `req.template`,
    /// to try one before attaching it): evaluated from a ledger certificate or a CSR.
    pub async fn preview(
        &self,
        ca_id: &str,
        req: PreviewRequest,
    ) -> Result<PreviewAnswer, ProvisioningError> {
        self.ca_record(ca_id).await?;
        let template = match &req.template {
            Some(spec) => spec.resolve()?,
            None => self.attached_template(ca_id).await?.ok_or_else(|| {
                ProvisioningError::InvalidRequest(
                    "no JITP template is attached to this CA; attach one, or send \"template\""
                        .into(),
                )
            })?,
        };
        let ResolvedTemplate::Body(template) = template else {
            return Err(ProvisioningError::InvalidRequest(
                "a named template's body is held by AWS, so it cannot be previewed here; send \
                 the body as \"template\" to preview it"
                    .into(),
            ));
        };
        let device = match (&req.serial, &req.csr) {
            (Some(serial), None) => {
                let record = self
                    .store
                    .get_certificate(&serial.to_ascii_lowercase())
                    .await?
                    .ok_or_else(|| {
                        ProvisioningError::InvalidRequest(format!(
                            "no certificate with serial {serial:?} in the ledger"
                        ))
                    })?;
                subject_of_certificate(&record.certificate_der, record.aws_certificate_id)?
            }
            (None, Some(csr)) => {
                let parsed = crate::ca::csr::parse(csr.as_bytes())
                    .map_err(|e| ProvisioningError::InvalidRequest(format!("csr: {e}")))?;
                let attrs = parsed
                    .subject()
                    .iter()
                    .filter_map(|a| a.value.clone().map(|v| (a.oid.clone(), v)));
                device_subject(attrs, "(computed by AWS from the certificate)".into())
            }
            _ => {
                return Err(ProvisioningError::InvalidRequest(
                    "send exactly one of \"serial\" (a ledger certificate) or \"csr\"".into(),
                ));
            }
        };
        Ok(match jitp::preview(&template, &device) {
            Ok(preview) => PreviewAnswer {
                would_provision: preview.problems.is_empty(),
                preview: Some(preview),
                missing_field: None,
                device,
            },
            Err(missing) => PreviewAnswer {
                would_provision: false,
                preview: None,
                missing_field: Some(missing.0.parameter_name().to_owned()),
                device,
            },
        })
    }

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
                if self
                    .store
                    .record_aws_status(&c.certificate_id, &c.status, seen, now)
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

    async fn audit(
        &self,
        action: &str,
        ca_id: &str,
        success: bool,
        detail: &str,
        actor: Actor<'_>,
    ) -> Result<(), StoreError> {
        self.store
            .append_audit(&AuditEntry {
                actor: actor.name,
                action,
                target: Some(ca_id),
                success,
                detail: Some(detail),
                request_id: actor.request_id,
            })
            .await
    }
}

/// `POST /v1/admin/cas/{id}/aws/template/preview`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A ledger serial; exactly one of `serial` and `csr`.
    #[serde(default)]
    pub serial: Option<String>,
    /// A CSR as PEM; exactly one of `serial` and `csr`.
    #[serde(default)]
    pub csr: Option<String>,
    /// A template to try; without it the attached template is used.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::schemas::TemplateSpec>)]
    pub template: Option<TemplateSpec>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreviewAnswer {
    /// False when a referenced field is missing or AWS would refuse a value.
    pub would_provision: bool,
    /// The thing, attributes, groups and policies JITP would create.
    #[schema(value_type = Option<crate::http::openapi::schemas::Preview>)]
    pub preview: Option<jitp::Preview>,
    /// The first template parameter the certificate lacks (JITP would fail).
    pub missing_field: Option<String>,
    /// The certificate fields JITP would read.
    #[schema(value_type = crate::http::openapi::schemas::DeviceSubject)]
    pub device: jitp::DeviceSubject,
}

fn subject_of_certificate(
    der: &[u8],
    certificate_id: String,
) -> Result<jitp::DeviceSubject, ProvisioningError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        ProvisioningError::InvalidRequest(format!("stored certificate unreadable: {e}"))
    })?;
    let attrs: Vec<(String, String)> = cert
        .subject()
        .iter_attributes()
        .filter_map(|a| Some((a.attr_type().to_id_string(), a.as_str().ok()?.to_owned())))
        .collect();
    Ok(device_subject(attrs.into_iter(), certificate_id))
}

/// The JITP view of a subject: which value each `AWS::IoT::Certificate::*` field would have.
fn device_subject(
    attrs: impl Iterator<Item = (String, String)>,
    certificate_id: String,
) -> jitp::DeviceSubject {
    let mut d = jitp::DeviceSubject {
        certificate_id,
        ..jitp::DeviceSubject::default()
    };
    for (oid, value) in attrs {
        let slot = match SubjectField::ALL.into_iter().find(|f| f.oid() == oid) {
            Some(SubjectField::CommonName) => &mut d.common_name,
            Some(SubjectField::Country) => &mut d.country,
            Some(SubjectField::Organization) => &mut d.organization,
            Some(SubjectField::OrganizationalUnit) => &mut d.organizational_unit,
            Some(SubjectField::DnQualifier) => &mut d.distinguished_name_qualifier,
            Some(SubjectField::StateOrProvince) => &mut d.state_name,
            Some(SubjectField::SerialNumber) => &mut d.serial_number,
            Some(SubjectField::Locality) | None => continue,
        };
        *slot = Some(value);
    }
    d
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
        .map_err(|e| AwsError::Unavailable(e.to_string()))?
        .map(|ca| ca.certificate_pem)
        .ok_or_else(|| AwsError::InvalidRequest(format!("CA {ca_id} is gone from the store")))?;
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

fn mode_name(mode: CertificateMode) -> &'static str {
    match mode {
        CertificateMode::Default => "default",
        CertificateMode::SniOnly => "sni_only",
    }
}

/// The `registrationConfig` for a resolved template; a body needs an IAM role ARN.
fn registration_config(
    template: Option<&ResolvedTemplate>,
    role_arn: Option<&str>,
) -> Result<Option<RegistrationConfig>, ProvisioningError> {
    match template {
        None => Ok(None),
        Some(ResolvedTemplate::Named(name)) => Ok(Some(RegistrationConfig {
            template_body: None,
            role_arn: None,
            template_name: Some(name.clone()),
        })),
        Some(ResolvedTemplate::Body(t)) => {
            let role = role_arn.ok_or_else(|| {
                ProvisioningError::InvalidRequest(
                    "role_arn is required with a template body: the IAM role AWS IoT assumes to \
                     create things (managed policy AWSIoTThingsRegistration)"
                        .into(),
                )
            })?;
            jitp::validate_role_arn(role)?;
            Ok(Some(RegistrationConfig {
                template_body: Some(t.body().to_string()),
                role_arn: Some(role.to_owned()),
                template_name: None,
            }))
        }
    }
}

type TemplateColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn template_columns(config: &Option<RegistrationConfig>) -> TemplateColumns {
    match config {
        Some(RegistrationConfig {
            template_body: Some(body),
            role_arn,
            ..
        }) => (
            Some("inline".into()),
            Some(body.clone()),
            None,
            role_arn.clone(),
        ),
        Some(RegistrationConfig {
            template_name: Some(name),
            ..
        }) => (Some("named".into()), None, Some(name.clone()), None),
        _ => (None, None, None, None),
    }
}

/// The CA checks AWS would otherwise fail on.
fn ca_checks(ca: &CertificateAuthority, now: OffsetDateTime) -> Vec<Check> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let parsed = X509Certificate::from_der(ca.certificate_der())
        .ok()
        .map(|(_, c)| c);
    let is_ca = parsed.as_ref().is_some_and(|c| c.is_ca());
    let key_cert_sign = parsed
        .as_ref()
        .and_then(|c| c.key_usage().ok().flatten())
        .is_some_and(|ku| ku.value.key_cert_sign());
    let valid = now >= ca.not_before() && now < ca.not_after();
    let strong = matches!(
        ca.key_algorithm(),
        "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521"
    ) || ca
        .key_algorithm()
        .strip_prefix("rsa-")
        .and_then(|b| b.parse::<u32>().ok())
        .is_some_and(|bits| bits >= 2048);
    vec![
        Check {
            check: "ca_true",
            ok: is_ca,
            detail: if is_ca {
                "basicConstraints CA:TRUE".into()
            } else {
                "basicConstraints lacks CA:TRUE; AWS answers \"Contents of the CA Certificate certificate are not correct\"".into()
            },
        },
        Check {
            check: "key_cert_sign",
            ok: key_cert_sign,
            detail: if key_cert_sign {
                "keyUsage allows keyCertSign".into()
            } else {
                "keyUsage does not allow keyCertSign".into()
            },
        },
        Check {
            check: "validity",
            ok: valid,
            detail: format!("valid from {} to {}", ca.not_before(), ca.not_after()),
        },
        Check {
            check: "key_strength",
            ok: strong,
            detail: format!(
                "{} (AWS IoT accepts RSA 2048+ and ECDSA P-256/P-384/P-521)",
                ca.key_algorithm()
            ),
        },
    ]
}

/// Every certificate field the template references must be in every certificate the policy
/// approves, or JITP fails for devices without it.
fn template_check(template: Option<&ResolvedTemplate>, policy: &IssuancePolicy) -> Check {
    let fields = match template {
        None => {
            return Check {
                check: "template_fields",
                ok: true,
                detail: "no JITP template attached".into(),
            };
        }
        Some(ResolvedTemplate::Named(name)) => {
            return Check {
                check: "template_fields",
                ok: true,
                detail: format!(
                    "named template {name:?}: its body is in AWS, so its fields cannot be checked here"
                ),
            };
        }
        Some(ResolvedTemplate::Body(t)) => t.referenced_fields(),
    };
    let unguaranteed: Vec<String> = fields
        .iter()
        .filter(|f| **f != CertificateField::Id)
        .filter(|f| {
            f.subject_attribute()
                .and_then(SubjectField::from_short_name)
                .is_none_or(|sf| !policy.guarantees(sf))
        })
        .map(|f| {
            format!(
                "{} ({})",
                f.parameter_name(),
                f.subject_attribute().unwrap_or_default()
            )
        })
        .collect();
    if unguaranteed.is_empty() {
        Check {
            check: "template_fields",
            ok: true,
            detail: "every field the template references is required by the issuance policy".into(),
        }
    } else {
        Check {
            check: "template_fields",
            ok: false,
            detail: format!(
                "the template references {} but the issuance policy lets certificates without \
                 it through; require it (policy.require_country for C, \
                 policy.required_subject_attributes for the others) or drop it from the template",
                unguaranteed.join(", ")
            ),
        }
    }
}

fn drift(stored: &AwsRegistration, live: Option<&CaDescription>) -> Vec<String> {
    let Some(live) = live else {
        return vec!["AWS IoT no longer knows this CA (deleted outside factory-ca)".into()];
    };
    let mut out = Vec::new();
    if live.status != stored.status {
        out.push(format!(
            "status: stored {}, AWS {}",
            stored.status, live.status
        ));
    }
    let live_auto = live.auto_registration_status == "ENABLE";
    if live_auto != stored.auto_registration {
        out.push(format!(
            "auto_registration: stored {}, AWS {}",
            stored.auto_registration, live.auto_registration_status
        ));
    }
    let stored_mode = if stored.mode == "sni_only" {
        "SNI_ONLY"
    } else {
        "DEFAULT"
    };
    if live.certificate_mode != stored_mode {
        out.push(format!(
            "mode: stored {stored_mode}, AWS {}",
            live.certificate_mode
        ));
    }
    let live_body = live
        .registration_config
        .as_ref()
        .and_then(|c| c.template_body.as_deref())
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok());
    let stored_body = stored
        .template_body
        .as_deref()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok());
    let live_name = live
        .registration_config
        .as_ref()
        .and_then(|c| c.template_name.clone());
    if stored.template_kind.as_deref() == Some("inline") && live_body != stored_body {
        out.push(
            "template: the inline template body in AWS differs from the one we attached".into(),
        );
    }
    if stored.template_kind.as_deref() == Some("named") && live_name != stored.template_name {
        out.push(format!(
            "template: stored name {:?}, AWS {:?}",
            stored.template_name, live_name
        ));
    }
    if stored.template_kind.is_none() && (live_body.is_some() || live_name.is_some()) {
        out.push("template: AWS has a template we did not attach".into());
    }
    out
}
