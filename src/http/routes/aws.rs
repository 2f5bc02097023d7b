//! `/v1/admin/cas/{id}/aws...`: a CA's AWS IoT registration, its JITP template, and the sync
//! (admin). Thin: each handler calls [`crate::provisioning`] and shapes the answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminCaller, ApiJson, ApiPath, ApiQuery, ViewerCaller};
use crate::http::route;
use crate::provisioning::{
    DeregisterOutcome, PreviewAnswer, PreviewRequest, RegisterOutcome, RegisterRequest,
    StateOutcome, StatusChange, SyncJobs, SyncOutcome, TemplateOutcome, TemplateRequest,
};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "aws";

/// `?targets=eu,us`: the AWS targets to act on; absent: all of them.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TargetParams {
    /// AWS target names, comma-separated (`[aws.targets.<name>]`, or `default`); absent: every
    /// configured target.
    targets: Option<String>,
}

impl TargetParams {
    fn names(&self) -> Option<Vec<String>> {
        self.targets.as_ref().map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

/// Check what AWS IoT or JITP would refuse
///
/// Reads only the store; works without AWS.
#[route(
    get,
    path = "/v1/admin/cas/{id}/aws/preflight",
    operation_id = "preflight_ca",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "Each check and its outcome",
        body = crate::provisioning::PreflightReport))
)]
pub async fn preflight(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let report = state.provisioning().preflight(&id, None).await?;
    Ok(Json(report).into_response())
}

/// The issuing CA's AWS IoT drift, for the dashboard
///
/// Asks AWS IoT (DescribeCACertificate) now and names each difference from what factory-ca set.
/// Viewers see AWS's status, auto-registration and the drift, not the template or role.
#[route(
    get,
    path = "/v1/ca/aws",
    operation_id = "get_issuing_ca_aws_drift",
    responses((status = 200, description = "AWS's status and the drift, checked now",
        body = IssuingCaAws))
)]
pub async fn issuing_ca_drift(
    State(state): State<AppState>,
    _viewer: ViewerCaller,
) -> Result<Json<IssuingCaAws>, ApiError> {
    let ca_id = state.issuance.issuing_ca().id().to_owned();
    let s = state.provisioning().state(&ca_id, None).await?.primary;
    Ok(Json(IssuingCaAws {
        registered: s.stored.is_some(),
        live_status: s.live.as_ref().map(|l| l.status.clone()),
        live_auto_registration: s
            .live
            .as_ref()
            .map(|l| l.auto_registration_status == "ENABLE"),
        drift: s.drift,
        checked_at: crate::store::Timestamp::now().rfc3339(),
        ca_id,
    }))
}

/// `GET /v1/ca/aws`: what AWS IoT says of the issuing CA now, without the template or role.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct IssuingCaAws {
    pub ca_id: String,
    /// Whether factory-ca registered the CA in AWS IoT.
    pub registered: bool,
    /// AWS's status now, `ACTIVE` or `INACTIVE`; null when not registered or when AWS no
    /// longer knows the CA.
    pub live_status: Option<String>,
    /// Whether AWS has auto-registration on now; null as for `live_status`.
    pub live_auto_registration: Option<bool>,
    /// Each difference between what factory-ca set and what AWS reports, in words.
    pub drift: Vec<String>,
    /// When AWS was asked (RFC 3339).
    pub checked_at: String,
}

/// Register the CA in AWS IoT
///
/// With `mode: default`, a verification certificate whose CN is the registration code of each
/// target's account is sent along. `targets` selects the AWS targets (default: all). Idempotent
/// per target: where the CA is registered already, its registration is refreshed and the body
/// ignored; 200 when that is so in every target. A failing target does not stop the others: it
/// is named in `failed_targets`, and the same call again registers only there. Only when every
/// target failed is the answer an error (the first target's). Audited as `ca.aws.register`.
#[route(
    post,
    path = "/v1/admin/cas/{id}/aws/register",
    operation_id = "register_ca_in_aws",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::RegisterRequest,
    responses(
        (status = 201, description = "Registered in at least one target: the registration \
            as AWS has it (the `default` target's, or the first that succeeded), each requested \
            setting beside AWS's, the differences, JITP warnings, and each target's outcome \
            (`targets`, `failed_targets`)", body = RegisterOutcome),
        (status = 200, description = "Already registered in every selected target (refreshed \
            from AWS; the body is ignored)", body = RegisterOutcome),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let (registration, already) = state
        .provisioning()
        .register(&id, body, admin.actor())
        .await?;
    let status = if already {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(registration)).into_response())
}

