//! The checks of a CA certificate that AWS IoT would make (RegisterCACertificate): a CA
//! (basicConstraints CA:TRUE) that may sign certificates (keyUsage keyCertSign), with a key
//! AWS IoT accepts. Run on import and again whenever a stored CA is loaded.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::KeyAlgorithm;
use super::error::CaError;

pub(super) fn parse_certificate_pem(text: &str) -> Result<Vec<u8>, CaError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| CaError::Rejected(format!("the CA certificate PEM cannot be decoded: {e}")))?;
    let certs: Vec<_> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    match certs.as_slice() {
        [one] => Ok(one.contents().to_vec()),
        [] => Err(CaError::Rejected(
            "no CERTIFICATE block found in the CA certificate file".into(),
        )),
        _ => Err(CaError::Rejected(
            "the CA certificate file holds several certificates; give only the CA's own".into(),
        )),
    }
}

/// The checks of an imported CA certificate that do not need its key; returns its DER.
pub(super) fn check_import_certificate(certificate_pem: &str) -> Result<Vec<u8>, CaError> {
    let der = parse_certificate_pem(certificate_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|_| CaError::Rejected("the CA certificate is not valid DER X.509".into()))?;
    check_ca_extensions(&cert)?;
    check_ca_key(&cert)?;
    Ok(der)
}

pub(super) fn check_ca_extensions(cert: &X509Certificate<'_>) -> Result<(), CaError> {
    let mut is_ca = false;
    let mut key_cert_sign = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => key_cert_sign = Some(ku.key_cert_sign()),
            _ => {}
        }
    }
    if !is_ca {
        return Err(CaError::Rejected(
            "the certificate lacks basicConstraints CA:TRUE; AWS IoT rejects it (\"Contents of \
             the CA Certificate certificate are not correct\"). Re-issue it with \
             basicConstraints=critical,CA:TRUE"
                .into(),
        ));
    }
    if key_cert_sign != Some(true) {
        return Err(CaError::Rejected(
            "the certificate's keyUsage does not allow keyCertSign; AWS IoT requires a CA \
             certificate that may sign certificates. Re-issue it with \
             keyUsage=critical,keyCertSign,cRLSign"
                .into(),
        ));
    }
    Ok(())
}

pub(super) fn check_ca_key(cert: &X509Certificate<'_>) -> Result<KeyAlgorithm, CaError> {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = super::csr::unsigned_bit_length(rsa.modulus);
            if bits < 2048 {
                return Err(CaError::Rejected(format!(
                    "the CA key is RSA-{bits}; AWS IoT requires RSA keys of at least 2048 bits"
                )));
            }
            Ok(KeyAlgorithm::Rsa { bits })
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Ok(KeyAlgorithm::EcdsaP256),
                Some("1.3.132.0.34") => Ok(KeyAlgorithm::EcdsaP384),
                Some("1.3.132.0.35") => Ok(KeyAlgorithm::EcdsaP521),
                _ => Err(CaError::Rejected(
                    "the CA key uses an EC curve AWS IoT does not accept; use P-256, P-384 or P-521"
                        .into(),
                )),
            }
        }
        _ => Err(CaError::Rejected(
            "the CA key type is not supported; use RSA 2048+ or ECDSA P-256/P-384/P-521".into(),
        )),
    }
}
