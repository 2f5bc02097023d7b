//! Tests of [`super::CertificateAuthority`]: generation, import checks, CRLs and signing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rcgen::{KeyPair, SigningKey};

use super::*;
use crate::ca::{IssuancePolicy, SubjectField};
use time::macros::datetime;

fn subject() -> CaSubject {
    CaSubject {
        common_name: "Test Root".into(),
        country: Some("JP".into()),
        state: None,
        locality: None,
        organization: Some("Org".into()),
        organizational_unit: None,
    }
}

/// A generated P-256 root CA valid for 10 days from `now`, and its key.
fn p256_ca(now: OffsetDateTime) -> (CertificateAuthority, SecretKey) {
    CertificateAuthority::generate(CaAlgorithm::EcdsaP256, &subject(), Duration::days(10), now)
        .unwrap()
}

fn ca_pem(configure: impl FnOnce(&mut CertificateParams), key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Imported");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = datetime!(2026-01-01 0:00 UTC);
    params.not_after = datetime!(2027-01-01 0:00 UTC);
    configure(&mut params);
    params.self_signed(key).unwrap().pem()
}

#[test]
fn a_generated_ca_has_the_extensions_aws_iot_requires() {
    let now = datetime!(2026-11-28 10:00 UTC);
    let (ca, key) = p256_ca(now);
    let (_, cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(cert.extensions().iter().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::SubjectKeyIdentifier(_)
    )));
    assert_eq!(ca.subject(), "C=JP, O=Org, CN=Test Root");
    assert!(key.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!format!("{key:?}").contains("PRIVATE"));
    CertificateAuthority::load(ca.certificate_pem(), &key.to_pem()).unwrap();
    CertificateAuthority::load_key(ca.certificate_pem(), &key).unwrap();
}

#[test]
fn import_refuses_an_expired_or_not_yet_valid_ca() {
    let key = KeyPair::generate().unwrap();
    let pem = ca_pem(|_| {}, &key);
    let inside = datetime!(2026-06-01 0:00 UTC);
    CertificateAuthority::import(&pem, &key.serialize_pem(), inside).unwrap();
    for outside in [
        datetime!(2027-01-02 0:00 UTC),
        datetime!(2025-12-31 0:00 UTC),
    ] {
        let err = CertificateAuthority::import(&pem, &key.serialize_pem(), outside).unwrap_err();
        assert!(err.to_string().contains("not valid now"), "{err}");
    }
}

#[test]
fn import_refuses_a_non_ca_a_ca_without_cert_sign_and_a_foreign_key() {
    let key = KeyPair::generate().unwrap();
    let now = datetime!(2026-06-01 0:00 UTC);
    let not_ca = ca_pem(|p| p.is_ca = IsCa::ExplicitNoCa, &key);
    let err = CertificateAuthority::import(&not_ca, &key.serialize_pem(), now).unwrap_err();
    assert!(err.to_string().contains("CA:TRUE"), "{err}");

    let no_sign = ca_pem(
        |p| p.key_usages = vec![KeyUsagePurpose::DigitalSignature],
        &key,
    );
    let err = CertificateAuthority::import(&no_sign, &key.serialize_pem(), now).unwrap_err();
    assert!(err.to_string().contains("keyCertSign"), "{err}");

    let other = KeyPair::generate().unwrap();
    let good = ca_pem(|_| {}, &key);
    let err = CertificateAuthority::import(&good, &other.serialize_pem(), now).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn revocation_reasons_round_trip_and_exclude_hold() {
    for reason in RevocationReason::ALL {
        assert_eq!(RevocationReason::from_name(reason.name()), Some(reason));
    }
    for refused in ["certificate_hold", "remove_from_crl", "KeyCompromise", ""] {
        assert_eq!(RevocationReason::from_name(refused), None, "{refused}");
    }
}

#[test]
fn a_crl_names_its_ca_and_lists_each_revoked_serial_with_its_reason() {
    use x509_parser::revocation_list::CertificateRevocationList;
    use x509_parser::x509::ReasonCode;

    let now = datetime!(2026-11-28 10:00:00.5 UTC);
    let (ca, _) = p256_ca(now);
    let revoked = [
        RevokedEntry {
            serial_hex: "4a".repeat(20),
            revoked_at: datetime!(2026-11-27 09:00 UTC),
            reason: RevocationReason::KeyCompromise,
        },
        RevokedEntry {
            serial_hex: "7f".repeat(20),
            revoked_at: datetime!(2026-11-28 09:30 UTC),
            reason: RevocationReason::Unspecified,
        },
    ];
    let der = ca.crl(&revoked, &crl_info(7, now)).unwrap();
    let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
    assert!(rest.is_empty());

    let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
    assert_eq!(crl.issuer().as_raw(), ca_cert.subject().as_raw());
    assert_eq!(
        crl.last_update().to_datetime(),
        datetime!(2026-11-28 10:00 UTC)
    );
    assert_eq!(
        crl.next_update().unwrap().to_datetime(),
        datetime!(2026-11-29 10:00 UTC)
    );
    let number = crl.crl_number().unwrap();
    assert_eq!(number.to_string(), "7");

    let ski = ca_cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let aki = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki.0, ski.as_slice());

    let listed: Vec<_> = crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                hex::encode(r.raw_serial()),
                r.revocation_date.to_datetime(),
                r.reason_code().map(|(_, code)| code),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                "4a".repeat(20),
                datetime!(2026-11-27 09:00 UTC),
                Some(ReasonCode::KeyCompromise)
            ),
            // RFC 5280 section 5.3.1: no reasonCode rather than unspecified (0).
            ("7f".repeat(20), datetime!(2026-11-28 09:30 UTC), None),
        ]
    );
}

