//! Preflight: the checks AWS IoT or JITP would otherwise fail on, run before AWS sees a
//! request (and on their own, from the admin API, without AWS).

use super::outcome::{JitpIntent, jitp_check};
use super::*;
use crate::ca::KeyAlgorithm;

/// One preflight check and its outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `ca_true`, `key_cert_sign`, `validity`, `key_strength`, `template_fields`,
    /// `certificate_mode` or `jitp_ready`.
    pub check: &'static str,
    pub ok: bool,
    /// True for a check whose failure is a warning: it does not make the report fail or stop
    /// a register (`jitp_ready`).
    pub warning: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreflightReport {
    pub ca_id: String,
    /// True when no check failed that would stop a register (warnings do not).
    pub ok: bool,
    pub checks: Vec<Check>,
    /// The failed warning checks, as `check: detail`.
    pub warnings: Vec<String>,
    /// Per configured AWS target: its region and account, the mode the CA is registered in
    /// there, and which mode applies across the targets; empty when AWS is not configured.
    pub targets: Vec<TargetMode>,
}

/// The certificate mode of the CA in one target.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TargetMode {
    pub target: String,
    pub region: String,
    /// The account of the target's role; null: the default credentials' account.
    pub account: Option<String>,
    /// `default` or `sni_only`; null when the CA is not registered there.
    pub registered_mode: Option<CertificateMode>,
    /// Which mode applies here, and why.
    pub detail: String,
}

impl PreflightReport {
    pub(super) fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok && !c.warning)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Provisioning<'_> {
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
        let registration = self.store.get_aws_registration(ca_id).await?;
        checks.push(mode_check(registration.as_ref().map(|r| r.mode)));
        let targets = self.target_modes(ca_id).await?;
        checks.push(jitp_check(
            registration.as_ref().map(JitpIntent::of).as_ref(),
        ));
        Ok(PreflightReport {
            ca_id: record.id,
            ok: checks.iter().all(|c| c.ok || c.warning),
            warnings: checks
                .iter()
                .filter(|c| !c.ok && c.warning)
                .map(|c| format!("{}: {}", c.check, c.detail))
                .collect(),
            checks,
            targets,
        })
    }

    /// DEFAULT against SNI_ONLY across the targets: DEFAULT needs a registration code per
    /// account and lets one account per region hold the CA; SNI_ONLY lets one CA sit in several
    /// accounts of a region.
    async fn target_modes(&self, ca_id: &str) -> Result<Vec<TargetMode>, ProvisioningError> {
        let registrations = self.store.list_ca_aws_registrations(ca_id).await?;
        let mut out = Vec::new();
        for t in self.targets {
            let registered_mode = registrations
                .iter()
                .find(|r| r.target == t.name)
                .map(|r| r.mode);
            // Other targets in the same region whose account differs (or is unknown beside a
            // known one): the same CA in several accounts of one region.
            let shared: Vec<&str> = self
                .targets
                .iter()
                .filter(|o| o.name != t.name && o.region == t.region && o.account != t.account)
                .map(|o| o.name.as_str())
                .collect();
            let default_elsewhere: Vec<&str> = registrations
                .iter()
                .filter(|r| {
                    r.mode == CertificateMode::Default
                        && r.target != t.name
                        && shared.contains(&r.target.as_str())
                })
                .map(|r| r.target.as_str())
                .collect();
            let detail = if shared.is_empty() {
                format!(
                    "the only target in {} for its account: default works (factory-ca asks this                      account for its registration code and signs the verification certificate),                      and so does sni_only",
                    t.region
                )
            } else if !default_elsewhere.is_empty() {
                format!(
                    "{} shares region {} with target(s) {} of another account, where the CA is                      registered as DEFAULT: only one account per region can hold it as DEFAULT,                      so register it here as sni_only",
                    t.name,
                    t.region,
                    default_elsewhere.join(", ")
                )
            } else {
                format!(
                    "{} shares region {} with target(s) {} of another account: register the CA                      as sni_only in each of them (one account per region can hold it as                      DEFAULT; the others must use SNI_ONLY, whose devices send the account's                      endpoint as server name)",
                    t.name,
                    t.region,
                    shared.join(", ")
                )
            };
            out.push(TargetMode {
                target: t.name.clone(),
                region: t.region.clone(),
                account: t.account.clone(),
                registered_mode,
                detail,
            });
        }
        Ok(out)
    }

    pub(super) async fn attached_template(
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
    let strong = match ca.key_algorithm() {
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::EcdsaP521 => true,
        KeyAlgorithm::Rsa { bits } => bits >= 2048,
    };
    vec![
        Check {
            check: "ca_true",
            ok: is_ca,
            warning: false,
            detail: if is_ca {
                "basicConstraints CA:TRUE".into()
            } else {
                "basicConstraints lacks CA:TRUE; AWS answers \"Contents of the CA Certificate certificate are not correct\"".into()
            },
        },
        Check {
            check: "key_cert_sign",
            ok: key_cert_sign,
            warning: false,
            detail: if key_cert_sign {
                "keyUsage allows keyCertSign".into()
            } else {
                "keyUsage does not allow keyCertSign".into()
            },
        },
        Check {
            check: "validity",
            ok: valid,
            warning: false,
            detail: format!("valid from {} to {}", ca.not_before(), ca.not_after()),
        },
        Check {
            check: "key_strength",
            ok: strong,
            warning: false,
            detail: format!(
                "{} (AWS IoT accepts RSA 2048+ and ECDSA P-256/P-384/P-521)",
                ca.key_algorithm()
            ),
        },
    ]
}

