//! `/v1/ledger/...`: the ledger's proofs. The audit public key, which verifies the chains'
//! signed checkpoints and signed exports, is public like the CA certificate: no token.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::route;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "ledger";

/// Get the ledger audit public key
///
/// The PEM `PUBLIC KEY` (ECDSA P-256) that verifies the signed checkpoints of the ledger's hash
/// chains and the signed exports (`factory-ca ledger export`):
/// `openssl dgst -sha256 -verify audit.pub -signature export.csv.sig export.csv`. Its key id,
/// the `key_id` of each checkpoint, is the SHA-256 of its DER (`X-Key-Id`). No token needed.
#[route(
    get,
    path = "/v1/ledger/audit-key.pem",
    operation_id = "get_ledger_audit_key",
    responses((status = 200, description = "The audit public key as PEM",
        body = String, content_type = "application/x-pem-file",
        headers(("x-key-id" = String,
            description = "Lowercase hex SHA-256 of the key's SubjectPublicKeyInfo DER")))),
    security(())
)]
pub async fn audit_key_pem(State(state): State<AppState>) -> Response {
    let public = state.audit_key.public();
    let key_id =
        HeaderValue::from_str(public.key_id()).expect("a hex key id is a valid header value");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-pem-file"),
            ),
            (header::HeaderName::from_static("x-key-id"), key_id),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        public.to_pem(),
    )
        .into_response()
}
