//! Dashboard queries: issued, revoked and rejected counts over a time range, grouped; and the
//! durable rejection counters (`rejection_counts`, one row per UTC hour, station, code and CA).
//!
//! Certificates are counted from the daily certificate counters (`certificate_counts_daily`,
//! `revocation_counts_daily`) for the whole UTC days of a range, from the hourly ones
//! (`certificate_counts`, `revocation_counts`: [`super::certificate_counts`]) for the whole UTC
//! hours around those days, and from the ledger for the partial hours at its edges (or, when
//! that reads fewer rows, from the whole hour's counters less the ledger's rows in the rest
//! of the hour: the current hour up to now is its counters less the rows after now). Each count
//! is one aggregate statement over an index (see `migrations/*/0005_dashboards.sql`,
//! `0025_certificate_counts.sql`, `0026_certificate_counts_daily.sql` and
//! `docs/query-plans.md`); nothing is loaded row by row.

use std::collections::BTreeMap;

use super::{Bind, Store, StoreResult, Timestamp};

mod ranges;

use ranges::{DAY, HOUR, Level, Split, contiguous, count_as_whole_hour_less_rest, split};

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
    /// Every grouping, `None` first.
    pub const ALL: [StatsGrouping; 7] = [
        Self::None,
        Self::Day,
        Self::Hour,
        Self::Country,
        Self::Station,
        Self::Ca,
        Self::Status,
    ];

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

/// Where a count is read from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `issued_certificates`, by `issued_at`.
    Issued,
    /// `issued_certificates`, by `revoked_at`.
    Revoked,
    RejectionCounts,
    CertificateCounts,
    RevocationCounts,
}

/// Adds `n` to the count `field` of `key`'s group and to the totals; a zero adds no group.
fn add(stats: &mut Stats, key: Option<String>, n: i64, field: fn(&mut Counts) -> &mut u64) {
    let Ok(n) = u64::try_from(n) else { return };
    if n == 0 {
        return;
    }
    *field(stats.groups.entry(key).or_default()) += n;
    *field(&mut stats.totals) += n;
}

/// Takes `n` back from the count `field` of `key`'s group and from the totals (see
/// [`Store::stats`]: a partial hour counted as its whole hour less the rest of it).
fn subtract(stats: &mut Stats, key: Option<String>, n: i64, field: fn(&mut Counts) -> &mut u64) {
    let Ok(n) = u64::try_from(n) else { return };
    if let Some(group) = stats.groups.get_mut(&key) {
        let count = field(group);
        *count = count.saturating_sub(n);
    }
    let total = field(&mut stats.totals);
    *total = total.saturating_sub(n);
}

/// How [`Store::apply_rows`] applies the counts it reads: [`add`] or [`subtract`].
type Apply = fn(&mut Stats, Option<String>, i64, fn(&mut Counts) -> &mut u64);

fn issued(c: &mut Counts) -> &mut u64 {
    &mut c.issued
}

fn revoked(c: &mut Counts) -> &mut u64 {
    &mut c.revoked
}

/// A row of [`status_statement`]: whether the certificates expire before the current bucket
/// (`expired`), after it (`live`) or in it (`now`, with their issuance bucket), and their
/// issued, superseded and revoked counts.
type StatusRow = (String, Option<Timestamp>, i64, i64, i64);

/// The counters of `level` grouped by status over whole buckets `[$1, $2)`, `$3` the start
/// of the current bucket; `expiring_within`: only the certificates whose expiry bucket is in
/// `[$4, $5)`.
fn status_statement(level: Level, expiring_within: bool) -> String {
    let (table, _) = level.tables();
    let within = if expiring_within {
        " AND expires_bucket >= $4 AND expires_bucket < $5"
    } else {
        ""
    };
    format!(
        "SELECT CASE WHEN expires_bucket < $3 THEN 'expired' \
         WHEN expires_bucket = $3 THEN 'now' ELSE 'live' END AS e, \
         CASE WHEN expires_bucket = $3 THEN bucket END AS b, CAST(SUM(issued) AS BIGINT) AS n, \
         CAST(SUM(superseded) AS BIGINT) AS s, CAST(SUM(revoked) AS BIGINT) AS r \
         FROM {table} WHERE bucket >= $1 AND bucket < $2{within} GROUP BY 1, 2"
    )
}

