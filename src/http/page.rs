//! One page at a time: the `limit` query parameter of the list routes and the cursor of the
//! next page.

use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;

/// The most rows one page holds.
pub const MAX_PAGE: u32 = 1000;
/// The rows of a page when the request names no `limit`.
pub const DEFAULT_PAGE: u32 = 100;

/// The `limit` of a list request: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when left out, else 400
/// `invalid_query`.
pub fn limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// The store was asked for `limit + 1` rows: one more than the page tells whether another page
/// exists. Cuts `rows` to `limit` and returns the cursor of its last row when more remain.
pub fn next_cursor<T, C>(rows: &mut Vec<T>, limit: u32, cursor: impl FnOnce(&T) -> C) -> Option<C> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(limit(Some(1)).unwrap(), 1);
        assert_eq!(limit(Some(MAX_PAGE)).unwrap(), MAX_PAGE);
        for refused in [0, MAX_PAGE + 1] {
            let e = limit(Some(refused)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidQuery);
        }
    }

    #[test]
    fn next_cursor_only_when_a_row_is_left_over() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(next_cursor(&mut rows, 3, |r| *r), None);
        assert_eq!(rows, [1, 2, 3]);
        let mut rows = vec![1, 2, 3, 4];
        assert_eq!(next_cursor(&mut rows, 3, |r| r * 10), Some(30));
        assert_eq!(rows, [1, 2, 3]);
    }
}