#[test]
fn a_ca_whose_key_usage_lacks_crl_sign_signs_no_crl() {
    let key = KeyPair::generate().unwrap();
    let pem = ca_pem(|p| p.key_usages = vec![KeyUsagePurpose::KeyCertSign], &key);
    let ca = CertificateAuthority::load(&pem, &key.serialize_pem()).unwrap();
    let err = ca
        .crl(&[], &crl_info(1, datetime!(2026-06-01 0:00 UTC)))
        .unwrap_err();
    assert!(
        matches!(&err, CaError::NotPermitted(m) if m.contains("cRLSign")),
        "{err}"
    );
}

#[test]
fn signing_caps_validity_at_the_ca_not_after_and_stops_when_it_expired() {
    let now = datetime!(2026-11-28 10:00 UTC);
    let (ca, _) = p256_ca(now);
    let policy = IssuancePolicy::new(SubjectField::ALL.to_vec(), true);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "JP");
    params.distinguished_name.push(DnType::CommonName, "Cap-1");
    let csr = params.serialize_request(&key).unwrap();
    let approved = policy
        .approve(crate::ca::csr::parse(csr.der()).unwrap())
        .unwrap();
    let issued = ca.sign(&approved, &DeviceProfile::default(), now).unwrap();
    assert_eq!(issued.not_after, ca.not_after());
    let err = ca
        .sign(
            &approved,
            &DeviceProfile::default(),
            now + Duration::days(11),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::Unavailable(_)));
}

/// A key the CA signs with but cannot read, as an HSM or a KMS key is: it counts the
/// signatures asked of it, and while `down` is set it fails as its device would (rcgen's
/// `RemoteKeyError`, as the PKCS#11 signer answers when its token fails).
struct OpaqueKey {
    key: KeyPair,
    signatures: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl OpaqueKey {
    fn new(key: KeyPair) -> Self {
        OpaqueKey {
            key,
            signatures: Arc::default(),
            down: Arc::default(),
        }
    }
}

impl SigningKey for OpaqueKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        if self.down.load(Ordering::Relaxed) {
            return Err(rcgen::Error::RemoteKeyError);
        }
        self.signatures.fetch_add(1, Ordering::Relaxed);
        self.key.sign(message)
    }
}

impl PublicKeyData for OpaqueKey {
    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.key.algorithm()
    }
}

fn device_csr(thing_name: &str) -> crate::ca::ApprovedCsr {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "JP");
    params
        .distinguished_name
        .push(DnType::CommonName, thing_name);
    let csr = params.serialize_request(&key).unwrap();
    IssuancePolicy::new(SubjectField::ALL.to_vec(), true)
        .approve(crate::ca::csr::parse(csr.der()).unwrap())
        .unwrap()
}

