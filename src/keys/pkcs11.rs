//! CA keys in a PKCS#11 token (an HSM; SoftHSM2 in the tests), through the `cryptoki` crate.
//! The private key never leaves the token: it is made there with `CKA_SENSITIVE` true and
//! `CKA_EXTRACTABLE` false (or an existing key pair is used), and the service only asks the
//! token to sign. The public key comes from the token's public key object.
//!
//! [`TokenKey`] is rcgen's `SigningKey` over one such key: ECDSA P-256/P-384 (`CKM_ECDSA` over
//! a digest computed here, its raw `r || s` turned into the DER `ECDSA-Sig-Value` X.509 wants,
//! RFC 5480 section 2.2 / RFC 3279 section 2.2.3) and RSA 2048 to 4096 bits
//! (`CKM_SHA256_RSA_PKCS`, the sha256WithRSAEncryption file keys use). Every call blocks on the
//! token: callers sign on the blocking pool.
//!
//! Sessions are reused: a small pool of logged-in sessions, each with its key's handle. A
//! session that fails is closed, never put back, and the signature is tried once on a new
//! session (which logs in again); when that fails too, the request fails, and the next one
//! tries the token again: a token that was unplugged or restarted is retried on the next
//! request.
//!
//! A module is loaded and `C_Initialize`d once per process and never finalized: PKCS#11 allows
//! one initialization per module per process, and several key stores (tests run many apps in one
//! process) share it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use sha2::{Digest, Sha256, Sha384};
use zeroize::Zeroizing;

use super::pkcs11_uri::Pkcs11Uri;
use crate::ca::CaAlgorithm;
use crate::ca::der_encode::{tlv, unsigned_integer};
use crate::config::Pkcs11Settings;

/// Logged-in sessions kept per key: enough for the signing threads of a small machine; more
/// are opened under load and closed when they come back to a full pool.
const MAX_IDLE_SESSIONS: usize = 4;

/// Why a token key cannot be used. `Setup` is a fault in what was asked or configured (module,
/// token, object, key type): nothing will change until someone fixes it. `Unavailable` is the
/// token failing now (login refused, device error, token removed): a later try may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFault {
    Setup,
    Unavailable,
}

/// A token error for one key; the message names the setting to fix, never a PIN.
#[derive(Debug)]
pub struct TokenError {
    pub fault: TokenFault,
    pub message: String,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl TokenError {
    fn setup(message: impl Into<String>) -> TokenError {
        TokenError {
            fault: TokenFault::Setup,
            message: message.into(),
        }
    }
    fn unavailable(message: impl Into<String>) -> TokenError {
        TokenError {
            fault: TokenFault::Unavailable,
            message: message.into(),
        }
    }
}

/// The `[pkcs11]` settings a key needs: the module, the PIN source, and whether a PIN file
/// others can read is only warned about (`ca.allow_insecure_key_permissions`).
#[derive(Debug, Clone, Default)]
pub struct TokenConfig {
    pub settings: Pkcs11Settings,
    pub allow_insecure_permissions: bool,
}

/// The kinds of key a CA may have in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKeyKind {
    EcP256,
    EcP384,
    Rsa { bits: usize },
}

impl TokenKeyKind {
    fn of_algorithm(algorithm: CaAlgorithm) -> TokenKeyKind {
        match algorithm {
            CaAlgorithm::EcdsaP256 => TokenKeyKind::EcP256,
            CaAlgorithm::EcdsaP384 => TokenKeyKind::EcP384,
            CaAlgorithm::Rsa2048 => TokenKeyKind::Rsa { bits: 2048 },
            CaAlgorithm::Rsa3072 => TokenKeyKind::Rsa { bits: 3072 },
            CaAlgorithm::Rsa4096 => TokenKeyKind::Rsa { bits: 4096 },
        }
    }

