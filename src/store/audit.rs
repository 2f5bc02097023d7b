//! `audit_log`: every admin action, appended, never changed.

use serde::Serialize;
use sqlx::FromRow;

use super::*;

#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub success: bool,
    pub detail: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub request_id: Option<String>,
}

/// Filters of `GET /v1/admin/audit`.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub before_id: Option<i64>,
}

impl Store {
    pub async fn append_audit(&self, entry: &AuditEntry<'_>) -> StoreResult<()> {
        on_pool!(self, |pool| {
            insert_audit!(pool, Timestamp::now(), entry)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Newest first; `before_id` continues a previous page.
    /// Newest first, narrowed by `filter`; `filter.before_id` continues a previous page.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut conditions = vec!["id < $1".to_owned()];
        let mut binds = Vec::new();
        let mut push = |column: &str, op: &str, bind: Bind| {
            binds.push(bind);
            conditions.push(format!("{column} {op} ${}", binds.len() + 1));
        };
        for (column, value) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("target", &filter.target),
            ("outcome", &filter.outcome),
        ] {
            if let Some(v) = value {
                push(column, "=", Bind::Text(v.clone()));
            }
        }
        if let Some(t) = filter.since {
            push("at", ">=", Bind::Time(t));
        }
        if let Some(t) = filter.until {
            push("at", "<", Bind::Time(t));
        }
        let sql = format!(
            "SELECT id, at, actor, action, target, outcome, detail, request_id FROM audit_log \
             WHERE {} ORDER BY id DESC LIMIT {limit}",
            conditions.join(" AND ")
        );
        Ok(on_pool!(self, |pool| {
            let query = bind_all!(
                sqlx::query_as(&sql).bind(filter.before_id.unwrap_or(i64::MAX)),
                &binds
            );
            query.fetch_all(pool).await
        })?)
    }
}
