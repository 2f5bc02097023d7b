//! The ledger's audit key: an ECDSA P-256 key of its own that signs the checkpoints of the
//! ledger's hash chains and the signed exports, never a certificate or a CRL. A CA key is not
//! used for this: it may sit in an HSM, be pending or revoked, and a CA key must sign only
//! certificates and CRLs.
//!
//! It lives beside the CA keys, in `keys/ledger-audit.key.pem` under the data directory, as an
//! owner-only PKCS#8 file, encrypted at rest with the CA key passphrase when one is configured.
//! The first `serve` (or `ledger audit-key`) generates it; replicas sharing the data directory
//! share it (a replica that loses the race to create it reads the winner's). Its public key is
//! published (`GET /v1/ledger/audit-key.pem`, `factory-ca ledger audit-key`); its key id is the
//! lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER, which an auditor computes
//! with `openssl pkey -pubin -in audit.pub -outform DER | sha256sum`.
//!
//! Signatures are ECDSA with SHA-256, DER-encoded (what `openssl dgst -sha256 -sign` writes and
//! `openssl dgst -sha256 -verify` checks).

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self as sig, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{KeyError, KeyStore, files};
use crate::ca::SecretKey;

/// Where the audit key lives, relative to the data directory.
pub const AUDIT_KEY_FILE: &str = "keys/ledger-audit.key.pem";

/// The PEM label of a public key (RFC 7468 section 13).
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// The audit key pair, in memory. Its `Debug` shows the key id only.
pub struct AuditKey {
    pair: EcdsaKeyPair,
    public: AuditPublicKey,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A new random key.
    pub fn generate() -> Result<AuditKey, String> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| "cannot generate an ECDSA P-256 key".to_owned())?;
        AuditKey::from_pair(pair)
    }

    /// The key of a PKCS#8 DER: an ECDSA P-256 key, or an error saying it is not one.
    pub fn from_pkcs8(der: &[u8]) -> Result<AuditKey, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map_err(|_| "the audit key is not an ECDSA P-256 PKCS#8 key".to_owned())?;
        AuditKey::from_pair(pair)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<AuditKey, String> {
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| "cannot encode the audit public key".to_owned())?;
        let public = AuditPublicKey::from_spki_der(spki.as_ref().to_vec())?;
        Ok(AuditKey { pair, public })
    }

    fn to_secret(&self) -> Result<SecretKey, String> {
        let der = self
            .pair
            .to_pkcs8v1()
            .map_err(|_| "cannot encode the audit key as PKCS#8".to_owned())?;
        Ok(SecretKey::from_pkcs8_der(Zeroizing::new(
            der.as_ref().to_vec(),
        )))
    }

    pub fn public(&self) -> &AuditPublicKey {
        &self.public
    }

    pub fn key_id(&self) -> &str {
        &self.public.key_id
    }

    /// The DER ECDSA signature of `message` (SHA-256).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .expect("ECDSA P-256 signing with a valid key does not fail")
            .as_ref()
            .to_vec()
    }

    /// The DER ECDSA signature of a message whose SHA-256 is `digest` (a file hashed as it was
    /// written): the same signature [`AuditKey::sign`] gives for the whole message.
    pub fn sign_digest(&self, digest: &digest::Digest) -> Vec<u8> {
        self.pair
            .sign_digest(digest)
            .expect("ECDSA P-256 signing of a SHA-256 digest does not fail")
            .as_ref()
            .to_vec()
    }
}

/// An audit public key: what verifies checkpoints and exports.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditPublicKey {
    spki_der: Vec<u8>,
    key_id: String,
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditPublicKey")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl AuditPublicKey {
    fn from_spki_der(spki_der: Vec<u8>) -> Result<AuditPublicKey, String> {
        // Parse it once: a key that does not parse as P-256 is refused here, not at verify.
        sig::ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &spki_der)
            .map_err(|_| "not an ECDSA P-256 public key (SubjectPublicKeyInfo)".to_owned())?;
        let key_id = hex::encode(Sha256::digest(&spki_der));
        Ok(AuditPublicKey { spki_der, key_id })
    }

    /// Reads a `PUBLIC KEY` PEM block (as `openssl pkey -pubout` writes and
    /// `GET /v1/ledger/audit-key.pem` serves).
    pub fn from_pem(text: &str) -> Result<AuditPublicKey, String> {
        let block = pem::parse(text).map_err(|_| {
            "the audit public key is not PEM (expected one PUBLIC KEY block)".to_owned()
        })?;
        if block.tag() != PUBLIC_KEY_LABEL {
            return Err(format!(
                "expected a PUBLIC KEY block, found {}",
                block.tag()
            ));
        }
        AuditPublicKey::from_spki_der(block.contents().to_vec())
    }

    /// Lowercase hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The `PUBLIC KEY` PEM block.
    pub fn to_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new(PUBLIC_KEY_LABEL, self.spki_der.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// Whether `signature` (DER ECDSA, SHA-256) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.spki_der)
            .verify(message, signature)
            .is_ok()
    }
}