    fn describe(self) -> String {
        match self {
            TokenKeyKind::EcP256 => "ECDSA P-256".into(),
            TokenKeyKind::EcP384 => "ECDSA P-384".into(),
            TokenKeyKind::Rsa { bits } => format!("RSA {bits}"),
        }
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            TokenKeyKind::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            TokenKeyKind::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            TokenKeyKind::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// The byte length of a field element (and so of r and s) of an EC key.
    fn ec_field_len(self) -> Option<usize> {
        match self {
            TokenKeyKind::EcP256 => Some(32),
            TokenKeyKind::EcP384 => Some(48),
            TokenKeyKind::Rsa { .. } => None,
        }
    }
}

/// DER of the named-curve OIDs (`CKA_EC_PARAMS`): prime256v1 and secp384r1 (RFC 5480 2.1.1.1).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];

/// A CA key in a token, as rcgen signs with it.
pub struct TokenKey {
    uri: Pkcs11Uri,
    module: Pkcs11,
    config: TokenConfig,
    kind: TokenKeyKind,
    /// What X.509 carries in subjectPublicKey: the uncompressed EC point, or RSAPublicKey DER.
    public_key: Vec<u8>,
    idle: Mutex<Vec<(Session, ObjectHandle)>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("uri", &self.uri.to_string())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Opens an existing key pair: the private key and public key labelled `object` in the
    /// token labelled `token`. Blocks on the token.
    pub fn open(uri: &Pkcs11Uri, config: &TokenConfig) -> Result<TokenKey, TokenError> {
        let module = load_module(uri, config)?;
        let session = login(&module, uri, config, false)?;
        let private = find_key(&session, uri, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
            TokenError::setup(format!(
                "the token {:?} has no private key labelled {:?}; restore the key into the \
                 token (from the HSM's backup), or activate another CA",
                uri.token, uri.object
            ))
        })?;
        Self::from_private(uri, module, config, session, private)
    }

    /// Opens the key pair labelled `object`, or generates one of `algorithm` inside the token
    /// when there is none (`CKA_TOKEN`, `CKA_SENSITIVE` true, `CKA_EXTRACTABLE` false). An
    /// existing key of another type than `algorithm` asked for is refused; without
    /// `algorithm` any supported key is used, and `default` is what is generated.
    pub fn open_or_generate(
        uri: &Pkcs11Uri,
        config: &TokenConfig,
        algorithm: Option<CaAlgorithm>,
        default: CaAlgorithm,
    ) -> Result<(TokenKey, bool), TokenError> {
        let module = load_module(uri, config)?;
        let session = login(&module, uri, config, true)?;
        if let Some(private) = find_key(&session, uri, ObjectClass::PRIVATE_KEY)? {
            let key = Self::from_private(uri, module, config, session, private)?;
            if let Some(wanted) = algorithm.map(TokenKeyKind::of_algorithm)
                && wanted != key.kind
            {
                return Err(TokenError::setup(format!(
                    "the token {:?} already has a key labelled {:?}, of type {}, not the {} \
                     asked for; leave the algorithm out to use it, or name another object",
                    uri.token,
                    uri.object,
                    key.kind.describe(),
                    wanted.describe()
                )));
            }
            return Ok((key, false));
        }
        let kind = TokenKeyKind::of_algorithm(algorithm.unwrap_or(default));
        let private = generate(&session, uri, kind)?;
        Ok((
            Self::from_private(uri, module, config, session, private)?,
            true,
        ))
    }

    fn from_private(
        uri: &Pkcs11Uri,
        module: Pkcs11,
        config: &TokenConfig,
        session: Session,
        private: ObjectHandle,
    ) -> Result<TokenKey, TokenError> {
        let public = find_key(&session, uri, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| {
            TokenError::setup(format!(
                "the token {:?} has a private key labelled {:?} but no public key object with \
                 that label; the CA certificate needs the public key from the token",
                uri.token, uri.object
            ))
        })?;
        let (kind, public_key) = read_public_key(&session, uri, public)?;
        Ok(TokenKey {
            uri: uri.clone(),
            module,
            config: config.clone(),
            kind,
            public_key,
            idle: Mutex::new(vec![(session, private)]),
        })
    }

