//! Certificate subjects: [`SubjectField`], the one vocabulary of subject attributes (what the
//! issuance policy allows and requires, what the profile writes, and what a JITP template reads,
//! through `crate::jitp::CertificateField::subject_field`), and [`CaSubject`], the subject of a
//! new CA.

use rcgen::{DistinguishedName, DnType, DnValue};
use serde::{Deserialize, Serialize};

use super::error::CaError;

/// A subject attribute the CA knows. Seven of them are the certificate fields a JITP template
/// can reference (`AWS::IoT::Certificate::*`, all but Locality); Locality is here because
/// stations fill it, as in the openssl workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectField {
    Country,
    StateOrProvince,
    Locality,
    Organization,
    OrganizationalUnit,
    CommonName,
    SerialNumber,
    DnQualifier,
}

/// Written and read as its short name (`C`, `ST`, ..., `serialNumber`, `dnQualifier`), as the
/// settings spell it.
impl Serialize for SubjectField {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.short_name())
    }
}

impl<'de> Deserialize<'de> for SubjectField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SubjectField::from_short_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown attribute {name:?}; known: C, ST, L, O, OU, CN, serialNumber, \
                 dnQualifier"
            ))
        })
    }
}

impl SubjectField {
    pub const ALL: [SubjectField; 8] = [
        SubjectField::Country,
        SubjectField::StateOrProvince,
        SubjectField::Locality,
        SubjectField::Organization,
        SubjectField::OrganizationalUnit,
        SubjectField::CommonName,
        SubjectField::SerialNumber,
        SubjectField::DnQualifier,
    ];

    /// The short name used in configuration and in subject strings (as openssl names it).
    pub fn short_name(self) -> &'static str {
        match self {
            SubjectField::Country => "C",
            SubjectField::StateOrProvince => "ST",
            SubjectField::Locality => "L",
            SubjectField::Organization => "O",
            SubjectField::OrganizationalUnit => "OU",
            SubjectField::CommonName => "CN",
            SubjectField::SerialNumber => "serialNumber",
            SubjectField::DnQualifier => "dnQualifier",
        }
    }

    /// The attribute type, dotted (X.520, RFC 5280 Appendix A).
    pub fn oid(self) -> &'static str {
        match self {
            SubjectField::Country => "2.5.4.6",
            SubjectField::StateOrProvince => "2.5.4.8",
            SubjectField::Locality => "2.5.4.7",
            SubjectField::Organization => "2.5.4.10",
            SubjectField::OrganizationalUnit => "2.5.4.11",
            SubjectField::CommonName => "2.5.4.3",
            SubjectField::SerialNumber => "2.5.4.5",
            SubjectField::DnQualifier => "2.5.4.46",
        }
    }

    /// Upper bound on the value length, from RFC 5280 Appendix A (`ub-*`). The CommonName is
    /// the exception: AWS thing names may be 128 characters, beyond `ub-common-name` (64).
    pub(crate) fn max_len(self) -> usize {
        match self {
            SubjectField::Country => 2,
            SubjectField::StateOrProvince | SubjectField::Locality => 128,
            SubjectField::Organization
            | SubjectField::OrganizationalUnit
            | SubjectField::SerialNumber => 64,
            SubjectField::CommonName => 128,
            SubjectField::DnQualifier => 64,
        }
    }

    /// The attribute type rcgen writes for this field.
    pub(crate) fn dn_type(self) -> DnType {
        match self {
            SubjectField::Country => DnType::CountryName,
            SubjectField::StateOrProvince => DnType::StateOrProvinceName,
            SubjectField::Locality => DnType::LocalityName,
            SubjectField::Organization => DnType::OrganizationName,
            SubjectField::OrganizationalUnit => DnType::OrganizationalUnitName,
            SubjectField::CommonName => DnType::CommonName,
            SubjectField::SerialNumber => DnType::CustomDnType(vec![2, 5, 4, 5]),
            SubjectField::DnQualifier => DnType::CustomDnType(vec![2, 5, 4, 46]),
        }
    }

    pub fn from_short_name(name: &str) -> Option<SubjectField> {
        Self::ALL.into_iter().find(|f| f.short_name() == name)
    }

    /// The field of a dotted attribute type, as a certificate or CSR names it.
    pub fn from_oid(oid: &str) -> Option<SubjectField> {
        Self::ALL.into_iter().find(|f| f.oid() == oid)
    }
}

/// The subject of a new CA certificate. Only `common_name` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaSubject {
    pub common_name: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub organizational_unit: Option<String>,
}

/// The name of a new CA: C as a PrintableString, the other attributes as UTF8Strings, CN last.
pub(super) fn ca_distinguished_name(subject: &CaSubject) -> Result<DistinguishedName, CaError> {
    let mut dn = DistinguishedName::new();
    if let Some(c) = &subject.country {
        if !super::country::is_assigned_alpha2(c) {
            return Err(CaError::Rejected(format!(
                "the CA country {c:?} is not an ISO 3166-1 alpha-2 code in upper case"
            )));
        }
        let printable = c
            .as_str()
            .try_into()
            .expect("two upper-case letters are printable");
        dn.push(DnType::CountryName, DnValue::PrintableString(printable));
    }
    let fields = [
        (SubjectField::StateOrProvince, &subject.state),
        (SubjectField::Locality, &subject.locality),
        (SubjectField::Organization, &subject.organization),
        (
            SubjectField::OrganizationalUnit,
            &subject.organizational_unit,
        ),
    ];
    for (field, value) in fields {
        if let Some(v) = value {
            check_ca_subject_value(field.short_name(), v)?;
            dn.push(field.dn_type(), DnValue::Utf8String(v.clone()));
        }
    }
    check_ca_subject_value("CN", &subject.common_name)?;
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(subject.common_name.clone()),
    );
    Ok(dn)
}

fn check_ca_subject_value(name: &str, value: &str) -> Result<(), CaError> {
    if value.trim().is_empty() || value.chars().count() > 64 || value.chars().any(char::is_control)
    {
        return Err(CaError::Rejected(format!(
            "the CA subject {name} must have 1 to 64 printable characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_round_trips_through_its_short_name_and_its_oid() {
        for field in SubjectField::ALL {
            assert_eq!(
                SubjectField::from_short_name(field.short_name()),
                Some(field)
            );
            assert_eq!(SubjectField::from_oid(field.oid()), Some(field));
        }
        assert_eq!(SubjectField::from_short_name("E"), None);
        assert_eq!(SubjectField::from_oid("1.2.840.113549.1.9.1"), None);
    }
}