/// Every certificate field the template references must be in every certificate the policy
/// approves, or JITP fails for devices without it.
pub(super) fn template_check(
    template: Option<&ResolvedTemplate>,
    policy: &IssuancePolicy,
) -> Check {
    let fields = match template {
        None => {
            return Check {
                check: "template_fields",
                ok: true,
                warning: false,
                detail: "no JITP template attached".into(),
            };
        }
        Some(ResolvedTemplate::Named(name)) => {
            return Check {
                check: "template_fields",
                ok: true,
                warning: false,
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
        .filter(|f| f.subject_field().is_none_or(|sf| !policy.guarantees(sf)))
        .map(|f| {
            format!(
                "{} ({})",
                f.parameter_name(),
                f.subject_field()
                    .map(SubjectField::short_name)
                    .unwrap_or_default()
            )
        })
        .collect();
    if unguaranteed.is_empty() {
        Check {
            check: "template_fields",
            ok: true,
            warning: false,
            detail: "every field the template references is required by the issuance policy".into(),
        }
    } else {
        Check {
            check: "template_fields",
            ok: false,
            warning: false,
            detail: format!(
                "the template references {} but the issuance policy lets certificates without \
                 it through; require it (policy.require_country for C, \
                 policy.required_subject_attributes for the others) or drop it from the template",
                unguaranteed.join(", ")
            ),
        }
    }
}

/// `certificate_mode`: which registration mode fits, for one account or several. Always passes;
/// the detail explains.
fn mode_check(registered: Option<CertificateMode>) -> Check {
    let detail = match registered {
        Some(CertificateMode::Default) => {
            "registered as DEFAULT: this account's registration code proved the CA key. AWS \
             IoT lets one account per region hold a CA in DEFAULT mode; to use the CA in other \
             accounts of this region, register it there as sni_only"
        }
        Some(CertificateMode::SniOnly) => {
            "registered as SNI_ONLY: no registration code was needed, so other accounts of this \
             region can register the same CA too; devices must send the account's IoT endpoint \
             as server name (SNI) in the TLS handshake"
        }
        None => {
            "default: factory-ca signs a verification certificate with the account's \
             registration code, and only one account per region can hold the CA this way. \
             sni_only: no registration code, and several accounts of a region can register \
             the same CA (staging and production, say); devices must send the account's IoT \
             endpoint as server name (SNI). Register in each account as sni_only when the CA \
             serves more than one account of a region"
        }
    };
    Check {
        check: "certificate_mode",
        ok: true,
        warning: false,
        detail: detail.to_owned(),
    }
}
