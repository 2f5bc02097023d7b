//! A CA made by the CA core, outside any server, and device certificates it signs: what the
//! AWS tests register with the fake registry and with moto.

use factory_ca::ca::policy::SubjectField;
use factory_ca::ca::{
    self, CaAlgorithm, CaSubject, CertificateAuthority, DeviceProfile, IssuancePolicy,
};
use time::OffsetDateTime;

/// A fresh ECDSA P-256 CA named `name`, valid 30 days.
pub fn test_ca(name: &str) -> CertificateAuthority {
    let subject = CaSubject {
        common_name: name.to_owned(),
        country: Some("JP".into()),
        state: None,
        locality: None,
        organization: Some("Org".into()),
        organizational_unit: None,
    };
    CertificateAuthority::generate(
        CaAlgorithm::EcdsaP256,
        &subject,
        time::Duration::days(30),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    .0
}

/// A device certificate signed by `ca`, as PEM, with its AWS id.
pub fn device_certificate(ca: &CertificateAuthority, thing: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, "JP");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, thing);
    let csr = params.serialize_request(&key).unwrap();
    let approved = IssuancePolicy::new(SubjectField::ALL.to_vec(), true)
        .approve(ca::csr::parse(csr.der()).unwrap())
        .unwrap();
    let issued = ca
        .sign(
            &approved,
            &DeviceProfile::default(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    (
        ca::to_pem("CERTIFICATE", &issued.certificate_der),
        issued.aws_certificate_id,
    )
}
