//! Values the layers above the store hold as lowercase hex text, and PostgreSQL keeps as the
//! bytes themselves (migration 0031): certificate serials (20 bytes), and the ledger's SPKI
//! hashes and AWS certificate ids (SHA-256, 32 bytes).
//!
//! The API, the CLI, the hash chain's payloads and the records all use the text. As `bytea` a
//! serial takes half the width in the ledger's heap, its primary key, the time-ordered indexes,
//! the thing claims and the chain, and each SHA-256 value half its width in the heap
//! (`docs/benchmarks.md`, "Bytes on disk per certificate"). SQLite keeps the text. The
//! statement text is the same on both; the encoding is chosen here, per backend, when a value
//! is bound ([`HexArg`]) or read ([`HexText`], [`MaybeHexText`]).
//!
//! Byte order and the text's order agree (a lowercase hex digit sorts as its value), so keyset
//! cursors and `ORDER BY serial` page the same way on both backends.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type, ValueRef};

/// The longest value: a SHA-256 digest (a serial has at most 20 bytes, RFC 5280).
const MAX_BYTES: usize = 32;

/// Hex text bound to a statement.
///
/// On PostgreSQL a text that is not an even number of lowercase hex digits (at most 64) is
/// bound as no bytes: no row holds that (each such column's `CHECK` wants its length), so a
/// lookup finds nothing, as the text column did, and an insert fails loudly.
#[derive(Clone, Copy, Debug)]
pub struct HexArg<'a>(pub &'a str);

/// The bytes of `hex`, when it is an even number of lowercase hex digits, at most 64.
fn hex_bytes(hex: &str, out: &mut [u8; MAX_BYTES]) -> Option<usize> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2)
        || digits.len() > 2 * MAX_BYTES
        || !digits
            .iter()
            .all(|d| d.is_ascii_digit() || (b'a'..=b'f').contains(d))
    {
        return None;
    }
    let n = digits.len() / 2;
    hex::decode_to_slice(digits, &mut out[..n]).ok()?;
    Some(n)
}

impl Type<Postgres> for HexArg<'_> {
    fn type_info() -> PgTypeInfo {
        <&[u8] as Type<Postgres>>::type_info()
    }
}

impl PgHasArrayType for HexArg<'_> {
    fn array_type_info() -> PgTypeInfo {
        <&[u8] as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for HexArg<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let mut bytes = [0u8; MAX_BYTES];
        let n = hex_bytes(self.0, &mut bytes).unwrap_or(0);
        <&[u8] as Encode<Postgres>>::encode(&bytes[..n], buf)
    }
}

impl Type<Sqlite> for HexArg<'_> {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for HexArg<'q> {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Sqlite>>::encode(self.0, buf)
    }
}

/// A value read from its column, as its hex text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HexText(pub String);

impl From<HexText> for String {
    fn from(text: HexText) -> String {
        text.0
    }
}

impl Type<Postgres> for HexText {
    fn type_info() -> PgTypeInfo {
        <&[u8] as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for HexText {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(HexText(hex::encode(<&[u8] as Decode<Postgres>>::decode(
            value,
        )?)))
    }
}

impl Type<Sqlite> for HexText {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

impl<'r> Decode<'r, Sqlite> for HexText {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(HexText(<String as Decode<Sqlite>>::decode(value)?))
    }
}

/// A nullable column (`superseded_by`, or one read through an outer join), read as its hex
/// text or `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaybeHexText(pub Option<String>);

impl From<MaybeHexText> for Option<String> {
    fn from(text: MaybeHexText) -> Option<String> {
        text.0
    }
}

impl<DB: sqlx::Database> Type<DB> for MaybeHexText
where
    HexText: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <HexText as Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <HexText as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> Decode<'r, DB> for MaybeHexText
where
    HexText: Decode<'r, DB>,
{
    fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(MaybeHexText(None));
        }
        Ok(MaybeHexText(Some(HexText::decode(value)?.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_hex_of_at_most_thirty_two_bytes_is_bytes() {
        let mut out = [0u8; MAX_BYTES];
        let hex = "00ff10".repeat(6) + "abcd";
        assert_eq!(hex_bytes(&hex, &mut out), Some(20));
        assert_eq!(hex::encode(&out[..20]), hex);
        let digest = "9f".repeat(32);
        assert_eq!(hex_bytes(&digest, &mut out), Some(32));
        assert_eq!(hex::encode(out), digest);
        assert_eq!(hex_bytes("0a", &mut out), Some(1));
        assert_eq!(out[0], 0x0a);
    }

    #[test]
    fn anything_else_is_no_bytes() {
        let mut out = [0u8; MAX_BYTES];
        for text in [
            "ABCD",
            "abc",
            "0g",
            "00".repeat(33).as_str(),
            " 00",
            "00\u{0}0",
            "é0",
        ] {
            assert_eq!(hex_bytes(text, &mut out), None, "{text:?}");
        }
    }

    #[test]
    fn hex_order_is_byte_order() {
        let mut serials: Vec<String> = ["ff", "0a", "a0", "09", "90", "aa"]
            .iter()
            .map(|s| s.repeat(20))
            .collect();
        let mut by_bytes = serials.clone();
        serials.sort();
        by_bytes.sort_by_key(|s| hex::decode(s).unwrap());
        assert_eq!(serials, by_bytes);
    }
}
