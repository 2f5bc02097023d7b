//! Hostile input, generated here rather than checked in: every CSR and request in the corpus
//! gets its documented 4xx code, never a 5xx, never a certificate, and leaves the ledger as it
//! was; a CSR that asks for more than the profile gives (CA:TRUE, pathLen, SANs, serverAuth, ...)
//! gets a plain CA:FALSE clientAuth certificate; and a property test feeds arbitrary bytes and
//! mutated CSRs through parse -> policy -> sign.
//!
//! `tests/api/bad_input.rs` holds the first, smaller table; this corpus goes beyond it and
//! repeats a few of its cases where a complete list reads better.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use factory_ca::ca::policy::SubjectField;
use factory_ca::ca::{
    ApprovedCsr, CaAlgorithm, CaSubject, CertificateAuthority, CsrError, DeviceProfile,
    IssuancePolicy, IssuedCertificate,
};
use factory_ca::store::Store;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use x509_parser::prelude::*;
use yasna::models::ObjectIdentifier;

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(
    every_hostile_csr_gets_its_code_and_leaves_no_record,
    every_hostile_request_gets_its_code_and_leaves_no_record,
    a_csr_asking_for_more_than_the_profile_gets_a_plain_device_certificate,
);

// ---------------------------------------------------------------------------------------------
// DER building blocks (X.690): enough to write the CSRs no library will produce.

const PKCS10: &str = "application/pkcs10";

const OID_CN: &[u64] = &[2, 5, 4, 3];
const OID_C: &[u64] = &[2, 5, 4, 6];
const OID_L: &[u64] = &[2, 5, 4, 7];
const OID_ST: &[u64] = &[2, 5, 4, 8];
const OID_O: &[u64] = &[2, 5, 4, 10];
const OID_OU: &[u64] = &[2, 5, 4, 11];
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
const OID_DN_QUALIFIER: &[u64] = &[2, 5, 4, 46];
const OID_TITLE: &[u64] = &[2, 5, 4, 12];
const OID_EMAIL: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];
const OID_DC: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 25];
const OID_UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
const OID_UNKNOWN: &[u64] = &[1, 2, 3, 4];

const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_SHA256_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 11];
const OID_EC: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
const OID_ECDSA_SHA384: &[u64] = &[1, 2, 840, 10045, 4, 3, 3];
const OID_ECDSA_SHA512: &[u64] = &[1, 2, 840, 10045, 4, 3, 4];

// Universal tags of the string types a subject may use (X.680 section 8.6).
const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;
const TELETEX: u8 = 0x14;
const IA5: u8 = 0x16;
const UNIVERSAL: u8 = 0x1c;
const BMP: u8 = 0x1e;

/// One tag-length-value, with a DER (minimal) length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn oid(arcs: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(arcs)
}

/// An AttributeTypeAndValue whose value is `value` under the universal `tag`, as given.
#[derive(Clone, Debug)]
struct Ava {
    oid: Vec<u64>,
    tag: u8,
    value: Vec<u8>,
}

fn ava(oid: &[u64], tag: u8, value: impl AsRef<[u8]>) -> Ava {
    Ava {
        oid: oid.to_vec(),
        tag,
        value: value.as_ref().to_vec(),
    }
}

fn utf8(oid: &[u64], value: &str) -> Ava {
    ava(oid, UTF8, value)
}

fn printable(oid: &[u64], value: &str) -> Ava {
    ava(oid, PRINTABLE, value)
}

fn bmp(value: &str) -> Vec<u8> {
    value.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

fn universal(value: &str) -> Vec<u8> {
    value
        .chars()
        .flat_map(|c| (c as u32).to_be_bytes())
        .collect()
}

/// A Name (RFC 5280 4.1.2.4): each inner list is one RDN.
fn name_der(rdns: &[Vec<Ava>]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence_of(|w| {
            for rdn in rdns {
                w.next().write_set_of(|w| {
                    for a in rdn {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(&a.oid));
                            w.next().write_der(&tlv(a.tag, &a.value));
                        });
                    }
                });
            }
        });
    })
}

/// A subject of single-valued RDNs, in order.
fn flat(avas: Vec<Ava>) -> Vec<Vec<Ava>> {
    avas.into_iter().map(|a| vec![a]).collect()
}

/// An Attribute of the CSR (RFC 2986 section 4.1), with one UTF8String value.
fn csr_attribute(arcs: &[u64], value: &str) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(arcs));
            w.next().write_set_of(|w| w.next().write_utf8_string(value));
        })
    })
}

/// CertificationRequestInfo (RFC 2986 section 4.1) from raw parts.
fn request_info(version: u8, subject: &[u8], spki: &[u8], attributes: &[Vec<u8>]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(version);
            w.next().write_der(subject);
            w.next().write_der(spki);
            w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                w.write_set_of(|w| {
                    for a in attributes {
                        w.next().write_der(a);
                    }
                })
            });
        })
    })
}

/// AlgorithmIdentifier of a signature: RSA ones carry NULL parameters, ECDSA ones none.
fn signature_algorithm(arcs: &[u64]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(arcs));
            if arcs.starts_with(&[1, 2, 840, 113549]) {
                w.next().write_null();
            }
        })
    })
}

/// CertificationRequest: the info, the algorithm and the signature, as given.
fn request(info: &[u8], algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(info);
            w.next().write_der(algorithm);
            w.next().write_bitvec_bytes(signature, signature.len() * 8);
        })
    })
}

fn p256() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

/// A CSR with a hand-built subject and CSR attributes, signed (ECDSA P-256 SHA-256) by `key`.
fn signed_csr(key: &rcgen::KeyPair, subject: &[Vec<Ava>], attributes: &[Vec<u8>]) -> Vec<u8> {
    let spki = rcgen::PublicKeyData::subject_public_key_info(key);
    let info = request_info(0, &name_der(subject), &spki, attributes);
    let signature = rcgen::SigningKey::sign(key, &info).expect("sign");
    request(&info, &signature_algorithm(OID_ECDSA_SHA256), &signature)
}

/// A CSR whose subject is `subject` and whose key is a fresh P-256 key.
fn subject_csr(subject: &[Vec<Ava>]) -> Vec<u8> {
    signed_csr(&p256(), subject, &[])
}

/// The usual valid subject around a CN.
fn with_cn(cn: Ava) -> Vec<Vec<Ava>> {
    flat(vec![printable(OID_C, "JP"), cn])
}

/// The usual valid subject around a C.
fn with_c(c: Ava) -> Vec<Vec<Ava>> {
    flat(vec![c, utf8(OID_CN, "Country-Case")])
}

/// An RSA SubjectPublicKeyInfo around any modulus and exponent, valid or not: the key checks
/// must answer before anything uses the numbers.
fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    // A positive INTEGER gets a leading zero only when its top bit is set (X.690 8.3.2).
    let n = if modulus[0] & 0x80 != 0 {
        [&[0u8], modulus].concat()
    } else {
        modulus.to_vec()
    };
    let key = tlv(0x30, &[tlv(0x02, &n), tlv(0x02, exponent)].concat());
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(OID_RSA));
                w.next().write_null();
            });
            w.next().write_bitvec_bytes(&key, key.len() * 8);
        })
    })
}

/// An EC SubjectPublicKeyInfo with the given algorithm parameters (DER, or none) and point.
fn ec_spki(parameters: Option<&[u8]>, point: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(OID_EC));
                if let Some(p) = parameters {
                    w.next().write_der(p);
                }
            });
            w.next().write_bitvec_bytes(point, point.len() * 8);
        })
    })
}

