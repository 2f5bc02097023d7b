//! CA keys in AWS KMS, named `awskms:<key id, key ARN, alias name or alias ARN>`, through
//! `aws-sdk-kms`. The private key never leaves KMS: the service reads the public key with
//! `GetPublicKey` (the CA certificate's key) and asks KMS to `Sign`.
//!
//! Two key specs: `ECC_NIST_P256` (signed as `ECDSA_SHA_256`; KMS answers the DER
//! `ECDSA-Sig-Value` X.509 wants) and `RSA_2048` (`RSASSA_PKCS1_V1_5_SHA_256`, the
//! sha256WithRSAEncryption of file keys).
//!
//! What is sent: the SHA-256 digest of the to-be-signed bytes with `MessageType=DIGEST`, never
//! the bytes themselves. KMS accepts `RAW` messages of at most 4,096 bytes, which a CRL of a
//! few dozen revocations already exceeds; a digest is 32 bytes whatever is signed, and no
//! certificate or CRL content leaves the service. Every signature KMS returns is verified here
//! with the key's public key before it is used, so an endpoint that signs something else
//! (moto signs the digest as if it were the message: it ignores `MessageType`) is caught, at
//! the latest by the probe each key signs when it is opened.
//!
//! Region, endpoint (`aws.kms_endpoint_url`, else `aws.endpoint_url`), credentials (the
//! standard AWS chain, or `aws.role_arn`), attempts and the per-call timeout come from `[aws]`,
//! and work whether or not AWS IoT calls are enabled (`aws.enabled`).
//!
//! rcgen's `SigningKey::sign` is synchronous, and callers sign remote keys on the blocking
//! pool. The KMS calls themselves run on a small runtime of their own (two threads, made the
//! first time a KMS key is used): a blocked signing thread waits for its answer there, never
//! holding a reactor thread of the service's runtime, and the SDK's connections belong to a
//! runtime that lives as long as the process whatever runtime asked (the CLI's, the server's,
//! each test's).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use sha2::{Digest, Sha256};

use super::pkcs11::{TokenError, TokenFault};
use crate::ca::CaAlgorithm;
use crate::config::AwsSettings;

const SCHEME: &str = "awskms:";

/// A key in AWS KMS, as a CA record names it: `awskms:` and what KMS accepts as a `KeyId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KmsUri {
    /// A key id, a key ARN, an alias name (`alias/...`) or an alias ARN.
    pub key_id: String,
}

impl KmsUri {
    /// Parses `awskms:<key id or ARN>`. What KMS accepts as a `KeyId` is 1 to 2,048 printable
    /// characters without spaces; a URI that carries anything else (a query, a credential) is
    /// refused: credentials come from the AWS chain, never from a CA record.
    pub fn parse(text: &str) -> Result<KmsUri, String> {
        let key_id = text.strip_prefix(SCHEME).ok_or_else(|| {
            format!(
                "an AWS KMS key URI starts with {SCHEME}, as in \
                 awskms:arn:aws:kms:eu-west-1:111122223333:key/<key id>"
            )
        })?;
        if key_id.is_empty() {
            return Err(
                "the AWS KMS key URI names no key: write awskms:<key id, key ARN or \
                        alias/name>"
                    .into(),
            );
        }
        if key_id.len() > 2048 {
            return Err("the AWS KMS key id is longer than the 2,048 characters KMS allows".into());
        }
        if let Some(c) = key_id
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | ';' | '&'))
        {
            return Err(format!(
                "the AWS KMS key URI holds {c:?}: it names a key id, key ARN or alias and \
                 nothing else (credentials and region come from [aws])"
            ));
        }
        Ok(KmsUri {
            key_id: key_id.to_owned(),
        })
    }
}

impl fmt::Display for KmsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.key_id)
    }
}

/// The KMS calls' own runtime (see the module documentation). Never dropped: a runtime may
/// not be dropped from within another, and this one serves every key store of the process.
static KMS_RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aws-kms")
        .enable_all()
        .build()
        .expect("the AWS KMS client's runtime starts")
});

