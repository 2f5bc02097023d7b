//! [`ParsedCsr`] -> [`ApprovedCsr`] or [`PolicyViolation`]: what a device certificate may say.
//!
//! Only this module can construct an `ApprovedCsr`, and only an `ApprovedCsr` can be signed, so
//! a request cannot reach the CA key without passing every rule here. The rules come from what
//! AWS IoT JITP needs: the CommonName is the thing name (1-128 of `[a-zA-Z0-9:_-]`), the
//! Country is an attribute, and a template may only read the subject fields listed in
//! [`SubjectField`].

use serde::{Deserialize, Serialize};

use super::country::is_assigned_alpha2;
use super::csr::{KeyAlgorithm, ParsedCsr, StringKind};
// Named here too, where it was defined first, so that `ca::policy::SubjectField` keeps working.
pub use super::subject::SubjectField;

/// What to do when a thing name already has an active (unrevoked, unexpired) certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateThingName {
    #[default]
    Reject,
    Allow,
}

/// Why a request is refused. Each variant maps to one stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("{0}")]
    MissingCommonName(String),
    #[error("{0}")]
    InvalidThingName(String),
    #[error("{0}")]
    MissingCountry(String),
    #[error("{0}")]
    InvalidCountry(String),
    #[error("{0}")]
    SubjectAttributeNotAllowed(String),
    #[error("{0}")]
    InvalidSubjectAttribute(String),
    #[error("{0}")]
    MissingSubjectAttribute(String),
}

/// The issuance rules for device certificates.
#[derive(Debug, Clone)]
pub struct IssuancePolicy {
    allowed: Vec<SubjectField>,
    require_country: bool,
    required: Vec<SubjectField>,
}

impl IssuancePolicy {
    /// `allowed` must contain the CommonName (and the Country when it is required); the
    /// configuration layer checks that before building the policy.
    pub fn new(allowed: Vec<SubjectField>, require_country: bool) -> Self {
        Self {
            allowed,
            require_country,
            required: Vec::new(),
        }
    }

    /// Also require these attributes (beyond CN, and C when `require_country`): what a JITP
    /// template reads must be in every certificate, or provisioning fails for that device.
    pub fn with_required(mut self, required: Vec<SubjectField>) -> Self {
        self.required = required;
        self
    }

    /// True when every certificate this policy approves carries `field`.
    pub fn guarantees(&self, field: SubjectField) -> bool {
        match field {
            SubjectField::CommonName => true,
            SubjectField::Country => self.require_country || self.required.contains(&field),
            other => self.required.contains(&other),
        }
    }

    pub fn require_country(&self) -> bool {
        self.require_country
    }

    pub fn allowed_fields(&self) -> &[SubjectField] {
        &self.allowed
    }

    /// Applies every rule. Checks run in a fixed order (CommonName, Country, the other
    /// attributes) so that a request breaking several rules always gets the same answer.
    pub fn approve(&self, csr: ParsedCsr) -> Result<ApprovedCsr, PolicyViolation> {
        let thing_name = self.thing_name(&csr)?;
        let country = self.country(&csr)?;

        let mut subject = Vec::with_capacity(csr.subject.len());
        for attr in &csr.subject {
            let field = SubjectField::from_oid(&attr.oid)
                .filter(|f| self.allowed.contains(f))
                .ok_or_else(|| {
                    PolicyViolation::SubjectAttributeNotAllowed(format!(
                        "the subject attribute {} is not allowed; allowed: {}",
                        attribute_label(&attr.oid),
                        self.allowed_list()
                    ))
                })?;
            if attr.multi_valued_rdn {
                return Err(PolicyViolation::SubjectAttributeNotAllowed(format!(
                    "{} is part of a multi-valued RDN; put each attribute in its own RDN",
                    field.short_name()
                )));
            }
            if subject.iter().any(|a: &ApprovedAttribute| a.field == field) {
                return Err(PolicyViolation::SubjectAttributeNotAllowed(format!(
                    "the subject has {} more than once; each attribute may appear once",
                    field.short_name()
                )));
            }
            let value = attr.value.clone().unwrap_or_default();
            check_attribute_value(field, attr.kind, attr.value.as_deref())?;
            subject.push(ApprovedAttribute {
                field,
                utf8: attr.kind == StringKind::Utf8,
                value,
            });
        }

        if let Some(missing) = self
            .required
            .iter()
            .find(|f| !subject.iter().any(|a| a.field == **f))
        {
            return Err(PolicyViolation::MissingSubjectAttribute(format!(
                "the subject has no {}; this CA's policy requires it (the JITP template reads it)",
                missing.short_name()
            )));
        }

        Ok(ApprovedCsr {
            thing_name,
            country,
            subject,
            key: csr.key,
            public_key: csr.public_key,
            spki_sha256: csr.spki_sha256,
            csr_sha256: csr.csr_sha256,
        })
    }

