//! JITP provisioning templates: the `registrationConfig` factory-ca attaches to a CA in AWS IoT.
//!
//! A template request ([`TemplateSpec`]) is a raw template body, a "simple" description that
//! [`build_simple`] turns into a body, or the name of a JITP template that already exists in AWS.
//! Every body we send goes through [`validate`], which holds it to what JITP can evaluate
//! (AWS IoT developer guide, "Just-in-time provisioning" and "Provisioning templates"):
//!
//! - JITP supplies only the eight `AWS::IoT::Certificate::*` parameters ([`CertificateField`]),
//!   taken from the subject of the connecting certificate plus the certificate ID AWS computes.
//!   So `Parameters` may declare only those, each `{"Type": "String"}`.
//! - Provisioning fails when the certificate lacks a field the template declares. We therefore
//!   refuse a declared parameter that nothing uses (it could only make devices fail) and a
//!   `Default` (the JITP guide says the certificate must carry every declared field, so a default
//!   is not a fallback we can rely on). As a result the declared fields are exactly
//!   [`ValidatedTemplate::referenced_fields`], which the preflight checks against the issuance
//!   policy.
//! - A `Ref` may name only a declared parameter. The guide documents no value for a resource's
//!   logical name, so a `Ref` to a resource is refused rather than guessed.
//! - Resources are one `AWS::IoT::Thing` (named from the certificate), one
//!   `AWS::IoT::Certificate` whose `CertificateId` is `{"Ref": "AWS::IoT::Certificate::Id"}`
//!   (JITP registers the certificate the device connected with), and any number of
//!   `AWS::IoT::Policy`.
//! - Of the intrinsic functions, only `Fn::Join` is accepted. The guide documents the others
//!   (`Fn::Select`, `Fn::Split`, `Fn::Sub`, `Fn::FindInMap`) for fleet provisioning templates,
//!   and we evaluate every template in [`preview`], so we accept only what we can evaluate.
//!
//! [`preview`] evaluates a validated template for one certificate subject, so an admin sees the
//! thing a device would become before the device connects.
//!
//! Pure: serde_json values in and out. No HTTP, SQL or AWS SDK types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// AWS accepts a `templateBody` of at most 10240 characters (API reference,
/// `RegistrationConfig` and `CreateProvisioningTemplate`).
pub const MAX_TEMPLATE_BODY_LEN: usize = 10240;

/// A thing without a thing type may have 3 attributes, a thing with one 50
/// (AWS IoT developer guide, "Thing types").
pub const MAX_ATTRIBUTES_UNTYPED: usize = 3;
/// See [`MAX_ATTRIBUTES_UNTYPED`].
pub const MAX_ATTRIBUTES_TYPED: usize = 50;

const TYPE_THING: &str = "AWS::IoT::Thing";
const TYPE_CERTIFICATE: &str = "AWS::IoT::Certificate";
const TYPE_POLICY: &str = "AWS::IoT::Policy";

const PARAMETER_LIST: &str = "AWS::IoT::Certificate::CommonName, AWS::IoT::Certificate::Country, \
     AWS::IoT::Certificate::Organization, AWS::IoT::Certificate::OrganizationalUnit, \
     AWS::IoT::Certificate::DistinguishedNameQualifier, AWS::IoT::Certificate::StateName, \
     AWS::IoT::Certificate::SerialNumber, AWS::IoT::Certificate::Id";

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

/// The `"template"` object of a request: exactly one of `{"body": {...}}`,
/// `{"simple": {...}}` or `{"name": "..."}`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSpec {
    /// A raw JITP template, as a JSON object (not as an escaped string: the escaping is ours).
    Body(Value),
    /// A thing named after the CommonName, with attributes, an optional type, groups and a policy.
    Simple(SimpleTemplate),
    /// A JITP provisioning template that already exists in the account
    /// (`create-provisioning-template --type JITP`).
    Name(String),
}

/// The common case, without writing a template: the thing is named after the certificate's
/// CommonName, and the certificate gets one existing policy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimpleTemplate {
    /// Thing attributes. A value equal to a [`CertificateField`] short name (`"Country"`,
    /// `"SerialNumber"`, ...) is taken from the certificate; any other value is a constant.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The name of an existing AWS IoT policy to attach to the certificate.
    pub policy_name: String,
    /// An existing thing type. Without one a thing may have at most 3 attributes.
    #[serde(default)]
    pub thing_type: Option<String>,
    /// Existing thing groups to add the thing to.
    #[serde(default)]
    pub thing_groups: Vec<String>,
}

/// A [`TemplateSpec`] checked and ready to become a `registrationConfig`.
#[derive(Clone, Debug)]
pub enum ResolvedTemplate {
    /// A body we send (a validated raw body, or one built from a simple template).
    Body(Box<ValidatedTemplate>),
    /// The name of an existing template; AWS holds its body, so there is nothing to preview.
    Named(String),
}

impl TemplateSpec {
    /// Validates the request: a body is validated, a simple template is built and validated,
    /// and a name is checked against AWS's template-name rule.
    pub fn resolve(&self) -> Result<ResolvedTemplate, TemplateError> {
        match self {
            TemplateSpec::Body(body) => Ok(ResolvedTemplate::Body(Box::new(validate(body)?))),
            TemplateSpec::Simple(simple) => {
                let body = build_simple(simple)?;
                Ok(ResolvedTemplate::Body(Box::new(validate(&body)?)))
            }
            TemplateSpec::Name(name) => {
                validate_template_name(name)?;
                Ok(ResolvedTemplate::Named(name.clone()))
            }
        }
    }
}

impl ResolvedTemplate {
    /// The `registrationConfig` for RegisterCACertificate / UpdateCACertificate. The role is
    /// needed (and checked) only with a body: a named template carries its own role.
    pub fn registration_config(&self, role_arn: &str) -> Result<Value, TemplateError> {
        match self {
            ResolvedTemplate::Body(template) => {
                validate_role_arn(role_arn)?;
                Ok(registration_config(template.body(), role_arn))
            }
            ResolvedTemplate::Named(name) => Ok(registration_config_named(name)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Certificate fields
// ---------------------------------------------------------------------------------------------

/// The parameters JITP supplies to a template (AWS IoT developer guide, "Just-in-time
/// provisioning"). All but `Id` come from the subject of the device certificate; `Id` is the
/// certificate ID AWS computes (the SHA-256 of the DER), so every certificate has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CertificateField {
    CommonName,
    Country,
    Organization,
    OrganizationalUnit,
    DistinguishedNameQualifier,
    StateName,
    /// The subject's serialNumber attribute (2.5.4.5), not the certificate serial number: JITP
    /// reads only the subject.
    SerialNumber,
    Id,
}

impl CertificateField {
    pub const ALL: [CertificateField; 8] = [
        CertificateField::CommonName,
        CertificateField::Country,
        CertificateField::Organization,
        CertificateField::OrganizationalUnit,
        CertificateField::DistinguishedNameQualifier,
        CertificateField::StateName,
        CertificateField::SerialNumber,
        CertificateField::Id,
    ];

    /// The name used in `simple.attributes` values: `"Country"`, `"CommonName"`, ...
    pub fn short_name(self) -> &'static str {
        match self {
            CertificateField::CommonName => "CommonName",
            CertificateField::Country => "Country",
            CertificateField::Organization => "Organization",
            CertificateField::OrganizationalUnit => "OrganizationalUnit",
            CertificateField::DistinguishedNameQualifier => "DistinguishedNameQualifier",
            CertificateField::StateName => "StateName",
            CertificateField::SerialNumber => "SerialNumber",
            CertificateField::Id => "Id",
        }
    }

    /// The template parameter: `"AWS::IoT::Certificate::Country"`, ...
    pub fn parameter_name(self) -> &'static str {
        match self {
            CertificateField::CommonName => "AWS::IoT::Certificate::CommonName",
            CertificateField::Country => "AWS::IoT::Certificate::Country",
            CertificateField::Organization => "AWS::IoT::Certificate::Organization",
            CertificateField::OrganizationalUnit => "AWS::IoT::Certificate::OrganizationalUnit",
            CertificateField::DistinguishedNameQualifier => {
                "AWS::IoT::Certificate::DistinguishedNameQualifier"
            }
            CertificateField::StateName => "AWS::IoT::Certificate::StateName",
            CertificateField::SerialNumber => "AWS::IoT::Certificate::SerialNumber",
            CertificateField::Id => "AWS::IoT::Certificate::Id",
        }
    }

    /// The subject attribute the value comes from, as openssl names it; `None` for `Id`.
    pub fn subject_attribute(self) -> Option<&'static str> {
        match self {
            CertificateField::CommonName => Some("CN"),
            CertificateField::Country => Some("C"),
            CertificateField::Organization => Some("O"),
            CertificateField::OrganizationalUnit => Some("OU"),
            CertificateField::DistinguishedNameQualifier => Some("dnQualifier"),
            CertificateField::StateName => Some("ST"),
            CertificateField::SerialNumber => Some("serialNumber"),
            CertificateField::Id => None,
        }
    }

    pub fn from_short_name(name: &str) -> Option<CertificateField> {
        Self::ALL.into_iter().find(|f| f.short_name() == name)
    }

    pub fn from_parameter_name(name: &str) -> Option<CertificateField> {
        Self::ALL.into_iter().find(|f| f.parameter_name() == name)
    }
}

impl fmt::Display for CertificateField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.parameter_name())
    }
}

/// What a device certificate carries, for [`preview`]. A `None` or empty value is a field the
/// certificate lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSubject {
    pub common_name: Option<String>,
    pub country: Option<String>,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    pub distinguished_name_qualifier: Option<String>,
    pub state_name: Option<String>,
    pub serial_number: Option<String>,
    /// The AWS certificate ID: lowercase hex SHA-256 of the certificate DER.
    pub certificate_id: String,
}