/// Runs `work` on the KMS runtime and waits for it from async code. The work is spawned at
/// once, so the caller's future holds a join handle, not the SDK's (deeply nested) futures.
fn on_kms_runtime<T: Send + 'static>(
    work: impl Future<Output = Result<T, TokenError>> + Send + 'static,
) -> impl Future<Output = Result<T, TokenError>> + Send {
    let task = KMS_RUNTIME.spawn(work);
    async move {
        task.await.unwrap_or_else(|e| {
            Err(TokenError {
                fault: TokenFault::Unavailable,
                message: format!("the AWS KMS task failed: {e}"),
            })
        })
    }
}

/// Runs `work` on the KMS runtime and blocks this thread (a blocking-pool thread) until it
/// is done.
fn block_on_kms_runtime<T: Send + 'static>(
    work: impl Future<Output = Result<T, TokenError>> + Send + 'static,
) -> Result<T, TokenError> {
    let (answer, wait) = std::sync::mpsc::sync_channel(1);
    KMS_RUNTIME.spawn(async move {
        let _ = answer.send(work.await);
    });
    wait.recv().unwrap_or_else(|_| {
        Err(TokenError {
            fault: TokenFault::Unavailable,
            message: "the AWS KMS task ended without an answer".into(),
        })
    })
}

/// The KMS client of one key store, and where it goes (for messages).
#[derive(Clone)]
pub struct KmsClient {
    client: Client,
    /// `aws.region`, and the endpoint with the setting that named it: messages say which
    /// setting to check.
    target: String,
}

impl fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsClient")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl KmsClient {
    /// The client `[aws]` describes: region, endpoint (`aws.kms_endpoint_url`, else
    /// `aws.endpoint_url`), attempts, per-call timeout, and the standard AWS credential chain
    /// or the role `aws.role_arn` names.
    pub async fn from_settings(settings: &AwsSettings) -> Result<KmsClient, TokenError> {
        let settings = settings.clone();
        on_kms_runtime(async move { Ok(Self::build(&settings).await) }).await
    }

    async fn build(settings: &AwsSettings) -> KmsClient {
        let endpoint = match (&settings.kms_endpoint_url, &settings.endpoint_url) {
            (Some(url), _) => Some((url, "aws.kms_endpoint_url")),
            (None, Some(url)) => Some((url, "aws.endpoint_url")),
            (None, None) => None,
        };
        let target = match endpoint {
            Some((url, setting)) => format!(
                "AWS KMS at {url} ({setting}), region {} (aws.region)",
                settings.region
            ),
            None => format!("AWS KMS in region {} (aws.region)", settings.region),
        };
        let config = crate::aws::sdk_config::load(
            settings,
            &settings.region,
            endpoint.map(|(url, _)| url.as_str()),
            settings.role_arn.as_deref(),
        )
        .await;
        let client = Client::new(&config);
        KmsClient { client, target }
    }
}

/// The kinds of KMS key a CA may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsKeyKind {
    EcP256,
    Rsa2048,
}

