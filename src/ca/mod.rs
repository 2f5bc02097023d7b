//! The certificate authority: CSR parsing, the issuance policy, the device-certificate profile
//! and the CA itself. Pure and synchronous: nothing here knows about HTTP, SQL or AWS, and the
//! current time is always passed in.

pub mod authority;
pub mod country;
pub mod csr;
pub mod policy;
pub mod profile;

pub use authority::{CaAlgorithm, CaError, CaSubject, CertificateAuthority, IssuedCertificate};
pub use csr::{CsrError, DeviceKey, ParsedCsr, SubjectAttribute};
pub use policy::{ApprovedCsr, IssuancePolicy, PolicyViolation};
pub use profile::DeviceProfile;

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`. Of a certificate's DER this is the id AWS IoT gives the
/// certificate (see `JITP.md`); of a SubjectPublicKeyInfo, a stable key fingerprint.
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