/// Adds [`StatusRow`]s to the statuses (the revoked ones only if `count_revoked`), and returns
/// the issuance buckets of the `now` rows that hold unrevoked certificates: whether those
/// have expired depends on more than their expiry bucket.
fn add_status_rows(stats: &mut Stats, rows: Vec<StatusRow>, count_revoked: bool) -> Vec<Timestamp> {
    let status = |s: &str| Some(s.to_owned());
    let mut expiring_now = Vec::new();
    for (expiry, bucket, n, superseded, revoked_n) in rows {
        if count_revoked {
            add(stats, status("revoked"), revoked_n, issued);
        }
        match (expiry.as_str(), bucket) {
            ("expired", _) => add(stats, status("expired"), n - revoked_n, issued),
            ("now", Some(bucket)) if n > revoked_n => expiring_now.push(bucket),
            ("now", _) => {}
            _ => {
                add(stats, status("superseded"), superseded, issued);
                add(stats, status("active"), n - superseded - revoked_n, issued);
            }
        }
    }
    expiring_now.sort();
    expiring_now
}

impl Store {
    /// Counts over `[from, to)`: certificates issued in the range, certificates revoked in the
    /// range, and refused signing requests in the hours that start in
    /// `[floor_hour(from), to)`. `now` decides which certificates count as expired.
    ///
    /// Whole days come from the daily counters (`certificate_counts_daily`,
    /// `revocation_counts_daily`; not when grouped by hour), the whole hours around them from
    /// the hourly counters (`certificate_counts`, `revocation_counts`), the partial hours at
    /// the edges from the ledger, or as their whole hour less the ledger's rows in the rest of
    /// it when that is shorter (up to `now`); the answer is the one
    /// [`Store::stats_from_ledger`] gives.
    pub async fn stats(
        &self,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
    ) -> StoreResult<Stats> {
        let started = std::time::Instant::now();
        let parts = split(from, to, grouping != StatsGrouping::Hour);
        let stats = self.count(parts, from, to, grouping, now).await?;
        super::observe_duration("stats", started);
        Ok(stats)
    }

    /// [`Store::stats`] aggregated from the ledger alone, row by row over its indexes: what
    /// the counters are checked against.
    pub async fn stats_from_ledger(
        &self,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
    ) -> StoreResult<Stats> {
        let whole = Split {
            ledger: vec![(from, to)],
            hours: Vec::new(),
            days: None,
        };
        self.count(whole, from, to, grouping, now).await
    }