/// Deterministic filler bytes (xorshift), so that the corpus is the same on every run.
fn filler(len: usize, seed: u64) -> Vec<u8> {
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
fn fake_modulus(bits: usize) -> Vec<u8> {
    let mut m = filler(bits.div_ceil(8), bits as u64);
    let top = (bits - 1) % 8;
    m[0] &= (1u16 << (top + 1)).wrapping_sub(1) as u8;
    m[0] |= 1 << top;
    let last = m.len() - 1;
    m[last] |= 1;
    m
}

/// A CSR around `spki` with a valid subject and a signature made by nobody.
fn unsigned_csr(spki: &[u8], algorithm: &[u64], signature_len: usize) -> Vec<u8> {
    let subject = name_der(&with_cn(utf8(OID_CN, "Fake-Key")));
    let info = request_info(0, &subject, spki, &[]);
    request(
        &info,
        &signature_algorithm(algorithm),
        &filler(signature_len, 7),
    )
}

/// The header and content of the single DER element `der` (definite length).
fn split_tlv(der: &[u8]) -> (&[u8], &[u8]) {
    let header = match der[1] {
        n if n < 0x80 => 2,
        n => 2 + usize::from(n & 0x7f),
    };
    der.split_at(header)
}

fn pem(der: &[u8]) -> String {
    factory_ca::ca::to_pem("CERTIFICATE REQUEST", der)
}

/// The request info, algorithm and signature of a DER CSR, as raw slices.
fn split_csr(der: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
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
fn openssl_req(dir: &Path, key_args: &[&str], subject: &str, extra: &[&str]) -> Vec<u8> {
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
fn openssl_newkey(dir: &Path, newkey: &[&str], subject: &str, extra: &[&str]) -> Vec<u8> {
    let key = dir.join(format!("{}.key", uuid::Uuid::new_v4().simple()));
    let mut args: Vec<&str> = newkey.to_vec();
    let key = key.to_str().unwrap().to_owned();
    args.extend(["-keyout", &key]);
    openssl_req(dir, &args, subject, extra)
}

/// Runs openssl to write a key file and returns its path.
fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name).to_str().unwrap().to_owned();
    let mut cmd = Command::new("openssl");
    cmd.args(args).arg("-out").arg(&path);
    run(&mut cmd);
    path
}

// ---------------------------------------------------------------------------------------------
// The corpus.

#[derive(Clone)]
enum Body {
    Json(serde_json::Value),
    /// Raw bytes with a Content-Type ("" sends none).
    Raw(&'static str, Vec<u8>),
}

#[derive(Clone)]
struct Case {
    name: String,
    body: Body,
    status: StatusCode,
    code: &'static str,
}

fn case(name: impl Into<String>, body: Body, status: StatusCode, code: &'static str) -> Case {
    Case {
        name: name.into(),
        body,
        status,
        code,
    }
}

fn json_csr(pem_text: &str) -> Body {
    Body::Json(serde_json::json!({ "csr": pem_text }))
}

fn der_body(der: Vec<u8>) -> Body {
    Body::Raw(PKCS10, der)
}

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

/// Every hostile CSR, built once per test process (both backends share it).
fn csr_corpus() -> &'static [Case] {
    static CORPUS: OnceLock<Vec<Case>> = OnceLock::new();
    CORPUS.get_or_init(build_csr_corpus)
}

fn build_csr_corpus() -> Vec<Case> {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let key = p256();
    let good_der = signed_csr(&key, &with_cn(utf8(OID_CN, "Good-1")), &[]);
    let good = pem(&good_der);
    let (info, algorithm, signature) = split_csr(&good_der);
    let mut cases = Vec::new();

    // -- Not a PKCS#10 request at all: 400 invalid_csr.
    let invalid = |name: &str, body: Body| case(name, body, BAD, "invalid_csr");
    cases.push(invalid("empty raw body", der_body(Vec::new())));
    cases.push(invalid("whitespace only", der_body(b" \r\n\t ".to_vec())));
    cases.push(invalid("random bytes", der_body(filler(512, 42))));
    cases.push(invalid("zero bytes", der_body(vec![0; 256])));
    cases.push(invalid(
        "PEM with characters outside base64",
        json_csr("-----BEGIN CERTIFICATE REQUEST-----\n!!not*base64$$\n-----END CERTIFICATE REQUEST-----\n"),
    ));
    cases.push(invalid(
        "PEM whose base64 decodes to garbage",
        json_csr(&pem(&filler(300, 3))),
    ));
    cases.push(invalid(
        "PEM without its END line",
        json_csr(&good[..good.find("-----END").unwrap()]),
    ));
    cases.push(invalid(
        "PEM cut after the BEGIN line",
        json_csr("-----BEGIN CERTIFICATE REQUEST-----\n"),
    ));
    cases.push(invalid(
        "PEM with mismatched END label",
        json_csr(&good.replace("END CERTIFICATE REQUEST", "END CERTIFICATE")),
    ));
    for label in [
        "CERTIFICATE",
        "PRIVATE KEY",
        "X509 CRL",
        "PKCS7",
        "certificate request",
    ] {
        cases.push(invalid(
            &format!("PEM labelled {label}"),
            json_csr(&good.replace("CERTIFICATE REQUEST", label)),
        ));
    }
    cases.push(invalid(
        "PEM followed by a private key block",
        json_csr(&format!(
            "{good}{}",
            factory_ca::ca::to_pem("PRIVATE KEY", &key.serialize_der())
        )),
    ));
    cases.push(invalid(
        "text before the PEM block",
        json_csr(&format!("hello\n{good}")),
    ));
    cases.push(invalid(
        "PEM with invalid UTF-8",
        Body::Raw(
            PKCS10,
            [
                b"-----BEGIN CERTIFICATE REQUEST-----\n\xff\xfe".as_slice(),
                good.lines().nth(1).unwrap().as_bytes(),
                b"\n-----END CERTIFICATE REQUEST-----\n",
            ]
            .concat(),
        ),
    ));
    for (what, len) in [
        ("1 byte", 1),
        ("half", good_der.len() / 2),
        ("all but 1 byte", good_der.len() - 1),
    ] {
        cases.push(invalid(
            &format!("DER truncated to {what}"),
            der_body(good_der[..len].to_vec()),
        ));
    }
    let mut long_length = good_der.clone();
    long_length[2] = long_length[2].wrapping_add(1);
    cases.push(invalid(
        "DER whose outer length runs past the data",
        der_body(long_length),
    ));
    cases.push(invalid(
        "DER claiming a 4 GiB length",
        der_body(vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x00]),
    ));
    let content = &good_der[good_der.len() - info.len() - algorithm.len() - signature.len() - 3..];
    cases.push(invalid(
        "BER indefinite length",
        der_body([&[0x30, 0x80], content, &[0, 0]].concat()),
    ));
    cases.push(invalid(
        "DER followed by a second request",
        der_body([good_der.clone(), good_der.clone()].concat()),
    ));
    let extra_element = {
        let signature_bits =
            yasna::construct_der(|w| w.write_bitvec_bytes(&signature, signature.len() * 8));
        tlv(
            0x30,
            &[
                info.clone(),
                algorithm.clone(),
                signature_bits,
                tlv(0x05, &[]),
            ]
            .concat(),
        )
    };
    cases.push(invalid(
        "request with an extra element after the signature",
        der_body(extra_element),
    ));
    // x509-parser reads the fields it knows and skips whatever follows inside a SEQUENCE.
    // PKCS#10 has no room for more: each of these is signed (or outside the signature) and
    // must still be refused.
    let with_extra = |der: &[u8]| -> Vec<u8> {
        let (_, content) = split_tlv(der);
        tlv(0x30, &[content, &tlv(0x05, &[])].concat())
    };
    let algorithm_with_extra = with_extra(&algorithm);
    cases.push(invalid(
        "signature algorithm with an extra element (outside the signature)",
        der_body(request(&info, &algorithm_with_extra, &signature)),
    ));
    let resign = |info: Vec<u8>| -> Vec<u8> {
        let signature = rcgen::SigningKey::sign(&key, &info).unwrap();
        request(&info, &signature_algorithm(OID_ECDSA_SHA256), &signature)
    };
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let subject = name_der(&with_cn(utf8(OID_CN, "Extra-1")));
    cases.push(invalid(
        "request info with an extra element after the attributes (signed)",
        der_body(resign(with_extra(&request_info(0, &subject, &spki, &[])))),
    ));
    cases.push(invalid(
        "request info with an extra attribute-shaped element after the attributes (signed)",
        der_body(resign({
            let info = request_info(0, &subject, &spki, &[]);
            let (_, content) = split_tlv(&info);
            tlv(0x30, &[content, &csr_attribute(OID_UNKNOWN, "x")].concat())
        })),
    ));
    cases.push(invalid(
        "public key info with an extra element (signed)",
        der_body(resign(request_info(0, &subject, &with_extra(&spki), &[]))),
    ));
    cases.push(invalid(
        "key algorithm with an extra element (signed)",
        der_body(resign({
            let (_, spki_content) = split_tlv(&spki);
            let (rest, _) = AlgorithmIdentifier::from_der(spki_content).unwrap();
            let key_algorithm = &spki_content[..spki_content.len() - rest.len()];
            let spki = tlv(0x30, &[with_extra(key_algorithm).as_slice(), rest].concat());
            request_info(0, &subject, &spki, &[])
        })),
    ));
    cases.push(invalid(
        "EC curve given as an ObjectDescriptor instead of an OID (signed)",
        der_body(resign({
            let (_, spki_content) = split_tlv(&spki);
            let (rest, _) = AlgorithmIdentifier::from_der(spki_content).unwrap();
            let curve = yasna::construct_der(|w| w.write_oid(&oid(OID_P256)));
            let curve = [&[0x07u8][..], &curve[1..]].concat();
            let key_algorithm = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_oid(&oid(OID_EC));
                    w.next().write_der(&curve);
                })
            });
            let spki = tlv(0x30, &[key_algorithm.as_slice(), rest].concat());
            request_info(0, &subject, &spki, &[])
        })),
    ));
    cases.push(invalid(
        "public key BIT STRING with unused bits (signed)",
        der_body(resign({
            // The point's BIT STRING header is 03 42 00: say 4 unused bits, and clear them.
            let mut spki = spki.clone();
            let at = spki
                .windows(3)
                .position(|w| w == [0x03, 0x42, 0x00])
                .unwrap();
            spki[at + 2] = 4;
            let last = spki.len() - 1;
            spki[last] &= 0xf0;
            request_info(0, &subject, &spki, &[])
        })),
    ));
    cases.push(invalid(
        "signature BIT STRING with unused bits (outside the signature)",
        der_body({
            // A signature whose last bit is 0, so that "1 unused bit" is well-formed DER.
            let info = request_info(0, &subject, &spki, &[]);
            let signature = (0..64)
                .map(|_| rcgen::SigningKey::sign(&key, &info).unwrap())
                .find(|s| s[s.len() - 1] & 1 == 0)
                .expect("one of 64 signatures ends in a 0 bit");
            let mut der = request(&info, &signature_algorithm(OID_ECDSA_SHA256), &signature);
            let at = der.len() - signature.len() - 1;
            assert_eq!(der[at], 0, "the unused-bits octet");
            der[at] = 1;
            der
        }),
    ));
    cases.push(invalid(
        "signature algorithm OID with a stray continuation bit (outside the signature)",
        der_body({
            // ecdsa-with-SHA256 ends in 04 03 02; 04 03 82 still decodes to it in lenient
            // readers, but is not DER.
            let mut der = good_der.clone();
            let oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
            let at = der.len() - signature.len() - 3 - 2;
            assert_eq!(der[at - oid.len() + 2..at + 2], oid);
            der[at + 1] |= 0x80;
            der
        }),
    ));
    cases.push(invalid(
        "DER with a non-minimal length (outside the signature)",
        der_body({
            let (header, content) = split_tlv(&good_der);
            assert_eq!(
                header.len(),
                3,
                "a short request has a one-byte long length"
            );
            [&[0x30, 0x82, 0x00][..], &header[2..], content].concat()
        }),
    ));
    cases.push(invalid(
        "subject attribute with an extra element (signed)",
        der_body(resign({
            let atv = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_oid(&oid(OID_CN));
                    w.next().write_utf8_string("Extra-2");
                    w.next().write_utf8_string("Evil-2");
                })
            });
            let c = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_oid(&oid(OID_C));
                    w.next().write_printable_string("JP");
                })
            });
            let name = tlv(0x30, &[tlv(0x31, &c), tlv(0x31, &atv)].concat());
            request_info(0, &name, &spki, &[])
        })),
    ));
    let certificate = {
        let mut params = rcgen::CertificateParams::new(vec!["example.com".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cert-1");
        params.self_signed(&p256()).unwrap().der().to_vec()
    };
    cases.push(invalid(
        "a certificate sent as a CSR",
        der_body(certificate.clone()),
    ));
    cases.push(invalid(
        "a certificate in a CERTIFICATE REQUEST block",
        json_csr(&pem(&certificate)),
    ));
    cases.push(invalid(
        "RSA key that is not an RSAPublicKey",
        der_body(unsigned_csr(
            &yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(OID_RSA));
                        w.next().write_null();
                    });
                    w.next().write_bitvec_bytes(b"not a key", 72);
                })
            }),
            OID_SHA256_RSA,
            256,
        )),
    ));
    cases.push(invalid(
        "request version 2",
        der_body({
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            let info = request_info(
                2,
                &name_der(&with_cn(utf8(OID_CN, "Version-2"))),
                &spki,
                &[],
            );
            let signature = rcgen::SigningKey::sign(&key, &info).unwrap();
            request(&info, &signature_algorithm(OID_ECDSA_SHA256), &signature)
        }),
    ));

    // -- No proof of possession: 400 csr_signature_invalid.
    let unsigned = |name: &str, body: Body| case(name, body, BAD, "csr_signature_invalid");
    let mut flipped = good_der.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    cases.push(unsigned(
        "signature with one bit flipped",
        der_body(flipped),
    ));
    let other = p256();
    cases.push(unsigned(
        "signature made by another P-256 key",
        der_body(request(
            &info,
            &algorithm,
            &rcgen::SigningKey::sign(&other, &info).unwrap(),
        )),
    ));
    cases.push(unsigned(
        "empty signature",
        der_body(request(&info, &algorithm, &[])),
    ));
    cases.push(unsigned(
        "ECDSA signature labelled sha256WithRSAEncryption",
        der_body(request(
            &info,
            &signature_algorithm(OID_SHA256_RSA),
            &signature,
        )),
    ));
    cases.push(unsigned(
        "SHA-256 signature labelled ecdsa-with-SHA384",
        der_body(request(
            &info,
            &signature_algorithm(OID_ECDSA_SHA384),
            &signature,
        )),
    ));
    cases.push(unsigned(
        "ECDSA signature with an unknown algorithm",
        der_body(request(
            &info,
            &signature_algorithm(OID_UNKNOWN),
            &signature,
        )),
    ));
    cases.push(unsigned(
        "ECDSA P-256 signed with SHA-1",
        der_body(openssl_newkey(
            dir,
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "/C=JP/CN=Sha1-Ec",
            &["-sha1"],
        )),
    ));
    let rsa_a = openssl_newkey(dir, &["-newkey", "rsa:2048"], "/C=JP/CN=Rsa-A", &[]);
    let rsa_b = openssl_newkey(dir, &["-newkey", "rsa:2048"], "/C=JP/CN=Rsa-A", &[]);
    let (rsa_info, rsa_algorithm, _) = split_csr(&rsa_a);
    let (_, _, rsa_b_signature) = split_csr(&rsa_b);
    cases.push(unsigned(
        "RSA request signed by another RSA key",
        der_body(request(&rsa_info, &rsa_algorithm, &rsa_b_signature)),
    ));
    cases.push(unsigned(
        "RSA 2048 signed with SHA-1",
        der_body(openssl_newkey(
            dir,
            &["-newkey", "rsa:2048"],
            "/C=JP/CN=Sha1-Rsa",
            &["-sha1"],
        )),
    ));
    cases.push(unsigned(
        "fake RSA 2048 modulus (passes the key check, not the signature)",
        der_body(unsigned_csr(
            &rsa_spki(&fake_modulus(2048), &[1, 0, 1]),
            OID_SHA256_RSA,
            256,
        )),
    ));
    let mut off_curve = vec![4u8];
    off_curve.extend(filler(64, 11));
    cases.push(unsigned(
        "P-256 point not on the curve",
        der_body(unsigned_csr(
            &ec_spki(
                Some(&yasna::construct_der(|w| w.write_oid(&oid(OID_P256)))),
                &off_curve,
            ),
            OID_ECDSA_SHA256,
            72,
        )),
    ));

    // -- Keys AWS IoT does not accept: 422 unsupported_key.
    let unsupported = |name: &str, body: Body| case(name, body, UNPROCESSABLE, "unsupported_key");
    cases.push(unsupported(
        "RSA 1024",
        der_body(openssl_newkey(
            dir,
            &["-newkey", "rsa:1024"],
            "/C=JP/CN=Rsa-1024",
            &[],
        )),
    ));
    for bits in [2047usize, 8193, 16384] {
        cases.push(unsupported(
            &format!("RSA {bits} (hand-built modulus)"),
            der_body(unsigned_csr(
                &rsa_spki(&fake_modulus(bits), &[1, 0, 1]),
                OID_SHA256_RSA,
                bits.div_ceil(8),
            )),
        ));
    }
    cases.push(unsupported(
        "RSA with a 480000-bit modulus (just under the body limit)",
        der_body(unsigned_csr(
            &rsa_spki(&fake_modulus(480_000), &[1, 0, 1]),
            OID_SHA256_RSA,
            16,
        )),
    ));
    for (what, exponent) in [
        ("1", vec![1u8]),
        ("65536 (even)", vec![1, 0, 0]),
        ("0", vec![0]),
        ("negative", vec![0xff]),
    ] {
        cases.push(unsupported(
            &format!("RSA 2048 with public exponent {what}"),
            der_body(unsigned_csr(
                &rsa_spki(&fake_modulus(2048), &exponent),
                OID_SHA256_RSA,
                256,
            )),
        ));
    }
    cases.push(unsupported(
        "RSA-PSS key",
        der_body(openssl_newkey(
            dir,
            &["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048"],
            "/C=JP/CN=Pss-1",
            &[],
        )),
    ));
    let dsa_params = openssl_key(
        dir,
        "dsa.params",
        &[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:1024",
            "-pkeyopt",
            "dsa_paramgen_q_bits:160",
        ],
    );
    let dsa_key = openssl_key(dir, "dsa.key", &["genpkey", "-paramfile", &dsa_params]);
    cases.push(unsupported(
        "DSA",
        der_body(openssl_req(
            dir,
            &["-key", &dsa_key],
            "/C=JP/CN=Dsa-1",
            &["-sha256"],
        )),
    ));
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed25519_csr = {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "JP");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ed-1");
        params.serialize_request(&ed25519).unwrap().der().to_vec()
    };
    cases.push(unsupported("Ed25519", der_body(ed25519_csr)));
    cases.push(unsupported(
        "Ed448",
        der_body(openssl_newkey(
            dir,
            &["-newkey", "ed448"],
            "/C=JP/CN=Ed448-1",
            &[],
        )),
    ));
    for curve in ["secp256k1", "P-224", "brainpoolP256r1"] {
        cases.push(unsupported(
            &format!("EC curve {curve}"),
            der_body(openssl_newkey(
                dir,
                &[
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    &format!("ec_paramgen_curve:{curve}"),
                ],
                "/C=JP/CN=Curve-1",
                &[],
            )),
        ));
    }
    let explicit = openssl_key(
        dir,
        "explicit.key",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-param_enc",
            "explicit",
            "-genkey",
            "-noout",
        ],
    );
    cases.push(unsupported(
        "EC P-256 with explicit parameters",
        der_body(openssl_req(
            dir,
            &["-key", &explicit],
            "/C=JP/CN=Explicit-1",
            &[],
        )),
    ));
    let named = openssl_key(
        dir,
        "named.key",
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
    );
    let compressed = dir.join("compressed.key").to_str().unwrap().to_owned();
    run(Command::new("openssl").args([
        "ec",
        "-in",
        &named,
        "-conv_form",
        "compressed",
        "-out",
        &compressed,
    ]));
    cases.push(unsupported(
        "EC P-256 with a compressed point",
        der_body(openssl_req(
            dir,
            &["-key", &compressed],
            "/C=JP/CN=Compressed-1",
            &[],
        )),
    ));
    let point = {
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let (_, parsed) = SubjectPublicKeyInfo::from_der(&spki).unwrap();
        parsed.subject_public_key.data.to_vec()
    };
    cases.push(unsupported(
        "EC key without curve parameters",
        der_body(unsigned_csr(&ec_spki(None, &point), OID_ECDSA_SHA256, 72)),
    ));
    cases.push(unsupported(
        "EC key with NULL curve parameters",
        der_body(unsigned_csr(
            &ec_spki(Some(&[0x05, 0x00]), &point),
            OID_ECDSA_SHA256,
            72,
        )),
    ));
    cases.push(unsupported(
        "unknown key algorithm",
        der_body(unsigned_csr(
            &yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next()
                        .write_sequence(|w| w.next().write_oid(&oid(OID_UNKNOWN)));
                    w.next().write_bitvec_bytes(&[1, 2, 3, 4], 32);
                })
            }),
            OID_ECDSA_SHA512,
            72,
        )),
    ));

    // -- The subject: 422 with the policy's code. Hand-built, validly signed.
    let subject_case = |name: &str, subject: Vec<Vec<Ava>>, code: &'static str| {
        case(name, der_body(subject_csr(&subject)), UNPROCESSABLE, code)
    };
    let long_cn = "a".repeat(129);
    let thing_name_cases: Vec<(&str, Ava)> = vec![
        ("CN empty", utf8(OID_CN, "")),
        ("CN of 129 characters", printable(OID_CN, &long_cn)),
        ("CN with spaces", printable(OID_CN, "Thing 1")),
        ("CN with NUL", utf8(OID_CN, "Thing\0-1")),
        ("CN with /", utf8(OID_CN, "line/3")),
        ("CN with a newline", utf8(OID_CN, "Thing-1\n")),
        ("CN non-ASCII", utf8(OID_CN, "Dévice-1")),
        ("CN with a zero-width space", utf8(OID_CN, "Thing\u{200b}1")),
        ("CN as BMPString", ava(OID_CN, BMP, bmp("Thing-1"))),
        ("CN as TeletexString", ava(OID_CN, TELETEX, "Thing-1")),
        ("CN as IA5String", ava(OID_CN, IA5, "Thing-1")),
        (
            "CN as UniversalString",
            ava(OID_CN, UNIVERSAL, universal("Thing-1")),
        ),
        (
            "CN as PrintableString with '_' (not in its alphabet)",
            printable(OID_CN, "Thing_1"),
        ),
        (
            "CN as UTF8String with invalid UTF-8",
            ava(OID_CN, UTF8, b"Thing-\xff"),
        ),
    ];
    for (name, cn) in thing_name_cases {
        cases.push(subject_case(name, with_cn(cn), "invalid_thing_name"));
    }
    cases.push(subject_case(
        "empty subject",
        Vec::new(),
        "missing_common_name",
    ));
    cases.push(subject_case(
        "no CN",
        flat(vec![printable(OID_C, "JP"), utf8(OID_O, "Org")]),
        "missing_common_name",
    ));
    cases.push(subject_case(
        "CN twice",
        flat(vec![
            printable(OID_C, "JP"),
            utf8(OID_CN, "Thing-1"),
            utf8(OID_CN, "Thing-1"),
        ]),
        "missing_common_name",
    ));
    cases.push(subject_case(
        "two CNs in one RDN",
        vec![
            vec![printable(OID_C, "JP")],
            vec![utf8(OID_CN, "Thing-1"), utf8(OID_CN, "Thing-2")],
        ],
        "missing_common_name",
    ));
    cases.push(subject_case(
        "CN and C in one multi-valued RDN",
        vec![vec![printable(OID_C, "JP"), utf8(OID_CN, "Thing-1")]],
        "subject_attribute_not_allowed",
    ));
    let country_cases: Vec<(&str, Ava)> = vec![
        ("C = XX", printable(OID_C, "XX")),
        ("C = jp", printable(OID_C, "jp")),
        ("C = JPN", printable(OID_C, "JPN")),
        ("C = J", printable(OID_C, "J")),
        ("C empty", printable(OID_C, "")),
        ("C = UK", printable(OID_C, "UK")),
        ("C = EU", printable(OID_C, "EU")),
        ("C with NUL", utf8(OID_C, "J\0")),
        ("C as BMPString", ava(OID_C, BMP, bmp("JP"))),
        ("C as TeletexString", ava(OID_C, TELETEX, "JP")),
    ];
    for (name, c) in country_cases {
        cases.push(subject_case(name, with_c(c), "invalid_country"));
    }
    cases.push(subject_case(
        "no C",
        flat(vec![utf8(OID_O, "Org"), utf8(OID_CN, "No-Country")]),
        "missing_country",
    ));
    cases.push(subject_case(
        "C twice",
        flat(vec![
            printable(OID_C, "JP"),
            printable(OID_C, "JP"),
            utf8(OID_CN, "Two-Countries"),
        ]),
        "missing_country",
    ));
    let not_allowed: Vec<(&str, Ava)> = vec![
        ("emailAddress", ava(OID_EMAIL, IA5, "a@example.com")),
        ("an unknown OID", utf8(OID_UNKNOWN, "x")),
        ("domainComponent", ava(OID_DC, IA5, "example")),
        ("userId", utf8(OID_UID, "root")),
        ("title", utf8(OID_TITLE, "Admin")),
    ];
    for (name, extra) in not_allowed {
        cases.push(subject_case(
            &format!("{name} in the subject"),
            flat(vec![printable(OID_C, "JP"), extra, utf8(OID_CN, "Extra-1")]),
            "subject_attribute_not_allowed",
        ));
    }
    cases.push(subject_case(
        "OU twice",
        flat(vec![
            printable(OID_C, "JP"),
            utf8(OID_OU, "a"),
            utf8(OID_OU, "a"),
            utf8(OID_CN, "Ou-Twice"),
        ]),
        "subject_attribute_not_allowed",
    ));
    let mut thousands = vec![printable(OID_C, "JP"), utf8(OID_CN, "Many-Rdns")];
    thousands.extend((0..3000).map(|i| utf8(OID_OU, &format!("u{i}"))));
    cases.push(subject_case(
        "3000 OU RDNs",
        flat(thousands),
        "subject_attribute_not_allowed",
    ));
    let mut one_big_rdn = vec![printable(OID_C, "JP"), utf8(OID_CN, "Big-Rdn")];
    one_big_rdn.extend((0..2000).map(|i| utf8(OID_O, &format!("o{i}"))));
    cases.push(subject_case(
        "2000 attributes in one RDN",
        vec![one_big_rdn],
        "subject_attribute_not_allowed",
    ));
    let bad_values: Vec<(&str, Ava)> = vec![
        ("O empty", utf8(OID_O, "")),
        ("OU of 65 characters", utf8(OID_OU, &"o".repeat(65))),
        ("ST of 129 characters", utf8(OID_ST, &"s".repeat(129))),
        ("L with an ANSI escape", utf8(OID_L, "Tokyo\u{1b}[31m")),
        (
            "O with a newline (log injection)",
            utf8(OID_O, "Org\nlevel=ERROR"),
        ),
        ("O as BMPString", ava(OID_O, BMP, bmp("Org"))),
        ("ST as TeletexString", ava(OID_ST, TELETEX, "Tokyo")),
        ("O with invalid UTF-8", ava(OID_O, UTF8, b"Org\xc0\xaf")),
        (
            "serialNumber as IA5String",
            ava(OID_SERIAL_NUMBER, IA5, "123"),
        ),
        ("dnQualifier empty", printable(OID_DN_QUALIFIER, "")),
        // '?' is in PrintableString's alphabet, but the certificate writer cannot encode it.
        (
            "ST as PrintableString with '?'",
            printable(OID_ST, "Tokyo?"),
        ),
    ];
    for (name, extra) in bad_values {
        cases.push(subject_case(
            name,
            flat(vec![
                printable(OID_C, "JP"),
                extra,
                utf8(OID_CN, "Bad-Value"),
            ]),
            "invalid_subject_attribute",
        ));
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// Sending and checking.

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn send(
    app: &TestApp,
    token: &str,
    path: &str,
    body: &Body,
    idempotency_key: Option<HeaderValue>,
) -> Answer {
    // A client per request: the server closes a connection whose oversized body it did not
    // read, and a pooled connection would race with that close.
    let mut request = reqwest::Client::new()
        .post(app.url(path))
        .bearer_auth(token);
    request = match body {
        Body::Json(v) => request.json(v),
        Body::Raw("", bytes) => request.body(bytes.clone()),
        Body::Raw(content_type, bytes) => request
            .header("Content-Type", *content_type)
            .body(bytes.clone()),
    };
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = response.bytes().await.expect("body").to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// The answer is the documented problem, and carries no certificate.
fn assert_problem(name: &str, answer: &Answer, status: StatusCode, code: &str) {
    if let Err(e) = check_problem(name, answer, status, code) {
        panic!("{e}");
    }
}

fn check_problem(
    name: &str,
    answer: &Answer,
    status: StatusCode,
    code: &str,
) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.body);
    let short: String = text.chars().take(300).collect();
    if answer.status.is_server_error() {
        return Err(format!("{name}: got a 5xx: {} {short}", answer.status));
    }
    if answer.status != status {
        return Err(format!(
            "{name}: expected {status} {code}, got {}: {short}",
            answer.status
        ));
    }
    if answer.content_type != "application/problem+json" {
        return Err(format!("{name}: content type {}", answer.content_type));
    }
    let problem: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| format!("{name}: {e}: {short}"))?;
    if problem["code"] != code || problem["detail"].as_str().unwrap_or_default().is_empty() {
        return Err(format!("{name}: expected code {code}, got {problem}"));
    }
    if text.contains("BEGIN CERTIFICATE") {
        return Err(format!("{name}: a certificate in an error: {short}"));
    }
    Ok(())
}

