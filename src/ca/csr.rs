//! PEM/DER bytes -> [`ParsedCsr`]: the one place that decodes a PKCS#10 request.
//!
//! A `ParsedCsr` only exists for a well-formed request whose key is one AWS IoT accepts and
//! whose signature verifies with that key (proof of possession, RFC 2986 section 3). What the
//! request asks for beyond its subject and key (extensions, attributes) is dropped here: the
//! certificate is built from the profile alone.

use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::{Decode, Encode, Length, Reader, SliceReader};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
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

/// A public key's algorithm and size, as the ledger, the API and the CA records name it
/// (`ecdsa-p256`, `ecdsa-p384`, `ecdsa-p521`, `rsa-<bits>`). The device key types AWS IoT
/// accepts (docs/jitp.md, "Supported device keys"), and the CA key types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
}

impl KeyAlgorithm {
    /// The name recorded in the ledger, e.g. `rsa-2048`, `ecdsa-p256`.
    pub fn name(&self) -> String {
        self.to_string()
    }

    pub fn is_rsa(&self) -> bool {
        matches!(self, KeyAlgorithm::Rsa { .. })
    }

    /// The key a name stands for; `None` for anything else.
    pub fn parse(name: &str) -> Option<KeyAlgorithm> {
        match name {
            "ecdsa-p256" => Some(KeyAlgorithm::EcdsaP256),
            "ecdsa-p384" => Some(KeyAlgorithm::EcdsaP384),
            "ecdsa-p521" => Some(KeyAlgorithm::EcdsaP521),
            rsa => {
                let bits = rsa.strip_prefix("rsa-")?;
                // Canonical decimal only, so that a name round-trips.
                if bits.starts_with('0') || !bits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                bits.parse().ok().map(|bits| KeyAlgorithm::Rsa { bits })
            }
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "rsa-{bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ecdsa-p256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ecdsa-p384"),
            KeyAlgorithm::EcdsaP521 => f.write_str("ecdsa-p521"),
        }
    }
}

impl serde::Serialize for KeyAlgorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl utoipa::PartialSchema for KeyAlgorithm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "`ecdsa-p256`, `ecdsa-p384`, `ecdsa-p521` or `rsa-<bits>` (e.g. `rsa-2048`)",
            ))
            .examples(["ecdsa-p256"])
            .into()
    }
}

impl utoipa::ToSchema for KeyAlgorithm {}

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
    pub(crate) key: KeyAlgorithm,
    /// The subjectPublicKey BIT STRING contents (the key itself, without the algorithm).
    pub(crate) public_key: Vec<u8>,
    pub(crate) spki_sha256: String,
    pub(crate) subject: Vec<SubjectAttribute>,
    /// SHA-256 of the request DER: what idempotency compares.
    pub(crate) csr_sha256: String,
}

