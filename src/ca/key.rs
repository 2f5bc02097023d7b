//! CA keys as the CA core sees them: the algorithms of a new CA, [`SecretKey`] (the unencrypted
//! PKCS#8 form a generated or imported key is handed over in) and [`CaSigner`] (what the CA
//! signs with, wherever the key is). Where keys are kept, and how they are encrypted at rest,
//! is `crate::keys`' business.

use std::fmt;

use aws_lc_rs::signature as sig;
use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::CaError;
use super::to_pem;

/// The key algorithm of a new CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub enum CaAlgorithm {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl CaAlgorithm {
    pub const NAMES: [&str; 5] = [
        "ecdsa-p256",
        "ecdsa-p384",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }

    /// The name settings, the CLI and the API use (`ecdsa-p256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CaAlgorithm::EcdsaP256 => Self::NAMES[0],
            CaAlgorithm::EcdsaP384 => Self::NAMES[1],
            CaAlgorithm::Rsa2048 => Self::NAMES[2],
            CaAlgorithm::Rsa3072 => Self::NAMES[3],
            CaAlgorithm::Rsa4096 => Self::NAMES[4],
        }
    }

    pub(super) fn generate_key(self) -> Result<KeyPair, rcgen::Error> {
        use rcgen::RsaKeySize;
        match self {
            CaAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            CaAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            CaAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            }
            CaAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
            }
            CaAlgorithm::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
            }
        }
    }
}

/// Whether `text` has anything but white space after the END line of its last PEM block.
pub fn has_text_after_last_pem_block(text: &str) -> bool {
    let Some(end) = text.rfind("-----END ") else {
        return false;
    };
    let rest = &text[end + "-----END ".len()..];
    match rest.find("-----") {
        Some(close) => !rest[close + "-----".len()..].trim().is_empty(),
        None => true,
    }
}

/// Whether `der` is exactly one DER TLV: a tag, a definite length, and that many bytes.
pub fn is_one_der_element(der: &[u8]) -> bool {
    use der::Decode;
    der::asn1::AnyRef::from_der(der).is_ok()
}

/// A CA private key as unencrypted PKCS#8 DER (RFC 5958), the one form in which keys leave
/// the CA core, whatever form they were imported in. Its `Debug` never shows the key, and its
/// bytes are zeroed when it is dropped. Encrypting it for storage is the key store's business
/// (`crate::keys`), not the CA's.
pub struct SecretKey(Zeroizing<Vec<u8>>);

