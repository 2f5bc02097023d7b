//! CA lifecycle: create or import a CA, keep its key in an owner-only file under the data
//! directory, record it in the store, choose the issuing CA, and load it at startup.
//!
//! Shared by the CLI and the server so that both follow the same rules and both write audit
//! records.

use std::io::Write;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::ca::authority::SecretPem;
use crate::ca::{CaAlgorithm, CaError, CaSubject, CertificateAuthority};
use crate::store::{AuditEntry, CaRecord, Store, StoreError, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
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

pub struct Authorities<'a> {
    pub store: &'a Store,
    pub data_dir: &'a Path,
    /// Load key files that group or others can read (`ca.allow_insecure_key_permissions`).
    pub allow_insecure_key_permissions: bool,
}

impl<'a> Authorities<'a> {
    pub fn new(store: &'a Store, settings: &'a crate::config::Settings) -> Self {
        Self {
            store,
            data_dir: &settings.data_dir,
            allow_insecure_key_permissions: settings.ca.allow_insecure_key_permissions,
        }
    }
}

impl Authorities<'_> {
    /// Generates a CA. It becomes the issuing CA when `activate` is set or when there is none.
    pub async fn create(
        &self,
        algorithm: CaAlgorithm,
        subject: &CaSubject,
        validity_days: i64,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), AuthorityError> {
        let now = OffsetDateTime::now_utc();
        let result =
            CertificateAuthority::generate(algorithm, subject, Duration::days(validity_days), now);
        let (ca, key) = self.audited(result, "ca.create", None, actor).await?;
        self.persist(ca, key, "generated", activate, "ca.create", actor)
            .await
    }

    /// Imports a CA from PEM, refusing what AWS IoT would refuse.
    pub async fn import(
        &self,
        certificate_pem: &str,
        key_pem: &str,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), AuthorityError> {
        let result =
            CertificateAuthority::import(certificate_pem, key_pem, OffsetDateTime::now_utc());
        let (ca, key) = self.audited(result, "ca.import", None, actor).await?;
        self.persist(ca, key, "imported", activate, "ca.import", actor)
            .await
    }

    /// Makes an existing CA the issuing one.
    pub async fn activate(
        &self,
        id: &str,
        actor: Actor<'_>,
    ) -> Result<CertificateAuthority, AuthorityError> {
        let ca = self.load_by_id(id).await?;
        self.store.set_issuing_ca(id).await?;
        self.audit("ca.activate", Some(id), true, None, actor)
            .await?;
        Ok(ca)
    }

    /// Loads the issuing CA with its key, if the store has one.
    pub async fn load_issuing(&self) -> Result<Option<CertificateAuthority>, AuthorityError> {
        match self.store.issuing_ca().await? {
            Some(record) => Ok(Some(self.load(&record)?)),
            None => Ok(None),
        }
    }

    /// Loads any CA the store knows, with its key: issuing or not, expired or not (each CA
    /// signs the CRL of the certificates it issued).
    pub async fn load_by_id(&self, id: &str) -> Result<CertificateAuthority, AuthorityError> {
        let record = self
            .store
            .get_ca(id)
            .await?
            .ok_or_else(|| AuthorityError::NotFound(id.to_owned()))?;
        self.load(&record)
    }

    fn load(&self, record: &CaRecord) -> Result<CertificateAuthority, AuthorityError> {
        let path = self.data_dir.join(&record.key_file);
        let key_pem = read_key_file(&path, self.allow_insecure_key_permissions)?;
        Ok(CertificateAuthority::load(
            &record.certificate_pem,
            &key_pem,
        )?)
    }

    async fn persist(
        &self,
        ca: CertificateAuthority,
        key: SecretPem,
        source: &str,
        activate: bool,
        action: &str,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), AuthorityError> {
        if let Some(existing) = self.store.get_ca(ca.id()).await? {
            self.audit(action, Some(ca.id()), false, Some("already exists"), actor)
                .await?;
            return Err(AuthorityError::AlreadyExists(existing.id));
        }
        let is_issuing = activate || self.store.issuing_ca().await?.is_none();
        let key_file = PathBuf::from("keys").join(format!("{}.key.pem", ca.id()));
        write_key_file(&self.data_dir.join(&key_file), &key)?;
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
                return Err(AuthorityError::AlreadyExists(record.id));
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
    ) -> Result<T, AuthorityError> {
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

/// Writes a key file that only the service's user can read, in a directory only it can list.
fn write_key_file(path: &Path, key: &SecretPem) -> Result<(), AuthorityError> {
    let err = |message: String| AuthorityError::KeyFile {
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
    file.write_all(key.expose().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| err(format!("cannot write: {e}")))
}

/// Reads a key file, refusing one that group or others can read: a CA key that other local
/// users could copy is a compromised CA.
fn read_key_file(path: &Path, allow_insecure: bool) -> Result<String, AuthorityError> {
    let err = |message: String| AuthorityError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| err(format!("cannot read: {e}")))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 && allow_insecure {
            tracing::warn!(
                path = %path.display(),
                "CA key file is readable by group or others (allowed by ca.allow_insecure_key_permissions)"
            );
        } else if mode & 0o077 != 0 {
            return Err(err(format!(
                "permissions are {:o}; the CA key must be readable by its owner only (chmod 600)",
                mode & 0o777
            )));
        }
    }
    std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))
}
