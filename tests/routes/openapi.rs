//! `GET /openapi.json`: the document is OpenAPI 3.1, every operation in it is served with the
//! roles it states, every error code of the service (docs/api.md table, source) is in it, and no
//! route is registered outside the documented route table.
//!
//! Why a served route cannot be missing from the document: `src/http/mod.rs` builds the router
//! from utoipa-axum's `OpenApiRouter`, and `.routes(routes!(handler))` registers the handler and
//! its `#[utoipa::path]` operation in one call, so a route registered that way is documented by
//! construction (utoipa-axum takes the route's path and methods from the attribute). What that
//! cannot stop is a route registered another way: a plain `.route(...)` (which `OpenApiRouter`
//! passes through undocumented), a `Router::new()` merged or nested in, `route_service`, `nest`.
//! `no_route_is_registered_outside_the_documented_table` reads the source for those forms.
//! It is a text check: it cannot see a router built by a macro or in a dependency, and it
//! trusts that code under `#[cfg(test)]` is not served. An axum `Router` cannot list its
//! routes, so no runtime check can enumerate what is served; the runtime tests here go the
//! other way (everything documented is served, with the documented roles).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(
    every_documented_operation_is_served_with_the_roles_it_states,
    the_document_is_public_json_of_openapi_3_1
);

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(METHOD, path)` of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_ascii_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// The roles of the bearer requirement, `None` when the operation takes no token.
fn bearer_roles(op: &Value) -> Option<BTreeSet<String>> {
    op["security"].as_array()?.iter().find_map(|r| {
        r.get("bearer_token").map(|roles| {
            roles
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect()
        })
    })
}

fn concrete(path: &str) -> String {
    path.replace("{serial}", &"0".repeat(40))
        .replace("{id}", "ca-0000000000000000")
        .replace("{name}", "nobody")
}

/// The document as the library builds it (the same value the route serves).
fn document() -> &'static Value {
    factory_ca::http::openapi::document()
}

async fn the_document_is_public_json_of_openapi_3_1(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(response.headers().contains_key("x-request-id"));
    let doc: Value = response.json().await.expect("the document is JSON");
    assert_eq!(&doc, document());
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["info"]["title"], "factory-ca");
}

async fn every_documented_operation_is_served_with_the_roles_it_states(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.metrics.enabled = true;
        s.metrics.listen = None;
    })
    .await;
    let ops = operations(document());
    assert!(ops.len() >= 30, "only {} operations", ops.len());
    for (method, path, op) in &ops {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let url = app.url(&concrete(path));
        // Without credentials: the route exists (not the router's fallbacks), and a route with
        // a bearer requirement refuses the anonymous caller.
        let response = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned));
        assert!(
            !matches!(code.as_deref(), Some("not_found" | "method_not_allowed")),
            "{method} {path} is documented but not served: {status} {body}"
        );
        let roles = bearer_roles(op);
        if roles.is_some() {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} states a bearer requirement but answered {status} without one"
            );
        } else {
            assert_ne!(
                code.as_deref(),
                Some("forbidden"),
                "{method} {path} is documented as public: {body}"
            );
        }
        let Some(roles) = roles else { continue };
        // With a station and a viewer token: forbidden exactly when the role is not listed.
        // (Admin is never refused by a role check, so sending it would only cause effects.)
        // The body is checked before the role (extractors run before the handler), so a JSON
        // body is the least the documented schema requires: this also checks that the
        // schema's required fields are enough for the server.
        let body = op["requestBody"]["content"]["application/json"]["schema"]
            .as_object()
            .map(|schema| minimal(&Value::Object(schema.clone()), document(), 0));
        for (role, token) in [("station", &app.station), ("viewer", &app.viewer)] {
            let mut request = app.client.request(method.clone(), &url).bearer_auth(token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            let forbidden = status == StatusCode::FORBIDDEN && body.contains("\"forbidden\"");
            assert_eq!(
                forbidden,
                !roles.contains(role),
                "{method} {path} documents roles {roles:?}; as {role} it answered {status} {body}"
            );
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        }
        assert!(
            roles.contains("admin"),
            "{method} {path}: admin may do everything"
        );
    }
}

/// The smallest value the schema accepts: required properties only, the first enum value or
/// `oneOf` alternative.
fn minimal(schema: &Value, doc: &Value, depth: usize) -> Value {
    assert!(depth < 16, "schema too deep: {schema}");
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return minimal(&doc["components"]["schemas"][name], doc, depth + 1);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema[key]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] != "null").or_else(|| a.first()))
        {
            return minimal(first, doc, depth + 1);
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_owned(),
        _ => "object".to_owned(),
    };
    match kind.as_str() {
        "string" => Value::from("x"),
        "integer" | "number" => Value::from(1),
        "boolean" => Value::from(false),
        "array" => Value::Array(vec![]),
        "null" => Value::Null,
        _ => {
            let mut object = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                let property = &schema["properties"][name];
                object.insert(name.to_owned(), minimal(property, doc, depth + 1));
            }
            Value::Object(object)
        }
    }
}

#[test]
fn every_operation_states_its_roles_errors_and_a_unique_id() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(doc) {
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} states no security requirement"));
        assert!(!security.is_empty(), "{method} {path}");
        if let Some(roles) = bearer_roles(&op) {
            assert!(!roles.is_empty(), "{method} {path}: a token of which role?");
            for role in &roles {
                assert!(
                    ["station", "viewer", "admin"].contains(&role.as_str()),
                    "{method} {path}: unknown role {role}"
                );
            }
        }
        let id = op["operationId"].as_str().unwrap().to_owned();
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()));
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success response"
        );
        // Every operation can fail inside the service, and every error status names codes.
        assert!(responses.contains_key("500"), "{method} {path}");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let codes = response["x-error-codes"].as_array();
                assert!(
                    codes.is_some_and(|c| !c.is_empty()),
                    "{method} {path} {status} names no error code"
                );
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem"
                );
            }
            assert!(response["headers"].get("x-request-id").is_some());
        }
    }
}

#[test]
fn sign_documents_both_request_forms_and_both_answers() {
    let doc = document();
    let op = &doc["paths"]["/v1/certificates"]["post"];
    let request = op["requestBody"]["content"].as_object().unwrap();
    assert!(request.contains_key("application/json"));
    assert!(request.contains_key("application/pkcs10"));
    let created = &op["responses"]["201"];
    assert!(created["content"].get("application/json").is_some());
    assert!(
        created["content"]
            .get("application/pem-certificate-chain")
            .is_some()
    );
    assert!(created["headers"].get("Location").is_some());
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"Idempotency-Key"), "{params:?}");
    assert!(params.contains(&"x-request-id"), "{params:?}");
    let codes: BTreeSet<&str> = op["responses"]["422"]["x-error-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(codes.contains("idempotency_key_reused") && codes.contains("invalid_country"));
    // The query parameters of the list, from its `IntoParams`.
    let list = &doc["paths"]["/v1/certificates"]["get"]["parameters"];
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["thing_name", "status", "aws_status", "limit", "cursor"] {
        assert!(names.contains(&name), "{names:?}");
    }
}

#[test]
fn every_schema_reference_resolves() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    let mut rest = text.as_str();
    let prefix = "\"$ref\":\"#/components/schemas/";
    let mut seen = 0;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        let name = &rest[..rest.find('"').unwrap()];
        assert!(schemas.contains_key(name), "unresolved $ref {name}");
        seen += 1;
    }
    assert!(seen > 20, "{seen}");
}

/// The error code table of docs/api.md as `(code, status)` pairs.
fn readme_error_codes() -> BTreeSet<(String, u16)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let section = readme
        .split("\n## Error codes")
        .nth(1)
        .expect("docs/api.md has an Error codes section");
    let section = section.split("\n## ").next().unwrap();
    let rows: BTreeSet<(String, u16)> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].parse().expect("a status"),
            )
        })
        .collect();
    assert!(rows.len() > 40, "{} rows", rows.len());
    rows
}

/// `(code, status)` of every error response of every operation, plus the codes of `Problem`.
fn document_error_codes() -> (BTreeSet<(String, u16)>, BTreeSet<String>) {
    let doc = document();
    let mut pairs = BTreeSet::new();
    for (_, _, op) in operations(doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            for code in response["x-error-codes"].as_array().into_iter().flatten() {
                pairs.insert((code.as_str().unwrap().to_owned(), status.parse().unwrap()));
            }
        }
    }
    let enumerated = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .expect("Problem.code lists the codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (pairs, enumerated)
}

#[test]
fn the_readme_error_table_and_the_document_list_the_same_codes() {
    let readme = readme_error_codes();
    let (pairs, enumerated) = document_error_codes();
    let readme_codes: BTreeSet<String> = readme.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        readme_codes, enumerated,
        "docs/api.md error table vs. the Problem schema's code enum"
    );
    // Each operation's (code, status) is a row of the table. The router's own answers
    // (`not_found`, `method_not_allowed`), `https_required` (the TLS listener) and
    // `request_body_timeout` (the connection layer) belong to no operation, so the table may
    // have rows no operation names, but only those.
    for pair in &pairs {
        assert!(
            readme.contains(pair),
            "{pair:?} is in the document, not in docs/api.md"
        );
    }
    let only_router: BTreeSet<(String, u16)> = readme.difference(&pairs).cloned().collect();
    let expected: BTreeSet<(String, u16)> = [
        ("not_found", 404),
        ("method_not_allowed", 405),
        ("https_required", 400),
        ("request_body_timeout", 408),
    ]
    .into_iter()
    .map(|(c, s)| (c.to_owned(), s))
    .collect();
    assert!(
        only_router.is_subset(&expected),
        "docs/api.md codes no operation returns: {:?}",
        only_router.difference(&expected).collect::<Vec<_>>()
    );
}

/// Non-test Rust source under `src/`, by file.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests are at the end of a file, after `#[cfg(test)]`; comments are not
                // code.
                let text = text
                    .split("#[cfg(test)]")
                    .next()
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let name = path
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .display()
                    .to_string();
                out.insert(name, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

/// Error codes spelled out in the HTTP layer outside `src/http/error_code.rs`, where every code
/// is declared once with its status: `(file, code)` for each string literal that is a code.
/// (Only the HTTP layer answers with codes; other layers have their own vocabularies, such as the
/// AWS call outcomes of the metrics.)
fn code_literals_outside_the_enum(codes: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (file, text) in sources() {
        if !file.contains("src/http/") || file.ends_with("src/http/error_code.rs") {
            continue;
        }
        for literal in text.split('"').skip(1).step_by(2) {
            if codes.contains(literal) {
                found.push((file.clone(), literal.to_owned()));
            }
        }
    }
    found
}

#[test]
fn every_error_code_is_declared_once_in_the_error_code_enum() {
    let (_, enumerated) = document_error_codes();
    assert!(enumerated.len() > 40, "{enumerated:?}");
    let literals = code_literals_outside_the_enum(&enumerated);
    assert!(
        literals.is_empty(),
        "error codes written as string literals outside src/http/error_code.rs (use \
         ErrorCode): {literals:?}"
    );
}

#[test]
fn the_readme_api_table_states_the_same_roles() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let doc = document();
    let mut rows = 0;
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5
            || !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&cells[1])
            || !cells[2].starts_with("`/")
        {
            continue;
        }
        let (method, path, role) = (cells[1], cells[2].trim_matches('`'), cells[3]);
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "docs/api.md lists {method} {path}; the document does not"
        );
        let documented = bearer_roles(op);
        let stated: Option<BTreeSet<String>> = match role {
            "none" => None,
            "any role" => Some(["station", "viewer", "admin"].map(String::from).into()),
            roles => Some(roles.split(", ").map(String::from).collect()),
        };
        // The dashboard's session routes state their own (cookie) rules in docs/api.md.
        // EST enrollment takes HTTP Basic or a client certificate, not a bearer scope.
        // EST renewal takes the device's own certificate.
        if role.contains("session")
            || role.contains("cookie")
            || role.contains("Basic")
            || role.contains("device")
        {
            continue;
        }
        assert_eq!(
            documented, stated,
            "{method} {path}: docs/api.md says {role:?}"
        );
        rows += 1;
    }
    assert!(rows >= 25, "{rows} docs/api.md rows checked");
    // And the other way: every documented path is named in docs/api.md (the dashboard's page
    // and assets are described in its own section, not path by path).
    for (method, path, op) in operations(doc) {
        if op["tags"][0] == "dashboard" {
            continue;
        }
        assert!(
            readme.contains(&format!("`{path}`")) || readme.contains(&format!("{path}`")),
            "{method} {path} is not in docs/api.md"
        );
    }
}