impl KmsKeyKind {
    fn describe(self) -> &'static str {
        match self {
            KmsKeyKind::EcP256 => "ECC_NIST_P256",
            KmsKeyKind::Rsa2048 => "RSA_2048",
        }
    }

    fn of_algorithm(algorithm: CaAlgorithm) -> Option<KmsKeyKind> {
        match algorithm {
            CaAlgorithm::EcdsaP256 => Some(KmsKeyKind::EcP256),
            CaAlgorithm::Rsa2048 => Some(KmsKeyKind::Rsa2048),
            _ => None,
        }
    }

    fn signing_algorithm(self) -> SigningAlgorithmSpec {
        match self {
            KmsKeyKind::EcP256 => SigningAlgorithmSpec::EcdsaSha256,
            KmsKeyKind::Rsa2048 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        }
    }

    fn rcgen_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KmsKeyKind::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KmsKeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    fn verification(self) -> &'static dyn sig::VerificationAlgorithm {
        match self {
            KmsKeyKind::EcP256 => &sig::ECDSA_P256_SHA256_ASN1,
            KmsKeyKind::Rsa2048 => &sig::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

/// A CA key in AWS KMS, as rcgen signs with it.
pub struct KmsKey {
    uri: KmsUri,
    client: KmsClient,
    kind: KmsKeyKind,
    /// What X.509 carries in subjectPublicKey: the uncompressed EC point, or RSAPublicKey DER.
    public_key: Vec<u8>,
}

impl fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKey")
            .field("uri", &self.uri.to_string())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What every key signs when it is opened, to prove it signs as AWS KMS does.
const PROBE: &[u8] = b"factory-ca AWS KMS key probe";

impl KmsKey {
    /// Reads the key's public key (`GetPublicKey`), checks that it is a signing key of a
    /// supported spec (and of `wanted`, when given), and signs a probe that must verify with
    /// it: a key that is disabled, pending deletion, denied to these credentials, or an
    /// endpoint that signs something else, is refused here with a message that says what to
    /// fix.
    pub async fn open(
        uri: &KmsUri,
        client: &KmsClient,
        wanted: Option<CaAlgorithm>,
    ) -> Result<KmsKey, TokenError> {
        if let Some(algorithm) = wanted
            && KmsKeyKind::of_algorithm(algorithm).is_none()
        {
            return Err(setup(format!(
                "a CA key in AWS KMS is ECC_NIST_P256 (ecdsa-p256) or RSA_2048 (rsa-2048), not \
                 {}; create the KMS key with one of those specs",
                algorithm.name()
            )));
        }
        let (uri, client) = (uri.clone(), client.clone());
        on_kms_runtime(async move {
            let key = Self::read_public_key(uri, client).await?;
            if let Some(wanted) = wanted.and_then(KmsKeyKind::of_algorithm)
                && wanted != key.kind
            {
                return Err(setup(format!(
                    "the AWS KMS key {} is {}, not the {} asked for; leave the algorithm out \
                     to use it, or name another key",
                    key.uri.key_id,
                    key.kind.describe(),
                    wanted.describe()
                )));
            }
            let signature = key.sign_async(PROBE).await?;
            key.verify(PROBE, &signature).map_err(|()| {
                setup(format!(
                    "{} signed a probe with the key {} that does not verify with the key's \
                     public key: the endpoint does not sign SHA-256 digests \
                     (MessageType=DIGEST) as AWS KMS does (moto signs the digest as if it were \
                     the message); point aws.kms_endpoint_url at AWS KMS or at an emulator that \
                     implements DIGEST",
                    key.client.target, key.uri.key_id
                ))
            })?;
            Ok(key)
        })
        .await
    }

    async fn read_public_key(uri: KmsUri, client: KmsClient) -> Result<KmsKey, TokenError> {
        let answer = client
            .client
            .get_public_key()
            .key_id(&uri.key_id)
            .send()
            .await
            .map_err(|e| classify(e, &uri, &client, "read the public key of"))?;
        if answer.key_usage() != Some(&KeyUsageType::SignVerify) {
            return Err(setup(format!(
                "the AWS KMS key {} is not a signing key (KeyUsage {}); a CA key is created \
                 with KeyUsage SIGN_VERIFY",
                uri.key_id,
                answer.key_usage().map_or("unknown", |u| u.as_str())
            )));
        }
        // KeySpec, or the CustomerMasterKeySpec it replaced (which moto still sends alone).
        #[allow(deprecated)]
        let spec = answer
            .key_spec()
            .map(KeySpec::as_str)
            .or(answer.customer_master_key_spec().map(|s| s.as_str()));
        let kind = match spec {
            Some("ECC_NIST_P256") => KmsKeyKind::EcP256,
            Some("RSA_2048") => KmsKeyKind::Rsa2048,
            other => {
                return Err(setup(format!(
                    "the AWS KMS key {} is {}; a CA key in AWS KMS is ECC_NIST_P256 or RSA_2048",
                    uri.key_id,
                    other.unwrap_or("of an unknown spec")
                )));
            }
        };
        if !answer
            .signing_algorithms()
            .contains(&kind.signing_algorithm())
        {
            return Err(setup(format!(
                "the AWS KMS key {} does not offer {}",
                uri.key_id,
                kind.signing_algorithm().as_str()
            )));
        }
        let spki = answer.public_key().map(Blob::as_ref).unwrap_or_default();
        let public_key = subject_public_key(spki, kind).ok_or_else(|| TokenError {
            fault: TokenFault::Unavailable,
            message: format!(
                "{} answered GetPublicKey for {} with a public key that is not a {} \
                     SubjectPublicKeyInfo",
                client.target,
                uri.key_id,
                kind.describe()
            ),
        })?;
        Ok(KmsKey {
            uri,
            client,
            kind,
            public_key,
        })
    }

    /// The URI, for messages and records.
    pub fn uri(&self) -> &KmsUri {
        &self.uri
    }

    /// The key's kind as the CA core names algorithms.
    pub fn algorithm(&self) -> CaAlgorithm {
        match self.kind {
            KmsKeyKind::EcP256 => CaAlgorithm::EcdsaP256,
            KmsKeyKind::Rsa2048 => CaAlgorithm::Rsa2048,
        }
    }

    /// One `Sign` call with the SHA-256 digest of `message`.
    async fn sign_async(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let digest = Sha256::digest(message);
        let answer = self
            .client
            .client
            .sign()
            .key_id(&self.uri.key_id)
            .message(Blob::new(digest.to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(self.kind.signing_algorithm())
            .send()
            .await
            .map_err(|e| classify(e, &self.uri, &self.client, "sign with"))?;
        answer
            .signature()
            .map(|s| s.as_ref().to_vec())
            .ok_or_else(|| TokenError {
                fault: TokenFault::Unavailable,
                message: format!(
                    "{} answered Sign for {} without a signature",
                    self.client.target, self.uri.key_id
                ),
            })
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), ()> {
        UnparsedPublicKey::new(self.kind.verification(), &self.public_key)
            .verify(message, signature)
            .map_err(|_| ())
    }

    /// Signs `message` (blocking: on the blocking pool) and checks the signature.
    fn try_sign(self: &Arc<Self>, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let key = Arc::clone(self);
        let owned = message.to_vec();
        let signature = block_on_kms_runtime(async move { key.sign_async(&owned).await })?;
        self.verify(message, &signature).map_err(|()| TokenError {
            fault: TokenFault::Unavailable,
            message: format!(
                "{} returned a signature for {} that does not verify with the key's public key",
                self.client.target, self.uri.key_id
            ),
        })?;
        Ok(signature)
    }
}

/// A [`KmsKey`] shared by every CA loaded from it (the key store keeps one per URI).
pub struct KmsSigner(pub Arc<KmsKey>);

impl SigningKey for KmsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.try_sign(message).map_err(|e| {
            // The detail is logged here, once: rcgen's error carries none.
            tracing::warn!(
                key = %self.0.uri,
                error = %e.message,
                "AWS KMS signing failed; KMS is asked again on the next request"
            );
            rcgen::Error::RemoteKeyError
        })
    }
}

impl PublicKeyData for KmsSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.0.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.kind.rcgen_algorithm()
    }
}