impl KeyStore {
    fn audit_key_path(&self) -> PathBuf {
        self.data_dir.join(AUDIT_KEY_FILE)
    }

    /// The audit key, generated and stored (encrypted when a passphrase is configured) when
    /// there is none yet. Two processes starting at once end up with the same key: the file is
    /// linked into place only if none is there, and the loser reads the winner's.
    pub async fn audit_key(&self) -> Result<AuditKey, KeyError> {
        if let Some(key) = self.existing_audit_key().await? {
            return Ok(key);
        }
        let path = self.audit_key_path();
        let key = AuditKey::generate().map_err(|m| KeyError::file(&path, m))?;
        let secret = key.to_secret().map_err(|m| KeyError::file(&path, m))?;
        let text = match &self.passphrase {
            None => secret.to_pem(),
            Some(source) => {
                let passphrase = self.read_passphrase(source, &path)?;
                let pem =
                    super::spawn_crypto(&path, move || super::pkcs8::encrypt(&secret, &passphrase))
                        .await?;
                Zeroizing::new(pem)
            }
        };
        if files::write_key_file_unless_exists(&path, &text)? {
            tracing::info!(
                key_id = key.key_id(),
                path = %path.display(),
                "generated the ledger audit key (it signs ledger checkpoints and exports)"
            );
            return Ok(key);
        }
        // Another process stored one first: use it.
        self.existing_audit_key()
            .await?
            .ok_or_else(|| KeyError::file(&path, "the audit key file vanished while read"))
    }

    /// The stored audit key, or `None` when none was generated yet. Never creates one.
    pub async fn existing_audit_key(&self) -> Result<Option<AuditKey>, KeyError> {
        let path = self.audit_key_path();
        if !exists(&path) {
            return Ok(None);
        }
        let secret = self.read(&path).await?;
        AuditKey::from_pkcs8(secret.pkcs8_der())
            .map(Some)
            .map_err(|m| KeyError::file(&path, m))
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::keys::PassphraseSource;

    #[test]
    fn a_signature_verifies_with_the_public_key_only() {
        let key = AuditKey::generate().unwrap();
        let other = AuditKey::generate().unwrap();
        let sig = key.sign(b"checkpoint");
        assert!(key.public().verifies(b"checkpoint", &sig));
        assert!(!key.public().verifies(b"checkpoinT", &sig));
        assert!(!other.public().verifies(b"checkpoint", &sig));
        // The digest form is the same signature scheme.
        let d = digest::digest(&digest::SHA256, b"checkpoint");
        assert!(key.public().verifies(b"checkpoint", &key.sign_digest(&d)));

        let pem = key.public().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        let back = AuditPublicKey::from_pem(&pem).unwrap();
        assert_eq!(&back, key.public());
        assert_eq!(back.key_id().len(), 64);
        assert!(
            AuditPublicKey::from_pem(
                "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn the_audit_key_is_made_once_encrypted_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("passphrase");
        std::fs::write(&pass, "correct horse\n").unwrap();
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let keys = KeyStore::new(
            dir.path(),
            Some(PassphraseSource::File(pass.clone())),
            false,
        );
        assert!(keys.existing_audit_key().await.unwrap().is_none());
        let first = keys.audit_key().await.unwrap();
        let path = dir.path().join(AUDIT_KEY_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(crate::keys::is_encrypted(&text), "encrypted at rest");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Another key store (another process) finds the same key and makes none.
        let again = KeyStore::new(dir.path(), Some(PassphraseSource::File(pass)), false);
        let second = again.audit_key().await.unwrap();
        assert_eq!(first.key_id(), second.key_id());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "one key file, no temporary left");

        // Without the passphrase it cannot be read, and the message says what to set.
        let plain = KeyStore::new(dir.path(), None, false);
        let err = plain.existing_audit_key().await.unwrap_err().to_string();
        assert!(err.contains("no passphrase is configured"), "{err}");
    }
}
