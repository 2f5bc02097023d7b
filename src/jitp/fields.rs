//! The eight `AWS::IoT::Certificate::*` parameters JITP supplies to a template, and one
//! device's values for them.

use super::*;

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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
