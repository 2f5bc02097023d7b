//! Admin endpoints for CAs and their AWS IoT registration. Thin: each handler checks the role,
//! calls [`crate::authorities`] or [`crate::provisioning`], and shapes the answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::ApiError;
use super::extract::{ApiJson, Caller, RequestId};
use super::rfc3339_string;
use crate::app::AppState;
use crate::auth::Role;
use crate::authorities;
use crate::ca::{CaAlgorithm, CaSubject};
use crate::keystore::Passphrase;
use crate::provisioning::{
    PreviewAnswer, PreviewRequest, ProvisioningError, RegisterRequest, StatusChange, SyncReport,
    TemplateRequest,
};
use crate::store::CaRecord;
use crate::store::aws::AwsRegistration;

/// A CA as the admin API shows it, with its AWS state from our store.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CaAdminView {
    id: String,
    subject: String,
    key_algorithm: String,
    /// `generated` or `imported`.
    source: String,
    is_issuing: bool,
    not_before: String,
    not_after: String,
    aws_certificate_id: String,
    certificate_pem: String,
    /// The stored AWS IoT registration, or null.
    aws: Option<AwsRegistration>,
}

fn view(record: CaRecord, aws: Option<AwsRegistration>) -> CaAdminView {
    CaAdminView {
        not_before: rfc3339_string(record.not_before),
        not_after: rfc3339_string(record.not_after),
        id: record.id,
        subject: record.subject,
        key_algorithm: record.key_algorithm,
        source: record.source,
        is_issuing: record.is_issuing,
        aws_certificate_id: record.aws_certificate_id,
        certificate_pem: record.certificate_pem,
        aws,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CaList {
    items: Vec<CaAdminView>,
}

/// List every CA
#[utoipa::path(
    get,
    path = "/v1/admin/cas",
    tag = "cas",
    operation_id = "list_cas",
    responses((status = 200, description = "Every CA, with its stored AWS registration",
        body = CaList)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<CaList>, ApiError> {
    caller.require(&[Role::Admin])?;
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
#[utoipa::path(
    get,
    path = "/v1/admin/cas/{id}",
    tag = "cas",
    operation_id = "get_ca",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "The CA", body = CaAdminView)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CaAdminView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let record = state
        .store
        .get_ca(&id)
        .await?
        .ok_or_else(|| ca_not_found(&id))?;
    let aws = state.store.get_aws_registration(&id).await?;
    Ok(Json(view(record, aws)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCa {
    /// Default `ecdsa-p256`.
    #[serde(default)]
    #[schema(value_type = super::openapi::schemas::CaAlgorithm)]
    algorithm: CaAlgorithm,
    #[schema(value_type = super::openapi::schemas::CaSubject)]
    subject: CaSubject,
    /// 1 to 36500, default 3650.
    #[serde(default = "default_validity")]
    #[schema(default = 3650, minimum = 1, maximum = 36500)]
    validity_days: i64,
    /// Make it the issuing CA at once (rotation).
    #[serde(default)]
    activate: bool,
}

fn default_validity() -> i64 {
    3650
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
    #[serde(default)]
    activate: bool,
}

/// Create a CA
///
/// Generates a root CA (`basicConstraints CA:TRUE`, `keyUsage keyCertSign, cRLSign,
/// digitalSignature`). With `activate`, it becomes the issuing CA at once in this process.
/// Audited as `ca.create`.
#[utoipa::path(
    post,
    path = "/v1/admin/cas",
    tag = "cas",
    operation_id = "create_ca",
    request_body = NewCa,
    responses((status = 201, description = "Created", body = CaAdminView)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<NewCa>,
) -> Result<Response, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    if !(1..=36_500).contains(&body.validity_days) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "validity_days must be between 1 and 36500",
        ));
    }
    let (record, ca) = state
        .authorities()
        .create(
            body.algorithm,
            &body.subject,
            body.validity_days,
            body.activate,
            actor(&admin.name, &request_id),
        )
        .await?;
    if record.is_issuing {
        state.issuance.set_issuing_ca(ca);
    }
    Ok((StatusCode::CREATED, Json(view(record, None))).into_response())
}

/// Import a CA certificate and its key
///
/// The key is written to an owner-only file and never returned. Audited as `ca.import`.
#[utoipa::path(
    post,
    path = "/v1/admin/cas/import",
    tag = "cas",
    operation_id = "import_ca",
    request_body = ImportCa,
    responses((status = 201, description = "Imported", body = CaAdminView)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<ImportCa>,
) -> Result<Response, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    let key_passphrase = match body.key_passphrase {
        Some(secret) => Some(
            Passphrase::new(
                Zeroizing::new(secret.expose().to_owned()),
                "the key_passphrase field",
            )
            .map_err(|e| ApiError::unprocessable("invalid_request", e.to_string()))?,
        ),
        None => None,
    };
    let (record, ca) = state
        .authorities()
        .import(
            &body.certificate_pem,
            &body.private_key_pem,
            key_passphrase,
            body.activate,
            actor(&admin.name, &request_id),
        )
        .await?;
    if record.is_issuing {
        state.issuance.set_issuing_ca(ca);
    }
    Ok((StatusCode::CREATED, Json(view(record, None))).into_response())
}

