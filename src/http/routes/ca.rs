//! `/v1/ca` and `/v1/ca.pem`: the issuing CA, for any caller (the PEM needs no token).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::aws::{CaStatus, CertificateMode};
use crate::ca::KeyAlgorithm;
use crate::http::error::ApiError;
use crate::http::extract::AnyCaller;
use crate::http::route;
use crate::store::{TemplateKind, Timestamp};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "ledger";

#[derive(Serialize, utoipa::ToSchema)]
pub struct CaView {
    pub id: String,
    pub subject: String,
    pub key_algorithm: KeyAlgorithm,
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the CA certificate DER: the id AWS IoT gives the CA once registered.
    pub aws_certificate_id: String,
    pub certificate_pem: String,
    /// Its registration in AWS IoT as this service last set or synced it; null when it is not
    /// registered.
    pub aws: Option<CaAwsView>,
}

/// What a viewer may know of the issuing CA's AWS IoT registration.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CaAwsView {
    pub status: CaStatus,
    pub auto_registration: bool,
    /// When a JITP template is attached.
    pub template_kind: Option<TemplateKind>,
    pub template_name: Option<String>,
    pub mode: CertificateMode,
    pub aws_certificate_id: String,
    pub registered_at: String,
    pub updated_at: String,
}

/// `GET /v1/ca`: the issuing CA, for any authenticated caller.
#[route(
    get,
    path = "/v1/ca",
    operation_id = "get_issuing_ca",
    responses((status = 200, description = "The issuing CA", body = CaView))
)]
pub async fn issuing_ca(
    State(state): State<AppState>,
    _caller: AnyCaller,
) -> Result<Json<CaView>, ApiError> {
    let ca = state.issuance.issuing_ca();
    let aws = state
        .store
        .get_aws_registration(ca.id())
        .await?
        .map(|r| CaAwsView {
            status: r.status,
            auto_registration: r.auto_registration,
            template_kind: r.template_kind,
            template_name: r.template_name,
            mode: r.mode,
            aws_certificate_id: r.aws_certificate_id,
            registered_at: r.registered_at.rfc3339(),
            updated_at: r.updated_at.rfc3339(),
        });
    Ok(Json(CaView {
        id: ca.id().to_owned(),
        subject: ca.subject().to_owned(),
        key_algorithm: ca.key_algorithm(),
        not_before: Timestamp::new(ca.not_before()).rfc3339(),
        not_after: Timestamp::new(ca.not_after()).rfc3339(),
        aws_certificate_id: ca.aws_certificate_id(),
        certificate_pem: ca.certificate_pem().to_owned(),
        aws,
    }))
}

/// `GET /v1/ca.pem`: the issuing CA certificate, no authentication (it is public).
#[route(
    get,
    path = "/v1/ca.pem",
    operation_id = "get_issuing_ca_pem",
    responses((status = 200, description = "The issuing CA certificate as PEM", body = String,
        content_type = "application/x-pem-file")),
    security(())
)]
pub async fn issuing_ca_pem(State(state): State<AppState>) -> Response {
    let ca = state.issuance.issuing_ca();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-pem-file"),
        )],
        ca.certificate_pem().to_owned(),
    )
        .into_response()
}
