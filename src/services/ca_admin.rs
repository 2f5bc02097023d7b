//! CA lifecycle: create or import a CA, keep its key in an owner-only file under the data
//! directory, record it in the store, choose the issuing CA, and load it at startup.
//!
//! Key files hold PKCS#8 PEM: encrypted (`ENCRYPTED PRIVATE KEY`, see [`crate::keys`])
//! when a passphrase is configured (`ca.key_passphrase_env` or `ca.key_passphrase_file`),
//! otherwise unencrypted. Both forms load, so a deployment can turn encryption on and then
//! encrypt its existing keys with `factory-ca ca encrypt-keys`.
//!
//! Shared by the CLI and the server so that both follow the same rules and both write audit
//! records.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::ca::authority::SecretKey;
use crate::ca::{CaAlgorithm, CaError, CaSubject, CertificateAuthority};
use crate::keys::{self, KeystoreError, Passphrase, PassphraseSource};
use crate::store::{AuditEntry, CaRecord, Store, StoreError, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum CaAdminError {
    #[error(transparent)]
    Rejected(#[from] CaError),
    #[error("this CA is already known as {0}")]
    AlreadyExists(String),
    #[error("no CA with id {0:?}")]
    NotFound(String),
    #[error("CA key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where and by whom a CA change is made, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub request_id: Option<&'a str>,
}

pub struct CaAdmin<'a> {
    pub store: &'a Store,
    pub data_dir: &'a Path,
    /// Load key files that group or others can read (`ca.allow_insecure_key_permissions`).
    pub allow_insecure_key_permissions: bool,
    /// Where the passphrase that CA keys are encrypted with at rest comes from; `None` stores
    /// keys unencrypted. Read each time a key is written or read, never kept here.
    pub key_passphrase: Option<PassphraseSource>,
}

impl<'a> CaAdmin<'a> {
    pub fn new(store: &'a Store, settings: &'a crate::config::Settings) -> Self {
        Self {
            store,
            data_dir: &settings.data_dir,
            allow_insecure_key_permissions: settings.ca.allow_insecure_key_permissions,
            key_passphrase: PassphraseSource::from_settings(&settings.ca),
        }
    }
}

/// What `factory-ca ca encrypt-keys` did with one CA's key file.
#[derive(Debug)]
pub enum KeyFileOutcome {
    /// The file held an unencrypted key and now holds it encrypted.
    Encrypted,
    /// The file was already encrypted, and the configured passphrase decrypts it.
    AlreadyEncrypted,
    /// Left as it was; the message says why.
    Failed(String),
}

impl CaAdmin<'_> {
    /// Generates a CA. It becomes the issuing CA when `activate` is set or when there is none.
    pub async fn create(
        &self,
        algorithm: CaAlgorithm,
        subject: &CaSubject,
        validity_days: i64,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        let now = OffsetDateTime::now_utc();
        let result =
            CertificateAuthority::generate(algorithm, subject, Duration::days(validity_days), now);
        let (ca, key) = self.audited(result, "ca.create", None, actor).await?;
        self.persist(ca, key, "generated", activate, "ca.create", actor)
            .await
    }

    /// Imports a CA from PEM, refusing what AWS IoT would refuse. An encrypted PKCS#8 key
    /// (`ENCRYPTED PRIVATE KEY`) needs `key_passphrase`, the passphrase it was encrypted with
    /// (not necessarily the one keys are stored with here).
    pub async fn import(
        &self,
        certificate_pem: &str,
        key_pem: &str,
        key_passphrase: Option<Passphrase>,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        let now = OffsetDateTime::now_utc();
        let result = if keys::is_encrypted(key_pem) {
            match decrypt_import_key(key_pem, key_passphrase).await {
                Ok(key) => CertificateAuthority::import_key(certificate_pem, key, now),
                Err(e) => Err(e),
            }
        } else {
            CertificateAuthority::import(certificate_pem, key_pem, now)
        };
        let (ca, key) = self.audited(result, "ca.import", None, actor).await?;
        self.persist(ca, key, "imported", activate, "ca.import", actor)
            .await
    }

    /// Makes an existing CA the issuing one.
    pub async fn activate(
        &self,
        id: &str,
        actor: Actor<'_>,
    ) -> Result<CertificateAuthority, CaAdminError> {
        let ca = self.load_by_id(id).await?;
        self.store.set_issuing_ca(id).await?;
        self.audit("ca.activate", Some(id), true, None, actor)
            .await?;
        Ok(ca)
    }

    /// Loads the issuing CA with its key, if the store has one.
    pub async fn load_issuing(&self) -> Result<Option<CertificateAuthority>, CaAdminError> {
        match self.store.issuing_ca().await? {
            Some(record) => Ok(Some(self.load(&record).await?)),
            None => Ok(None),
        }
    }

    /// Loads any CA the store knows, with its key: issuing or not, expired or not (each CA
    /// signs the CRL of the certificates it issued).
    pub async fn load_by_id(&self, id: &str) -> Result<CertificateAuthority, CaAdminError> {
        let record = self
            .store
            .get_ca(id)
            .await?
            .ok_or_else(|| CaAdminError::NotFound(id.to_owned()))?;
        self.load(&record).await
    }

    /// Encrypts every unencrypted CA key file in place with the configured passphrase
    /// (`factory-ca ca encrypt-keys`). Each new file is written beside the old one, read back
    /// and checked against the CA certificate, then renamed over it, so a crash leaves either
    /// the old or the new file. Each encrypted key is audited as `ca.key.encrypt`.
    pub async fn encrypt_key_files(
        &self,
        actor: Actor<'_>,
    ) -> Result<Vec<(String, KeyFileOutcome)>, CaAdminError> {
        let Some(source) = &self.key_passphrase else {
            return Err(CaAdminError::KeyFile {
                path: self.data_dir.join("keys"),
                message: "no passphrase is configured: set ca.key_passphrase_env or \
                          ca.key_passphrase_file first"
                    .into(),
            });
        };
        let mut outcomes = Vec::new();
        for record in self.store.list_cas().await? {
            let path = self.data_dir.join(&record.key_file);
            let outcome = match self.encrypt_key_file(&record, &path, source).await {
                Ok(outcome) => outcome,
                Err(e) => KeyFileOutcome::Failed(e.to_string()),
            };
            if let KeyFileOutcome::Encrypted = outcome {
                self.audit("ca.key.encrypt", Some(&record.id), true, None, actor)
                    .await?;
            }
            outcomes.push((record.id, outcome));
        }
        Ok(outcomes)
    }

    async fn encrypt_key_file(
        &self,
        record: &CaRecord,
        path: &Path,
        source: &PassphraseSource,
    ) -> Result<KeyFileOutcome, CaAdminError> {
        let passphrase = self.read_passphrase(source, path)?;
        let text = Zeroizing::new(read_key_file(path, self.allow_insecure_key_permissions)?);
        if keys::is_encrypted(&text) {
            decrypt_key_file(path, text, passphrase, source).await?;
            return Ok(KeyFileOutcome::AlreadyEncrypted);
        }
        let key = SecretKey::from_pem(&text)?;
        // The key must be this CA's before it is rewritten.
        CertificateAuthority::load_key(&record.certificate_pem, &key)?;
        let (encrypted, passphrase) = spawn_crypto(path, move || {
            keys::encrypt(&key, &passphrase).map(|pem| (pem, passphrase))
        })
        .await?;
        let readback =
            decrypt_key_file(path, Zeroizing::new(encrypted.clone()), passphrase, source).await?;
        CertificateAuthority::load_key(&record.certificate_pem, &readback)?;
        replace_key_file(path, &encrypted)?;
        Ok(KeyFileOutcome::Encrypted)
    }

    async fn load(&self, record: &CaRecord) -> Result<CertificateAuthority, CaAdminError> {
        let path = self.data_dir.join(&record.key_file);
        let text = Zeroizing::new(read_key_file(&path, self.allow_insecure_key_permissions)?);
        // Read the passphrase even for an unencrypted key, so that a passphrase that cannot be
        // read stops the service at startup, not at the next CA it creates.
        let passphrase = match &self.key_passphrase {
            Some(source) => Some((self.read_passphrase(source, &path)?, source)),
            None => None,
        };
        let key = match passphrase {
            _ if !keys::is_encrypted(&text) => {
                if passphrase.is_some() {
                    warn_unencrypted_once(&path);
                }
                SecretKey::from_pem(&text)?
            }
            Some((passphrase, source)) => {
                cached_decrypt_key_file(&path, text, passphrase, source).await?
            }
            None => {
                return Err(CaAdminError::KeyFile {
                    path,
                    message: "the key is encrypted (ENCRYPTED PRIVATE KEY) and no passphrase \
                              is configured; set ca.key_passphrase_env or ca.key_passphrase_file \
                              to the passphrase it was encrypted with"
                        .into(),
                });
            }
        };
        Ok(CertificateAuthority::load_key(
            &record.certificate_pem,
            &key,
        )?)
    }

    fn read_passphrase(
        &self,
        source: &PassphraseSource,
        key_path: &Path,
    ) -> Result<Passphrase, CaAdminError> {
        source
            .read(self.allow_insecure_key_permissions)
            .map_err(|e| CaAdminError::KeyFile {
                path: key_path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// The key file's text: encrypted with the configured passphrase, if any.
    async fn key_file_text(
        &self,
        key: SecretKey,
        path: &Path,
    ) -> Result<Zeroizing<String>, CaAdminError> {
        match &self.key_passphrase {
            None => Ok(key.to_pem()),
            Some(source) => {
                let passphrase = self.read_passphrase(source, path)?;
                let pem = spawn_crypto(path, move || keys::encrypt(&key, &passphrase)).await?;
                Ok(Zeroizing::new(pem))
            }
        }
    }

    async fn persist(
        &self,
        ca: CertificateAuthority,
        key: SecretKey,
        source: &str,
        activate: bool,
        action: &str,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        if let Some(existing) = self.store.get_ca(ca.id()).await? {
            self.audit(action, Some(ca.id()), false, Some("already exists"), actor)
                .await?;
            return Err(CaAdminError::AlreadyExists(existing.id));
        }
        let is_issuing = activate || self.store.issuing_ca().await?.is_none();
        let key_file = PathBuf::from("keys").join(format!("{}.key.pem", ca.id()));
        let text = self
            .key_file_text(key, &self.data_dir.join(&key_file))
            .await?;
        write_key_file(&self.data_dir.join(&key_file), &text)?;
        let record = CaRecord {
            id: ca.id().to_owned(),
            subject: ca.subject().to_owned(),
            key_algorithm: ca.key_algorithm().to_owned(),
            certificate_pem: ca.certificate_pem().to_owned(),
            aws_certificate_id: ca.aws_certificate_id(),
            key_file: key_file.to_string_lossy().into_owned(),
            source: source.to_owned(),
            is_issuing,
            not_before: Timestamp::new(ca.not_before()),
            not_after: Timestamp::new(ca.not_after()),
            created_at: Timestamp::now(),
        };
        match self.store.insert_ca(&record).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = std::fs::remove_file(self.data_dir.join(&key_file));
                return Err(CaAdminError::AlreadyExists(record.id));
            }
            Err(e) => {
                let _ = std::fs::remove_file(self.data_dir.join(&key_file));
                return Err(e.into());
            }
        }
        let detail = format!(
            "subject={}; key={}; issuing={}",
            record.subject, record.key_algorithm, record.is_issuing
        );
        self.audit(action, Some(&record.id), true, Some(&detail), actor)
            .await?;
        Ok((record, ca))
    }

    /// Records a refused create/import in the audit log, then passes the result on.
    async fn audited<T>(
        &self,
        result: Result<T, CaError>,
        action: &str,
        target: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<T, CaAdminError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.audit(action, target, false, Some(&e.to_string()), actor)
                    .await?;
                Err(e.into())
            }
        }
    }

    async fn audit(
        &self,
        action: &str,
        target: Option<&str>,
        success: bool,
        detail: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<(), StoreError> {
        self.store
            .append_audit(&AuditEntry {
                actor: actor.name,
                action,
                target,
                success,
                detail,
                request_id: actor.request_id,
            })
            .await
    }
}

