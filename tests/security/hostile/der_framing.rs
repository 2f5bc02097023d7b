//! DER framing and structure: a CSR is one complete DER element, holds exactly the elements
//! of a PKCS#10 CertificationRequest (RFC 2986 section 4), and encodes each as DER requires
//! (X.690 section 10). x509-parser reads the fields it knows and skips whatever follows inside
//! a SEQUENCE; these tables are what it would let through.

use der_writer::Tag;

use super::*;
use crate::on_both_backends;

on_both_backends!(
    bytes_that_are_not_one_complete_der_element_are_invalid_csr,
    a_request_with_elements_pkcs10_has_no_room_for_is_invalid_csr,
    values_not_encoded_as_der_requires_are_invalid_csr,
);

async fn bytes_that_are_not_one_complete_der_element_are_invalid_csr(backend: Backend) {
    refuses_each_csr(backend, &NOT_ONE_DER_ELEMENT).await;
}

async fn a_request_with_elements_pkcs10_has_no_room_for_is_invalid_csr(backend: Backend) {
    refuses_each_csr(backend, &ELEMENTS_PKCS10_HAS_NO_ROOM_FOR).await;
}

async fn values_not_encoded_as_der_requires_are_invalid_csr(backend: Backend) {
    refuses_each_csr(backend, &NOT_DER_ENCODED).await;
}

fn invalid(name: &str, body: Body) -> Case {
    case(name, body, BAD, "invalid_csr")
}

pub(super) static NOT_ONE_DER_ELEMENT: Table = Table::new(not_one_der_element);

fn not_one_der_element() -> Vec<Case> {
    let good = good();
    let mut cases = vec![
        invalid("empty raw body", der_body(Vec::new())),
        invalid("whitespace only", der_body(b" \r\n\t ".to_vec())),
        invalid("random bytes", der_body(filler(512, 42))),
        invalid("zero bytes", der_body(vec![0; 256])),
    ];
    for (what, len) in [
        ("1 byte", 1),
        ("half", good.der.len() / 2),
        ("all but 1 byte", good.der.len() - 1),
    ] {
        cases.push(invalid(
            &format!("DER truncated to {what}"),
            der_body(good.der[..len].to_vec()),
        ));
    }
    let mut long_length = good.der.clone();
    long_length[2] = long_length[2].wrapping_add(1);
    let (header, content) = split_element(&good.der);
    cases.extend([
        invalid(
            "DER whose outer length runs past the data",
            der_body(long_length),
        ),
        invalid(
            "DER claiming a 4 GiB length",
            der_body(vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x00]),
        ),
        invalid(
            "BER indefinite length",
            der_body([&[0x30, 0x80], content, &[0, 0]].concat()),
        ),
        invalid(
            "DER followed by a second request",
            der_body([good.der.clone(), good.der.clone()].concat()),
        ),
        invalid(
            "DER with a non-minimal length (outside the signature)",
            der_body({
                assert_eq!(
                    header.len(),
                    3,
                    "a short request has a one-byte long length"
                );
                [&[0x30, 0x82, 0x00][..], &header[2..], content].concat()
            }),
        ),
    ]);
    cases
}

/// `der` (one SEQUENCE) with a NULL appended inside it.
fn with_extra(der: &[u8]) -> Vec<u8> {
    let (_, content) = split_element(der);
    sequence(&[content, &null()])
}

/// `info` signed again by `key`: the signature holds, so only the structure is wrong.
fn resign(key: &rcgen::KeyPair, info: Vec<u8>) -> Vec<u8> {
    let signature = rcgen::SigningKey::sign(key, &info).unwrap();
    request(&info, &signature_algorithm(OID_ECDSA_SHA256), &signature)
}

/// The key algorithm (AlgorithmIdentifier) and the rest (the key BIT STRING) of an SPKI.
fn split_spki(spki: &[u8]) -> (&[u8], &[u8]) {
    let (_, content) = split_element(spki);
    let (rest, _) = AlgorithmIdentifier::from_der(content).unwrap();
    content.split_at(content.len() - rest.len())
}

pub(super) static ELEMENTS_PKCS10_HAS_NO_ROOM_FOR: Table =
    Table::new(elements_pkcs10_has_no_room_for);

