//! The OpenAPI 3.1 description of the API, served at `GET /openapi.json`. It is generated from
//! the code: the paths and operations from the `#[route]` (`#[utoipa::path]`) attribute of
//! each handler registered in [`super::api_routes`] (the route table itself, so a served route is a
//! documented one), the bodies from the `ToSchema` derives of the request and response types,
//! and the errors from [`ErrorCode`] and [`OPERATION_ERRORS`], which [`document`] turns into
//! `application/problem+json` responses of each operation.
//!
//! Roles are stated as the scopes of each operation's security requirement, which OpenAPI 3.1
//! allows for non-OAuth schemes ("a list of role names which are required for the execution"):
//! `bearer_token: [viewer, admin]` means a viewer or an admin token. An operation with an empty
//! requirement (`{}`) needs no credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::error_code::ErrorCode;
use super::route;

/// The parts of the document that no handler states: title, description, tags, and the
/// schemas no handler names directly.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "factory-ca",
        description = "Private CA and signing backend of a device factory for AWS IoT \
            Just-In-Time Provisioning. Errors are RFC 9457 `application/problem+json` bodies \
            (schema `Problem`) with a stable `code`; every response carries `x-request-id`."
    ),
    components(schemas(super::error::Problem)),
    tags(
        (name = "stations", description = "Certificate issuance for factory stations"),
        (name = "ledger", description = "The issuance ledger, the issuing CA and statistics"),
        (name = "tokens", description = "API tokens and the audit log (admin)"),
        (name = "cas", description = "CA management (admin)"),
        (name = "aws", description = "AWS IoT registration of a CA and its JITP template (admin)"),
        (name = "revocation", description = "Revocation and CRLs"),
        (name = "est", description = "EST enrollment (RFC 7030), HTTPS only; errors are text/plain"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "dashboard", description = "The built-in dashboard page and its session"),
    )
)]
pub struct ApiDoc;

/// The security scheme of API tokens, named in every authenticated operation.
pub const BEARER: &str = "bearer_token";
/// The dashboard's session cookie: GET and HEAD only, always as a viewer.
pub const SESSION_COOKIE: &str = "session_cookie";
/// A verified station client certificate, when `[server.tls]` asks for one: role station.
pub const STATION_CERTIFICATE: &str = "station_certificate";
/// HTTP Basic whose password is a station token: EST enrollment only.
pub const STATION_BASIC: &str = "station_basic";
/// The device's own certificate as the TLS client certificate: EST simplereenroll only.
pub const DEVICE_CERTIFICATE: &str = "device_certificate";

/// Errors of a JSON request body (axum's extractor, the body limit).
const JSON_BODY: &[ErrorCode] = &[
    ErrorCode::InvalidRequest,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UnsupportedMediaType,
];
const STORE: &[ErrorCode] = &[ErrorCode::StoreUnavailable];
const CA_NOT_FOUND: &[ErrorCode] = &[ErrorCode::CaNotFound];
/// Errors of a route that calls AWS IoT (see `ProvisioningError` in `src/http/cas.rs`).
const AWS_CALL: &[ErrorCode] = &[
    ErrorCode::AwsResourceNotFound,
    ErrorCode::AwsNotRegistered,
    ErrorCode::UnknownAwsTarget,
    ErrorCode::AwsResourceAlreadyExists,
    ErrorCode::AwsInvalidState,
    ErrorCode::AwsCertificateValidation,
    ErrorCode::AwsInvalidRequest,
    ErrorCode::AwsAccessDenied,
    ErrorCode::AwsUnavailable,
    ErrorCode::AwsNotConfigured,
];
/// The policy and CSR errors of an issuance (`From<CsrError>`, `From<PolicyViolation>`,
/// `From<IssuanceError>` in `src/http/error.rs`).
const ISSUANCE: &[ErrorCode] = &[
    ErrorCode::InvalidCsr,
    ErrorCode::CsrSignatureInvalid,
    ErrorCode::InvalidIdempotencyKey,
    ErrorCode::ThingAlreadyProvisioned,
    ErrorCode::UnsupportedKey,
    ErrorCode::MissingCommonName,
    ErrorCode::InvalidThingName,
    ErrorCode::MissingCountry,
    ErrorCode::InvalidCountry,
    ErrorCode::SubjectAttributeNotAllowed,
    ErrorCode::InvalidSubjectAttribute,
    ErrorCode::MissingSubjectAttribute,
    ErrorCode::NameConstraintsViolation,
    ErrorCode::IdempotencyKeyReused,
    ErrorCode::RateLimited,
    ErrorCode::CaUnavailable,
    ErrorCode::SignerUnavailable,
];