    /// The URI, for messages and records.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn idle(&self) -> MutexGuard<'_, Vec<(Session, ObjectHandle)>> {
        // A panic while holding the lock leaves a list of sessions, still consistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs on an idle session, or on a new one. A pooled session that fails (the token was
    /// restarted, the login was lost) is closed and the signature tried once more on a new
    /// session, so one stale session does not cost a request; a new session that fails is the
    /// token's failure.
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let pooled = self.idle().pop();
        if let Some((session, private)) = pooled {
            match self.sign_on(&session, private, message) {
                Ok(signature) => {
                    self.put_back(session, private);
                    return Ok(signature);
                }
                Err(e) => tracing::debug!(
                    key = %self.uri,
                    error = %e.message,
                    "a pooled PKCS#11 session failed; trying a new one"
                ),
            }
        }
        let session = login(&self.module, &self.uri, &self.config, false)?;
        let private =
            find_key(&session, &self.uri, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
                TokenError::unavailable(format!(
                    "the private key labelled {:?} is no longer in the token {:?}",
                    self.uri.object, self.uri.token
                ))
            })?;
        let signature = self.sign_on(&session, private, message)?;
        self.put_back(session, private);
        Ok(signature)
    }

    fn sign_on(
        &self,
        session: &Session,
        private: ObjectHandle,
        message: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        let signature = match self.kind {
            TokenKeyKind::EcP256 => {
                let digest = Sha256::digest(message);
                session.sign(&Mechanism::Ecdsa, private, &digest)
            }
            TokenKeyKind::EcP384 => {
                let digest = Sha384::digest(message);
                session.sign(&Mechanism::Ecdsa, private, &digest)
            }
            TokenKeyKind::Rsa { .. } => session.sign(&Mechanism::Sha256RsaPkcs, private, message),
        }
        .map_err(|e| TokenError::unavailable(format!("the token refused to sign: {e}")))?;
        match self.kind.ec_field_len() {
            Some(field_len) => ecdsa_raw_to_der(&signature, field_len)
                .map_err(|e| TokenError::unavailable(format!("the token's signature: {e}"))),
            None => Ok(signature),
        }
    }

    /// Keeps a session that signed for the next signature; past the pool's size it is closed.
    fn put_back(&self, session: Session, private: ObjectHandle) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push((session, private));
        }
    }
}

impl SigningKey for TokenKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.try_sign(message).map_err(|e| {
            // The detail is logged here, once: rcgen's error carries none.
            tracing::warn!(
                key = %self.uri,
                error = %e.message,
                "PKCS#11 signing failed; the token is tried again on the next request"
            );
            rcgen::Error::RemoteKeyError
        })
    }
}

impl PublicKeyData for TokenKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.kind.algorithm()
    }
}

/// A [`TokenKey`] shared by every CA loaded from it (the key store keeps one per URI).
pub struct TokenSigner(pub Arc<TokenKey>);

impl SigningKey for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(message)
    }
}

impl PublicKeyData for TokenSigner {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

/// Modules already loaded and initialized in this process, by path.
static MODULES: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> = LazyLock::new(Mutex::default);

fn load_module(uri: &Pkcs11Uri, config: &TokenConfig) -> Result<Pkcs11, TokenError> {
    let (path, setting) = match (&uri.module_path, &config.settings.module) {
        (Some(path), _) => (path.as_path(), "module-path in the key URI"),
        (None, Some(path)) => (path.as_path(), "pkcs11.module"),
        (None, None) => {
            return Err(TokenError::setup(
                "no PKCS#11 module is configured: set pkcs11.module (for example \
                 /usr/lib/softhsm/libsofthsm2.so) or module-path in the key URI",
            ));
        }
    };
    let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(module) = modules.get(path) {
        return Ok(module.clone());
    }
    let module = Pkcs11::new(path).map_err(|e| {
        TokenError::setup(format!(
            "the PKCS#11 module {} ({setting}) cannot be loaded: {e}",
            path.display()
        ))
    })?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(TokenError::setup(format!(
                "the PKCS#11 module {} ({setting}) failed to initialize: {e}",
                path.display()
            )));
        }
    }
    modules.insert(path.to_path_buf(), module.clone());
    Ok(module)
}

