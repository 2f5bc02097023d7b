//! Keys AWS IoT does not accept (RSA of 2048 bits or more with a sane exponent, ECDSA on
//! P-256, P-384 or P-521 with named curves and uncompressed points): 422 `unsupported_key`,
//! decided before any expensive work.

use std::process::Command;
use std::time::{Duration, Instant};

use factory_ca::ca::CsrError;

use super::*;
use crate::on_both_backends;

on_both_backends!(a_key_aws_iot_does_not_accept_is_unsupported_key);

async fn a_key_aws_iot_does_not_accept_is_unsupported_key(backend: Backend) {
    refuses_each_csr(backend, &NOT_ACCEPTED_BY_AWS_IOT).await;
}

pub(super) static NOT_ACCEPTED_BY_AWS_IOT: Table = Table::new(not_accepted_by_aws_iot);

fn not_accepted_by_aws_iot() -> Vec<Case> {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let mut cases = Vec::new();
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
        let spki = rcgen::PublicKeyData::subject_public_key_info(&p256());
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
            &sequence(&[&sequence(&[&oid(OID_UNKNOWN)]), &bit_string(&[1, 2, 3, 4])]),
            OID_ECDSA_SHA512,
            72,
        )),
    ));

    cases
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