impl ParsedCsr {
    pub fn key(&self) -> KeyAlgorithm {
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
    let signature_algorithm = check_structure(&der, &csr)?;
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key = classify_key(spki)?;
    // The certificate carries the key re-encoded; a request whose key info says more or says it
    // differently (extra elements, a curve that is not an OID, unused bits) would get a
    // certificate whose key info differs from the request's, and a ledger spki_sha256 that
    // matches neither.
    if canonical_spki(key, &spki.subject_public_key.data).as_deref() != Ok(spki.raw) {
        return Err(CsrError::Malformed(
            "the public key info is not in DER form: rsaEncryption with NULL parameters, or \
             id-ecPublicKey with a named curve, and nothing more"
                .into(),
        ));
    }
    verify_signature(&csr, key)?;
    check_envelope(&der, signature_algorithm, &csr)?;

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
    if let Some(der) = decode_plain_pem(input) {
        return Ok(der);
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

/// The shape stations send, decoded without the general PEM parser (which cost ~2 % of the
/// service's instructions per certificate): whitespace around, the BEGIN line of a CSR label,
/// a line break, lines of base64 only (LF or CRLF), the END line of the same label. Anything
/// else is `None` and goes to the general parser, which accepts more and says what is wrong.
fn decode_plain_pem(input: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = input.trim_ascii();
    for label in PEM_LABELS {
        let Some(body) = text
            .strip_prefix(b"-----BEGIN ".as_slice())
            .and_then(|t| t.strip_prefix(label.as_bytes()))
            .and_then(|t| t.strip_prefix(b"-----".as_slice()))
            .and_then(|t| t.strip_suffix(b"-----".as_slice()))
            .and_then(|t| t.strip_suffix(label.as_bytes()))
            .and_then(|t| t.strip_suffix(b"-----END ".as_slice()))
        else {
            continue;
        };
        if !(body.starts_with(b"\n") || body.starts_with(b"\r\n")) || !body.ends_with(b"\n") {
            return None;
        }
        let mut base64 = Vec::with_capacity(body.len());
        for &b in body {
            match b {
                b'\r' | b'\n' => {}
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => base64.push(b),
                _ => return None,
            }
        }
        return base64::engine::general_purpose::STANDARD
            .decode(&base64)
            .ok();
    }
    None
}

/// What x509-parser lets through: it reads the fields it knows and skips whatever follows them
/// inside a SEQUENCE, and it takes any version. PKCS#10 (RFC 2986 section 4) has room for
/// nothing more, so extra elements are refused here: after the signature or in the signature
/// algorithm they are outside the signature (anyone on the path could add them and change the
/// request's hash), and inside the signed info they would be dropped without a word.
/// Returns the signature algorithm element, for [`check_envelope`].
fn check_structure<'a>(
    der: &'a [u8],
    csr: &X509CertificationRequest<'_>,
) -> Result<&'a [u8], CsrError> {
    let info = &csr.certification_request_info;
    if info.version.0 != 0 {
        return Err(CsrError::Malformed(format!(
            "the request version is {}; PKCS#10 requests are version 0 (v1)",
            info.version.0
        )));
    }
    let extra = |what: &str| {
        CsrError::Malformed(format!(
            "{what} has more elements than PKCS#10 allows (RFC 2986 section 4)"
        ))
    };
    let request = tlv_elements(tlv_content(der)).ok_or_else(|| extra("the request"))?;
    let [request_info, algorithm, _signature] = request.as_slice() else {
        return Err(extra("the request"));
    };
    if *request_info != info.raw
        || tlv_elements(tlv_content(request_info)).map(|e| e.len()) != Some(4)
    {
        return Err(extra("the request info"));
    }
    let rdns =
        tlv_elements(tlv_content(info.subject.as_raw())).ok_or_else(|| extra("the subject"))?;
    for rdn in rdns {
        for attribute in tlv_elements(tlv_content(rdn)).ok_or_else(|| extra("the subject"))? {
            if tlv_elements(tlv_content(attribute)).map(|e| e.len()) != Some(2) {
                return Err(extra("a subject attribute"));
            }
        }
    }
    Ok(algorithm)
}

/// The request around its signed info must be DER exactly: the signature algorithm without
/// parameters (ECDSA, RFC 5758 section 3.2) or with NULL (PKCS#1 v1.5, RFC 4055 section 5),
/// the signature with no unused bits, minimal lengths. This part is outside the signature, so
/// any other form is noise that anyone on the path could add, and it would change the hash
/// that idempotency compares.
fn check_envelope(
    der: &[u8],
    algorithm: &[u8],
    csr: &X509CertificationRequest<'_>,
) -> Result<(), CsrError> {
    let dotted = csr.signature_algorithm.algorithm.to_id_string();
    let rsa = dotted.starts_with("1.2.840.113549.1.1.");
    match tlv_elements(tlv_content(algorithm)).as_deref() {
        Some([_]) => {}
        Some([_, [0x05, 0x00]]) if rsa => {}
        _ => {
            return Err(CsrError::Malformed(
                "the signature algorithm has parameters it must not have (RFC 5758, RFC 4055)"
                    .into(),
            ));
        }
    }
    let info = csr.certification_request_info.raw;
    let canonical = match strict_envelope(der, info) {
        // The OID too: a lenient reader also takes bytes that merely decode to it.
        Ok((algorithm, signature)) => {
            algorithm.oid.to_string() == dotted
                && signature.unused_bits() == 0
                && signature.raw_bytes() == csr.signature_value.data.as_ref()
        }
        Err(_) => false,
    };
    if !canonical {
        return Err(CsrError::Malformed(
            "the request is not DER outside its signed part (lengths, unused bits)".into(),
        ));
    }
    Ok(())
}

/// Reads the request as strict DER (X.690 section 10: minimal lengths, canonical OIDs, no
/// trailing data) around its signed info, which is taken as the bytes x509-parser read: what is
/// inside it is signed, and is checked by [`check_structure`] and the policy.
fn strict_envelope<'a>(
    der: &'a [u8],
    info: &[u8],
) -> der::Result<(AlgorithmIdentifierRef<'a>, BitStringRef<'a>)> {
    let mut reader = SliceReader::new(der)?;
    let envelope = reader.sequence(|r| {
        if r.read_slice(Length::try_from(info.len())?)? != info {
            return Err(der::Tag::Sequence.value_error());
        }
        let algorithm = AlgorithmIdentifierRef::decode(r)?;
        let signature = BitStringRef::decode(r)?;
        Ok((algorithm, signature))
    })?;
    reader.finish(envelope)
}