/// Decrypts a key given for import with the passphrase given with it. Every failure is the
/// caller's to fix, so it is a rejection (422 over HTTP), and no message holds the passphrase.
async fn decrypt_import_key(
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
    let result = tokio::task::spawn_blocking(move || keys::decrypt(&text, &passphrase))
        .await
        .map_err(|e| CaError::Crypto(format!("key decryption task: {e}")))?;
    result.map_err(|e| match e {
        KeystoreError::WrongPassphrase => CaError::Rejected(
            "the key passphrase does not decrypt the private key (a wrong passphrase, or a \
             damaged key)"
                .into(),
        ),
        KeystoreError::Crypto(m) => CaError::Crypto(m),
        other => CaError::Rejected(format!("the private key cannot be decrypted: {other}")),
    })
}

/// Runs a PBKDF2-bound key operation off the async executor (a third of a second of CPU).
async fn spawn_crypto<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, KeystoreError> + Send + 'static,
) -> Result<T, CaAdminError> {
    let err = |message: String| CaAdminError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| err(format!("key encryption task: {e}")))?
        .map_err(|e| err(e.to_string()))
}

/// Decrypts a stored key with the at-rest passphrase; errors say what to set.
async fn decrypt_key_file(
    path: &Path,
    text: Zeroizing<String>,
    passphrase: Passphrase,
    source: &PassphraseSource,
) -> Result<SecretKey, CaAdminError> {
    let result = tokio::task::spawn_blocking(move || keys::decrypt(&text, &passphrase))
        .await
        .map_err(|e| CaAdminError::KeyFile {
            path: path.to_path_buf(),
            message: format!("key decryption task: {e}"),
        })?;
    result.map_err(|e| CaAdminError::KeyFile {
        path: path.to_path_buf(),
        message: match e {
            KeystoreError::WrongPassphrase => format!(
                "the passphrase from {} does not decrypt this key (a wrong passphrase, or a \
                 damaged key file); set it to the passphrase the key was encrypted with",
                source.describe()
            ),
            other => other.to_string(),
        },
    })
}

