//! Raw template bodies: the accepted variations and every refused rule.

use super::super::fixtures::*;
use super::*;

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
                b["Parameters"]["AWS::IoT::Certificate::Organization"] = json!({ "Type": "String" })
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
            mutated(|b| thing_props(b)["AttributePayload"]["r"] = json!({ "Ref": "AWS::Region" })),
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
            mutated(|b| b["Resources"]["certificate"]["Properties"]["Status"] = json!("Active")),
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