#[test]
fn a_ca_signs_through_a_key_it_cannot_read_and_checks_it_like_a_key_file() {
    let now = datetime!(2026-11-28 10:00 UTC);
    let der = KeyPair::generate().unwrap().serialize_der();
    let opaque = |signatures: &Arc<AtomicUsize>| {
        CaSigner::new(OpaqueKey {
            signatures: Arc::clone(signatures),
            ..OpaqueKey::new(KeyPair::try_from(der.as_slice()).unwrap())
        })
    };
    let signatures = Arc::new(AtomicUsize::new(0));
    let ca =
        CertificateAuthority::self_signed(opaque(&signatures), &subject(), Duration::days(10), now)
            .unwrap();
    // The certificate itself and the self-check probe.
    assert_eq!(signatures.load(Ordering::Relaxed), 2);

    let issued = ca
        .sign(&device_csr("Opaque-1"), &DeviceProfile::default(), now)
        .unwrap();
    assert!(crate::ca::is_signed_by(
        &issued.certificate_der,
        ca.certificate_der()
    ));
    ca.crl(&[], &crl_info(1, now)).unwrap();
    assert_eq!(signatures.load(Ordering::Relaxed), 4);

    // Loaded again from its certificate, as a stored CA is.
    let loaded =
        CertificateAuthority::from_signer(ca.certificate_pem(), opaque(&signatures)).unwrap();
    assert_eq!(loaded.id(), ca.id());
    let other = CaSigner::new(KeyPair::generate().unwrap());
    let err = CertificateAuthority::from_signer(ca.certificate_pem(), other).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

/// A CRL numbered `number`, valid for a day from `now`.
fn crl_info(number: u64, now: time::OffsetDateTime) -> crate::ca::crl::CrlInfo {
    crate::ca::crl::CrlInfo {
        number,
        this_update: now,
        next_update: now + Duration::days(1),
        delta_of: None,
        freshest_crl: None,
    }
}

#[test]
fn a_delta_crl_names_its_base_and_a_complete_one_its_deltas() {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let now = datetime!(2026-11-28 10:00 UTC);
    let (ca, _) = p256_ca(now);
    let extension = |der: &[u8], oid: &str| {
        let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
        crl.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| (e.critical, e.value.to_vec()))
    };
    let delta = ca
        .crl(
            &[],
            &crate::ca::crl::CrlInfo {
                delta_of: Some(300),
                ..crl_info(301, now)
            },
        )
        .unwrap();
    // BaseCRLNumber 300 as a DER INTEGER, in a critical deltaCRLIndicator (RFC 5280 5.2.4).
    assert_eq!(
        extension(&delta, "2.5.29.27"),
        Some((true, vec![0x02, 0x02, 0x01, 0x2c]))
    );
    assert_eq!(extension(&delta, "2.5.29.46"), None);
    let (_, parsed) = CertificateRevocationList::from_der(&delta).unwrap();
    assert_eq!(parsed.crl_number().unwrap().to_string(), "301");

    let complete = ca
        .crl(
            &[],
            &crate::ca::crl::CrlInfo {
                freshest_crl: Some("http://pki.example/d".into()),
                ..crl_info(302, now)
            },
        )
        .unwrap();
    let (critical, value) = extension(&complete, "2.5.29.46").unwrap();
    assert!(!critical);
    assert!(value.ends_with(b"http://pki.example/d"));
    assert_eq!(extension(&complete, "2.5.29.27"), None);

    let both = crate::ca::crl::CrlInfo {
        delta_of: Some(1),
        freshest_crl: Some("http://pki.example/d".into()),
        ..crl_info(2, now)
    };
    assert!(matches!(ca.crl(&[], &both), Err(CaError::Rejected(_))));
}

#[test]
fn a_remote_key_that_fails_to_sign_is_unavailable_and_signs_again_once_back() {
    let now = datetime!(2026-11-28 10:00 UTC);
    let down = Arc::new(AtomicBool::new(false));
    let signer = CaSigner::remote(OpaqueKey {
        down: Arc::clone(&down),
        ..OpaqueKey::new(KeyPair::generate().unwrap())
    });
    assert!(signer.is_remote());
    let ca =
        CertificateAuthority::self_signed(signer, &subject(), Duration::days(10), now).unwrap();
    assert!(ca.signs_remotely());

    down.store(true, Ordering::Relaxed);
    let err = ca
        .sign(&device_csr("Flaky-1"), &DeviceProfile::default(), now)
        .unwrap_err();
    assert!(matches!(err, CaError::SignerUnavailable(_)), "{err:?}");
    assert!(matches!(
        ca.crl(&[], &crl_info(1, now)).unwrap_err(),
        CaError::SignerUnavailable(_)
    ));

    down.store(false, Ordering::Relaxed);
    ca.sign(&device_csr("Flaky-1"), &DeviceProfile::default(), now)
        .unwrap();
    let in_memory = CaSigner::new(KeyPair::generate().unwrap());
    assert!(!in_memory.is_remote());
}
