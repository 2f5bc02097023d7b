//! Where CA keys live and how the CA signs with them: the [`KeyStore`].
//!
//! A CA record names its key with a [`KeyRef`]. Today every key is a file under the data
//! directory, `keys/<ca-id>.key.pem`, readable by its owner only ([`files`]). It holds PKCS#8
//! PEM: encrypted at rest ([`pkcs8`], PBES2) when a passphrase is configured
//! (`ca.key_passphrase_env` or `ca.key_passphrase_file`, see [`passphrase`]), otherwise
//! unencrypted. Both forms load, so a deployment can turn encryption on and then encrypt its
//! existing keys with `factory-ca ca encrypt-keys`.
//!
//! A key can also live in a PKCS#11 token (an HSM), named by an RFC 7512 URI,
//! `pkcs11:token=<label>;object=<label>` ([`Pkcs11Uri`]), with the module and the user PIN from
//! `[pkcs11]` ([`pkcs11`]). Such a key never leaves the token: a new one is made inside it, and
//! the CA certificate is self-signed by it (`CertificateAuthority::self_signed`).
//!
//! A key can also live in AWS KMS, named `awskms:<key id, key ARN or alias>` ([`KmsUri`]),
//! with the region, endpoint and credentials of `[aws]` ([`awskms`]): the CA certificate's
//! public key comes from `GetPublicKey`, and KMS signs SHA-256 digests.
//!
//! The KeyStore hands the CA core a [`CaSigner`]: a public key and a signing operation, never a
//! file, a passphrase or a PIN. A token key's signer asks the token to sign, and the CA core
//! checks it against the CA certificate exactly as it checks a key file.
//!
//! Nothing here knows about HTTP, SQL or AWS IoT: [`crate::services::ca_admin`] records the
//! CAs and audits what is done with their keys. One KeyStore lives in the
//! [`crate::app::AppState`]; the CLI builds its own from the settings.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ca::{CaError, CaSigner, CertificateAuthority, SecretKey};

pub mod audit;
pub mod awskms;
pub(crate) mod files;
pub mod passphrase;
pub mod pkcs11;
mod pkcs11_uri;
pub mod pkcs8;

pub use self::audit::{AUDIT_KEY_FILE, AuditKey, AuditPublicKey};
pub use self::awskms::KmsUri;
use self::awskms::{KmsClient, KmsKey};
pub use self::pkcs11::TokenFault;
use self::pkcs11::{TokenConfig, TokenError, TokenKey};
pub use self::pkcs11_uri::Pkcs11Uri;

pub use self::passphrase::{Passphrase, PassphraseError, PassphraseSource};
pub use self::pkcs8::{MAX_PBKDF2_ITERATIONS, PBKDF2_ITERATIONS, Pkcs8Error, is_encrypted};

/// Why a CA key cannot be stored or used. The messages name the file and the setting to fix,
/// never a passphrase.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key cannot be written, read or decrypted where it lives; the message says why.
    #[error("CA key file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// A key in a PKCS#11 token or in AWS KMS cannot be used; the message names the setting
    /// or the URI part to fix, never a PIN. `fault` says whether a later try may succeed.
    #[error("CA key {key}: {message}")]
    Token {
        key: String,
        fault: TokenFault,
        message: String,
    },
    /// The CA core refuses the key: unreadable, or not the CA certificate's.
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl KeyError {
    fn file(path: &Path, message: impl Into<String>) -> KeyError {
        KeyError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    fn token(key: &impl fmt::Display, e: TokenError) -> KeyError {
        KeyError::Token {
            key: key.to_string(),
            fault: e.fault,
            message: e.message,
        }
    }
}

/// Where a CA key lives: what a CA record's `key_file` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key file, by its path relative to the data directory.
    File(PathBuf),
    /// A key pair in a PKCS#11 token.
    Pkcs11(Pkcs11Uri),
    /// An asymmetric key in AWS KMS.
    AwsKms(KmsUri),
}