/// The SubjectPublicKeyInfo the certificate will carry for this key (RFC 3279 section 2.3:
/// rsaEncryption with NULL parameters, id-ecPublicKey with the named curve), in DER.
fn canonical_spki(key: KeyAlgorithm, public_key: &[u8]) -> der::Result<Vec<u8>> {
    let curve = match key {
        KeyAlgorithm::Rsa { .. } => None,
        KeyAlgorithm::EcdsaP256 => Some(ObjectIdentifier::new_unwrap(OID_P256)),
        KeyAlgorithm::EcdsaP384 => Some(ObjectIdentifier::new_unwrap(OID_P384)),
        KeyAlgorithm::EcdsaP521 => Some(ObjectIdentifier::new_unwrap(OID_P521)),
    };
    let algorithm = match &curve {
        None => AlgorithmIdentifierRef {
            oid: ObjectIdentifier::new_unwrap(OID_RSA),
            parameters: Some(AnyRef::NULL),
        },
        Some(curve) => AlgorithmIdentifierRef {
            oid: ObjectIdentifier::new_unwrap(OID_EC),
            parameters: Some(AnyRef::from(curve)),
        },
    };
    SubjectPublicKeyInfoRef {
        algorithm,
        subject_public_key: BitStringRef::from_bytes(public_key)?,
    }
    .to_der()
}

// What `check_structure` counts is read by the small reader below, not by `der`, and on
// purpose. It walks the signed request info, which x509-parser has already read, and must read
// it as x509-parser does. Measured on der 0.7.10: `der` refuses universal tags it does not model
// (UniversalString 0x1c, GraphicString 0x19, ...: `TagUnknown`), which a subject attribute may
// carry and which the policy refuses with a code of its own (the hostile corpus sends a CN as a
// UniversalString and expects invalid_thing_name, not malformed_csr); and it refuses
// non-minimal lengths, which x509-parser accepts inside the signed part (such a signed request
// is accepted today). Outside the signed part, where only DER will do, `der` reads
// ([`strict_envelope`]) and writes ([`canonical_spki`]).

/// Length of the element (single-byte tag, definite length of at most 4 bytes, minimal or not)
/// at the start of `bytes`, header included; `None` when it does not fit.
fn tlv_len(bytes: &[u8]) -> Option<usize> {
    let (header, content) = tlv_header(bytes)?;
    let total = header.checked_add(content)?;
    (total <= bytes.len()).then_some(total)
}

