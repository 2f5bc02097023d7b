//! The dashboard page without a browser: the session cookie's rules (a server-side session id,
//! not the token; GET only, always a viewer, never a station, ended by sign-out and by
//! revocation) and the security headers. The page in
//! headless Chromium is `tests/system/dashboard.rs`.

use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(
    signing_in_sets_a_strict_http_only_cookie_that_reads_as_a_viewer,
    an_admin_token_cannot_sign_in_and_an_admin_cookie_is_refused,
    the_session_cookie_never_authenticates_a_change,
    station_unknown_and_malformed_tokens_cannot_sign_in,
    revoking_the_token_ends_the_session,
    an_authorization_header_wins_over_the_session_cookie,
);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Signs in with `token` and returns the Set-Cookie header.
async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("request sent")
}

/// Signs in with the viewer token and returns the session id the cookie holds.
async fn session_of(app: &TestApp) -> String {
    let response = sign_in(app, &app.viewer).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cookie = set_cookies(response.headers()).remove(0);
    let value = cookie
        .strip_prefix("fca_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    assert!(value.starts_with("fcs_") && value.len() == 47, "{cookie}");
    value
}

fn session_cookie(token: &str) -> String {
    format!("theme=dark; fca_session={token}")
}

async fn with_cookie(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .header(COOKIE, session_cookie(token))
        .send()
        .await
        .expect("request sent")
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let page = json(
        app.get(&app.admin, &format!("/v1/admin/audit?action={action}"))
            .await,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

async fn signing_in_sets_a_strict_http_only_cookie_that_reads_as_a_viewer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.sign(&csr("Cookie-1", "DE").pem).await.status(), 201);

    let response = sign_in(&app, &app.viewer).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let cookies = set_cookies(response.headers());
    assert_eq!(cookies.len(), 1);
    // The cookie holds a new session id, never the token.
    let id = cookies[0]
        .strip_prefix("fca_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    assert!(id.starts_with("fcs_") && id.len() == 47, "{}", cookies[0]);
    assert!(!cookies[0].contains(&app.viewer[4..]));
    assert_eq!(
        cookies[0],
        format!("fca_session={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=28800")
    );
    // The token in the cookie is not a session.
    let token_as_cookie = with_cookie(&app, Method::GET, "/v1/session", &app.viewer).await;
    assert_eq!(token_as_cookie.status(), StatusCode::UNAUTHORIZED);

    let session = with_cookie(&app, Method::GET, "/v1/session", &id).await;
    assert_eq!(session.status(), 200);
    assert_eq!(
        json(session).await,
        json!({"name": "viewer-1", "role": "viewer"})
    );
    let list = with_cookie(&app, Method::GET, "/v1/certificates", &id).await;
    assert_eq!(list.status(), 200);
    assert_eq!(json(list).await["items"][0]["thing_name"], "Cookie-1");
    let head = with_cookie(&app, Method::HEAD, "/v1/ca", &id).await;
    assert_eq!(head.status(), 200);

    // Audited under the token's name, and the secret is nowhere in the log.
    let created = audit(&app, "session.create").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor"], "viewer-1");
    assert_eq!(created[0]["outcome"], "success");
    let whole_log = app
        .get(&app.admin, "/v1/admin/audit?limit=1000")
        .await
        .text()
        .await
        .unwrap();
    assert!(!whole_log.contains(&app.viewer[4..]));
    assert!(!whole_log.contains(&id[4..]));

    // A second browser (or a copy of the cookie) has its own session.
    let other = session_of(&app).await;
    assert_ne!(other, id);

    let out = with_cookie(&app, Method::DELETE, "/v1/session", &id).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        set_cookies(out.headers()),
        ["fca_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"]
    );
    assert_eq!(audit(&app, "session.delete").await[0]["actor"], "viewer-1");
    // A copy of the signed-out cookie no longer works, on any route; the other session and the
    // token itself still do.
    for path in ["/v1/session", "/v1/certificates", "/v1/stats"] {
        let copied = with_cookie(&app, Method::GET, path, &id).await;
        assert_eq!(copied.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let still = with_cookie(&app, Method::GET, "/v1/session", &other).await;
    assert_eq!(still.status(), StatusCode::OK);
    assert_eq!(
        app.get(&app.viewer, "/v1/certificates").await.status(),
        StatusCode::OK
    );
    // Signing out without a session is not an error either.
    let again = app
        .client
        .delete(app.url("/v1/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    // Without a cookie there is no session.
    let none = app.client.get(app.url("/v1/session")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(none).await["code"], "unauthorized");
}

async fn an_admin_token_cannot_sign_in_and_an_admin_cookie_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = sign_in(&app, &app.admin).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert_eq!(json(response).await["code"], "forbidden");
    let entry = &audit(&app, "session.create").await[0];
    assert_eq!(entry["outcome"], "failure");
    assert_eq!(
        entry["detail"],
        "admin tokens cannot sign in to the dashboard; use a viewer token"
    );

    // A hand-made cookie with an admin token is no session either: not even a viewer one.
    for path in ["/v1/session", "/v1/certificates", "/v1/admin/tokens"] {
        let response = with_cookie(&app, Method::GET, path, &app.admin).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

async fn the_session_cookie_never_authenticates_a_change(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let serial = json(app.sign(&csr("Csrf-1", "FR").pem).await).await["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = session_of(&app).await;
    for token in [&session, &app.admin] {
        let cookie = session_cookie(token);
        let post = |path: &str, body: Value| {
            app.client
                .post(app.url(path))
                .header(COOKIE, cookie.clone())
                .json(&body)
                .send()
        };
        let sign = post("/v1/certificates", json!({"csr": csr("Csrf-2", "FR").pem}))
            .await
            .unwrap();
        assert_eq!(sign.status(), StatusCode::UNAUTHORIZED);
        let create = post("/v1/admin/tokens", json!({"name": "evil", "role": "admin"}))
            .await
            .unwrap();
        assert_eq!(create.status(), StatusCode::UNAUTHORIZED);
        let revoke = post(
            &format!("/v1/admin/certificates/{serial}/revoke"),
            json!({"reason": "key_compromise"}),
        )
        .await
        .unwrap();
        assert_eq!(revoke.status(), StatusCode::UNAUTHORIZED);
        let delete = with_cookie(&app, Method::DELETE, "/v1/admin/tokens/station-1", token).await;
        assert_eq!(delete.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.ledger_count().await, 1);
    let row = json(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await,
    )
    .await;
    assert_eq!(row["status"], "active");
    let tokens = json(app.get(&app.admin, "/v1/admin/tokens").await).await;
    let names: Vec<&str> = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "active")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(!names.contains(&"evil"));
}

async fn station_unknown_and_malformed_tokens_cannot_sign_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let station = sign_in(&app, &app.station).await;
    assert_eq!(station.status(), StatusCode::FORBIDDEN);
    assert!(set_cookies(station.headers()).is_empty());
    assert_eq!(json(station).await["code"], "forbidden");
    let refused = audit(&app, "session.create").await;
    assert_eq!(refused[0]["actor"], "station-1");
    assert_eq!(refused[0]["outcome"], "failure");

    // A station token put into the cookie by hand reads nothing, not even what a station may.
    for path in ["/v1/ca", "/v1/session", "/v1/certificates"] {
        let response = with_cookie(&app, Method::GET, path, &app.station).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    let unknown = sign_in(&app, &format!("fca_{}", "A".repeat(43))).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(unknown.headers()).is_empty());
    assert_eq!(json(unknown).await["code"], "unauthorized");

    let form = app
        .client
        .post(app.url("/v1/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", app.viewer))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let extra = app
        .client
        .post(app.url("/v1/session"))
        .json(&json!({"token": app.viewer, "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(extra.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(extra).await["code"], "invalid_request");
    // Unknown tokens are not audited (no actor; anyone could fill the log).
    assert_eq!(audit(&app, "session.create").await.len(), 1);
}

async fn revoking_the_token_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = session_of(&app).await;
    let before = with_cookie(&app, Method::GET, "/v1/certificates", &session).await;
    assert_eq!(before.status(), 200);

    let revoke = app
        .admin_json(Method::DELETE, "/v1/admin/tokens/viewer-1", json!({}))
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    for path in ["/v1/session", "/v1/certificates"] {
        let after = with_cookie(&app, Method::GET, path, &session).await;
        assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(sign_in(&app, &app.viewer).await.status(), 401);
}

async fn an_authorization_header_wins_over_the_session_cookie(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = session_of(&app).await;
    let unknown = format!("fca_{}", "B".repeat(43));
    let bad_header = app
        .client
        .get(app.url("/v1/certificates"))
        .header(COOKIE, session_cookie(&session))
        .bearer_auth(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_header.status(), StatusCode::UNAUTHORIZED);
    let admin_header = app
        .client
        .get(app.url("/v1/admin/tokens"))
        .header(COOKIE, session_cookie(&session))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(admin_header.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_page_and_its_assets_carry_the_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
    assert!(!html.contains("<script>"), "no inline script");
    // The token field has no name, so a form submitted without JavaScript carries no token.
    assert!(html.contains(r#"<input id="token" type="password""#));
    assert!(!html.contains(r#"name="token""#));

    for (path, content_type) in [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
    ] {
        let asset = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(asset.headers()["content-type"], content_type, "{path}");
        assert_eq!(asset.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(asset.headers()["x-content-type-options"], "nosniff");
        assert_eq!(asset.headers()["x-frame-options"], "DENY");
    }

    // nosniff on every API answer, errors included.
    for (path, status) in [
        ("/healthz", 200),
        ("/v1/ca", 401),
        ("/v1/no-such-route", 404),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}
