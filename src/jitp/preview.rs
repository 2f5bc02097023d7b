//! [`preview`]: a validated template evaluated for one device subject.

use super::*;

/// What JITP would make of one device: the template evaluated with the certificate's fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
                    certificate_id: Some(String::new()),
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
            certificate_id: Some("ab".repeat(32)),
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
