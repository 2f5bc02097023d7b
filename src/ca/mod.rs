//! The certificate authority: CSR parsing, the issuance policy, the device-certificate profile
//! and the CA itself. Pure and synchronous: nothing here knows about HTTP, SQL or AWS, and the
//! current time is always passed in.

pub mod authority;
pub mod chain;
pub mod constraints;
pub mod country;
pub mod crl;
mod crl_der;
pub mod csr;
mod error;
mod import;
pub mod key;
pub mod policy;
pub mod profile;
pub mod subject;
mod verification;

pub use authority::{CaError, CertificateAuthority, IssuedCertificate};
pub use crl::{CrlInfo, RevocationReason, RevokedEntry};
pub use csr::{CsrError, KeyAlgorithm, ParsedCsr, SubjectAttribute};
pub use key::{CaAlgorithm, CaSigner, ENCRYPTED_KEY_LABEL, SecretKey};
pub use policy::{ApprovedCsr, IssuancePolicy, PolicyViolation};
pub use profile::DeviceProfile;
pub use subject::{CaSubject, SubjectField};

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`. Of a certificate's DER this is the id AWS IoT gives the
/// certificate (see `docs/jitp.md`); of a SubjectPublicKeyInfo, a stable key fingerprint.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Wraps DER in a PEM block with the given label (64-column lines, LF endings).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// True when `cert_der` is a certificate whose issuer is `issuer_der`'s subject and whose
/// signature verifies with `issuer_der`'s key.
pub fn is_signed_by(cert_der: &[u8], issuer_der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (Ok((_, cert)), Ok((_, issuer))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(issuer_der),
    ) else {
        return false;
    };
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && authority::verify_with_ca(&issuer, &cert).is_ok()
}
