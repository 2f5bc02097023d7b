//! The JITP template of a registered CA: attach it (inline or as a named template), write the
//! `--registration-config` file, and preview what JITP would create for one device.

use super::preflight::template_check;
use super::register::{registration_config, template_columns};
use super::*;
use crate::store::TextValue;

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
    pub template: TemplateSpec,
    #[serde(default)]
    pub attach: Attach,
    /// The AWS targets to attach it in; default: every target the CA is registered in.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
}

impl Provisioning<'_> {
    /// Validates the template of `req` against the policy: the registration config to attach.
    pub(super) async fn check_template(
        &self,
        ca_id: &str,
        req: &TemplateRequest,
        actor: Actor<'_>,
    ) -> Result<RegistrationConfig, ProvisioningError> {
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
        Ok(
            registration_config(Some(&template), req.role_arn.as_deref())?
                .expect("a template gives a registration config"),
        )
    }

    /// Attaches a checked template in one target: inline, or as a named JITP provisioning
    /// template (created in the target's account). True when AWS was changed; a target whose
    /// stored registration has this template already is left alone (a retry after a partial
    /// failure does only the targets that are missing it).
    pub(super) async fn attach_template_in(
        &self,
        target: &AwsTargetRegistry,
        mut reg: AwsRegistration,
        checked: &RegistrationConfig,
        req: &TemplateRequest,
        actor: Actor<'_>,
    ) -> Result<(AwsRegistration, bool), ProvisioningError> {
        let registry = target.registry.as_ref();
        let ca_id = reg.ca_id.clone();
        let ca_id = ca_id.as_str();
        let mut config = checked.clone();
        if req.attach == Attach::Named
            && let (Some(body), Some(role)) =
                (config.template_body.clone(), config.role_arn.clone())
        {
            // Content-addressed name: attaching the same body again reuses the template.
            let name = format!(
                "factory-ca-{}",
                &crate::ca::sha256_hex(body.as_bytes())[..16]
            );
            if reg.template_name.as_deref() == Some(name.as_str()) && self.targets.len() > 1 {
                return Ok((reg, false));
            }
            match registry.create_jitp_template(&name, &body, &role).await {
                Ok(_) | Err(AwsError::AlreadyExists(_)) => {}
                Err(e) => {
                    let detail = self.labelled(&target.name, &e.to_string());
                    self.audit("ca.aws.template", ca_id, false, &detail, actor)
                        .await?;
                    return Err(e.into());
                }
            }
            config = RegistrationConfig {
                template_body: None,
                role_arn: None,
                template_name: Some(name),
            };
        } else if self.targets.len() > 1
            && reg.template_body.is_some()
            && reg.template_body == config.template_body
            && reg.role_arn == config.role_arn
        {
            return Ok((reg, false));
        }
        let update = CaUpdate {
            registration_config: Some(config.clone()),
            ..CaUpdate::default()
        };
        if let Err(e) = registry
            .update_ca_certificate(&reg.aws_certificate_id, update)
            .await
        {
            let detail = self.labelled(&target.name, &e.to_string());
            self.audit("ca.aws.template", ca_id, false, &detail, actor)
                .await?;
            return Err(e.into());
        }
        let (kind, body, name, role) = template_columns(&Some(config));
        reg.template_kind = kind;
        reg.template_body = body;
        reg.template_name = name;
        reg.role_arn = role.or(req.role_arn.clone());
        reg.updated_at = Timestamp::now();
        self.store.save_aws_registration(&reg).await?;
        let detail = format!(
            "attach={}; template={}",
            reg.template_kind.map_or("-", |k| k.name()),
            reg.template_name.as_deref().unwrap_or("inline body")
        );
        self.audit(
            "ca.aws.template",
            ca_id,
            true,
            &self.labelled(&target.name, &detail),
            actor,
        )
        .await?;
        Ok((reg, true))
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
                subject_of_certificate(&record.certificate_der, Some(record.aws_certificate_id))?
            }
            (None, Some(csr)) => {
                let parsed = crate::ca::csr::parse(csr.as_bytes())
                    .map_err(|e| ProvisioningError::InvalidRequest(format!("csr: {e}")))?;
                let attrs = parsed
                    .subject()
                    .iter()
                    .filter_map(|a| a.value.clone().map(|v| (a.oid.clone(), v)));
                // No certificate yet, so no certificate ID: null, not a sentence.
                device_subject(attrs, None)
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
    pub template: Option<TemplateSpec>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreviewAnswer {
    /// False when a referenced field is missing or AWS would refuse a value.
    pub would_provision: bool,
    /// The thing, attributes, groups and policies JITP would create.
    pub preview: Option<jitp::Preview>,
    /// The first template parameter the certificate lacks (JITP would fail).
    pub missing_field: Option<String>,
    /// The certificate fields JITP would read.
    pub device: jitp::DeviceSubject,
}

fn subject_of_certificate(
    der: &[u8],
    certificate_id: Option<String>,
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
    certificate_id: Option<String>,
) -> jitp::DeviceSubject {
    let mut d = jitp::DeviceSubject {
        certificate_id,
        ..jitp::DeviceSubject::default()
    };
    for (oid, value) in attrs {
        if let Some(field) = SubjectField::from_oid(&oid) {
            d.set(field, value);
        }
    }
    d
}