impl DeviceSubject {
    /// The value JITP would supply for `field`, or `None` when the certificate lacks it.
    pub fn get(&self, field: CertificateField) -> Option<&str> {
        let value = match field {
            CertificateField::CommonName => self.common_name.as_deref(),
            CertificateField::Country => self.country.as_deref(),
            CertificateField::Organization => self.organization.as_deref(),
            CertificateField::OrganizationalUnit => self.organizational_unit.as_deref(),
            CertificateField::DistinguishedNameQualifier => {
                self.distinguished_name_qualifier.as_deref()
            }
            CertificateField::StateName => self.state_name.as_deref(),
            CertificateField::SerialNumber => self.serial_number.as_deref(),
            CertificateField::Id => Some(self.certificate_id.as_str()),
        };
        value.filter(|v| !v.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An AWS naming rule a value breaks (AWS IoT API reference; IAM for policy names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    ThingName,
    ThingTypeName,
    ThingGroupName,
    PolicyName,
    AttributeName,
    AttributeValue,
    TemplateName,
}

impl Rule {
    /// Whether `value` satisfies the rule.
    pub fn allows(self, value: &str) -> bool {
        let n = value.chars().count();
        match self {
            // ThingAttribute / CreateThingType / CreateThingGroup: 1-128 of [a-zA-Z0-9:_-].
            Rule::ThingName | Rule::ThingTypeName | Rule::ThingGroupName => {
                (1..=128).contains(&n)
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
            }
            // CreatePolicy: 1-128 of [\w+=,.@-].
            Rule::PolicyName => {
                (1..=128).contains(&n)
                    && value.chars().all(|c| {
                        c.is_ascii_alphanumeric()
                            || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
                    })
            }
            // AttributePayload keys: at most 128 of [a-zA-Z0-9_.,@/:#-]+.
            Rule::AttributeName => {
                (1..=128).contains(&n)
                    && value.chars().all(|c| {
                        c.is_ascii_alphanumeric()
                            || matches!(c, '_' | '.' | ',' | '@' | '/' | ':' | '#' | '-')
                    })
            }
            // AttributePayload values: at most 800 of [a-zA-Z0-9_.,@/:#=\[\]-]*.
            Rule::AttributeValue => {
                n <= 800
                    && value.chars().all(|c| {
                        c.is_ascii_alphanumeric()
                            || matches!(
                                c,
                                '_' | '.' | ',' | '@' | '/' | ':' | '#' | '=' | '[' | ']' | '-'
                            )
                    })
            }
            // RegistrationConfig.templateName: 1-36 of [0-9A-Za-z_-].
            Rule::TemplateName => {
                (1..=36).contains(&n)
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            }
        }
    }

    fn check(self, path: &str, value: &str) -> Result<(), TemplateError> {
        if self.allows(value) {
            Ok(())
        } else {
            Err(TemplateError::InvalidValue {
                path: path.to_owned(),
                value: shown(value),
                rule: self,
            })
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::ThingName => {
                "a valid thing name (1-128 characters of a-z, A-Z, 0-9, ':', '_' and '-')"
            }
            Rule::ThingTypeName => {
                "a valid thing type name (1-128 characters of a-z, A-Z, 0-9, ':', '_' and '-')"
            }
            Rule::ThingGroupName => {
                "a valid thing group name (1-128 characters of a-z, A-Z, 0-9, ':', '_' and '-')"
            }
            Rule::PolicyName => {
                "a valid AWS IoT policy name (1-128 characters of a-z, A-Z, 0-9 and _+=,.@-)"
            }
            Rule::AttributeName => {
                "a valid thing attribute name (1-128 characters of a-z, A-Z, 0-9 and _.,@/:#-)"
            }
            Rule::AttributeValue => {
                "a valid thing attribute value (at most 800 characters of a-z, A-Z, 0-9 and \
                 _.,@/:#=[]-; no spaces)"
            }
            Rule::TemplateName => {
                "a valid provisioning template name (1-36 characters of a-z, A-Z, 0-9, '_' and '-')"
            }
        })
    }
}

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
    match field.subject_attribute() {
        Some(attr) => format!(
            "the template uses {field}, but the certificate's subject has no {attr} attribute, so \
             JITP would fail to provision the device; put {attr} in the CSR or remove the field \
             from the template"
        ),
        None => format!("the template uses {field}, but no certificate ID was given"),
    }
}

/// A value quoted as JSON and cut to a readable length, for error messages.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Simple templates
// ---------------------------------------------------------------------------------------------

/// Builds the JITP template for a [`SimpleTemplate`]: the thing is named after the CommonName,
/// its attributes are constants or certificate fields, and the certificate is activated with the
/// policy attached. The result has passed [`validate`].
pub fn build_simple(t: &SimpleTemplate) -> Result<Value, TemplateError> {
    Rule::PolicyName.check("policy_name", &t.policy_name)?;
    if let Some(thing_type) = &t.thing_type {
        Rule::ThingTypeName.check("thing_type", thing_type)?;
    }
    let mut seen = BTreeSet::new();
    for (i, group) in t.thing_groups.iter().enumerate() {
        Rule::ThingGroupName.check(&format!("thing_groups[{i}]"), group)?;
        if !seen.insert(group.as_str()) {
            return Err(TemplateError::DuplicateThingGroup {
                path: "thing_groups".into(),
                name: shown(group),
            });
        }
    }

    // The thing name and the certificate ID are always used.
    let mut fields = BTreeSet::from([CertificateField::CommonName, CertificateField::Id]);
    let mut payload = Map::new();
    for (name, value) in &t.attributes {
        Rule::AttributeName.check("an attribute name in attributes", name)?;
        let value = match CertificateField::from_short_name(value) {
            Some(field) => {
                fields.insert(field);
                json!({ "Ref": field.parameter_name() })
            }
            None => {
                Rule::AttributeValue.check(&format!("attributes.{name}"), value)?;
                Value::String(value.clone())
            }
        };
        payload.insert(name.clone(), value);
    }
    check_attribute_count("attributes", payload.len(), t.thing_type.is_some())?;

    let parameters: Map<String, Value> = fields
        .iter()
        .map(|f| (f.parameter_name().to_owned(), json!({ "Type": "String" })))
        .collect();

    let mut thing = Map::new();
    thing.insert(
        "ThingName".into(),
        json!({ "Ref": CertificateField::CommonName.parameter_name() }),
    );
    if !payload.is_empty() {
        thing.insert("AttributePayload".into(), Value::Object(payload));
    }
    if let Some(thing_type) = &t.thing_type {
        thing.insert("ThingTypeName".into(), Value::String(thing_type.clone()));
    }
    if !t.thing_groups.is_empty() {
        thing.insert("ThingGroups".into(), json!(t.thing_groups));
    }

    let body = json!({
        "Parameters": parameters,
        "Resources": {
            "thing": { "Type": TYPE_THING, "Properties": thing },
            "certificate": {
                "Type": TYPE_CERTIFICATE,
                "Properties": {
                    "CertificateId": { "Ref": CertificateField::Id.parameter_name() },
                    "Status": "ACTIVE",
                },
            },
            "policy": {
                "Type": TYPE_POLICY,
                "Properties": { "PolicyName": t.policy_name },
            },
        },
    });
    // Our own output obeys the same rules as a user's, including the size limit.
    validate(&body)?;
    Ok(body)
}

fn check_attribute_count(
    path: &str,
    count: usize,
    has_thing_type: bool,
) -> Result<(), TemplateError> {
    let max = if has_thing_type {
        MAX_ATTRIBUTES_TYPED
    } else {
        MAX_ATTRIBUTES_UNTYPED
    };
    if count > max {
        return Err(TemplateError::TooManyAttributes {
            path: path.to_owned(),
            count,
            has_thing_type,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Validation of raw bodies
// ---------------------------------------------------------------------------------------------

/// A template value: a constant, a certificate field, or an `Fn::Join` of those.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Literal(String),
    Ref(CertificateField),
    Join { delimiter: String, parts: Vec<Expr> },
}

impl Expr {
    fn literal(&self) -> Option<&str> {
        match self {
            Expr::Literal(s) => Some(s),
            _ => None,
        }
    }

    fn eval(&self, subject: &DeviceSubject) -> Result<String, MissingField> {
        match self {
            Expr::Literal(s) => Ok(s.clone()),
            Expr::Ref(field) => subject
                .get(*field)
                .map(str::to_owned)
                .ok_or(MissingField(*field)),
            Expr::Join { delimiter, parts } => {
                let parts = parts
                    .iter()
                    .map(|p| p.eval(subject))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(parts.join(delimiter))
            }
        }
    }
}

#[derive(Clone, Debug)]
struct ThingSpec {
    name: Expr,
    attributes: BTreeMap<String, Expr>,
    thing_type: Option<Expr>,
    groups: Vec<Expr>,
}

#[derive(Clone, Debug)]
enum PolicySpec {
    Named(Expr),
    Document,
}

/// The status the template gives the certificate once the device is provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    Active,
    Inactive,
}

/// A JITP template body that passed [`validate`].
#[derive(Clone, Debug)]
pub struct ValidatedTemplate {
    body: Value,
    referenced: BTreeSet<CertificateField>,
    thing: ThingSpec,
    certificate_status: CertificateStatus,
    policies: Vec<PolicySpec>,
}

impl ValidatedTemplate {
    /// The body as given (or as built), for [`registration_config`].
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// The certificate fields the template uses. Every declared parameter is used (unused ones
    /// are refused), so these are also exactly the fields a certificate must carry for JITP to
    /// succeed. `Id` is always present: AWS computes it.
    pub fn referenced_fields(&self) -> BTreeSet<CertificateField> {
        self.referenced.clone()
    }
}

struct Ctx<'a> {
    declared: BTreeSet<CertificateField>,
    resource_names: BTreeSet<&'a str>,
    referenced: BTreeSet<CertificateField>,
}

impl Ctx<'_> {
    /// Parses a value that must evaluate to a string, recording the fields it reads.
    fn expr(&mut self, value: &Value, path: &str) -> Result<Expr, TemplateError> {
        match value {
            Value::String(s) => Ok(Expr::Literal(s.clone())),
            Value::Object(obj) if obj.contains_key("Ref") => {
                let (Some(Value::String(name)), 1) = (obj.get("Ref"), obj.len()) else {
                    return Err(TemplateError::MalformedRef { path: path.into() });
                };
                self.reference(name, path)
            }
            Value::Object(obj) if obj.len() == 1 && obj.keys().all(|k| k.starts_with("Fn::")) => {
                let (function, args) = obj.iter().next().expect("one key");
                if function != "Fn::Join" {
                    return Err(TemplateError::UnsupportedFunction {
                        path: path.into(),
                        function: function.clone(),
                    });
                }
                let malformed = || TemplateError::MalformedJoin { path: path.into() };
                let [Value::String(delimiter), Value::Array(items)] =
                    args.as_array().map(Vec::as_slice).ok_or_else(malformed)?
                else {
                    return Err(malformed());
                };
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.expr(item, &format!("{path}.Fn::Join[1][{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Expr::Join {
                    delimiter: delimiter.clone(),
                    parts,
                })
            }
            other => Err(TemplateError::NotAString {
                path: path.into(),
                found: kind(other),
            }),
        }
    }

    fn reference(&mut self, name: &str, path: &str) -> Result<Expr, TemplateError> {
        match CertificateField::from_parameter_name(name) {
            Some(field) if self.declared.contains(&field) => {
                self.referenced.insert(field);
                Ok(Expr::Ref(field))
            }
            Some(field) => Err(TemplateError::UndeclaredParameter {
                path: path.into(),
                name: field.parameter_name(),
            }),
            None if self.resource_names.contains(name) => Err(TemplateError::RefToResource {
                path: path.into(),
                name: shown(name),
            }),
            None => Err(TemplateError::UnknownRef {
                path: path.into(),
                name: shown(name),
            }),
        }
    }
}

fn object_at<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, TemplateError> {
    value
        .as_object()
        .ok_or_else(|| TemplateError::NotAnObjectAt {
            path: path.into(),
            found: kind(value),
        })
}

fn only_keys(
    obj: &Map<String, Value>,
    path: &str,
    keys: &[&str],
    allowed: &'static str,
) -> Result<(), TemplateError> {
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(key) => Err(TemplateError::UnknownKey {
            path: path.into(),
            key: key.clone(),
            allowed,
        }),
        None => Ok(()),
    }
}

