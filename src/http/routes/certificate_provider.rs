//! `/v1/admin/aws/certificate-providers`: the account's AWS IoT certificate provider, the
//! Lambda function that signs fleet-provisioning CSRs (docs/fleet-provisioning.md). Create,
//! describe, delete (admin); the request is checked against AWS's rules before AWS is called.
//! Creating and deleting are audited (`aws.certificate_provider.create`, `.delete`), AWS's
//! refusals too.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::aws::certificate_provider::{
    CREATE_CERTIFICATE_FROM_CSR, CertificateProvider, check_lambda_function_arn, check_name,
    check_operations,
};
use crate::aws::{AwsError, IotRegistry};
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{AdminCaller, ApiJson, ApiPath, ApiQuery};
use crate::http::route;
use crate::provisioning::ProvisioningError;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "aws";

/// The body of `POST /v1/admin/aws/certificate-providers`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCertificateProvider {
    /// 1 to 128 letters, digits and `_ = , @ -`.
    name: String,
    /// The function's ARN, `arn:aws:lambda:<region>:<account>:function:<name>[:<alias>]`.
    lambda_function_arn: String,
    /// Default and only value: `["CreateCertificateFromCsr"]`.
    #[serde(default = "default_operations")]
    account_default_for_operations: Vec<String>,
    /// The AWS target (`[aws.targets.<name>]`, or `default`) whose account and region get the
    /// provider; may be left out when only one target is configured.
    #[serde(default)]
    target: Option<String>,
}

/// `?target=<name>`: the AWS target whose account and region are meant; may be left out when
/// only one target is configured.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TargetQuery {
    target: Option<String>,
}

fn default_operations() -> Vec<String> {
    vec![CREATE_CERTIFICATE_FROM_CSR.to_owned()]
}

/// The 201 body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedCertificateProvider {
    name: String,
    arn: String,
}

fn registry<'a>(
    state: &'a AppState,
    target: Option<&str>,
) -> Result<&'a dyn IotRegistry, ApiError> {
    Ok(state.provisioning().one_target(target)?.registry.as_ref())
}

fn aws_error(e: AwsError) -> ApiError {
    ProvisioningError::Aws(e).into()
}

/// Create the account's certificate provider
///
/// After this, AWS IoT hands every `CreateCertificateFromCsr` call of the account (fleet
/// provisioning by claim) to the Lambda function (within a few minutes). An account has at
/// most one provider: a second is refused by AWS (`aws_invalid_request`,
/// LimitExceededException). Audited as `aws.certificate_provider.create`.
#[route(
    post,
    path = "/v1/admin/aws/certificate-providers",
    operation_id = "create_certificate_provider",
    request_body = CreateCertificateProvider,
    responses((status = 201, description = "Created in AWS IoT",
        body = CreatedCertificateProvider,
        headers(("Location" = String,
            description = "`/v1/admin/aws/certificate-providers/<name>`"))))
)]
pub async fn create(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<CreateCertificateProvider>,
) -> Result<Response, ApiError> {
    let checks = [
        check_name(&body.name),
        check_lambda_function_arn(&body.lambda_function_arn),
        check_operations(&body.account_default_for_operations),
    ];
    if let Some(Err(problem)) = checks.into_iter().find(Result::is_err) {
        return Err(ApiError::new(
            ErrorCode::InvalidCertificateProvider,
            problem,
        ));
    }
    let iot = registry(&state, body.target.as_deref())?;
    let result = iot
        .create_certificate_provider(
            &body.name,
            &body.lambda_function_arn,
            &body.account_default_for_operations,
        )
        .await;
    let detail = match &result {
        Ok(_) => format!("lambda_function_arn={}", body.lambda_function_arn),
        Err(e) => e.to_string(),
    };
    admin
        .actor()
        .record(
            &state.store,
            "aws.certificate_provider.create",
            Some(&body.name),
            result.is_ok(),
            Some(&detail),
        )
        .await?;
    let arn = result.map_err(aws_error)?;
    let location = HeaderValue::from_str(&format!(
        "/v1/admin/aws/certificate-providers/{}",
        body.name
    ))
    .map_err(|_| ApiError::internal("the provider's name is not a valid header value"))?;
    let mut response = (
        StatusCode::CREATED,
        Json(CreatedCertificateProvider {
            name: body.name,
            arn,
        }),
    )
        .into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(|p| ApiError::new(ErrorCode::InvalidCertificateProvider, p))
}

/// Describe the account's certificate provider
///
/// As AWS IoT has it now (DescribeCertificateProvider); `aws_resource_not_found` when there is
/// no provider of that name.
#[route(
    get,
    path = "/v1/admin/aws/certificate-providers/{name}",
    operation_id = "describe_certificate_provider",
    params(("name" = String, Path, description = "The provider's name"), TargetQuery),
    responses((status = 200, description = "The provider", body = CertificateProvider))
)]
pub async fn describe(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<TargetQuery>,
) -> Result<Json<CertificateProvider>, ApiError> {
    checked_name(&name)?;
    let iot = registry(&state, query.target.as_deref())?;
    Ok(Json(
        iot.describe_certificate_provider(&name)
            .await
            .map_err(aws_error)?,
    ))
}

/// Delete the account's certificate provider
///
/// `CreateCertificateFromCsr` goes back to AWS IoT's own CA (within a few minutes). Audited as
/// `aws.certificate_provider.delete`.
#[route(
    delete,
    path = "/v1/admin/aws/certificate-providers/{name}",
    operation_id = "delete_certificate_provider",
    params(("name" = String, Path, description = "The provider's name"), TargetQuery),
    responses((status = 204, description = "Deleted in AWS IoT"))
)]
pub async fn delete(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<TargetQuery>,
) -> Result<StatusCode, ApiError> {
    checked_name(&name)?;
    let iot = registry(&state, query.target.as_deref())?;
    let result = iot.delete_certificate_provider(&name).await;
    let detail = result.as_ref().err().map(ToString::to_string);
    admin
        .actor()
        .record(
            &state.store,
            "aws.certificate_provider.delete",
            Some(&name),
            result.is_ok(),
            detail.as_deref(),
        )
        .await?;
    result.map_err(aws_error)?;
    Ok(StatusCode::NO_CONTENT)
}
