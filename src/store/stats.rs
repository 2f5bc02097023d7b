//! Dashboard queries: issued, revoked and rejected counts over a time range, grouped; and the
//! durable rejection counters (`rejection_counts`, one row per UTC hour, station, code and CA).
//!
//! Each count is one aggregate statement over an index (see `migrations/*/0005_dashboards.sql`
//! and `docs/query-plans.md`); nothing is loaded row by row.

use std::collections::BTreeMap;

use super::{Bind, Store, StoreResult, Timestamp};

/// How `GET /v1/stats` groups its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGrouping {
    None,
    Day,
    Hour,
    Country,
    Station,
    Ca,
    Status,
}

impl StatsGrouping {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "day" => Self::Day,
            "hour" => Self::Hour,
            "country" => Self::Country,
            "station" => Self::Station,
            "ca" => Self::Ca,
            "status" => Self::Status,
            _ => return None,
        })
    }

    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Self::None => return None,
            Self::Day => "day",
            Self::Hour => "hour",
            Self::Country => "country",
            Self::Station => "station",
            Self::Ca => "ca",
            Self::Status => "status",
        })
    }

    /// Rejections are counted per hour, station, code and CA: they can be grouped by those,
    /// not by country or certificate status.
    pub fn groups_rejections(self) -> bool {
        !matches!(self, Self::Country | Self::Status)
    }
}

/// The counts of one group (or of the whole range).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub issued: u64,
    pub revoked: u64,
    pub rejected_by_code: BTreeMap<String, u64>,
}

impl Counts {
    pub fn rejected(&self) -> u64 {
        self.rejected_by_code.values().sum()
    }
}

/// The answer of [`Store::stats`]: totals, and counts per group key (`None`: a certificate
/// without country, or a rejection of an unauthenticated request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub totals: Counts,
    pub groups: BTreeMap<Option<String>, Counts>,
}

/// Refused requests to add to the durable counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RejectionKey {
    /// Start of the UTC hour.
    pub bucket: Timestamp,
    /// `""` when the request was not authenticated.
    pub station: String,
    pub code: String,
    pub ca_id: String,
}

/// Which column a certificate count is bucketed on.
#[derive(Clone, Copy)]
enum TimeColumn {
    IssuedAt,
    RevokedAt,
    Bucket,
}

impl Store {
    /// Counts over `[from, to)`: certificates issued in the range, certificates revoked in the
    /// range, and refused signing requests in the hours that start in
    /// `[floor_hour(from), to)`. `now` decides which certificates count as expired.
    pub async fn stats(
        &self,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
    ) -> StoreResult<Stats> {
        let started = std::time::Instant::now();
        let pg = matches!(self, Store::Postgres(_));
        let mut stats = Stats::default();

        let [issued_sql, revoked_sql, rejected_sql] = statements(pg, grouping);
        let sql = issued_sql;
        let uses_now = grouping == StatsGrouping::Status;
        let rows: Vec<(Option<String>, i64)> = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(&sql).bind(from).bind(to);
            if uses_now {
                q = q.bind(now);
            }
            q.fetch_all(pool).await
        })?;
        for (key, n) in rows {
            stats.groups.entry(key).or_default().issued += n as u64;
            stats.totals.issued += n as u64;
        }

        let sql = revoked_sql;
        let rows: Vec<(Option<String>, i64)> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await)?;
        for (key, n) in rows {
            stats.groups.entry(key).or_default().revoked += n as u64;
            stats.totals.revoked += n as u64;
        }

        let sql = rejected_sql;
        let from_hour = from.hour_start();
        let rows: Vec<(Option<String>, String, i64)> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(from_hour)
            .bind(to)
            .fetch_all(pool)
            .await)?;
        for (key, code, n) in rows {
            if grouping.groups_rejections() {
                *stats
                    .groups
                    .entry(key)
                    .or_default()
                    .rejected_by_code
                    .entry(code.clone())
                    .or_default() += n as u64;
            }
            *stats.totals.rejected_by_code.entry(code).or_default() += n as u64;
        }
        super::observe_duration("stats", started);
        Ok(stats)
    }

    /// The plans of the three statements of [`Store::stats`], one line per plan node.
    pub async fn explain_stats(
        &self,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
    ) -> StoreResult<Vec<Vec<String>>> {
        let pg = matches!(self, Store::Postgres(_));
        let [issued, revoked, rejected] = statements(pg, grouping);
        let mut issued_binds = vec![Bind::Time(from), Bind::Time(to)];
        if grouping == StatsGrouping::Status {
            issued_binds.push(Bind::Time(now));
        }
        let from_hour = from.hour_start();
        Ok(vec![
            self.explain(&issued, &issued_binds).await?,
            self.explain(&revoked, &[Bind::Time(from), Bind::Time(to)])
                .await?,
            self.explain(&rejected, &[Bind::Time(from_hour), Bind::Time(to)])
                .await?,
        ])
    }

    /// Adds refused-request counts to the durable counters, in one transaction.
    pub async fn add_rejection_counts(&self, counts: &[(RejectionKey, u64)]) -> StoreResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        const SQL: &str = "INSERT INTO rejection_counts (bucket, station, code, ca_id, count) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (bucket, station, code, ca_id) \
             DO UPDATE SET count = rejection_counts.count + excluded.count";
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for (key, n) in counts {
                sqlx::query(SQL)
                    .bind(key.bucket)
                    .bind(&key.station)
                    .bind(&key.code)
                    .bind(&key.ca_id)
                    .bind(i64::try_from(*n).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }
}