impl KeyRef {
    /// Where the key of a new CA goes: `keys/<ca-id>.key.pem`.
    pub fn for_new_ca(ca_id: &str) -> KeyRef {
        KeyRef::File(PathBuf::from("keys").join(format!("{ca_id}.key.pem")))
    }

    /// Reads a CA record's `key_file`: a path relative to the data directory, as file keys
    /// have always been recorded, the same path as a `file:` URI, a `pkcs11:` URI or an
    /// `awskms:` URI. A URI of another scheme names a key backend this build does not have.
    pub fn parse(recorded: &str) -> Result<KeyRef, KeyError> {
        match recorded.split_once(':') {
            Some(("file", path)) => Ok(KeyRef::File(PathBuf::from(path))),
            Some(("pkcs11", _)) => {
                Pkcs11Uri::parse(recorded)
                    .map(KeyRef::Pkcs11)
                    .map_err(|message| KeyError::Token {
                        key: "URI".into(),
                        fault: TokenFault::Setup,
                        message,
                    })
            }
            Some(("awskms", _)) => KmsUri::parse(recorded)
                .map(KeyRef::AwsKms)
                .map_err(|message| KeyError::Token {
                    key: "URI".into(),
                    fault: TokenFault::Setup,
                    message,
                }),
            Some((scheme, _)) if is_uri_scheme(scheme) => Err(KeyError::file(
                Path::new(recorded),
                format!(
                    "this build has no key backend for {scheme}: URIs; it keeps CA keys in \
                     files (file:), PKCS#11 tokens (pkcs11:) and AWS KMS (awskms:)"
                ),
            )),
            _ => Ok(KeyRef::File(PathBuf::from(recorded))),
        }
    }

    /// What a CA record holds for this key: for a file the bare relative path, as records
    /// always have, so that the records stay readable by earlier releases; for a token key
    /// its URI (which never holds a PIN).
    pub fn to_record(&self) -> String {
        match self {
            KeyRef::File(path) => path.to_string_lossy().into_owned(),
            KeyRef::Pkcs11(uri) => uri.to_string(),
            KeyRef::AwsKms(uri) => uri.to_string(),
        }
    }

    /// The key URI a CA record's `key_file` stands for, as `ca list` and the admin API show
    /// it: `file:keys/<ca-id>.key.pem` or the `pkcs11:` URI. A value that does not parse is
    /// shown as it is.
    pub fn uri_of_record(recorded: &str) -> String {
        KeyRef::parse(recorded)
            .map(|key| key.to_string())
            .unwrap_or_else(|_| recorded.to_owned())
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::File(path) => write!(f, "file:{}", path.display()),
            KeyRef::Pkcs11(uri) => write!(f, "{uri}"),
            KeyRef::AwsKms(uri) => write!(f, "{uri}"),
        }
    }
}

/// An RFC 3986 scheme of two characters or more (so that `C:` of a Windows path is not one).
fn is_uri_scheme(s: &str) -> bool {
    s.len() > 1
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// What a stored key must be the key of before [`KeyStore::encrypt_at_rest`] rewrites it.
#[derive(Debug, Clone, Copy)]
pub enum KeyOwner<'a> {
    /// A CA's certificate (PEM).
    Certificate(&'a str),
    /// A pending CA's own CSR (PEM): it has no certificate yet.
    Request(&'a str),
}

impl KeyOwner<'_> {
    fn check(self, key: &SecretKey) -> Result<(), CaError> {
        match self {
            KeyOwner::Certificate(pem) => CertificateAuthority::load_key(pem, key).map(|_| ()),
            KeyOwner::Request(pem) => CertificateAuthority::check_request_key(pem, key),
        }
    }
}

/// What [`KeyStore::encrypt_at_rest`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtRest {
    /// The file held an unencrypted key and now holds it encrypted.
    Encrypted,
    /// The file was already encrypted, and the configured passphrase decrypts it.
    AlreadyEncrypted,
}

