//! [`Timestamp`]: a UTC instant stored as `timestamptz` in PostgreSQL and as fixed-width
//! RFC 3339 text (`2026-11-28T10:21:49.123456Z`) in SQLite.
//!
//! Fixed width matters: SQLite compares text byte by byte, and the variable-length fraction
//! that `OffsetDateTime`'s own encoding writes (`...:00Z` vs `...:00.5Z`) does not sort
//! chronologically. Microsecond precision matches PostgreSQL's, so a value read back equals the
//! value written (keyset cursors rely on that).

use std::fmt;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Truncates to microseconds and converts to UTC.
    pub fn new(t: OffsetDateTime) -> Self {
        let t = t.to_offset(UtcOffset::UTC);
        let micros = t.nanosecond() / 1_000 * 1_000;
        Timestamp(
            t.replace_nanosecond(micros)
                .expect("truncated nanoseconds are valid"),
        )
    }

    /// The earliest instant the API accepts: 0001-01-01T00:00:00Z.
    pub const MIN: OffsetDateTime = time::macros::datetime!(0001-01-01 00:00:00 UTC);
    /// The latest instant the API accepts: 9999-12-31T23:59:59.999999Z (RFC 3339 has four-digit
    /// years).
    pub const MAX: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999_999 UTC);

    /// [`Timestamp::new`] for input from outside: `None` when the instant, converted to UTC, is
    /// before [`Timestamp::MIN`] or after [`Timestamp::MAX`] (`9999-12-31T23:59:59-23:59` is in
    /// year 10000 in UTC; converting it unchecked panics).
    pub fn checked(t: OffsetDateTime) -> Option<Self> {
        let utc = t.checked_to_offset(UtcOffset::UTC)?;
        (Self::MIN..=Self::MAX)
            .contains(&utc)
            .then(|| Timestamp::new(utc))
    }

    /// This instant plus `d`, or `None` past [`Timestamp::MIN`]/[`Timestamp::MAX`].
    pub fn checked_add(self, d: time::Duration) -> Option<Self> {
        self.0.checked_add(d).and_then(Self::checked)
    }

    pub fn now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    pub fn get(self) -> OffsetDateTime {
        self.0
    }

    /// RFC 3339 text, as the API and the CLI show times (`2026-11-28T10:21:49.123456Z`; no
    /// fraction when it is zero).
    pub fn rfc3339(self) -> String {
        self.0
            .format(&Rfc3339)
            .expect("a UTC instant formats as RFC 3339")
    }

    /// The start of the UTC hour this instant falls in: the bucket of the hourly counters.
    pub fn hour_start(self) -> Timestamp {
        Timestamp(
            self.0
                .replace_minute(0)
                .and_then(|t| t.replace_second(0))
                .and_then(|t| t.replace_nanosecond(0))
                .expect("zero minutes, seconds and nanoseconds are valid"),
        )
    }

    /// The start of the UTC day this instant falls in: the bucket of the daily counters.
    pub fn day_start(self) -> Timestamp {
        Timestamp(
            self.hour_start()
                .0
                .replace_hour(0)
                .expect("hour zero is valid"),
        )
    }

    fn to_fixed_text(self) -> String {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        self.0.format(&format).expect("a UTC instant formats")
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        Timestamp::new(t)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_fixed_text())
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl<'q> Encode<'q, Postgres> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Timestamp::new(
            <OffsetDateTime as Decode<Postgres>>::decode(value)?,
        ))
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.to_fixed_text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Timestamp::new(OffsetDateTime::parse(text, &Rfc3339)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_text_sorts_like_time() {
        let a = Timestamp::new(datetime!(2026-11-28 10:00:00 UTC));
        let b = Timestamp::new(datetime!(2026-11-28 10:00:00.5 UTC));
        assert!(a.to_fixed_text() < b.to_fixed_text());
        assert_eq!(a.to_fixed_text(), "2026-11-28T10:00:00.000000Z");
    }

    #[test]
    fn checked_refuses_instants_outside_years_1_to_9999_in_utc() {
        use time::format_description::well_known::Rfc3339;
        let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        assert!(Timestamp::checked(parse("9999-12-31T23:59:59-23:59")).is_none());
        assert!(Timestamp::checked(parse("0000-01-01T00:00:00+23:59")).is_none());
        assert!(Timestamp::checked(parse("9999-12-31T23:59:59Z")).is_some());
        assert!(Timestamp::checked(parse("0001-01-01T00:00:00Z")).is_some());
        let last = Timestamp::checked(parse("9999-12-31T23:00:00Z")).unwrap();
        assert!(last.checked_add(time::Duration::hours(1)).is_none());
        assert!(last.checked_add(time::Duration::minutes(59)).is_some());
    }

    #[test]
    fn truncates_to_microseconds_in_utc() {
        let t = Timestamp::new(datetime!(2026-11-28 19:00:00.123456789 +09:00));
        assert_eq!(t.get(), datetime!(2026-11-28 10:00:00.123456 UTC));
    }
}
