//! The audit log's writing side: who did what, to what, with what outcome. Every admin action
//! (CLI or API) and every refusal of one is recorded through [`Actor::record`]; the store only
//! appends.

use crate::store::{AuditEntry, Store, StoreError};

/// Who acts, for the audit log: a token name (`cli` for the command line, `system:*` for the
/// service itself) and the request id when the action came over HTTP.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub request_id: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// The service acting on its own (`system:first-start`, `system:sync`, ...).
    pub const fn system(name: &'a str) -> Actor<'a> {
        Actor {
            name,
            request_id: None,
        }
    }

    /// Appends one audit record of `action` on `target` by this actor.
    pub async fn record(
        self,
        store: &Store,
        action: &str,
        target: Option<&str>,
        success: bool,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        store
            .append_audit(&AuditEntry {
                actor: self.name,
                action,
                target,
                success,
                detail,
                request_id: self.request_id,
            })
            .await
    }
}
