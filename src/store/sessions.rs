//! `dashboard_sessions`: dashboard sign-ins by the SHA-256 of their session id.

use super::{Role, Store, StoreResult, Timestamp};

impl Store {
    /// Stores a session of the live token with hash `token_sha256`; false when that token is
    /// not live (revoked between sign-in and now). Expired sessions are deleted first.
    pub async fn insert_session(
        &self,
        session_sha256: &str,
        token_sha256: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let inserted = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query(
                "INSERT INTO dashboard_sessions (session_sha256, token_id, created_at, expires_at) \
                 SELECT $1, id, $3, $4 FROM api_tokens \
                 WHERE token_sha256 = $2 AND revoked_at IS NULL",
            )
            .bind(session_sha256)
            .bind(token_sha256)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        })?;
        Ok(inserted == 1)
    }

    /// The name and role of the token behind an unexpired session whose token is still live.
    pub async fn find_session(
        &self,
        session_sha256: &str,
        now: Timestamp,
    ) -> StoreResult<Option<(String, Role)>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT t.name, t.role FROM dashboard_sessions s \
             JOIN api_tokens t ON t.id = s.token_id \
             WHERE s.session_sha256 = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL"
        )
        .bind(session_sha256)
        .bind(now)
        .fetch_optional(pool)
        .await)?)
    }

    /// Deletes a session; false when there was none.
    pub async fn delete_session(&self, session_sha256: &str) -> StoreResult<bool> {
        self.execute_by_key(
            "DELETE FROM dashboard_sessions WHERE session_sha256 = $1",
            session_sha256,
        )
        .await
    }
}