#[test]
fn no_route_is_registered_outside_the_documented_table() {
    let doc = document();
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let sources = sources();

    // The route table: a chain of `.routes(routes!(...))` and nothing else.
    let module = &sources["src/http/mod.rs"];
    let table = module
        .split("pub fn api_routes()")
        .nth(1)
        .expect("src/http/mod.rs has api_routes()");
    let table = &table[..table.find("\n}\n").unwrap()];
    let mut registrations = 0;
    for line in table.lines().map(str::trim).filter(|l| l.starts_with('.')) {
        assert!(
            line.starts_with(".routes(routes!("),
            "api_routes() registers a route with {line:?}: use .routes(routes!(handler)) so \
             that it is documented"
        );
        registrations += 1;
    }
    assert!(registrations >= 20, "{registrations}");
    assert!(
        module.contains("api_routes().split_for_parts()"),
        "router() must take its routes from api_routes()"
    );

    // Anywhere else: no undocumented registration form. A plain `Router::new()` is allowed
    // only where listed, and each `.route("<path>", ...)` on it must name a documented path.
    // `metrics.rs`: `metrics.listen` serves `GET /metrics` (documented) on its own listener.
    let allowed_plain_routers = ["src/http/routes/metrics.rs"];
    for (file, text) in &sources {
        if file.ends_with("src/http/openapi.rs") {
            continue;
        }
        for form in [
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".fallback_service(",
        ] {
            assert!(!text.contains(form), "{file} registers a route with {form}");
        }
        if text.contains("Router::new()") || text.contains("Router::<") {
            assert!(
                allowed_plain_routers.iter().any(|a| file.ends_with(a)),
                "{file} builds a plain axum Router: its routes would not be documented"
            );
        }
        for (at, _) in text.match_indices(".route(") {
            let rest = text[at + ".route(".len()..].trim_start();
            let path = rest
                .strip_prefix('"')
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("{file}: .route( without a literal path"));
            assert!(
                documented.contains(path),
                "{file} serves {path} with .route(...), and the document lacks it"
            );
        }
    }
}