async fn count_rows(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (n,): (i64,) = match store {
        Store::Postgres(pool) => sqlx::query_as(&sql).fetch_one(pool).await.unwrap(),
        Store::Sqlite(pool) => sqlx::query_as(&sql).fetch_one(pool).await.unwrap(),
    };
    n
}

async fn every_hostile_csr_gets_its_code_and_leaves_no_record(backend: Backend) {
    let corpus = tokio::task::spawn_blocking(csr_corpus).await.unwrap();
    let app = TestApp::spawn(backend).await;
    let before = app.ledger_count().await;
    assert!(corpus.len() > 100, "the corpus has {} cases", corpus.len());
    eprintln!("hostile CSR corpus: {} cases ({backend:?})", corpus.len());
    let mut wrong = Vec::new();
    for c in corpus {
        let answer = send(&app, &app.station, "/v1/certificates", &c.body, None).await;
        if let Err(e) = check_problem(&c.name, &answer, c.status, c.code) {
            wrong.push(e);
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    assert_eq!(
        app.ledger_count().await,
        before,
        "no hostile CSR left a row"
    );
    assert_eq!(count_rows(&app.store, "thing_claims").await, 0);
    assert_eq!(count_rows(&app.store, "idempotency_keys").await, 0);
}

/// A request body of `n` opening brackets: deep nesting, no content.
fn nested(n: usize) -> Vec<u8> {
    vec![b'['; n]
}

/// Sends a chunked POST of `total` bytes over a plain TCP stream (no Content-Length, so the
/// limit must hold while streaming) and returns the status code.
fn chunked_post(base: &str, token: &str, total: usize) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/certificates HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/pkcs10\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'A'; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        // The server may answer and close before it all arrives.
        if stream.write_all(&frame).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

async fn every_hostile_request_gets_its_code_and_leaves_no_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tokens_before = count_rows(&app.store, "api_tokens").await;
    let good = csr("Request-1", "JP").pem;
    let good_json = serde_json::to_vec(&serde_json::json!({ "csr": good })).unwrap();
    let json = |bytes: &[u8]| Body::Raw("application/json", bytes.to_vec());
    let media = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    let too_large = StatusCode::PAYLOAD_TOO_LARGE;

    let mut cases = vec![
        // Content types: only application/json and application/pkcs10 are read.
        case(
            "form-encoded",
            Body::Raw("application/x-www-form-urlencoded", good.clone().into()),
            media,
            "unsupported_media_type",
        ),
        case(
            "multipart",
            Body::Raw("multipart/form-data; boundary=x", good.clone().into()),
            media,
            "unsupported_media_type",
        ),
        case(
            "XML",
            Body::Raw("application/xml", good.clone().into()),
            media,
            "unsupported_media_type",
        ),
        case(
            "octet-stream",
            Body::Raw("application/octet-stream", der_of(&good)),
            media,
            "unsupported_media_type",
        ),
        case(
            "x-pem-file",
            Body::Raw("application/x-pem-file", good.clone().into()),
            media,
            "unsupported_media_type",
        ),
        case(
            "application/jsonx",
            Body::Raw("application/jsonx", good_json.clone()),
            media,
            "unsupported_media_type",
        ),
        case(
            "a bare 'json'",
            Body::Raw("json", good_json.clone()),
            media,
            "unsupported_media_type",
        ),
        case(
            "wildcard",
            Body::Raw("*/*", good_json.clone()),
            media,
            "unsupported_media_type",
        ),
        case(
            "no content type",
            Body::Raw("", good_json.clone()),
            media,
            "unsupported_media_type",
        ),
        // JSON that is not {"csr": "<PEM>"}.
        case("empty JSON body", json(b""), BAD, "invalid_request"),
        case("JSON null", json(b"null"), BAD, "invalid_request"),
        case("JSON array", json(b"[]"), BAD, "invalid_request"),
        case(
            "csr is a number",
            json(br#"{"csr": 1}"#),
            BAD,
            "invalid_request",
        ),
        case(
            "csr is null",
            json(br#"{"csr": null}"#),
            BAD,
            "invalid_request",
        ),
        case(
            "csr is an array",
            json(br#"{"csr": ["a"]}"#),
            BAD,
            "invalid_request",
        ),
        case(
            "csr twice",
            json(format!(r#"{{"csr": {good:?}, "csr": {good:?}}}"#).as_bytes()),
            BAD,
            "invalid_request",
        ),
        case(
            "an extra field",
            json(format!(r#"{{"csr": {good:?}, "ca": true}}"#).as_bytes()),
            BAD,
            "invalid_request",
        ),
        case(
            "trailing JSON",
            json(format!(r#"{{"csr": {good:?}}} {{}}"#).as_bytes()),
            BAD,
            "invalid_request",
        ),
        // Invalid UTF-8 and invalid Unicode.
        case(
            "invalid UTF-8 outside a string",
            json(b"{\xff\"csr\": \"x\"}"),
            BAD,
            "invalid_request",
        ),
        case(
            "overlong UTF-8 in a string",
            json(b"{\"csr\": \"\xc0\xaf\"}"),
            BAD,
            "invalid_request",
        ),
        case(
            "lone surrogate escape",
            json(br#"{"csr": "\ud800"}"#),
            BAD,
            "invalid_request",
        ),
        case(
            "UTF-8 byte order mark",
            json(&[b"\xef\xbb\xbf".as_slice(), &good_json].concat()),
            BAD,
            "invalid_request",
        ),
        case(
            "NUL in the CSR string",
            json(br#"{"csr": "\u0000"}"#),
            BAD,
            "invalid_csr",
        ),
        // Depth: serde_json stops at 128 levels; 60 000 fit in the 64 KiB limit.
        case(
            "60000 nested arrays",
            json(&nested(60_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "9000 nested objects",
            json(r#"{"csr":"#.repeat(9_000).as_bytes()),
            BAD,
            "invalid_request",
        ),
        case(
            "100000 nested arrays",
            json(&nested(100_000)),
            too_large,
            "payload_too_large",
        ),
        // Size.
        case(
            "1 MiB of JSON",
            json(format!(r#"{{"csr": "{}"}}"#, "A".repeat(1 << 20)).as_bytes()),
            too_large,
            "payload_too_large",
        ),
        case(
            "1 MiB PEM",
            Body::Raw(PKCS10, pem(&vec![0x30; 800_000]).into_bytes()),
            too_large,
            "payload_too_large",
        ),
    ];
    // The same CSR, refused because of its Idempotency-Key, before anything is signed.
    let idempotency_cases: Vec<(&str, HeaderValue)> = vec![
        ("empty Idempotency-Key", HeaderValue::from_static("")),
        (
            "Idempotency-Key of 256 characters",
            HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        ),
        (
            "Idempotency-Key with a space",
            HeaderValue::from_static("key one"),
        ),
        (
            "Idempotency-Key with a tab",
            HeaderValue::from_static("key\tone"),
        ),
        (
            "non-ASCII Idempotency-Key",
            HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        ),
    ];
    for c in cases.drain(..) {
        let answer = send(&app, &app.station, "/v1/certificates", &c.body, None).await;
        assert_problem(&c.name, &answer, c.status, c.code);
    }
    for (name, key) in idempotency_cases {
        let answer = send(
            &app,
            &app.station,
            "/v1/certificates",
            &json_csr(&good),
            Some(key),
        )
        .await;
        assert_problem(
            name,
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        );
    }
    // A streamed body without Content-Length meets the same limit.
    let base = app.base.clone();
    let station = app.station.clone();
    let status = tokio::task::spawn_blocking(move || chunked_post(&base, &station, 1 << 20))
        .await
        .unwrap();
    assert_eq!(status, 413, "chunked 1 MiB body");

    // The admin JSON routes read bodies with the same rules.
    let admin_cases = vec![
        case(
            "token: 60000 nested arrays",
            json(&nested(60_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "token: invalid UTF-8",
            json(b"{\"name\": \"\xff\", \"role\": \"station\"}"),
            BAD,
            "invalid_request",
        ),
        case(
            "token: text/plain",
            Body::Raw(
                "text/plain",
                br#"{"name": "x", "role": "station"}"#.to_vec(),
            ),
            media,
            "unsupported_media_type",
        ),
        case(
            "token: unknown role",
            json(br#"{"name": "x", "role": "root"}"#),
            BAD,
            "invalid_request",
        ),
        case(
            "token: NUL in the name",
            json(br#"{"name": "a\u0000b", "role": "station"}"#),
            UNPROCESSABLE,
            "invalid_token_name",
        ),
        case(
            "token: 1 MiB name",
            json(
                format!(
                    r#"{{"name": "{}", "role": "station"}}"#,
                    "n".repeat(1 << 20)
                )
                .as_bytes(),
            ),
            too_large,
            "payload_too_large",
        ),
    ];
    for c in admin_cases {
        let answer = send(&app, &app.admin, "/v1/admin/tokens", &c.body, None).await;
        assert_problem(&c.name, &answer, c.status, c.code);
    }
    assert_eq!(app.ledger_count().await, 0, "no hostile request left a row");
    assert_eq!(count_rows(&app.store, "idempotency_keys").await, 0);
    assert_eq!(
        count_rows(&app.store, "api_tokens").await,
        tokens_before,
        "no hostile request made a token"
    );
}

/// With a body limit far above the default, the parsers themselves meet the huge and deep
/// inputs: they still answer 4xx, and quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_deep_bodies_under_a_raised_limit_are_refused_by_the_parsers() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.body_limit_bytes = 4 << 20;
    })
    .await;
    let json = |bytes: Vec<u8>| Body::Raw("application/json", bytes);
    let cases = vec![
        case(
            "100000 nested arrays",
            json(nested(100_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "1000000 nested arrays",
            json(nested(1_000_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "1 MiB CSR string of garbage",
            json(format!(r#"{{"csr": "{}"}}"#, "A".repeat(1 << 20)).into_bytes()),
            BAD,
            "invalid_csr",
        ),
        case(
            "1 MiB PEM of garbage DER",
            Body::Raw(PKCS10, pem(&filler(800_000, 5)).into_bytes()),
            BAD,
            "invalid_csr",
        ),
        case(
            "3 MiB DER claiming to be a sequence",
            Body::Raw(
                PKCS10,
                [vec![0x30, 0x83, 0x30, 0x00, 0x00], vec![0x30; 3 << 20]].concat(),
            ),
            BAD,
            "invalid_csr",
        ),
        case(
            "RSA with a 16-million-bit modulus",
            der_body(unsigned_csr(
                &rsa_spki(&fake_modulus(16_000_000), &[1, 0, 1]),
                OID_SHA256_RSA,
                16,
            )),
            UNPROCESSABLE,
            "unsupported_key",
        ),
        case(
            "50000 OU RDNs",
            der_body(subject_csr(&flat(
                [printable(OID_C, "JP"), utf8(OID_CN, "Many-Rdns")]
                    .into_iter()
                    .chain((0..50_000).map(|i| utf8(OID_OU, &format!("u{i}"))))
                    .collect(),
            ))),
            UNPROCESSABLE,
            "subject_attribute_not_allowed",
        ),
    ];
    for c in cases {
        let started = Instant::now();
        let answer = send(&app, &app.station, "/v1/certificates", &c.body, None).await;
        assert_problem(&c.name, &answer, c.status, c.code);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}: took {:?}",
            c.name,
            started.elapsed()
        );
    }
    assert_eq!(app.ledger_count().await, 0);
}

/// RSA 16384 is refused by the key check, which runs before the signature is verified: the
/// request's signature is random bytes, and the answer is `unsupported_key`, not
/// `csr_signature_invalid`, in well under a millisecond of parsing.
#[tokio::test]
async fn rsa_16384_is_refused_as_unsupported_before_any_expensive_work() {
    let der = unsigned_csr(
        &rsa_spki(&fake_modulus(16384), &[1, 0, 1]),
        OID_SHA256_RSA,
        2048,
    );
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let started = Instant::now();
            let result = factory_ca::ca::csr::parse(&der);
            let elapsed = started.elapsed();
            assert!(
                matches!(&result, Err(CsrError::UnsupportedKey(m)) if m.contains("RSA-16384")),
                "{result:?}"
            );
            elapsed
        })
        .collect();
    times.sort();
    // The median, so that a busy test machine does not decide: parsing 2 KiB takes microseconds.
    assert!(
        times[10] < Duration::from_millis(20),
        "parsing took {times:?}"
    );

    let app = TestApp::spawn(Backend::Sqlite).await;
    let started = Instant::now();
    let answer = send(&app, &app.station, "/v1/certificates", &der_body(der), None).await;
    let elapsed = started.elapsed();
    assert_problem("RSA 16384", &answer, UNPROCESSABLE, "unsupported_key");
    assert!(
        elapsed < Duration::from_secs(2),
        "the answer took {elapsed:?}"
    );
    assert_eq!(app.ledger_count().await, 0);
}

// ---------------------------------------------------------------------------------------------
// CSRs that ask for more than the profile gives.

const PROFILE_EXTENSIONS: [&str; 5] = [
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.15", // keyUsage
    "2.5.29.19", // basicConstraints
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.37", // extendedKeyUsage
];

/// (OID, tag, value bytes) of each attribute of a Name, in order.
fn attributes(name: &X509Name<'_>) -> Vec<(String, u8, Vec<u8>)> {
    name.iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.attr_value().tag().0 as u8,
                a.attr_value().data.to_vec(),
            )
        })
        .collect()
}

/// The certificate is a plain device certificate for `csr_der`: the CSR's subject and key,
/// and every extension from the profile.
fn assert_plain_device_certificate(name: &str, csr_der: &[u8], cert_der: &[u8]) {
    let (_, csr) = X509CertificationRequest::from_der(csr_der).unwrap();
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    let mut oids: Vec<String> = cert
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    oids.sort();
    assert_eq!(oids, PROFILE_EXTENSIONS, "{name}: extensions");
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical, "{name}");
    assert!(!bc.value.ca, "{name}: CA:TRUE");
    assert_eq!(bc.value.path_len_constraint, None, "{name}: pathLen");
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature(), "{name}");
    assert!(
        !ku.value.key_cert_sign() && !ku.value.crl_sign(),
        "{name}: keyCertSign or cRLSign"
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth, "{name}");
    assert!(
        !eku.any
            && !eku.server_auth
            && !eku.code_signing
            && !eku.email_protection
            && !eku.time_stamping
            && !eku.ocsp_signing
            && eku.other.is_empty(),
        "{name}: EKU {eku:?}"
    );
    assert!(
        cert.subject_alternative_name().unwrap().is_none(),
        "{name}: SAN"
    );
    assert_eq!(
        attributes(cert.subject()),
        attributes(&csr.certification_request_info.subject),
        "{name}: subject"
    );
    assert_eq!(
        cert.public_key().raw,
        csr.certification_request_info.subject_pki.raw,
        "{name}: key"
    );
}

fn rcgen_csr(thing: &str, configure: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, "JP");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, thing);
    configure(&mut params);
    params
        .serialize_request(&p256())
        .expect("CSR")
        .der()
        .to_vec()
}

fn custom_extension(arcs: &[u64], content: Vec<u8>, critical: bool) -> rcgen::CustomExtension {
    let mut ext = rcgen::CustomExtension::from_oid_content(arcs, content);
    ext.set_criticality(critical);
    ext
}

async fn a_csr_asking_for_more_than_the_profile_gets_a_plain_device_certificate(backend: Backend) {
    use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose as Eku, IsCa, KeyUsagePurpose as Ku};
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(backend).await;
    let name_constraints = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_tagged_implicit(yasna::Tag::context(2), |w| {
                            w.write_ia5_string("example.com")
                        })
                    })
                })
            })
        })
    });
    let thousands_of_attributes: Vec<Vec<u8>> = (0..3000u64)
        .map(|i| csr_attribute(&[1, 3, 6, 1, 4, 1, 55555, i], "x"))
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "CA:TRUE",
            rcgen_csr("Ask-Ca", |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            }),
        ),
        (
            "CA:TRUE, pathLen 0",
            rcgen_csr("Ask-PathLen-0", |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))
            }),
        ),
        (
            "CA:TRUE, pathLen 5, keyCertSign and cRLSign",
            rcgen_csr("Ask-PathLen-5", |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(5));
                p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign];
            }),
        ),
        (
            "SANs: DNS, IP, URI, email",
            rcgen_csr("Ask-Sans", |p| {
                p.subject_alt_names = vec![
                    rcgen::SanType::DnsName("evil.example.com".try_into().unwrap()),
                    rcgen::SanType::IpAddress("10.0.0.1".parse().unwrap()),
                    rcgen::SanType::URI("spiffe://evil/ca".try_into().unwrap()),
                    rcgen::SanType::Rfc822Name("root@example.com".try_into().unwrap()),
                ];
            }),
        ),
        (
            "EKU serverAuth",
            rcgen_csr("Ask-Server", |p| {
                p.extended_key_usages = vec![Eku::ServerAuth]
            }),
        ),
        (
            "EKU any, codeSigning, OCSPSigning, timeStamping",
            rcgen_csr("Ask-Eku-Any", |p| {
                p.extended_key_usages = vec![
                    Eku::Any,
                    Eku::CodeSigning,
                    Eku::OcspSigning,
                    Eku::TimeStamping,
                ]
            }),
        ),
        (
            "nameConstraints, critical",
            rcgen_csr("Ask-Name-Constraints", |p| {
                p.custom_extensions = vec![custom_extension(
                    &[2, 5, 29, 30],
                    name_constraints.clone(),
                    true,
                )]
            }),
        ),
        (
            "an unknown critical extension",
            rcgen_csr("Ask-Critical", |p| {
                p.custom_extensions = vec![custom_extension(
                    &[1, 3, 6, 1, 4, 1, 55555, 1],
                    vec![5, 0],
                    true,
                )]
            }),
        ),
        (
            "3000 CSR attributes",
            signed_csr(
                &p256(),
                &with_cn(utf8(OID_CN, "Many-Attributes")),
                &thousands_of_attributes,
            ),
        ),
        (
            "CN as UTF8String",
            subject_csr(&with_cn(utf8(OID_CN, "Utf8-Thing"))),
        ),
        (
            "CN as PrintableString",
            subject_csr(&with_cn(printable(OID_CN, "Printable-Thing"))),
        ),
        (
            "CN of 128 characters",
            subject_csr(&with_cn(utf8(OID_CN, &"b".repeat(128)))),
        ),
        (
            "C as UTF8String",
            subject_csr(&flat(vec![utf8(OID_C, "JP"), utf8(OID_CN, "Utf8-Country")])),
        ),
        (
            "every allowed attribute, mixed encodings",
            subject_csr(&flat(vec![
                printable(OID_C, "JP"),
                utf8(OID_ST, "Tōkyō"),
                printable(OID_L, "Tokyo"),
                utf8(OID_O, "Org, Inc."),
                utf8(OID_OU, "Line 3"),
                printable(OID_SERIAL_NUMBER, "0001"),
                printable(OID_DN_QUALIFIER, "q"),
                utf8(OID_CN, "All-Fields"),
            ])),
        ),
        (
            "RSA 2048 with public exponent 3",
            openssl_newkey(
                dir.path(),
                &["-newkey", "rsa:2048", "-pkeyopt", "rsa_keygen_pubexp:3"],
                "/C=JP/CN=Rsa-E3",
                &[],
            ),
        ),
    ];
    let mut rows = app.ledger_count().await;
    for (name, der) in cases {
        assert!(der.len() < 60_000, "{name}: {} bytes", der.len());
        let answer = send(
            &app,
            &app.station,
            "/v1/certificates",
            &der_body(der.clone()),
            None,
        )
        .await;
        let text = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, StatusCode::CREATED, "{name}: {text}");
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let cert_der = der_of(body["certificate_pem"].as_str().unwrap());
        assert_plain_device_certificate(name, &der, &cert_der);
        rows += 1;
        assert_eq!(app.ledger_count().await, rows, "{name}: one row");
    }
    // The PEM label openssl once used is accepted too.
    let legacy = pem(&rcgen_csr("Legacy-Label", |_| {}))
        .replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    let response = app.sign(&legacy).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