/// Every EST route refuses plain HTTP (RFC 7030 section 3.3).
const EST: &[ErrorCode] = &[ErrorCode::HttpsRequired];

/// An EST label that `[est.labels]` does not name.
const EST_LABEL: &[ErrorCode] = &[ErrorCode::EstLabelNotFound];

/// EST enrollment by a station, besides the issuance errors.
const EST_ENROLL: &[ErrorCode] = &[
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::DeviceCertificateNotAllowed,
    ErrorCode::InvalidTransferEncoding,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UnsupportedMediaType,
];

/// EST renewal by a device, besides the issuance errors.
const EST_REENROLL: &[ErrorCode] = &[
    ErrorCode::DeviceCertificateRequired,
    ErrorCode::CertificateUnknown,
    ErrorCode::CertificateRevoked,
    ErrorCode::CertificateExpired,
    ErrorCode::CertificateSuperseded,
    ErrorCode::RenewalSubjectMismatch,
    ErrorCode::InvalidTransferEncoding,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UnsupportedMediaType,
];

/// The errors each operation can return besides the ones [`document`] adds to all of them
/// (401/403 from its security requirement, 500 `internal_error`, 503 `request_timeout`, 503
/// `overloaded` except on the health checks). Keyed by `"METHOD /path"` as in the document; a
/// test fails when an operation has no entry or an entry names no operation.
/// `(status, code)` pairs an operation can answer with.
pub type Errors = &'static [ErrorCode];

