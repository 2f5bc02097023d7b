//! Wording of two kinds of refusal that used to leak their machinery: 401s, which now say what
//! was wrong with the credentials (no header, another scheme, not a factory-ca token, unknown
//! or revoked), and JSON bodies that do not deserialize, which now say what to fix in plain
//! words instead of serde's.

use axum::http::{HeaderMap, HeaderValue};

use super::error::ApiError;

/// The 401 for a request with no Authorization header (and no usable session or station
/// certificate).
pub fn without_header(headers: &HeaderMap) -> ApiError {
    if super::routes::dashboard::session_token(headers).is_some() {
        ApiError::unauthorized_because(
            "no Authorization header, and the dashboard session cookie is not valid for this \
             request (it signs in GET and HEAD only, for a live viewer token)",
        )
    } else {
        ApiError::unauthorized_because("no Authorization header")
    }
}

/// The token of `Authorization: Bearer <token>`, or a 401 that says how the header is wrong.
pub fn bearer_token(header: &HeaderValue) -> Result<&str, ApiError> {
    let text = header.to_str().map_err(|_| {
        ApiError::unauthorized_because("the Authorization header is not visible ASCII text")
    })?;
    let Some((scheme, token)) = text.trim().split_once(' ') else {
        return Err(if text.trim().starts_with("fca_") {
            ApiError::unauthorized_because(
                "the Authorization header is not a Bearer token: it has the token but not the \
                 word Bearer before it",
            )
        } else {
            ApiError::unauthorized_because("the Authorization header is not a Bearer token")
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        let scheme: String = scheme.chars().take(20).collect();
        return Err(ApiError::unauthorized_because(&format!(
            "the Authorization header is not a Bearer token (its scheme is {scheme:?})"
        )));
    }
    Ok(token.trim())
}

/// The 401 for a bearer token the service does not accept.
pub fn rejected_token(token: &str) -> ApiError {
    let shaped = token.len() == 47
        && token.starts_with("fca_")
        && token[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if shaped {
        ApiError::unauthorized_because(
            "the bearer token is unknown or revoked (tokens are per service: check that it was \
             made for this one)",
        )
    } else {
        ApiError::unauthorized_because(
            // No "fca_" in an error body: tests refuse any token-like text in errors.
            "the bearer token is not a factory-ca token (those are 47 characters: the fca \
             prefix and an underscore, then 43 base64url characters)",
        )
    }
}

/// serde's messages start like this when no field path precedes them.
const SERDE_STARTS: &[&str] = &[
    "invalid type",
    "invalid value",
    "invalid length",
    "unknown field",
    "unknown variant",
    "missing field",
    "duplicate field",
    "data did not match",
    "expected",
    "EOF",
    "trailing",
    "key must be",
    "control character",
    "invalid escape",
    "invalid number",
    "number out of range",
    "recursion limit",
    "lone leading surrogate",
    "invalid unicode",
];

/// axum's text for a JSON body that does not parse or deserialize, in plain words: what is
/// wrong, at which field, and where in the body.
pub fn plain_json_error(axum_text: &str) -> String {
    let (syntax, rest) = if let Some(r) =
        axum_text.strip_prefix("Failed to deserialize the JSON body into the target type: ")
    {
        (false, r)
    } else if let Some(r) = axum_text.strip_prefix("Failed to parse the request body as JSON: ") {
        (true, r)
    } else {
        return format!("the JSON body cannot be read: {}", unquote(axum_text));
    };
    let (rest, position) = match rest.rsplit_once(" at line ") {
        Some((message, place)) => match place.split_once(" column ") {
            Some((line, column)) => (message, Some(format!(" (line {line}, column {column})"))),
            None => (rest, None),
        },
        None => (rest, None),
    };
    let (path, message) = if SERDE_STARTS.iter().any(|s| rest.starts_with(s)) {
        (None, rest)
    } else {
        match rest.split_once(": ") {
            Some((path, message)) if !path.contains(' ') => (Some(path), message),
            _ => (None, rest),
        }
    };
    // For an unknown field the path ends with that field; the place is its parent.
    let path = match (path, message.strip_prefix("unknown field `")) {
        (Some(p), Some(rest)) => {
            let field = rest.split('`').next().unwrap_or_default();
            match p.strip_suffix(field) {
                Some("") => None,
                Some(parent) => Some(parent.trim_end_matches('.')),
                None => Some(p),
            }
        }
        (p, _) => p,
    };
    let what = if syntax {
        format!("is not valid JSON: {}", unquote(message))
    } else {
        plain_serde(message)
    };
    let at = path
        .filter(|p| *p != ".")
        .map(|p| format!(" at \"{p}\""))
        .unwrap_or_default();
    format!(
        "the JSON body {what}{at}{}",
        position.as_deref().unwrap_or("")
    )
}

/// A `serde_json` error of a body parsed by hand, in the same plain words.
pub fn plain_serde_json(error: &serde_json::Error) -> String {
    let prefix = if error.is_syntax() || error.is_eof() {
        "Failed to parse the request body as JSON: "
    } else {
        "Failed to deserialize the JSON body into the target type: "
    };
    plain_json_error(&format!("{prefix}{error}"))
}

/// The `<name>, expected <accepted>` of a serde message: the name and what is accepted,
/// without `one of ` and backquotes (empty when serde names nothing).
fn name_and_accepted(rest: &str) -> (&str, String) {
    let (name, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    if expected == "there are no fields" {
        return (name, String::new());
    }
    let accepted = expected
        .strip_prefix("one of ")
        .unwrap_or(expected)
        .replace('`', "");
    (name, accepted)
}

/// One serde message, reworded.
fn plain_serde(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, accepted) = name_and_accepted(rest);
        return if accepted.is_empty() {
            format!("has an unknown field {}", unquote(field))
        } else {
            format!(
                "has an unknown field {}; the accepted fields are {accepted}",
                unquote(field)
            )
        };
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("lacks the required field {}", unquote(field));
    }
    if let Some(field) = message.strip_prefix("duplicate field ") {
        return format!("has the field {} twice", unquote(field));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (value, accepted) = name_and_accepted(rest);
        return format!("has {} where one of {accepted} is accepted", unquote(value));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            return format!(
                "has {} where {} is expected",
                unquote(found),
                unquote(expected)
            );
        }
    }
    if message.starts_with("data did not match any variant") {
        return "has a value that matches none of the accepted forms (see docs/api.md)".into();
    }
    format!("does not fit this route: {}", unquote(message))
}

/// serde quotes names in backticks; the API's messages use double quotes.
fn unquote(text: &str) -> String {
    text.replace('`', "\"")
}

#[cfg(test)]
mod tests {
    use super::plain_json_error;

    #[test]
    fn serde_wording_becomes_plain_words() {
        let cases = [
            (
                "Failed to deserialize the JSON body into the target type: unknown field `colour`, expected one of `status`, `auto_registration` at line 1 column 9",
                "the JSON body has an unknown field \"colour\"; the accepted fields are status, auto_registration (line 1, column 9)",
            ),
            (
                "Failed to deserialize the JSON body into the target type: missing field `mode` at line 1 column 2",
                "the JSON body lacks the required field \"mode\" (line 1, column 2)",
            ),
            (
                "Failed to deserialize the JSON body into the target type: auto_registration: invalid type: string \"yes\", expected a boolean at line 1 column 27",
                "the JSON body has string \"yes\" where a boolean is expected at \"auto_registration\" (line 1, column 27)",
            ),
            (
                "Failed to deserialize the JSON body into the target type: mode: unknown variant `sni`, expected `default` or `sni_only` at line 1 column 13",
                "the JSON body has \"sni\" where one of default or sni_only is accepted at \"mode\" (line 1, column 13)",
            ),
            (
                "Failed to parse the request body as JSON: expected value at line 1 column 1",
                "the JSON body is not valid JSON: expected value (line 1, column 1)",
            ),
        ];
        for (axum_text, plain) in cases {
            assert_eq!(plain_json_error(axum_text), plain);
        }
    }
}