/// Decrypted keys by SHA-256 of (passphrase, key file text): a key file is decrypted once per
/// KeyStore, so once per process. Without this, every CRL of a non-issuing CA, which needs no
/// token, would cost a PBKDF2 run (a third of a second of CPU). A changed file or passphrase is
/// a different entry; the map holds at most [`DECRYPTED_KEYS_MAX`] keys.
type DecryptedKeys = HashMap<[u8; 32], Zeroizing<Vec<u8>>>;
const DECRYPTED_KEYS_MAX: usize = 64;

/// The CA keys of one service: where they live, the passphrase they are encrypted with at
/// rest, the owner-only file rules, and the keys already decrypted.
pub struct KeyStore {
    data_dir: PathBuf,
    /// Where the passphrase comes from; `None` stores keys unencrypted. Read each time a key is
    /// written or read, never kept here.
    passphrase: Option<PassphraseSource>,
    /// Load key and passphrase files that group or others can read
    /// (`ca.allow_insecure_key_permissions`).
    allow_insecure_permissions: bool,
    decrypted: Mutex<DecryptedKeys>,
    /// Key files already logged as unencrypted although a passphrase is configured.
    warned: Mutex<HashSet<PathBuf>>,
    /// `[pkcs11]`: the module and the PIN source of token keys.
    tokens: TokenConfig,
    /// Token keys already opened (logged in, public key read), by URI: opened once per
    /// process, each with its own pool of sessions.
    token_keys: Mutex<HashMap<Pkcs11Uri, Arc<TokenKey>>>,
    /// `[aws]`: region, endpoint and credentials of keys in AWS KMS.
    aws: crate::config::AwsSettings,
    /// The KMS client, made the first time a KMS key is used.
    kms_client: tokio::sync::OnceCell<KmsClient>,
    /// KMS keys already opened (public key read, probe signed), by URI.
    kms_keys: Mutex<HashMap<KmsUri, Arc<KmsKey>>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("data_dir", &self.data_dir)
            .field("passphrase", &self.passphrase)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    pub fn new(
        data_dir: impl Into<PathBuf>,
        passphrase: Option<PassphraseSource>,
        allow_insecure_permissions: bool,
    ) -> KeyStore {
        KeyStore {
            data_dir: data_dir.into(),
            passphrase,
            allow_insecure_permissions,
            decrypted: Mutex::default(),
            warned: Mutex::default(),
            tokens: TokenConfig {
                settings: Default::default(),
                allow_insecure_permissions,
            },
            token_keys: Mutex::default(),
            aws: Default::default(),
            kms_client: tokio::sync::OnceCell::new(),
            kms_keys: Mutex::default(),
        }
    }

    /// Keys in AWS KMS use the region, endpoint and credentials of `settings`.
    pub fn with_aws(mut self, settings: crate::config::AwsSettings) -> KeyStore {
        self.aws = settings;
        self
    }

    /// Keys in PKCS#11 tokens use the module and PIN source of `settings`.
    pub fn with_pkcs11(mut self, settings: crate::config::Pkcs11Settings) -> KeyStore {
        self.tokens.settings = settings;
        self
    }

    /// The key store `[ca]`, `[pkcs11]` and `data_dir` describe.
    pub fn from_settings(settings: &crate::config::Settings) -> KeyStore {
        KeyStore::new(
            &settings.data_dir,
            PassphraseSource::from_settings(&settings.ca),
            settings.ca.allow_insecure_key_permissions,
        )
        .with_pkcs11(settings.pkcs11.clone())
        .with_aws(settings.aws.clone())
    }

