//! API tokens, roles and principals.
//!
//! A token is `fca_` + 43 characters of base64url (32 random bytes). Only its SHA-256 is stored;
//! a presented token is hashed and looked up by hash, so the comparison of secrets happens on
//! digests through a unique index and never byte by byte on the secret itself. The secret is
//! shown once, when the token is created.
//!
//! [`TokenCache`] keeps recently seen live tokens for `server.token_cache_secs`, so a busy
//! station costs no token query per request. A revocation made through this process takes
//! effect at once; another replica (or the CLI, another process) honours it within the TTL.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::services::audit::Actor;
use crate::store::{Store, StoreError, Timestamp, TokenRecord};

pub use crate::store::Role;

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// A freshly generated secret: `prefix` and 43 characters of base64url (32 random bytes), the
/// form of API tokens (`fca_`) and dashboard session ids (`fcs_`). `Debug` never shows it.
pub struct RandomSecret(String);

impl RandomSecret {
    pub(crate) fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        RandomSecret(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RandomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RandomSecret([redacted])")
    }
}

/// The prefix of API tokens.
const TOKEN_PREFIX: &str = "fca_";

pub fn token_hash(secret: &str) -> String {
    crate::ca::lower_hex(&Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token names are 1 to 64 characters of a-z, A-Z, 0-9, '.', '_' and '-'")]
    InvalidName,
    #[error("a live token named {0:?} already exists; revoke it first or choose another name")]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Creates a token and returns its secret (to be shown once).
pub async fn create_token(
    store: &Store,
    name: &str,
    role: Role,
    actor: &str,
    request_id: Option<&str>,
) -> Result<RandomSecret, TokenError> {
    if !valid_token_name(name) {
        return Err(TokenError::InvalidName);
    }
    let secret = RandomSecret::generate(TOKEN_PREFIX);
    let created = store
        .insert_token(
            name,
            role.as_str(),
            &token_hash(secret.expose()),
            Timestamp::now(),
        )
        .await?;
    let detail = format!("role={}", role.as_str());
    Actor {
        name: actor,
        request_id,
    }
    .record(
        store,
        "token.create",
        Some(name),
        created,
        Some(if created { &detail } else { "name taken" }),
    )
    .await?;
    if created {
        Ok(secret)
    } else {
        Err(TokenError::NameTaken(name.to_owned()))
    }
}

/// The bootstrap rule, the only one: when a service starts on a store whose token table has
/// never held a token, it creates an admin token named `bootstrap-admin` and returns its secret
/// to be shown once. Not "when no admin token is live": an admin who revoked every admin token
/// recovers with `factory-ca token create` on the server, and a secret printed on every restart
/// would end up in log archives. The CLI refuses to create tokens in a store without a CA, so a
/// command run from the wrong directory cannot use up this first start.
pub async fn create_bootstrap_admin(store: &Store) -> Result<Option<RandomSecret>, TokenError> {
    if !store.has_no_tokens().await? {
        return Ok(None);
    }
    match create_token(
        store,
        "bootstrap-admin",
        Role::Admin,
        "system:first-start",
        None,
    )
    .await
    {
        Ok(secret) => Ok(Some(secret)),
        // Another replica starting at the same moment made it.
        Err(TokenError::NameTaken(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Revokes the live token `name`; false when there was none.
pub async fn revoke_token(
    store: &Store,
    name: &str,
    actor: &str,
    request_id: Option<&str>,
) -> Result<bool, StoreError> {
    let revoked = store.revoke_token(name, Timestamp::now()).await?;
    Actor {
        name: actor,
        request_id,
    }
    .record(
        store,
        "token.revoke",
        Some(name),
        revoked,
        (!revoked).then_some("no live token with this name"),
    )
    .await?;
    Ok(revoked)
}

/// Resolves a presented bearer token to its principal; `None` for unknown or revoked tokens.
/// Always asks the store; the API goes through [`TokenCache::authenticate`].
pub async fn authenticate(store: &Store, presented: &str) -> Result<Option<Principal>, StoreError> {
    // Cheap shape check first: anything that cannot be one of our tokens costs no query.
    if !has_token_shape(presented) {
        return Ok(None);
    }
    lookup(store, &token_hash(presented)).await
}

fn has_token_shape(presented: &str) -> bool {
    presented.starts_with(TOKEN_PREFIX) && presented.len() == 47
}

async fn lookup(store: &Store, hash: &str) -> Result<Option<Principal>, StoreError> {
    let record: Option<TokenRecord> = store.find_live_token(hash).await?;
    Ok(record.map(|r| Principal {
        name: r.name,
        role: r.role,
    }))
}

/// Live tokens seen in the last `ttl`, by SHA-256 of the secret (the secret itself is never
/// kept). Only tokens the store confirmed as live are cached, so unknown or random tokens
/// cannot grow it, and it holds at most [`TokenCache::CAPACITY`] entries in any case.
///
/// A revocation through [`TokenCache::revoke`] drops the token's entries at once, and a lookup
/// that raced with it (read the token as live just before the revocation committed) is not
/// cached: every revocation bumps a generation, and an entry is only stored when the generation
/// is the one seen before the lookup started.
pub struct TokenCache {
    ttl: Duration,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, (Principal, Instant)>,
    generation: u64,
}

impl TokenCache {
    /// More live tokens than a factory has stations; beyond it, lookups simply go uncached.
    pub const CAPACITY: usize = 4096;

    /// `ttl` zero disables caching: every request asks the store.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`authenticate`], answered from the cache when the token was seen live within the TTL.
    pub async fn authenticate(
        &self,
        store: &Store,
        presented: &str,
    ) -> Result<Option<Principal>, StoreError> {
        if !has_token_shape(presented) {
            return Ok(None);
        }
        if self.ttl.is_zero() {
            return authenticate(store, presented).await;
        }
        let hash = token_hash(presented);
        let generation = {
            let inner = self.lock();
            if let Some((principal, expires)) = inner.entries.get(&hash)
                && Instant::now() < *expires
            {
                return Ok(Some(principal.clone()));
            }
            inner.generation
        };
        let principal = lookup(store, &hash).await?;
        if let Some(principal) = &principal {
            let now = Instant::now();
            let mut inner = self.lock();
            if inner.generation == generation {
                if inner.entries.len() >= Self::CAPACITY {
                    inner.entries.retain(|_, (_, expires)| now < *expires);
                }
                if inner.entries.len() < Self::CAPACITY {
                    inner
                        .entries
                        .insert(hash, (principal.clone(), now + self.ttl));
                }
            }
        }
        Ok(principal)
    }

    /// Forgets every cached token named `name`, and keeps in-flight lookups from caching what
    /// they read before now.
    pub fn forget(&self, name: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner
            .entries
            .retain(|_, (principal, _)| principal.name != name);
    }

    /// [`revoke_token`], then [`TokenCache::forget`]: the token stops working in this process
    /// at once.
    pub async fn revoke(
        &self,
        store: &Store,
        name: &str,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let revoked = revoke_token(store, name, actor, request_id).await;
        // Also after a failure: the UPDATE may have committed before the error.
        self.forget(name);
        revoked
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_a_fixed_shape_differ_and_debug_hides_them() {
        for prefix in [TOKEN_PREFIX, "fcs_"] {
            let a = RandomSecret::generate(prefix);
            let b = RandomSecret::generate(prefix);
            assert_eq!(a.expose().len(), 47);
            assert!(a.expose().starts_with(prefix));
            assert_ne!(a.expose(), b.expose());
            assert!(!format!("{a:?}").contains(&a.expose()[4..]));
        }
        assert!(has_token_shape(
            RandomSecret::generate(TOKEN_PREFIX).expose()
        ));
    }

    /// A fresh SQLite store (in the returned directory) with the station token `line-1`.
    async fn store_with_station() -> (tempfile::TempDir, Store, RandomSecret) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite_store_in(dir.path()).await;
        let secret = create_token(&store, "line-1", Role::Station, "test", None)
            .await
            .unwrap();
        (dir, store, secret)
    }

    async fn accepted(cache: &TokenCache, store: &Store, secret: &str) -> bool {
        cache.authenticate(store, secret).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn the_cache_holds_only_live_tokens_and_forgets_revoked_ones() {
        let (_dir, store, secret) = store_with_station().await;
        let cache = TokenCache::new(Duration::from_secs(300));
        let principal = cache.authenticate(&store, secret.expose()).await.unwrap();
        assert_eq!(principal.unwrap().name, "line-1");
        assert_eq!(cache.len(), 1);

        // Well-formed but unknown tokens are looked up and refused, and never cached: random
        // tokens cannot grow the cache.
        for _ in 0..50 {
            let forged = RandomSecret::generate(TOKEN_PREFIX);
            assert!(!accepted(&cache, &store, forged.expose()).await);
        }
        assert_eq!(cache.len(), 1);

        // A revocation through the cache applies at once.
        assert!(cache.revoke(&store, "line-1", "test", None).await.unwrap());
        assert_eq!(cache.len(), 0);
        assert!(!accepted(&cache, &store, secret.expose()).await);
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing() {
        let (_dir, store, secret) = store_with_station().await;
        let cache = TokenCache::new(Duration::ZERO);
        assert!(accepted(&cache, &store, secret.expose()).await);
        assert_eq!(cache.len(), 0);
        // Revoked behind the cache's back (another replica): refused at once.
        revoke_token(&store, "line-1", "test", None).await.unwrap();
        assert!(!accepted(&cache, &store, secret.expose()).await);
    }

    #[test]
    fn token_names_are_restricted() {
        assert!(valid_token_name("line-3.station_07"));
        assert!(!valid_token_name(""));
        assert!(!valid_token_name("a b"));
        assert!(!valid_token_name(&"a".repeat(65)));
    }
}
