//! PEM/DER bytes -> [`ParsedCsr`]: the one place that decodes a PKCS#10 request.
//!
//! A `ParsedCsr` only exists for a well-formed request whose key is one AWS IoT accepts and
//! whose signature verifies with that key (proof of possession, RFC 2986 section 3). What the
//! request asks for beyond its subject and key (extensions, attributes) is dropped here: the
//! certificate is built from the profile alone.

use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};
use x509_parser::asn1_rs::Tag;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::sha256_hex;

/// Why bytes are not an acceptable CSR. Each maps to one stable API error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    /// Not a PKCS#10 request at all: bad PEM, bad DER, wrong label, trailing data.
    #[error("{0}")]
    Malformed(String),
    /// The request's signature does not verify with its own key.
    #[error("{0}")]
    SignatureInvalid(String),
    /// The key is not RSA 2048..8192 or ECDSA P-256/P-384/P-521.
    #[error("{0}")]
    UnsupportedKey(String),
}

/// The device key types AWS IoT accepts (JITP.md, "Supported device keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKey {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
}

impl DeviceKey {
    /// The name recorded in the ledger, e.g. `rsa-2048`, `ecdsa-p256`.
    pub fn name(&self) -> String {
        match self {
            DeviceKey::Rsa { bits } => format!("rsa-{bits}"),
            DeviceKey::EcdsaP256 => "ecdsa-p256".to_owned(),
            DeviceKey::EcdsaP384 => "ecdsa-p384".to_owned(),
            DeviceKey::EcdsaP521 => "ecdsa-p521".to_owned(),
        }
    }

    pub fn is_rsa(&self) -> bool {
        matches!(self, DeviceKey::Rsa { .. })
    }
}

/// How an attribute value was encoded in the request; kept so that the certificate reads back
/// exactly as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringKind {
    Printable,
    Utf8,
    /// Any other ASN.1 type (BMPString, TeletexString, IA5String, ...): the policy refuses it.
    Other(u32),
}

/// One attribute of the requested subject, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectAttribute {
    /// Dotted OID, e.g. `2.5.4.3`.
    pub oid: String,
    pub kind: StringKind,
    /// The decoded value; `None` when the bytes are not valid for the declared string type.
    pub value: Option<String>,
    /// True when this attribute shares its RDN with another (a multi-valued RDN).
    pub multi_valued_rdn: bool,
}

/// A CSR whose structure, key and signature have been checked.
#[derive(Debug, Clone)]
pub struct ParsedCsr {
    pub(crate) key: DeviceKey,
    /// The subjectPublicKey BIT STRING contents (the key itself, without the algorithm).
    pub(crate) public_key: Vec<u8>,
    pub(crate) spki_sha256: String,
    pub(crate) subject: Vec<SubjectAttribute>,
    /// SHA-256 of the request DER: what idempotency compares.
    pub(crate) csr_sha256: String,
}

impl ParsedCsr {
    pub fn key(&self) -> DeviceKey {
        self.key
    }
    pub fn subject(&self) -> &[SubjectAttribute] {
        &self.subject
    }
    pub fn csr_sha256(&self) -> &str {
        &self.csr_sha256
    }
}

const PEM_LABELS: [&str; 2] = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

/// Decodes a CSR given as PEM text or DER bytes, checks its key and verifies its signature.
pub fn parse(input: &[u8]) -> Result<ParsedCsr, CsrError> {
    let der = decode_container(input)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|_| CsrError::Malformed("the body is not a DER-encoded PKCS#10 request".into()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} bytes of trailing data after the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key = classify_key(spki)?;
    verify_signature(&csr, key)?;

    let mut subject = Vec::new();
    for rdn in info.subject.iter_rdn() {
        let multi = rdn.iter().count() > 1;
        for attr in rdn.iter() {
            subject.push(subject_attribute(
                attr.attr_type(),
                attr.attr_value(),
                multi,
            ));
        }
    }

    Ok(ParsedCsr {
        key,
        public_key: spki.subject_public_key.data.to_vec(),
        spki_sha256: sha256_hex(spki.raw),
        subject,
        csr_sha256: sha256_hex(&der),
    })
}

