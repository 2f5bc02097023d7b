//! Registration of a CA in AWS IoT (with the verification certificate), reconciliation with
//! DescribeCACertificate and the drift between the two, status changes, and deregistration.

use super::outcome::{self, RegistrationOutcome};
use super::*;
use crate::aws::CaStatus;
use crate::store::TemplateKind;

/// `POST /v1/admin/cas/{id}/aws/register`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
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
    pub template: Option<TemplateSpec>,
    /// The AWS targets to register in (`[aws.targets.<name>]`); default: every configured
    /// target. A target the CA is already registered in is refreshed, not registered again.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// `PATCH /v1/admin/cas/{id}/aws`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `active` or `inactive`, in any case (`ACTIVE`, as the API shows it, too).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub auto_registration: Option<bool>,
    /// The AWS targets to change; default: every target the CA is registered in.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
}

/// The stored registration beside AWS's live view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrationState {
    pub stored: Option<AwsRegistration>,
    /// AWS's DescribeCACertificate; null when the CA is not registered or AWS no longer
    /// knows it.
    pub live: Option<CaDescription>,
    /// Differences between what we set and what AWS reports, in words.
    pub drift: Vec<String>,
}

impl Provisioning<'_> {
    /// Registers the CA in one target. Idempotent: for a CA already registered there it
    /// reconciles the stored registration with DescribeCACertificate and returns it (true).
    /// `config` is the checked registration config of the request.
    pub(super) async fn register_in(
        &self,
        target: &AwsTargetRegistry,
        record: &CaRecord,
        req: &RegisterRequest,
        config: &Option<RegistrationConfig>,
        actor: Actor<'_>,
    ) -> Result<(RegistrationOutcome, bool), ProvisioningError> {
        let registry = target.registry.as_ref();
        let ca_id = record.id.as_str();
        if let Some(existing) = self
            .store
            .get_aws_target_registration(ca_id, &target.name)
            .await?
        {
            let (reconciled, _) = self.reconcile(registry, existing).await?;
            let note = "the CA was already registered, so the request body was ignored; change \
                        the registration with PATCH .../aws and PUT .../aws/template"
                .to_owned();
            return Ok((
                RegistrationOutcome::new(reconciled, Vec::new(), vec![note]),
                true,
            ));
        }
        let fail = |e: &dyn std::fmt::Display| self.labelled(&target.name, &e.to_string());
        let verification = match req.mode {
            CertificateMode::Default => {
                // Each account has its own registration code.
                let code = match registry.get_registration_code().await {
                    Ok(code) => code,
                    Err(e) => {
                        self.audit("ca.aws.register", ca_id, false, &fail(&e), actor)
                            .await?;
                        return Err(e.into());
                    }
                };
                let ca = self.load_ca(ca_id).await?;
                let now = OffsetDateTime::now_utc();
                // A key in a token or key service signs with a round trip: off the reactor.
                let signed = if ca.signs_remotely() {
                    crate::keys::off_reactor(move || ca.verification_certificate(&code, now)).await
                } else {
                    ca.verification_certificate(&code, now)
                };
                Some(signed.map_err(|e| match e {
                    // 503 signer_unavailable: a later try may succeed.
                    crate::ca::CaError::SignerUnavailable(m) => {
                        ProvisioningError::Authority(CaAdminError::SignerUnavailable(m))
                    }
                    e => ProvisioningError::InvalidRequest(e.to_string()),
                })?)
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
                self.audit("ca.aws.register", ca_id, false, &fail(&e), actor)
                    .await?;
                return Err(e.into());
            }
        };
        let now = Timestamp::now();
        let (template_kind, template_body, template_name, role_arn) = template_columns(config);
        let registration = AwsRegistration {
            ca_id: ca_id.to_owned(),
            target: target.name.clone(),
            aws_certificate_id: certificate_id,
            certificate_arn,
            mode: req.mode,
            status: CaStatus::from_active(req.activate),
            auto_registration: req.auto_registration,
            template_kind,
            template_body,
            template_name,
            role_arn,
            registered_at: now,
            updated_at: now,
        };
        self.store.save_aws_registration(&registration).await?;
        // Revocations the CA's other targets already have are owed to this one too.
        self.store
            .repend_revocations_for_target(ca_id, &target.name, now)
            .await?;
        let (reconciled, live) = self.reconcile(registry, registration).await?;
        let fields = vec![
            outcome::field(
                "status",
                CaStatus::from_active(req.activate).as_aws().into(),
                Some(live.status.clone().into()),
            ),
            outcome::field(
                "auto_registration",
                req.auto_registration.into(),
                Some((live.auto_registration_status == "ENABLE").into()),
            ),
            outcome::field(
                "mode",
                req.mode.as_aws().into(),
                Some(live.certificate_mode.clone().into()),
            ),
            outcome::field(
                "template",
                outcome::template_label(config.as_ref()).into(),
                Some(outcome::template_label(live.registration_config.as_ref()).into()),
            ),
        ];
        let detail = format!(
            "aws_certificate_id={}; mode={}; status={}; auto_registration={}",
            reconciled.aws_certificate_id,
            reconciled.mode,
            reconciled.status,
            reconciled.auto_registration
        );
        self.audit(
            "ca.aws.register",
            ca_id,
            true,
            &self.labelled(&target.name, &detail),
            actor,
        )
        .await?;
        // Certificates revoked before the CA was registered must never be activated by JITP.
        // A bounded batch here keeps the answer fast; the background retry does the rest.
        if let (_, Some(e)) = self
            .push_revocations_to(target, Some(ca_id), None, 50)
            .await?
        {
            tracing::warn!(%ca_id, target = %target.name, error = %e, "some revocations are still to be pushed to AWS IoT");
        }
        Ok((
            RegistrationOutcome::new(reconciled, fields, Vec::new()),
            false,
        ))
    }

    /// Updates the stored status and auto-registration from DescribeCACertificate, and returns
    /// AWS's description too.
    pub(super) async fn reconcile(
        &self,
        registry: &dyn IotRegistry,
        mut stored: AwsRegistration,
    ) -> Result<(AwsRegistration, CaDescription), ProvisioningError> {
        let live = registry
            .describe_ca_certificate(&stored.aws_certificate_id)
            .await?;
        let auto = live.auto_registration_status == "ENABLE";
        let status = CaStatus::from_aws(&live.status).ok_or_else(|| {
            ProvisioningError::InvalidRequest(format!(
                "AWS IoT reports CA status {:?}, which factory-ca does not know",
                live.status
            ))
        })?;
        if status != stored.status || auto != stored.auto_registration {
            stored.status = status;
            stored.auto_registration = auto;
            stored.updated_at = Timestamp::now();
            self.store.save_aws_registration(&stored).await?;
        }
        Ok((stored, live))
    }

    /// What we stored in one target beside what AWS reports there now, with the drift named.
    pub(super) async fn state_in(
        &self,
        target: &AwsTargetRegistry,
        ca_id: &str,
    ) -> Result<RegistrationState, ProvisioningError> {
        let Some(stored) = self
            .store
            .get_aws_target_registration(ca_id, &target.name)
            .await?
        else {
            return Ok(RegistrationState {
                stored: None,
                live: None,
                drift: Vec::new(),
            });
        };
        let live = match target
            .registry
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

    /// Changes status and/or auto-registration in one target, then reads AWS's view back: the
    /// answer states each requested setting beside what AWS reports, and our record keeps
    /// AWS's view.
    pub(super) async fn change_status_in(
        &self,
        target: &AwsTargetRegistry,
        mut reg: AwsRegistration,
        active: Option<bool>,
        auto_registration: Option<bool>,
        actor: Actor<'_>,
    ) -> Result<RegistrationOutcome, ProvisioningError> {
        let registry = target.registry.as_ref();
        let ca_id = reg.ca_id.clone();
        let ca_id = ca_id.as_str();
        let update = CaUpdate {
            active,
            auto_registration,
            registration_config: None,
        };
        if let Err(e) = registry
            .update_ca_certificate(&reg.aws_certificate_id, update)
            .await
        {
            let detail = self.labelled(&target.name, &e.to_string());
            self.audit("ca.aws.update", ca_id, false, &detail, actor)
                .await?;
            return Err(e.into());
        }
        if let Some(a) = active {
            reg.status = CaStatus::from_active(a);
        }
        if let Some(auto) = auto_registration {
            reg.auto_registration = auto;
        }
        reg.updated_at = Timestamp::now();
        self.store.save_aws_registration(&reg).await?;
        // What AWS has now; a failure to ask leaves our record as requested and says so.
        let (reg, live, warnings) = match self.reconcile(registry, reg.clone()).await {
            Ok((reg, live)) => (reg, Some(live), Vec::new()),
            Err(e) => {
                let warning = format!("AWS IoT could not be asked for the result: {e}");
                (reg, None, vec![warning])
            }
        };
        let mut fields = Vec::new();
        if let Some(a) = active {
            fields.push(outcome::field(
                "status",
                CaStatus::from_active(a).as_aws().into(),
                live.as_ref().map(|l| l.status.clone().into()),
            ));
        }
        if let Some(auto) = auto_registration {
            fields.push(outcome::field(
                "auto_registration",
                auto.into(),
                live.as_ref()
                    .map(|l| (l.auto_registration_status == "ENABLE").into()),
            ));
        }
        let detail = format!(
            "status={}; auto_registration={}",
            reg.status, reg.auto_registration
        );
        self.audit(
            "ca.aws.update",
            ca_id,
            true,
            &self.labelled(&target.name, &detail),
            actor,
        )
        .await?;
        Ok(RegistrationOutcome::new(reg, fields, warnings))
    }

    /// Deactivates the CA in one target (AWS deletes only INACTIVE CAs), deletes it there, and
    /// forgets that registration. A CA AWS no longer knows is forgotten too.
    pub(super) async fn deregister_in(
        &self,
        target: &AwsTargetRegistry,
        reg: AwsRegistration,
        actor: Actor<'_>,
    ) -> Result<(), ProvisioningError> {
        let registry = target.registry.as_ref();
        let ca_id = reg.ca_id.as_str();
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
                let detail = self.labelled(&target.name, &e.to_string());
                self.audit("ca.aws.delete", ca_id, false, &detail, actor)
                    .await?;
                return Err(e.into());
            }
        }
        self.store
            .delete_aws_registration(ca_id, &target.name)
            .await?;
        let detail = self.labelled(&target.name, &reg.aws_certificate_id);
        self.audit("ca.aws.delete", ca_id, true, &detail, actor)
            .await?;
        Ok(())
    }
}