impl SecretKey {
    /// Reads one unencrypted private key block: PKCS#8 (`PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, possibly after an `EC PARAMETERS` block, as
    /// `openssl ecparam -genkey` writes), and converts it to PKCS#8. An `ENCRYPTED PRIVATE KEY`
    /// is refused here: decrypting needs a passphrase, which the caller holds.
    pub fn from_pem(text: &str) -> Result<SecretKey, CaError> {
        let blocks = pem::parse_many(text)
            .map_err(|_| CaError::Rejected("the private key PEM cannot be decoded".into()))?;
        if has_text_after_last_pem_block(text) {
            return Err(CaError::Rejected(
                "the private key PEM has data after its END line; give the key block only".into(),
            ));
        }
        if blocks.iter().any(|b| b.tag() == ENCRYPTED_KEY_LABEL) {
            return Err(CaError::Rejected(
                "the private key is encrypted (ENCRYPTED PRIVATE KEY); give its passphrase with \
                 the key, or decrypt it first"
                    .into(),
            ));
        }
        let keys: Vec<_> = blocks
            .iter()
            .filter(|b| {
                matches!(
                    b.tag(),
                    "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
                )
            })
            .collect();
        let [block] = keys.as_slice() else {
            return Err(CaError::Rejected(format!(
                "expected one PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block, found {}",
                keys.len()
            )));
        };
        let unreadable = || {
            CaError::Rejected(
                "the private key cannot be read; supported: RSA 2048+ and ECDSA \
                 P-256/P-384/P-521"
                    .into(),
            )
        };
        // Exactly one DER element: bytes after the key's SEQUENCE are refused, not ignored.
        if !is_one_der_element(block.contents()) {
            return Err(CaError::Rejected(
                "the private key block holds data after the key (its DER is not exactly one \
                 element); give the key only"
                    .into(),
            ));
        }
        let pkcs8 = match block.tag() {
            "RSA PRIVATE KEY" => {
                use aws_lc_rs::encoding::AsDer;
                let key = sig::RsaKeyPair::from_der(block.contents()).map_err(|_| unreadable())?;
                let der = key.as_der().map_err(|_| unreadable())?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            "EC PRIVATE KEY" => {
                let der = [
                    &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                    &sig::ECDSA_P521_SHA512_ASN1_SIGNING,
                ]
                .into_iter()
                .find_map(|alg| sig::EcdsaKeyPair::from_private_key_der(alg, block.contents()).ok())
                .and_then(|key| key.to_pkcs8v1().ok())
                .ok_or_else(unreadable)?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            _ => Zeroizing::new(block.contents().to_vec()),
        };
        Ok(SecretKey(pkcs8))
    }

    /// A key from PKCS#8 DER, such as the plaintext of an encrypted key. Checked when a CA is
    /// built from it.
    pub fn from_pkcs8_der(der: Zeroizing<Vec<u8>>) -> SecretKey {
        SecretKey(der)
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.0
    }

    /// The key as an unencrypted `PRIVATE KEY` PEM block.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(to_pem("PRIVATE KEY", &self.0))
    }

    pub(super) fn key_pair(&self) -> Result<KeyPair, CaError> {
        KeyPair::try_from(self.0.as_slice()).map_err(|_| {
            CaError::Rejected(
                "the private key cannot be read; supported: RSA 2048+ and ECDSA \
                 P-256/P-384/P-521"
                    .into(),
            )
        })
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// The PEM label of an encrypted PKCS#8 key (RFC 7468 section 11).
pub const ENCRYPTED_KEY_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// A CA key as the CA signs with it: its public key and a signing operation, wherever the
/// private key is. A key file's key is held in memory as an rcgen `KeyPair`
/// ([`CaSigner::from_secret`]). A key in an HSM (PKCS#11) or a KMS implements rcgen's
/// `SigningKey` itself, so the CA signs with it without the service ever holding it.
///
/// `SigningKey::sign` is synchronous: a signer that asks a device or a service blocks its
/// caller for the round trip, so its signing belongs on the blocking pool, as
/// `services::issuance` already does for slow keys.
pub struct CaSigner {
    key: Box<dyn SigningKey + Send + Sync>,
    /// Each signature is a round trip to a device or a service (see [`CaSigner::remote`]).
    remote: bool,
}

impl CaSigner {
    pub fn new(key: impl SigningKey + Send + Sync + 'static) -> CaSigner {
        CaSigner {
            key: Box::new(key),
            remote: false,
        }
    }

    /// The signer of a key the service cannot read (an HSM's, a KMS's): every signature blocks
    /// for a round trip, so callers sign on the blocking pool, and a failure is the device's
    /// (rcgen's `RemoteKeyError`), not a bug.
    pub fn remote(key: impl SigningKey + Send + Sync + 'static) -> CaSigner {
        CaSigner {
            key: Box::new(key),
            remote: true,
        }
    }

    /// The signer of a key in memory.
    pub fn from_secret(secret: &SecretKey) -> Result<CaSigner, CaError> {
        Ok(CaSigner::new(secret.key_pair()?))
    }

    /// Whether signing asks a device or a service ([`CaSigner::remote`]).
    pub fn is_remote(&self) -> bool {
        self.remote
    }
}

impl SigningKey for CaSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.sign(message)
    }
}

impl PublicKeyData for CaSigner {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CaSigner")
            .field(self.key.algorithm())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pem() -> String {
        KeyPair::generate().unwrap().serialize_pem()
    }

    #[test]
    fn a_key_pem_reads_with_trailing_white_space_only() {
        let pem = key_pem();
        assert!(SecretKey::from_pem(&pem).is_ok());
        assert!(SecretKey::from_pem(&format!("{pem}\n\r\n  ")).is_ok());
    }

    #[test]
    fn data_after_the_key_is_refused() {
        let pem = key_pem();
        // Text after the END line.
        let err = SecretKey::from_pem(&format!("{pem}trailing"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("after its END line"), "{err}");
        // Bytes after the key's SEQUENCE inside the block.
        let mut der = pem::parse(&pem).unwrap().into_contents();
        der.extend_from_slice(&[0x05, 0x00]);
        let padded = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
        let err = SecretKey::from_pem(&padded).err().unwrap();
        assert!(err.to_string().contains("data after the key"), "{err}");
    }

    #[test]
    fn finds_text_after_the_last_pem_block() {
        assert!(!has_text_after_last_pem_block(
            "-----BEGIN X-----\nAA==\n-----END X-----\n"
        ));
        assert!(has_text_after_last_pem_block(
            "-----BEGIN X-----\nAA==\n-----END X-----\nx"
        ));
        assert!(has_text_after_last_pem_block(
            "-----BEGIN X-----\nAA==\n-----END X"
        ));
        assert!(!has_text_after_last_pem_block("no pem at all"));
    }
}
