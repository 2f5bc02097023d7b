//! How a stats range is read: its whole UTC days from the daily counters, the whole hours
//! around them from the hourly counters, and its partial hours at the edges from the ledger or
//! as their whole hour less the rest ([`super::Store::stats`]). Pure functions of the range
//! and `now`; the statements that read each part are in the parent module.

use super::super::Timestamp;

/// A level of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// `certificate_counts`, `revocation_counts`: per UTC hour.
    Hour,
    /// `certificate_counts_daily`, `revocation_counts_daily`: per UTC day.
    Day,
}

impl Level {
    /// The certificate and the revocation counters of this level.
    pub(super) fn tables(self) -> (&'static str, &'static str) {
        match self {
            Level::Hour => ("certificate_counts", "revocation_counts"),
            Level::Day => ("certificate_counts_daily", "revocation_counts_daily"),
        }
    }

    pub(super) fn bucket(self, t: Timestamp) -> Timestamp {
        match self {
            Level::Hour => t.hour_start(),
            Level::Day => t.day_start(),
        }
    }

    pub(super) fn length(self) -> time::Duration {
        match self {
            Level::Hour => HOUR,
            Level::Day => DAY,
        }
    }

    /// The whole buckets of this level inside `[from, to)`, as one range, if there are any.
    pub(super) fn whole_buckets(
        self,
        from: Timestamp,
        to: Timestamp,
    ) -> Option<(Timestamp, Timestamp)> {
        let start = self.bucket(from);
        let first = if start == from {
            from
        } else {
            start.checked_add(self.length())?
        };
        let last = self.bucket(to);
        (first < last).then_some((first, last))
    }
}

/// `[from, to)` as the whole UTC days in it, read from the daily counters, the whole UTC hours
/// around them, read from the hourly counters, and the partial hours at its edges, read from
/// the ledger (at most an hour of rows each, over its time indexes).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Split {
    pub(super) ledger: Vec<(Timestamp, Timestamp)>,
    pub(super) hours: Vec<(Timestamp, Timestamp)>,
    pub(super) days: Option<(Timestamp, Timestamp)>,
}

/// Splits `[from, to)`; `days`: whether whole days may come from the daily counters (not when
/// the counts are grouped by hour, which the daily counters cannot tell apart).
pub(super) fn split(from: Timestamp, to: Timestamp, days: bool) -> Split {
    let Some((first, last)) = Level::Hour.whole_buckets(from, to) else {
        return Split {
            ledger: vec![(from, to)],
            hours: Vec::new(),
            days: None,
        };
    };
    let days = if days {
        Level::Day.whole_buckets(first, last)
    } else {
        None
    };
    Split {
        ledger: edges(from, (first, last), to),
        hours: match days {
            Some(inner) => edges(first, inner, last),
            None => vec![(first, last)],
        },
        days,
    }
}

