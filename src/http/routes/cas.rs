//! `/v1/admin/cas...`: CA management (admin): list, create, import, activate. Thin: each
//! handler calls [`crate::services::ca_admin`] and shapes the answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::app::AppState;
use crate::ca::{CaAlgorithm, CertificateAuthority, KeyAlgorithm};
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{AdminCaller, ApiJson, ApiPath};
use crate::http::route;
use crate::keys::{KeyRef, Passphrase};
use crate::services::ca_admin::NewCa;
use crate::store::CaRecord;
use crate::store::aws::AwsRegistration;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "cas";

/// A CA as the admin API shows it, with its AWS state from our store.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CaAdminView {
    id: String,
    subject: String,
    key_algorithm: KeyAlgorithm,
    /// `generated` or `imported`.
    source: String,
    /// Where the CA key is: `file:keys/<id>.key.pem` (a key file under the data directory) or
    /// an RFC 7512 `pkcs11:token=...;object=...` URI (a key in a PKCS#11 token). Never holds a
    /// PIN.
    key_uri: String,
    is_issuing: bool,
    not_before: String,
    not_after: String,
    aws_certificate_id: String,
    certificate_pem: String,
    /// The certificates above the CA up to and including its self-signed root (PEM, ordered
    /// from its issuer); empty for a root or a CA imported without its chain.
    chain_pem: String,
    /// The stored AWS IoT registration, or null.
    aws: Option<AwsRegistration>,
}

