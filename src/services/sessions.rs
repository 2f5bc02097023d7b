//! Dashboard sessions, kept on the server.
//!
//! Signing in with a viewer token makes a session: `fcs_` + 43 characters of base64url (32
//! random bytes), given to the browser once as its cookie. Only the SHA-256 of the id is
//! stored, with the token that signed in and an expiry, so the cookie is not the token: signing
//! out deletes the session and a copied cookie stops working at once, while the token itself
//! stays valid. A session also ends with its token (the lookup joins the live token) and after
//! [`SESSION_LIFETIME`].

use super::tokens::{Principal, RandomSecret, Role, token_hash};
use crate::store::{Store, StoreError, Timestamp};

/// A dashboard session lasts a shift: 8 hours.
pub const SESSION_LIFETIME: time::Duration = time::Duration::hours(8);

/// The prefix of session ids.
const SESSION_PREFIX: &str = "fcs_";

/// Whether `value` can be a session id (`fcs_` and 43 base64url characters): anything else
/// costs no query.
pub fn has_session_shape(value: &[u8]) -> bool {
    value.len() == 47
        && value.starts_with(SESSION_PREFIX.as_bytes())
        && value[4..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Starts a session for the live token `token` (already authenticated by the caller); `None`
/// when the token was revoked in between.
pub async fn start(
    store: &Store,
    token: &str,
    now: Timestamp,
) -> Result<Option<RandomSecret>, StoreError> {
    let secret = RandomSecret::generate(SESSION_PREFIX);
    let expires_at = now
        .checked_add(SESSION_LIFETIME)
        .unwrap_or(Timestamp::new(Timestamp::MAX));
    let stored = store
        .insert_session(
            &token_hash(secret.expose()),
            &token_hash(token),
            now,
            expires_at,
        )
        .await?;
    Ok(stored.then_some(secret))
}

/// The viewer behind a live session; `None` for an unknown, ended or expired session, or one
/// whose token was revoked or is not a viewer token.
pub async fn principal(
    store: &Store,
    session: &str,
    now: Timestamp,
) -> Result<Option<Principal>, StoreError> {
    if !has_session_shape(session.as_bytes()) {
        return Ok(None);
    }
    Ok(store
        .find_session(&token_hash(session), now)
        .await?
        .filter(|(_, role)| *role == Role::Viewer)
        .map(|(name, role)| Principal { name, role }))
}

/// Ends a session: returns who it belonged to when it was live.
pub async fn end(
    store: &Store,
    session: &str,
    now: Timestamp,
) -> Result<Option<Principal>, StoreError> {
    // `principal` answers `None` for an id of the wrong shape without a query; so does this.
    let who = principal(store, session, now).await?;
    if has_session_shape(session.as_bytes()) {
        store.delete_session(&token_hash(session)).await?;
    }
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::tokens::create_token;

    #[test]
    fn session_ids_have_their_own_shape() {
        let id = RandomSecret::generate(SESSION_PREFIX);
        assert!(has_session_shape(id.expose().as_bytes()));
        assert!(!has_session_shape(
            b"fca_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        ));
    }

    #[tokio::test]
    async fn a_session_ends_when_signed_out_expired_or_its_token_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite_store_in(dir.path()).await;
        let token = create_token(&store, "viewer-1", Role::Viewer, "test", None)
            .await
            .unwrap();
        let now = Timestamp::now();
        let session = start(&store, token.expose(), now).await.unwrap().unwrap();
        let id = session.expose();
        let who = principal(&store, id, now).await.unwrap().unwrap();
        assert_eq!((who.name.as_str(), who.role), ("viewer-1", Role::Viewer));
        // The token itself is not a session.
        assert!(
            principal(&store, token.expose(), now)
                .await
                .unwrap()
                .is_none()
        );

        // Expiry.
        let later = now.checked_add(SESSION_LIFETIME).unwrap();
        assert!(principal(&store, id, later).await.unwrap().is_none());

        // Sign-out: the id stops working, the token does not.
        assert_eq!(
            end(&store, id, now).await.unwrap().unwrap().name,
            "viewer-1"
        );
        assert!(principal(&store, id, now).await.unwrap().is_none());
        assert!(end(&store, id, now).await.unwrap().is_none());

        // Revoking the token ends its other sessions.
        let second = start(&store, token.expose(), now).await.unwrap().unwrap();
        crate::services::tokens::revoke_token(&store, "viewer-1", "test", None)
            .await
            .unwrap();
        assert!(
            principal(&store, second.expose(), now)
                .await
                .unwrap()
                .is_none()
        );
        assert!(start(&store, token.expose(), now).await.unwrap().is_none());
    }
}