pub const OPERATION_ERRORS: &[(&str, &[Errors])] = &[
    ("POST /v1/certificates", &[JSON_BODY, ISSUANCE, STORE]),
    ("GET /v1/certificates", &[&[ErrorCode::InvalidQuery], STORE]),
    (
        "GET /v1/certificates/export.csv",
        &[&[ErrorCode::InvalidQuery], STORE],
    ),
    (
        "GET /v1/certificates/{serial}",
        &[&[ErrorCode::CertificateNotFound], STORE],
    ),
    ("GET /v1/stats", &[&[ErrorCode::InvalidQuery], STORE]),
    ("GET /v1/ca", &[]),
    ("GET /v1/ca/aws", &[AWS_CALL, STORE]),
    ("GET /v1/ca.pem", &[]),
    ("GET /v1/ledger/audit-key.pem", &[]),
    (
        "POST /v1/admin/tokens",
        &[
            JSON_BODY,
            &[ErrorCode::TokenNameTaken, ErrorCode::InvalidTokenName],
            STORE,
        ],
    ),
    ("GET /v1/admin/tokens", &[STORE]),
    (
        "DELETE /v1/admin/tokens/{name}",
        &[&[ErrorCode::TokenNotFound], STORE],
    ),
    ("GET /v1/admin/audit", &[&[ErrorCode::InvalidQuery], STORE]),
    ("GET /v1/admin/cas", &[STORE]),
    (
        "POST /v1/admin/cas",
        &[
            JSON_BODY,
            CA_NOT_FOUND,
            &[
                ErrorCode::CaAlreadyExists,
                ErrorCode::UnprocessableRequest,
                ErrorCode::CaRejected,
                ErrorCode::SignerUnavailable,
            ],
            STORE,
        ],
    ),
    (
        "POST /v1/admin/cas/import",
        &[
            JSON_BODY,
            &[
                ErrorCode::CaAlreadyExists,
                ErrorCode::UnprocessableRequest,
                ErrorCode::CaRejected,
            ],
            STORE,
        ],
    ),
    ("GET /v1/admin/cas/{id}", &[CA_NOT_FOUND, STORE]),
    (
        "POST /v1/admin/cas/{id}/activate",
        &[
            CA_NOT_FOUND,
            &[ErrorCode::CaRejected, ErrorCode::SignerUnavailable],
            STORE,
        ],
    ),
    (
        "GET /v1/admin/cas/{id}/aws/preflight",
        &[CA_NOT_FOUND, STORE],
    ),
    (
        "POST /v1/admin/cas/{id}/aws/register",
        &[
            JSON_BODY,
            CA_NOT_FOUND,
            &[
                ErrorCode::UnprocessableRequest,
                ErrorCode::InvalidTemplate,
                ErrorCode::PreflightFailed,
                ErrorCode::SignerUnavailable,
            ],
            AWS_CALL,
            STORE,
        ],
    ),
    (
        "GET /v1/admin/cas/{id}/aws",
        &[CA_NOT_FOUND, AWS_CALL, STORE],
    ),
    (
        "PATCH /v1/admin/cas/{id}/aws",
        &[
            JSON_BODY,
            CA_NOT_FOUND,
            &[ErrorCode::UnprocessableRequest],
            AWS_CALL,
            STORE,
        ],
    ),
    (
        "DELETE /v1/admin/cas/{id}/aws",
        &[CA_NOT_FOUND, AWS_CALL, STORE],
    ),
    (
        "PUT /v1/admin/cas/{id}/aws/template",
        &[
            JSON_BODY,
            CA_NOT_FOUND,
            &[
                ErrorCode::UnprocessableRequest,
                ErrorCode::InvalidTemplate,
                ErrorCode::PreflightFailed,
            ],
            AWS_CALL,
            STORE,
        ],
    ),
    (
        "POST /v1/admin/cas/{id}/aws/template/preview",
        &[
            JSON_BODY,
            CA_NOT_FOUND,
            &[ErrorCode::UnprocessableRequest, ErrorCode::InvalidTemplate],
            STORE,
        ],
    ),
    (
        "GET /v1/admin/cas/{id}/aws/registration-config",
        &[CA_NOT_FOUND, &[ErrorCode::UnprocessableRequest], STORE],
    ),
    ("GET /v1/admin/health", &[STORE]),
    ("GET /v1/ca/health", &[STORE]),
    (
        "POST /v1/admin/aws/certificate-providers",
        &[&[ErrorCode::InvalidCertificateProvider], AWS_CALL, STORE],
    ),
    (
        "GET /v1/admin/aws/certificate-providers/{name}",
        &[&[ErrorCode::InvalidCertificateProvider], AWS_CALL],
    ),
    (
        "DELETE /v1/admin/aws/certificate-providers/{name}",
        &[&[ErrorCode::InvalidCertificateProvider], AWS_CALL, STORE],
    ),
    (
        "POST /v1/admin/cas/{id}/aws/sync",
        &[
            &[ErrorCode::InvalidQuery, ErrorCode::AwsSyncRunning],
            CA_NOT_FOUND,
            AWS_CALL,
            STORE,
        ],
    ),
    (
        "GET /v1/admin/cas/{id}/aws/sync",
        &[
            &[
                ErrorCode::InvalidQuery,
                ErrorCode::UnknownAwsTarget,
                ErrorCode::AwsNotConfigured,
            ],
            CA_NOT_FOUND,
            STORE,
        ],
    ),
    (
        "POST /v1/admin/certificates/{serial}/revoke",
        &[
            JSON_BODY,
            &[
                ErrorCode::CertificateNotFound,
                ErrorCode::CertificateAlreadyRevoked,
                ErrorCode::InvalidRevocationReason,
            ],
            STORE,
        ],
    ),
    (
        "POST /v1/admin/revocations",
        &[
            JSON_BODY,
            CA_NOT_FOUND,
            &[
                ErrorCode::InvalidIdempotencyKey,
                ErrorCode::InvalidRevocationReason,
                ErrorCode::InvalidRevocationFilter,
                ErrorCode::RevocationListTooLong,
                ErrorCode::IdempotencyKeyReused,
            ],
            STORE,
        ],
    ),
    (
        "GET /v1/admin/revocations/{id}",
        &[&[ErrorCode::RevocationJobNotFound], STORE],
    ),
    (
        "GET /v1/cas/{id}/crl",
        &[
            &[
                ErrorCode::InvalidQuery,
                ErrorCode::CaCannotSignCrls,
                ErrorCode::SignerUnavailable,
            ],
            CA_NOT_FOUND,
            STORE,
        ],
    ),
    ("GET /.well-known/est/cacerts", &[EST]),
    ("GET /.well-known/est/csrattrs", &[EST]),
    ("GET /.well-known/est/{label}/cacerts", &[EST, EST_LABEL]),
    ("GET /.well-known/est/{label}/csrattrs", &[EST, EST_LABEL]),
    (
        "POST /.well-known/est/{label}/simpleenroll",
        &[EST, EST_LABEL, EST_ENROLL, ISSUANCE, STORE],
    ),
    (
        "POST /.well-known/est/simplereenroll",
        &[EST, EST_REENROLL, ISSUANCE, STORE],
    ),
    (
        "POST /.well-known/est/{label}/simplereenroll",
        &[EST, EST_LABEL, EST_REENROLL, ISSUANCE, STORE],
    ),
    (
        "POST /.well-known/est/simpleenroll",
        &[EST, EST_ENROLL, ISSUANCE, STORE],
    ),
    (
        "GET /v1/cas/{id}/delta-crl",
        &[
            &[
                ErrorCode::InvalidQuery,
                ErrorCode::CaCannotSignCrls,
                ErrorCode::SignerUnavailable,
            ],
            CA_NOT_FOUND,
            STORE,
        ],
    ),
    ("GET /healthz", &[]),
    ("GET /readyz", &[]),
    ("GET /metrics", &[&[ErrorCode::NotFound]]),
    ("GET /openapi.json", &[]),
    ("GET /", &[]),
    ("GET /dashboard/app.js", &[]),
    ("GET /dashboard/app.css", &[]),
    ("GET /dashboard/favicon.svg", &[]),
    (
        "POST /v1/session",
        &[
            JSON_BODY,
            &[
                ErrorCode::Unauthorized,
                ErrorCode::Forbidden,
                ErrorCode::RateLimited,
            ],
            STORE,
        ],
    ),
    ("DELETE /v1/session", &[STORE]),
    ("GET /v1/session", &[&[ErrorCode::Unauthorized], STORE]),
];