/// Compare the stored registration with AWS IoT
#[route(
    get,
    path = "/v1/admin/cas/{id}/aws",
    operation_id = "get_ca_aws_state",
    params(("id" = String, Path, description = "A CA id"), TargetParams),
    responses((status = 200, description = "`stored`, `live` and `drift` of the `default` \
        target (or the only or first one the CA is registered in), and per target \
        (`targets`, with the last attempt and what failed)", body = StateOutcome))
)]
pub async fn aws_state(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<TargetParams>,
) -> Result<Response, ApiError> {
    let s = state
        .provisioning()
        .state(&id, params.names().as_deref())
        .await?;
    Ok(Json(s).into_response())
}

/// Change the CA's status or auto-registration in AWS IoT
///
/// In every target the CA is registered in, or those of `targets`; per target outcome as for
/// register. Audited as `ca.aws.update`.
#[route(
    patch,
    path = "/v1/admin/cas/{id}/aws",
    operation_id = "update_ca_in_aws",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::StatusChange,
    responses((status = 200, description = "The registration as AWS has it after the change, \
        each requested setting beside AWS's, the differences and JITP warnings, and each \
        target's outcome", body = RegisterOutcome))
)]
pub async fn change_status(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<RegisterOutcome>, ApiError> {
    Ok(Json(
        state
            .provisioning()
            .change_status(&id, body, admin.actor())
            .await?,
    ))
}

/// Deactivate and delete the CA in AWS IoT, and forget the registration
///
/// In every target the CA is registered in, or those of `?targets=`. The CA, its key and its
/// ledger rows stay. Audited as `ca.aws.delete`.
#[route(
    delete,
    path = "/v1/admin/cas/{id}/aws",
    operation_id = "deregister_ca_from_aws",
    params(("id" = String, Path, description = "A CA id"), TargetParams),
    responses(
        (status = 204, description = "Deregistered from every selected target"),
        (status = 200, description = "Deregistered from some targets; the others failed \
            (`failed_targets`) and keep their registration", body = DeregisterOutcome),
    )
)]
pub async fn deregister(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<TargetParams>,
) -> Result<Response, ApiError> {
    match state
        .provisioning()
        .deregister(&id, params.names().as_deref(), admin.actor())
        .await?
    {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(partial) => Ok((StatusCode::OK, Json(partial)).into_response()),
    }
}

/// Attach or replace the CA's JITP template
///
/// The template is checked against the policy first, then attached in every target the CA is
/// registered in (or those of `targets`); a target whose stored registration has this
/// template already is left as it is when there are several. Audited as `ca.aws.template`.
#[route(
    put,
    path = "/v1/admin/cas/{id}/aws/template",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::TemplateRequest,
    responses((status = 200, description = "The stored registration (the `default` target's, \
        or the first that succeeded) and each target's outcome", body = TemplateOutcome))
)]
pub async fn attach_template(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TemplateRequest>,
) -> Result<Json<TemplateOutcome>, ApiError> {
    Ok(Json(
        state
            .provisioning()
            .attach_template(&id, body, admin.actor())
            .await?,
    ))
}

/// Preview what JITP would create for one device
///
/// Reads only the store; works without AWS.
#[route(
    post,
    path = "/v1/admin/cas/{id}/aws/template/preview",
    operation_id = "preview_template",
    params(("id" = String, Path, description = "A CA id")),
    request_body = crate::provisioning::PreviewRequest,
    responses((status = 200, description = "The preview",
        body = crate::provisioning::PreviewAnswer))
)]
pub async fn preview(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> Result<Json<PreviewAnswer>, ApiError> {
    Ok(Json(state.provisioning().preview(&id, body).await?))
}

/// `?targets=eu,us&wait=false`: the targets to sync, and whether to answer before the sync ends.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncParams {
    /// AWS target names, comma-separated (`[aws.targets.<name>]`, or `default`); absent: every
    /// target the CA is registered in.
    targets: Option<String>,
    /// `false`: start the sync in the background and answer 202 at once, with its progress
    /// at `Location`; absent or `true`: answer when the sync has ended.
    wait: Option<bool>,
}