    /// Stores the key of a new CA, encrypted when a passphrase is configured, in a new
    /// owner-only file. Returns what the CA record is to hold.
    pub async fn create(&self, ca_id: &str, key: SecretKey) -> Result<KeyRef, KeyError> {
        let key_ref = KeyRef::for_new_ca(ca_id);
        let KeyRef::File(relative) = &key_ref else {
            unreachable!("a new CA's key file")
        };
        let path = self.data_dir.join(relative);
        let text = match &self.passphrase {
            None => key.to_pem(),
            Some(source) => {
                let passphrase = self.read_passphrase(source, &path)?;
                let pem =
                    spawn_crypto(&path, move || self::pkcs8::encrypt(&key, &passphrase)).await?;
                Zeroizing::new(pem)
            }
        };
        files::write_key_file(&path, &text)?;
        Ok(key_ref)
    }

    /// Removes a key [`KeyStore::create`] stored for a CA that was not recorded after all.
    /// Best effort: what is left is an orphan file that no record names.
    /// A token key is left in the token: it may have been there before, and a key pair nobody
    /// names signs nothing.
    pub fn discard(&self, key: &KeyRef) {
        // A KMS key is the operator's: it was there before, and stays.
        if let KeyRef::File(path) = key {
            let _ = std::fs::remove_file(self.data_dir.join(path));
        }
    }

    /// The signer of a stored CA key. Checking it against the CA certificate is the CA core's
    /// business ([`CertificateAuthority::from_signer`]).
    pub async fn signer(&self, key: &KeyRef) -> Result<CaSigner, KeyError> {
        match key {
            KeyRef::File(path) => {
                let secret = self.read(&self.data_dir.join(path)).await?;
                Ok(CaSigner::from_secret(&secret)?)
            }
            KeyRef::Pkcs11(uri) => {
                let cached = self.cached_token_key(uri);
                let key = match cached {
                    Some(key) => key,
                    None => {
                        let (opened, config) = (uri.clone(), self.tokens.clone());
                        let key =
                            spawn_token(uri, move || TokenKey::open(&opened, &config)).await?;
                        self.cache_token_key(key)
                    }
                };
                Ok(CaSigner::remote(pkcs11::TokenSigner(key)))
            }
            KeyRef::AwsKms(uri) => {
                let key = match self.cached_kms_key(uri) {
                    Some(key) => key,
                    None => self.open_kms_key(uri, None).await?,
                };
                Ok(CaSigner::remote(awskms::KmsSigner(key)))
            }
        }
    }

    async fn open_kms_key(
        &self,
        uri: &KmsUri,
        algorithm: Option<crate::ca::CaAlgorithm>,
    ) -> Result<Arc<KmsKey>, KeyError> {
        let client = self
            .kms_client
            .get_or_try_init(|| KmsClient::from_settings(&self.aws))
            .await
            .map_err(|e| KeyError::token(uri, e))?;
        let key = KmsKey::open(uri, client, algorithm)
            .await
            .map_err(|e| KeyError::token(uri, e))?;
        let key = Arc::new(key);
        let mut keys = self.kms_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.insert(uri.clone(), Arc::clone(&key));
        Ok(key)
    }

    fn cached_kms_key(&self, uri: &KmsUri) -> Option<Arc<KmsKey>> {
        let keys = self.kms_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(uri).cloned()
    }