fn find_slot(module: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, TokenError> {
    let slots = module
        .get_slots_with_token()
        .map_err(|e| TokenError::unavailable(format!("the PKCS#11 module lists no slots: {e}")))?;
    let mut labels = Vec::new();
    for slot in slots {
        let Ok(info) = module.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end_matches([' ', '\0']);
        if label == uri.token {
            return Ok(slot);
        }
        labels.push(format!("{label:?}"));
    }
    Err(TokenError::setup(format!(
        "no token labelled {:?} is present (tokens: {}); fix token= in the key URI or check \
         pkcs11.module",
        uri.token,
        if labels.is_empty() {
            "none".to_owned()
        } else {
            labels.join(", ")
        }
    )))
}

/// Opens a session on the URI's token and logs the user in, with the PIN from the settings
/// when the token wants one.
fn login(
    module: &Pkcs11,
    uri: &Pkcs11Uri,
    config: &TokenConfig,
    read_write: bool,
) -> Result<Session, TokenError> {
    let slot = find_slot(module, uri)?;
    let login_required = module
        .get_token_info(slot)
        .map(|info| info.login_required())
        .unwrap_or(true);
    let opened = if read_write {
        module.open_rw_session(slot)
    } else {
        module.open_ro_session(slot)
    };
    let session = opened.map_err(|e| {
        TokenError::unavailable(format!(
            "cannot open a session on the token {:?}: {e}",
            uri.token
        ))
    })?;
    if !login_required {
        return Ok(session);
    }
    let (pin, source) = read_pin(config)?;
    let pin = AuthPin::from(pin.as_str());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(TokenError::unavailable(format!(
                "the token {:?} refused the user PIN from {source}; set it to the token's user \
                 PIN",
                uri.token
            )))
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::unavailable(format!(
            "the user PIN of the token {:?} is locked; unlock it with the token's SO PIN",
            uri.token
        ))),
        Err(e) => Err(TokenError::unavailable(format!(
            "cannot log in to the token {:?}: {e}",
            uri.token
        ))),
    }
}

/// The user PIN and where it came from (a setting name, never the value).
fn read_pin(config: &TokenConfig) -> Result<(Zeroizing<String>, String), TokenError> {
    let settings = &config.settings;
    if let Some(name) = &settings.pin_env {
        let source = format!("pkcs11.pin_env (the environment variable {name})");
        return match std::env::var(name) {
            Ok(pin) if !pin.is_empty() => Ok((Zeroizing::new(pin), source)),
            Ok(_) => Err(TokenError::setup(format!("{source} is empty"))),
            Err(_) => Err(TokenError::setup(format!(
                "{source} is not set; export it with the token's user PIN"
            ))),
        };
    }
    if let Some(path) = &settings.pin_file {
        let source = format!("pkcs11.pin_file ({})", path.display());
        let text = super::files::read_owner_only_key_file(
            path,
            "PKCS#11 PIN",
            "ca.allow_insecure_key_permissions",
            config.allow_insecure_permissions,
        )
        .map_err(|e| TokenError::setup(format!("{source}: {e}")))?;
        let text = Zeroizing::new(text);
        let pin = text.strip_suffix('\n').unwrap_or(&text);
        let pin = pin.strip_suffix('\r').unwrap_or(pin);
        if pin.is_empty() {
            return Err(TokenError::setup(format!("{source} is empty")));
        }
        return Ok((Zeroizing::new(pin.to_owned()), source));
    }
    Err(TokenError::setup(
        "the token needs a user PIN: set pkcs11.pin_env or pkcs11.pin_file",
    ))
}

fn find_key(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>, TokenError> {
    let template = [
        Attribute::Class(class),
        Attribute::Label(uri.object.as_bytes().to_vec()),
    ];
    let found = session.find_objects(&template).map_err(|e| {
        TokenError::unavailable(format!("cannot search the token {:?}: {e}", uri.token))
    })?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(TokenError::setup(format!(
            "the token {:?} has {} {class} objects labelled {:?}; a CA key label must name one \
             key pair",
            uri.token,
            found.len(),
            uri.object
        ))),
    }
}

