//! AWS IoT certificate providers (`CreateCertificateProvider` and its kin): the account's
//! Lambda function that signs fleet-provisioning CSRs (see docs/fleet-provisioning.md). The
//! rules AWS applies to the request, checked here once for the API (before any call) and for
//! the fake.

use serde::Serialize;
use time::OffsetDateTime;

/// The one operation a certificate provider can take over.
pub const CREATE_CERTIFICATE_FROM_CSR: &str = "CreateCertificateFromCsr";

/// A certificate provider as DescribeCertificateProvider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CertificateProvider {
    pub name: String,
    pub arn: String,
    pub lambda_function_arn: String,
    /// Always `["CreateCertificateFromCsr"]` today.
    pub account_default_for_operations: Vec<String>,
    /// RFC 3339; null when AWS did not say.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub created_at: Option<OffsetDateTime>,
    /// RFC 3339; null when AWS did not say.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub last_modified_at: Option<OffsetDateTime>,
}

/// `certificateProviderName`: 1 to 128 of `[\w=,@-]` (letters, digits, `_ = , @ -`).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_=,@-".contains(c);
    if name.is_empty() || name.len() > 128 || !name.chars().all(ok_char) {
        return Err(format!(
            "certificate provider name {name:?}: 1 to 128 letters, digits and _ = , @ -"
        ));
    }
    Ok(())
}

/// `lambdaFunctionArn`: a Lambda function's ARN,
/// `arn:<partition>:lambda:<region>:<12-digit account>:function:<name>[:<version or alias>]`,
/// at most 170 characters (CloudFormation's limit; longer names cannot exist).
pub fn check_lambda_function_arn(arn: &str) -> Result<(), String> {
    let fail = || {
        Err(format!(
            "lambda_function_arn {arn:?} is not a Lambda function ARN \
             (arn:aws:lambda:<region>:<account id>:function:<name>[:<alias or version>])"
        ))
    };
    if arn.len() > 170 {
        return fail();
    }
    let parts: Vec<&str> = arn.split(':').collect();
    let [
        arn_,
        partition,
        service,
        region,
        account,
        kind,
        name,
        rest @ ..,
    ] = parts.as_slice()
    else {
        return fail();
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let valid = *arn_ == "arn"
        && partition.starts_with("aws")
        && token(partition)
        && *service == "lambda"
        && token(region)
        && region.contains('-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && *kind == "function"
        && token(name)
        && name.len() <= 64
        && rest.len() <= 1
        && rest.iter().all(|q| token(q) && q.len() <= 128);
    if valid { Ok(()) } else { fail() }
}

/// `accountDefaultForOperations`: exactly one item, `CreateCertificateFromCsr`.
pub fn check_operations(operations: &[String]) -> Result<(), String> {
    match operations {
        [one] if one == CREATE_CERTIFICATE_FROM_CSR => Ok(()),
        _ => Err(format!(
            "account_default_for_operations must be [\"{CREATE_CERTIFICATE_FROM_CSR}\"] (the \
             only operation a certificate provider can take over), not {operations:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` accepts each of `ok` and refuses each of `bad`.
    fn sorts(check: fn(&str) -> Result<(), String>, ok: &[&str], bad: &[&str]) {
        for ok in ok {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in bad {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_aws_pattern() {
        sorts(
            check_name,
            &["factory-ca", "a", "x_y=z,w@v-1", &"n".repeat(128)],
            &[
                "",
                "with space",
                "slash/name",
                "dot.name",
                &"n".repeat(129),
                "é",
            ],
        );
    }

    #[test]
    fn lambda_arns_are_function_arns() {
        sorts(
            check_lambda_function_arn,
            &[
                "arn:aws:lambda:eu-west-1:123456789012:function:factory-ca-provider",
                "arn:aws:lambda:us-east-1:123456789012:function:f:prod",
                "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:7",
            ],
            &[
                "",
                "factory-ca-provider",
                "arn:aws:iam::123456789012:role/r",
                "arn:aws:lambda:eu-west-1:12345:function:f",
                "arn:aws:lambda:eu-west-1:123456789012:layer:f",
                "arn:aws:lambda:eu-west-1:123456789012:function:",
                "arn:aws:lambda:eu-west-1:123456789012:function:f:a:b",
                "arn:aws:lambda:eu-west-1:123456789012:function:f g",
            ],
        );
    }

    #[test]
    fn the_only_operation_is_create_certificate_from_csr() {
        assert!(check_operations(&["CreateCertificateFromCsr".into()]).is_ok());
        assert!(check_operations(&[]).is_err());
        assert!(check_operations(&["CreateKeysAndCertificate".into()]).is_err());
        let twice = vec!["CreateCertificateFromCsr".to_owned(); 2];
        assert!(check_operations(&twice).is_err());
    }
}