/// PEM (exactly one `CERTIFICATE REQUEST` block, nothing around it but whitespace) or raw DER.
fn decode_container(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    let text_start = input.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = text_start else {
        return Err(CsrError::Malformed("the CSR is empty".into()));
    };
    if !input[start..].starts_with(b"-----BEGIN ") {
        return Ok(input.to_vec());
    }
    let text = std::str::from_utf8(input)
        .map_err(|_| CsrError::Malformed("the PEM text is not valid UTF-8".into()))?;
    let blocks = pem::parse_many(text)
        .map_err(|e| CsrError::Malformed(format!("the PEM block cannot be decoded: {e}")))?;
    let [block] = blocks.as_slice() else {
        return Err(CsrError::Malformed(format!(
            "expected exactly one PEM block, found {}",
            blocks.len()
        )));
    };
    if !PEM_LABELS.contains(&block.tag()) {
        return Err(CsrError::Malformed(format!(
            "the PEM label is \"{}\"; a CSR is labelled \"CERTIFICATE REQUEST\"",
            block.tag()
        )));
    }
    let end_marker = format!("-----END {}-----", block.tag());
    if !text.trim_end().ends_with(&end_marker) {
        return Err(CsrError::Malformed(
            "unexpected data after the PEM block".into(),
        ));
    }
    Ok(block.contents().to_vec())
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

fn classify_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<DeviceKey, CsrError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    let key_bits: &[u8] = &spki.subject_public_key.data;
    match alg.as_str() {
        OID_RSA => {
            let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(CsrError::Malformed(
                    "the RSA public key cannot be decoded".into(),
                ));
            };
            let bits = unsigned_bit_length(rsa.modulus);
            if !(2048..=8192).contains(&bits) {
                return Err(CsrError::UnsupportedKey(format!(
                    "the key is RSA-{bits}; AWS IoT accepts RSA keys of 2048 to 8192 bits"
                )));
            }
            let exponent = rsa.try_exponent().unwrap_or(0);
            if exponent < 3 || exponent % 2 == 0 {
                return Err(CsrError::UnsupportedKey(
                    "the RSA public exponent is not an odd number of at least 3".into(),
                ));
            }
            Ok(DeviceKey::Rsa { bits })
        }
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .ok_or_else(|| {
                    CsrError::UnsupportedKey(
                        "the EC key uses explicit curve parameters; use a named curve (P-256, P-384 or P-521)".into(),
                    )
                })?;
            let (key, point_len) = match curve.as_str() {
                OID_P256 => (DeviceKey::EcdsaP256, 65),
                OID_P384 => (DeviceKey::EcdsaP384, 97),
                OID_P521 => (DeviceKey::EcdsaP521, 133),
                other => {
                    return Err(CsrError::UnsupportedKey(format!(
                        "the EC curve {other} is not supported; AWS IoT accepts P-256, P-384 and P-521"
                    )));
                }
            };
            if key_bits.len() != point_len || key_bits[0] != 0x04 {
                return Err(CsrError::UnsupportedKey(
                    "the EC public key is not an uncompressed point on its curve".into(),
                ));
            }
            Ok(key)
        }
        "1.3.101.112" | "1.3.101.113" => Err(CsrError::UnsupportedKey(
            "EdDSA keys are not supported by AWS IoT; use ECDSA P-256/P-384/P-521 or RSA 2048+"
                .into(),
        )),
        "1.2.840.10040.4.1" => Err(CsrError::UnsupportedKey(
            "DSA keys are not supported by AWS IoT; use ECDSA P-256/P-384/P-521 or RSA 2048+"
                .into(),
        )),
        other => Err(CsrError::UnsupportedKey(format!(
            "the key algorithm {other} is not supported; use ECDSA P-256/P-384/P-521 or RSA 2048+"
        ))),
    }
}

pub(crate) fn unsigned_bit_length(big_endian: &[u8]) -> usize {
    let digits: &[u8] = match big_endian.iter().position(|&b| b != 0) {
        Some(i) => &big_endian[i..],
        None => return 0,
    };
    digits.len() * 8 - digits[0].leading_zeros() as usize
}

fn verify_signature(csr: &X509CertificationRequest<'_>, key: DeviceKey) -> Result<(), CsrError> {
    let alg_oid = csr.signature_algorithm.algorithm.to_id_string();
    let algorithm: &'static dyn VerificationAlgorithm = match (key, alg_oid.as_str()) {
        (DeviceKey::Rsa { .. }, "1.2.840.113549.1.1.11") => &sig::RSA_PKCS1_2048_8192_SHA256,
        (DeviceKey::Rsa { .. }, "1.2.840.113549.1.1.12") => &sig::RSA_PKCS1_2048_8192_SHA384,
        (DeviceKey::Rsa { .. }, "1.2.840.113549.1.1.13") => &sig::RSA_PKCS1_2048_8192_SHA512,
        (DeviceKey::EcdsaP256, "1.2.840.10045.4.3.2") => &sig::ECDSA_P256_SHA256_ASN1,
        (DeviceKey::EcdsaP256, "1.2.840.10045.4.3.3") => &sig::ECDSA_P256_SHA384_ASN1,
        (DeviceKey::EcdsaP256, "1.2.840.10045.4.3.4") => &sig::ECDSA_P256_SHA512_ASN1,
        (DeviceKey::EcdsaP384, "1.2.840.10045.4.3.2") => &sig::ECDSA_P384_SHA256_ASN1,
        (DeviceKey::EcdsaP384, "1.2.840.10045.4.3.3") => &sig::ECDSA_P384_SHA384_ASN1,
        (DeviceKey::EcdsaP384, "1.2.840.10045.4.3.4") => &sig::ECDSA_P384_SHA512_ASN1,
        (DeviceKey::EcdsaP521, "1.2.840.10045.4.3.2") => &sig::ECDSA_P521_SHA256_ASN1,
        (DeviceKey::EcdsaP521, "1.2.840.10045.4.3.3") => &sig::ECDSA_P521_SHA384_ASN1,
        (DeviceKey::EcdsaP521, "1.2.840.10045.4.3.4") => &sig::ECDSA_P521_SHA512_ASN1,
        (_, "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1") => {
            return Err(CsrError::SignatureInvalid(
                "the CSR is signed with SHA-1; sign it with SHA-256, SHA-384 or SHA-512".into(),
            ));
        }
        (_, other) => {
            return Err(CsrError::SignatureInvalid(format!(
                "the signature algorithm {other} is not accepted for a {} key; use PKCS#1 v1.5 \
                 (RSA) or ECDSA with SHA-256/384/512",
                key.name()
            )));
        }
    };
    let public_key = sig::UnparsedPublicKey::new(
        algorithm,
        &csr.certification_request_info
            .subject_pki
            .subject_public_key
            .data,
    );
    public_key
        .verify(
            csr.certification_request_info.raw,
            &csr.signature_value.data,
        )
        .map_err(|_| {
            CsrError::SignatureInvalid(
                "the CSR signature does not verify with the CSR's own public key (no proof of \
                 possession of the private key)"
                    .into(),
            )
        })
}