fn generate(
    session: &Session,
    uri: &Pkcs11Uri,
    kind: TokenKeyKind,
) -> Result<ObjectHandle, TokenError> {
    let label = uri.object.as_bytes().to_vec();
    // CKA_ID pairs the two halves for tools such as pkcs11-tool.
    let id = rand::random::<[u8; 16]>().to_vec();
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label),
        Attribute::Id(id),
    ];
    let mechanism = match kind {
        TokenKeyKind::EcP256 | TokenKeyKind::EcP384 => {
            let params = if kind == TokenKeyKind::EcP256 {
                P256_PARAMS
            } else {
                P384_PARAMS
            };
            public.push(Attribute::EcParams(params.to_vec()));
            Mechanism::EccKeyPairGen
        }
        TokenKeyKind::Rsa { bits } => {
            public.push(Attribute::ModulusBits((bits as u64).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (_, private) = session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| {
            TokenError::unavailable(format!(
                "the token {:?} could not generate a {} key: {e}",
                uri.token,
                kind.describe()
            ))
        })?;
    Ok(private)
}

fn read_public_key(
    session: &Session,
    uri: &Pkcs11Uri,
    public: ObjectHandle,
) -> Result<(TokenKeyKind, Vec<u8>), TokenError> {
    let unreadable = |e: CkError| {
        TokenError::unavailable(format!(
            "cannot read the public key {:?} from the token {:?}: {e}",
            uri.object, uri.token
        ))
    };
    let unsupported = |what: String| {
        TokenError::setup(format!(
            "the key {:?} in the token {:?} is {what}; a CA key must be ECDSA P-256, ECDSA \
             P-384 or RSA 2048 to 4096 bits",
            uri.object, uri.token
        ))
    };
    let attributes = session
        .get_attributes(public, &[AttributeType::KeyType])
        .map_err(unreadable)?;
    let key_type = attributes.iter().find_map(|a| match a {
        Attribute::KeyType(t) => Some(*t),
        _ => None,
    });
    match key_type {
        Some(KeyType::EC) => {
            let attributes = session
                .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
                .map_err(unreadable)?;
            let mut params = None;
            let mut point = None;
            for attribute in attributes {
                match attribute {
                    Attribute::EcParams(p) => params = Some(p),
                    Attribute::EcPoint(p) => point = Some(p),
                    _ => {}
                }
            }
            let kind = match params.as_deref() {
                Some(P256_PARAMS) => TokenKeyKind::EcP256,
                Some(P384_PARAMS) => TokenKeyKind::EcP384,
                _ => return Err(unsupported("an EC key on another curve".into())),
            };
            let field_len = kind.ec_field_len().expect("an EC kind");
            let point = point
                .as_deref()
                .and_then(|p| uncompressed_point(p, field_len))
                .ok_or_else(|| {
                    TokenError::setup(format!(
                        "the public key {:?} in the token {:?} has no uncompressed EC point",
                        uri.object, uri.token
                    ))
                })?;
            Ok((kind, point))
        }
        Some(KeyType::RSA) => {
            let attributes = session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(unreadable)?;
            let mut modulus = None;
            let mut exponent = None;
            for attribute in attributes {
                match attribute {
                    Attribute::Modulus(m) => modulus = Some(m),
                    Attribute::PublicExponent(e) => exponent = Some(e),
                    _ => {}
                }
            }
            let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
                return Err(unreadable(CkError::InvalidValue));
            };
            let bits = unsigned_bits(&modulus);
            if !(2048..=4096).contains(&bits) {
                return Err(unsupported(format!("RSA {bits}")));
            }
            let mut body = unsigned_integer(&modulus);
            body.extend(unsigned_integer(&exponent));
            Ok((TokenKeyKind::Rsa { bits }, tlv(0x30, &body)))
        }
        Some(other) => Err(unsupported(format!("a {other} key"))),
        None => Err(unreadable(CkError::InvalidValue)),
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING holding the point (PKCS#11 2.40 section 2.3.3); some
/// modules give the bare point. Either way, the uncompressed point `04 || X || Y`.
fn uncompressed_point(value: &[u8], field_len: usize) -> Option<Vec<u8>> {
    let bare_len = 1 + 2 * field_len;
    if value.len() == bare_len && value[0] == 0x04 {
        return Some(value.to_vec());
    }
    let inner = match value {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => return None,
    };
    (inner.len() == bare_len && inner[0] == 0x04).then(|| inner.to_vec())
}

/// The DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` of a PKCS#11 `CKM_ECDSA`
/// signature, which is `r || s`, each exactly `field_len` big-endian bytes (PKCS#11 2.40
/// section 2.3.1).
pub fn ecdsa_raw_to_der(raw: &[u8], field_len: usize) -> Result<Vec<u8>, String> {
    if raw.len() != 2 * field_len {
        return Err(format!(
            "an ECDSA signature of {} bytes, expected {} (r || s)",
            raw.len(),
            2 * field_len
        ));
    }
    let (r, s) = raw.split_at(field_len);
    if r.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
        return Err("an ECDSA signature with r or s zero".into());
    }
    let mut body = unsigned_integer(r);
    body.extend(unsigned_integer(s));
    Ok(tlv(0x30, &body))
}

fn unsigned_bits(value: &[u8]) -> usize {
    match value.iter().position(|b| *b != 0) {
        Some(i) => (value.len() - i) * 8 - value[i].leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
#[path = "pkcs11_tests.rs"]
mod tests;
