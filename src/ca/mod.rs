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
pub(crate) mod der_encode;
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
    lower_hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`, as `hex::encode` writes it. `hex::encode` collects an iterator of
/// `char`s into a `String`, a UTF-8 encoding and a capacity check per digit; every certificate
/// needs five of these (serial, fingerprints, token hash), so each byte's two digits are copied
/// from a table into a buffer of the right size instead (docs/benchmarks.md).
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut digits = vec![0u8; bytes.len() * 2];
    for (pair, &byte) in digits.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    String::from_utf8(digits).expect("hex digits are ASCII")
}

/// The two lowercase hex digits of each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

/// Wraps DER in a PEM block with the given label (64-column lines, LF endings).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    pem_with_line_ending(label, der, "\n")
}

/// [`to_pem`] with another line ending: `"\\n"` writes the PEM already escaped for a JSON
/// string, in one pass and one allocation.
pub fn pem_with_line_ending(label: &str, der: &[u8], line_ending: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines = b64.len().div_ceil(64);
    let mut out = String::with_capacity(
        2 * (label.len() + 16 + line_ending.len()) + b64.len() + lines * line_ending.len(),
    );
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----");
    out.push_str(line_ending);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push_str(line_ending);
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----");
    out.push_str(line_ending);
    out
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

#[cfg(test)]
mod pem_tests {
    use super::*;

    #[test]
    fn to_pem_writes_what_the_pem_crate_writes_for_every_length() {
        for len in 0..200usize {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let expected = pem::encode_config(
                &pem::Pem::new("CERTIFICATE", der.clone()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            );
            assert_eq!(to_pem("CERTIFICATE", &der), expected, "{len} bytes");
            let escaped = serde_json::to_string(&expected).unwrap();
            assert_eq!(
                pem_with_line_ending("CERTIFICATE", &der, "\\n"),
                escaped[1..escaped.len() - 1],
                "{len} bytes, escaped for JSON"
            );
        }
    }

    #[test]
    fn lower_hex_writes_what_hex_encode_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::lower_hex(&bytes), hex::encode(&bytes));
        assert_eq!(super::lower_hex(&[]), "");
        assert_eq!(super::lower_hex(&[0x0a, 0xf0]), "0af0");
    }
}
