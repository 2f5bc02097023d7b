//! CA lifecycle: create or import a CA, keep its key in the [`KeyStore`], record it in the
//! store, choose the issuing CA, and load it at startup.
//!
//! Shared by the CLI and the server so that both follow the same rules and both write audit
//! records. Where keys live and how they are protected at rest is the key store's business
//! ([`crate::keys`]).

use std::path::PathBuf;

use time::{Duration, OffsetDateTime};

use crate::ca::constraints::parse_subtree;
use crate::ca::{CaAlgorithm, CaError, CaSubject, CertificateAuthority, SecretKey};
use crate::keys::{self, AtRest, KeyError, KeyOwner, KeyRef, KeyStore, Passphrase, TokenFault};
use crate::store::{CaRecord, PendingCaRecord, Store, StoreError, Timestamp};

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
    /// The CA's key is in a token that cannot sign now (login refused, device error); a later
    /// try may succeed.
    #[error("{0}")]
    SignerUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<KeyError> for CaAdminError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::File { path, message } => CaAdminError::KeyFile { path, message },
            e @ KeyError::Token {
                fault: TokenFault::Setup,
                ..
            } => CaAdminError::Rejected(CaError::Rejected(e.to_string())),
            e @ KeyError::Token { .. } => CaAdminError::SignerUnavailable(e.to_string()),
            KeyError::Ca(e) => CaAdminError::Rejected(e),
        }
    }
}

impl CaAdminError {
    /// The same error, its message led by the CA it is about (startup and the CLI name it).
    fn for_ca(self, id: &str) -> CaAdminError {
        match self {
            CaAdminError::Rejected(CaError::Rejected(m)) => {
                CaAdminError::Rejected(CaError::Rejected(format!("CA {id}: {m}")))
            }
            CaAdminError::Rejected(CaError::SignerUnavailable(m))
            | CaAdminError::SignerUnavailable(m) => {
                CaAdminError::SignerUnavailable(format!("CA {id}: {m}"))
            }
            other => other,
        }
    }
}

/// The key of a CA being recorded: one to store in a new file, or one already in its place
/// (a token's).
enum NewKey {
    Secret(SecretKey),
    Stored(KeyRef),
    /// The key of a pending CA: recorded already, so kept whatever happens here.
    Pending(KeyRef),
}

enum KeyKind {
    New,
    Pending,
}

pub use super::audit::Actor;

pub struct CaAdmin<'a> {
    pub store: &'a Store,
    pub keys: &'a KeyStore,
}

impl<'a> CaAdmin<'a> {
    pub fn new(store: &'a Store, keys: &'a KeyStore) -> Self {
        Self { store, keys }
    }
}

