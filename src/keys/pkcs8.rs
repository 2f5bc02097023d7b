//! Encrypted PKCS#8 keys: an RFC 5958 `EncryptedPrivateKeyInfo` in a PEM block labelled
//! `ENCRYPTED PRIVATE KEY`, encrypted with PBES2 (RFC 8018 section 6.2): PBKDF2-HMAC-SHA256 with
//! [`PBKDF2_ITERATIONS`] iterations and a random 16-byte salt, and AES-256-CBC with a random IV.
//! This is the form `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes, so OpenSSL reads our keys
//! (`openssl pkey -in KEY -passin file:PASSFILE`) and we read OpenSSL's: PBES2 with PBKDF2
//! (HMAC-SHA-1, -256, -384 or -512) and AES-128, -192 or -256 in CBC mode. The ASN.1 comes from
//! the `pkcs8`/`pkcs5` crates; the KDF, the cipher and the random bytes from aws-lc-rs, the
//! library that already signs.
//!
//! Pure: no files, no logs. Each call costs a PBKDF2 run: call it off the async executor.

use std::num::NonZeroU32;

use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::pbkdf2;
use pkcs8::der::{Decode, Encode};
use pkcs8::pkcs5::pbes2::{self, Kdf, Pbkdf2Prf};
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo, pkcs5};
use zeroize::Zeroizing;

use super::Passphrase;
use crate::ca::{ENCRYPTED_KEY_LABEL, SecretKey};

/// PBKDF2-HMAC-SHA256 iterations for the keys we encrypt: the OWASP Password Storage Cheat
/// Sheet's figure for this PRF (2023). About a third of a second of one core here, paid when a
/// key is written and the first time a process reads it.
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// The most PBKDF2 iterations we run to read a key. A key (imported, or planted in the data
/// directory) asking for more would hold a core for many seconds per attempt; OpenSSL's own
/// default is 2048.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// The command that re-encrypts a key in a form we read, for error messages.
const REENCRYPT_HINT: &str = "re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf \
                              hmacWithSHA256 -in KEY -out NEW_KEY`";

/// Why a key cannot be encrypted or decrypted. No message holds the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs8Error {
    /// Decryption failed: a wrong passphrase (or a damaged file; PBES2 has no integrity check
    /// to tell the two apart).
    #[error("the passphrase does not decrypt the key (a wrong passphrase, or a damaged key file)")]
    WrongPassphrase,
    /// An encrypted key we do not read, or not an encrypted key at all; the message says why.
    #[error("{0}")]
    Unreadable(String),
    /// A failure inside the crypto library; not the caller's fault.
    #[error("key encryption failed: {0}")]
    Crypto(String),
}

/// Whether `text` holds an encrypted PKCS#8 key (by its PEM label).
pub fn is_encrypted(text: &str) -> bool {
    text.contains(&format!("-----BEGIN {ENCRYPTED_KEY_LABEL}-----"))
}

/// Encrypts `key` as an `ENCRYPTED PRIVATE KEY` PEM block (PBES2, PBKDF2-HMAC-SHA256 with
/// [`PBKDF2_ITERATIONS`] iterations, AES-256-CBC). Costs one PBKDF2 run: call it off the async
/// executor.
pub fn encrypt(key: &SecretKey, passphrase: &Passphrase) -> Result<String, Pkcs8Error> {
    let crypto = |what: &str| Pkcs8Error::Crypto(what.to_owned());
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| crypto("no random bytes for the salt"))?;
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| crypto("no random bytes for the IV"))?;
    let mut aes_key = Zeroizing::new([0u8; 32]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(PBKDF2_ITERATIONS).expect("a positive constant"),
        &salt,
        passphrase.expose_bytes(),
        aes_key.as_mut_slice(),
    );
    let cipher = UnboundCipherKey::new(&AES_256, aes_key.as_slice())
        .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
        .map_err(|_| crypto("AES-256-CBC key setup"))?;
    // Room for the padding up front, so that no reallocation leaves a plaintext copy behind;
    // after encryption in place the buffer holds only ciphertext.
    let plain = key.pkcs8_der();
    let mut buffer = Vec::with_capacity(plain.len() + 16);
    buffer.extend_from_slice(plain);
    cipher
        .less_safe_encrypt(&mut buffer, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| crypto("AES-256-CBC encryption"))?;
    let parameters = pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
        .map_err(|e| Pkcs8Error::Crypto(format!("PBES2 parameters: {e}")))?;
    let info = EncryptedPrivateKeyInfo {
        encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(parameters),
        encrypted_data: &buffer,
    };
    let der = info
        .to_der()
        .map_err(|e| Pkcs8Error::Crypto(format!("EncryptedPrivateKeyInfo encoding: {e}")))?;
    Ok(crate::ca::to_pem(ENCRYPTED_KEY_LABEL, &der))
}

