//! `api_tokens`: API tokens by the SHA-256 of their secret.

use sqlx::FromRow;

use super::{Role, Store, StoreResult, Timestamp, is_unique_violation};

#[derive(Debug, Clone, FromRow)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl Store {
    /// Stores a token hash. Returns false when a live token already has this name.
    pub async fn insert_token(
        &self,
        name: &str,
        role: &str,
        token_sha256: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let result = on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO api_tokens (name, role, token_sha256, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(name)
        .bind(role)
        .bind(token_sha256)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The live token with this hash, if any.
    pub async fn find_live_token(&self, token_sha256: &str) -> StoreResult<Option<TokenRecord>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, role, created_at, revoked_at FROM api_tokens \
             WHERE token_sha256 = $1 AND revoked_at IS NULL"
        )
        .bind(token_sha256)
        .fetch_optional(pool)
        .await)?)
    }

    /// Live tokens first, then revoked ones; never the hashes.
    pub async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, role, created_at, revoked_at FROM api_tokens \
             ORDER BY (revoked_at IS NOT NULL), name, created_at"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Revokes the live token with this name. Returns false when there is none.
    pub async fn revoke_token(&self, name: &str, now: Timestamp) -> StoreResult<bool> {
        let done = on_pool!(self, |pool| sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL"
        )
        .bind(name)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// True before the first token of any kind was ever created.
    pub async fn has_no_tokens(&self) -> StoreResult<bool> {
        let found: Option<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id FROM api_tokens LIMIT 1"
        )
        .fetch_optional(pool)
        .await)?;
        Ok(found.is_none())
    }
}