/// Rotation: the CA becomes the issuing one for new certificates in this process at once;
/// older CAs stay for reads, revocation and CRLs. Other replicas pick it up on restart.
#[utoipa::path(
    post,
    path = "/v1/admin/cas/{id}/activate",
    tag = "cas",
    operation_id = "activate_ca",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "The CA, now issuing", body = CaAdminView)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Json<CaAdminView>, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    let ca = state
        .authorities()
        .activate(&id, actor(&admin.name, &request_id))
        .await?;
    state.issuance.set_issuing_ca(ca);
    let record = state
        .store
        .get_ca(&id)
        .await?
        .ok_or_else(|| ca_not_found(&id))?;
    let aws = state.store.get_aws_registration(&id).await?;
    Ok(Json(view(record, aws)))
}

/// Check what AWS IoT or JITP would refuse
///
/// Reads only the store; works without AWS.
#[utoipa::path(
    get,
    path = "/v1/admin/cas/{id}/aws/preflight",
    tag = "aws",
    operation_id = "preflight_ca",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "Each check and its outcome",
        body = crate::provisioning::PreflightReport)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn preflight(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let report = state.provisioning().preflight(&id, None).await?;
    Ok(Json(report).into_response())
}

/// Register the CA in AWS IoT
///
/// With `mode: default`, a verification certificate whose CN is the registration code is sent
/// along. Idempotent: an already registered CA answers 200 with its stored registration and
/// the body is ignored. Audited as `ca.aws.register`.
#[utoipa::path(
    post,
    path = "/v1/admin/cas/{id}/aws/register",
    tag = "aws",
    operation_id = "register_ca_in_aws",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = AwsRegistration),
        (status = 200, description = "Already registered (refreshed from AWS)",
            body = AwsRegistration),
    ),
    security(("bearer_token" = ["admin"]))
)]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    let (registration, already) = state
        .provisioning()
        .register(&id, body, actor(&admin.name, &request_id))
        .await?;
    let status = if already {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(registration)).into_response())
}

/// Compare the stored registration with AWS IoT
#[utoipa::path(
    get,
    path = "/v1/admin/cas/{id}/aws",
    tag = "aws",
    operation_id = "get_ca_aws_state",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "`stored`, `live` and `drift`",
        body = crate::provisioning::RegistrationState)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn aws_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let s = state.provisioning().state(&id).await?;
    Ok(Json(s).into_response())
}

/// Change the CA's status or auto-registration in AWS IoT
///
/// Audited as `ca.aws.update`.
#[utoipa::path(
    patch,
    path = "/v1/admin/cas/{id}/aws",
    tag = "aws",
    operation_id = "update_ca_in_aws",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::StatusChange,
    responses((status = 200, description = "The stored registration", body = AwsRegistration)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<AwsRegistration>, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    Ok(Json(
        state
            .provisioning()
            .change_status(&id, body, actor(&admin.name, &request_id))
            .await?,
    ))
}

