//! `certificate_authorities`: the CAs we hold and which one issues.

use serde::Serialize;
use sqlx::FromRow;

use crate::ca::KeyAlgorithm;

use super::{Store, StoreResult, Timestamp, is_unique_violation, rfc3339};

/// A CA as the store knows it (the key lives in `key_file` under the data directory).
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct CaRecord {
    pub id: String,
    pub subject: String,
    pub key_algorithm: KeyAlgorithm,
    pub certificate_pem: String,
    /// The certificates above the CA up to and including its self-signed root (PEM, ordered
    /// from its issuer); empty for a root.
    pub chain_pem: String,
    pub aws_certificate_id: String,
    #[serde(skip)]
    pub key_file: String,
    pub source: String,
    pub is_issuing: bool,
    #[serde(with = "rfc3339")]
    pub not_before: Timestamp,
    #[serde(with = "rfc3339")]
    pub not_after: Timestamp,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
}

const CA_COLUMNS: &str = "id, subject, key_algorithm, certificate_pem, chain_pem, \
    aws_certificate_id, key_file, source, is_issuing, not_before, not_after, created_at";

impl Store {
    /// Inserts a CA; when `issuing`, it replaces the current issuing CA in the same
    /// transaction. Returns false when a CA with the same certificate already exists.
    pub async fn insert_ca(&self, ca: &CaRecord) -> StoreResult<bool> {
        let result: Result<(), sqlx::Error> = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                if ca.is_issuing {
                    sqlx::query(
                        "UPDATE certificate_authorities SET is_issuing = false WHERE is_issuing",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO certificate_authorities (id, subject, key_algorithm, \
                     certificate_pem, chain_pem, aws_certificate_id, key_file, source, \
                     is_issuing, not_before, not_after, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&ca.id)
                .bind(&ca.subject)
                .bind(ca.key_algorithm)
                .bind(&ca.certificate_pem)
                .bind(&ca.chain_pem)
                .bind(&ca.aws_certificate_id)
                .bind(&ca.key_file)
                .bind(&ca.source)
                .bind(ca.is_issuing)
                .bind(ca.not_before)
                .bind(ca.not_after)
                .bind(ca.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            .await
        });
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_cas(&self) -> StoreResult<Vec<CaRecord>> {
        let sql =
            format!("SELECT {CA_COLUMNS} FROM certificate_authorities ORDER BY created_at, id");
        self.fetch_rows(&sql).await
    }

    pub async fn get_ca(&self, id: &str) -> StoreResult<Option<CaRecord>> {
        let sql = format!("SELECT {CA_COLUMNS} FROM certificate_authorities WHERE id = $1");
        self.fetch_by_key(&sql, id).await
    }

    pub async fn issuing_ca(&self) -> StoreResult<Option<CaRecord>> {
        let sql = format!("SELECT {CA_COLUMNS} FROM certificate_authorities WHERE is_issuing");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .fetch_optional(pool)
            .await)?)
    }

    /// Makes `id` the issuing CA. Returns false when no such CA exists.
    pub async fn set_issuing_ca(&self, id: &str) -> StoreResult<bool> {
        Ok(on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE certificate_authorities SET is_issuing = false WHERE is_issuing AND id <> $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("UPDATE certificate_authorities SET is_issuing = true WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if done == 1 {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok::<bool, sqlx::Error>(done == 1)
            }
            .await
        })?)
    }
}

/// A CA waiting for its certificate (`ca create --csr-out`): its key exists, its CSR went to
/// an offline root. It signs nothing until `ca install` records it in `certificate_authorities`.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct PendingCaRecord {
    pub id: String,
    pub subject: String,
    pub key_algorithm: KeyAlgorithm,
    pub csr_pem: String,
    #[serde(skip)]
    pub key_file: String,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
}

const PENDING_COLUMNS: &str = "id, subject, key_algorithm, csr_pem, key_file, created_at";

impl Store {
    /// Records a pending CA. Returns false when one with the same id exists.
    pub async fn insert_pending_ca(&self, ca: &PendingCaRecord) -> StoreResult<bool> {
        let result: Result<_, sqlx::Error> = on_pool!(self, |pool| sqlx::query(
            "INSERT INTO pending_certificate_authorities (id, subject, key_algorithm, csr_pem, \
             key_file, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(&ca.id)
        .bind(&ca.subject)
        .bind(ca.key_algorithm)
        .bind(&ca.csr_pem)
        .bind(&ca.key_file)
        .bind(ca.created_at)
        .execute(pool)
        .await
        .map(|_| ()));
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_pending_ca(&self, id: &str) -> StoreResult<Option<PendingCaRecord>> {
        let sql =
            format!("SELECT {PENDING_COLUMNS} FROM pending_certificate_authorities WHERE id = $1");
        self.fetch_by_key(&sql, id).await
    }

    pub async fn list_pending_cas(&self) -> StoreResult<Vec<PendingCaRecord>> {
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM pending_certificate_authorities ORDER BY created_at, id"
        );
        self.fetch_rows(&sql).await
    }

    /// Forgets a pending CA once it is installed.
    pub async fn delete_pending_ca(&self, id: &str) -> StoreResult<()> {
        self.execute_by_key(
            "DELETE FROM pending_certificate_authorities WHERE id = $1",
            id,
        )
        .await?;
        Ok(())
    }
}