fn setup(message: String) -> TokenError {
    TokenError {
        fault: TokenFault::Setup,
        message,
    }
}

/// The subjectPublicKey of a SubjectPublicKeyInfo of the expected kind: a P-256 uncompressed
/// point, or an RSAPublicKey of 2,048 bits.
fn subject_public_key(spki: &[u8], kind: KmsKeyKind) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    use x509_parser::x509::SubjectPublicKeyInfo;

    let (rest, info) = SubjectPublicKeyInfo::from_der(spki).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let fits = match (info.parsed().ok()?, kind) {
        (PublicKey::EC(point), KmsKeyKind::EcP256) => {
            let p256 = x509_parser::oid_registry::OID_EC_P256;
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            curve.as_ref() == Some(&p256) && point.data().len() == 65 && point.data()[0] == 0x04
        }
        (PublicKey::RSA(rsa), KmsKeyKind::Rsa2048) => rsa.key_size() == 2048,
        _ => false,
    };
    fits.then(|| info.subject_public_key.data.to_vec())
}

/// Turns an SDK error into what the operator reads: the key, what was being done, KMS's error
/// code and message, and the setting or the KMS action that fixes it. The SDK's full error
/// chain goes to the debug log only.
fn classify<E>(
    error: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    uri: &KmsUri,
    client: &KmsClient,
    doing: &str,
) -> TokenError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    tracing::debug!(error = %DisplayErrorContext(&error), key = %uri, "AWS KMS call failed");
    let key = &uri.key_id;
    let target = &client.target;
    let said = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        (None, _) => String::new(),
    };
    let unavailable = |message: String| TokenError {
        fault: TokenFault::Unavailable,
        message,
    };
    match error.code() {
        Some("DisabledException") => unavailable(format!(
            "the AWS KMS key {key} is disabled ({said}); enable it (kms:EnableKey) to sign \
             with it again"
        )),
        Some("KMSInvalidStateException") => unavailable(format!(
            "the AWS KMS key {key} cannot sign in its current state ({said}); a key pending \
             deletion signs again once its deletion is cancelled (kms:CancelKeyDeletion) and it \
             is enabled"
        )),
        Some(
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException",
        ) => unavailable(format!(
            "{target} refused to let these credentials {doing} the key {key} ({said}); allow \
             kms:GetPublicKey and kms:Sign on it for the credentials of the standard AWS chain \
             (or the role aws.role_arn names)"
        )),
        Some("NotFoundException" | "InvalidArnException") => setup(format!(
            "{target} has no key {key} ({said}); check the key id or ARN in the key URI, and \
             aws.region"
        )),
        Some("InvalidKeyUsageException" | "UnsupportedOperationException") => setup(format!(
            "the AWS KMS key {key} cannot be used to sign ({said}); a CA key is an \
             asymmetric SIGN_VERIFY key, ECC_NIST_P256 or RSA_2048"
        )),
        Some("ValidationException") => setup(format!(
            "{target} refused to {doing} the key {key} ({said})"
        )),
        Some(_) => unavailable(format!("{target} could not {doing} the key {key} ({said})")),
        None => {
            let why = match &error {
                SdkError::TimeoutError(_) => "no answer within aws.operation_timeout_secs",
                SdkError::DispatchFailure(d) if d.is_timeout() => "connection timed out",
                SdkError::DispatchFailure(d) if d.is_io() => "connection failed",
                SdkError::DispatchFailure(_) => "the request could not be sent",
                SdkError::ConstructionFailure(_) => {
                    "the request could not be built (no credentials from the standard AWS \
                     chain?)"
                }
                _ => "an answer that is not AWS KMS's",
            };
            unavailable(format!(
                "{target} was not reached to {doing} the key {key} ({why}; the debug log has \
                 the details); check that setting and the network"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kms_uri_names_a_key_id_an_arn_or_an_alias_and_nothing_else() {
        for id in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/factory-line-3",
        ] {
            let uri = KmsUri::parse(&format!("awskms:{id}")).unwrap();
            assert_eq!(uri.key_id, id);
            assert_eq!(uri.to_string(), format!("awskms:{id}"));
        }
        let err = KmsUri::parse("awskms:").unwrap_err();
        assert!(err.contains("names no key"), "{err}");
        let err = KmsUri::parse("awskms:alias/x?secret=1").unwrap_err();
        assert!(err.contains("nothing else"), "{err}");
        let err = KmsUri::parse("pkcs11:token=a;object=b").unwrap_err();
        assert!(err.contains("starts with awskms:"), "{err}");
    }

    #[test]
    fn only_p256_points_and_2048_bit_rsa_keys_are_ca_keys() {
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = subject_public_key(&ec.subject_public_key_info(), KmsKeyKind::EcP256);
        assert_eq!(point.as_deref(), Some(ec.der_bytes()));
        assert!(subject_public_key(&ec.subject_public_key_info(), KmsKeyKind::Rsa2048).is_none());
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert!(subject_public_key(&p384.subject_public_key_info(), KmsKeyKind::EcP256).is_none());
        assert!(subject_public_key(b"\x30\x00", KmsKeyKind::EcP256).is_none());
    }
}