/// Deactivate and delete the CA in AWS IoT, and forget the registration
///
/// The CA, its key and its ledger rows stay. Audited as `ca.aws.delete`.
#[utoipa::path(
    delete,
    path = "/v1/admin/cas/{id}/aws",
    tag = "aws",
    operation_id = "deregister_ca_from_aws",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 204, description = "Deregistered")),
    security(("bearer_token" = ["admin"]))
)]
pub async fn deregister(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    state
        .provisioning()
        .deregister(&id, actor(&admin.name, &request_id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Attach or replace the CA's JITP template
///
/// The template is checked against the policy first. Audited as `ca.aws.template`.
#[utoipa::path(
    put,
    path = "/v1/admin/cas/{id}/aws/template",
    tag = "aws",
    operation_id = "attach_template",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::TemplateRequest,
    responses((status = 200, description = "The stored registration", body = AwsRegistration)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn attach_template(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TemplateRequest>,
) -> Result<Json<AwsRegistration>, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    Ok(Json(
        state
            .provisioning()
            .attach_template(&id, body, actor(&admin.name, &request_id))
            .await?,
    ))
}

/// Preview what JITP would create for one device
///
/// Reads only the store; works without AWS.
#[utoipa::path(
    post,
    path = "/v1/admin/cas/{id}/aws/template/preview",
    tag = "aws",
    operation_id = "preview_template",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::PreviewRequest,
    responses((status = 200, description = "The preview",
        body = crate::provisioning::PreviewAnswer)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> Result<Json<PreviewAnswer>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.provisioning().preview(&id, body).await?))
}

/// Record AWS IoT's view of each certificate of the CA
///
/// Pages through ListCertificatesByCA. Audited as `ca.aws.sync`.
#[utoipa::path(
    post,
    path = "/v1/admin/cas/{id}/aws/sync",
    tag = "aws",
    operation_id = "sync_ca_with_aws",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "What the sync found",
        body = crate::provisioning::SyncReport)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Json<SyncReport>, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    Ok(Json(
        state
            .provisioning()
            .sync(&id, actor(&admin.name, &request_id))
            .await?,
    ))
}

/// The `registrationConfig` file for `aws iot update-ca-certificate`
///
/// Reads only the store; works without AWS.
#[utoipa::path(
    get,
    path = "/v1/admin/cas/{id}/aws/registration-config",
    tag = "aws",
    operation_id = "get_registration_config",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "`{templateBody, roleArn}` or `{templateName}`",
        body = super::openapi::schemas::RegistrationConfig)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn registration_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(
        state.provisioning().registration_config_file(&id).await?,
    ))
}

fn actor<'a>(name: &'a str, request_id: &'a str) -> authorities::Actor<'a> {
    authorities::Actor {
        name,
        request_id: Some(request_id),
    }
}

fn ca_not_found(id: &str) -> ApiError {
    ApiError::not_found("ca_not_found", format!("no CA with id {id:?}"))
}

impl From<ProvisioningError> for ApiError {
    fn from(e: ProvisioningError) -> Self {
        use crate::aws::AwsError;
        let message = e.to_string();
        match e {
            ProvisioningError::NotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "aws_not_configured",
                message,
            ),
            ProvisioningError::CaNotFound(_) => ApiError::not_found("ca_not_found", message),
            ProvisioningError::NotRegistered(_) => {
                ApiError::new(StatusCode::CONFLICT, "aws_not_registered", message)
            }
            ProvisioningError::PreflightFailed(_) => {
                ApiError::unprocessable("preflight_failed", message)
            }
            ProvisioningError::Template(_) => ApiError::unprocessable("invalid_template", message),
            ProvisioningError::InvalidRequest(_) => {
                ApiError::unprocessable("invalid_request", message)
            }
            ProvisioningError::Aws(aws) => match aws {
                AwsError::AlreadyExists(_) => {
                    ApiError::new(StatusCode::CONFLICT, "aws_resource_already_exists", message)
                }
                AwsError::NotFound(_) => ApiError::not_found("aws_resource_not_found", message),
                AwsError::CertificateValidation(_) => {
                    ApiError::unprocessable("aws_certificate_validation", message)
                }
                AwsError::InvalidState(_) => {
                    ApiError::new(StatusCode::CONFLICT, "aws_invalid_state", message)
                }
                AwsError::InvalidRequest(_) => {
                    ApiError::unprocessable("aws_invalid_request", message)
                }
                AwsError::Unauthorized(_) => {
                    ApiError::new(StatusCode::BAD_GATEWAY, "aws_access_denied", message)
                }
                AwsError::Unavailable(_) => {
                    ApiError::new(StatusCode::BAD_GATEWAY, "aws_unavailable", message)
                }
            },
            ProvisioningError::Authority(e) => e.into(),
            ProvisioningError::Store(e) => e.into(),
        }
    }
}
