//! `ca_crls`: each CA's stored CRL, the generation of its revocations that the CRL covers, and
//! its cRLNumber counter. Revocations bump the generation in their own transaction
//! ([`bump_revocation_generation`]); the CRL publisher (`services::crl`) signs a new CRL when the
//! stored one is behind or near its nextUpdate, and everyone else reads the stored bytes.

use sqlx::FromRow;

use super::*;

/// The stored CRLs of a CA and whether revocations happened since they were built.
#[derive(Debug, Clone)]
pub struct CrlState {
    /// Bumped by every revocation of a certificate of this CA.
    pub revocation_generation: i64,
    /// The last complete CRL stored, if any was built.
    pub crl: Option<StoredCrl>,
    /// The complete CRL delta CRLs build on: its number and thisUpdate.
    pub base: Option<(u64, Timestamp)>,
    /// The last delta CRL stored; its `base_number` names the base it is on.
    pub delta: Option<StoredCrl>,
}

/// A signed CRL as stored.
#[derive(Debug, Clone)]
pub struct StoredCrl {
    pub der: Vec<u8>,
    pub number: u64,
    /// The revocation generation the CRL was built from: it lists at least every revocation up
    /// to that generation.
    pub built_generation: i64,
    pub this_update: Timestamp,
    pub next_update: Timestamp,
    pub revoked_count: i64,
    /// For a delta CRL, the number of the complete CRL it is on; `None` for a complete CRL.
    pub base_number: Option<u64>,
}

#[derive(FromRow)]
struct CrlRow {
    revocation_generation: i64,
    crl_der: Option<Vec<u8>>,
    crl_number: Option<i64>,
    built_generation: Option<i64>,
    this_update: Option<Timestamp>,
    next_update: Option<Timestamp>,
    revoked_count: Option<i64>,
    base_number: Option<i64>,
    base_this_update: Option<Timestamp>,
    delta_der: Option<Vec<u8>>,
    delta_number: Option<i64>,
    delta_base_number: Option<i64>,
    delta_built_generation: Option<i64>,
    delta_this_update: Option<Timestamp>,
    delta_next_update: Option<Timestamp>,
}

