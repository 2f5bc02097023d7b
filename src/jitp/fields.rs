//! The eight `AWS::IoT::Certificate::*` parameters JITP supplies to a template, and one
//! device's values for them.

use super::*;
use crate::ca::SubjectField;

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

    /// The subject attribute the value comes from; `None` for `Id`. The one map between the
    /// JITP parameters and the CA's subject vocabulary.
    pub fn subject_field(self) -> Option<SubjectField> {
        match self {
            CertificateField::CommonName => Some(SubjectField::CommonName),
            CertificateField::Country => Some(SubjectField::Country),
            CertificateField::Organization => Some(SubjectField::Organization),
            CertificateField::OrganizationalUnit => Some(SubjectField::OrganizationalUnit),
            CertificateField::DistinguishedNameQualifier => Some(SubjectField::DnQualifier),
            CertificateField::StateName => Some(SubjectField::StateOrProvince),
            CertificateField::SerialNumber => Some(SubjectField::SerialNumber),
            CertificateField::Id => None,
        }
    }

    /// The parameter JITP fills from a subject attribute; `None` for Locality, which JITP
    /// does not supply.
    pub fn from_subject_field(field: SubjectField) -> Option<CertificateField> {
        Self::ALL
            .into_iter()
            .find(|f| f.subject_field() == Some(field))
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
    /// The AWS certificate ID: lowercase hex SHA-256 of the certificate DER. Null for a CSR:
    /// AWS computes it from the certificate, which does not exist yet (a preview then uses
    /// [`CERTIFICATE_ID_PLACEHOLDER`] where the template reads it).
    pub certificate_id: Option<String>,
}

/// What a preview shows for `AWS::IoT::Certificate::Id` before the certificate exists.
pub const CERTIFICATE_ID_PLACEHOLDER: &str = "certificate-id-computed-by-aws";

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
            CertificateField::Id => Some(
                self.certificate_id
                    .as_deref()
                    .unwrap_or(CERTIFICATE_ID_PLACEHOLDER),
            ),
        };
        value.filter(|v| !v.is_empty())
    }

    /// Records the certificate's value for a subject field; Locality, which JITP does not
    /// supply, is dropped.
    pub fn set(&mut self, field: SubjectField, value: String) {
        let slot = match CertificateField::from_subject_field(field) {
            Some(CertificateField::CommonName) => &mut self.common_name,
            Some(CertificateField::Country) => &mut self.country,
            Some(CertificateField::Organization) => &mut self.organization,
            Some(CertificateField::OrganizationalUnit) => &mut self.organizational_unit,
            Some(CertificateField::DistinguishedNameQualifier) => {
                &mut self.distinguished_name_qualifier
            }
            Some(CertificateField::StateName) => &mut self.state_name,
            Some(CertificateField::SerialNumber) => &mut self.serial_number,
            Some(CertificateField::Id) | None => return,
        };
        *slot = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subject_parameter_reads_one_subject_field_and_id_reads_none() {
        let table = [
            (CertificateField::CommonName, Some("CN")),
            (CertificateField::Country, Some("C")),
            (CertificateField::Organization, Some("O")),
            (CertificateField::OrganizationalUnit, Some("OU")),
            (
                CertificateField::DistinguishedNameQualifier,
                Some("dnQualifier"),
            ),
            (CertificateField::StateName, Some("ST")),
            (CertificateField::SerialNumber, Some("serialNumber")),
            (CertificateField::Id, None),
        ];
        assert_eq!(table.len(), CertificateField::ALL.len());
        for (field, short_name) in table {
            let subject_field = field.subject_field();
            assert_eq!(subject_field.map(SubjectField::short_name), short_name);
            if let Some(subject_field) = subject_field {
                assert_eq!(
                    CertificateField::from_subject_field(subject_field),
                    Some(field)
                );
            }
        }
        assert_eq!(
            CertificateField::from_subject_field(SubjectField::Locality),
            None
        );
        let mut device = DeviceSubject::default();
        device.set(SubjectField::StateOrProvince, "Tokyo".into());
        device.set(SubjectField::Locality, "Minato".into());
        assert_eq!(device.get(CertificateField::StateName), Some("Tokyo"));
        assert_eq!(
            device,
            DeviceSubject {
                state_name: Some("Tokyo".into()),
                ..DeviceSubject::default()
            }
        );
    }

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