    /// The signer of a key pair in a token for a new CA: the pair labelled as the URI's
    /// `object` says, or a new one of `algorithm` (else `default`) generated inside the token.
    /// For an `awskms:` URI, the KMS key it names, which must exist (and be of `algorithm`
    /// when one is given). Returns the signer, what the CA record is to hold, and whether the
    /// key was generated.
    pub async fn create_in_token(
        &self,
        key_uri: &str,
        algorithm: Option<crate::ca::CaAlgorithm>,
        default: crate::ca::CaAlgorithm,
    ) -> Result<(CaSigner, KeyRef, bool), KeyError> {
        if key_uri.starts_with("awskms:") {
            let uri = KmsUri::parse(key_uri).map_err(|message| KeyError::Token {
                key: "URI".into(),
                fault: TokenFault::Setup,
                message,
            })?;
            let key = self.open_kms_key(&uri, algorithm).await?;
            return Ok((
                CaSigner::remote(awskms::KmsSigner(key)),
                KeyRef::AwsKms(uri),
                false,
            ));
        }
        if !key_uri.starts_with("pkcs11:") {
            return Err(KeyError::Token {
                key: "URI".into(),
                fault: TokenFault::Setup,
                message: "a CA key URI starts with pkcs11: (a key in a PKCS#11 token) or awskms: \
                          (a key in AWS KMS); leave it out for a new key file"
                    .into(),
            });
        }
        let uri = Pkcs11Uri::parse(key_uri).map_err(|message| KeyError::Token {
            key: "URI".into(),
            fault: TokenFault::Setup,
            message,
        })?;
        let (opened, config) = (uri.clone(), self.tokens.clone());
        let (key, generated) = spawn_token(&uri, move || {
            TokenKey::open_or_generate(&opened, &config, algorithm, default)
        })
        .await?;
        let key = self.cache_token_key(key);
        Ok((
            CaSigner::remote(pkcs11::TokenSigner(key)),
            KeyRef::Pkcs11(uri),
            generated,
        ))
    }

    fn cached_token_key(&self, uri: &Pkcs11Uri) -> Option<Arc<TokenKey>> {
        let keys = self.token_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(uri).cloned()
    }

    fn cache_token_key(&self, key: TokenKey) -> Arc<TokenKey> {
        let key = Arc::new(key);
        let mut keys = self.token_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.insert(key.uri().clone(), Arc::clone(&key));
        key
    }

    async fn read(&self, path: &Path) -> Result<SecretKey, KeyError> {
        let path = path.to_path_buf();
        let text = Zeroizing::new(self.read_key_file(&path)?);
        // Read the passphrase even for an unencrypted key, so that a passphrase that cannot be
        // read stops the service at startup, not at the next CA it creates.
        let passphrase = match &self.passphrase {
            Some(source) => Some((self.read_passphrase(source, &path)?, source)),
            None => None,
        };
        match passphrase {
            _ if !is_encrypted(&text) => {
                if passphrase.is_some() {
                    self.warn_unencrypted_once(&path);
                }
                Ok(SecretKey::from_pem(&text)?)
            }
            Some((passphrase, source)) => {
                self.cached_decrypt_key_file(&path, text, passphrase, source)
                    .await
            }
            None => Err(KeyError::file(
                &path,
                "the key is encrypted (ENCRYPTED PRIVATE KEY) and no passphrase is configured; \
                 set ca.key_passphrase_env or ca.key_passphrase_file to the passphrase it was \
                 encrypted with",
            )),
        }
    }

    /// The passphrase source keys are encrypted with at rest; without one, an error that says
    /// what to set.
    pub fn encryption_passphrase(&self) -> Result<&PassphraseSource, KeyError> {
        self.passphrase.as_ref().ok_or_else(|| {
            KeyError::file(
                &self.data_dir.join("keys"),
                "no passphrase is configured: set ca.key_passphrase_env or \
                 ca.key_passphrase_file first",
            )
        })
    }