/// Decrypted keys by SHA-256 of (passphrase, key file text). A key file is decrypted once per
/// process: without this, every CRL of a non-issuing CA, which needs no token, would cost a
/// PBKDF2 run. A changed file or passphrase is a different entry; the map holds at most
/// [`DECRYPTED_KEYS_MAX`] keys.
static DECRYPTED_KEYS: OnceLock<Mutex<DecryptedKeys>> = OnceLock::new();
type DecryptedKeys = HashMap<[u8; 32], Zeroizing<Vec<u8>>>;
const DECRYPTED_KEYS_MAX: usize = 64;

async fn cached_decrypt_key_file(
    path: &Path,
    text: Zeroizing<String>,
    passphrase: Passphrase,
    source: &PassphraseSource,
) -> Result<SecretKey, CaAdminError> {
    let mut hasher = Sha256::new();
    hasher.update(passphrase.expose_bytes());
    hasher.update([0u8]);
    hasher.update(text.as_bytes());
    let id: [u8; 32] = hasher.finalize().into();
    let cache = DECRYPTED_KEYS.get_or_init(Default::default);
    if let Some(der) = cache.lock().expect("key cache lock").get(&id) {
        return Ok(SecretKey::from_pkcs8_der(der.clone()));
    }
    let key = decrypt_key_file(path, text, passphrase, source).await?;
    let mut cache = cache.lock().expect("key cache lock");
    if cache.len() >= DECRYPTED_KEYS_MAX {
        cache.clear();
    }
    cache.insert(id, Zeroizing::new(key.pkcs8_der().to_vec()));
    Ok(key)
}

