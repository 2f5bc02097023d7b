//! Validation of raw template bodies against what JITP can evaluate (see the module docs of
//! [`crate::jitp`]).

use super::*;

/// A template value: a constant, a certificate field, or an `Fn::Join` of those.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Expr {
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

    pub(super) fn eval(&self, subject: &DeviceSubject) -> Result<String, MissingField> {
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
pub(super) struct ThingSpec {
    pub(super) name: Expr,
    pub(super) attributes: BTreeMap<String, Expr>,
    pub(super) thing_type: Option<Expr>,
    pub(super) groups: Vec<Expr>,
}

#[derive(Clone, Debug)]
pub(super) enum PolicySpec {
    Named(Expr),
    Document,
}

/// The status the template gives the certificate once the device is provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    Active,
    Inactive,
}

/// A JITP template body that passed [`validate`].
#[derive(Clone, Debug)]
pub struct ValidatedTemplate {
    pub(super) body: Value,
    pub(super) referenced: BTreeSet<CertificateField>,
    pub(super) thing: ThingSpec,
    pub(super) certificate_status: CertificateStatus,
    pub(super) policies: Vec<PolicySpec>,
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

/// The value of `key` in the object at `path`, which the template must give.
fn required<'v>(
    object: &'v Map<String, Value>,
    path: &str,
    key: &'static str,
) -> Result<&'v Value, TemplateError> {
    object.get(key).ok_or_else(|| TemplateError::MissingKey {
        path: path.into(),
        key,
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
        let resource_type = match required(resource, &path, "Type")? {
            Value::String(t) => t.as_str(),
            other => {
                return Err(TemplateError::NotAString {
                    path: format!("{path}.Type"),
                    found: kind(other),
                });
            }
        };
        let properties_path = format!("{path}.Properties");
        let properties = object_at(required(resource, &path, "Properties")?, &properties_path)?;
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
    let name = ctx.expr(required(properties, path, "ThingName")?, &name_path)?;
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
    let id = required(properties, path, "CertificateId")?;
    if ctx.expr(id, &id_path)? != Expr::Ref(CertificateField::Id) {
        return Err(TemplateError::CertificateIdNotRef { path: id_path });
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

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
