//! The certificate counters behind `GET /v1/stats` (migration 0025): `certificate_counts`, the
//! certificates of each UTC hour of issuance, CA, station, country and hour of expiry, with how
//! many of them are now superseded or revoked; and `revocation_counts`, the revocations of each
//! UTC hour, CA, station and country. `certificate_counts_daily` and `revocation_counts_daily`
//! (migration 0026) hold the same counts per UTC day (and day of expiry), so that a long range
//! reads a row per day and key instead of one per hour and key.
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

/// The changes to one level of the counters (hourly or daily).
#[derive(Debug, Default)]
struct LevelChanges {
    issued: BTreeMap<IssuedKey, IssuedDelta>,
    revoked: BTreeMap<RevokedKey, i64>,
}

/// A level of the counters: its tables and how a time maps to its bucket.
struct Level {
    certificates: &'static str,
    revocations: &'static str,
    bucket: fn(Timestamp) -> Timestamp,
}

static HOURLY: Level = Level {
    certificates: "certificate_counts",
    revocations: "revocation_counts",
    bucket: Timestamp::hour_start,
};

static DAILY: Level = Level {
    certificates: "certificate_counts_daily",
    revocations: "revocation_counts_daily",
    bucket: Timestamp::day_start,
};

/// What one transaction adds to the counters: the same changes at both levels.
#[derive(Debug, Default)]
pub(crate) struct CountChanges {
    hourly: LevelChanges,
    daily: LevelChanges,
}

impl LevelChanges {
    fn issued_entry(&mut self, level: &Level, c: &Counted) -> &mut IssuedDelta {
        self.issued
            .entry(IssuedKey {
                bucket: (level.bucket)(c.issued_at),
                ca_id: c.ca_id.clone(),
                station: c.station.clone(),
                country: c.country.clone().unwrap_or_default(),
                expires_bucket: (level.bucket)(c.not_after),
            })
            .or_default()
    }

    fn revoked(&mut self, level: &Level, r: &RevokedCounted, revoked_at: Timestamp) {
        let delta = self.issued_entry(level, &r.counted);
        delta.revoked += 1;
        if r.was_superseded {
            delta.superseded -= 1;
        }
        let c = &r.counted;
        *self
            .revoked
            .entry(RevokedKey {
                bucket: (level.bucket)(revoked_at),
                ca_id: c.ca_id.clone(),
                station: c.station.clone(),
                country: c.country.clone().unwrap_or_default(),
            })
            .or_default() += 1;
    }
}

impl CountChanges {
    fn levels(&mut self) -> [(&Level, &mut LevelChanges); 2] {
        [(&HOURLY, &mut self.hourly), (&DAILY, &mut self.daily)]
    }

    /// A new (active) certificate.
    pub fn issued(&mut self, c: &Counted) {
        for (level, changes) in self.levels() {
            changes.issued_entry(level, c).issued += 1;
        }
    }

    /// An active certificate became superseded.
    pub fn superseded(&mut self, c: &Counted) {
        for (level, changes) in self.levels() {
            changes.issued_entry(level, c).superseded += 1;
        }
    }

    /// An active or superseded certificate was revoked at `revoked_at`.
    pub fn revoked(&mut self, r: &RevokedCounted, revoked_at: Timestamp) {
        for (level, changes) in self.levels() {
            changes.revoked(level, r, revoked_at);
        }
    }

    /// The upserts that add these changes, with their binds: at most [`KEYS_PER_STATEMENT`]
    /// keys each, in key order, and always in the same table order (hourly certificates and
    /// revocations, then daily), so that two transactions lock counter rows in one order.
    pub(crate) fn statements(&self) -> Vec<(String, Vec<CountBind<'_>>)> {
        let mut out = Vec::new();
        self.hourly.statements(&HOURLY, &mut out);
        self.daily.statements(&DAILY, &mut out);
        out
    }
}

impl LevelChanges {
    fn statements<'a>(&'a self, level: &Level, out: &mut Vec<(String, Vec<CountBind<'a>>)>) {
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
                    level.certificates,
                    "bucket, ca_id, station, country, expires_bucket, issued, superseded, revoked",
                    8,
                    chunk.len(),
                    "bucket, ca_id, station, country, expires_bucket",
                    &["issued", "superseded", "revoked"],
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
                    level.revocations,
                    "bucket, ca_id, station, country, count",
                    5,
                    chunk.len(),
                    "bucket, ca_id, station, country",
                    &["count"],
                ),
                binds,
            ));
        }
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