/// What `factory-ca ca encrypt-keys` did with one CA's key file.
#[derive(Debug)]
pub enum KeyFileOutcome {
    /// The file held an unencrypted key and now holds it encrypted.
    Encrypted,
    /// The file was already encrypted, and the configured passphrase decrypts it.
    AlreadyEncrypted,
    /// The key is in a token: there is no file to encrypt.
    InToken,
    /// The key is in AWS KMS: there is no file to encrypt.
    InKms,
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
        self.persist_generated(result, activate, actor).await
    }

    /// Creates a sub-CA signed by the CA `parent_id` we hold, with a new key in a file:
    /// `name_constraints` (`C=JP,O=Acme,OU=Line3`) becomes a critical nameConstraints
    /// extension permitting that directoryName subtree, `path_len` its pathLenConstraint. Its
    /// chain (the parent and the parent's chain) must reach a self-signed root. Audited as
    /// `ca.create`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_subordinate(
        &self,
        parent_id: &str,
        algorithm: CaAlgorithm,
        subject: &CaSubject,
        validity_days: i64,
        name_constraints: Option<&str>,
        path_len: Option<u8>,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        let now = OffsetDateTime::now_utc();
        let subtree = name_constraints.map(parse_subtree).transpose();
        let subtree = self.audited(subtree, "ca.create", None, actor).await?;
        let parent = self.load_by_id(parent_id).await;
        let parent = self.audited(parent, "ca.create", None, actor).await?;
        let remote = parent.signs_remotely();
        let subject = subject.clone();
        let validity = Duration::days(validity_days);
        let sign = move || {
            parent.generate_subordinate(
                algorithm,
                &subject,
                validity,
                subtree.as_deref(),
                path_len,
                now,
            )
        };
        // A parent whose key is in a token signs with a round trip: off the reactor.
        let result = keys::off_reactor_if(remote, sign).await;
        self.persist_generated(result, activate, actor).await
    }

    /// Creates a CA whose key is in a PKCS#11 token, named by `key_uri`
    /// (`pkcs11:token=...;object=...`): the key pair with that label, or a new one generated
    /// inside the token (of `algorithm`, else `default_algorithm`). The CA certificate is
    /// self-signed by the token. The record holds the URI, never a PIN.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_in_token(
        &self,
        key_uri: &str,
        algorithm: Option<CaAlgorithm>,
        default_algorithm: CaAlgorithm,
        subject: &CaSubject,
        validity_days: i64,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        let now = OffsetDateTime::now_utc();
        // The subject and validity first: a refused CA leaves no new key in the token.
        let checked = CertificateAuthority::check_root(subject, Duration::days(validity_days), now);
        self.audited(checked, "ca.create", None, actor).await?;
        let opened = self
            .keys
            .create_in_token(key_uri, algorithm, default_algorithm)
            .await;
        let (signer, key, generated) = self
            .audited(opened.map_err(CaAdminError::from), "ca.create", None, actor)
            .await?;
        let subject = subject.clone();
        // The token signs the certificate: a round trip, off the reactor.
        let result = keys::off_reactor(move || {
            CertificateAuthority::self_signed(signer, &subject, Duration::days(validity_days), now)
        })
        .await;
        let ca = self.audited(result, "ca.create", None, actor).await?;
        // `generated` either way: the CA certificate is made here (the store's `source` values
        // are `generated` and `imported`).
        tracing::info!(
            key = %key,
            generated,
            "CA key pair in a PKCS#11 token (generated: made there now; otherwise existing)"
        );
        self.persist(
            ca,
            NewKey::Stored(key),
            "generated",
            activate,
            "ca.create",
            actor,
        )
        .await
    }

    /// Imports a CA from PEM, refusing what AWS IoT would refuse. An encrypted PKCS#8 key
    /// (`ENCRYPTED PRIVATE KEY`) needs `key_passphrase`, the passphrase it was encrypted with
    /// (not necessarily the one keys are stored with here). `chain_pem`, when given, holds the
    /// certificates above the CA: it must verify up to a self-signed root.
    #[allow(clippy::too_many_arguments)]
    pub async fn import(
        &self,
        certificate_pem: &str,
        key_pem: &str,
        key_passphrase: Option<Passphrase>,
        chain_pem: Option<&str>,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        let now = OffsetDateTime::now_utc();
        let result = if keys::is_encrypted(key_pem) {
            match keys::decrypt_import_key(key_pem, key_passphrase).await {
                Ok(key) => CertificateAuthority::import_key(certificate_pem, key, now),
                Err(e) => Err(e),
            }
        } else {
            CertificateAuthority::import(certificate_pem, key_pem, now)
        };
        let result = match (result, chain_pem) {
            (Ok((ca, key)), Some(chain)) => ca.with_chain(chain, now).map(|ca| (ca, key)),
            (result, _) => result,
        };
        let (ca, key) = self.audited(result, "ca.import", None, actor).await?;
        self.persist(
            ca,
            NewKey::Secret(key),
            "imported",
            activate,
            "ca.import",
            actor,
        )
        .await
    }

    /// The first half of the offline-root ceremony: makes the key of a new CA (in a new key
    /// file, or in the token `key_uri` names) and a CSR for its certificate, and records the CA
    /// as pending. A pending CA signs nothing; `install` completes it. Audited as
    /// `ca.create`.
    pub async fn create_pending(
        &self,
        key_uri: Option<&str>,
        algorithm: Option<CaAlgorithm>,
        default_algorithm: CaAlgorithm,
        subject: &CaSubject,
        actor: Actor<'_>,
    ) -> Result<(PendingCaRecord, String), CaAdminError> {
        let now = OffsetDateTime::now_utc();
        // The subject first: a refused CA leaves no new key behind.
        let checked = CertificateAuthority::check_root(subject, Duration::days(1), now);
        self.audited(checked, "ca.create", None, actor).await?;
        let (signer, stored, secret) = match key_uri {
            Some(uri) => {
                let opened = self
                    .keys
                    .create_in_token(uri, algorithm, default_algorithm)
                    .await
                    .map_err(CaAdminError::from);
                let (signer, key, _) = self.audited(opened, "ca.create", None, actor).await?;
                (signer, Some(key), None)
            }
            None => {
                let made = CertificateAuthority::new_key(algorithm.unwrap_or(default_algorithm));
                let (signer, secret) = self.audited(made, "ca.create", None, actor).await?;
                (signer, None, Some(secret))
            }
        };
        let remote = signer.is_remote();
        let request_subject = subject.clone();
        let sign = move || CertificateAuthority::request(&signer, &request_subject);
        let requested = keys::off_reactor_if(remote, sign).await;
        let request = self.audited(requested, "ca.create", None, actor).await?;
        let id = request.id.clone();
        let key = match (stored, secret) {
            (Some(key), _) => key,
            (None, Some(secret)) => self.keys.create(&id, secret).await?,
            (None, None) => unreachable!("a key in a token or a new secret"),
        };
        let record = PendingCaRecord {
            id: id.clone(),
            subject: request.subject,
            key_algorithm: request.key_algorithm,
            csr_pem: request.csr_pem.clone(),
            key_file: key.to_record(),
            created_at: Timestamp::now(),
        };
        if !self.store.insert_pending_ca(&record).await? {
            self.keys.discard(&key);
            return Err(CaAdminError::AlreadyExists(id));
        }
        let detail = format!(
            "pending; subject={}; key={}; key_uri={key}",
            record.subject, record.key_algorithm
        );
        self.audit("ca.create", Some(&id), true, Some(&detail), actor)
            .await?;
        Ok((record, request.csr_pem))
    }

    /// The second half of the ceremony: installs the certificate an offline root signed for
    /// the pending CA `pending_id` (it must match the key, be a CA with keyCertSign, be valid
    /// now, and `chain_pem` must verify up to a self-signed root). The CA is recorded under the
    /// id its certificate gives it, with the same key, and the pending record is removed.
    /// Audited as `ca.install`.
    pub async fn install(
        &self,
        pending_id: &str,
        certificate_pem: &str,
        chain_pem: &str,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        let pending = self.store.get_pending_ca(pending_id).await?;
        let pending = pending.ok_or_else(|| CaAdminError::NotFound(pending_id.to_owned()));
        let pending = self
            .audited(pending, "ca.install", Some(pending_id), actor)
            .await?;
        let now = OffsetDateTime::now_utc();
        let key = KeyRef::parse(&pending.key_file)
            .map_err(|e| CaAdminError::from(e).for_ca(pending_id))?;
        let signer = self.keys.signer(&key).await;
        let signer = signer.map_err(|e| CaAdminError::from(e).for_ca(pending_id));
        let signer = self
            .audited(signer, "ca.install", Some(pending_id), actor)
            .await?;
        let (certificate_pem, chain_pem) = (certificate_pem.to_owned(), chain_pem.to_owned());
        let remote = signer.is_remote();
        let check =
            move || CertificateAuthority::install(&certificate_pem, signer, &chain_pem, now);
        // Loading signs a probe: a token's or KMS's key does that off the reactor.
        let result = keys::off_reactor_if(remote, check).await;
        let ca = self
            .audited(result, "ca.install", Some(pending_id), actor)
            .await?;
        let installed = self
            .persist(
                ca,
                NewKey::Pending(key),
                "generated",
                activate,
                "ca.install",
                actor,
            )
            .await?;
        self.store.delete_pending_ca(pending_id).await?;
        Ok(installed)
    }

    /// Makes an existing CA the issuing one.
    pub async fn activate(
        &self,
        id: &str,
        actor: Actor<'_>,
    ) -> Result<CertificateAuthority, CaAdminError> {
        if self.store.get_ca(id).await?.is_none() && self.store.get_pending_ca(id).await?.is_some()
        {
            let e = CaAdminError::Rejected(CaError::Rejected(format!(
                "CA {id} is pending: it has no certificate yet and issues nothing. Have the \
                 offline root sign its CSR, then run factory-ca ca install {id} --cert FILE \
                 --chain FILE"
            )));
            self.audit("ca.activate", Some(id), false, Some(&e.to_string()), actor)
                .await?;
            return Err(e);
        }
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
    /// (`factory-ca ca encrypt-keys`; see [`KeyStore::encrypt_at_rest`]): the keys of the CAs,
    /// checked against their certificates, then those of pending CAs (`ca create --csr-out`),
    /// checked against their CSRs. Each encrypted key is audited as `ca.key.encrypt`.
    pub async fn encrypt_key_files(
        &self,
        actor: Actor<'_>,
    ) -> Result<Vec<(String, KeyFileOutcome)>, CaAdminError> {
        self.keys.encryption_passphrase()?;
        let cas = self.store.list_cas().await?;
        let pending = self.store.list_pending_cas().await?;
        let owned = cas
            .iter()
            .map(|r| {
                (
                    &r.id,
                    &r.key_file,
                    KeyOwner::Certificate(&r.certificate_pem),
                )
            })
            .chain(
                pending
                    .iter()
                    .map(|r| (&r.id, &r.key_file, KeyOwner::Request(&r.csr_pem))),
            );
        let mut outcomes = Vec::new();
        for (id, key_file, owner) in owned {
            let encrypted = match KeyRef::parse(key_file) {
                Ok(KeyRef::Pkcs11(_)) => {
                    outcomes.push((id.clone(), KeyFileOutcome::InToken));
                    continue;
                }
                Ok(KeyRef::AwsKms(_)) => {
                    outcomes.push((id.clone(), KeyFileOutcome::InKms));
                    continue;
                }
                Ok(key) => self.keys.encrypt_at_rest(&key, owner).await,
                Err(e) => Err(e),
            };
            let outcome = match encrypted {
                Ok(AtRest::Encrypted) => KeyFileOutcome::Encrypted,
                Ok(AtRest::AlreadyEncrypted) => KeyFileOutcome::AlreadyEncrypted,
                Err(e) => KeyFileOutcome::Failed(e.to_string()),
            };
            if let KeyFileOutcome::Encrypted = outcome {
                let detail = matches!(owner, KeyOwner::Request(_)).then_some("pending CA");
                self.audit("ca.key.encrypt", Some(id), true, detail, actor)
                    .await?;
            }
            outcomes.push((id.clone(), outcome));
        }
        Ok(outcomes)
    }

    /// A stored CA with its key. The key store gives the signer; the CA core checks it
    /// against the certificate.
    ///
    /// Loading signs a probe with the key (the CA core's self-check), so a token that cannot
    /// sign stops startup here, with a message naming the CA and the setting to fix.
    async fn load(&self, record: &CaRecord) -> Result<CertificateAuthority, CaAdminError> {
        let in_ca = |e: KeyError| CaAdminError::from(e).for_ca(&record.id);
        let key = KeyRef::parse(&record.key_file).map_err(in_ca)?;
        let signer = self.keys.signer(&key).await.map_err(in_ca)?;
        let certificate_pem = record.certificate_pem.clone();
        let loaded = keys::off_reactor_if(signer.is_remote(), move || {
            CertificateAuthority::from_signer(&certificate_pem, signer)
        })
        .await;
        loaded
            .and_then(|ca| ca.with_stored_chain(&record.chain_pem))
            .map_err(|e| CaAdminError::from(e).for_ca(&record.id))
    }

    /// Records a CA generated here with a new key file (`ca.create`), or the refusal.
    async fn persist_generated(
        &self,
        generated: Result<(CertificateAuthority, SecretKey), CaError>,
        activate: bool,
        actor: Actor<'_>,
    ) -> Result<(CaRecord, CertificateAuthority), CaAdminError> {
        let (ca, key) = self.audited(generated, "ca.create", None, actor).await?;
        self.persist(
            ca,
            NewKey::Secret(key),
            "generated",
            activate,
            "ca.create",
            actor,
        )
        .await
    }

    async fn persist(
        &self,
        ca: CertificateAuthority,
        key: NewKey,
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
        let new_key_kind = match &key {
            NewKey::Pending(_) => KeyKind::Pending,
            _ => KeyKind::New,
        };
        let key = match key {
            NewKey::Secret(secret) => self.keys.create(ca.id(), secret).await?,
            NewKey::Stored(key) | NewKey::Pending(key) => key,
        };
        let keep = matches!(new_key_kind, KeyKind::Pending);
        let record = CaRecord {
            id: ca.id().to_owned(),
            subject: ca.subject().to_owned(),
            key_algorithm: ca.key_algorithm().to_owned(),
            certificate_pem: ca.certificate_pem().to_owned(),
            chain_pem: ca.chain_pem().to_owned(),
            aws_certificate_id: ca.aws_certificate_id(),
            key_file: key.to_record(),
            source: source.to_owned(),
            is_issuing,
            not_before: Timestamp::new(ca.not_before()),
            not_after: Timestamp::new(ca.not_after()),
            created_at: Timestamp::now(),
        };
        match self.store.insert_ca(&record).await {
            Ok(true) => {}
            Ok(false) => {
                if !keep {
                    self.keys.discard(&key);
                }
                return Err(CaAdminError::AlreadyExists(record.id));
            }
            Err(e) => {
                if !keep {
                    self.keys.discard(&key);
                }
                return Err(e.into());
            }
        }
        let chain_length = pem::parse_many(&record.chain_pem).map_or(0, |c| c.len());
        let detail = format!(
            "subject={}; key={}; issuing={}; key_uri={}; chain={chain_length}",
            record.subject, record.key_algorithm, record.is_issuing, key
        );
        self.audit(action, Some(&record.id), true, Some(&detail), actor)
            .await?;
        Ok((record, ca))
    }

    /// Records a refused create/import in the audit log (with the error's own words), then
    /// passes the result on.
    async fn audited<T, E>(
        &self,
        result: Result<T, E>,
        action: &str,
        target: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<T, CaAdminError>
    where
        E: std::fmt::Display,
        CaAdminError: From<E>,
    {
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
        actor
            .record(self.store, action, target, success, detail)
            .await
    }
}