    fn thing_name(&self, csr: &ParsedCsr) -> Result<String, PolicyViolation> {
        let cns: Vec<_> = csr
            .subject
            .iter()
            .filter(|a| a.oid == SubjectField::CommonName.oid())
            .collect();
        let cn = match cns.as_slice() {
            [] => {
                return Err(PolicyViolation::MissingCommonName(
                    "the subject has no CommonName (CN); set CN to the AWS IoT thing name".into(),
                ));
            }
            [one] => one,
            _ => {
                return Err(PolicyViolation::MissingCommonName(format!(
                    "the subject has {} CommonNames; it must have exactly one, the thing name",
                    cns.len()
                )));
            }
        };
        if !matches!(cn.kind, StringKind::Utf8 | StringKind::Printable) {
            return Err(PolicyViolation::InvalidThingName(
                "the CommonName must be encoded as UTF8String or PrintableString".into(),
            ));
        }
        let name = cn.value.as_deref().unwrap_or_default();
        if !is_thing_name(name) {
            return Err(PolicyViolation::InvalidThingName(format!(
                "the CommonName {:?} is not an AWS IoT thing name: use 1 to 128 characters of \
                 a-z, A-Z, 0-9, ':', '_' and '-'",
                truncate_for_message(name)
            )));
        }
        Ok(name.to_owned())
    }

    fn country(&self, csr: &ParsedCsr) -> Result<Option<String>, PolicyViolation> {
        let cs: Vec<_> = csr
            .subject
            .iter()
            .filter(|a| a.oid == SubjectField::Country.oid())
            .collect();
        let c = match cs.as_slice() {
            [] if !self.require_country => return Ok(None),
            [] => {
                return Err(PolicyViolation::MissingCountry(
                    "the subject has no Country (C); set C to an ISO 3166-1 alpha-2 code such as JP"
                        .into(),
                ));
            }
            [one] => one,
            _ => {
                return Err(PolicyViolation::MissingCountry(format!(
                    "the subject has {} Country attributes; it must have exactly one",
                    cs.len()
                )));
            }
        };
        let code = c.value.as_deref().unwrap_or_default();
        if !matches!(c.kind, StringKind::Utf8 | StringKind::Printable) || !is_assigned_alpha2(code)
        {
            return Err(PolicyViolation::InvalidCountry(format!(
                "the Country {:?} is not an assigned ISO 3166-1 alpha-2 code in upper case (e.g. JP, US, DE)",
                truncate_for_message(code)
            )));
        }
        Ok(Some(code.to_owned()))
    }