/// Checks a raw JITP template body against the rules in the module documentation.
pub fn validate(body: &Value) -> Result<ValidatedTemplate, TemplateError> {
    let top = body
        .as_object()
        .ok_or(TemplateError::NotAnObject { found: kind(body) })?;
    if let Some(key) = top.keys().find(|k| *k != "Parameters" && *k != "Resources") {
        return Err(TemplateError::UnknownSection { key: shown(key) });
    }
    let section = |name: &'static str| {
        top.get(name)
            .ok_or(TemplateError::MissingSection { section: name })
            .and_then(|v| object_at(v, name))
    };
    let parameters = section("Parameters")?;
    let resources = section("Resources")?;

    let mut ctx = Ctx {
        declared: declared_fields(parameters)?,
        resource_names: resources.keys().map(String::as_str).collect(),
        referenced: BTreeSet::new(),
    };

    let mut things = Vec::new();
    let mut certificates = Vec::new();
    let mut policies = Vec::new();
    for (name, resource) in resources {
        let path = format!("Resources.{name}");
        let resource = object_at(resource, &path)?;
        only_keys(
            resource,
            &path,
            &["Type", "Properties", "OverrideSettings"],
            "a resource has only Type, Properties and OverrideSettings",
        )?;
        let resource_type = match resource.get("Type") {
            None => {
                return Err(TemplateError::MissingKey { path, key: "Type" });
            }
            Some(Value::String(t)) => t.as_str(),
            Some(other) => {
                return Err(TemplateError::NotAString {
                    path: format!("{path}.Type"),
                    found: kind(other),
                });
            }
        };
        let properties_path = format!("{path}.Properties");
        let properties = match resource.get("Properties") {
            Some(p) => object_at(p, &properties_path)?,
            None => {
                return Err(TemplateError::MissingKey {
                    path,
                    key: "Properties",
                });
            }
        };
        let overrides = resource
            .get("OverrideSettings")
            .map(|o| object_at(o, &format!("{path}.OverrideSettings")))
            .transpose()?;
        match resource_type {
            TYPE_THING => {
                if let Some(o) = overrides {
                    thing_overrides(o, &format!("{path}.OverrideSettings"))?;
                }
                things.push(thing(&mut ctx, properties, &properties_path)?);
            }
            TYPE_CERTIFICATE => {
                if let Some(o) = overrides {
                    certificate_overrides(o, &format!("{path}.OverrideSettings"))?;
                }
                certificates.push(certificate(&mut ctx, properties, &properties_path)?);
            }
            TYPE_POLICY => {
                if overrides.is_some() {
                    return Err(TemplateError::UnknownKey {
                        path,
                        key: "OverrideSettings".into(),
                        allowed: "policy resources have no OverrideSettings",
                    });
                }
                policies.push(policy(&mut ctx, properties, &properties_path)?);
            }
            other => {
                return Err(TemplateError::UnsupportedResourceType {
                    path,
                    found: shown(other),
                });
            }
        }
    }

    if things.len() != 1 {
        return Err(TemplateError::ThingCount {
            count: things.len(),
        });
    }
    if certificates.len() != 1 {
        return Err(TemplateError::CertificateCount {
            count: certificates.len(),
        });
    }
    if let Some(unused) = ctx.declared.difference(&ctx.referenced).next() {
        return Err(TemplateError::UnusedParameter {
            name: unused.parameter_name(),
        });
    }
    let len = serde_json::to_string(body)
        .expect("a Value always serializes")
        .chars()
        .count();
    if len > MAX_TEMPLATE_BODY_LEN {
        return Err(TemplateError::TooLarge { len });
    }

    Ok(ValidatedTemplate {
        body: body.clone(),
        referenced: ctx.referenced,
        thing: things.pop().expect("exactly one"),
        certificate_status: certificates.pop().expect("exactly one"),
        policies,
    })
}

fn declared_fields(
    parameters: &Map<String, Value>,
) -> Result<BTreeSet<CertificateField>, TemplateError> {
    let mut declared = BTreeSet::new();
    for (name, declaration) in parameters {
        let field = CertificateField::from_parameter_name(name)
            .ok_or_else(|| TemplateError::UnknownParameter { name: shown(name) })?;
        let declaration = object_at(declaration, &format!("Parameters.{name}"))?;
        if declaration.contains_key("Default") {
            return Err(TemplateError::ParameterDefault { name: name.clone() });
        }
        if let Some(key) = declaration.keys().find(|k| *k != "Type") {
            return Err(TemplateError::ParameterUnknownKey {
                name: name.clone(),
                key: shown(key),
            });
        }
        if declaration.get("Type") != Some(&Value::String("String".into())) {
            return Err(TemplateError::ParameterNotString { name: name.clone() });
        }
        declared.insert(field);
    }
    Ok(declared)
}

fn thing(
    ctx: &mut Ctx<'_>,
    properties: &Map<String, Value>,
    path: &str,
) -> Result<ThingSpec, TemplateError> {
    only_keys(
        properties,
        path,
        &[
            "ThingName",
            "AttributePayload",
            "ThingTypeName",
            "ThingGroups",
        ],
        "a thing takes ThingName, AttributePayload, ThingTypeName and ThingGroups",
    )?;

    let name_path = format!("{path}.ThingName");
    let name = match properties.get("ThingName") {
        Some(v) => ctx.expr(v, &name_path)?,
        None => {
            return Err(TemplateError::MissingKey {
                path: path.into(),
                key: "ThingName",
            });
        }
    };
    if let Some(literal) = name.literal() {
        Rule::ThingName.check(&name_path, literal)?;
        return Err(TemplateError::ConstantThingName { path: name_path });
    }

    let thing_type = match properties.get("ThingTypeName") {
        Some(v) => {
            let type_path = format!("{path}.ThingTypeName");
            let e = ctx.expr(v, &type_path)?;
            if let Some(literal) = e.literal() {
                Rule::ThingTypeName.check(&type_path, literal)?;
            }
            Some(e)
        }
        None => None,
    };

    let mut attributes = BTreeMap::new();
    if let Some(payload) = properties.get("AttributePayload") {
        let payload_path = format!("{path}.AttributePayload");
        let payload = object_at(payload, &payload_path)?;
        for (name, value) in payload {
            Rule::AttributeName.check(&format!("an attribute name in {payload_path}"), name)?;
            let value_path = format!("{payload_path}.{name}");
            let e = ctx.expr(value, &value_path)?;
            if let Some(literal) = e.literal() {
                Rule::AttributeValue.check(&value_path, literal)?;
            }
            attributes.insert(name.clone(), e);
        }
        check_attribute_count(&payload_path, attributes.len(), thing_type.is_some())?;
    }

    let mut groups = Vec::new();
    if let Some(list) = properties.get("ThingGroups") {
        let groups_path = format!("{path}.ThingGroups");
        let list = list.as_array().ok_or_else(|| TemplateError::NotAnArray {
            path: groups_path.clone(),
            found: kind(list),
        })?;
        let mut seen = BTreeSet::new();
        for (i, item) in list.iter().enumerate() {
            let item_path = format!("{groups_path}[{i}]");
            let e = ctx.expr(item, &item_path)?;
            if let Some(literal) = e.literal() {
                Rule::ThingGroupName.check(&item_path, literal)?;
                if !seen.insert(literal.to_owned()) {
                    return Err(TemplateError::DuplicateThingGroup {
                        path: groups_path,
                        name: shown(literal),
                    });
                }
            }
            groups.push(e);
        }
    }

    Ok(ThingSpec {
        name,
        attributes,
        thing_type,
        groups,
    })
}

fn certificate(
    ctx: &mut Ctx<'_>,
    properties: &Map<String, Value>,
    path: &str,
) -> Result<CertificateStatus, TemplateError> {
    // CertificateSigningRequest, CertificatePem and CACertificatePem are for bulk registration
    // and fleet provisioning; JITP has the device's certificate already.
    only_keys(
        properties,
        path,
        &["CertificateId", "Status"],
        "a JITP certificate takes only CertificateId ({\"Ref\": \"AWS::IoT::Certificate::Id\"}) \
         and Status",
    )?;
    let id_path = format!("{path}.CertificateId");
    match properties.get("CertificateId") {
        None => {
            return Err(TemplateError::MissingKey {
                path: path.into(),
                key: "CertificateId",
            });
        }
        Some(value) => {
            if ctx.expr(value, &id_path)? != Expr::Ref(CertificateField::Id) {
                return Err(TemplateError::CertificateIdNotRef { path: id_path });
            }
        }
    }
    // "Status: Optional. ... ACTIVE or INACTIVE. Defaults to ACTIVE." (Provisioning templates)
    match properties.get("Status") {
        None => Ok(CertificateStatus::Active),
        Some(Value::String(s)) if s == "ACTIVE" => Ok(CertificateStatus::Active),
        Some(Value::String(s)) if s == "INACTIVE" => Ok(CertificateStatus::Inactive),
        Some(other) => Err(TemplateError::InvalidCertificateStatus {
            path: format!("{path}.Status"),
            found: match other {
                Value::String(s) => shown(s),
                other => kind(other).to_owned(),
            },
        }),
    }
}