fn number(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Marks the CRLs of the CAs of the certificates `revoked_sql` selects as behind, in the
/// caller's transaction. `revoked_sql` is a `SELECT ca_id FROM issued_certificates WHERE ...`
/// using the caller's binds.
pub(crate) fn bump_revocation_generation_sql(revoked_ca_ids_sql: &str) -> String {
    // The WHERE inside `revoked_ca_ids_sql` also keeps SQLite from reading ON CONFLICT as part
    // of the SELECT (its documented parsing ambiguity of INSERT ... SELECT ... ON CONFLICT).
    format!(
        "INSERT INTO ca_crls (ca_id, revocation_generation) \
         SELECT DISTINCT ca_id, 1 FROM ({revoked_ca_ids_sql}) AS revoked WHERE true \
         ON CONFLICT (ca_id) DO UPDATE SET \
         revocation_generation = ca_crls.revocation_generation + 1"
    )
}

impl Store {
    /// The stored CRL state of `ca_id` with both stored CRLs; `None` when the CA has revoked
    /// nothing and no CRL was built yet. One primary-key read: this is what serving a CRL
    /// costs.
    pub async fn crl_state(&self, ca_id: &str) -> StoreResult<Option<CrlState>> {
        self.crl_state_with(ca_id, true, true).await
    }

    /// [`Store::crl_state`] that reads the bytes of only the CRL about to be served (the other
    /// one's `der` is empty): a large delta is not read to serve the complete CRL, nor the
    /// other way round.
    pub async fn crl_state_for(&self, ca_id: &str, delta: bool) -> StoreResult<Option<CrlState>> {
        self.crl_state_with(ca_id, !delta, delta).await
    }

    async fn crl_state_with(
        &self,
        ca_id: &str,
        complete_der: bool,
        delta_der: bool,
    ) -> StoreResult<Option<CrlState>> {
        // An empty blob (NULL stays NULL) stands for bytes not read.
        let column = |read: bool, name: &str| {
            if read {
                name.to_owned()
            } else {
                format!("substr({name}, 1, 0) AS {name}")
            }
        };
        let sql = format!(
            "SELECT revocation_generation, {}, crl_number, built_generation, this_update, \
             next_update, revoked_count, base_number, base_this_update, {}, delta_number, \
             delta_base_number, delta_built_generation, delta_this_update, delta_next_update \
             FROM ca_crls WHERE ca_id = $1",
            column(complete_der, "crl_der"),
            column(delta_der, "delta_der"),
        );
        let row: Option<CrlRow> = self.fetch_by_key(&sql, ca_id).await?;
        Ok(row.map(|row| {
            let crl = match (
                row.crl_der,
                row.crl_number,
                row.built_generation,
                row.this_update,
                row.next_update,
            ) {
                (Some(der), Some(n), Some(built), Some(this_update), Some(next_update)) => {
                    Some(StoredCrl {
                        der,
                        number: number(n),
                        built_generation: built,
                        this_update,
                        next_update,
                        revoked_count: row.revoked_count.unwrap_or(0),
                        base_number: None,
                    })
                }
                _ => None,
            };
            let delta = match (
                row.delta_der,
                row.delta_number,
                row.delta_built_generation,
                row.delta_this_update,
                row.delta_next_update,
                row.delta_base_number,
            ) {
                (
                    Some(der),
                    Some(n),
                    Some(built),
                    Some(this_update),
                    Some(next_update),
                    Some(b),
                ) => Some(StoredCrl {
                    der,
                    number: number(n),
                    built_generation: built,
                    this_update,
                    next_update,
                    revoked_count: 0,
                    base_number: Some(number(b)),
                }),
                _ => None,
            };
            CrlState {
                revocation_generation: row.revocation_generation,
                crl,
                base: row
                    .base_number
                    .zip(row.base_this_update)
                    .map(|(n, t)| (number(n), t)),
                delta,
            }
        }))
    }

    /// Hands out the next cRLNumber of `ca_id` and returns it with the CA's revocation
    /// generation at this moment. The first number is `first` (the caller passes the Unix time,
    /// so that numbers stay above the clock-based ones of earlier versions); every later one is
    /// one more than the last, whichever replica asks.
    pub async fn allocate_crl_number(&self, ca_id: &str, first: i64) -> StoreResult<(u64, i64)> {
        let (number, generation): (i64, i64) = on_pool!(self, |pool| {
            async {
                sqlx::query(
                    "INSERT INTO ca_crls (ca_id) VALUES ($1) ON CONFLICT (ca_id) DO NOTHING",
                )
                .bind(ca_id)
                .execute(pool)
                .await?;
                sqlx::query_as(
                    "UPDATE ca_crls SET last_crl_number = CASE WHEN last_crl_number = 0 THEN $2 \
                     ELSE last_crl_number + 1 END WHERE ca_id = $1 \
                     RETURNING last_crl_number, revocation_generation",
                )
                .bind(ca_id)
                .bind(first.max(1))
                .fetch_one(pool)
                .await
            }
            .await
        })?;
        Ok((u64::try_from(number).unwrap_or(0), generation))
    }

    /// Stores a complete CRL unless a CRL with a larger number is stored already (another
    /// replica built a newer one meanwhile), and with `as_base` makes it the base of delta
    /// CRLs. Returns whether it was stored.
    pub async fn save_crl(&self, ca_id: &str, crl: &StoredCrl, as_base: bool) -> StoreResult<bool> {
        let number = i64::try_from(crl.number).unwrap_or(i64::MAX);
        let sql = if as_base {
            "UPDATE ca_crls SET crl_der = $2, crl_number = $3, built_generation = $4, \
             this_update = $5, next_update = $6, revoked_count = $7, base_number = $3, \
             base_this_update = $5 WHERE ca_id = $1 AND (crl_number IS NULL OR crl_number < $3)"
        } else {
            "UPDATE ca_crls SET crl_der = $2, crl_number = $3, built_generation = $4, \
             this_update = $5, next_update = $6, revoked_count = $7 \
             WHERE ca_id = $1 AND (crl_number IS NULL OR crl_number < $3)"
        };
        let saved = on_pool!(self, |pool| sqlx::query(sql)
            .bind(ca_id)
            .bind(&crl.der)
            .bind(number)
            .bind(crl.built_generation)
            .bind(crl.this_update)
            .bind(crl.next_update)
            .bind(crl.revoked_count)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(saved == 1)
    }

    /// Stores a delta CRL unless a newer one is stored already. Returns whether it was stored.
    pub async fn save_delta_crl(&self, ca_id: &str, delta: &StoredCrl) -> StoreResult<bool> {
        let number = i64::try_from(delta.number).unwrap_or(i64::MAX);
        let base = delta
            .base_number
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let saved = on_pool!(self, |pool| {
            sqlx::query(
            "UPDATE ca_crls SET delta_der = $2, delta_number = $3, delta_built_generation = $4, \
             delta_this_update = $5, delta_next_update = $6, delta_base_number = $7 \
             WHERE ca_id = $1 AND (delta_number IS NULL OR delta_number < $3)"
        )
        .bind(ca_id)
        .bind(&delta.der)
        .bind(number)
        .bind(delta.built_generation)
        .bind(delta.this_update)
        .bind(delta.next_update)
        .bind(base)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
        })?;
        Ok(saved == 1)
    }

    /// CAs whose stored CRL is missing, behind their revocations, or whose nextUpdate is
    /// before `refresh_by`.
    pub async fn crls_due(&self, refresh_by: Timestamp) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT ca_id FROM ca_crls WHERE crl_der IS NULL \
             OR built_generation < revocation_generation OR next_update <= $1 ORDER BY ca_id"
        )
        .bind(refresh_by)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