    /// Encrypts a stored key in place with the configured passphrase, after checking that it
    /// is the key of `owner` (a CA certificate, or a pending CA's CSR). The new file is
    /// written beside the old one, read back and checked against the owner again, then
    /// renamed over it, so a crash leaves either the old or the new file.
    pub async fn encrypt_at_rest(
        &self,
        key: &KeyRef,
        owner: KeyOwner<'_>,
    ) -> Result<AtRest, KeyError> {
        let source = self.encryption_passphrase()?;
        let not_in_a_file = |place: &str| KeyError::Token {
            key: key.to_string(),
            fault: TokenFault::Setup,
            message: format!("the key is in {place}, not in a file; there is nothing to encrypt"),
        };
        let path = match key {
            KeyRef::File(path) => self.data_dir.join(path),
            KeyRef::Pkcs11(_) => return Err(not_in_a_file("a token")),
            KeyRef::AwsKms(_) => return Err(not_in_a_file("AWS KMS")),
        };
        let passphrase = self.read_passphrase(source, &path)?;
        let text = Zeroizing::new(self.read_key_file(&path)?);
        if is_encrypted(&text) {
            decrypt_key_file(&path, text, passphrase, source).await?;
            return Ok(AtRest::AlreadyEncrypted);
        }
        let key = SecretKey::from_pem(&text)?;
        // The key must be this CA's before it is rewritten.
        owner.check(&key)?;
        let (encrypted, passphrase) = spawn_crypto(&path, move || {
            self::pkcs8::encrypt(&key, &passphrase).map(|pem| (pem, passphrase))
        })
        .await?;
        let readback =
            decrypt_key_file(&path, Zeroizing::new(encrypted.clone()), passphrase, source).await?;
        owner.check(&readback)?;
        files::replace_key_file(&path, &encrypted)?;
        Ok(AtRest::Encrypted)
    }

    /// Reads a key file, refusing one that group or others can read: a CA key that other local
    /// users could copy is a compromised CA.
    fn read_key_file(&self, path: &Path) -> Result<String, KeyError> {
        files::read_owner_only_key_file(
            path,
            "CA key",
            "ca.allow_insecure_key_permissions",
            self.allow_insecure_permissions,
        )
        .map_err(|message| KeyError::file(path, message))
    }

    fn read_passphrase(
        &self,
        source: &PassphraseSource,
        key_path: &Path,
    ) -> Result<Passphrase, KeyError> {
        source
            .read(self.allow_insecure_permissions)
            .map_err(|e| KeyError::file(key_path, e.to_string()))
    }

    async fn cached_decrypt_key_file(
        &self,
        path: &Path,
        text: Zeroizing<String>,
        passphrase: Passphrase,
        source: &PassphraseSource,
    ) -> Result<SecretKey, KeyError> {
        let mut hasher = Sha256::new();
        hasher.update(passphrase.expose_bytes());
        hasher.update([0u8]);
        hasher.update(text.as_bytes());
        let id: [u8; 32] = hasher.finalize().into();
        if let Some(der) = self.decrypted.lock().expect("key cache lock").get(&id) {
            return Ok(SecretKey::from_pkcs8_der(der.clone()));
        }
        let key = decrypt_key_file(path, text, passphrase, source).await?;
        let mut cache = self.decrypted.lock().expect("key cache lock");
        if cache.len() >= DECRYPTED_KEYS_MAX {
            cache.clear();
        }
        cache.insert(id, Zeroizing::new(key.pkcs8_der().to_vec()));
        Ok(key)
    }

    /// Logs, once per file, that a key is stored unencrypted although a passphrase is
    /// configured (an existing deployment that turned encryption on).
    fn warn_unencrypted_once(&self, path: &Path) {
        let first = self
            .warned
            .lock()
            .expect("warned lock")
            .insert(path.to_path_buf());
        if first {
            tracing::warn!(
                path = %path.display(),
                "CA key file is not encrypted although a key passphrase is configured; encrypt \
                 it with `factory-ca ca encrypt-keys`"
            );
        }
    }
}