/// The statements of [`Store::stats`]: issued, revoked and rejected counts per group key.
/// Binds: `$1`/`$2` the range (the rejected one from the start of `from`'s hour), `$3` now
/// (issued, grouped by status only).
fn statements(pg: bool, grouping: StatsGrouping) -> [String; 3] {
    let issued_key = key_expression(pg, grouping, TimeColumn::IssuedAt);
    let revoked_key = if grouping == StatsGrouping::Status {
        "'revoked'".to_owned()
    } else {
        key_expression(pg, grouping, TimeColumn::RevokedAt)
    };
    let rejected_key = if grouping.groups_rejections() {
        key_expression(pg, grouping, TimeColumn::Bucket)
    } else {
        "NULL".to_owned()
    };
    [
        format!(
            "SELECT {issued_key} AS k, COUNT(*) AS n FROM issued_certificates \
             WHERE issued_at >= $1 AND issued_at < $2 GROUP BY 1"
        ),
        format!(
            "SELECT {revoked_key} AS k, COUNT(*) AS n FROM issued_certificates \
             WHERE status = 'revoked' AND revoked_at >= $1 AND revoked_at < $2 GROUP BY 1"
        ),
        format!(
            "SELECT {rejected_key} AS k, code, CAST(SUM(count) AS BIGINT) AS n \
             FROM rejection_counts WHERE bucket >= $1 AND bucket < $2 GROUP BY 1, 2"
        ),
    ]
}

/// The SQL expression of a group key. Time keys are UTC text: `YYYY-MM-DD` for days,
/// `YYYY-MM-DDTHH:00Z` for hours (SQLite stores times as fixed-width RFC 3339 text, so a prefix
/// of it is the bucket).
fn key_expression(pg: bool, grouping: StatsGrouping, time: TimeColumn) -> String {
    let column = match time {
        TimeColumn::IssuedAt => "issued_at",
        TimeColumn::RevokedAt => "revoked_at",
        TimeColumn::Bucket => "bucket",
    };
    match (grouping, pg) {
        (StatsGrouping::None, _) => "NULL".to_owned(),
        (StatsGrouping::Day, true) => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        (StatsGrouping::Day, false) => format!("substr({column}, 1, 10)"),
        (StatsGrouping::Hour, true) => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24\":00Z\"')")
        }
        (StatsGrouping::Hour, false) => format!("substr({column}, 1, 13) || ':00Z'"),
        (StatsGrouping::Country, _) => "country".to_owned(),
        (StatsGrouping::Station, _) => match time {
            TimeColumn::Bucket => "NULLIF(station, '')".to_owned(),
            _ => "station".to_owned(),
        },
        (StatsGrouping::Ca, _) => "ca_id".to_owned(),
        (StatsGrouping::Status, _) => "CASE WHEN status = 'revoked' THEN 'revoked' \
             WHEN not_after <= $3 THEN 'expired' WHEN status = 'superseded' THEN 'superseded' \
             ELSE 'active' END"
            .to_owned(),
    }
}
