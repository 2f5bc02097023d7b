//! DER building blocks (X.690) on the `der` crate: enough to write the CSRs no library will
//! produce. Tags, lengths and primitive values are `der`'s; what is hand-made is only the
//! assembly of already-encoded parts, since hostile structures are by design not the typed
//! ones `der` models (an AttributeTypeAndValue with three elements, a string with invalid
//! UTF-8, an RSA key with a negative exponent).
//!
//! `der` 0.8, not the 0.7 that pkcs8 brings: 0.7 encodes OIDs with const-oid 0.9.6, which
//! writes the arc 128 as `80 00` instead of `81 00` (found when the 3000-attribute CSR of
//! `profile.rs`, arcs 1.3.6.1.4.1.55555.0 to .2999, came out malformed); 0.8 uses const-oid
//! 0.10, whose encoder is right.

use der_writer::asn1::{AnyRef, BitStringRef, Null, ObjectIdentifier, Utf8StringRef};
use der_writer::{Decode, Encode, Tag, TagNumber};
use x509_parser::prelude::*;

use crate::common::run;
use std::path::Path;
use std::process::Command;

pub const PKCS10: &str = "application/pkcs10";

pub const OID_CN: &[u64] = &[2, 5, 4, 3];
pub const OID_C: &[u64] = &[2, 5, 4, 6];
pub const OID_L: &[u64] = &[2, 5, 4, 7];
pub const OID_ST: &[u64] = &[2, 5, 4, 8];
pub const OID_O: &[u64] = &[2, 5, 4, 10];
pub const OID_OU: &[u64] = &[2, 5, 4, 11];
pub const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
pub const OID_DN_QUALIFIER: &[u64] = &[2, 5, 4, 46];
pub const OID_TITLE: &[u64] = &[2, 5, 4, 12];
pub const OID_EMAIL: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];
pub const OID_DC: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 25];
pub const OID_UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
pub const OID_UNKNOWN: &[u64] = &[1, 2, 3, 4];

pub const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
pub const OID_SHA256_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 11];
pub const OID_EC: &[u64] = &[1, 2, 840, 10045, 2, 1];
pub const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
pub const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
pub const OID_ECDSA_SHA384: &[u64] = &[1, 2, 840, 10045, 4, 3, 3];
pub const OID_ECDSA_SHA512: &[u64] = &[1, 2, 840, 10045, 4, 3, 4];

// Universal tags of the string types a subject may use (X.680 section 8.6).
pub const UTF8: u8 = 0x0c;
pub const PRINTABLE: u8 = 0x13;
pub const TELETEX: u8 = 0x14;
pub const IA5: u8 = 0x16;
pub const UNIVERSAL: u8 = 0x1c;
pub const BMP: u8 = 0x1e;

/// One tag-length-value: `content` as given, under `tag`.
pub fn element(tag: Tag, content: &[u8]) -> Vec<u8> {
    AnyRef::new(tag, content)
        .and_then(|any| any.to_der())
        .expect("DER element")
}

/// A SEQUENCE of already-encoded elements.
pub fn sequence(elements: &[&[u8]]) -> Vec<u8> {
    element(Tag::Sequence, &elements.concat())
}

/// A SET OF already-encoded elements, in DER order (X.690 section 11.6: by their encodings).
/// Not `der_writer::asn1::SetOfVec`: it refuses equal elements, and a generated subject may repeat
/// an attribute within one RDN.
pub fn set_of(mut elements: Vec<Vec<u8>>) -> Vec<u8> {
    elements.sort();
    element(Tag::Set, &elements.concat())
}

/// A string value of the universal type `tag`, whose bytes are taken as given (invalid UTF-8
/// in a UTF8String, '_' in a PrintableString...).
pub fn string_value(tag: u8, value: &[u8]) -> Vec<u8> {
    match Tag::from_der(&[tag]) {
        Ok(tag) => element(tag, value),
        // `der` has no UniversalString tag: encode the bytes under another primitive tag, then
        // put the wanted tag byte in its place (the length is the same).
        Err(_) => {
            let mut der = element(Tag::OctetString, value);
            der[0] = tag;
            der
        }
    }
}

pub fn oid(arcs: &[u64]) -> Vec<u8> {
    ObjectIdentifier::from_arcs(arcs.iter().map(|&arc| u32::try_from(arc).expect("OID arc")))
        .expect("OID arcs")
        .to_der()
        .expect("OID")
}

/// A BIT STRING with no unused bits.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    BitStringRef::new(0, bytes)
        .and_then(|bits| bits.to_der())
        .expect("BIT STRING")
}

pub fn null() -> Vec<u8> {
    Null.to_der().expect("NULL")
}

/// An INTEGER with exactly these content octets (negative, zero, not minimal: as given).
pub fn integer_bytes(content: &[u8]) -> Vec<u8> {
    element(Tag::Integer, content)
}

