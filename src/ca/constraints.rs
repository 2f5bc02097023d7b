//! Name constraints of a CA (RFC 5280 4.2.1.10), directoryName form only: what a sub-CA we
//! create is limited to (`C=JP,O=Acme,OU=Line3`), and the check, before signing, that a device
//! subject is inside the issuing CA's permitted subtrees and outside its excluded ones.
//! Verifiers enforce the same extension (openssl, AWS IoT, brokers); refusing here keeps the
//! ledger free of certificates nobody would accept.

use rcgen::{DistinguishedName, DnType, DnValue, GeneralSubtree, NameConstraints};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::X509Name;

use super::error::CaError;
use super::policy::ApprovedAttribute;
use super::subject::SubjectField;

/// One directoryName subtree: attribute type (dotted OID) and value, one per RDN, in order.
type Subtree = Vec<(String, String)>;

/// The directoryName subtrees a CA certificate constrains its subjects to. Empty permitted
/// list: no directoryName constraint.
#[derive(Debug, Clone, Default)]
pub struct DirectoryConstraints {
    permitted: Vec<Subtree>,
    excluded: Vec<Subtree>,
}

/// A subtree as given on the command line or in the API: `C=JP,O=Acme,OU=Line3`, each
/// attribute a subject field short name (C, ST, L, O, OU, CN, serialNumber, dnQualifier),
/// each value 1 to 64 characters without `,`, `=`, `+`, `\` or control characters.
pub fn parse_subtree(text: &str) -> Result<Vec<(SubjectField, String)>, CaError> {
    let bad = |why: String| {
        CaError::Rejected(format!(
            "name_constraints {text:?}: {why}; give it as C=JP,O=Acme,OU=Line3"
        ))
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{:?} is not NAME=VALUE", part.trim())))?;
        let (key, value) = (key.trim(), value.trim());
        let field = SubjectField::from_short_name(key).ok_or_else(|| {
            bad(format!(
                "unknown attribute {key:?} (use C, ST, L, O, OU, CN, serialNumber or dnQualifier)"
            ))
        })?;
        if value.is_empty()
            || value.chars().count() > 64
            || value
                .chars()
                .any(|c| c.is_control() || matches!(c, '=' | '+' | '\\' | '"'))
        {
            return Err(bad(format!(
                "the value of {key} must be 1 to 64 characters without = + \\ \" or control \
                 characters"
            )));
        }
        if field == SubjectField::Country && !super::country::is_assigned_alpha2(value) {
            return Err(bad(format!(
                "{value:?} is not an ISO 3166-1 alpha-2 code in upper case"
            )));
        }
        out.push((field, value.to_owned()));
    }
    if out.len() > 8 {
        return Err(bad("more than 8 attributes".into()));
    }
    Ok(out)
}

/// The critical nameConstraints extension permitting the one directoryName subtree.
pub(super) fn extension(subtree: &[(SubjectField, String)]) -> NameConstraints {
    let mut dn = DistinguishedName::new();
    for (field, value) in subtree {
        let value = match field {
            // As CA subjects write it (and devices usually do): PrintableString.
            SubjectField::Country => DnValue::PrintableString(
                value
                    .as_str()
                    .try_into()
                    .expect("a checked country code is printable"),
            ),
            _ => DnValue::Utf8String(value.clone()),
        };
        let dn_type: DnType = field.dn_type();
        dn.push(dn_type, value);
    }
    NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DirectoryName(dn)],
        excluded_subtrees: Vec::new(),
    }
}

fn subtree_of(name: &X509Name<'_>) -> Result<Subtree, CaError> {
    let mut out = Vec::new();
    for rdn in name.iter_rdn() {
        let mut attributes = rdn.iter();
        let (Some(attr), None) = (attributes.next(), attributes.next()) else {
            return Err(CaError::Rejected(
                "the CA's nameConstraints hold a multi-valued RDN, which this service does not \
                 evaluate"
                    .into(),
            ));
        };
        let value = attr.as_str().map_err(|_| {
            CaError::Rejected(
                "the CA's nameConstraints hold a directoryName value that is not a string".into(),
            )
        })?;
        out.push((attr.attr_type().to_id_string(), value.to_owned()));
    }
    Ok(out)
}

