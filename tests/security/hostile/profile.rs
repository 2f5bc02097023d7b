//! A CSR that asks for more than the profile gives (CA:TRUE, pathLen, SANs, serverAuth, name
//! constraints, critical extensions, thousands of attributes) gets a plain CA:FALSE clientAuth
//! device certificate: the CSR's subject and key, every extension from the profile.

use super::*;
use crate::on_both_backends;

on_both_backends!(a_csr_asking_for_more_than_the_profile_gets_a_plain_device_certificate);

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
    // NameConstraints (RFC 5280 4.2.1.10): permittedSubtrees [0] holding one dNSName [2].
    let name_constraints = sequence(&[&context_constructed(
        0,
        &sequence(&[&context_ia5(2, "example.com")]),
    )]);
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
