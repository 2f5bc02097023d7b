//! API tokens, roles and principals.
//!
//! A token is `fca_` + 43 characters of base64url (32 random bytes). Only its SHA-256 is stored;
//! a presented token is hashed and looked up by hash, so the comparison of secrets happens on
//! digests through a unique index and never byte by byte on the secret itself. The secret is
//! shown once, when the token is created.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{AuditEntry, Store, StoreError, Timestamp, TokenRecord};

/// What a token may do. `admin` may do everything a viewer may; only `station` and `admin`
/// may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Station,
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Station => "station",
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "station" => Some(Role::Station),
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// A freshly generated token secret. `Debug` never shows it.
pub struct TokenSecret(String);

impl TokenSecret {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        TokenSecret(format!("fca_{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret([redacted])")
    }
}

pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
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
) -> Result<TokenSecret, TokenError> {
    if !valid_token_name(name) {
        return Err(TokenError::InvalidName);
    }
    let secret = TokenSecret::generate();
    let created = store
        .insert_token(
            name,
            role.as_str(),
            &token_hash(secret.expose()),
            Timestamp::now(),
        )
        .await?;
    let detail = format!("role={}", role.as_str());
    store
        .append_audit(&AuditEntry {
            actor,
            action: "token.create",
            target: Some(name),
            success: created,
            detail: Some(if created { &detail } else { "name taken" }),
            request_id,
        })
        .await?;
    if created {
        Ok(secret)
    } else {
        Err(TokenError::NameTaken(name.to_owned()))
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
    store
        .append_audit(&AuditEntry {
            actor,
            action: "token.revoke",
            target: Some(name),
            success: revoked,
            detail: (!revoked).then_some("no live token with this name"),
            request_id,
        })
        .await?;
    Ok(revoked)
}

/// Resolves a presented bearer token to its principal; `None` for unknown or revoked tokens.
pub async fn authenticate(store: &Store, presented: &str) -> Result<Option<Principal>, StoreError> {
    // Cheap shape check first: anything that cannot be one of our tokens costs no query.
    if !presented.starts_with("fca_") || presented.len() != 47 {
        return Ok(None);
    }
    let record: Option<TokenRecord> = store.find_live_token(&token_hash(presented)).await?;
    Ok(record.and_then(|r| Role::parse(&r.role).map(|role| Principal { name: r.name, role })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_a_fixed_shape_and_differ() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert_eq!(a.expose().len(), 47);
        assert!(a.expose().starts_with("fca_"));
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(&a.expose()[4..]));
    }

    #[test]
    fn token_names_are_restricted() {
        assert!(valid_token_name("line-3.station_07"));
        assert!(!valid_token_name(""));
        assert!(!valid_token_name("a b"));
        assert!(!valid_token_name(&"a".repeat(65)));
    }
}
