//! What a register or PATCH asked AWS IoT for beside what AWS reports afterwards, field by field,
//! and whether the result is ready for JITP. AWS (or an emulator) can accept a call and keep a
//! setting unchanged; the answer names every such difference instead of echoing the request.

use super::*;
use crate::aws::CaStatus;

/// One setting of a register or PATCH: what was asked, and what DescribeCACertificate reports
/// after the call.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldOutcome {
    /// `status`, `auto_registration`, `mode` or `template`.
    pub field: &'static str,
    /// What the request asked for (`status` in AWS's spelling, `ACTIVE` or `INACTIVE`).
    #[schema(value_type = Object)]
    pub requested: serde_json::Value,
    /// What AWS reports after the call; null when AWS could not be asked.
    #[schema(value_type = Object)]
    pub actual: serde_json::Value,
    /// Whether AWS has what was asked.
    pub matches: bool,
}

/// The answer of register and PATCH: the stored registration (AWS's view after the call), each
/// requested setting beside AWS's, the differences in words, and JITP-readiness warnings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrationOutcome {
    #[serde(flatten)]
    pub registration: AwsRegistration,
    /// Each setting the request asked for, beside what AWS reports after the call.
    pub requested_vs_actual: Vec<FieldOutcome>,
    /// Each setting AWS does not have as asked, in words, e.g. `auto_registration: requested
    /// true, AWS says false`. Empty when AWS did what was asked.
    pub differences: Vec<String>,
    /// What stops JITP from provisioning devices under this registration (see the preflight's
    /// `jitp_ready` check), and anything else worth knowing about the answer.
    pub warnings: Vec<String>,
}

impl RegistrationOutcome {
    pub(super) fn new(
        registration: AwsRegistration,
        fields: Vec<FieldOutcome>,
        mut warnings: Vec<String>,
    ) -> Self {
        let differences = fields
            .iter()
            .filter(|f| !f.matches)
            .map(|f| {
                if f.actual.is_null() {
                    format!(
                        "{}: requested {}, AWS could not be asked afterwards",
                        f.field, f.requested
                    )
                } else {
                    format!(
                        "{}: requested {}, AWS says {}",
                        f.field, f.requested, f.actual
                    )
                }
            })
            .collect();
        let jitp = jitp_check(Some(&JitpIntent::of(&registration)));
        if !jitp.ok {
            warnings.push(format!("{}: {}", jitp.check, jitp.detail));
        }
        Self {
            registration,
            requested_vs_actual: fields,
            differences,
            warnings,
        }
    }
}

/// Compares one requested setting with AWS's view (`None`: AWS could not be asked).
pub(super) fn field(
    name: &'static str,
    requested: serde_json::Value,
    actual: Option<serde_json::Value>,
) -> FieldOutcome {
    let actual = actual.unwrap_or(serde_json::Value::Null);
    FieldOutcome {
        field: name,
        matches: requested == actual,
        requested,
        actual,
    }
}

/// The template a `registrationConfig` names: `none`, `inline`, or `named:<name>`.
pub(super) fn template_label(config: Option<&RegistrationConfig>) -> String {
    match config {
        Some(RegistrationConfig {
            template_name: Some(name),
            ..
        }) => format!("named:{name}"),
        Some(RegistrationConfig {
            template_body: Some(_),
            ..
        }) => "inline".into(),
        _ => "none".into(),
    }
}

/// What JITP needs of a registration: the CA ACTIVE, auto-registration on, and a template.
pub(super) struct JitpIntent {
    pub active: bool,
    pub auto_registration: bool,
    pub template: bool,
}

impl JitpIntent {
    pub(super) fn of(reg: &AwsRegistration) -> Self {
        Self {
            active: reg.status == CaStatus::Active,
            auto_registration: reg.auto_registration,
            template: reg.template_kind.is_some(),
        }
    }
}

/// The `jitp_ready` check: would a device signed by this CA become a thing on its first
/// connection? A warning, not a refusal: registering first and attaching the template next is
/// a normal order, and auto-registration without a template is AWS's just-in-time registration
/// (JITR), where the account's own handler activates certificates.
pub(super) fn jitp_check(intent: Option<&JitpIntent>) -> Check {
    let Some(intent) = intent else {
        return Check {
            check: "jitp_ready",
            ok: false,
            warning: true,
            detail: "the CA is not registered in AWS IoT yet; JITP needs it registered ACTIVE \
                     with auto_registration: true and a template"
                .into(),
        };
    };
    let mut missing = Vec::new();
    if !intent.active {
        missing.push(
            "the CA is INACTIVE, so AWS IoT refuses devices it signed; set status \"active\"",
        );
    }
    if !intent.auto_registration {
        missing.push(
            "auto_registration is off, so AWS IoT refuses a device's first connection; set \
             auto_registration: true",
        );
    }
    if intent.auto_registration && !intent.template {
        missing.push(
            "auto_registration is on but no JITP template is attached: devices that connect \
             are registered as PENDING_ACTIVATION and never become things (unless your own \
             just-in-time registration handler activates them); attach one with PUT \
             .../aws/template",
        );
    } else if !intent.template {
        missing.push("no JITP template is attached; attach one with PUT .../aws/template");
    }
    if missing.is_empty() {
        Check {
            check: "jitp_ready",
            ok: true,
            warning: true,
            detail: "the CA is ACTIVE with auto-registration on and a template attached: a \
                     device becomes a thing on its first connection"
                .into(),
        }
    } else {
        Check {
            check: "jitp_ready",
            ok: false,
            warning: true,
            detail: missing.join("; "),
        }
    }
}