// ---------------------------------------------------------------------------------------------
// The property test: arbitrary and mutated CSRs through parse -> policy -> sign.

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A valid CSR to mutate, with the key that signed it (to re-sign mutated infos).
    struct Seed {
        key: rcgen::KeyPair,
        der: Vec<u8>,
        info: Vec<u8>,
        algorithm: Vec<u8>,
    }

    struct Fixture {
        seeds: Vec<Seed>,
        subject_key: rcgen::KeyPair,
        policy: IssuancePolicy,
        ca: CertificateAuthority,
        profile: DeviceProfile,
        now: ::time::OffsetDateTime,
    }

    fn seed(key: rcgen::KeyPair, der: Vec<u8>) -> Seed {
        let (info, algorithm, _) = split_csr(&der);
        Seed {
            key,
            der,
            info,
            algorithm,
        }
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let rcgen_seed =
                |alg: &'static rcgen::SignatureAlgorithm,
                 key: Option<rcgen::KeyPair>,
                 configure: &dyn Fn(&mut rcgen::CertificateParams)| {
                    let key = key.unwrap_or_else(|| rcgen::KeyPair::generate_for(alg).unwrap());
                    let mut params = rcgen::CertificateParams::default();
                    params.distinguished_name = rcgen::DistinguishedName::new();
                    for (ty, v) in [
                        (rcgen::DnType::CountryName, "JP"),
                        (rcgen::DnType::StateOrProvinceName, "Tokyo"),
                        (rcgen::DnType::OrganizationName, "Org"),
                        (rcgen::DnType::OrganizationalUnitName, "Line3"),
                        (rcgen::DnType::CommonName, "Thing-0001"),
                    ] {
                        params.distinguished_name.push(ty, v);
                    }
                    configure(&mut params);
                    let der = params.serialize_request(&key).unwrap().der().to_vec();
                    seed(key, der)
                };
            let rsa =
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                    .unwrap();
            let hand_key = p256();
            let hand = signed_csr(
                &hand_key,
                &flat(vec![
                    printable(OID_C, "DE"),
                    printable(OID_L, "Berlin"),
                    printable(OID_SERIAL_NUMBER, "42"),
                    printable(OID_DN_QUALIFIER, "q"),
                    printable(OID_CN, "Printable-1"),
                ]),
                &[csr_attribute(&[1, 2, 840, 113549, 1, 9, 7], "challenge")],
            );
            let seeds = vec![
                rcgen_seed(&rcgen::PKCS_ECDSA_P256_SHA256, None, &|_| {}),
                rcgen_seed(&rcgen::PKCS_ECDSA_P384_SHA384, None, &|_| {}),
                rcgen_seed(&rcgen::PKCS_ECDSA_P521_SHA512, None, &|_| {}),
                rcgen_seed(&rcgen::PKCS_RSA_SHA256, Some(rsa), &|_| {}),
                rcgen_seed(&rcgen::PKCS_ECDSA_P256_SHA256, None, &|p| {
                    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
                    p.subject_alt_names = vec![rcgen::SanType::DnsName(
                        "evil.example.com".try_into().unwrap(),
                    )];
                    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
                }),
                seed(hand_key, hand),
            ];
            let now = ::time::OffsetDateTime::now_utc();
            let (ca, _key) = CertificateAuthority::generate(
                CaAlgorithm::EcdsaP256,
                &CaSubject {
                    common_name: "fuzz CA".into(),
                    country: Some("JP".into()),
                    state: None,
                    locality: None,
                    organization: Some("factory-ca tests".into()),
                    organizational_unit: None,
                },
                ::time::Duration::days(30),
                now,
            )
            .unwrap();
            let fixture = Fixture {
                seeds,
                subject_key: p256(),
                policy: IssuancePolicy::new(SubjectField::ALL.to_vec(), true),
                ca,
                profile: DeviceProfile::default(),
                now,
            };
            for s in &fixture.seeds {
                let outcome = check(&fixture, &s.der).expect("a seed passes the checks");
                assert_eq!(outcome, Outcome::Issued, "every seed is a valid request");
            }
            fixture
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(Index, u8),
        Set(Index, u8),
        Insert(Index, u8),
        Delete(Index),
        Truncate(Index),
        /// Copies up to `len` bytes from one place to another (a repeated TLV, a length that
        /// now lies).
        Duplicate(Index, Index, u8),
    }

    fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        for m in mutations {
            let n = bytes.len();
            match m {
                Mutation::Flip(at, bit) if n > 0 => bytes[at.index(n)] ^= 1 << (bit % 8),
                Mutation::Set(at, value) if n > 0 => bytes[at.index(n)] = *value,
                Mutation::Insert(at, value) => bytes.insert(at.index(n + 1), *value),
                Mutation::Delete(at) if n > 0 => {
                    bytes.remove(at.index(n));
                }
                Mutation::Truncate(at) => bytes.truncate(at.index(n + 1)),
                Mutation::Duplicate(from, to, len) if n > 0 => {
                    let from = from.index(n);
                    let end = (from + usize::from(*len)).min(n);
                    let chunk = bytes[from..end].to_vec();
                    let to = to.index(n + 1);
                    bytes.splice(to..to, chunk);
                }
                _ => {}
            }
        }
        bytes
    }

    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => any::<u8>(),
            1 => prop::sample::select(vec![
                0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x14, 0x16, 0x1e, 0x30,
                0x31, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0xa0, 0xff,
            ]),
            1 => prop::sample::select(b"aZ09:_- /.\0".to_vec()),
        ]
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            3 => (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
            2 => (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            2 => any::<Index>().prop_map(Mutation::Delete),
            1 => any::<Index>().prop_map(Mutation::Truncate),
            1 => (any::<Index>(), any::<Index>(), any::<u8>())
                .prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
        ]
    }

    /// One attribute of a generated subject: which OID, which string type, which value.
    type GenAva = (usize, usize, Vec<u8>);

    const GEN_OIDS: [&[u64]; 11] = [
        OID_CN,
        OID_C,
        OID_ST,
        OID_L,
        OID_O,
        OID_OU,
        OID_SERIAL_NUMBER,
        OID_DN_QUALIFIER,
        OID_EMAIL,
        OID_UNKNOWN,
        OID_TITLE,
    ];
    const GEN_TAGS: [u8; 6] = [UTF8, PRINTABLE, UTF8, PRINTABLE, TELETEX, BMP];

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[a-zA-Z0-9:_-]{1,24}".prop_map(String::into_bytes),
            2 => prop::sample::select(vec!["JP", "US", "DE", "XX", "jp", "JPN", "", "UK"])
                .prop_map(|s| s.as_bytes().to_vec()),
            1 => "[ -~]{0,140}".prop_map(String::into_bytes),
            1 => "\\PC{0,12}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..16),
        ]
    }

    fn gen_ava() -> impl Strategy<Value = GenAva> {
        (0..GEN_OIDS.len(), 0..GEN_TAGS.len(), value())
    }

    /// Mostly UTF8String or PrintableString, sometimes any of the generated types.
    fn tag() -> impl Strategy<Value = usize> {
        prop_oneof![3 => 0..2usize, 1 => 0..GEN_TAGS.len()]
    }

    /// Subjects near the valid ones: a C and a CN (in any type and order) plus a few others.
    fn subject() -> impl Strategy<Value = Vec<Vec<GenAva>>> {
        let country_value = prop_oneof![
            3 => prop::sample::select(vec!["JP", "US", "DE", "FR", "CN", "BR"])
                .prop_map(|s| s.as_bytes().to_vec()),
            1 => value(),
        ];
        let name_value = prop_oneof![
            3 => "[a-zA-Z0-9:_-]{1,40}".prop_map(String::into_bytes),
            1 => value(),
        ];
        let country = (tag(), country_value).prop_map(|(t, v)| (1usize, t, v));
        let common_name = (tag(), name_value).prop_map(|(t, v)| (0usize, t, v));
        let rdn = prop_oneof![
            9 => gen_ava().prop_map(|a| vec![a]),
            1 => prop::collection::vec(gen_ava(), 2..4),
        ];
        (
            prop::option::weighted(0.9, country),
            prop::option::weighted(0.95, common_name),
            prop::collection::vec(rdn, 0..3),
        )
            .prop_map(|(c, cn, mut rest)| {
                rest.extend(c.map(|a| vec![a]));
                rest.extend(cn.map(|a| vec![a]));
                rest
            })
            .prop_shuffle()
    }

    #[derive(Debug, Clone)]
    enum Input {
        Bytes(Vec<u8>),
        Pem(Vec<u8>),
        /// A seed's DER, mutated.
        MutatedDer(usize, Vec<Mutation>),
        /// A seed's PEM text, mutated.
        MutatedPem(usize, Vec<Mutation>),
        /// A seed's request info, mutated and signed again: proof of possession holds, so
        /// the mutation reaches the key checks and the policy.
        Resigned(usize, Vec<Mutation>),
        /// A generated subject, signed.
        Subject(Vec<Vec<GenAva>>),
    }

    fn input(seeds: usize) -> impl Strategy<Value = Input> {
        let mutations = || prop::collection::vec(mutation(), 1..6);
        prop_oneof![
            2 => prop::collection::vec(any::<u8>(), 0..2048).prop_map(Input::Bytes),
            1 => prop::collection::vec(any::<u8>(), 0..1024).prop_map(Input::Pem),
            3 => (0..seeds, mutations()).prop_map(|(s, m)| Input::MutatedDer(s, m)),
            1 => (0..seeds, mutations()).prop_map(|(s, m)| Input::MutatedPem(s, m)),
            3 => (0..seeds, mutations()).prop_map(|(s, m)| Input::Resigned(s, m)),
            3 => subject().prop_map(Input::Subject),
        ]
    }

    fn render(fx: &Fixture, input: &Input) -> Vec<u8> {
        match input {
            Input::Bytes(b) => b.clone(),
            Input::Pem(b) => pem(b).into_bytes(),
            Input::MutatedDer(s, m) => apply(fx.seeds[*s].der.clone(), m),
            Input::MutatedPem(s, m) => apply(pem(&fx.seeds[*s].der).into_bytes(), m),
            Input::Resigned(s, m) => {
                let seed = &fx.seeds[*s];
                let info = apply(seed.info.clone(), m);
                let signature = rcgen::SigningKey::sign(&seed.key, &info).unwrap();
                request(&info, &seed.algorithm, &signature)
            }
            Input::Subject(rdns) => {
                let rdns: Vec<Vec<Ava>> = rdns
                    .iter()
                    .map(|rdn| {
                        rdn.iter()
                            .map(|(o, t, v)| ava(GEN_OIDS[*o], GEN_TAGS[*t], v))
                            .collect()
                    })
                    .collect();
                signed_csr(&fx.subject_key, &rdns, &[])
            }
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        RefusedByParser,
        RefusedByPolicy,
        Issued,
    }

    /// parse -> approve -> sign, and what must hold of any certificate that comes out.
    fn check(fx: &Fixture, bytes: &[u8]) -> Result<Outcome, TestCaseError> {
        let Ok(parsed) = factory_ca::ca::csr::parse(bytes) else {
            return Ok(Outcome::RefusedByParser);
        };
        let Ok(approved) = fx.policy.approve(parsed) else {
            return Ok(Outcome::RefusedByPolicy);
        };
        let issued = fx
            .ca
            .sign(&approved, &fx.profile, fx.now)
            .map_err(|e| TestCaseError::fail(format!("an approved CSR failed to sign: {e}")))?;
        check_issued(fx, bytes, &approved, &issued)?;
        Ok(Outcome::Issued)
    }

    fn check_issued(
        fx: &Fixture,
        csr_bytes: &[u8],
        approved: &ApprovedCsr,
        issued: &IssuedCertificate,
    ) -> Result<(), TestCaseError> {
        let (_, cert) = X509Certificate::from_der(&issued.certificate_der)
            .map_err(|e| TestCaseError::fail(format!("the certificate does not parse: {e}")))?;
        // The subject is exactly what the policy approved: same attributes, order, types.
        let approved_subject: Vec<(String, u8, Vec<u8>)> = approved
            .subject()
            .iter()
            .map(|a| {
                (
                    a.field.oid().to_owned(),
                    if a.utf8 { UTF8 } else { PRINTABLE },
                    a.value.as_bytes().to_vec(),
                )
            })
            .collect();
        let issued_subject = attributes(cert.subject());
        prop_assert_eq!(&issued_subject, &approved_subject);
        prop_assert!(
            cert.subject().iter_rdn().all(|rdn| rdn.iter().count() == 1),
            "one attribute per RDN"
        );
        // ... which is also what the request said, read by an independent parser.
        let der = request_der(csr_bytes);
        let (_, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| TestCaseError::fail(format!("accepted, but x509-parser refuses: {e}")))?;
        prop_assert_eq!(
            &issued_subject,
            &attributes(&csr.certification_request_info.subject)
        );
        prop_assert_eq!(
            cert.public_key().raw,
            csr.certification_request_info.subject_pki.raw
        );
        // The ledger's key fingerprint is the certificate's.
        prop_assert_eq!(
            &issued.spki_sha256,
            &factory_ca::ca::sha256_hex(cert.public_key().raw)
        );
        // The policy's promises, checked from outside.
        let cn: Vec<_> = issued_subject
            .iter()
            .filter(|(o, _, _)| o == "2.5.4.3")
            .collect();
        prop_assert_eq!(cn.len(), 1);
        prop_assert_eq!(cn[0].2.as_slice(), approved.thing_name().as_bytes());
        prop_assert!(factory_ca::ca::policy::is_thing_name(approved.thing_name()));
        let countries: Vec<_> = issued_subject
            .iter()
            .filter(|(o, _, _)| o == "2.5.4.6")
            .collect();
        prop_assert_eq!(countries.len(), 1);
        prop_assert!(factory_ca::ca::country::is_assigned_alpha2(
            std::str::from_utf8(&countries[0].2).unwrap()
        ));
        for (oid, tag, value) in &issued_subject {
            prop_assert!(
                SubjectField::ALL.iter().any(|f| f.oid() == oid),
                "{} is not allowed",
                oid
            );
            prop_assert!(*tag == UTF8 || *tag == PRINTABLE);
            prop_assert!(!value.is_empty());
            let text = std::str::from_utf8(value).unwrap();
            prop_assert!(!text.chars().any(char::is_control));
        }
        // The profile, not the request, made the extensions.
        prop_assert!(!cert.is_ca());
        let mut oids: Vec<String> = cert
            .extensions()
            .iter()
            .map(|e| e.oid.to_id_string())
            .collect();
        oids.sort();
        prop_assert_eq!(oids, PROFILE_EXTENSIONS.to_vec());
        prop_assert!(factory_ca::ca::is_signed_by(
            &issued.certificate_der,
            fx.ca.certificate_der()
        ));
        Ok(())
    }

    /// The DER of an accepted request, given as PEM or DER.
    fn request_der(bytes: &[u8]) -> Vec<u8> {
        let text_start = bytes.iter().position(|b| !b.is_ascii_whitespace());
        if text_start.is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN ")) {
            der_of(std::str::from_utf8(bytes).unwrap())
        } else {
            bytes.to_vec()
        }
    }

    fn env_number(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// 2000 cases by default (`FACTORY_CA_FUZZ_CASES`), within a time budget
    /// (`FACTORY_CA_FUZZ_SECS`, default 120): cases past the budget are skipped and counted.
    /// The run happens on its own thread so that a hang fails the test instead of stalling it.
    #[test]
    fn arbitrary_and_mutated_csrs_never_panic_hang_or_yield_an_unapproved_subject() {
        let cases = env_number("FACTORY_CA_FUZZ_CASES", 2000) as u32;
        let budget = Duration::from_secs(env_number("FACTORY_CA_FUZZ_SECS", 120));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("csr-fuzz".into())
            .stack_size(8 << 20)
            .spawn(move || done.send(run(cases, budget)).unwrap())
            .unwrap();
        let report = finished
            .recv_timeout(budget + Duration::from_secs(180))
            .expect("the property test hung");
        let Report {
            result,
            counts,
            elapsed,
            slowest,
        } = report;
        eprintln!(
            "csr fuzz: {} cases in {:.1?} (slowest {:.1?}): {} refused by the parser, {} by the \
             policy, {} issued; {} skipped past the time budget",
            counts[0] + counts[1] + counts[2],
            elapsed,
            slowest,
            counts[0],
            counts[1],
            counts[2],
            counts[3]
        );
        if let Err(e) = result {
            panic!("{e}");
        }
        assert!(
            slowest < Duration::from_secs(2),
            "one case took {slowest:?}"
        );
        assert!(counts[2] > 0, "no generated request was ever issued");
        assert!(counts[0] > 0 && counts[1] > 0);
    }

    struct Report {
        result: Result<(), String>,
        /// Refused by the parser, refused by the policy, issued, skipped.
        counts: [u64; 4],
        elapsed: Duration,
        slowest: Duration,
    }

    fn run(cases: u32, budget: Duration) -> Report {
        let fx = fixture();
        let started = Instant::now();
        let counts: [AtomicU64; 4] = Default::default();
        let slowest_us = AtomicU64::new(0);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..Config::default()
        });
        let result = runner.run(&input(fx.seeds.len()), |input| {
            if started.elapsed() > budget {
                counts[3].fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let bytes = render(fx, &input);
            let case_started = Instant::now();
            let outcome = check(fx, &bytes)?;
            // Without a new signature, a mutant is refused or is its seed, byte for byte: no
            // change outside the signed part survives, and none inside it.
            if let (Outcome::Issued, Input::MutatedDer(seed, _) | Input::MutatedPem(seed, _)) =
                (&outcome, &input)
            {
                prop_assert_eq!(&request_der(&bytes), &fx.seeds[*seed].der);
            }
            slowest_us.fetch_max(case_started.elapsed().as_micros() as u64, Ordering::Relaxed);
            let slot = match outcome {
                Outcome::RefusedByParser => 0,
                Outcome::RefusedByPolicy => 1,
                Outcome::Issued => 2,
            };
            counts[slot].fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        Report {
            result: result.map_err(|e| e.to_string()),
            counts: counts.map(|c| c.into_inner()),
            elapsed: started.elapsed(),
            slowest: Duration::from_micros(slowest_us.into_inner()),
        }
    }
}
