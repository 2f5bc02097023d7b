//! The template request: a raw body, a `simple` description, or the name of a template AWS
//! already holds; and the builder that turns a simple description into a body.

use super::*;

/// The `"template"` object of a request: exactly one of `{"body": {...}}`,
/// `{"simple": {...}}` or `{"name": "..."}`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSpec {
    /// A raw JITP template, as a JSON object (not as an escaped string: the escaping is ours).
    #[schema(value_type = Object)]
    Body(Value),
    /// A thing named after the CommonName, with attributes, an optional type, groups and a policy.
    Simple(SimpleTemplate),
    /// A JITP provisioning template that already exists in the account
    /// (`create-provisioning-template --type JITP`).
    Name(String),
}

/// The common case, without writing a template: the thing is named after the certificate's
/// CommonName, and the certificate gets one existing policy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
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

pub(super) fn check_attribute_count(
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
}
