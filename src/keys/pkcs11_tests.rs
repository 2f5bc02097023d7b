use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, UnparsedPublicKey};

use super::*;

/// A token's `CKM_ECDSA` answer is what aws-lc-rs calls a FIXED signature (r || s): converted,
/// it must verify as the ASN.1 signature X.509 carries.
#[test]
fn raw_ecdsa_signatures_become_der_that_verifies() {
    let rng = SystemRandom::new();
    let cases = [
        (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            &sig::ECDSA_P256_SHA256_ASN1,
            32,
        ),
        (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            &sig::ECDSA_P384_SHA384_ASN1,
            48,
        ),
    ];
    for (signing, verifying, field_len) in cases {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
        let public = UnparsedPublicKey::new(verifying, key.public_key().as_ref().to_vec());
        // Enough signatures that some r or s has its high bit set or a leading zero byte.
        for i in 0..64u32 {
            let message = format!("tbsCertificate {i}");
            let raw = key.sign(&rng, message.as_bytes()).unwrap();
            let der = ecdsa_raw_to_der(raw.as_ref(), field_len).unwrap();
            public.verify(message.as_bytes(), &der).unwrap();
        }
    }
}

#[test]
fn raw_signatures_become_a_der_sequence_of_two_integers() {
    let r = [0xffu8; 48];
    let s = [0x01u8; 48];
    let der = ecdsa_raw_to_der(&[r, s].concat(), 48).unwrap();
    // SEQUENCE of 49 + 48 content bytes plus two headers: 101 bytes, a short length.
    assert_eq!(&der[..5], &[0x30, 101, 0x02, 49, 0x00]);
}

#[test]
fn raw_signatures_of_the_wrong_length_or_zero_are_refused() {
    assert!(
        ecdsa_raw_to_der(&[1u8; 63], 32)
            .unwrap_err()
            .contains("63 bytes")
    );
    assert!(ecdsa_raw_to_der(&[1u8; 96], 32).is_err());
    let zero_r = [[0u8; 32], [1u8; 32]].concat();
    assert!(ecdsa_raw_to_der(&zero_r, 32).unwrap_err().contains("zero"));
}

#[test]
fn ec_points_are_read_bare_or_wrapped_in_an_octet_string() {
    let mut point = vec![0x04];
    point.extend([7u8; 64]);
    assert_eq!(uncompressed_point(&point, 32).as_deref(), Some(&point[..]));
    let wrapped = [&[0x04, 65][..], &point].concat();
    assert_eq!(
        uncompressed_point(&wrapped, 32).as_deref(),
        Some(&point[..])
    );
    let mut p384 = vec![0x04];
    p384.extend([9u8; 96]);
    let wrapped = [&[0x04, 0x81, 97][..], &p384].concat();
    assert_eq!(uncompressed_point(&wrapped, 48).as_deref(), Some(&p384[..]));
    // Compressed points and points of another curve are not ours.
    assert_eq!(uncompressed_point(&[0x02; 33], 32), None);
    assert_eq!(uncompressed_point(&wrapped, 32), None);
}

#[test]
fn rsa_modulus_sizes_are_counted_in_bits() {
    let mut modulus = vec![0x00, 0xc0];
    modulus.extend([0u8; 255]);
    assert_eq!(unsigned_bits(&modulus), 2048);
    assert_eq!(unsigned_bits(&[0x01, 0x00]), 9);
    assert_eq!(unsigned_bits(&[0x00]), 0);
}