/// `INSERT INTO {table} ({column_names}) VALUES (..), .. ON CONFLICT ({key}) DO UPDATE SET`
/// each of `sums` to the stored value plus the new one.
fn upsert_sql(
    table: &str,
    column_names: &str,
    columns: usize,
    rows: usize,
    key: &str,
    sums: &[&str],
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
        "INSERT INTO {table} ({column_names}) VALUES {} ON CONFLICT ({key}) DO UPDATE SET {}",
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
    /// Recomputes the counters of both levels from the ledger, in one transaction: for a
    /// ledger written by other means than the service (a restore of an older backup by hand, a
    /// bulk load). The service keeps them exact itself. The daily counters are folded from the
    /// hourly ones just recounted (a day is a whole number of UTC hours), which reads ~35
    /// times fewer rows than the ledger.
    pub async fn recount_certificates(&self) -> StoreResult<()> {
        let truncate = |unit: &str, column: &str| match self {
            Store::Postgres(_) => {
                format!("date_trunc('{unit}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")
            }
            Store::Sqlite(_) if unit == "day" => {
                format!("substr({column}, 1, 10) || 'T00:00:00.000000Z'")
            }
            Store::Sqlite(_) => format!("substr({column}, 1, 13) || ':00:00.000000Z'"),
        };
        let hour = |column: &str| truncate("hour", column);
        let day = |column: &str| truncate("day", column);
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
        let daily_certificates = format!(
            "INSERT INTO certificate_counts_daily \
                 (bucket, ca_id, station, country, expires_bucket, issued, superseded, revoked) \
             SELECT {}, ca_id, station, country, {}, SUM(issued), SUM(superseded), SUM(revoked) \
             FROM certificate_counts GROUP BY 1, 2, 3, 4, 5",
            day("bucket"),
            day("expires_bucket")
        );
        let daily_revocations = format!(
            "INSERT INTO revocation_counts_daily (bucket, ca_id, station, country, count) \
             SELECT {}, ca_id, station, country, SUM(count) FROM revocation_counts \
             GROUP BY 1, 2, 3, 4",
            day("bucket")
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for sql in [
                "DELETE FROM certificate_counts",
                "DELETE FROM revocation_counts",
                "DELETE FROM certificate_counts_daily",
                "DELETE FROM revocation_counts_daily",
                certificates.as_str(),
                revocations.as_str(),
                daily_certificates.as_str(),
                daily_revocations.as_str(),
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn t(at: time::OffsetDateTime) -> Timestamp {
        Timestamp::new(at)
    }

    #[test]
    fn a_change_is_counted_in_its_hour_and_its_day_hourly_tables_first() {
        let counted = Counted {
            ca_id: "ca-1".into(),
            station: "line-1".into(),
            country: None,
            issued_at: t(datetime!(2026-11-28 10:15:30 UTC)),
            not_after: t(datetime!(2026-11-29 23:30 UTC)),
        };
        let mut changes = CountChanges::default();
        changes.issued(&counted);
        changes.revoked(
            &RevokedCounted {
                counted,
                was_superseded: false,
            },
            t(datetime!(2026-11-28 12:40 UTC)),
        );
        let statements = changes.statements();
        let tables: Vec<&str> = statements
            .iter()
            .map(|(sql, _)| sql.split_whitespace().nth(2).unwrap_or_default())
            .collect();
        assert_eq!(
            tables,
            [
                "certificate_counts",
                "revocation_counts",
                "certificate_counts_daily",
                "revocation_counts_daily"
            ]
        );
        let times: Vec<Vec<Timestamp>> = statements
            .iter()
            .map(|(_, binds)| {
                binds
                    .iter()
                    .filter_map(|b| match b {
                        CountBind::Time(at) => Some(*at),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            times,
            [
                vec![
                    t(datetime!(2026-11-28 10:00 UTC)),
                    t(datetime!(2026-11-29 23:00 UTC))
                ],
                vec![t(datetime!(2026-11-28 12:00 UTC))],
                vec![
                    t(datetime!(2026-11-28 00:00 UTC)),
                    t(datetime!(2026-11-29 00:00 UTC))
                ],
                vec![t(datetime!(2026-11-28 00:00 UTC))],
            ]
        );
        // Issued once and revoked once, in one key per level.
        let counts: Vec<i64> = statements[2]
            .1
            .iter()
            .filter_map(|b| match b {
                CountBind::Int(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(counts, [1, 0, 1]);
    }
}