fn subject_attribute(
    oid: &Oid<'_>,
    value: &x509_parser::asn1_rs::Any<'_>,
    multi_valued_rdn: bool,
) -> SubjectAttribute {
    let (kind, text) = match value.tag() {
        Tag::PrintableString => (StringKind::Printable, printable(value.data)),
        Tag::Utf8String => (
            StringKind::Utf8,
            std::str::from_utf8(value.data).ok().map(str::to_owned),
        ),
        other => (
            StringKind::Other(other.0),
            std::str::from_utf8(value.data).ok().map(str::to_owned),
        ),
    };
    SubjectAttribute {
        oid: oid.to_id_string(),
        kind,
        value: text,
        multi_valued_rdn,
    }
}

/// PrintableString's alphabet (X.680 41.4): letters, digits, space and `'()+,-./:=?`.
fn printable(data: &[u8]) -> Option<String> {
    let ok = data
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    ok.then(|| String::from_utf8_lossy(data).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_csr(subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, v) in subject {
            params.distinguished_name.push(ty.clone(), *v);
        }
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn parses_der_and_pem_of_the_same_request_alike() {
        let der = ec_csr(&[(rcgen::DnType::CommonName, "Thing-1")]);
        let pem = crate::ca::to_pem("CERTIFICATE REQUEST", &der);
        let a = parse(&der).unwrap();
        let b = parse(pem.as_bytes()).unwrap();
        assert_eq!(a.csr_sha256, b.csr_sha256);
        assert_eq!(a.key, DeviceKey::EcdsaP256);
        assert_eq!(a.subject[0].value.as_deref(), Some("Thing-1"));
        assert_eq!(a.subject[0].kind, StringKind::Utf8);
    }

    #[test]
    fn rejects_trailing_data_after_der_and_after_pem() {
        let mut der = ec_csr(&[(rcgen::DnType::CommonName, "Thing-1")]);
        let pem = crate::ca::to_pem("CERTIFICATE REQUEST", &der) + "junk\n";
        assert!(matches!(parse(pem.as_bytes()), Err(CsrError::Malformed(_))));
        der.push(0);
        assert!(matches!(parse(&der), Err(CsrError::Malformed(_))));
    }

    #[test]
    fn rejects_a_certificate_pem_label() {
        let der = ec_csr(&[(rcgen::DnType::CommonName, "Thing-1")]);
        let pem = crate::ca::to_pem("CERTIFICATE", &der);
        assert!(matches!(parse(pem.as_bytes()), Err(CsrError::Malformed(_))));
    }

    #[test]
    fn rejects_a_request_whose_signature_was_tampered_with() {
        let mut der = ec_csr(&[(rcgen::DnType::CommonName, "Thing-1")]);
        // The CN value sits inside the signed part: change one of its letters.
        let at = der.windows(7).position(|w| w == b"Thing-1").unwrap();
        der[at] = b'X';
        assert!(matches!(parse(&der), Err(CsrError::SignatureInvalid(_))));
    }

    #[test]
    fn rejects_an_ed25519_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let params = rcgen::CertificateParams::default();
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        assert!(matches!(parse(&der), Err(CsrError::UnsupportedKey(_))));
    }

    #[test]
    fn counts_rsa_modulus_bits_without_leading_zeros() {
        assert_eq!(unsigned_bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bit_length(&[0x01, 0xff]), 9);
        assert_eq!(unsigned_bit_length(&[0x00]), 0);
    }
}
