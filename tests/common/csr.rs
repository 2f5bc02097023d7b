//! Device CSRs made with rcgen, for tests that need a valid request and do not care how it
//! was made.

/// A device CSR made with rcgen (the key is thrown away: these tests never use it).
pub struct DeviceCsr {
    pub pem: String,
}

/// An ECDSA P-256 CSR with `C=<country>, CN=<thing>` in that order.
pub fn csr(thing: &str, country: &str) -> DeviceCsr {
    csr_with(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &[
            (rcgen::DnType::CountryName, country),
            (rcgen::DnType::CommonName, thing),
        ],
    )
}

pub fn csr_with(
    alg: &'static rcgen::SignatureAlgorithm,
    subject: &[(rcgen::DnType, &str)],
) -> DeviceCsr {
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for (ty, value) in subject {
        params.distinguished_name.push(ty.clone(), *value);
    }
    let pem = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    DeviceCsr { pem }
}

/// The DER inside a PEM text.
pub fn der_of(pem_text: &str) -> Vec<u8> {
    ::pem::parse(pem_text).expect("PEM").into_contents()
}