/// The ranges `[from, inner.0)` and `[inner.1, to)` that are not empty.
fn edges(
    from: Timestamp,
    inner: (Timestamp, Timestamp),
    to: Timestamp,
) -> Vec<(Timestamp, Timestamp)> {
    [(from, inner.0), (inner.1, to)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect()
}

pub(super) const HOUR: time::Duration = time::Duration::HOUR;
pub(super) const DAY: time::Duration = time::Duration::DAY;

/// Whether the partial hour `[a, b)` is cheaper to count as its whole hour, from the hourly
/// counters, less the ledger's rows in the rest of the hour: when the rest of the hour up to
/// `now` is shorter than the part of `[a, b)` up to `now` (rows are not issued or revoked
/// after `now`, except within the clocks' skew). So the current hour up to `now`, which under
/// sustained issuance holds up to an hour of rows, costs a look at the few rows after `now`,
/// and the leading edge of a rolling window at most half an hour of rows. Grouped by status
/// too: the hour's counters count each certificate under its status at `now` as the ledger
/// does (those that expire in the current hour are read from the ledger by both).
pub(super) fn count_as_whole_hour_less_rest(
    a: Timestamp,
    b: Timestamp,
    now: Timestamp,
) -> Option<(Timestamp, Timestamp)> {
    let hour = a.hour_start();
    let end = hour.checked_add(HOUR)?;
    if b > end {
        return None;
    }
    let upto = |t: Timestamp| t.min(now).max(hour).get();
    let part = upto(b) - upto(a);
    let rest = (upto(a) - upto(hour)) + (upto(end) - upto(b));
    (rest < part).then_some((hour, end))
}

/// Runs of consecutive buckets of `length` in `buckets` (sorted bucket starts) as
/// `[start, end)` ranges.
pub(super) fn contiguous(
    buckets: &[Timestamp],
    length: time::Duration,
) -> Vec<(Timestamp, Timestamp)> {
    let mut runs: Vec<(Timestamp, Timestamp)> = Vec::new();
    for &bucket in buckets {
        let end = bucket.checked_add(length).unwrap_or(bucket);
        match runs.last_mut() {
            Some(run) if run.1 == bucket => run.1 = end,
            _ => runs.push((bucket, end)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn t(at: time::OffsetDateTime) -> Timestamp {
        Timestamp::new(at)
    }

    fn span(from: time::OffsetDateTime, to: time::OffsetDateTime) -> (Timestamp, Timestamp) {
        (t(from), t(to))
    }

    #[test]
    fn a_range_splits_into_whole_hours_and_its_partial_edges() {
        let split_of = |a, b| split(t(a), t(b), true);
        assert_eq!(
            split_of(
                datetime!(2026-11-28 10:15 UTC),
                datetime!(2026-11-28 13:05 UTC)
            ),
            Split {
                ledger: vec![
                    span(
                        datetime!(2026-11-28 10:15 UTC),
                        datetime!(2026-11-28 11:00 UTC)
                    ),
                    span(
                        datetime!(2026-11-28 13:00 UTC),
                        datetime!(2026-11-28 13:05 UTC)
                    ),
                ],
                hours: vec![span(
                    datetime!(2026-11-28 11:00 UTC),
                    datetime!(2026-11-28 13:00 UTC)
                )],
                days: None,
            }
        );
        // Aligned ends read no ledger at all.
        let aligned = split_of(
            datetime!(2026-11-28 10:00 UTC),
            datetime!(2026-11-28 12:00 UTC),
        );
        assert!(aligned.ledger.is_empty());
        assert_eq!(
            aligned.hours,
            vec![span(
                datetime!(2026-11-28 10:00 UTC),
                datetime!(2026-11-28 12:00 UTC)
            )]
        );
        // No whole hour inside: the ledger answers for all of it.
        for (a, b) in [
            (
                datetime!(2026-11-28 10:15 UTC),
                datetime!(2026-11-28 10:45 UTC),
            ),
            (
                datetime!(2026-11-28 10:15 UTC),
                datetime!(2026-11-28 11:45 UTC),
            ),
        ] {
            assert_eq!(
                split_of(a, b),
                Split {
                    ledger: vec![(t(a), t(b))],
                    hours: Vec::new(),
                    days: None,
                }
            );
        }
        // A day boundary without a whole day inside: hours only.
        let overnight = split_of(
            datetime!(2026-11-28 20:30 UTC),
            datetime!(2026-11-29 03:30 UTC),
        );
        assert_eq!(overnight.days, None);
        assert_eq!(
            overnight.hours,
            vec![span(
                datetime!(2026-11-28 21:00 UTC),
                datetime!(2026-11-29 03:00 UTC)
            )]
        );
        // The last instants the API accepts.
        let end = split(t(datetime!(9999-12-31 23:30 UTC)), t(Timestamp::MAX), true);
        assert!(end.hours.is_empty());
        let all = split(t(Timestamp::MIN), t(Timestamp::MAX), true);
        assert_eq!(
            all.ledger,
            vec![(t(datetime!(9999-12-31 23:00 UTC)), t(Timestamp::MAX))]
        );
        assert_eq!(
            all.hours,
            vec![span(
                datetime!(9999-12-31 00:00 UTC),
                datetime!(9999-12-31 23:00 UTC)
            )]
        );
        assert_eq!(
            all.days,
            Some((t(Timestamp::MIN), t(datetime!(9999-12-31 00:00 UTC))))
        );
    }

    #[test]
    fn whole_days_come_from_the_daily_level_and_the_hours_around_them_from_the_hourly() {
        let parts = split(
            t(datetime!(2026-11-25 10:15 UTC)),
            t(datetime!(2026-11-28 13:05 UTC)),
            true,
        );
        assert_eq!(
            parts,
            Split {
                ledger: vec![
                    span(
                        datetime!(2026-11-25 10:15 UTC),
                        datetime!(2026-11-25 11:00 UTC)
                    ),
                    span(
                        datetime!(2026-11-28 13:00 UTC),
                        datetime!(2026-11-28 13:05 UTC)
                    ),
                ],
                hours: vec![
                    span(
                        datetime!(2026-11-25 11:00 UTC),
                        datetime!(2026-11-26 00:00 UTC)
                    ),
                    span(
                        datetime!(2026-11-28 00:00 UTC),
                        datetime!(2026-11-28 13:00 UTC)
                    ),
                ],
                days: Some(span(
                    datetime!(2026-11-26 00:00 UTC),
                    datetime!(2026-11-28 00:00 UTC)
                )),
            }
        );
        // Day-aligned ends read days only.
        let aligned = split(
            t(datetime!(2026-11-25 00:00 UTC)),
            t(datetime!(2026-11-28 00:00 UTC)),
            true,
        );
        assert!(aligned.ledger.is_empty() && aligned.hours.is_empty());
        // Grouped by hour, the daily level is not used.
        let by_hour = split(
            t(datetime!(2026-11-25 00:00 UTC)),
            t(datetime!(2026-11-28 00:00 UTC)),
            false,
        );
        assert_eq!(by_hour.days, None);
        assert_eq!(
            by_hour.hours,
            vec![span(
                datetime!(2026-11-25 00:00 UTC),
                datetime!(2026-11-28 00:00 UTC)
            )]
        );
    }

    #[test]
    fn a_partial_hour_is_read_from_the_side_with_fewer_rows() {
        let hour = span(
            datetime!(2026-11-30 10:00 UTC),
            datetime!(2026-11-30 11:00 UTC),
        );
        let whole = Some(hour);
        let at = |h: u8, m: u8| {
            t(datetime!(2026-11-30 00:00 UTC)
                .replace_hour(h)
                .unwrap()
                .replace_minute(m)
                .unwrap())
        };
        // The current hour up to now: the counters, less the (few) rows after now.
        assert_eq!(
            count_as_whole_hour_less_rest(hour.0, at(10, 50), at(10, 50)),
            whole
        );
        assert_eq!(
            count_as_whole_hour_less_rest(hour.0, at(10, 5), at(10, 5)),
            whole
        );
        // An edge hour in the past: the shorter side of it.
        let later = at(14, 0);
        assert_eq!(
            count_as_whole_hour_less_rest(at(10, 10), hour.1, later),
            whole
        );
        assert_eq!(
            count_as_whole_hour_less_rest(at(10, 40), hour.1, later),
            None
        );
        assert_eq!(
            count_as_whole_hour_less_rest(hour.0, at(10, 40), later),
            whole
        );
        assert_eq!(
            count_as_whole_hour_less_rest(hour.0, at(10, 20), later),
            None
        );
        // Ten minutes inside an hour: fifty outside it.
        assert_eq!(
            count_as_whole_hour_less_rest(at(10, 20), at(10, 30), later),
            None
        );
        // Not across two hours, not in an hour that has not begun.
        assert_eq!(
            count_as_whole_hour_less_rest(at(10, 50), at(11, 10), later),
            None
        );
        assert_eq!(
            count_as_whole_hour_less_rest(hour.0, at(10, 50), at(9, 0)),
            None
        );
    }

    #[test]
    fn a_day_starts_at_utc_midnight() {
        let at = Timestamp::new(
            datetime!(2026-11-28 23:59:59.5 +02:00), // 21:59:59.5 UTC
        );
        assert_eq!(at.day_start(), t(datetime!(2026-11-28 00:00 UTC)));
        assert_eq!(
            t(datetime!(2026-11-29 00:00 UTC)).day_start(),
            t(datetime!(2026-11-29 00:00 UTC))
        );
    }

    #[test]
    fn consecutive_buckets_are_read_as_one_range() {
        let h = |hour: u8| t(datetime!(2026-11-28 00:00 UTC) + time::Duration::hours(hour.into()));
        assert_eq!(
            contiguous(&[h(1), h(2), h(3), h(7), h(9), h(10)], HOUR),
            vec![(h(1), h(4)), (h(7), h(8)), (h(9), h(11))]
        );
        assert!(contiguous(&[], HOUR).is_empty());
        let d = |day: u8| t(datetime!(2026-11-01 00:00 UTC) + DAY * i32::from(day));
        assert_eq!(
            contiguous(&[d(1), d(2), d(5)], DAY),
            vec![(d(1), d(3)), (d(5), d(6))]
        );
    }
}