fn policy(
    ctx: &mut Ctx<'_>,
    properties: &Map<String, Value>,
    path: &str,
) -> Result<PolicySpec, TemplateError> {
    only_keys(
        properties,
        path,
        &["PolicyName", "PolicyDocument"],
        "a policy takes PolicyName or PolicyDocument",
    )?;
    match (
        properties.get("PolicyName"),
        properties.get("PolicyDocument"),
    ) {
        (Some(name), None) => {
            let name_path = format!("{path}.PolicyName");
            let e = ctx.expr(name, &name_path)?;
            if let Some(literal) = e.literal() {
                Rule::PolicyName.check(&name_path, literal)?;
            }
            Ok(PolicySpec::Named(e))
        }
        (None, Some(document)) => {
            let parsed = document
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok());
            match parsed {
                Some(Value::Object(_)) => Ok(PolicySpec::Document),
                _ => Err(TemplateError::InvalidPolicyDocument {
                    path: format!("{path}.PolicyDocument"),
                }),
            }
        }
        _ => Err(TemplateError::PolicyNameXorDocument { path: path.into() }),
    }
}

fn check_overrides(
    overrides: &Map<String, Value>,
    path: &str,
    keys: &[&str],
    keys_allowed: &'static str,
    merge_keys: &[&str],
) -> Result<(), TemplateError> {
    only_keys(overrides, path, keys, keys_allowed)?;
    for (key, value) in overrides {
        let (allowed, ok): (&'static str, &[&str]) = if merge_keys.contains(&key.as_str()) {
            (
                "DO_NOTHING, REPLACE, FAIL, MERGE",
                &["DO_NOTHING", "REPLACE", "FAIL", "MERGE"],
            )
        } else {
            (
                "DO_NOTHING, REPLACE, FAIL",
                &["DO_NOTHING", "REPLACE", "FAIL"],
            )
        };
        if !value.as_str().is_some_and(|v| ok.contains(&v)) {
            return Err(TemplateError::InvalidOverride {
                path: format!("{path}.{key}"),
                found: match value {
                    Value::String(s) => shown(s),
                    other => kind(other).to_owned(),
                },
                allowed,
            });
        }
    }
    Ok(())
}

/// "Override settings" (Provisioning templates): MERGE is valid only for ThingGroups and
/// AttributePayload.
fn thing_overrides(overrides: &Map<String, Value>, path: &str) -> Result<(), TemplateError> {
    check_overrides(
        overrides,
        path,
        &["AttributePayload", "ThingTypeName", "ThingGroups"],
        "a thing's OverrideSettings cover AttributePayload, ThingTypeName and ThingGroups",
        &["AttributePayload", "ThingGroups"],
    )
}

fn certificate_overrides(overrides: &Map<String, Value>, path: &str) -> Result<(), TemplateError> {
    check_overrides(
        overrides,
        path,
        &["Status"],
        "a certificate's OverrideSettings cover only Status",
        &[],
    )
}

// ---------------------------------------------------------------------------------------------
// Registration config and role ARN
// ---------------------------------------------------------------------------------------------

/// `{"templateBody": "<the body as a JSON string>", "roleArn": ...}`. The body is serialized
/// here, so a user never hand-escapes JSON. Validate the body and the role first.
pub fn registration_config(body: &Value, role_arn: &str) -> Value {
    json!({
        "templateBody": serde_json::to_string(body).expect("a Value always serializes"),
        "roleArn": role_arn,
    })
}

/// `{"templateName": name}`, for a JITP template created with CreateProvisioningTemplate.
pub fn registration_config_named(name: &str) -> Value {
    json!({ "templateName": name })
}

/// A provisioning template name: 1-36 of `[0-9A-Za-z_-]` (API reference, RegistrationConfig).
pub fn validate_template_name(name: &str) -> Result<(), TemplateError> {
    Rule::TemplateName.check("template name", name)
}