    fn allowed_list(&self) -> String {
        self.allowed
            .iter()
            .map(|f| f.short_name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_attribute_value(
    field: SubjectField,
    kind: StringKind,
    value: Option<&str>,
) -> Result<(), PolicyViolation> {
    let name = field.short_name();
    if !matches!(kind, StringKind::Utf8 | StringKind::Printable) {
        return Err(PolicyViolation::InvalidSubjectAttribute(format!(
            "{name} must be encoded as UTF8String or PrintableString"
        )));
    }
    let Some(value) = value else {
        return Err(PolicyViolation::InvalidSubjectAttribute(format!(
            "{name} is not a valid string of its declared type"
        )));
    };
    if value.is_empty() || value.chars().count() > field.max_len() {
        return Err(PolicyViolation::InvalidSubjectAttribute(format!(
            "{name} must have 1 to {} characters",
            field.max_len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(PolicyViolation::InvalidSubjectAttribute(format!(
            "{name} contains a control character"
        )));
    }
    // X.680 puts '?' in PrintableString's alphabet, but the certificate writer (yasna, under
    // rcgen) refuses it and would panic while signing: refuse it here, with what to do instead.
    if kind == StringKind::Printable && value.contains('?') {
        return Err(PolicyViolation::InvalidSubjectAttribute(format!(
            "{name} is a PrintableString with '?', which this CA cannot encode; send it as a \
             UTF8String"
        )));
    }
    Ok(())
}

/// AWS IoT thing names: 1-128 characters of `[a-zA-Z0-9:_-]`.
pub fn is_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

fn attribute_label(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.9.1" => "emailAddress (1.2.840.113549.1.9.1)".into(),
        "2.5.4.4" => "surname (2.5.4.4)".into(),
        "2.5.4.42" => "givenName (2.5.4.42)".into(),
        "2.5.4.12" => "title (2.5.4.12)".into(),
        "0.9.2342.19200300.100.1.25" => "domainComponent (0.9.2342.19200300.100.1.25)".into(),
        other => other.to_owned(),
    }
}

fn truncate_for_message(s: &str) -> String {
    s.chars().take(140).collect()
}

/// One subject attribute as it will appear in the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedAttribute {
    pub field: SubjectField,
    /// UTF8String when true, PrintableString otherwise: the encoding the station chose.
    pub utf8: bool,
    pub value: String,
}

/// A request that passed the policy: the only input [`super::CertificateAuthority::sign`] takes.
#[derive(Debug, Clone)]
pub struct ApprovedCsr {
    thing_name: String,
    country: Option<String>,
    subject: Vec<ApprovedAttribute>,
    key: KeyAlgorithm,
    public_key: Vec<u8>,
    spki_sha256: String,
    csr_sha256: String,
}

impl ApprovedCsr {
    pub fn thing_name(&self) -> &str {
        &self.thing_name
    }
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }
    pub fn subject(&self) -> &[ApprovedAttribute] {
        &self.subject
    }
    pub fn key(&self) -> KeyAlgorithm {
        self.key
    }
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
    pub fn spki_sha256(&self) -> &str {
        &self.spki_sha256
    }
    pub fn csr_sha256(&self) -> &str {
        &self.csr_sha256
    }
}

/// Renders a subject in certificate order as `C=JP, ST=Tokyo, ..., CN=Thing-0001`, escaping
/// `,+"\<>;=` and leading `#`/space as RFC 4514 does.
pub fn subject_string(subject: &[ApprovedAttribute]) -> String {
    let mut out = String::with_capacity(subject.iter().map(|a| a.value.len() + 6).sum());
    for (i, a) in subject.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(a.field.short_name());
        out.push('=');
        escape_dn_value(&a.value, &mut out);
    }
    out
}

/// Appends `value` to `out`, escaped, in one pass: a trailing space is found by its byte offset.
fn escape_dn_value(value: &str, out: &mut String) {
    for (at, ch) in value.char_indices() {
        let leading = at == 0 && (ch == '#' || ch == ' ');
        let trailing = at + ch.len_utf8() == value.len() && ch == ' ';
        if leading || trailing || matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(ch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::csr::SubjectAttribute;

    fn attr(oid: &str, kind: StringKind, value: &str) -> SubjectAttribute {
        SubjectAttribute {
            oid: oid.into(),
            kind,
            value: Some(value.into()),
            multi_valued_rdn: false,
        }
    }

    fn csr(subject: Vec<SubjectAttribute>) -> ParsedCsr {
        ParsedCsr {
            key: KeyAlgorithm::EcdsaP256,
            public_key: vec![4; 65],
            spki_sha256: "00".into(),
            subject,
            csr_sha256: "00".into(),
        }
    }

    fn default_policy() -> IssuancePolicy {
        IssuancePolicy::new(SubjectField::ALL.to_vec(), true)
    }

    const CN: &str = "2.5.4.3";
    const C: &str = "2.5.4.6";
    const OU: &str = "2.5.4.11";
    const U: StringKind = StringKind::Utf8;
    const P: StringKind = StringKind::Printable;

    fn code(v: &PolicyViolation) -> &'static str {
        match v {
            PolicyViolation::MissingCommonName(_) => "missing_common_name",
            PolicyViolation::InvalidThingName(_) => "invalid_thing_name",
            PolicyViolation::MissingCountry(_) => "missing_country",
            PolicyViolation::InvalidCountry(_) => "invalid_country",
            PolicyViolation::SubjectAttributeNotAllowed(_) => "subject_attribute_not_allowed",
            PolicyViolation::InvalidSubjectAttribute(_) => "invalid_subject_attribute",
            PolicyViolation::MissingSubjectAttribute(_) => "missing_subject_attribute",
        }
    }

    #[test]
    fn policy_cases() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases: Vec<(&str, Vec<SubjectAttribute>, Result<&str, &str>)> = vec![
            (
                "plain thing",
                vec![attr(C, P, "JP"), attr(CN, U, "Thing-0001")],
                Ok("Thing-0001"),
            ),
            (
                "all allowed chars",
                vec![attr(C, P, "US"), attr(CN, U, "a:B_9-z")],
                Ok("a:B_9-z"),
            ),
            (
                "128 characters",
                vec![attr(C, P, "DE"), attr(CN, U, &long)],
                Ok(long.as_str()),
            ),
            ("no CN", vec![attr(C, P, "JP")], Err("missing_common_name")),
            (
                "CN twice",
                vec![attr(C, P, "JP"), attr(CN, U, "a"), attr(CN, U, "b")],
                Err("missing_common_name"),
            ),
            (
                "empty CN",
                vec![attr(C, P, "JP"), attr(CN, U, "")],
                Err("invalid_thing_name"),
            ),
            (
                "129 characters",
                vec![attr(C, P, "JP"), attr(CN, U, &too_long)],
                Err("invalid_thing_name"),
            ),
            (
                "space in CN",
                vec![attr(C, P, "JP"), attr(CN, U, "Thing 1")],
                Err("invalid_thing_name"),
            ),
            (
                "slash in CN",
                vec![attr(C, P, "JP"), attr(CN, U, "a/b")],
                Err("invalid_thing_name"),
            ),
            (
                "NUL in CN",
                vec![attr(C, P, "JP"), attr(CN, U, "a\0b")],
                Err("invalid_thing_name"),
            ),
            (
                "non-ASCII CN",
                vec![attr(C, P, "JP"), attr(CN, U, "Dévice")],
                Err("invalid_thing_name"),
            ),
            (
                "BMPString CN",
                vec![attr(C, P, "JP"), attr(CN, StringKind::Other(30), "Thing")],
                Err("invalid_thing_name"),
            ),
            ("no C", vec![attr(CN, U, "Thing")], Err("missing_country")),
            (
                "C twice",
                vec![attr(C, P, "JP"), attr(C, P, "US"), attr(CN, U, "Thing")],
                Err("missing_country"),
            ),
            (
                "C = XX",
                vec![attr(C, P, "XX"), attr(CN, U, "Thing")],
                Err("invalid_country"),
            ),
            (
                "C = jp",
                vec![attr(C, P, "jp"), attr(CN, U, "Thing")],
                Err("invalid_country"),
            ),
            (
                "C = JPN",
                vec![attr(C, P, "JPN"), attr(CN, U, "Thing")],
                Err("invalid_country"),
            ),
            (
                "C empty",
                vec![attr(C, P, ""), attr(CN, U, "Thing")],
                Err("invalid_country"),
            ),
            (
                "emailAddress",
                vec![
                    attr(C, P, "JP"),
                    attr(CN, U, "T"),
                    attr("1.2.840.113549.1.9.1", StringKind::Other(22), "a@b"),
                ],
                Err("subject_attribute_not_allowed"),
            ),
            (
                "unknown OID",
                vec![attr(C, P, "JP"), attr(CN, U, "T"), attr("1.2.3.4", U, "x")],
                Err("subject_attribute_not_allowed"),
            ),
            (
                "OU twice",
                vec![
                    attr(C, P, "JP"),
                    attr(OU, U, "a"),
                    attr(OU, U, "b"),
                    attr(CN, U, "T"),
                ],
                Err("subject_attribute_not_allowed"),
            ),
            (
                "empty OU",
                vec![attr(C, P, "JP"), attr(OU, U, ""), attr(CN, U, "T")],
                Err("invalid_subject_attribute"),
            ),
            (
                "OU over 64",
                vec![
                    attr(C, P, "JP"),
                    attr(OU, U, &"o".repeat(65)),
                    attr(CN, U, "T"),
                ],
                Err("invalid_subject_attribute"),
            ),
            (
                "control char in OU",
                vec![attr(C, P, "JP"), attr(OU, U, "a\nb"), attr(CN, U, "T")],
                Err("invalid_subject_attribute"),
            ),
        ];
        for (name, subject, expected) in cases {
            let got = default_policy().approve(csr(subject));
            match (got, expected) {
                (Ok(a), Ok(thing)) => assert_eq!(a.thing_name(), thing, "{name}"),
                (Err(v), Err(c)) => assert_eq!(code(&v), c, "{name}: {v}"),
                (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn allowlist_is_configurable() {
        let policy =
            IssuancePolicy::new(vec![SubjectField::CommonName, SubjectField::Country], true);
        let got = policy.approve(csr(vec![
            attr(C, P, "JP"),
            attr(OU, U, "Line3"),
            attr(CN, U, "T"),
        ]));
        assert!(matches!(
            got,
            Err(PolicyViolation::SubjectAttributeNotAllowed(_))
        ));
    }

    #[test]
    fn required_attributes_are_enforced_and_guaranteed() {
        let policy = default_policy().with_required(vec![SubjectField::Organization]);
        let got = policy.approve(csr(vec![attr(C, P, "JP"), attr(CN, U, "T")]));
        assert!(matches!(
            got,
            Err(PolicyViolation::MissingSubjectAttribute(_))
        ));
        let ok = policy.approve(csr(vec![
            attr(C, P, "JP"),
            attr("2.5.4.10", U, "Org"),
            attr(CN, U, "T"),
        ]));
        assert!(ok.is_ok());
        assert!(policy.guarantees(SubjectField::Organization));
        assert!(policy.guarantees(SubjectField::CommonName));
        assert!(!policy.guarantees(SubjectField::OrganizationalUnit));
        let no_country = IssuancePolicy::new(SubjectField::ALL.to_vec(), false);
        assert!(!no_country.guarantees(SubjectField::Country));
    }

    #[test]
    fn country_can_be_optional() {
        let policy = IssuancePolicy::new(SubjectField::ALL.to_vec(), false);
        let approved = policy.approve(csr(vec![attr(CN, U, "T")])).unwrap();
        assert_eq!(approved.country(), None);
    }

    #[test]
    fn multi_valued_rdn_is_refused() {
        let mut ou = attr(OU, U, "Line3");
        ou.multi_valued_rdn = true;
        let got = default_policy().approve(csr(vec![attr(C, P, "JP"), ou, attr(CN, U, "T")]));
        assert!(matches!(
            got,
            Err(PolicyViolation::SubjectAttributeNotAllowed(_))
        ));
    }

    #[test]
    fn keeps_subject_order_and_encoding() {
        let approved = default_policy()
            .approve(csr(vec![
                attr(C, P, "JP"),
                attr(OU, U, "Line, 3"),
                attr(CN, U, "T-1"),
            ]))
            .unwrap();
        let fields: Vec<_> = approved
            .subject()
            .iter()
            .map(|a| (a.field, a.utf8))
            .collect();
        assert_eq!(
            fields,
            vec![
                (SubjectField::Country, false),
                (SubjectField::OrganizationalUnit, true),
                (SubjectField::CommonName, true)
            ]
        );
        assert_eq!(
            subject_string(approved.subject()),
            r"C=JP, OU=Line\, 3, CN=T-1"
        );
    }

    #[test]
    fn subject_string_escapes_as_rfc_4514_says() {
        let approved = |cn: &str| ApprovedAttribute {
            field: SubjectField::CommonName,
            value: cn.to_owned(),
            utf8: true,
        };
        let cases = [
            ("# lead", r"\# lead"),
            (" both ", r"\ both\ "),
            (" ", r"\ "),
            ("in # side", "in # side"),
            ("a+b=c;d<e>f\"g\\h", r#"a\+b\=c\;d\<e\>f\"g\\h"#),
            ("Ω trailing ", r"Ω trailing\ "),
            ("ÿ", "ÿ"),
        ];
        for (value, shown) in cases {
            assert_eq!(
                subject_string(&[approved(value)]),
                format!("CN={shown}"),
                "{value:?}"
            );
        }
        assert_eq!(
            subject_string(&[
                ApprovedAttribute {
                    field: SubjectField::Country,
                    value: "JP".into(),
                    utf8: false,
                },
                approved("x"),
            ]),
            "C=JP, CN=x"
        );
    }
}
