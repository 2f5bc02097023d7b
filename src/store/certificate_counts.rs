//! The certificate counters behind `GET /v1/stats` (migration 0025): `certificate_counts`, the
//! certificates of each UTC hour of issuance, CA, station, country and hour of expiry, with how
//! many of them are now superseded or revoked; and `revocation_counts`, the revocations of each
//! UTC hour, CA, station and country.
//!
//! They are kept exact by the transactions that change a counted column of the ledger
//! (`issued_at`, `not_after`, `ca_id`, `station`, `country`, `status`, `revoked_at`): each
//! collects what it changed in a [`CountChanges`] and adds it with [`add_counts!`] before it
//! commits, one row per key in one statement. The keys go in sorted order and last in every
//! transaction, after the rows and chain heads it locks anyway, so that two writers never wait
//! for each other's counters in opposite orders.

use std::collections::BTreeMap;

use super::{Store, StoreResult, Timestamp};

/// Where a certificate is counted: the columns of its ledger row that the counters key on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Counted {
    pub ca_id: String,
    pub station: String,
    pub country: Option<String>,
    pub issued_at: Timestamp,
    pub not_after: Timestamp,
}

/// The columns a revocation reads back (`RETURNING`) to move a certificate between counters.
pub(crate) const REVOKED_RETURNING: &str =
    "ca_id, station, country, issued_at, not_after, superseded_at IS NOT NULL AS was_superseded";

/// A certificate that was just revoked, as [`REVOKED_RETURNING`] reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RevokedCounted {
    #[sqlx(flatten)]
    pub counted: Counted,
    /// Renewed before it was revoked: it leaves the superseded count, not the active one.
    pub was_superseded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct IssuedKey {
    bucket: Timestamp,
    ca_id: String,
    station: String,
    country: String,
    expires_bucket: Timestamp,
}

#[derive(Debug, Clone, Copy, Default)]
struct IssuedDelta {
    issued: i64,
    superseded: i64,
    revoked: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RevokedKey {
    bucket: Timestamp,
    ca_id: String,
    station: String,
    country: String,
}

/// What one transaction adds to the counters.
#[derive(Debug, Default)]
pub(crate) struct CountChanges {
    issued: BTreeMap<IssuedKey, IssuedDelta>,
    revoked: BTreeMap<RevokedKey, i64>,
}

impl CountChanges {
    fn issued_entry(&mut self, c: &Counted) -> &mut IssuedDelta {
        self.issued
            .entry(IssuedKey {
                bucket: c.issued_at.hour_start(),
                ca_id: c.ca_id.clone(),
                station: c.station.clone(),
                country: c.country.clone().unwrap_or_default(),
                expires_bucket: c.not_after.hour_start(),
            })
            .or_default()
    }

    /// A new (active) certificate.
    pub fn issued(&mut self, c: &Counted) {
        self.issued_entry(c).issued += 1;
    }

    /// An active certificate became superseded.
    pub fn superseded(&mut self, c: &Counted) {
        self.issued_entry(c).superseded += 1;
    }

    /// An active or superseded certificate was revoked at `revoked_at`.
    pub fn revoked(&mut self, r: &RevokedCounted, revoked_at: Timestamp) {
        let delta = self.issued_entry(&r.counted);
        delta.revoked += 1;
        if r.was_superseded {
            delta.superseded -= 1;
        }
        let c = &r.counted;
        *self
            .revoked
            .entry(RevokedKey {
                bucket: revoked_at.hour_start(),
                ca_id: c.ca_id.clone(),
                station: c.station.clone(),
                country: c.country.clone().unwrap_or_default(),
            })
            .or_default() += 1;
    }

