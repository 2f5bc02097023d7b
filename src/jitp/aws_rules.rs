//! AWS's naming rules for the values a template carries, the `registrationConfig` of a CA, and
//! the role ARN and template name checks.

use super::*;

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

    pub(super) fn check(self, path: &str, value: &str) -> Result<(), TemplateError> {
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
}