/// Paths the load shedder exempts (see `shed_load` in `src/http/mod.rs`).
const NOT_SHED: &[&str] = &["/healthz", "/readyz"];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The whole document: the routes of [`super::api_routes`] with their schemas, the security
/// schemes, and every operation's roles and error responses. Built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let openapi = super::api_routes().into_openapi();
        let mut doc = serde_json::to_value(&openapi).expect("the OpenAPI document is JSON");
        finish(&mut doc);
        doc
    })
}

/// Adds what the attributes cannot say on their own: the crate version, the security schemes,
/// the `code` values of `Problem`, and each operation's roles and error responses.
fn finish(doc: &mut Value) {
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    doc["info"]["license"] = json!({"name": "Apache-2.0", "identifier": "Apache-2.0"});
    let components = &mut doc["components"];
    components["securitySchemes"] = json!({
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer fca_<43 base64url characters>`. \
                The scopes of a requirement are the roles that may call the operation \
                (`station`, `viewer`, `admin`). A missing, unknown or revoked token gets 401 \
                `unauthorized` with `WWW-Authenticate: Bearer`; a token of another role gets \
                403 `forbidden`."
        },
        SESSION_COOKIE: {
            "type": "apiKey",
            "in": "cookie",
            "name": super::routes::dashboard::SESSION_COOKIE,
            "description": "The dashboard's session (`POST /v1/session`): a random session id \
                kept on the server, not the token. It authenticates GET and HEAD requests only, \
                and only for viewer tokens, until sign-out, the token's revocation or 8 hours."
        },
        STATION_BASIC: {
            "type": "http",
            "scheme": "basic",
            "description": "EST enrollment only: HTTP Basic whose password is a station token \
                (`curl -u <station>:<token>`); the user name is not checked. Viewer and admin \
                tokens get 403 `forbidden`."
        },
        DEVICE_CERTIFICATE: {
            "type": "mutualTLS",
            "description": "EST simplereenroll only: the device's current certificate, issued \
                by one of factory-ca's CAs, as the TLS client certificate. Every other route \
                refuses a device certificate with 403 `device_certificate_not_allowed`."
        },
        STATION_CERTIFICATE: {
            "type": "mutualTLS",
            "description": "A client certificate verified by `[server.tls]`, when configured: \
                role `station`, named `cert:<CN>` after its CN. An `Authorization` header \
                takes precedence."
        }
    });
    let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    components["schemas"]["Problem"]["properties"]["code"]["enum"] = json!(codes);

    let errors: BTreeMap<&str, Vec<ErrorCode>> = OPERATION_ERRORS
        .iter()
        .map(|(key, groups)| {
            (
                *key,
                groups.iter().flat_map(|g| g.iter().copied()).collect(),
            )
        })
        .collect();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(operation) = item.get_mut(method) else {
                continue;
            };
            let key = format!("{} {path}", method.to_ascii_uppercase());
            let mut own = errors.get(key.as_str()).cloned().unwrap_or_default();
            own.extend(common_errors(path, operation));
            add_request_id_parameter(operation);
            add_cookie_and_certificate_alternatives(method, operation);
            state_roles(operation);
            add_error_responses(operation, &own);
        }
    }
}

/// Every operation takes an `x-request-id` (see `assign_request_id` in `src/http/extract.rs`).
fn add_request_id_parameter(operation: &mut Value) {
    if !operation["parameters"].is_array() {
        operation["parameters"] = json!([]);
    }
    operation["parameters"]
        .as_array_mut()
        .expect("parameters is an array")
        .push(json!({
            "name": "x-request-id",
            "in": "header",
            "required": false,
            "description": "1-128 characters of A-Z a-z 0-9 . _ : - starting with a letter or \
                digit, kept as the request id and echoed in the response and in error bodies; \
                otherwise a UUID is generated",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"}
        }));
}

/// The bearer scopes of an operation, or `None` when it needs no credentials.
fn bearer_roles(operation: &Value) -> Option<Vec<String>> {
    let requirements = operation.get("security")?.as_array()?;
    requirements.iter().find_map(|r| {
        r.get(BEARER)?.as_array().map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
    })
}

/// The errors every operation shares, from its security requirement and the router's layers.
fn common_errors(path: &str, operation: &Value) -> Vec<ErrorCode> {
    let mut common = Vec::new();
    if let Some(roles) = bearer_roles(operation) {
        common.push(ErrorCode::Unauthorized);
        if !["station", "viewer", "admin"]
            .iter()
            .all(|r| roles.iter().any(|x| x == r))
        {
            common.push(ErrorCode::Forbidden);
        }
    }
    // A path parameter with a control character is refused by `ApiPath` (404 `not_found`).
    if path.contains('{') {
        common.push(ErrorCode::NotFound);
    }
    common.push(ErrorCode::InternalError);
    common.push(ErrorCode::RequestTimeout);
    if !NOT_SHED.contains(&path) {
        common.push(ErrorCode::Overloaded);
    }
    common
}

/// A viewer route also takes the dashboard's session cookie on GET; a station route also takes
/// a station client certificate (see `Caller` in `src/http/extract.rs`).
fn add_cookie_and_certificate_alternatives(method: &str, operation: &mut Value) {
    let Some(roles) = bearer_roles(operation) else {
        return;
    };
    let security = operation["security"]
        .as_array_mut()
        .expect("bearer_roles found an array");
    if method == "get" && roles.iter().any(|r| r == "viewer") {
        security.push(json!({ SESSION_COOKIE: ["viewer"] }));
    }
    if roles.iter().any(|r| r == "station") {
        security.push(json!({ STATION_CERTIFICATE: ["station"] }));
    }
}

/// Writes the roles into the description too, for readers of rendered documentation.
fn state_roles(operation: &mut Value) {
    let basic = operation["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.get(STATION_BASIC).is_some()));
    let line = match bearer_roles(operation) {
        Some(roles) => format!("**Roles:** {}.", roles.join(", ")),
        None if basic => "**Roles:** station (HTTP Basic with a station token as the password, \
            or a station client certificate)."
            .to_owned(),
        None if operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get(DEVICE_CERTIFICATE).is_some())) =>
        {
            "**Roles:** the device, by its current certificate as the TLS client certificate."
                .to_owned()
        }
        None => "**Roles:** none (no credentials needed).".to_owned(),
    };
    let description = match operation.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
        _ => line,
    };
    operation["description"] = json!(description);
}

/// One `application/problem+json` response per status, naming its codes in the description
/// and in `x-error-codes`. A response the attribute already wrote keeps its description.
fn add_error_responses(operation: &mut Value, errors: &[ErrorCode]) {
    let est = operation["tags"][0] == "est";
    let mut by_status: BTreeMap<u16, BTreeSet<&str>> = BTreeMap::new();
    for code in errors {
        by_status
            .entry(code.status_u16())
            .or_default()
            .insert(code.as_str());
    }
    if !operation["responses"].is_object() {
        operation["responses"] = json!({});
    }
    let responses = operation["responses"]
        .as_object_mut()
        .expect("responses is an object");
    for (status, codes) in by_status {
        let codes: Vec<&str> = codes.into_iter().collect();
        let listed = codes
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let response = responses
            .entry(status.to_string())
            .or_insert_with(|| json!({}));
        let description = match response.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d} (problem+json: {listed})"),
            _ => format!("Problem: {listed}"),
        };
        response["description"] = json!(description);
        // A status may also have a non-error body (503 from `/readyz`): keep it beside.
        if !response["content"].is_object() {
            response["content"] = json!({});
        }
        response["content"]["application/problem+json"] =
            json!({"schema": {"$ref": "#/components/schemas/Problem"}});
        // EST answers its own refusals as text/plain `<code>: <reason>` (the router's layers,
        // such as load shedding, still answer problem+json).
        if est {
            response["content"]["text/plain"] = json!({"schema": {"type": "string"}});
            response["headers"]["X-Error-Code"] = json!({
                "description": "The stable error code (EST answers)",
                "schema": {"type": "string"}
            });
        }
        response["x-error-codes"] = json!(codes);
        if status == 401 {
            response["headers"]["WWW-Authenticate"] = json!({
                "description": if est { "`Basic realm=\"factory-ca EST\"`" } else { "`Bearer`" },
                "schema": {"type": "string"}
            });
        }
        if status == 503 || status == 429 {
            response["headers"]["Retry-After"] = json!({
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"}
            });
        }
    }
    // Every response carries the request id (see `assign_request_id` in `src/http/extract.rs`).
    for response in responses.values_mut() {
        response["headers"]["x-request-id"] = json!({
            "description": "The client's `x-request-id` (1-128 characters of A-Z a-z 0-9 . _ : - \
                starting with a letter or digit) or a generated UUID",
            "schema": {"type": "string"}
        });
    }
}

fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_string())
}

/// The OpenAPI 3.1 description of this API (this document).
#[route(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi_document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
        content_type = "application/json")),
    security(())
)]
pub async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document_json(),
    )
        .into_response()
}

/// Schemas of the types whose modules stay free of `utoipa` (the CA core, `jitp`, `aws`,
/// `auth`) and of the error body, written to match their serde form. The test
/// `mirrors_match_the_serde_form` below compares each with a serialized value of the real type.
#[allow(dead_code)]
/// Schemas with no Rust type of their own.
pub mod schemas {
    use utoipa::ToSchema;

    /// Bytes: DER, or PEM text, as the content type says.
    pub struct Binary;

    impl utoipa::PartialSchema for Binary {
        fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
            use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                .description(Some("DER bytes, or PEM text"))
                .into()
        }
    }

    impl ToSchema for Binary {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_an_error_entry_and_every_entry_an_operation() {
        let doc = document();
        let mut operations = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    operations.insert(format!("{} {path}", method.to_ascii_uppercase()));
                }
            }
        }
        let entries: BTreeSet<String> = OPERATION_ERRORS
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .collect();
        assert_eq!(entries.len(), OPERATION_ERRORS.len(), "duplicate entries");
        assert_eq!(operations, entries);
    }
}
