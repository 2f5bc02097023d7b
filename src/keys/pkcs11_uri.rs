//! RFC 7512 `pkcs11:` URIs as a CA record names a key in a token:
//! `pkcs11:token=<label>;object=<label>`, with an optional `?module-path=<file>` naming the
//! PKCS#11 module (otherwise `pkcs11.module`). The record never holds a PIN, so `pin-value` and
//! `pin-source` are refused: the PIN comes from `pkcs11.pin_env` or `pkcs11.pin_file`.

use std::fmt;
use std::path::PathBuf;

/// A key in a PKCS#11 token, by token label and object label (RFC 7512 section 2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: String,
    /// `object`: the label (`CKA_LABEL`) of the private key and of its public key.
    pub object: String,
    /// `module-path` (a query attribute): the PKCS#11 module to load.
    pub module_path: Option<PathBuf>,
}

const EXAMPLE: &str = "pkcs11:token=<token label>;object=<key label>";

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI, percent-decoding its values. Every refusal says what to write
    /// instead; none repeats a `pin-value`.
    pub fn parse(text: &str) -> Result<Pkcs11Uri, String> {
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| format!("a PKCS#11 key URI starts with pkcs11:, as in {EXAMPLE}"))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut token = None;
        let mut object = None;
        let mut module_path = None;
        let attributes = path.split(';').map(|a| (a, false)).chain(
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|a| (a, true)),
        );
        for (attribute, in_query) in attributes {
            if attribute.is_empty() {
                continue;
            }
            let (name, value) = attribute.split_once('=').ok_or_else(|| {
                format!("the key URI attribute {attribute:?} has no value; write name=value")
            })?;
            let slot = match (name, in_query) {
                ("pin-value" | "pin-source", _) => {
                    return Err(format!(
                        "the key URI holds {name}: a PIN is never stored with a CA; remove it \
                         and set pkcs11.pin_env or pkcs11.pin_file"
                    ));
                }
                ("token", false) => &mut token,
                ("object", false) => &mut object,
                ("module-path", true) => &mut module_path,
                ("module-path", false) => {
                    return Err("module-path is a query attribute (RFC 7512): write \
                         pkcs11:token=...;object=...?module-path=/path/to/module.so"
                        .into());
                }
                _ => {
                    return Err(format!(
                        "the key URI attribute {name:?} is not supported; a CA key is named by \
                         token and object (and optionally ?module-path=), as in {EXAMPLE}"
                    ));
                }
            };
            if slot.is_some() {
                return Err(format!("the key URI names {name} twice"));
            }
            let value =
                percent_decode(value).map_err(|e| format!("the key URI attribute {name}: {e}"))?;
            if value.is_empty() {
                return Err(format!("the key URI attribute {name} is empty"));
            }
            *slot = Some(value);
        }
        let (Some(token), Some(object)) = (token, object) else {
            return Err(format!(
                "the key URI must name both the token and the object, as in {EXAMPLE}"
            ));
        };
        Ok(Pkcs11Uri {
            token,
            object,
            module_path: module_path.map(PathBuf::from),
        })
    }
}

/// The canonical form, as records hold it: values percent-encoded where RFC 7512 needs it.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11:token={};object={}",
            percent_encode(&self.token, ""),
            percent_encode(&self.object, "")
        )?;
        if let Some(module) = &self.module_path {
            write!(
                f,
                "?module-path={}",
                percent_encode(&module.to_string_lossy(), "/")
            )?;
        }
        Ok(())
    }
}

/// RFC 3986 section 2.1 percent-decoding; the result must be UTF-8 (labels are UTF-8 in
/// PKCS#11).
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % must be followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the percent-decoded value is not UTF-8".into())
}

/// Percent-encodes all but RFC 3986 unreserved characters and those in `keep`.
fn percent_encode(value: &str, keep: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_names_token_and_object_percent_decoded() {
        let uri = Pkcs11Uri::parse("pkcs11:token=Line%203;object=ca%2Droot").unwrap();
        assert_eq!(uri.token, "Line 3");
        assert_eq!(uri.object, "ca-root");
        assert_eq!(uri.module_path, None);
        assert_eq!(uri.to_string(), "pkcs11:token=Line%203;object=ca-root");
        assert_eq!(Pkcs11Uri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn a_module_path_comes_from_the_query_and_round_trips() {
        let text = "pkcs11:object=k;token=t?module-path=/usr/lib/softhsm/libsofthsm2.so";
        let uri = Pkcs11Uri::parse(text).unwrap();
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so"
        );
        assert_eq!(Pkcs11Uri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn a_pin_in_the_uri_is_refused_without_echoing_it() {
        for text in [
            "pkcs11:token=t;object=k?pin-value=secret-1234",
            "pkcs11:token=t;object=k;pin-value=secret-1234",
            "pkcs11:token=t;object=k?pin-source=file:/tmp/secret-1234",
        ] {
            let e = Pkcs11Uri::parse(text).unwrap_err();
            assert!(e.contains("pkcs11.pin_env"), "{e}");
            assert!(!e.contains("secret-1234"), "{e}");
        }
    }

    #[test]
    fn incomplete_or_unknown_uris_are_refused_with_what_to_write() {
        let cases = [
            ("file:keys/a.pem", "starts with pkcs11:"),
            ("pkcs11:token=t", "both the token and the object"),
            ("pkcs11:object=k", "both the token and the object"),
            ("pkcs11:token=t;object=k;id=%01", "\"id\" is not supported"),
            (
                "pkcs11:token=t;object=k;module-path=/m.so",
                "query attribute",
            ),
            ("pkcs11:token=t;token=u;object=k", "names token twice"),
            ("pkcs11:token=;object=k", "token is empty"),
            ("pkcs11:token=t;object=k%2", "two hex digits"),
            ("pkcs11:token=t;object=%FF", "not UTF-8"),
            ("pkcs11:token=t;object", "has no value"),
        ];
        for (text, expected) in cases {
            let e = Pkcs11Uri::parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