/// Decrypts a key given for import with the passphrase given with it (not necessarily the one
/// keys are stored with here). Every failure is the caller's to fix, so it is a rejection (422
/// over HTTP), and no message holds the passphrase.
pub async fn decrypt_import_key(
    key_pem: &str,
    key_passphrase: Option<Passphrase>,
) -> Result<SecretKey, CaError> {
    let Some(passphrase) = key_passphrase else {
        return Err(CaError::Rejected(
            "the private key is encrypted (ENCRYPTED PRIVATE KEY); give the passphrase it was \
             encrypted with (key_passphrase over the API; --key-passphrase-env or \
             --key-passphrase-file on the command line)"
                .into(),
        ));
    };
    let text = Zeroizing::new(key_pem.to_owned());
    let result = tokio::task::spawn_blocking(move || self::pkcs8::decrypt(&text, &passphrase))
        .await
        .map_err(|e| CaError::Crypto(format!("key decryption task: {e}")))?;
    result.map_err(|e| match e {
        Pkcs8Error::WrongPassphrase => CaError::Rejected(
            "the key passphrase does not decrypt the private key (a wrong passphrase, or a \
             damaged key)"
                .into(),
        ),
        Pkcs8Error::Crypto(m) => CaError::Crypto(m),
        other => CaError::Rejected(format!("the private key cannot be decrypted: {other}")),
    })
}

/// Runs a PBKDF2-bound key operation off the async executor (a third of a second of CPU).
async fn spawn_crypto<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, Pkcs8Error> + Send + 'static,
) -> Result<T, KeyError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| KeyError::file(path, format!("key encryption task: {e}")))?
        .map_err(|e| KeyError::file(path, e.to_string()))
}

/// Runs token work (module loading, login, key generation) on the blocking pool: it waits on
/// the token.
async fn spawn_token<T: Send + 'static>(
    uri: &Pkcs11Uri,
    work: impl FnOnce() -> Result<T, TokenError> + Send + 'static,
) -> Result<T, KeyError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| {
            KeyError::token(
                uri,
                TokenError {
                    fault: TokenFault::Unavailable,
                    message: format!("token task: {e}"),
                },
            )
        })?
        .map_err(|e| KeyError::token(uri, e))
}

/// Runs `sign` on the blocking pool: a key in a token or in AWS KMS signs with a round trip (the
/// device, the network) that must not hold up the reactor.
pub async fn off_reactor<T: Send + 'static>(
    sign: impl FnOnce() -> Result<T, CaError> + Send + 'static,
) -> Result<T, CaError> {
    tokio::task::spawn_blocking(sign)
        .await
        .unwrap_or_else(|e| Err(CaError::Crypto(format!("the signing task failed: {e}"))))
}

/// `sign` [`off_reactor`] when the key signs `remote`ly, else on the calling task (a key in
/// memory waits on nothing).
pub async fn off_reactor_if<T: Send + 'static>(
    remote: bool,
    sign: impl FnOnce() -> Result<T, CaError> + Send + 'static,
) -> Result<T, CaError> {
    if remote {
        off_reactor(sign).await
    } else {
        sign()
    }
}