/// An IAM role ARN, `arn:<partition>:iam::<12 digits>:role/<path/><name>`, as
/// RegistrationConfig.roleArn takes it (20-2048 characters; CloudFormation documents the
/// pattern `arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+`). The role name is
/// 1-64 characters (IAM).
pub fn validate_role_arn(arn: &str) -> Result<(), TemplateError> {
    let fail = |reason| {
        Err(TemplateError::InvalidRoleArn {
            arn: shown(arn),
            reason,
        })
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return fail("an ARN has six parts separated by ':', starting with \"arn\"");
    };
    if !partition
        .strip_prefix("aws")
        .is_some_and(|rest| rest.chars().all(|c| c == '-' || c.is_ascii_lowercase()))
    {
        return fail("the partition must be aws, aws-cn or aws-us-gov");
    }
    if service != "iam" {
        return fail("the service must be iam");
    }
    if !region.is_empty() {
        return fail("an IAM ARN has no region (iam::<account>)");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return fail("the account must be 12 digits");
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return fail("the resource must be role/<name>");
    };
    let (path, name) = path_and_name
        .rsplit_once('/')
        .unwrap_or(("", path_and_name));
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if !name_ok {
        return fail("the role name must be 1-64 characters of a-z, A-Z, 0-9 and _+=,.@-");
    }
    let path_ok = path.len() <= 510
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/".contains(c));
    if !path_ok {
        return fail("the role path may use only a-z, A-Z, 0-9 and _+=,.@-/");
    }
    if !(20..=2048).contains(&arn.len()) {
        return fail("AWS accepts 20 to 2048 characters");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Preview
// ---------------------------------------------------------------------------------------------

/// What JITP would make of one device: the template evaluated with the certificate's fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub thing_name: String,
    pub attributes: BTreeMap<String, String>,
    pub thing_type: Option<String>,
    pub thing_groups: Vec<String>,
    /// Existing policies attached by name.
    pub policy_names: Vec<String>,
    /// Policies the template creates from a PolicyDocument; AWS names them.
    pub inline_policies: usize,
    pub certificate_status: CertificateStatus,
    /// Values AWS would refuse (e.g. an attribute taken from `O=Acme Corp`, with a space), or an
    /// INACTIVE certificate. Empty when provisioning should succeed.
    pub problems: Vec<String>,
}

/// Evaluates `template` for a certificate with `subject`. Fails with the first field (in
/// [`CertificateField`] order) the template uses and the certificate lacks: JITP would not
/// provision that device at all.
pub fn preview(
    template: &ValidatedTemplate,
    subject: &DeviceSubject,
) -> Result<Preview, MissingField> {
    if let Some(missing) = template
        .referenced
        .iter()
        .find(|f| subject.get(**f).is_none())
    {
        return Err(MissingField(*missing));
    }

    let mut problems = Vec::new();
    let mut check = |what: &str, rule: Rule, value: &str| {
        if !rule.allows(value) {
            problems.push(format!(
                "{what} would be {}, which is not {rule}; AWS would refuse it and provisioning \
                 would fail",
                shown(value)
            ));
        }
    };

    let thing = &template.thing;
    let thing_name = thing.name.eval(subject)?;
    check("the thing name", Rule::ThingName, &thing_name);

    let mut attributes = BTreeMap::new();
    for (name, value) in &thing.attributes {
        let value = value.eval(subject)?;
        check(&format!("attribute {name}"), Rule::AttributeValue, &value);
        attributes.insert(name.clone(), value);
    }

    let thing_type = match &thing.thing_type {
        Some(e) => {
            let value = e.eval(subject)?;
            check("the thing type", Rule::ThingTypeName, &value);
            Some(value)
        }
        None => None,
    };

    let mut thing_groups = Vec::new();
    for group in &thing.groups {
        let value = group.eval(subject)?;
        check("a thing group", Rule::ThingGroupName, &value);
        thing_groups.push(value);
    }

    let mut policy_names = Vec::new();
    let mut inline_policies = 0;
    for policy in &template.policies {
        match policy {
            PolicySpec::Named(e) => {
                let value = e.eval(subject)?;
                check("a policy name", Rule::PolicyName, &value);
                policy_names.push(value);
            }
            PolicySpec::Document => inline_policies += 1,
        }
    }

    if template.certificate_status == CertificateStatus::Inactive {
        problems.push(
            "the certificate would be INACTIVE, so the device could not connect after \
             provisioning"
                .to_owned(),
        );
    }

    Ok(Preview {
        thing_name,
        attributes,
        thing_type,
        thing_groups,
        policy_names,
        inline_policies,
        certificate_status: template.certificate_status,
        problems,
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(value: Value) -> SimpleTemplate {
        serde_json::from_value(value).expect("test simple template parses")
    }

    /// Our own JITP template in the shape of the developer guide's example: thing named from
    /// the CommonName, a constant and a certificate-field attribute, a type, a constant and a
    /// certificate-field group, override settings, the certificate and an inline policy.
    fn guide_like_template() -> Value {
        json!({
            "Parameters": {
                "AWS::IoT::Certificate::CommonName": { "Type": "String" },
                "AWS::IoT::Certificate::SerialNumber": { "Type": "String" },
                "AWS::IoT::Certificate::Country": { "Type": "String" },
                "AWS::IoT::Certificate::Id": { "Type": "String" }
            },
            "Resources": {
                "thing": {
                    "Type": "AWS::IoT::Thing",
                    "Properties": {
                        "ThingName": { "Ref": "AWS::IoT::Certificate::CommonName" },
                        "AttributePayload": {
                            "model": "sensor-v2",
                            "serial": { "Ref": "AWS::IoT::Certificate::SerialNumber" }
                        },
                        "ThingTypeName": "TempSensor",
                        "ThingGroups": [
                            "line-3",
                            { "Ref": "AWS::IoT::Certificate::Country" }
                        ]
                    },
                    "OverrideSettings": {
                        "AttributePayload": "MERGE",
                        "ThingTypeName": "REPLACE",
                        "ThingGroups": "DO_NOTHING"
                    }
                },
                "certificate": {
                    "Type": "AWS::IoT::Certificate",
                    "Properties": {
                        "CertificateId": { "Ref": "AWS::IoT::Certificate::Id" },
                        "Status": "ACTIVE"
                    },
                    "OverrideSettings": { "Status": "DO_NOTHING" }
                },
                "policy": {
                    "Type": "AWS::IoT::Policy",
                    "Properties": {
                        "PolicyDocument": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iot:Connect\"],\"Resource\":[\"*\"]}]}"
                    }
                }
            }
        })
    }

    fn mutated(f: impl FnOnce(&mut Value)) -> Value {
        let mut body = guide_like_template();
        f(&mut body);
        body
    }

    fn thing_props(body: &mut Value) -> &mut Map<String, Value> {
        body["Resources"]["thing"]["Properties"]
            .as_object_mut()
            .unwrap()
    }

    fn subject_jp() -> DeviceSubject {
        DeviceSubject {
            common_name: Some("Thing-0001".into()),
            country: Some("JP".into()),
            organization: Some("Acme".into()),
            organizational_unit: Some("Line3".into()),
            distinguished_name_qualifier: None,
            state_name: Some("Tokyo".into()),
            serial_number: Some("SN-42".into()),
            certificate_id: "ab".repeat(32),
        }
    }

    // --- request shape --------------------------------------------------------------------

    #[test]
    fn template_spec_parses_each_documented_form() {
        let cases: &[(&str, Value)] = &[
            ("body", json!({ "body": guide_like_template() })),
            (
                "simple",
                json!({ "simple": {
                    "attributes": { "Country": "Country", "version": "v1" },
                    "policy_name": "My_IoT_Policy",
                    "thing_type": null,
                    "thing_groups": []
                }}),
            ),
            (
                "simple with defaults",
                json!({ "simple": { "policy_name": "My_IoT_Policy" } }),
            ),
            ("name", json!({ "name": "an-existing-JITP-template" })),
        ];
        for (desc, value) in cases {
            let spec: TemplateSpec =
                serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{desc}: {e}"));
            let matches = match (&spec, *desc) {
                (TemplateSpec::Body(b), "body") => *b == guide_like_template(),
                (TemplateSpec::Simple(s), "simple") => {
                    s.policy_name == "My_IoT_Policy" && s.attributes.len() == 2
                }
                (TemplateSpec::Simple(s), "simple with defaults") => {
                    s.attributes.is_empty() && s.thing_type.is_none() && s.thing_groups.is_empty()
                }
                (TemplateSpec::Name(n), "name") => n == "an-existing-JITP-template",
                _ => false,
            };
            assert!(matches, "{desc}: parsed as {spec:?}");
            // And it serializes back to the same shape.
            let back = serde_json::to_value(&spec).unwrap();
            let again: TemplateSpec = serde_json::from_value(back).unwrap();
            assert_eq!(again, spec, "{desc}");
        }
    }

    #[test]
    fn template_spec_rejects_malformed_requests() {
        let cases: &[(&str, Value)] = &[
            (
                "unknown field in simple",
                json!({ "simple": { "policy_name": "P", "thing_name": "x" } }),
            ),
            ("simple without policy_name", json!({ "simple": {} })),
            ("two variants", json!({ "name": "a", "body": {} })),
            ("unknown variant", json!({ "raw": {} })),
            ("name not a string", json!({ "name": 3 })),
            ("bare string", json!("body")),
        ];
        for (desc, value) in cases {
            assert!(
                serde_json::from_value::<TemplateSpec>(value.clone()).is_err(),
                "{desc} should not parse"
            );
        }
    }

    #[test]
    fn resolve_handles_each_form() {
        let body = TemplateSpec::Body(guide_like_template()).resolve().unwrap();
        assert!(matches!(body, ResolvedTemplate::Body(_)));
        let simple = TemplateSpec::Simple(simple(json!({ "policy_name": "P" })))
            .resolve()
            .unwrap();
        assert!(matches!(simple, ResolvedTemplate::Body(_)));
        let named = TemplateSpec::Name("jitp_1".into()).resolve().unwrap();
        assert_eq!(
            named.registration_config("not checked for names").unwrap(),
            json!({ "templateName": "jitp_1" })
        );
        let err = TemplateSpec::Name("has space".into())
            .resolve()
            .unwrap_err();
        assert!(
            err.to_string().contains("provisioning template name"),
            "{err}"
        );
        let err = body
            .registration_config("arn:aws:iam::1:role/x")
            .unwrap_err();
        assert!(matches!(err, TemplateError::InvalidRoleArn { .. }), "{err}");
    }

    // --- certificate fields -----------------------------------------------------------------

    #[test]
    fn certificate_fields_map_between_short_and_parameter_names() {
        let table = [
            ("CommonName", "AWS::IoT::Certificate::CommonName"),
            ("Country", "AWS::IoT::Certificate::Country"),
            ("Organization", "AWS::IoT::Certificate::Organization"),
            (
                "OrganizationalUnit",
                "AWS::IoT::Certificate::OrganizationalUnit",
            ),
            (
                "DistinguishedNameQualifier",
                "AWS::IoT::Certificate::DistinguishedNameQualifier",
            ),
            ("StateName", "AWS::IoT::Certificate::StateName"),
            ("SerialNumber", "AWS::IoT::Certificate::SerialNumber"),
            ("Id", "AWS::IoT::Certificate::Id"),
        ];
        assert_eq!(table.len(), CertificateField::ALL.len());
        for (short, parameter) in table {
            let field = CertificateField::from_short_name(short).unwrap();
            assert_eq!(field.parameter_name(), parameter);
            assert_eq!(
                CertificateField::from_parameter_name(parameter),
                Some(field)
            );
            assert_eq!(field.short_name(), short);
        }
        for unknown in [
            "country",
            "C",
            "CN",
            "Email",
            "AWS::IoT::Certificate::Email",
            "",
        ] {
            assert_eq!(
                CertificateField::from_short_name(unknown),
                None,
                "{unknown}"
            );
            assert_eq!(
                CertificateField::from_parameter_name(unknown),
                None,
                "{unknown}"
            );
        }
    }

    // --- simple templates -------------------------------------------------------------------

    #[test]
    fn builds_the_documented_simple_template() {
        let t = simple(json!({
            "attributes": { "Country": "Country", "version": "v1" },
            "policy_name": "My_IoT_Policy",
            "thing_type": null,
            "thing_groups": []
        }));
        let body = build_simple(&t).unwrap();
        assert_eq!(
            body,
            json!({
                "Parameters": {
                    "AWS::IoT::Certificate::CommonName": { "Type": "String" },
                    "AWS::IoT::Certificate::Country": { "Type": "String" },
                    "AWS::IoT::Certificate::Id": { "Type": "String" }
                },
                "Resources": {
                    "thing": {
                        "Type": "AWS::IoT::Thing",
                        "Properties": {
                            "ThingName": { "Ref": "AWS::IoT::Certificate::CommonName" },
                            "AttributePayload": {
                                "Country": { "Ref": "AWS::IoT::Certificate::Country" },
                                "version": "v1"
                            }
                        }
                    },
                    "certificate": {
                        "Type": "AWS::IoT::Certificate",
                        "Properties": {
                            "CertificateId": { "Ref": "AWS::IoT::Certificate::Id" },
                            "Status": "ACTIVE"
                        }
                    },
                    "policy": {
                        "Type": "AWS::IoT::Policy",
                        "Properties": { "PolicyName": "My_IoT_Policy" }
                    }
                }
            })
        );
        let validated = validate(&body).unwrap();
        assert_eq!(
            validated.referenced_fields(),
            BTreeSet::from([
                CertificateField::CommonName,
                CertificateField::Country,
                CertificateField::Id
            ])
        );
    }

    #[test]
    fn valid_simple_templates_build_and_validate() {
        let fifty: Map<String, Value> = (0..50)
            .map(|i| (format!("a{i}"), Value::String("x".into())))
            .collect();
        let cases: &[(&str, Value, &[CertificateField])] = &[
            ("policy only", json!({ "policy_name": "P" }), &[]),
            (
                "every field as an attribute",
                json!({
                    "policy_name": "p+=,.@-_1",
                    "thing_type": "Sensor:v2",
                    "attributes": {
                        "cn": "CommonName", "c": "Country", "o": "Organization",
                        "ou": "OrganizationalUnit", "dnq": "DistinguishedNameQualifier",
                        "st": "StateName", "sn": "SerialNumber", "id": "Id"
                    }
                }),
                &CertificateField::ALL,
            ),
            (
                "type and groups",
                json!({
                    "policy_name": "P",
                    "thing_type": "T",
                    "thing_groups": ["line-1", "plant:osaka"],
                    "attributes": { "a/b:c#d@e,f.g_h-i": "x=[1]", "empty": "" }
                }),
                &[],
            ),
            (
                "three attributes without a type",
                json!({ "policy_name": "P", "attributes": { "a": "1", "b": "2", "c": "3" } }),
                &[],
            ),
            (
                "fifty attributes with a type",
                json!({ "policy_name": "P", "thing_type": "T", "attributes": fifty }),
                &[],
            ),
            (
                "lower-case field name is a constant",
                json!({ "policy_name": "P", "attributes": { "c": "country" } }),
                &[],
            ),
        ];
        for (desc, value, extra) in cases {
            let body =
                build_simple(&simple(value.clone())).unwrap_or_else(|e| panic!("{desc}: {e}"));
            let validated = validate(&body).unwrap_or_else(|e| panic!("{desc}: {e}"));
            let mut expected = BTreeSet::from([CertificateField::CommonName, CertificateField::Id]);
            expected.extend(extra.iter().copied());
            assert_eq!(validated.referenced_fields(), expected, "{desc}");
        }
    }

    #[test]
    fn invalid_simple_templates_are_rejected_with_a_clear_message() {
        let long = "a".repeat(129);
        let cases: &[(&str, Value, &str)] = &[
            (
                "empty policy name",
                json!({ "policy_name": "" }),
                "policy_name is \"\", which is not a valid AWS IoT policy name",
            ),
            (
                "policy name with a space",
                json!({ "policy_name": "my policy" }),
                "policy_name is \"my policy\", which is not a valid AWS IoT policy name",
            ),
            (
                "policy name too long",
                json!({ "policy_name": long }),
                "not a valid AWS IoT policy name (1-128 characters",
            ),
            (
                "thing type with a dot",
                json!({ "policy_name": "P", "thing_type": "a.b" }),
                "thing_type is \"a.b\", which is not a valid thing type name",
            ),
            (
                "empty thing type",
                json!({ "policy_name": "P", "thing_type": "" }),
                "thing_type is \"\"",
            ),
            (
                "thing group with a slash",
                json!({ "policy_name": "P", "thing_groups": ["ok", "a/b"] }),
                "thing_groups[1] is \"a/b\", which is not a valid thing group name",
            ),
            (
                "duplicate thing group",
                json!({ "policy_name": "P", "thing_groups": ["g", "g"] }),
                "thing_groups lists thing group \"g\" twice",
            ),
            (
                "attribute name with a space",
                json!({ "policy_name": "P", "attributes": { "my attr": "v" } }),
                "an attribute name in attributes is \"my attr\", which is not a valid thing \
                 attribute name",
            ),
            (
                "attribute value with a space",
                json!({ "policy_name": "P", "attributes": { "plant": "Osaka 1" } }),
                "attributes.plant is \"Osaka 1\", which is not a valid thing attribute value",
            ),
            (
                "attribute value too long",
                json!({ "policy_name": "P", "attributes": { "a": "x".repeat(801) } }),
                "attributes.a is \"xxxx",
            ),
            (
                "four attributes without a type",
                json!({ "policy_name": "P",
                        "attributes": { "a": "1", "b": "2", "c": "3", "d": "4" } }),
                "attributes has 4 attributes, but a thing without a thing type may have at most \
                 3; set a thing type",
            ),
        ];
        for (desc, value, expected) in cases {
            let err = build_simple(&simple(value.clone())).expect_err(desc);
            let message = err.to_string();
            assert!(
                message.contains(expected),
                "{desc}: {message:?} does not contain {expected:?}"
            );
        }

        let fifty_one: Map<String, Value> = (0..51)
            .map(|i| (format!("a{i}"), Value::String("x".into())))
            .collect();
        let err = build_simple(&simple(
            json!({ "policy_name": "P", "thing_type": "T", "attributes": fifty_one }),
        ))
        .unwrap_err();
        assert_eq!(
            err,
            TemplateError::TooManyAttributes {
                path: "attributes".into(),
                count: 51,
                has_thing_type: true
            }
        );
    }

    #[test]
    fn a_simple_template_too_large_for_aws_is_rejected() {
        let big: Map<String, Value> = (0..20)
            .map(|i| (format!("attr{i}"), Value::String("v".repeat(800))))
            .collect();
        let err = build_simple(&simple(
            json!({ "policy_name": "P", "thing_type": "T", "attributes": big }),
        ))
        .unwrap_err();
        assert!(
            matches!(err, TemplateError::TooLarge { len } if len > 10240),
            "{err}"
        );
        assert!(err.to_string().contains("at most 10240"));
    }

    // --- raw templates ----------------------------------------------------------------------

    #[test]
    fn the_guide_like_template_validates() {
        let t = validate(&guide_like_template()).unwrap();
        assert_eq!(t.body(), &guide_like_template());
        assert_eq!(
            t.referenced_fields(),
            BTreeSet::from([
                CertificateField::CommonName,
                CertificateField::Country,
                CertificateField::SerialNumber,
                CertificateField::Id,
            ])
        );
    }

    #[test]
    fn valid_raw_variations_are_accepted() {
        let cases: Vec<(&str, Value)> = vec![
            (
                "Fn::Join thing name",
                mutated(|b| {
                    thing_props(b).insert(
                        "ThingName".into(),
                        json!({ "Fn::Join": ["-", ["dev", { "Ref": "AWS::IoT::Certificate::CommonName" }]] }),
                    );
                }),
            ),
            (
                "nested Fn::Join",
                mutated(|b| {
                    thing_props(b).insert(
                        "ThingName".into(),
                        json!({ "Fn::Join": ["", [
                            { "Fn::Join": ["_", [{ "Ref": "AWS::IoT::Certificate::Country" }, "x"]] },
                            { "Ref": "AWS::IoT::Certificate::CommonName" }
                        ]] }),
                    );
                }),
            ),
            (
                "certificate without Status",
                mutated(|b| {
                    b["Resources"]["certificate"]["Properties"]
                        .as_object_mut()
                        .unwrap()
                        .remove("Status");
                }),
            ),
            (
                "named policy plus inline policy",
                mutated(|b| {
                    b["Resources"]["policy2"] = json!({
                        "Type": "AWS::IoT::Policy",
                        "Properties": { "PolicyName": "Existing_Policy" }
                    });
                }),
            ),
            (
                "no policy at all",
                mutated(|b| {
                    b["Resources"].as_object_mut().unwrap().remove("policy");
                }),
            ),
            (
                "thing without type, three attributes",
                mutated(|b| {
                    let p = thing_props(b);
                    p.remove("ThingTypeName");
                    p["AttributePayload"]["third"] = json!("3");
                    b["Resources"]["thing"]
                        .as_object_mut()
                        .unwrap()
                        .remove("OverrideSettings");
                }),
            ),
        ];
        for (desc, body) in cases {
            validate(&body).unwrap_or_else(|e| panic!("{desc}: {e}"));
        }
    }

    #[test]
    fn raw_rule_violations_are_rejected_with_a_clear_message() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "not an object",
                json!("{\"Parameters\":{}}"),
                "a JITP template must be a JSON object with Parameters and Resources, not a string",
            ),
            (
                "fleet provisioning section",
                mutated(|b| b["Mappings"] = json!({})),
                "top-level key \"Mappings\" is not part of a JITP template",
            ),
            (
                "no Parameters",
                mutated(|b| {
                    b.as_object_mut().unwrap().remove("Parameters");
                }),
                "the template has no Parameters object",
            ),
            (
                "Resources not an object",
                mutated(|b| b["Resources"] = json!([])),
                "Resources must be a JSON object, not an array",
            ),
            (
                "parameter JITP does not supply",
                mutated(|b| {
                    b["Parameters"]["AWS::IoT::Certificate::Email"] = json!({ "Type": "String" })
                }),
                "Parameters declares \"AWS::IoT::Certificate::Email\", which JITP does not \
                 supply; use one of AWS::IoT::Certificate::CommonName",
            ),
            (
                "fleet-style parameter",
                mutated(|b| b["Parameters"]["ThingName"] = json!({ "Type": "String" })),
                "Parameters declares \"ThingName\", which JITP does not supply",
            ),
            (
                "parameter with a Default",
                mutated(|b| {
                    b["Parameters"]["AWS::IoT::Certificate::Country"] =
                        json!({ "Type": "String", "Default": "JP" })
                }),
                "Parameters.AWS::IoT::Certificate::Country has a Default",
            ),
            (
                "parameter of another type",
                mutated(|b| {
                    b["Parameters"]["AWS::IoT::Certificate::Country"] = json!({ "Type": "Number" })
                }),
                "Parameters.AWS::IoT::Certificate::Country must be {\"Type\": \"String\"}",
            ),
            (
                "parameter with an unknown key",
                mutated(|b| {
                    b["Parameters"]["AWS::IoT::Certificate::Country"] =
                        json!({ "Type": "String", "Description": "c" })
                }),
                "has key \"Description\"; a JITP parameter takes only \"Type\": \"String\"",
            ),
            (
                "declared but unused parameter",
                mutated(|b| {
                    b["Parameters"]["AWS::IoT::Certificate::Organization"] =
                        json!({ "Type": "String" })
                }),
                "Parameters declares AWS::IoT::Certificate::Organization but no resource uses it",
            ),
            (
                "Ref to an undeclared certificate field",
                mutated(|b| {
                    thing_props(b)["AttributePayload"]["org"] =
                        json!({ "Ref": "AWS::IoT::Certificate::Organization" })
                }),
                "Resources.thing.Properties.AttributePayload.org refers to \
                 AWS::IoT::Certificate::Organization, which Parameters does not declare; add",
            ),
            (
                "Ref to a resource",
                mutated(|b| thing_props(b)["AttributePayload"]["p"] = json!({ "Ref": "policy" })),
                "refers to the resource \"policy\"; a JITP template can only Ref",
            ),
            (
                "Ref to something unknown",
                mutated(|b| {
                    thing_props(b)["AttributePayload"]["r"] = json!({ "Ref": "AWS::Region" })
                }),
                "refers to \"AWS::Region\", which JITP does not supply",
            ),
            (
                "Ref inside Fn::Join to an undeclared field",
                mutated(|b| {
                    thing_props(b)["ThingName"] = json!({ "Fn::Join": ["-", [
                        { "Ref": "AWS::IoT::Certificate::CommonName" },
                        { "Ref": "AWS::IoT::Certificate::StateName" }
                    ]] })
                }),
                "Resources.thing.Properties.ThingName.Fn::Join[1][1] refers to \
                 AWS::IoT::Certificate::StateName, which Parameters does not declare",
            ),
            (
                "Ref with extra keys",
                mutated(|b| {
                    thing_props(b)["ThingName"] =
                        json!({ "Ref": "AWS::IoT::Certificate::CommonName", "x": 1 })
                }),
                "a Ref must be {\"Ref\": \"<parameter name>\"} with no other keys",
            ),
            (
                "unsupported intrinsic function",
                mutated(|b| {
                    thing_props(b)["ThingName"] =
                        json!({ "Fn::Sub": "dev-${AWS::IoT::Certificate::CommonName}" })
                }),
                "Resources.thing.Properties.ThingName uses Fn::Sub; factory-ca accepts only Ref \
                 and Fn::Join",
            ),
            (
                "malformed Fn::Join",
                mutated(|b| thing_props(b)["ThingName"] = json!({ "Fn::Join": ["-"] })),
                "Fn::Join must be [\"<delimiter>\", [<string, Ref or Fn::Join>, ...]]",
            ),
            (
                "number as an attribute value",
                mutated(|b| thing_props(b)["AttributePayload"]["n"] = json!(3)),
                "Resources.thing.Properties.AttributePayload.n must be a string, a Ref or an \
                 Fn::Join, not a number",
            ),
            (
                "unsupported resource type",
                mutated(|b| {
                    b["Resources"]["role"] = json!({ "Type": "AWS::IAM::Role", "Properties": {} })
                }),
                "Resources.role.Type is \"AWS::IAM::Role\"; a JITP template may only declare",
            ),
            (
                "resource without Type",
                mutated(|b| {
                    b["Resources"]["policy"]
                        .as_object_mut()
                        .unwrap()
                        .remove("Type");
                }),
                "Resources.policy has no Type; add it",
            ),
            (
                "resource without Properties",
                mutated(|b| {
                    b["Resources"]["policy"]
                        .as_object_mut()
                        .unwrap()
                        .remove("Properties");
                }),
                "Resources.policy has no Properties; add it",
            ),
            (
                "resource with an unknown key",
                mutated(|b| b["Resources"]["policy"]["DependsOn"] = json!("thing")),
                "Resources.policy.DependsOn is not allowed: a resource has only Type, \
                 Properties and OverrideSettings",
            ),
            (
                "two things",
                mutated(|b| b["Resources"]["thing2"] = b["Resources"]["thing"].clone()),
                "the template declares 2 AWS::IoT::Thing resources; declare exactly one",
            ),
            (
                "no thing",
                mutated(|b| {
                    b["Resources"].as_object_mut().unwrap().remove("thing");
                }),
                "declares 0 AWS::IoT::Thing resources",
            ),
            (
                "no certificate",
                mutated(|b| {
                    b["Resources"]
                        .as_object_mut()
                        .unwrap()
                        .remove("certificate");
                }),
                "the template declares 0 AWS::IoT::Certificate resources; declare exactly one, \
                 with CertificateId {\"Ref\": \"AWS::IoT::Certificate::Id\"}",
            ),
            (
                "certificate from another parameter",
                mutated(|b| {
                    b["Resources"]["certificate"]["Properties"]["CertificateId"] =
                        json!({ "Ref": "AWS::IoT::Certificate::SerialNumber" })
                }),
                "Resources.certificate.Properties.CertificateId must be exactly {\"Ref\": \
                 \"AWS::IoT::Certificate::Id\"}",
            ),
            (
                "certificate with a constant ID",
                mutated(|b| {
                    b["Resources"]["certificate"]["Properties"]["CertificateId"] = json!("abc")
                }),
                "CertificateId must be exactly",
            ),
            (
                "certificate from a CSR",
                mutated(|b| {
                    b["Resources"]["certificate"]["Properties"]["CertificateSigningRequest"] =
                        json!({ "Ref": "AWS::IoT::Certificate::CommonName" })
                }),
                "Resources.certificate.Properties.CertificateSigningRequest is not allowed: a \
                 JITP certificate takes only CertificateId",
            ),
            (
                "lower-case certificate status",
                mutated(|b| {
                    b["Resources"]["certificate"]["Properties"]["Status"] = json!("Active")
                }),
                "Resources.certificate.Properties.Status is \"Active\"; use \"ACTIVE\"",
            ),
            (
                "constant thing name",
                mutated(|b| thing_props(b)["ThingName"] = json!("Thing-0001")),
                "Resources.thing.Properties.ThingName is a constant, so every device would \
                 become the same thing",
            ),
            (
                "thing without a name",
                mutated(|b| {
                    thing_props(b).remove("ThingName");
                }),
                "Resources.thing.Properties has no ThingName; add it",
            ),
            (
                "unsupported thing property",
                mutated(|b| {
                    thing_props(b).insert("BillingGroup".into(), json!("bg"));
                }),
                "Resources.thing.Properties.BillingGroup is not allowed: a thing takes ThingName, \
                 AttributePayload, ThingTypeName and ThingGroups",
            ),
            (
                "invalid attribute name",
                mutated(|b| thing_props(b)["AttributePayload"]["bad name"] = json!("v")),
                "an attribute name in Resources.thing.Properties.AttributePayload is \"bad name\"",
            ),
            (
                "invalid constant attribute value",
                mutated(|b| thing_props(b)["AttributePayload"]["model"] = json!("Sensor V2")),
                "Resources.thing.Properties.AttributePayload.model is \"Sensor V2\", which is not \
                 a valid thing attribute value",
            ),
            (
                "four attributes without a thing type",
                mutated(|b| {
                    let p = thing_props(b);
                    p.remove("ThingTypeName");
                    p["AttributePayload"]["c"] = json!("3");
                    p["AttributePayload"]["d"] = json!("4");
                    b["Resources"]["thing"]
                        .as_object_mut()
                        .unwrap()
                        .remove("OverrideSettings");
                }),
                "Resources.thing.Properties.AttributePayload has 4 attributes, but a thing \
                 without a thing type may have at most 3",
            ),
            (
                "invalid thing type",
                mutated(|b| thing_props(b)["ThingTypeName"] = json!("Temp Sensor")),
                "Resources.thing.Properties.ThingTypeName is \"Temp Sensor\", which is not a \
                 valid thing type name",
            ),
            (
                "ThingGroups not a list",
                mutated(|b| thing_props(b)["ThingGroups"] = json!("line-3")),
                "Resources.thing.Properties.ThingGroups must be a JSON array, not a string",
            ),
            (
                "invalid thing group",
                mutated(|b| thing_props(b)["ThingGroups"][0] = json!("line 3")),
                "Resources.thing.Properties.ThingGroups[0] is \"line 3\", which is not a valid \
                 thing group name",
            ),
            (
                "duplicate thing group",
                mutated(|b| {
                    thing_props(b)["ThingGroups"] = json!([
                        "g", "g", { "Ref": "AWS::IoT::Certificate::Country" }
                    ])
                }),
                "Resources.thing.Properties.ThingGroups lists thing group \"g\" twice",
            ),
            (
                "policy with name and document",
                mutated(|b| b["Resources"]["policy"]["Properties"]["PolicyName"] = json!("P")),
                "Resources.policy.Properties must have exactly one of PolicyName",
            ),
            (
                "policy with neither",
                mutated(|b| b["Resources"]["policy"]["Properties"] = json!({})),
                "Resources.policy.Properties must have exactly one of PolicyName",
            ),
            (
                "policy document as an object",
                mutated(|b| {
                    b["Resources"]["policy"]["Properties"]["PolicyDocument"] =
                        json!({ "Version": "2012-10-17" })
                }),
                "Resources.policy.Properties.PolicyDocument must be a policy document: a JSON \
                 object serialized as a string",
            ),
            (
                "policy document that is not JSON",
                mutated(|b| {
                    b["Resources"]["policy"]["Properties"]["PolicyDocument"] = json!("{not json")
                }),
                "PolicyDocument must be a policy document",
            ),
            (
                "invalid policy name",
                mutated(|b| {
                    b["Resources"]["policy"]["Properties"] = json!({ "PolicyName": "my policy" })
                }),
                "Resources.policy.Properties.PolicyName is \"my policy\", which is not a valid AWS \
                 IoT policy name",
            ),
            (
                "override settings on a policy",
                mutated(|b| b["Resources"]["policy"]["OverrideSettings"] = json!({})),
                "Resources.policy.OverrideSettings is not allowed: policy resources have no \
                 OverrideSettings",
            ),
            (
                "MERGE for a thing type",
                mutated(|b| {
                    b["Resources"]["thing"]["OverrideSettings"]["ThingTypeName"] = json!("MERGE")
                }),
                "Resources.thing.OverrideSettings.ThingTypeName is \"MERGE\"; use one of \
                 DO_NOTHING, REPLACE, FAIL",
            ),
            (
                "unknown override value",
                mutated(|b| {
                    b["Resources"]["certificate"]["OverrideSettings"]["Status"] = json!("KEEP")
                }),
                "Resources.certificate.OverrideSettings.Status is \"KEEP\"",
            ),
            (
                "unknown override key",
                mutated(|b| {
                    b["Resources"]["thing"]["OverrideSettings"]["ThingName"] = json!("REPLACE")
                }),
                "Resources.thing.OverrideSettings.ThingName is not allowed",
            ),
            (
                "template over 10240 characters",
                mutated(|b| {
                    b["Resources"]["policy"]["Properties"]["PolicyDocument"] = json!(format!(
                        "{{\"Version\":\"2012-10-17\",\"Sid\":\"{}\"}}",
                        "x".repeat(10240)
                    ))
                }),
                "characters as JSON, but AWS accepts a templateBody of at most 10240",
            ),
        ];
        for (desc, body, expected) in cases {
            let err = validate(&body).expect_err(desc);
            let message = err.to_string();
            assert!(
                message.contains(expected),
                "{desc}: {message:?} does not contain {expected:?}"
            );
        }
    }

    // --- registration config ----------------------------------------------------------------

    #[test]
    fn registration_config_round_trips_the_body() {
        let role = "arn:aws:iam::123456789012:role/JITPRole";
        let bodies = [
            guide_like_template(),
            build_simple(&simple(json!({
                "attributes": { "Country": "Country", "version": "v1" },
                "policy_name": "My_IoT_Policy"
            })))
            .unwrap(),
            // Characters a hand-escaped templateBody gets wrong: quotes, backslashes, newlines,
            // non-ASCII.
            mutated(|b| {
                b["Resources"]["policy"]["Properties"]["PolicyDocument"] = json!(
                    "{\"Version\":\"2012-10-17\",\n\"Statement\":[{\"Sid\":\"a\\\\b \u{00e9}\",\
                     \"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"*\"}]}"
                )
            }),
        ];
        for body in bodies {
            validate(&body).unwrap();
            let config = registration_config(&body, role);
            let object = config.as_object().unwrap();
            assert_eq!(object.len(), 2);
            assert_eq!(config["roleArn"], json!(role));
            let text = config["templateBody"]
                .as_str()
                .expect("templateBody is a string");
            let parsed: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parsed, body);
            // The config itself survives a trip through JSON text (what the SDK sends).
            let wire: Value = serde_json::from_str(&config.to_string()).unwrap();
            assert_eq!(wire, config);
        }
    }

    #[test]
    fn registration_config_named_carries_only_the_name() {
        assert_eq!(
            registration_config_named("an-existing-JITP-template"),
            json!({ "templateName": "an-existing-JITP-template" })
        );
    }

    #[test]
    fn template_names_follow_the_aws_rule() {
        for ok in ["a", "JITP_template-1", &"x".repeat(36)] {
            validate_template_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "has space", "dot.ted", &"x".repeat(37), "ünï"] {
            let err = validate_template_name(bad).expect_err(bad);
            assert!(
                err.to_string().contains("provisioning template name"),
                "{err}"
            );
        }
    }

    #[test]
    fn role_arns_are_checked() {
        let accepted = [
            "arn:aws:iam::123456789012:role/JITPRole",
            "arn:aws-cn:iam::123456789012:role/JITPRole",
            "arn:aws-us-gov:iam::123456789012:role/service-role/iot/JITP+Role=,.@_-1",
            "arn:aws:iam::000000000000:role/a",
        ];
        for arn in accepted {
            validate_role_arn(arn).unwrap_or_else(|e| panic!("{arn}: {e}"));
        }
        let long_name = format!("arn:aws:iam::123456789012:role/{}", "r".repeat(65));
        let long_path = format!("arn:aws:iam::123456789012:role/{}/r", "p".repeat(2048));
        let rejected: &[(&str, &str)] = &[
            ("", "six parts"),
            ("JITPRole", "six parts"),
            (
                "arn:aws:iam::123456789012:user/alice",
                "the resource must be role/<name>",
            ),
            (
                "arn:aws:iot::123456789012:role/JITPRole",
                "the service must be iam",
            ),
            (
                "arn:aws:iam:us-east-1:123456789012:role/JITPRole",
                "no region",
            ),
            ("arn:aws:iam::12345678901:role/JITPRole", "12 digits"),
            ("arn:aws:iam::1234567890123:role/JITPRole", "12 digits"),
            ("arn:aws:iam::12345678901a:role/JITPRole", "12 digits"),
            ("arn:azure:iam::123456789012:role/JITPRole", "partition"),
            ("arn:AWS:iam::123456789012:role/JITPRole", "partition"),
            ("arn:aws:iam::123456789012:role/", "role name"),
            ("arn:aws:iam::123456789012:role/has space", "role name"),
            ("arn:aws:iam::123456789012:role/path/", "role name"),
            ("arn:aws:iam::123456789012:role/pa th/name", "role path"),
            (&long_name, "role name"),
            (&long_path, "role path"),
        ];
        for (arn, reason) in rejected {
            let err = validate_role_arn(arn).expect_err(arn);
            let message = err.to_string();
            assert!(message.contains(reason), "{arn}: {message}");
            assert!(message.contains("expected arn:aws:iam::<12-digit account>:role/<name>"));
        }
    }

    // --- preview ----------------------------------------------------------------------------

    #[test]
    fn preview_resolves_the_guide_like_template() {
        let t = validate(&guide_like_template()).unwrap();
        let preview = preview(&t, &subject_jp()).unwrap();
        assert_eq!(
            preview,
            Preview {
                thing_name: "Thing-0001".into(),
                attributes: BTreeMap::from([
                    ("model".into(), "sensor-v2".into()),
                    ("serial".into(), "SN-42".into()),
                ]),
                thing_type: Some("TempSensor".into()),
                thing_groups: vec!["line-3".into(), "JP".into()],
                policy_names: vec![],
                inline_policies: 1,
                certificate_status: CertificateStatus::Active,
                problems: vec![],
            }
        );
        let serialized = serde_json::to_value(&preview).unwrap();
        assert_eq!(serialized["certificate_status"], json!("ACTIVE"));
        assert_eq!(serialized["thing_groups"], json!(["line-3", "JP"]));
    }

    #[test]
    fn preview_resolves_simple_templates_and_joins() {
        let cases: Vec<(&str, Value, Preview)> = vec![
            (
                "simple with every kind of attribute",
                build_simple(&simple(json!({
                    "attributes": { "Country": "Country", "version": "v1", "cert": "Id" },
                    "policy_name": "My_IoT_Policy",
                    "thing_type": "Sensor",
                    "thing_groups": ["line-3"]
                })))
                .unwrap(),
                Preview {
                    thing_name: "Thing-0001".into(),
                    attributes: BTreeMap::from([
                        ("Country".into(), "JP".into()),
                        ("cert".into(), "ab".repeat(32)),
                        ("version".into(), "v1".into()),
                    ]),
                    thing_type: Some("Sensor".into()),
                    thing_groups: vec!["line-3".into()],
                    policy_names: vec!["My_IoT_Policy".into()],
                    inline_policies: 0,
                    certificate_status: CertificateStatus::Active,
                    problems: vec![],
                },
            ),
            (
                "Fn::Join thing name and Ref policy name, inactive certificate",
                json!({
                    "Parameters": {
                        "AWS::IoT::Certificate::CommonName": { "Type": "String" },
                        "AWS::IoT::Certificate::OrganizationalUnit": { "Type": "String" },
                        "AWS::IoT::Certificate::Id": { "Type": "String" }
                    },
                    "Resources": {
                        "thing": { "Type": "AWS::IoT::Thing", "Properties": {
                            "ThingName": { "Fn::Join": ["_", [
                                { "Ref": "AWS::IoT::Certificate::OrganizationalUnit" },
                                { "Ref": "AWS::IoT::Certificate::CommonName" }
                            ]] }
                        }},
                        "cert": { "Type": "AWS::IoT::Certificate", "Properties": {
                            "CertificateId": { "Ref": "AWS::IoT::Certificate::Id" },
                            "Status": "INACTIVE"
                        }},
                        "policy": { "Type": "AWS::IoT::Policy", "Properties": {
                            "PolicyName": { "Fn::Join": ["-", ["policy",
                                { "Ref": "AWS::IoT::Certificate::OrganizationalUnit" }]] }
                        }}
                    }
                }),
                Preview {
                    thing_name: "Line3_Thing-0001".into(),
                    attributes: BTreeMap::new(),
                    thing_type: None,
                    thing_groups: vec![],
                    policy_names: vec!["policy-Line3".into()],
                    inline_policies: 0,
                    certificate_status: CertificateStatus::Inactive,
                    problems: vec![
                        "the certificate would be INACTIVE, so the device could not connect \
                         after provisioning"
                            .into(),
                    ],
                },
            ),
        ];
        for (desc, body, expected) in cases {
            let t = validate(&body).unwrap_or_else(|e| panic!("{desc}: {e}"));
            assert_eq!(preview(&t, &subject_jp()).unwrap(), expected, "{desc}");
        }
    }

    #[test]
    fn preview_reports_the_first_missing_field() {
        let every_field = build_simple(&simple(json!({
            "policy_name": "P",
            "thing_type": "T",
            "attributes": {
                "c": "Country", "o": "Organization", "ou": "OrganizationalUnit",
                "dnq": "DistinguishedNameQualifier", "st": "StateName", "sn": "SerialNumber"
            }
        })))
        .unwrap();
        let t = validate(&every_field).unwrap();
        let full = DeviceSubject {
            distinguished_name_qualifier: Some("q1".into()),
            ..subject_jp()
        };
        preview(&t, &full).unwrap();

        let cases: Vec<(&str, DeviceSubject, CertificateField)> = vec![
            (
                "no CN",
                DeviceSubject {
                    common_name: None,
                    ..full.clone()
                },
                CertificateField::CommonName,
            ),
            (
                "no C and no O: the first in field order",
                DeviceSubject {
                    country: None,
                    organization: None,
                    ..full.clone()
                },
                CertificateField::Country,
            ),
            (
                "empty OU counts as missing",
                DeviceSubject {
                    organizational_unit: Some(String::new()),
                    ..full.clone()
                },
                CertificateField::OrganizationalUnit,
            ),
            (
                "no dnQualifier",
                subject_jp(),
                CertificateField::DistinguishedNameQualifier,
            ),
            (
                "no ST",
                DeviceSubject {
                    state_name: None,
                    ..full.clone()
                },
                CertificateField::StateName,
            ),
            (
                "no serialNumber",
                DeviceSubject {
                    serial_number: None,
                    ..full.clone()
                },
                CertificateField::SerialNumber,
            ),
            (
                "no certificate ID",
                DeviceSubject {
                    certificate_id: String::new(),
                    ..full.clone()
                },
                CertificateField::Id,
            ),
        ];
        for (desc, subject, field) in cases {
            assert_eq!(preview(&t, &subject), Err(MissingField(field)), "{desc}");
        }

        // A field the template does not use may be missing.
        let only_cn =
            validate(&build_simple(&simple(json!({ "policy_name": "P" }))).unwrap()).unwrap();
        let bare = DeviceSubject {
            common_name: Some("Thing-0001".into()),
            certificate_id: "ab".repeat(32),
            ..DeviceSubject::default()
        };
        assert_eq!(preview(&only_cn, &bare).unwrap().thing_name, "Thing-0001");

        let message = MissingField(CertificateField::Country).to_string();
        assert!(
            message.contains(
                "the template uses AWS::IoT::Certificate::Country, but the certificate's subject \
                 has no C attribute"
            ),
            "{message}"
        );
    }

    #[test]
    fn preview_flags_values_aws_would_refuse() {
        let t = validate(
            &build_simple(&simple(json!({
                "policy_name": "P",
                "attributes": { "org": "Organization" }
            })))
            .unwrap(),
        )
        .unwrap();
        let subject = DeviceSubject {
            common_name: Some("Thing 0001".into()),
            organization: Some("Acme Corp".into()),
            ..subject_jp()
        };
        let preview = preview(&t, &subject).unwrap();
        assert_eq!(preview.attributes["org"], "Acme Corp");
        assert_eq!(preview.problems.len(), 2, "{:?}", preview.problems);
        assert!(preview.problems[0].starts_with(
            "the thing name would be \"Thing 0001\", which is not a valid thing name"
        ));
        assert!(preview.problems[1].starts_with(
            "attribute org would be \"Acme Corp\", which is not a valid thing attribute value"
        ));
    }
}
