//! `GET /v1/stats`: issued, rejected and revoked counts over a time range, grouped, for
//! dashboards (viewer or admin).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::ApiQuery;
use crate::http::extract::{ViewerCaller, parse_optional_time};
use crate::http::route;
use crate::store::Timestamp;
use crate::store::stats::{Counts, StatsGrouping};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "ledger";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Start of the range (inclusive), RFC 3339; default `to` minus 7 days.
    from: Option<String>,
    /// End of the range (exclusive), RFC 3339; default now.
    to: Option<String>,
    /// `day`, `hour`, `country`, `station`, `ca` or `status`; none: totals only.
    group_by: Option<String>,
}

/// Counts of the whole range or of one group.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CountsView {
    pub issued: u64,
    pub rejected: u64,
    pub revoked: u64,
    pub rejected_by_code: BTreeMap<String, u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupView {
    /// The group: a UTC day `YYYY-MM-DD`, an hour `YYYY-MM-DDTHH:00Z`, a country code, a
    /// station, a CA id, or a status (`active`, `revoked`, `expired`); null for certificates
    /// without country and for refused requests that were not authenticated.
    pub key: Option<String>,
    #[serde(flatten)]
    pub counts: CountsView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub from: String,
    pub to: String,
    pub group_by: Option<&'static str>,
    /// True when `groups` holds every day or hour bucket of the range, zero-filled; false for
    /// other groupings and for `day` over more than 3,700 days, where only days with counts
    /// are listed.
    pub zero_filled: bool,
    pub totals: CountsView,
    pub groups: Vec<GroupView>,
}

/// Time buckets one answer may hold (a bit over 10 years of days, 93 days of hours).
const MAX_BUCKETS: i64 = 3_700;
const DEFAULT_RANGE: Duration = Duration::days(7);

#[route(
    get,
    path = "/v1/stats",
    operation_id = "get_stats",
    params(StatsParams),
    responses((status = 200, description = "Issued, rejected (by code) and revoked counts",
        body = StatsView))
)]
pub async fn stats(
    State(state): State<AppState>,
    _viewer: ViewerCaller,
    ApiQuery(params): ApiQuery<StatsParams>,
) -> Result<Json<StatsView>, ApiError> {
    let now = Timestamp::now();
    let to = parse_optional_time("to", params.to.as_deref())?.unwrap_or(now);
    let from = parse_optional_time("from", params.from.as_deref())?.unwrap_or_else(|| {
        to.checked_add(-DEFAULT_RANGE)
            .unwrap_or(Timestamp::new(Timestamp::MIN))
    });
    if from >= to {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "from must be earlier than to",
        ));
    }
    let grouping = match params.group_by.as_deref() {
        None => StatsGrouping::None,
        Some(g) => StatsGrouping::parse(g).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                "group_by must be one of day, hour, country, station, ca, status",
            )
        })?,
    };
    let mut buckets = time_buckets(grouping, from.get(), to.get());
    if let Some(b) = &buckets
        && b.len() as i64 > MAX_BUCKETS
    {
        if grouping != StatsGrouping::Day {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "the range holds more than {MAX_BUCKETS} hours (about 154 days); narrow \
                     from/to, or use group_by=day, which takes any range"
                ),
            ));
        }
        // A range too long to zero-fill (all time: from=1970-01-01T00:00:00Z) lists only the
        // days that have counts; their number is bounded by the service's age, not the range.
        buckets = None;
    }
    let zero_filled = buckets.is_some();

    // This replica's refusals of the last seconds are not in the store yet: add them first.
    if let Err(e) = state.rejections.flush(&state.store).await {
        tracing::warn!(error = %e, "could not flush rejection counts before a stats query");
    }
    let mut stats = state.reads.stats(from, to, grouping, now).await?;

    let groups = match buckets {
        // Every bucket of the range, in order, zero-filled.
        Some(buckets) => buckets
            .into_iter()
            .map(|key| {
                let counts = stats.groups.remove(&Some(key.clone())).unwrap_or_default();
                GroupView {
                    key: Some(key),
                    counts: counts_view(counts),
                }
            })
            .collect(),
        None if grouping == StatsGrouping::None => Vec::new(),
        // Days with counts only, oldest first (their keys sort as dates).
        None if grouping == StatsGrouping::Day => stats
            .groups
            .into_iter()
            .map(|(key, counts)| GroupView {
                key,
                counts: counts_view(counts),
            })
            .collect(),
        // The keys that occur, most issued first.
        None => {
            let mut groups: Vec<GroupView> = stats
                .groups
                .into_iter()
                .map(|(key, counts)| GroupView {
                    key,
                    counts: counts_view(counts),
                })
                .collect();
            groups.sort_by(|a, b| {
                b.counts
                    .issued
                    .cmp(&a.counts.issued)
                    .then_with(|| b.counts.rejected.cmp(&a.counts.rejected))
                    .then_with(|| a.key.cmp(&b.key))
            });
            groups
        }
    };
    Ok(Json(StatsView {
        from: from.rfc3339(),
        to: to.rfc3339(),
        group_by: grouping.as_str(),
        zero_filled,
        totals: counts_view(stats.totals),
        groups,
    }))
}

