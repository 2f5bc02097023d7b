//! Templates and subjects shared by the tests of the `jitp` modules.

use super::*;

pub(super) fn simple(value: Value) -> SimpleTemplate {
    serde_json::from_value(value).expect("test simple template parses")
}

/// Our own JITP template in the shape of the developer guide's example: thing named from
/// the CommonName, a constant and a certificate-field attribute, a type, a constant and a
/// certificate-field group, override settings, the certificate and an inline policy.
pub(super) fn guide_like_template() -> Value {
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

pub(super) fn mutated(f: impl FnOnce(&mut Value)) -> Value {
    let mut body = guide_like_template();
    f(&mut body);
    body
}

pub(super) fn thing_props(body: &mut Value) -> &mut Map<String, Value> {
    body["Resources"]["thing"]["Properties"]
        .as_object_mut()
        .unwrap()
}

pub(super) fn subject_jp() -> DeviceSubject {
    DeviceSubject {
        common_name: Some("Thing-0001".into()),
        country: Some("JP".into()),
        organization: Some("Acme".into()),
        organizational_unit: Some("Line3".into()),
        distinguished_name_qualifier: None,
        state_name: Some("Tokyo".into()),
        serial_number: Some("SN-42".into()),
        certificate_id: Some("ab".repeat(32)),
    }
}