/// Record AWS IoT's view of each certificate of the CA
///
/// Pages through ListCertificatesByCA in every target the CA is registered in (or those of
/// `?targets=`). By default the answer comes when every target's sync has ended. With
/// `?wait=false` the sync runs in the background (resuming at its stored page after a restart)
/// and the answer is 202 with `Location` naming its progress (GET on the same path); where a
/// sync of the CA is running already, that one goes on. One sync per CA and target runs at a
/// time, across replicas too: a target whose sync another request or process holds answers
/// `aws_sync_running` in its entry. Audited as `ca.aws.sync` when a sync ends, and as
/// `ca.aws.sync_started` when one is started in the background.
#[route(
    post,
    path = "/v1/admin/cas/{id}/aws/sync",
    operation_id = "sync_ca_with_aws",
    params(("id" = String, Path, description = "A CA id"), SyncParams),
    responses(
        (status = 200, description = "What the sync found (the `default` target's, or the first \
            that succeeded) and per target", body = SyncOutcome),
        (status = 202, description = "`?wait=false`: the sync runs in the background; `Location` \
            names its progress, which the body shows as it was at the start",
            body = SyncJobs, headers(("Location" = String,
                description = "The progress of the sync: `/v1/admin/cas/{id}/aws/sync`"))),
    )
)]
pub async fn sync(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<SyncParams>,
) -> Result<Response, ApiError> {
    let targets = TargetParams {
        targets: params.targets,
    };
    let provisioning = state.provisioning();
    if params.wait == Some(false) {
        let started = provisioning
            .start_sync(&id, targets.names().as_deref(), admin.actor())
            .await?;
        // A stored CA's id (`ca-` and hex) is a path segment as it is.
        let location = format!("/v1/admin/cas/{}/aws/sync", started.ca_id);
        return Ok((
            StatusCode::ACCEPTED,
            [(axum::http::header::LOCATION, location)],
            Json(started),
        )
            .into_response());
    }
    let outcome = provisioning
        .sync(&id, targets.names().as_deref(), admin.actor())
        .await?;
    Ok(Json(outcome).into_response())
}

/// The CA's syncs with AWS IoT: running, finished or failed, per target
///
/// The latest sync in each target (or those of `?targets=`): its state, the pages and
/// certificates done so far (a running sync's grow page by page), when it started and was last
/// updated, when it ended, and what failed with AWS's error code and message. `claimed` is
/// false while a running sync waits for a process to take it (after a restart, for up to the
/// lease of 30 seconds when the process before was killed). Reads only the store.
#[route(
    get,
    path = "/v1/admin/cas/{id}/aws/sync",
    operation_id = "get_ca_aws_sync",
    params(("id" = String, Path, description = "A CA id"), TargetParams),
    responses((status = 200, description = "The latest sync in each target", body = SyncJobs))
)]
pub async fn sync_progress(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<TargetParams>,
) -> Result<Json<SyncJobs>, ApiError> {
    Ok(Json(
        state
            .provisioning()
            .sync_jobs(&id, params.names().as_deref())
            .await?,
    ))
}

/// The `registrationConfig` file for `aws iot update-ca-certificate`
///
/// Reads only the store; works without AWS.
#[route(
    get,
    path = "/v1/admin/cas/{id}/aws/registration-config",
    operation_id = "get_registration_config",
    params(("id" = String, Path, description = "A CA id")),
    responses((status = 200, description = "`{templateBody, roleArn}` or `{templateName}`",
        body = crate::aws::RegistrationConfig))
)]
pub async fn registration_config(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        state.provisioning().registration_config_file(&id).await?,
    ))
}