fn view(record: CaRecord, aws: Option<AwsRegistration>) -> CaAdminView {
    CaAdminView {
        not_before: record.not_before.rfc3339(),
        not_after: record.not_after.rfc3339(),
        id: record.id,
        subject: record.subject,
        key_algorithm: record.key_algorithm,
        key_uri: KeyRef::uri_of_record(&record.key_file),
        source: record.source,
        is_issuing: record.is_issuing,
        aws_certificate_id: record.aws_certificate_id,
        certificate_pem: record.certificate_pem,
        chain_pem: record.chain_pem,
        aws,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CaList {
    items: Vec<CaAdminView>,
}

/// List every CA
#[route(
    get,
    path = "/v1/admin/cas",
    operation_id = "list_cas",
    responses((status = 200, description = "Every CA, with its stored AWS registration",
        body = CaList))
)]
pub async fn list(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> Result<Json<CaList>, ApiError> {
    let registrations = state.store.list_aws_registrations().await?;
    let items = state
        .store
        .list_cas()
        .await?
        .into_iter()
        .map(|record| {
            let aws = registrations.iter().find(|r| r.ca_id == record.id).cloned();
            view(record, aws)
        })
        .collect();
    Ok(Json(CaList { items }))
}

/// One CA
#[route(
    get,
    path = "/v1/admin/cas/{id}",
    operation_id = "get_ca",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "The CA", body = CaAdminView))
)]
pub async fn get(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CaAdminView>, ApiError> {
    Ok(Json(stored_view(&state, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportCa {
    certificate_pem: String,
    /// Sent once over the admin API and written to an owner-only file; never returned.
    private_key_pem: String,
    /// The passphrase of an encrypted PKCS#8 `private_key_pem` (`ENCRYPTED PRIVATE KEY`).
    /// Used to decrypt it once; never stored, logged, audited or returned.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    key_passphrase: Option<crate::config::Secret>,
    /// The certificates above the CA (PEM, any order): its issuer and each certificate above
    /// that up to a self-signed root. Checked signature by signature; refused with
    /// `ca_rejected` when it does not verify. Issued chains then carry each intermediate.
    #[serde(default)]
    chain_pem: Option<String>,
    #[serde(default)]
    activate: bool,
}

/// Create a CA
///
/// Generates a root CA (`basicConstraints CA:TRUE`, `keyUsage keyCertSign, cRLSign,
/// digitalSignature`). With `activate`, it becomes the issuing CA at once in this process.
/// With `key_uri`, the key is in a PKCS#11 token and the certificate is signed there; a token
/// that cannot sign now answers 503 `signer_unavailable`.
/// Audited as `ca.create`.
#[route(
    post,
    path = "/v1/admin/cas",
    operation_id = "create_ca",
    request_body = NewCa,
    responses((status = 201, description = "Created", body = CaAdminView))
)]
pub async fn create(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<NewCa>,
) -> Result<Response, ApiError> {
    if !(1..=36_500).contains(&body.validity_days) {
        return Err(ApiError::new(
            ErrorCode::UnprocessableRequest,
            "validity_days must be between 1 and 36500",
        ));
    }
    if body.parent_id.is_none() && (body.name_constraints.is_some() || body.path_len.is_some()) {
        return Err(ApiError::new(
            ErrorCode::UnprocessableRequest,
            "name_constraints and path_len are for a sub-CA: give parent_id too",
        ));
    }
    if body.parent_id.is_some() && body.key_uri.is_some() {
        return Err(ApiError::new(
            ErrorCode::UnprocessableRequest,
            "a sub-CA (parent_id) gets a new key file; key_uri cannot be combined with parent_id",
        ));
    }
    let (record, ca) = state
        .ca_admin()
        .create_ca(&body, CaAlgorithm::default(), admin.actor())
        .await?;
    Ok(created(&state, record, ca))
}

/// Import a CA certificate and its key
///
/// The key is written to an owner-only file and never returned. Audited as `ca.import`.
#[route(
    post,
    path = "/v1/admin/cas/import",
    operation_id = "import_ca",
    request_body = ImportCa,
    responses((status = 201, description = "Imported", body = CaAdminView))
)]
pub async fn import(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<ImportCa>,
) -> Result<Response, ApiError> {
    let key_passphrase = match body.key_passphrase {
        Some(secret) => Some(
            Passphrase::new(
                Zeroizing::new(secret.expose().to_owned()),
                "the key_passphrase field",
            )
            .map_err(|e| ApiError::new(ErrorCode::UnprocessableRequest, e.to_string()))?,
        ),
        None => None,
    };
    let (record, ca) = state
        .ca_admin()
        .import(
            &body.certificate_pem,
            &body.private_key_pem,
            key_passphrase,
            body.chain_pem.as_deref(),
            body.activate,
            admin.actor(),
        )
        .await?;
    Ok(created(&state, record, ca))
}

/// Rotation: the CA becomes the issuing one for new certificates in this process at once;
/// older CAs stay for reads, revocation and CRLs. Other replicas pick it up on restart.
#[route(
    post,
    path = "/v1/admin/cas/{id}/activate",
    operation_id = "activate_ca",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "The CA, now issuing", body = CaAdminView))
)]
pub async fn activate(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CaAdminView>, ApiError> {
    let ca = state.ca_admin().activate(&id, admin.actor()).await?;
    state.issuance.set_issuing_ca(ca);
    Ok(Json(stored_view(&state, &id).await?))
}

/// CA `id` as stored, with its AWS registration.
async fn stored_view(state: &AppState, id: &str) -> Result<CaAdminView, ApiError> {
    let record = state
        .store
        .get_ca(id)
        .await?
        .ok_or_else(|| ca_not_found(id))?;
    let aws = state.store.get_aws_registration(id).await?;
    Ok(view(record, aws))
}

/// 201 with a new CA; an activated one signs in this process at once.
fn created(state: &AppState, record: CaRecord, ca: CertificateAuthority) -> Response {
    if record.is_issuing {
        state.issuance.set_issuing_ca(ca);
    }
    // Its device certificates may renew (EST simplereenroll) from now on.
    let s = state.clone();
    tokio::spawn(async move { s.refresh_device_trust().await });
    (StatusCode::CREATED, Json(view(record, None))).into_response()
}

pub(super) fn ca_not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::CaNotFound, format!("no CA with id {id:?}"))
}