fn counts_view(c: Counts) -> CountsView {
    CountsView {
        issued: c.issued,
        rejected: c.rejected(),
        revoked: c.revoked,
        rejected_by_code: c.rejected_by_code,
    }
}

/// The keys of the day or hour buckets that `[from, to)` touches, in order; `None` for other
/// groupings. Stops counting past [`MAX_BUCKETS`] + 1.
fn time_buckets(
    grouping: StatsGrouping,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Option<Vec<String>> {
    let (step, format) = match grouping {
        StatsGrouping::Day => (
            Duration::days(1),
            time::macros::format_description!("[year]-[month]-[day]"),
        ),
        StatsGrouping::Hour => (
            Duration::hours(1),
            time::macros::format_description!("[year]-[month]-[day]T[hour]:00Z"),
        ),
        _ => return None,
    };
    let mut at = match grouping {
        StatsGrouping::Day => from.replace_time(time::Time::MIDNIGHT),
        _ => Timestamp::new(from).hour_start().get(),
    };
    let mut keys = Vec::new();
    while at < to && (keys.len() as i64) <= MAX_BUCKETS {
        let Ok(key) = at.format(format) else { break };
        keys.push(key);
        // Checked: the last bucket of year 9999 has no successor.
        match at.checked_add(step) {
            Some(next) => at = next,
            None => break,
        }
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// The buckets of a day or hour grouping.
    fn buckets(grouping: StatsGrouping, from: OffsetDateTime, to: OffsetDateTime) -> Vec<String> {
        time_buckets(grouping, from, to).expect("a time grouping")
    }

    #[test]
    fn day_buckets_cover_partial_days_at_both_ends() {
        let from = datetime!(2026-11-26 22:00 UTC);
        let keys = buckets(StatsGrouping::Day, from, datetime!(2026-11-28 00:00:01 UTC));
        assert_eq!(keys, ["2026-11-26", "2026-11-27", "2026-11-28"]);
    }

    #[test]
    fn hour_buckets_are_utc_and_end_before_to() {
        let (from, to) = (
            datetime!(2026-11-28 10:30 UTC),
            datetime!(2026-11-28 12:00 UTC),
        );
        let keys = buckets(StatsGrouping::Hour, from, to);
        assert_eq!(keys, ["2026-11-28T10:00Z", "2026-11-28T11:00Z"]);
        assert!(time_buckets(StatsGrouping::Station, from, to).is_none());
    }

    #[test]
    fn the_last_buckets_of_year_9999_do_not_overflow() {
        let last = datetime!(9999-12-31 23:59:59 UTC);
        let keys = buckets(StatsGrouping::Hour, datetime!(9999-12-31 00:00 UTC), last);
        assert_eq!(keys.len(), 24);
        assert_eq!(keys[23], "9999-12-31T23:00Z");
        let days = buckets(StatsGrouping::Day, datetime!(9999-12-30 00:00 UTC), last);
        assert_eq!(days, ["9999-12-30", "9999-12-31"]);
    }

    #[test]
    fn bucket_counting_stops_past_the_limit() {
        let from = datetime!(1970-01-01 00:00 UTC);
        let keys = buckets(StatsGrouping::Hour, from, datetime!(2026-11-28 12:00 UTC));
        assert_eq!(keys.len() as i64, MAX_BUCKETS + 1);
    }
}