    async fn count(
        &self,
        parts: Split,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
    ) -> StoreResult<Stats> {
        let mut stats = Stats::default();
        for (a, b) in parts.ledger {
            match count_as_whole_hour_less_rest(a, b, now) {
                Some((hour, end)) => {
                    self.add_counter_counts(&mut stats, Level::Hour, hour, end, grouping, now)
                        .await?;
                    for (x, y) in [(hour, a), (b, end)] {
                        if x < y {
                            self.add_ledger_counts(&mut stats, x, y, grouping, now, subtract)
                                .await?;
                        }
                    }
                }
                None => {
                    self.add_ledger_counts(&mut stats, a, b, grouping, now, add)
                        .await?;
                }
            }
        }
        for (a, b) in parts.hours {
            self.add_counter_counts(&mut stats, Level::Hour, a, b, grouping, now)
                .await?;
        }
        if let Some((a, b)) = parts.days {
            self.add_counter_counts(&mut stats, Level::Day, a, b, grouping, now)
                .await?;
        }
        // A group whose rows all fell in the part of an hour taken back is not in the range.
        stats.groups.retain(|_, c| c.issued > 0 || c.revoked > 0);

        let sql = rejected_statement(self.is_postgres(), grouping);
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
        Ok(stats)
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Adds (or, with `apply` [`subtract`], takes back) the certificates issued and revoked in
    /// `[from, to)`, counted in the ledger.
    async fn add_ledger_counts(
        &self,
        stats: &mut Stats,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
        apply: Apply,
    ) -> StoreResult<()> {
        let [issued_sql, revoked_sql] = ledger_statements(self.is_postgres(), grouping);
        let issued_binds: &[Timestamp] = if grouping == StatsGrouping::Status {
            &[from, to, now]
        } else {
            &[from, to]
        };
        self.apply_rows(stats, &issued_sql, issued_binds, issued, apply)
            .await?;
        self.apply_rows(stats, &revoked_sql, &[from, to], revoked, apply)
            .await
    }

    /// Adds the rows `(key, n)` that `sql` selects with `binds` to `field`.
    async fn add_rows(
        &self,
        stats: &mut Stats,
        sql: &str,
        binds: &[Timestamp],
        field: fn(&mut Counts) -> &mut u64,
    ) -> StoreResult<()> {
        self.apply_rows(stats, sql, binds, field, add).await
    }

    /// Applies (`add` or `subtract`) the rows `(key, n)` that `sql` selects with `binds` to
    /// `field`.
    async fn apply_rows(
        &self,
        stats: &mut Stats,
        sql: &str,
        binds: &[Timestamp],
        field: fn(&mut Counts) -> &mut u64,
        apply: Apply,
    ) -> StoreResult<()> {
        let rows: Vec<(Option<String>, i64)> = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(sql);
            for bind in binds {
                q = q.bind(*bind);
            }
            q.fetch_all(pool).await
        })?;
        for (key, n) in rows {
            apply(stats, key, n, field);
        }
        Ok(())
    }

    /// Adds the certificates issued and revoked in the whole buckets `[from, to)` of `level`,
    /// from its counters. Grouped by status, the certificates that expire in the current
    /// bucket are counted one level down: those of the current day in the hourly counters,
    /// those of the current hour in the ledger (the counters know expiry to their bucket only).
    async fn add_counter_counts(
        &self,
        stats: &mut Stats,
        level: Level,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
    ) -> StoreResult<()> {
        let pg = self.is_postgres();
        let [issued_sql, revoked_sql] = counter_statements(pg, grouping, level);
        self.add_rows(stats, &revoked_sql, &[from, to], revoked)
            .await?;
        if grouping != StatsGrouping::Status {
            return self.add_rows(stats, &issued_sql, &[from, to], issued).await;
        }
        let current = level.bucket(now);
        let rows = self
            .status_rows(&status_statement(level, false), &[from, to, current])
            .await?;
        let expiring_now = add_status_rows(stats, rows, true);
        match level {
            Level::Hour => self.add_expiring_this_hour(stats, &expiring_now, now).await,
            Level::Day => {
                // Issuance days with certificates that expire today: the hourly counters of
                // those days, only the certificates that expire today (their revocations are
                // counted already). Year 9999's last day ends at the last instant.
                let next = current
                    .checked_add(DAY)
                    .unwrap_or(Timestamp::new(Timestamp::MAX));
                let this_hour = now.hour_start();
                let sql = status_statement(Level::Hour, true);
                for (a, b) in contiguous(&expiring_now, DAY) {
                    let rows = self
                        .status_rows(&sql, &[a, b, this_hour, current, next])
                        .await?;
                    let hours = add_status_rows(stats, rows, false);
                    self.add_expiring_this_hour(stats, &hours, now).await?;
                }
                Ok(())
            }
        }
    }

    async fn status_rows(&self, sql: &str, binds: &[Timestamp]) -> StoreResult<Vec<StatusRow>> {
        Ok(on_pool!(self, |pool| {
            let mut q = sqlx::query_as(sql);
            for bind in binds {
                q = q.bind(*bind);
            }
            q.fetch_all(pool).await
        })?)
    }

    /// Adds, from the ledger, the unrevoked certificates issued in the issuance `hours` (sorted)
    /// that expire in the current hour, by their status at `now`.
    async fn add_expiring_this_hour(
        &self,
        stats: &mut Stats,
        hours: &[Timestamp],
        now: Timestamp,
    ) -> StoreResult<()> {
        let this_hour = now.hour_start();
        let Some(next_hour) = this_hour.checked_add(HOUR) else {
            // The last hour of year 9999: nothing can expire after it.
            return Ok(());
        };
        let sql = expiring_statement(self.is_postgres());
        for (a, b) in contiguous(hours, HOUR) {
            self.add_rows(stats, &sql, &[a, b, now, this_hour, next_hour], issued)
                .await?;
        }
        Ok(())
    }

    /// The plans of the statements [`Store::stats`] runs for this range, each with what it
    /// counts, one line per plan node.
    pub async fn explain_stats(
        &self,
        from: Timestamp,
        to: Timestamp,
        grouping: StatsGrouping,
        now: Timestamp,
    ) -> StoreResult<Vec<(String, Vec<String>)>> {
        let pg = self.is_postgres();
        let parts = split(from, to, grouping != StatsGrouping::Hour);
        let mut plans = Vec::new();
        let t = |v: &[Timestamp]| v.iter().map(|t| Bind::Time(*t)).collect::<Vec<_>>();
        if let Some(&(a, b)) = parts.ledger.first() {
            let [issued, revoked] = ledger_statements(pg, grouping);
            let mut issued_binds = vec![a, b];
            if grouping == StatsGrouping::Status {
                issued_binds.push(now);
            }
            plans.push(("issued, partial hour".to_owned(), issued, issued_binds));
            plans.push(("revoked, partial hour".to_owned(), revoked, vec![a, b]));
        }
        let this_hour = now.hour_start();
        let next_hour = this_hour.checked_add(HOUR).unwrap_or(this_hour);
        let levels = [
            (Level::Hour, "hours", parts.hours.first().copied()),
            (Level::Day, "days", parts.days),
        ];
        for (level, name, range) in levels {
            let Some((a, b)) = range else { continue };
            let [issued, revoked] = counter_statements(pg, grouping, level);
            if grouping != StatsGrouping::Status {
                plans.push((format!("issued, whole {name}"), issued, vec![a, b]));
                plans.push((format!("revoked, whole {name}"), revoked, vec![a, b]));
                continue;
            }
            let current = level.bucket(now);
            let next = current.checked_add(level.length()).unwrap_or(current);
            let first_end = a.checked_add(level.length()).unwrap_or(b);
            plans.push((
                format!("issued, whole {name}"),
                status_statement(level, false),
                vec![a, b, current],
            ));
            if level == Level::Day {
                plans.push((
                    "issued, expiring today".to_owned(),
                    status_statement(Level::Hour, true),
                    vec![a, first_end, this_hour, current, next],
                ));
            }
            plans.push((
                "issued, expiring this hour".to_owned(),
                expiring_statement(pg),
                vec![
                    a,
                    a.checked_add(HOUR).unwrap_or(b),
                    now,
                    this_hour,
                    next_hour,
                ],
            ));
            plans.push((format!("revoked, whole {name}"), revoked, vec![a, b]));
        }
        plans.push((
            "rejected".to_owned(),
            rejected_statement(pg, grouping),
            vec![from.hour_start(), to],
        ));
        let mut out = Vec::with_capacity(plans.len());
        for (what, sql, binds) in plans {
            out.push((what, self.explain(&sql, &t(&binds)).await?));
        }
        Ok(out)
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

/// The ledger's counts of issued and revoked certificates per group key in `[$1, $2)`; `$3`
/// now (issued, grouped by status only).
fn ledger_statements(pg: bool, grouping: StatsGrouping) -> [String; 2] {
    let issued_key = key_expression(pg, grouping, Source::Issued);
    let revoked_key = key_expression(pg, grouping, Source::Revoked);
    [
        format!(
            "SELECT {issued_key} AS k, COUNT(*) AS n FROM issued_certificates \
             WHERE issued_at >= $1 AND issued_at < $2 GROUP BY 1"
        ),
        format!(
            "SELECT {revoked_key} AS k, COUNT(*) AS n FROM issued_certificates \
             WHERE status = 'revoked' AND revoked_at >= $1 AND revoked_at < $2 GROUP BY 1"
        ),
    ]
}

/// The issued and revoked counts of `level`'s counters per group key in its whole buckets
/// `[$1, $2)` (issued: for every grouping but status, which reads [`status_statement`]).
fn counter_statements(pg: bool, grouping: StatsGrouping, level: Level) -> [String; 2] {
    let issued_key = key_expression(pg, grouping, Source::CertificateCounts);
    let revoked_key = key_expression(pg, grouping, Source::RevocationCounts);
    let (certificates, revocations) = level.tables();
    [
        format!(
            "SELECT {issued_key} AS k, CAST(SUM(issued) AS BIGINT) AS n \
             FROM {certificates} WHERE bucket >= $1 AND bucket < $2 GROUP BY 1"
        ),
        format!(
            "SELECT {revoked_key} AS k, CAST(SUM(count) AS BIGINT) AS n \
             FROM {revocations} WHERE bucket >= $1 AND bucket < $2 GROUP BY 1"
        ),
    ]
}

/// The ledger's unrevoked certificates issued in `[$1, $2)` that expire in the current hour
/// `[$4, $5)`, per status as of `$3` (now).
fn expiring_statement(pg: bool) -> String {
    let key = key_expression(pg, StatsGrouping::Status, Source::Issued);
    format!(
        "SELECT {key} AS k, COUNT(*) AS n FROM issued_certificates \
         WHERE issued_at >= $1 AND issued_at < $2 AND status <> 'revoked' \
         AND not_after >= $4 AND not_after < $5 GROUP BY 1"
    )
}

/// The rejection counters per group key and code, in the hours that start in `[$1, $2)`.
fn rejected_statement(pg: bool, grouping: StatsGrouping) -> String {
    let rejected_key = if grouping.groups_rejections() {
        key_expression(pg, grouping, Source::RejectionCounts)
    } else {
        "NULL".to_owned()
    };
    format!(
        "SELECT {rejected_key} AS k, code, CAST(SUM(count) AS BIGINT) AS n \
         FROM rejection_counts WHERE bucket >= $1 AND bucket < $2 GROUP BY 1, 2"
    )
}

/// The SQL expression of a group key. Time keys are UTC text: `YYYY-MM-DD` for days,
/// `YYYY-MM-DDTHH:00Z` for hours (SQLite stores times as fixed-width RFC 3339 text, so a prefix
/// of it is the bucket).
fn key_expression(pg: bool, grouping: StatsGrouping, source: Source) -> String {
    let column = match source {
        Source::Issued => "issued_at",
        Source::Revoked => "revoked_at",
        _ => "bucket",
    };
    // The counters store a missing country, and the rejection counters an unauthenticated
    // request's station, as ''.
    let nullable = |name: &str, empty_is_null: bool| {
        if empty_is_null {
            format!("NULLIF({name}, '')")
        } else {
            name.to_owned()
        }
    };
    let counter = matches!(source, Source::CertificateCounts | Source::RevocationCounts);
    match (grouping, pg) {
        (StatsGrouping::None, _) => "NULL".to_owned(),
        (StatsGrouping::Day, true) => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        (StatsGrouping::Day, false) => format!("substr({column}, 1, 10)"),
        (StatsGrouping::Hour, true) => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24\":00Z\"')")
        }
        (StatsGrouping::Hour, false) => format!("substr({column}, 1, 13) || ':00Z'"),
        (StatsGrouping::Country, _) => nullable("country", counter),
        (StatsGrouping::Station, _) => nullable("station", source == Source::RejectionCounts),
        (StatsGrouping::Ca, _) => "ca_id".to_owned(),
        (StatsGrouping::Status, _) if source != Source::Issued => "'revoked'".to_owned(),
        (StatsGrouping::Status, _) => "CASE WHEN status = 'revoked' THEN 'revoked' \
             WHEN not_after <= $3 THEN 'expired' WHEN status = 'superseded' THEN 'superseded' \
             ELSE 'active' END"
            .to_owned(),
    }
}
