//! Proof of possession (RFC 2986 section 3): the request must be signed by the key it
//! carries, with an algorithm that matches the key and a hash that is not SHA-1.

use super::*;
use crate::on_both_backends;

on_both_backends!(a_csr_without_proof_of_possession_is_csr_signature_invalid);

async fn a_csr_without_proof_of_possession_is_csr_signature_invalid(backend: Backend) {
    refuses_each_csr(backend, &NO_PROOF_OF_POSSESSION).await;
}

pub(super) static NO_PROOF_OF_POSSESSION: Table = Table::new(no_proof_of_possession);

fn no_proof_of_possession() -> Vec<Case> {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let good = good();
    let unsigned = |name: &str, body: Body| case(name, body, BAD, "csr_signature_invalid");
    let (info, algorithm, signature) = (&good.info, &good.algorithm, &good.signature);
    let mut flipped = good.der.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let rsa_a = openssl_newkey(dir, &["-newkey", "rsa:2048"], "/C=JP/CN=Rsa-A", &[]);
    let rsa_b = openssl_newkey(dir, &["-newkey", "rsa:2048"], "/C=JP/CN=Rsa-A", &[]);
    let (rsa_info, rsa_algorithm, _) = split_csr(&rsa_a);
    let (_, _, rsa_b_signature) = split_csr(&rsa_b);
    let mut off_curve = vec![4u8];
    off_curve.extend(filler(64, 11));
    vec![
        unsigned("signature with one bit flipped", der_body(flipped)),
        unsigned(
            "signature made by another P-256 key",
            der_body(request(
                info,
                algorithm,
                &rcgen::SigningKey::sign(&p256(), info).unwrap(),
            )),
        ),
        unsigned("empty signature", der_body(request(info, algorithm, &[]))),
        unsigned(
            "ECDSA signature labelled sha256WithRSAEncryption",
            der_body(request(
                info,
                &signature_algorithm(OID_SHA256_RSA),
                signature,
            )),
        ),
        unsigned(
            "SHA-256 signature labelled ecdsa-with-SHA384",
            der_body(request(
                info,
                &signature_algorithm(OID_ECDSA_SHA384),
                signature,
            )),
        ),
        unsigned(
            "ECDSA signature with an unknown algorithm",
            der_body(request(info, &signature_algorithm(OID_UNKNOWN), signature)),
        ),
        unsigned(
            "ECDSA P-256 signed with SHA-1",
            der_body(openssl_newkey(
                dir,
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "/C=JP/CN=Sha1-Ec",
                &["-sha1"],
            )),
        ),
        unsigned(
            "RSA request signed by another RSA key",
            der_body(request(&rsa_info, &rsa_algorithm, &rsa_b_signature)),
        ),
        unsigned(
            "RSA 2048 signed with SHA-1",
            der_body(openssl_newkey(
                dir,
                &["-newkey", "rsa:2048"],
                "/C=JP/CN=Sha1-Rsa",
                &["-sha1"],
            )),
        ),
        unsigned(
            "fake RSA 2048 modulus (passes the key check, not the signature)",
            der_body(unsigned_csr(
                &rsa_spki(&fake_modulus(2048), &[1, 0, 1]),
                OID_SHA256_RSA,
                256,
            )),
        ),
        unsigned(
            "P-256 point not on the curve",
            der_body(unsigned_csr(
                &ec_spki(Some(&oid(OID_P256)), &off_curve),
                OID_ECDSA_SHA256,
                72,
            )),
        ),
    ]
}