/// A positive INTEGER of this big-endian magnitude (a leading zero when the top bit is set).
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    der_writer::asn1::UintRef::new(magnitude)
        .and_then(|n| n.to_der())
        .expect("INTEGER")
}

pub fn utf8_string(value: &str) -> Vec<u8> {
    Utf8StringRef::new(value)
        .and_then(|s| s.to_der())
        .expect("UTF8String")
}

pub fn printable_string(value: &str) -> Vec<u8> {
    der_writer::asn1::PrintableStringRef::new(value)
        .and_then(|s| s.to_der())
        .expect("PrintableString")
}

/// `[number] IMPLICIT` around already-encoded constructed content (a SET, a SEQUENCE).
pub fn context_constructed(number: u8, content: &[u8]) -> Vec<u8> {
    element(
        Tag::ContextSpecific {
            constructed: true,
            number: TagNumber(number.into()),
        },
        content,
    )
}

/// `[number] IMPLICIT` IA5String (a GeneralName's dNSName, for one).
pub fn context_ia5(number: u8, value: &str) -> Vec<u8> {
    element(
        Tag::ContextSpecific {
            constructed: false,
            number: TagNumber(number.into()),
        },
        value.as_bytes(),
    )
}

/// The header and the content of the single DER element `der`.
pub fn split_element(der: &[u8]) -> (&[u8], &[u8]) {
    let content = AnyRef::from_der(der).expect("one DER element").value();
    der.split_at(der.len() - content.len())
}

/// An AttributeTypeAndValue whose value is `value` under the universal `tag`, as given.
#[derive(Clone, Debug)]
pub struct Ava {
    pub oid: Vec<u64>,
    pub tag: u8,
    pub value: Vec<u8>,
}

pub fn ava(oid: &[u64], tag: u8, value: impl AsRef<[u8]>) -> Ava {
    Ava {
        oid: oid.to_vec(),
        tag,
        value: value.as_ref().to_vec(),
    }
}

pub fn utf8(oid: &[u64], value: &str) -> Ava {
    ava(oid, UTF8, value)
}

pub fn printable(oid: &[u64], value: &str) -> Ava {
    ava(oid, PRINTABLE, value)
}

pub fn bmp(value: &str) -> Vec<u8> {
    value.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

pub fn universal(value: &str) -> Vec<u8> {
    value
        .chars()
        .flat_map(|c| (c as u32).to_be_bytes())
        .collect()
}

/// A Name (RFC 5280 4.1.2.4): each inner list is one RDN.
pub fn name_der(rdns: &[Vec<Ava>]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = rdns
        .iter()
        .map(|rdn| {
            set_of(
                rdn.iter()
                    .map(|a| sequence(&[&oid(&a.oid), &string_value(a.tag, &a.value)]))
                    .collect(),
            )
        })
        .collect();
    element(Tag::Sequence, &rdns.concat())
}

/// A subject of single-valued RDNs, in order.
pub fn flat(avas: Vec<Ava>) -> Vec<Vec<Ava>> {
    avas.into_iter().map(|a| vec![a]).collect()
}

/// An Attribute of the CSR (RFC 2986 section 4.1), with one UTF8String value.
pub fn csr_attribute(arcs: &[u64], value: &str) -> Vec<u8> {
    sequence(&[&oid(arcs), &set_of(vec![utf8_string(value)])])
}

/// CertificationRequestInfo (RFC 2986 section 4.1) from raw parts.
pub fn request_info(version: u8, subject: &[u8], spki: &[u8], attributes: &[Vec<u8>]) -> Vec<u8> {
    let version = version.to_der().expect("INTEGER");
    let attributes = set_of(attributes.to_vec());
    // [0] IMPLICIT SET OF Attribute: the SET's content under the context tag.
    let (_, attributes) = split_element(&attributes);
    sequence(&[&version, subject, spki, &context_constructed(0, attributes)])
}

/// AlgorithmIdentifier of a signature: RSA ones carry NULL parameters, ECDSA ones none.
pub fn signature_algorithm(arcs: &[u64]) -> Vec<u8> {
    if arcs.starts_with(&[1, 2, 840, 113549]) {
        sequence(&[&oid(arcs), &null()])
    } else {
        sequence(&[&oid(arcs)])
    }
}

/// CertificationRequest: the info, the algorithm and the signature, as given.
pub fn request(info: &[u8], algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    sequence(&[info, algorithm, &bit_string(signature)])
}

pub fn p256() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

/// A CSR with a hand-built subject and CSR attributes, signed (ECDSA P-256 SHA-256) by `key`.
pub fn signed_csr(key: &rcgen::KeyPair, subject: &[Vec<Ava>], attributes: &[Vec<u8>]) -> Vec<u8> {
    let spki = rcgen::PublicKeyData::subject_public_key_info(key);
    let info = request_info(0, &name_der(subject), &spki, attributes);
    let signature = rcgen::SigningKey::sign(key, &info).expect("sign");
    request(&info, &signature_algorithm(OID_ECDSA_SHA256), &signature)
}

/// A CSR whose subject is `subject` and whose key is a fresh P-256 key.
pub fn subject_csr(subject: &[Vec<Ava>]) -> Vec<u8> {
    signed_csr(&p256(), subject, &[])
}

/// The usual valid subject around a CN.
pub fn with_cn(cn: Ava) -> Vec<Vec<Ava>> {
    flat(vec![printable(OID_C, "JP"), cn])
}

/// The usual valid subject around a C.
pub fn with_c(c: Ava) -> Vec<Vec<Ava>> {
    flat(vec![c, utf8(OID_CN, "Country-Case")])
}

/// An RSA SubjectPublicKeyInfo around any modulus and exponent, valid or not: the key checks
/// must answer before anything uses the numbers. The exponent's INTEGER octets are taken as
/// given.
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let key = sequence(&[&unsigned_integer(modulus), &integer_bytes(exponent)]);
    sequence(&[&sequence(&[&oid(OID_RSA), &null()]), &bit_string(&key)])
}

