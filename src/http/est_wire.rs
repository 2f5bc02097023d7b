//! EST (RFC 7030) on the wire: the base64 transfer encoding, certs-only CMS SignedData
//! (`application/pkcs7-mime`), CsrAttrs, reading a PKCS#10 body, and errors as `text/plain`.
//! The handlers are in [`super::routes::est`]; they issue through the one pipeline.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cms::content_info::ContentInfo;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};

use super::error::ApiError;
use super::error_code::ErrorCode;
use crate::ca::IssuancePolicy;
use crate::ca::SubjectField;

/// The media type of `cacerts`, `simpleenroll` and `simplereenroll` answers.
pub const PKCS7_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// The media type of `csrattrs` answers.
pub const CSRATTRS: &str = "application/csrattrs";
/// The media type of an enrollment body: a base64 DER PKCS#10.
pub const PKCS10: &str = "application/pkcs10";
/// The header that carries the stable error code of an EST error (the same codes as the JSON
/// API); the `text/plain` body starts with it too.
pub const ERROR_CODE_HEADER: &str = "x-error-code";

/// Base64, the transfer encoding RFC 7030 section 4 uses, in lines of 64 characters ended by
/// LF, not RFC 2045's CRLF: GNU `base64 -d`, the tool of the documented curl session, refuses
/// a CR, and EST clients ignore whitespace either way.
pub fn base64_lines(der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 2);
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

/// A certs-only CMS SignedData (RFC 5652 section 5, no signers) holding `certificates`, DER.
pub fn certs_only(certificates: &[&[u8]]) -> Result<Vec<u8>, der::Error> {
    let path = certificates
        .iter()
        .map(|der| x509_cert::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()?;
    ContentInfo::try_from(path)?.to_der()
}

/// The CsrAttrs of RFC 7030 section 4.5.2 for `policy`: the OID of every subject attribute each
/// certificate must carry (CN always; C when required; the required others), in the order the
/// settings name fields. `None` when there are none (answered 204).
pub fn csr_attrs(policy: &IssuancePolicy) -> Result<Option<Vec<u8>>, der::Error> {
    let oids = SubjectField::ALL
        .iter()
        .filter(|field| policy.guarantees(**field))
        .map(|field| ObjectIdentifier::new(field.oid()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| der::Error::from(der::ErrorKind::OidMalformed))?;
    if oids.is_empty() {
        return Ok(None);
    }
    // CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID, here each the `oid` alternative.
    oids.to_der().map(Some)
}

/// The PKCS#10 DER of an enrollment body (base64, RFC 7030 section 4.2.1), or a 4xx that says
/// what was sent instead: PEM, a CMS message (full CMC is not offered), or no base64 at all.
pub fn csr_der(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidCsr,
            "the body is empty; send the CSR as base64 DER PKCS#10 (openssl req -outform DER | \
             base64)",
        ));
    }
    if text.starts_with(b"-----BEGIN") {
        return Err(ApiError::new(
            ErrorCode::InvalidCsr,
            "the body is PEM; EST takes the DER CSR in base64 without the -----BEGIN----- \
             lines (openssl req -outform DER | base64)",
        ));
    }
    if text.first() == Some(&0x30) {
        return Err(ApiError::new(
            ErrorCode::InvalidTransferEncoding,
            "the body is binary DER; EST sends it base64-encoded (openssl req -outform DER | \
             base64)",
        ));
    }
    let der = STANDARD.decode(&text).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidTransferEncoding,
            format!("the body is not base64 ({e}); send the DER CSR base64-encoded"),
        )
    })?;
    if ContentInfo::from_der(&der).is_ok() {
        return Err(ApiError::new(
            ErrorCode::InvalidCsr,
            "the body is a CMS message (full CMC, RFC 7030 section 4.3, is not offered); send \
             the PKCS#10 CSR itself as base64 DER",
        ));
    }
    Ok(der)
}