/// Decrypts a stored key with the at-rest passphrase; errors say what to set.
async fn decrypt_key_file(
    path: &Path,
    text: Zeroizing<String>,
    passphrase: Passphrase,
    source: &PassphraseSource,
) -> Result<SecretKey, KeyError> {
    let result = tokio::task::spawn_blocking(move || self::pkcs8::decrypt(&text, &passphrase))
        .await
        .map_err(|e| KeyError::file(path, format!("key decryption task: {e}")))?;
    result.map_err(|e| {
        KeyError::file(
            path,
            match e {
                Pkcs8Error::WrongPassphrase => format!(
                    "the passphrase from {} does not decrypt this key (a wrong passphrase, or a \
                     damaged key file); set it to the passphrase the key was encrypted with",
                    source.describe()
                ),
                other => other.to_string(),
            },
        )
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use time::Duration;

    use super::*;
    use crate::ca::{CaAlgorithm, CaSubject};

    fn generated() -> (CertificateAuthority, SecretKey) {
        let subject = CaSubject {
            common_name: "Key Store Test Root".into(),
            country: None,
            state: None,
            locality: None,
            organization: None,
            organizational_unit: None,
        };
        let now = time::OffsetDateTime::now_utc();
        CertificateAuthority::generate(CaAlgorithm::EcdsaP256, &subject, Duration::days(1), now)
            .unwrap()
    }

    fn passphrase_file(dir: &Path) -> PassphraseSource {
        let path = dir.join("passphrase");
        std::fs::write(&path, "correct horse\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        PassphraseSource::File(path)
    }

    #[test]
    fn a_key_ref_reads_a_recorded_path_a_file_uri_or_a_pkcs11_uri_and_refuses_other_schemes() {
        let recorded = KeyRef::parse("keys/ca-1.key.pem").unwrap();
        assert_eq!(recorded, KeyRef::for_new_ca("ca-1"));
        assert_eq!(recorded.to_record(), "keys/ca-1.key.pem");
        assert_eq!(recorded.to_string(), "file:keys/ca-1.key.pem");
        assert_eq!(KeyRef::parse("file:keys/ca-1.key.pem").unwrap(), recorded);
        assert_eq!(
            KeyRef::uri_of_record("keys/ca-1.key.pem"),
            "file:keys/ca-1.key.pem"
        );

        let token = KeyRef::parse("pkcs11:object=ca%2D1;token=factory").unwrap();
        let KeyRef::Pkcs11(uri) = &token else {
            panic!("{token:?}")
        };
        assert_eq!(
            (uri.token.as_str(), uri.object.as_str()),
            ("factory", "ca-1")
        );
        assert_eq!(token.to_record(), "pkcs11:token=factory;object=ca-1");
        assert_eq!(KeyRef::parse(&token.to_record()).unwrap(), token);

        let kms = KeyRef::parse("awskms:alias/ca-1").unwrap();
        assert_eq!(kms.to_record(), "awskms:alias/ca-1");
        assert_eq!(
            KeyRef::uri_of_record("awskms:alias/ca-1"),
            "awskms:alias/ca-1"
        );
        let err = KeyRef::parse("gcpkms:projects/p/keys/k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no key backend for gcpkms: URIs"), "{err}");
        let err = KeyRef::parse("pkcs11:token=t;object=k?pin-value=1234")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a PIN is never stored"), "{err}");
    }

    #[tokio::test]
    async fn a_key_is_stored_encrypted_and_decrypted_once_per_key_store() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyStore::new(dir.path(), Some(passphrase_file(dir.path())), false);
        let (ca, key) = generated();
        let key_ref = keys.create(ca.id(), key).await.unwrap();
        assert_eq!(key_ref, KeyRef::for_new_ca(ca.id()));
        let text =
            std::fs::read_to_string(dir.path().join("keys").join(format!("{}.key.pem", ca.id())))
                .unwrap();
        assert!(is_encrypted(&text));

        for _ in 0..3 {
            let signer = keys.signer(&key_ref).await.unwrap();
            CertificateAuthority::from_signer(ca.certificate_pem(), signer).unwrap();
        }
        assert_eq!(keys.decrypted.lock().unwrap().len(), 1, "decrypted once");

        // No process-wide state: another key store decrypts for itself.
        let other = KeyStore::new(dir.path(), Some(passphrase_file(dir.path())), false);
        assert!(other.decrypted.lock().unwrap().is_empty());
        other.signer(&key_ref).await.unwrap();
        assert_eq!(other.decrypted.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_encrypted_key_without_a_passphrase_names_the_settings_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let encrypting = KeyStore::new(dir.path(), Some(passphrase_file(dir.path())), false);
        let (ca, key) = generated();
        let key_ref = encrypting.create(ca.id(), key).await.unwrap();
        let plain = KeyStore::new(dir.path(), None, false);
        let err = plain.signer(&key_ref).await.unwrap_err().to_string();
        assert!(
            err.contains(
                "no passphrase is configured; set ca.key_passphrase_env or ca.key_passphrase_file"
            ),
            "{err}"
        );
        assert!(!err.contains("correct horse"));
        let err = plain.encryption_passphrase().unwrap_err().to_string();
        assert!(err.contains("no passphrase is configured"), "{err}");
    }
}