/// Logs, once per file and process, that a key is stored unencrypted although a passphrase is
/// configured (an existing deployment that turned encryption on).
fn warn_unencrypted_once(path: &Path) {
    static WARNED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let first = WARNED
        .get_or_init(Default::default)
        .lock()
        .expect("warned lock")
        .insert(path.to_path_buf());
    if first {
        tracing::warn!(
            path = %path.display(),
            "CA key file is not encrypted although a key passphrase is configured; encrypt it \
             with `factory-ca ca encrypt-keys`"
        );
    }
}

/// Writes a key file that only the service's user can read, in a directory only it can list.
fn write_key_file(path: &Path, text: &str) -> Result<(), CaAdminError> {
    let err = |message: String| CaAdminError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    let dir = path.parent().expect("key files live in a directory");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| err(format!("cannot create the keys directory: {e}")))?;
    // An existing directory keeps its mode on create: tighten it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            err(format!(
                "cannot restrict the keys directory to its owner: {e}"
            ))
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| err(format!("cannot create: {e}")))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| err(format!("cannot write: {e}")))
}

/// Replaces a key file atomically: a new owner-only file beside it, synced, renamed over it,
/// and the directory synced, so a crash leaves the old key or the new one, never half of one.
fn replace_key_file(path: &Path, text: &str) -> Result<(), CaAdminError> {
    let err = |message: String| CaAdminError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    let dir = path.parent().expect("key files live in a directory");
    let name = path
        .file_name()
        .expect("key files have a name")
        .to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    write_key_file(&temporary, text)?;
    if let Err(e) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(err(format!("cannot replace: {e}")));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(format!("cannot sync the keys directory: {e}")))
}

/// Reads a key file, refusing one that group or others can read: a CA key that other local
/// users could copy is a compromised CA.
fn read_key_file(path: &Path, allow_insecure: bool) -> Result<String, CaAdminError> {
    read_owner_only_key_file(
        path,
        "CA key",
        "ca.allow_insecure_key_permissions",
        allow_insecure,
    )
    .map_err(|message| CaAdminError::KeyFile {
        path: path.to_path_buf(),
        message,
    })
}

/// Reads a private key file that only its owner may read: group- or world-readable is refused,
/// or, when `allow_insecure` (the setting named `setting`) is on, only logged. `what` names the
/// key in messages. Shared by CA keys and the TLS server key (`server.tls.key_file`).
pub(crate) fn read_owner_only_key_file(
    path: &Path,
    what: &str,
    setting: &str,
    allow_insecure: bool,
) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 && allow_insecure {
            tracing::warn!(
                path = %path.display(),
                "{what} file is readable by group or others (allowed by {setting})"
            );
        } else if mode & 0o077 != 0 {
            return Err(format!(
                "permissions are {:o}; the {what} must be readable by its owner only (chmod 600)",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (what, setting, allow_insecure);
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}