/// An EC SubjectPublicKeyInfo with the given algorithm parameters (DER, or none) and point.
pub fn ec_spki(parameters: Option<&[u8]>, point: &[u8]) -> Vec<u8> {
    let algorithm = match parameters {
        Some(p) => sequence(&[&oid(OID_EC), p]),
        None => sequence(&[&oid(OID_EC)]),
    };
    sequence(&[&algorithm, &bit_string(point)])
}

/// Deterministic filler bytes (xorshift), so that the corpus is the same on every run.
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A modulus of exactly `bits` bits (top bit set, odd): RSA-shaped, but nobody's key.
pub fn fake_modulus(bits: usize) -> Vec<u8> {
    let mut m = filler(bits.div_ceil(8), bits as u64);
    let top = (bits - 1) % 8;
    m[0] &= (1u16 << (top + 1)).wrapping_sub(1) as u8;
    m[0] |= 1 << top;
    let last = m.len() - 1;
    m[last] |= 1;
    m
}

/// A CSR around `spki` with a valid subject and a signature made by nobody.
pub fn unsigned_csr(spki: &[u8], algorithm: &[u64], signature_len: usize) -> Vec<u8> {
    let subject = name_der(&with_cn(utf8(OID_CN, "Fake-Key")));
    let info = request_info(0, &subject, spki, &[]);
    request(
        &info,
        &signature_algorithm(algorithm),
        &filler(signature_len, 7),
    )
}

pub fn pem(der: &[u8]) -> String {
    factory_ca::ca::to_pem("CERTIFICATE REQUEST", der)
}

/// The request info, algorithm and signature of a DER CSR, as raw slices.
pub fn split_csr(der: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (_, csr) = X509CertificationRequest::from_der(der).expect("CSR");
    let info = csr.certification_request_info.raw.to_vec();
    let offset = der
        .windows(info.len())
        .position(|w| w == info.as_slice())
        .expect("the info is inside the request");
    let after = &der[offset + info.len()..];
    let (rest, _) = AlgorithmIdentifier::from_der(after).expect("algorithm");
    let algorithm = after[..after.len() - rest.len()].to_vec();
    (info, algorithm, csr.signature_value.data.to_vec())
}

/// A CSR made by the openssl command line in `dir`; `key_args` make or name the key.
pub fn openssl_req(dir: &Path, key_args: &[&str], subject: &str, extra: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("{}.csr", uuid::Uuid::new_v4().simple()));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-nodes", "-outform", "DER", "-subj", subject])
        .args(key_args)
        .args(extra)
        .arg("-out")
        .arg(&out);
    run(&mut cmd);
    std::fs::read(out).expect("openssl wrote the CSR")
}

/// `openssl req` with a new key from `-newkey` arguments.
pub fn openssl_newkey(dir: &Path, newkey: &[&str], subject: &str, extra: &[&str]) -> Vec<u8> {
    let key = dir.join(format!("{}.key", uuid::Uuid::new_v4().simple()));
    let mut args: Vec<&str> = newkey.to_vec();
    let key = key.to_str().unwrap().to_owned();
    args.extend(["-keyout", &key]);
    openssl_req(dir, &args, subject, extra)
}

/// Runs openssl to write a key file and returns its path.
pub fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name).to_str().unwrap().to_owned();
    let mut cmd = Command::new("openssl");
    cmd.args(args).arg("-out").arg(&path);
    run(&mut cmd);
    path
}