/// `active` from a StatusChange's `status`; an error when neither setting is given.
pub(super) fn parse_status_change(
    change: &StatusChange,
) -> Result<Option<bool>, ProvisioningError> {
    // The API shows AWS's spelling (`ACTIVE`); ours (`active`) is accepted too.
    let active = match change.status.as_deref() {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("active") => Some(true),
        Some(s) if s.eq_ignore_ascii_case("inactive") => Some(false),
        Some(other) => {
            return Err(ProvisioningError::InvalidRequest(format!(
                "status must be \"active\" or \"inactive\" (any case), not {other:?}"
            )));
        }
    };
    if active.is_none() && change.auto_registration.is_none() {
        return Err(ProvisioningError::InvalidRequest(
            "send status and/or auto_registration".into(),
        ));
    }
    Ok(active)
}

/// The `registrationConfig` for a resolved template; a body needs an IAM role ARN.
pub(super) fn registration_config(
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
    Option<TemplateKind>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(super) fn template_columns(config: &Option<RegistrationConfig>) -> TemplateColumns {
    match config {
        Some(RegistrationConfig {
            template_body: Some(body),
            role_arn,
            ..
        }) => (
            Some(TemplateKind::Inline),
            Some(body.clone()),
            None,
            role_arn.clone(),
        ),
        Some(RegistrationConfig {
            template_name: Some(name),
            ..
        }) => (Some(TemplateKind::Named), None, Some(name.clone()), None),
        _ => (None, None, None, None),
    }
}

fn drift(stored: &AwsRegistration, live: Option<&CaDescription>) -> Vec<String> {
    let Some(live) = live else {
        return vec!["AWS IoT no longer knows this CA (deleted outside factory-ca)".into()];
    };
    let mut out = Vec::new();
    if live.status != stored.status.as_aws() {
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
    let stored_mode = stored.mode.as_aws();
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
    if stored.template_kind == Some(TemplateKind::Inline) && live_body != stored_body {
        out.push(
            "template: the inline template body in AWS differs from the one we attached".into(),
        );
    }
    if stored.template_kind == Some(TemplateKind::Named) && live_name != stored.template_name {
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