fn tlv_header(bytes: &[u8]) -> Option<(usize, usize)> {
    if bytes.first()? & 0x1f == 0x1f {
        return None;
    }
    match *bytes.get(1)? {
        n if n < 0x80 => Some((2, usize::from(n))),
        n if (1..=4).contains(&(n & 0x7f)) => {
            let count = usize::from(n & 0x7f);
            let len = bytes
                .get(2..2 + count)?
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            Some((2 + count, len))
        }
        _ => None,
    }
}

/// The content of the element at the start of `bytes` (empty when it has none or is bad).
fn tlv_content(bytes: &[u8]) -> &[u8] {
    match (tlv_header(bytes), tlv_len(bytes)) {
        (Some((header, _)), Some(total)) => &bytes[header..total],
        _ => &[],
    }
}

/// Splits content into its elements; `None` when one runs past the end.
fn tlv_elements(mut content: &[u8]) -> Option<Vec<&[u8]>> {
    let mut elements = Vec::new();
    while !content.is_empty() {
        let (element, rest) = content.split_at(tlv_len(content)?);
        elements.push(element);
        content = rest;
    }
    Some(elements)
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

fn classify_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm, CsrError> {
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
            Ok(KeyAlgorithm::Rsa { bits })
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
                OID_P256 => (KeyAlgorithm::EcdsaP256, 65),
                OID_P384 => (KeyAlgorithm::EcdsaP384, 97),
                OID_P521 => (KeyAlgorithm::EcdsaP521, 133),
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

fn verify_signature(csr: &X509CertificationRequest<'_>, key: KeyAlgorithm) -> Result<(), CsrError> {
    let alg_oid = csr.signature_algorithm.algorithm.to_id_string();
    let algorithm: &'static dyn VerificationAlgorithm = match (key, alg_oid.as_str()) {
        (KeyAlgorithm::Rsa { .. }, "1.2.840.113549.1.1.11") => &sig::RSA_PKCS1_2048_8192_SHA256,
        (KeyAlgorithm::Rsa { .. }, "1.2.840.113549.1.1.12") => &sig::RSA_PKCS1_2048_8192_SHA384,
        (KeyAlgorithm::Rsa { .. }, "1.2.840.113549.1.1.13") => &sig::RSA_PKCS1_2048_8192_SHA512,
        (KeyAlgorithm::EcdsaP256, "1.2.840.10045.4.3.2") => &sig::ECDSA_P256_SHA256_ASN1,
        (KeyAlgorithm::EcdsaP256, "1.2.840.10045.4.3.3") => &sig::ECDSA_P256_SHA384_ASN1,
        (KeyAlgorithm::EcdsaP256, "1.2.840.10045.4.3.4") => &sig::ECDSA_P256_SHA512_ASN1,
        (KeyAlgorithm::EcdsaP384, "1.2.840.10045.4.3.2") => &sig::ECDSA_P384_SHA256_ASN1,
        (KeyAlgorithm::EcdsaP384, "1.2.840.10045.4.3.3") => &sig::ECDSA_P384_SHA384_ASN1,
        (KeyAlgorithm::EcdsaP384, "1.2.840.10045.4.3.4") => &sig::ECDSA_P384_SHA512_ASN1,
        (KeyAlgorithm::EcdsaP521, "1.2.840.10045.4.3.2") => &sig::ECDSA_P521_SHA256_ASN1,
        (KeyAlgorithm::EcdsaP521, "1.2.840.10045.4.3.3") => &sig::ECDSA_P521_SHA384_ASN1,
        (KeyAlgorithm::EcdsaP521, "1.2.840.10045.4.3.4") => &sig::ECDSA_P521_SHA512_ASN1,
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
    use crate::ca::der_encode::tlv;

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
        assert_eq!(a.key, KeyAlgorithm::EcdsaP256);
        assert_eq!(a.subject[0].value.as_deref(), Some("Thing-1"));
        assert_eq!(a.subject[0].kind, StringKind::Utf8);
    }

    #[test]
    fn the_plain_pem_path_decodes_what_the_pem_parser_decodes() {
        let der = ec_csr(&[(rcgen::DnType::CommonName, "Thing-1")]);
        let lf = crate::ca::to_pem("CERTIFICATE REQUEST", &der);
        let crlf = lf.replace('\n', "\r\n");
        let new_label = lf.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
        for text in [
            lf.clone(),
            crlf,
            new_label,
            format!("  \n{lf}\n\n"),
            lf.trim_end().to_owned(),
        ] {
            let fast = decode_plain_pem(text.as_bytes()).expect("the plain shape");
            let general = pem::parse(text.as_str()).unwrap();
            assert_eq!(fast, general.contents(), "{text:?}");
            assert_eq!(fast, der);
        }
        // Other shapes are left to the general parser.
        for text in [
            lf.replace("-----\n", "-----"),
            format!("{lf}{lf}"),
            lf.replace("END CERTIFICATE REQUEST", "END CERTIFICATE"),
            lf.replacen('\n', "\nProc-Type: 4,ENCRYPTED\n", 1),
            {
                let mut t = lf.clone();
                let i = t.find('\n').unwrap() + 5;
                t.replace_range(i..i + 1, "*");
                t
            },
        ] {
            assert_eq!(decode_plain_pem(text.as_bytes()), None, "{text:?}");
        }
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

    /// A signed P-256 request whose subject is the one attribute `atv`.
    fn request_with_attribute(atv: Vec<u8>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let name = tlv(0x30, &tlv(0x31, &atv));
        let info = tlv(
            0x30,
            &[&[0x02, 0x01, 0x00][..], &name, &spki, &[0xa0, 0x00]].concat(),
        );
        let signature = rcgen::SigningKey::sign(&key, &info).unwrap();
        let ecdsa_with_sha256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let bits = tlv(0x03, &[&[0u8][..], &signature].concat());
        tlv(0x30, &[info, tlv(0x30, &ecdsa_with_sha256), bits].concat())
    }

    const CN: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];

    #[test]
    fn the_signed_info_is_read_as_x509_parser_reads_it_not_as_strict_der() {
        // Why check_structure does not walk the signed info with the `der` crate: it refuses
        // both of these, which x509-parser reads and the policy then judges.
        let value = [&CN[..], &tlv(0x0c, b"Thing-1")].concat();
        let non_minimal = [&[0x30, 0x81, value.len() as u8][..], &value].concat();
        let parsed = parse(&request_with_attribute(non_minimal)).unwrap();
        assert_eq!(parsed.subject[0].value.as_deref(), Some("Thing-1"));

        let universal = tlv(0x30, &[&CN[..], &tlv(0x1c, &[0, 0, 0, b'T'])].concat());
        let parsed = parse(&request_with_attribute(universal)).unwrap();
        assert_eq!(parsed.subject[0].kind, StringKind::Other(0x1c));
    }

    #[test]
    fn outside_the_signed_info_only_der_will_do() {
        let der = request_with_attribute(tlv(0x30, &[&CN[..], &tlv(0x0c, b"T-1")].concat()));
        parse(&der).unwrap();
        // The outer length in long form, one byte longer than DER's.
        let (header, content) = der.split_at(if der[1] == 0x81 { 3 } else { 2 });
        let long = [&[0x30, 0x82, 0x00][..], &[content.len() as u8][..], content].concat();
        assert_eq!(header.last(), Some(&(content.len() as u8)));
        let err = parse(&long).unwrap_err();
        assert!(
            err.to_string().contains("not DER outside its signed part"),
            "{err}"
        );
    }

    #[test]
    fn counts_rsa_modulus_bits_without_leading_zeros() {
        assert_eq!(unsigned_bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bit_length(&[0x01, 0xff]), 9);
        assert_eq!(unsigned_bit_length(&[0x00]), 0);
    }
}