/// The media type of a request, lowercase, without parameters.
pub fn media_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A successful base64 answer with `Content-Transfer-Encoding: base64`.
pub fn base64_response(content_type: &'static str, der: &[u8]) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                HeaderValue::from_static("base64"),
            ),
        ],
        base64_lines(der),
    )
        .into_response()
}

/// An error in EST's terms: the status of its code, a `text/plain` reason a technician can read
/// (`<code>: <what to fix>`), and the code in [`ERROR_CODE_HEADER`]. Headers of the JSON
/// answer (Retry-After) and its logging are kept; a 401 asks for HTTP Basic (a station token
/// as the password) besides a bearer token.
pub fn error_response(error: ApiError) -> Response {
    let code = error.code;
    let text = format!("{}: {}\n", code.as_str(), error.message);
    let (mut parts, _) = error.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    parts
        .headers
        .insert(ERROR_CODE_HEADER, HeaderValue::from_static(code.as_str()));
    if code == ErrorCode::Unauthorized {
        parts.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"factory-ca EST\", charset=\"UTF-8\""),
        );
    }
    Response::from_parts(parts, Body::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn certs_only_holds_the_certificates_and_no_signer() {
        let (a, b) = (self_signed("a"), self_signed("b"));
        let der = certs_only(&[&a, &b]).unwrap();
        let info = ContentInfo::from_der(&der).unwrap();
        assert_eq!(info.content_type, der::oid::db::rfc5911::ID_SIGNED_DATA);
        let signed: cms::signed_data::SignedData = info.content.decode_as().unwrap();
        assert!(signed.signer_infos.0.is_empty());
        let certs = signed.certificates.unwrap();
        let mut held: Vec<Vec<u8>> = certs
            .0
            .iter()
            .map(|c| match c {
                cms::cert::CertificateChoices::Certificate(c) => c.to_der().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        held.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(held, expected);
    }

    #[test]
    fn base64_lines_are_64_characters_and_decode_back() {
        let der: Vec<u8> = (0..=255u8).collect();
        let text = base64_lines(&der);
        assert!(text.lines().all(|l| l.len() <= 64));
        let joined: String = text.split_whitespace().collect();
        assert_eq!(STANDARD.decode(joined).unwrap(), der);
    }

    #[test]
    fn csr_attrs_name_cn_and_the_required_fields() {
        let policy = IssuancePolicy::new(
            vec![
                SubjectField::CommonName,
                SubjectField::Country,
                SubjectField::Organization,
            ],
            true,
        )
        .with_required(vec![SubjectField::Organization]);
        let der = csr_attrs(&policy).unwrap().unwrap();
        let oids = Vec::<ObjectIdentifier>::from_der(&der).unwrap();
        let names: Vec<String> = oids.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["2.5.4.6", "2.5.4.10", "2.5.4.3"]);
    }

    #[test]
    fn enrollment_bodies_other_than_base64_pkcs10_are_refused_with_what_to_send() {
        let cert = self_signed("x");
        let cms = certs_only(&[&cert]).unwrap();
        let cases: Vec<(Vec<u8>, ErrorCode, &str)> = vec![
            (b"".to_vec(), ErrorCode::InvalidCsr, "empty"),
            (
                b"-----BEGIN CERTIFICATE REQUEST-----\nMII=\n".to_vec(),
                ErrorCode::InvalidCsr,
                "PEM",
            ),
            (
                cert.clone(),
                ErrorCode::InvalidTransferEncoding,
                "binary DER",
            ),
            (
                b"not base64 !!".to_vec(),
                ErrorCode::InvalidTransferEncoding,
                "not base64",
            ),
            (
                base64_lines(&cms).into_bytes(),
                ErrorCode::InvalidCsr,
                "CMS message",
            ),
        ];
        for (body, code, says) in cases {
            let e = csr_der(&body).unwrap_err();
            assert_eq!(e.code, code, "{says}");
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
        // Wrapped base64 of any DER is passed on for the CSR parser to judge.
        assert_eq!(csr_der(base64_lines(&cert).as_bytes()).unwrap(), cert);
    }
}