impl DirectoryConstraints {
    /// The directoryName parts of a CA certificate's nameConstraints.
    pub(super) fn of(cert: &X509Certificate<'_>) -> Result<Self, CaError> {
        let mut out = DirectoryConstraints::default();
        for ext in cert.extensions() {
            if let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() {
                for (subtrees, into) in [
                    (&nc.permitted_subtrees, &mut out.permitted),
                    (&nc.excluded_subtrees, &mut out.excluded),
                ] {
                    for subtree in subtrees.iter().flatten() {
                        if let GeneralName::DirectoryName(name) = &subtree.base {
                            into.push(subtree_of(name)?);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.permitted.is_empty() && self.excluded.is_empty()
    }

    /// The permitted subtrees as `C=JP, O=Acme` strings, for messages.
    fn permitted_text(&self) -> String {
        self.permitted
            .iter()
            .map(|subtree| {
                subtree
                    .iter()
                    .map(|(oid, value)| {
                        let name =
                            SubjectField::from_oid(oid).map_or(oid.as_str(), |f| f.short_name());
                        format!("{name}={value}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether a device subject may be signed: inside one permitted subtree when there are
    /// any, and inside no excluded one. A subject is inside a subtree when it begins with the
    /// subtree's RDNs (same attribute types, same values, exactly: stricter than verifiers'
    /// case-insensitive comparison, never looser). The error says what to change.
    pub fn check(&self, subject: &[ApprovedAttribute]) -> Result<(), String> {
        let inside = |subtree: &Subtree| {
            subtree.len() <= subject.len()
                && subtree
                    .iter()
                    .zip(subject)
                    .all(|((oid, value), attr)| attr.field.oid() == oid && &attr.value == value)
        };
        // Rendered only for a refusal: most subjects pass, and every certificate is checked.
        let shown = || super::policy::subject_string(subject);
        if !self.permitted.is_empty() && !self.permitted.iter().any(inside) {
            return Err(format!(
                "the subject \"{}\" is outside the name constraints of the issuing CA (or of \
                 a CA above it): it must \
                 begin with {} (in that order)",
                shown(),
                self.permitted_text()
            ));
        }
        if self.excluded.iter().any(inside) {
            return Err(format!(
                "the subject \"{}\" is in a subtree the name constraints of the issuing \
                 CA (or of a CA above it) exclude",
                shown()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(field: SubjectField, value: &str) -> ApprovedAttribute {
        ApprovedAttribute {
            field,
            utf8: true,
            value: value.into(),
        }
    }

    fn constraints(text: &str) -> DirectoryConstraints {
        let subtree = parse_subtree(text).unwrap();
        DirectoryConstraints {
            permitted: vec![
                subtree
                    .into_iter()
                    .map(|(f, v)| (f.oid().to_owned(), v))
                    .collect(),
            ],
            excluded: Vec::new(),
        }
    }

    #[test]
    fn a_subject_must_begin_with_the_permitted_subtree() {
        let c = constraints("C=JP, O=Acme ,OU=Line3");
        let inside = [
            attr(SubjectField::Country, "JP"),
            attr(SubjectField::Organization, "Acme"),
            attr(SubjectField::OrganizationalUnit, "Line3"),
            attr(SubjectField::CommonName, "Dev-1"),
        ];
        c.check(&inside).unwrap();
        let other_line = [
            attr(SubjectField::Country, "JP"),
            attr(SubjectField::Organization, "Acme"),
            attr(SubjectField::OrganizationalUnit, "Line4"),
            attr(SubjectField::CommonName, "Dev-1"),
        ];
        let err = c.check(&other_line).unwrap_err();
        assert!(
            err.contains("must begin with C=JP, O=Acme, OU=Line3"),
            "{err}"
        );
        // The same attributes in another order are another name.
        let reordered = [
            attr(SubjectField::Organization, "Acme"),
            attr(SubjectField::Country, "JP"),
            attr(SubjectField::OrganizationalUnit, "Line3"),
            attr(SubjectField::CommonName, "Dev-1"),
        ];
        assert!(c.check(&reordered).is_err());
        assert!(c.check(&[attr(SubjectField::Country, "JP")]).is_err());
        DirectoryConstraints::default().check(&other_line).unwrap();
    }

    #[test]
    fn a_malformed_subtree_is_refused_with_the_form_to_use() {
        for (text, expected) in [
            ("C=JP,O", "is not NAME=VALUE"),
            ("C=JP,X=1", "unknown attribute \"X\""),
            ("C=Japan", "alpha-2"),
            ("C=JP,O=", "1 to 64 characters"),
            ("", "is not NAME=VALUE"),
        ] {
            let err = parse_subtree(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("C=JP,O=Acme,OU=Line3"), "{err}");
        }
    }
}