/// Decrypts the one `ENCRYPTED PRIVATE KEY` block in `text`. Costs one PBKDF2 run of the
/// key's own iteration count (at most [`MAX_PBKDF2_ITERATIONS`]): call it off the async
/// executor.
pub fn decrypt(text: &str, passphrase: &Passphrase) -> Result<SecretKey, Pkcs8Error> {
    let blocks = pem::parse_many(text)
        .map_err(|_| Pkcs8Error::Unreadable("the key PEM cannot be decoded".into()))?;
    if crate::ca::key::has_text_after_last_pem_block(text) {
        return Err(Pkcs8Error::Unreadable(
            "the key PEM has data after its END line; give the key block only".into(),
        ));
    }
    let keys: Vec<_> = blocks
        .iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .collect();
    let [block] = keys.as_slice() else {
        return Err(Pkcs8Error::Unreadable(format!(
            "expected one ENCRYPTED PRIVATE KEY block, found {} private key blocks",
            keys.len()
        )));
    };
    if block.tag() != ENCRYPTED_KEY_LABEL {
        return Err(Pkcs8Error::Unreadable(format!(
            "expected an ENCRYPTED PRIVATE KEY block, found {}",
            block.tag()
        )));
    }
    let info = EncryptedPrivateKeyInfo::from_der(block.contents()).map_err(|_| {
        Pkcs8Error::Unreadable(format!(
            "the encrypted key uses an encryption scheme factory-ca does not read (it reads \
             PBES2 with PBKDF2 and AES-CBC), or is damaged; {REENCRYPT_HINT}"
        ))
    })?;
    let pkcs5::EncryptionScheme::Pbes2(parameters) = &info.encryption_algorithm else {
        return Err(Pkcs8Error::Unreadable(format!(
            "the key is encrypted with PKCS#5 v1.5 (PBES1, DES or RC2), which is obsolete; \
             {REENCRYPT_HINT}"
        )));
    };
    let (cipher_algorithm, iv) = match &parameters.encryption {
        pbes2::EncryptionScheme::Aes128Cbc { iv } => (&AES_128, **iv),
        pbes2::EncryptionScheme::Aes192Cbc { iv } => (&AES_192, **iv),
        pbes2::EncryptionScheme::Aes256Cbc { iv } => (&AES_256, **iv),
        _ => {
            return Err(Pkcs8Error::Unreadable(format!(
                "the key is encrypted with DES or 3DES, which factory-ca does not read; \
                 {REENCRYPT_HINT}"
            )));
        }
    };
    let key_size = parameters.encryption.key_size();
    let Kdf::Pbkdf2(kdf) = &parameters.kdf else {
        return Err(Pkcs8Error::Unreadable(format!(
            "the key's passphrase is derived with scrypt, which factory-ca does not read; \
             {REENCRYPT_HINT}"
        )));
    };
    let prf = match kdf.prf {
        Pbkdf2Prf::HmacWithSha1 => pbkdf2::PBKDF2_HMAC_SHA1,
        Pbkdf2Prf::HmacWithSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        Pbkdf2Prf::HmacWithSha384 => pbkdf2::PBKDF2_HMAC_SHA384,
        Pbkdf2Prf::HmacWithSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        _ => {
            return Err(Pkcs8Error::Unreadable(format!(
                "the key's passphrase is derived with PBKDF2-HMAC-SHA224, which factory-ca \
                 does not read; {REENCRYPT_HINT}"
            )));
        }
    };
    if kdf.key_length.is_some_and(|n| usize::from(n) != key_size) {
        return Err(Pkcs8Error::Unreadable(
            "the encrypted key's PBKDF2 key length does not match its cipher".into(),
        ));
    }
    let iterations = NonZeroU32::new(kdf.iteration_count)
        .filter(|n| n.get() <= MAX_PBKDF2_ITERATIONS)
        .ok_or_else(|| {
            Pkcs8Error::Unreadable(format!(
                "the encrypted key asks for {} PBKDF2 iterations; factory-ca runs 1 to {}; \
                 {REENCRYPT_HINT}",
                kdf.iteration_count, MAX_PBKDF2_ITERATIONS
            ))
        })?;
    let ciphertext = info.encrypted_data;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(Pkcs8Error::Unreadable(
            "the encrypted key's ciphertext is not a whole number of AES blocks (a damaged \
             file)"
                .into(),
        ));
    }
    let mut aes_key = Zeroizing::new([0u8; 32]);
    let aes_key = &mut aes_key[..key_size];
    pbkdf2::derive(
        prf,
        iterations,
        kdf.salt,
        passphrase.expose_bytes(),
        aes_key,
    );
    let cipher = UnboundCipherKey::new(cipher_algorithm, aes_key)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| Pkcs8Error::Crypto("AES-CBC key setup".into()))?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let plain_len = cipher
        .decrypt(&mut buffer, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| Pkcs8Error::WrongPassphrase)?
        .len();
    buffer.truncate(plain_len);
    // CBC padding alone lets about one wrong passphrase in 256 through: the plaintext must also
    // be a PKCS#8 PrivateKeyInfo.
    if PrivateKeyInfo::from_der(&buffer).is_err() {
        return Err(Pkcs8Error::WrongPassphrase);
    }
    Ok(SecretKey::from_pkcs8_der(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase(s: &str) -> Passphrase {
        Passphrase::new(Zeroizing::new(s.to_owned()), "a test").unwrap()
    }

    fn new_key() -> SecretKey {
        let key = rcgen::KeyPair::generate().unwrap();
        SecretKey::from_pem(&key.serialize_pem()).unwrap()
    }

    #[test]
    fn an_encrypted_key_decrypts_with_its_passphrase_only() {
        let key = new_key();
        let pem = encrypt(&key, &passphrase("correct horse")).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert!(is_encrypted(&pem));
        let back = decrypt(&pem, &passphrase("correct horse")).unwrap();
        assert_eq!(back.pkcs8_der(), key.pkcs8_der());
        for wrong in ["correct horsf", "Correct horse", "x"] {
            assert!(matches!(
                decrypt(&pem, &passphrase(wrong)),
                Err(Pkcs8Error::WrongPassphrase)
            ));
        }
    }

    #[test]
    fn keys_we_write_use_pbkdf2_sha256_and_aes_256_cbc_with_fresh_salt_and_iv() {
        let key = new_key();
        let a = encrypt(&key, &passphrase("p")).unwrap();
        let b = encrypt(&key, &passphrase("p")).unwrap();
        assert_ne!(a, b, "salt and IV are random");
        let der = pem::parse(&a).unwrap().into_contents();
        let info = EncryptedPrivateKeyInfo::from_der(&der).unwrap();
        let pkcs5::EncryptionScheme::Pbes2(p) = info.encryption_algorithm else {
            panic!("not PBES2")
        };
        let Kdf::Pbkdf2(kdf) = p.kdf else {
            panic!("not PBKDF2")
        };
        assert_eq!(kdf.prf, Pbkdf2Prf::HmacWithSha256);
        assert_eq!(kdf.iteration_count, PBKDF2_ITERATIONS);
        assert_eq!(kdf.salt.len(), 16);
        assert!(matches!(
            p.encryption,
            pbes2::EncryptionScheme::Aes256Cbc { .. }
        ));
    }

    #[test]
    fn refuses_excessive_iterations_and_plain_keys() {
        let key = new_key();
        let salt = [1u8; 16];
        let iv = [2u8; 16];
        let parameters =
            pbes2::Parameters::pbkdf2_sha256_aes256cbc(MAX_PBKDF2_ITERATIONS + 1, &salt, &iv)
                .unwrap();
        let info = EncryptedPrivateKeyInfo {
            encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(parameters),
            encrypted_data: &[0u8; 32],
        };
        let pem = crate::ca::to_pem(ENCRYPTED_KEY_LABEL, &info.to_der().unwrap());
        let err = decrypt(&pem, &passphrase("p")).unwrap_err().to_string();
        assert!(err.contains("10000001 PBKDF2 iterations"), "{err}");

        let err = decrypt(&key.to_pem(), &passphrase("p")).unwrap_err();
        assert!(err.to_string().contains("found PRIVATE KEY"), "{err}");
    }
}
