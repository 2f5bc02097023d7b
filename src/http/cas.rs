//! Admin endpoints for CAs and their AWS IoT registration. Thin: each handler checks the role,
//! calls [`crate::authorities`] or [`crate::provisioning`], and shapes the answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, Caller, RequestId};
use super::rfc3339_string;
use crate::app::AppState;
use crate::auth::Role;
use crate::authorities;
use crate::ca::{CaAlgorithm, CaSubject};
use crate::provisioning::{
    PreviewAnswer, PreviewRequest, ProvisioningError, RegisterRequest, StatusChange, SyncReport,
    TemplateRequest,
};
use crate::store::CaRecord;
use crate::store::aws::AwsRegistration;

/// A CA as the admin API shows it, with its AWS state from our store.
#[derive(Serialize)]
pub struct CaAdminView {
    id: String,
    subject: String,
    key_algorithm: String,
    source: String,
    is_issuing: bool,
    not_before: String,
    not_after: String,
    aws_certificate_id: String,
    certificate_pem: String,
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

#[derive(Serialize)]
pub struct CaList {
    items: Vec<CaAdminView>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCa {
    #[serde(default)]
    algorithm: CaAlgorithm,
    subject: CaSubject,
    #[serde(default = "default_validity")]
    validity_days: i64,
    /// Make it the issuing CA at once (rotation).
    #[serde(default)]
    activate: bool,
}

fn default_validity() -> i64 {
    3650
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportCa {
    certificate_pem: String,
    /// Sent once over the admin API and written to an owner-only file; never returned.
    private_key_pem: String,
    #[serde(default)]
    activate: bool,
}

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

pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<ImportCa>,
) -> Result<Response, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    let (record, ca) = state
        .authorities()
        .import(
            &body.certificate_pem,
            &body.private_key_pem,
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

pub async fn preflight(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let report = state.provisioning().preflight(&id, None).await?;
    Ok(Json(report).into_response())
}

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

pub async fn aws_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let s = state.provisioning().state(&id).await?;
    Ok(Json(s).into_response())
}

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

pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> Result<Json<PreviewAnswer>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.provisioning().preview(&id, body).await?))
}

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
