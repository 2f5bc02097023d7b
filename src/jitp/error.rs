//! [`TemplateError`]: why a template, role ARN or template name is refused, in words that name
//! the place and say what to change.

use super::*;

/// Why a template, role ARN or template name is refused. Each message names the place and says
/// what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `value` is already quoted and shortened for display.
    #[error("{path} is {value}, which is not {rule}")]
    InvalidValue {
        path: String,
        value: String,
        rule: Rule,
    },
    #[error("{}", too_many_attributes(path, *count, *has_thing_type))]
    TooManyAttributes {
        path: String,
        count: usize,
        has_thing_type: bool,
    },
    #[error("{path} lists thing group {name} twice; list each group once")]
    DuplicateThingGroup { path: String, name: String },
    #[error("a JITP template must be a JSON object with Parameters and Resources, not {found}")]
    NotAnObject { found: &'static str },
    #[error(
        "top-level key {key} is not part of a JITP template; keep only Parameters and Resources \
         (Mappings and DeviceConfiguration belong to fleet provisioning templates)"
    )]
    UnknownSection { key: String },
    #[error("the template has no {section} object; add \"{section}\": {{ ... }}")]
    MissingSection { section: &'static str },
    #[error("Parameters declares {name}, which JITP does not supply; use one of {PARAMETER_LIST}")]
    UnknownParameter { name: String },
    #[error(
        "Parameters.{name} must be {{\"Type\": \"String\"}}; JITP supplies every certificate \
         field as a string"
    )]
    ParameterNotString { name: String },
    #[error(
        "Parameters.{name} has a Default; JITP fails provisioning when the certificate lacks a \
         declared field, so remove \"Default\" and make the issuance policy require the field"
    )]
    ParameterDefault { name: String },
    #[error("Parameters.{name} has key {key}; a JITP parameter takes only \"Type\": \"String\"")]
    ParameterUnknownKey { name: String, key: String },
    #[error(
        "Parameters declares {name} but no resource uses it; JITP still fails provisioning for a \
         device whose certificate lacks it, so remove it from Parameters"
    )]
    UnusedParameter { name: &'static str },
    #[error(
        "{path} refers to {name}, which Parameters does not declare; add \"{name}\": \
         {{\"Type\": \"String\"}} to Parameters"
    )]
    UndeclaredParameter { path: String, name: &'static str },
    #[error(
        "{path} refers to the resource {name}; a JITP template can only Ref the \
         AWS::IoT::Certificate::* parameters"
    )]
    RefToResource { path: String, name: String },
    #[error("{path} refers to {name}, which JITP does not supply; use one of {PARAMETER_LIST}")]
    UnknownRef { path: String, name: String },
    #[error("{path}: a Ref must be {{\"Ref\": \"<parameter name>\"}} with no other keys")]
    MalformedRef { path: String },
    #[error(
        "{path} uses {function}; factory-ca accepts only Ref and Fn::Join in JITP templates, so \
         write the value with those"
    )]
    UnsupportedFunction { path: String, function: String },
    #[error("{path}: Fn::Join must be [\"<delimiter>\", [<string, Ref or Fn::Join>, ...]]")]
    MalformedJoin { path: String },
    #[error("{path} must be a string, a Ref or an Fn::Join, not {found}")]
    NotAString { path: String, found: &'static str },
    #[error("{path} must be a JSON object, not {found}")]
    NotAnObjectAt { path: String, found: &'static str },
    #[error("{path} must be a JSON array, not {found}")]
    NotAnArray { path: String, found: &'static str },
    #[error("{path} has no {key}; add it")]
    MissingKey { path: String, key: &'static str },
    #[error(
        "{path}.Type is {found}; a JITP template may only declare AWS::IoT::Thing, \
         AWS::IoT::Certificate and AWS::IoT::Policy resources"
    )]
    UnsupportedResourceType { path: String, found: String },
    #[error("{path}.{key} is not allowed: {allowed}")]
    UnknownKey {
        path: String,
        key: String,
        allowed: &'static str,
    },
    #[error(
        "the template declares {count} AWS::IoT::Thing resources; declare exactly one, named \
         from the certificate (ThingName {{\"Ref\": \"AWS::IoT::Certificate::CommonName\"}})"
    )]
    ThingCount { count: usize },
    #[error(
        "the template declares {count} AWS::IoT::Certificate resources; declare exactly one, with \
         CertificateId {{\"Ref\": \"AWS::IoT::Certificate::Id\"}}"
    )]
    CertificateCount { count: usize },
    #[error(
        "{path} must be exactly {{\"Ref\": \"AWS::IoT::Certificate::Id\"}}: JITP registers the \
         certificate the device connected with"
    )]
    CertificateIdNotRef { path: String },
    #[error(
        "{path} is {found}; use \"ACTIVE\" (or \"INACTIVE\", which keeps devices from connecting)"
    )]
    InvalidCertificateStatus { path: String, found: String },
    #[error(
        "{path} is a constant, so every device would become the same thing; derive it from the \
         certificate, e.g. {{\"Ref\": \"AWS::IoT::Certificate::CommonName\"}}"
    )]
    ConstantThingName { path: String },
    #[error(
        "{path} must have exactly one of PolicyName (an existing policy) and PolicyDocument (a \
         new one)"
    )]
    PolicyNameXorDocument { path: String },
    #[error("{path} must be a policy document: a JSON object serialized as a string")]
    InvalidPolicyDocument { path: String },
    #[error("{path} is {found}; use one of {allowed}")]
    InvalidOverride {
        path: String,
        found: String,
        allowed: &'static str,
    },
    #[error(
        "the template is {len} characters as JSON, but AWS accepts a templateBody of at most \
         10240; remove attributes or groups, or shorten policy documents"
    )]
    TooLarge { len: usize },
    #[error(
        "roleArn {arn} is not an IAM role ARN: {reason}; expected \
         arn:aws:iam::<12-digit account>:role/<name>"
    )]
    InvalidRoleArn { arn: String, reason: &'static str },
}

fn too_many_attributes(path: &str, count: usize, has_thing_type: bool) -> String {
    if has_thing_type {
        format!(
            "{path} has {count} attributes, but a thing may have at most {MAX_ATTRIBUTES_TYPED}; \
             remove some"
        )
    } else {
        format!(
            "{path} has {count} attributes, but a thing without a thing type may have at most \
             {MAX_ATTRIBUTES_UNTYPED}; set a thing type (up to {MAX_ATTRIBUTES_TYPED}) or remove \
             attributes"
        )
    }
}

/// The certificate lacks a field the template reads, so JITP would fail to provision the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", missing_field_message(*.0))]
pub struct MissingField(pub CertificateField);

fn missing_field_message(field: CertificateField) -> String {
    match field.subject_field().map(|f| f.short_name()) {
        Some(attr) => format!(
            "the template uses {field}, but the certificate's subject has no {attr} attribute, so \
             JITP would fail to provision the device; put {attr} in the CSR or remove the field \
             from the template"
        ),
        None => format!("the template uses {field}, but no certificate ID was given"),
    }
}

/// A value quoted as JSON and cut to a readable length, for error messages.
pub(super) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