fn elements_pkcs10_has_no_room_for() -> Vec<Case> {
    let good = good();
    let key = &good.key;
    let spki = rcgen::PublicKeyData::subject_public_key_info(key);
    let subject = name_der(&with_cn(utf8(OID_CN, "Extra-1")));
    let certificate = {
        let mut params = rcgen::CertificateParams::new(vec!["example.com".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cert-1");
        params.self_signed(&p256()).unwrap().der().to_vec()
    };
    vec![
        invalid(
            "request with an extra element after the signature",
            der_body(sequence(&[
                &good.info,
                &good.algorithm,
                &bit_string(&good.signature),
                &null(),
            ])),
        ),
        // Each of these is signed (or outside the signature) and must still be refused.
        invalid(
            "signature algorithm with an extra element (outside the signature)",
            der_body(request(
                &good.info,
                &with_extra(&good.algorithm),
                &good.signature,
            )),
        ),
        invalid(
            "request info with an extra element after the attributes (signed)",
            der_body(resign(
                key,
                with_extra(&request_info(0, &subject, &spki, &[])),
            )),
        ),
        invalid(
            "request info with an extra attribute-shaped element after the attributes (signed)",
            der_body(resign(key, {
                let info = request_info(0, &subject, &spki, &[]);
                let (_, content) = split_element(&info);
                sequence(&[content, &csr_attribute(OID_UNKNOWN, "x")])
            })),
        ),
        invalid(
            "public key info with an extra element (signed)",
            der_body(resign(
                key,
                request_info(0, &subject, &with_extra(&spki), &[]),
            )),
        ),
        invalid(
            "key algorithm with an extra element (signed)",
            der_body(resign(key, {
                let (key_algorithm, rest) = split_spki(&spki);
                let spki = sequence(&[&with_extra(key_algorithm), rest]);
                request_info(0, &subject, &spki, &[])
            })),
        ),
        invalid(
            "subject attribute with an extra element (signed)",
            der_body(resign(key, {
                let atv = sequence(&[
                    &oid(OID_CN),
                    &utf8_string("Extra-2"),
                    &utf8_string("Evil-2"),
                ]);
                let c = sequence(&[&oid(OID_C), &printable_string("JP")]);
                let name = sequence(&[&element(Tag::Set, &c), &element(Tag::Set, &atv)]);
                request_info(0, &name, &spki, &[])
            })),
        ),
        invalid("a certificate sent as a CSR", der_body(certificate.clone())),
        invalid(
            "a certificate in a CERTIFICATE REQUEST block",
            json_csr(&pem(&certificate)),
        ),
        invalid(
            "RSA key that is not an RSAPublicKey",
            der_body(unsigned_csr(
                &sequence(&[
                    &sequence(&[&oid(OID_RSA), &null()]),
                    &bit_string(b"not a key"),
                ]),
                OID_SHA256_RSA,
                256,
            )),
        ),
        invalid(
            "request version 2",
            der_body(resign(
                key,
                request_info(
                    2,
                    &name_der(&with_cn(utf8(OID_CN, "Version-2"))),
                    &spki,
                    &[],
                ),
            )),
        ),
    ]
}

pub(super) static NOT_DER_ENCODED: Table = Table::new(not_der_encoded);

fn not_der_encoded() -> Vec<Case> {
    let good = good();
    let key = &good.key;
    let spki = rcgen::PublicKeyData::subject_public_key_info(key);
    let subject = name_der(&with_cn(utf8(OID_CN, "Extra-1")));
    vec![
        invalid(
            "EC curve given as an ObjectDescriptor instead of an OID (signed)",
            der_body(resign(key, {
                let (_, rest) = split_spki(&spki);
                // The curve's OID with the tag of an ObjectDescriptor (7), which `der` has no
                // type for.
                let mut curve = oid(OID_P256);
                curve[0] = 0x07;
                let key_algorithm = sequence(&[&oid(OID_EC), &curve]);
                let spki = sequence(&[&key_algorithm, rest]);
                request_info(0, &subject, &spki, &[])
            })),
        ),
        invalid(
            "public key BIT STRING with unused bits (signed)",
            der_body(resign(key, {
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
        ),
        invalid(
            "signature BIT STRING with unused bits (outside the signature)",
            der_body({
                // A signature whose last bit is 0, so that "1 unused bit" is well-formed DER.
                let info = request_info(0, &subject, &spki, &[]);
                let signature = (0..64)
                    .map(|_| rcgen::SigningKey::sign(key, &info).unwrap())
                    .find(|s| s[s.len() - 1] & 1 == 0)
                    .expect("one of 64 signatures ends in a 0 bit");
                let mut der = request(&info, &signature_algorithm(OID_ECDSA_SHA256), &signature);
                let at = der.len() - signature.len() - 1;
                assert_eq!(der[at], 0, "the unused-bits octet");
                der[at] = 1;
                der
            }),
        ),
        invalid(
            "signature algorithm OID with a stray continuation bit (outside the signature)",
            der_body({
                // ecdsa-with-SHA256 ends in 04 03 02; 04 03 82 still decodes to it in lenient
                // readers, but is not DER.
                let mut der = good.der.clone();
                let oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
                let at = der.len() - good.signature.len() - 3 - 2;
                assert_eq!(der[at - oid.len() + 2..at + 2], oid);
                der[at + 1] |= 0x80;
                der
            }),
        ),
    ]
}