    /// The upserts that add these changes, with their binds: at most [`KEYS_PER_STATEMENT`]
    /// keys each, in key order.
    pub(crate) fn statements(&self) -> Vec<(String, Vec<CountBind<'_>>)> {
        let mut out = Vec::new();
        let issued: Vec<_> = self.issued.iter().collect();
        for chunk in issued.chunks(KEYS_PER_STATEMENT) {
            let mut binds = Vec::with_capacity(chunk.len() * 8);
            for (key, delta) in chunk {
                binds.extend([
                    CountBind::Time(key.bucket),
                    CountBind::Text(&key.ca_id),
                    CountBind::Text(&key.station),
                    CountBind::Text(&key.country),
                    CountBind::Time(key.expires_bucket),
                    CountBind::Int(delta.issued),
                    CountBind::Int(delta.superseded),
                    CountBind::Int(delta.revoked),
                ]);
            }
            out.push((
                upsert_sql(
                    "certificate_counts (bucket, ca_id, station, country, expires_bucket, \
                     issued, superseded, revoked)",
                    8,
                    chunk.len(),
                    "bucket, ca_id, station, country, expires_bucket",
                    &["issued", "superseded", "revoked"],
                    "certificate_counts",
                ),
                binds,
            ));
        }
        let revoked: Vec<_> = self.revoked.iter().collect();
        for chunk in revoked.chunks(KEYS_PER_STATEMENT) {
            let mut binds = Vec::with_capacity(chunk.len() * 5);
            for (key, n) in chunk {
                binds.extend([
                    CountBind::Time(key.bucket),
                    CountBind::Text(&key.ca_id),
                    CountBind::Text(&key.station),
                    CountBind::Text(&key.country),
                    CountBind::Int(**n),
                ]);
            }
            out.push((
                upsert_sql(
                    "revocation_counts (bucket, ca_id, station, country, count)",
                    5,
                    chunk.len(),
                    "bucket, ca_id, station, country",
                    &["count"],
                    "revocation_counts",
                ),
                binds,
            ));
        }
        out
    }
}

/// Keys per upsert statement (8 binds each: well under SQLite's limit of bound parameters).
const KEYS_PER_STATEMENT: usize = 100;

/// A value bound to a counter upsert.
pub(crate) enum CountBind<'a> {
    Time(Timestamp),
    Text(&'a str),
    Int(i64),
}

/// `INSERT INTO {table_columns} VALUES (..), .. ON CONFLICT ({key}) DO UPDATE SET` each of
/// `sums` to the stored value plus the new one.
fn upsert_sql(
    table_columns: &str,
    columns: usize,
    rows: usize,
    key: &str,
    sums: &[&str],
    table: &str,
) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let set: Vec<String> = sums
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table_columns} VALUES {} ON CONFLICT ({key}) DO UPDATE SET {}",
        values.join(", "),
        set.join(", ")
    )
}

/// Adds `$changes` (a `&CountChanges`) to the counters inside the open transaction `$tx`.
/// Evaluates to `Result<(), sqlx::Error>`; type-checked per backend like [`on_pool!`].
macro_rules! add_counts {
    ($tx:expr, $changes:expr) => {{
        async {
            let changes: &$crate::store::certificate_counts::CountChanges = $changes;
            for (sql, binds) in changes.statements() {
                let mut query = sqlx::query(&sql);
                for bind in binds {
                    query = match bind {
                        $crate::store::certificate_counts::CountBind::Time(v) => query.bind(v),
                        $crate::store::certificate_counts::CountBind::Text(v) => query.bind(v),
                        $crate::store::certificate_counts::CountBind::Int(v) => query.bind(v),
                    };
                }
                query.execute(&mut *$tx).await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await
    }};
}

impl Store {
    /// Recomputes both counters from the ledger, in one transaction: for a ledger written by
    /// other means than the service (a restore of an older backup by hand, a bulk load). The
    /// service keeps them exact itself.
    pub async fn recount_certificates(&self) -> StoreResult<()> {
        let hour = |column: &str| match self {
            Store::Postgres(_) => {
                format!("date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")
            }
            Store::Sqlite(_) => format!("substr({column}, 1, 13) || ':00:00.000000Z'"),
        };
        let certificates = format!(
            "INSERT INTO certificate_counts \
                 (bucket, ca_id, station, country, expires_bucket, issued, superseded, revoked) \
             SELECT {}, ca_id, station, COALESCE(country, ''), {}, COUNT(*), \
                 SUM(CASE WHEN status = 'superseded' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN status = 'revoked' THEN 1 ELSE 0 END) \
             FROM issued_certificates GROUP BY 1, 2, 3, 4, 5",
            hour("issued_at"),
            hour("not_after")
        );
        let revocations = format!(
            "INSERT INTO revocation_counts (bucket, ca_id, station, country, count) \
             SELECT {}, ca_id, station, COALESCE(country, ''), COUNT(*) \
             FROM issued_certificates WHERE status = 'revoked' GROUP BY 1, 2, 3, 4",
            hour("revoked_at")
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for sql in [
                "DELETE FROM certificate_counts",
                "DELETE FROM revocation_counts",
                certificates.as_str(),
                revocations.as_str(),
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }
}
