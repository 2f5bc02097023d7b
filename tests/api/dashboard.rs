//! The dashboard page: the session cookie's rules (GET only, always a viewer, never a station,
//! ended by revocation), the security headers, and an end-to-end run in headless Chromium
//! driven over WebDriver by chromedriver, which saves `target/test-artifacts/dashboard.png`.

use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::FutureExt;
use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
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
    assert_eq!(
        set_cookies(response.headers()),
        [format!(
            "fca_session={}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=28800",
            app.viewer
        )]
    );

    let session = with_cookie(&app, Method::GET, "/v1/session", &app.viewer).await;
    assert_eq!(session.status(), 200);
    assert_eq!(
        json(session).await,
        json!({"name": "viewer-1", "role": "viewer"})
    );
    let list = with_cookie(&app, Method::GET, "/v1/certificates", &app.viewer).await;
    assert_eq!(list.status(), 200);
    assert_eq!(json(list).await["items"][0]["thing_name"], "Cookie-1");
    let head = with_cookie(&app, Method::HEAD, "/v1/ca", &app.viewer).await;
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

    let out = with_cookie(&app, Method::DELETE, "/v1/session", &app.viewer).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        set_cookies(out.headers()),
        ["fca_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"]
    );
    assert_eq!(audit(&app, "session.delete").await[0]["actor"], "viewer-1");
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
    for token in [&app.viewer, &app.admin] {
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
    assert_eq!(sign_in(&app, &app.viewer).await.status(), 204);
    let before = with_cookie(&app, Method::GET, "/v1/certificates", &app.viewer).await;
    assert_eq!(before.status(), 200);

    let revoke = app
        .admin_json(Method::DELETE, "/v1/admin/tokens/viewer-1", json!({}))
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    for path in ["/v1/session", "/v1/certificates"] {
        let after = with_cookie(&app, Method::GET, path, &app.viewer).await;
        assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(sign_in(&app, &app.viewer).await.status(), 401);
}

async fn an_authorization_header_wins_over_the_session_cookie(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unknown = format!("fca_{}", "B".repeat(43));
    let bad_header = app
        .client
        .get(app.url("/v1/certificates"))
        .header(COOKIE, session_cookie(&app.viewer))
        .bearer_auth(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_header.status(), StatusCode::UNAUTHORIZED);
    let admin_header = app
        .client
        .get(app.url("/v1/admin/tokens"))
        .header(COOKIE, session_cookie(&app.viewer))
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

// ---- End to end in headless Chromium ------------------------------------------------------

/// Every wait in the browser test is bounded by this.
const WAIT: Duration = Duration::from_secs(20);
/// The flags issue #4 prescribes for Debian's Chromium.
const CHROMIUM_FLAGS: [&str; 4] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
];
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port; killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let binary = find_on_path("chromedriver").unwrap_or_else(|| {
            panic!(
                "the dashboard test needs Chromium and chromedriver: apt-get install chromium \
                 chromium-driver (scripts/test.sh checks for them)"
            )
        });
        let mut child = Command::new(binary)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // chromedriver prints "... started successfully on port N."; the thread keeps draining
        // its output until it exits.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port = rest.trim_end_matches('.').trim().parse().unwrap_or(0);
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(WAIT) {
            Ok(port) if port != 0 => port,
            _ => {
                let _ = child.kill();
                panic!("chromedriver did not report its port within {WAIT:?}");
            }
        };
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal W3C WebDriver client over reqwest: only the commands this test uses.
struct Browser {
    http: reqwest::Client,
    session: String,
    /// The profile chromedriver made for this browser, removed on quit.
    profile: Option<PathBuf>,
}

impl Browser {
    async fn launch(driver: &ChromeDriver) -> Browser {
        let chromium = find_on_path("chromium").expect("chromium is installed");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": CHROMIUM_FLAGS,
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let response = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = response.json().await.expect("JSON from chromedriver");
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {body}"));
        let profile = body["value"]["capabilities"]["chrome"]["userDataDir"]
            .as_str()
            .map(PathBuf::from);
        Browser {
            http,
            session: format!("{}/session/{id}", driver.url),
            profile,
        }
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON from chromedriver");
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {}",
            body["value"]
        );
        body["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element reference for {css}: {found}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent.trim() : null;",
            json!(css)
        );
        self.script(&script)
            .await
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Polls `script` (which returns true when done) every 100 ms, for at most [`WAIT`].
    async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.script(script).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let error = self
                    .script("return document.body.innerText.slice(0, 2000);")
                    .await;
                panic!("timed out after {WAIT:?} waiting for {what}; the page shows: {error}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn resize(&self, width: u32, height: u32) {
        self.command(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let png = self.command(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }

    /// The browser console since the last call (chromedriver's legacy log endpoint).
    async fn console(&self) -> Vec<String> {
        let entries = self
            .command(Method::POST, "/se/log", Some(json!({"type": "browser"})))
            .await;
        entries
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
        // chromedriver may leave the temporary profile behind when it is killed right after.
        // Its SingletonSocket links to a directory of its own in the temp directory.
        if let Some(profile) = self.profile
            && profile.starts_with(std::env::temp_dir())
        {
            if let Ok(socket) = std::fs::read_link(profile.join("SingletonSocket"))
                && let Some(dir) = socket.parent()
                && dir.starts_with(std::env::temp_dir())
                && dir != std::env::temp_dir()
            {
                let _ = std::fs::remove_dir_all(dir);
            }
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

fn count(text: &str) -> i64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a count"))
}

fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_matches_the_ledger_and_searches_thing_names() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let station_2 = new_token(
        &app.store,
        "line-2-station",
        factory_ca::services::tokens::Role::Station,
    )
    .await;
    let issued = [
        ("Line1-Press-0001", &app.station),
        ("Line1-Press-0002", &app.station),
        ("Line1-Oven-0001", &app.station),
        ("Line2-Pump-0001", &station_2),
        ("Line2-Pump-0002", &station_2),
        ("Line2-Valve-0001", &station_2),
    ];
    for (thing, token) in issued {
        let response = app.sign_as(token, &csr(thing, "DE").pem, None).await;
        assert_eq!(response.status(), 201, "{thing}");
    }
    // One refused request: XX is not an assigned country code.
    let refused = app.sign(&csr("Line1-Press-0003", "XX").pem).await;
    assert_eq!(refused.status(), 422);

    // The truth the page must show: the ledger, read from the database and from the API.
    let ledger = app.ledger_count().await;
    assert_eq!(ledger, issued.len() as i64);
    let stats = json(
        app.get(&app.viewer, "/v1/stats?from=1970-01-01T00:00:00Z")
            .await,
    )
    .await;
    assert_eq!(stats["totals"]["issued"], ledger, "{stats}");
    let rejected = stats["totals"]["rejected"]
        .as_i64()
        .expect("rejected count");
    assert_eq!(rejected, 1, "{stats}");

    let driver = ChromeDriver::start();
    let browser = Browser::launch(&driver).await;
    // Quit the browser even when an assertion fails, so that no Chromium outlives the test.
    let outcome = AssertUnwindSafe(drive_the_dashboard(&app, &browser, ledger, rejected))
        .catch_unwind()
        .await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Signs in through the form, checks the page against the ledger (`ledger` certificates,
/// `rejected` refusals), searches, and saves the screenshots.
async fn drive_the_dashboard(app: &TestApp, browser: &Browser, ledger: i64, rejected: i64) {
    browser.resize(1280, 1000).await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_until(
            "the sign-in form",
            "return !document.getElementById('signin').hidden;",
        )
        .await;

    // Sign in through the form, as a person would.
    browser.type_into("#token", &app.viewer).await;
    browser.click("#signin-submit").await;
    browser
        .wait_until(
            "the dashboard to load",
            "const s = document.getElementById('dashboard').getAttribute('data-state'); \
             if (s === 'error') throw new Error(document.getElementById('error').textContent); \
             return s === 'ready';",
        )
        .await;
    assert_eq!(browser.text("#session-name").await, "viewer-1");

    // The counts shown are the ledger's.
    for period in ["today", "week", "all"] {
        let shown = count(&browser.text(&format!("#total-{period}-issued")).await);
        assert_eq!(shown, ledger, "issued, {period}");
        let shown = count(&browser.text(&format!("#total-{period}-rejected")).await);
        assert_eq!(shown, rejected, "rejected, {period}");
        let shown = count(&browser.text(&format!("#total-{period}-revoked")).await);
        assert_eq!(shown, 0, "revoked, {period}");
    }
    let rows = browser
        .script("return document.querySelectorAll('#certificates tbody tr:not(.empty)').length;")
        .await;
    assert_eq!(rows, json!(ledger));
    let code = browser.text("#rejections tbody td code").await;
    assert_eq!(code, "invalid_country");
    let stations = browser
        .script(
            "return [...document.querySelectorAll('#stations tbody tr')].map(r => \
             [...r.cells].map(c => c.textContent)).sort();",
        )
        .await;
    assert_eq!(
        stations,
        json!([
            ["line-2-station", "3", "0", "0"],
            ["station-1", "3", "1", "0"]
        ]),
        "per-station issued, rejected, revoked"
    );
    let bars = browser
        .script("return document.querySelectorAll('#chart rect.bar-issued').length;")
        .await;
    assert_eq!(bars, json!(14), "one bar per day of the chart");
    browser.resize(1280, page_height(browser).await).await;
    let overview = artifacts_dir().join("dashboard-overview.png");
    std::fs::write(&overview, browser.screenshot().await).unwrap();

    // The token is in no place a script or a URL can reach.
    let cookie = browser.script("return document.cookie;").await;
    assert!(!cookie.as_str().unwrap().contains("fca_"), "{cookie}");
    let url = browser.script("return window.location.href;").await;
    assert_eq!(url, json!(app.url("/")));
    let storage = browser
        .script("return JSON.stringify([localStorage, sessionStorage]);")
        .await;
    assert!(!storage.as_str().unwrap().contains("fca_"), "{storage}");
    let fields = browser
        .script("return document.getElementById('token').value;")
        .await;
    assert_eq!(fields, json!(""));

    // Search by thing name prefix: only matches remain.
    browser.type_into("#search", "Line1-Press").await;
    browser.click("#search-form button").await;
    browser
        .wait_until(
            "the search result",
            "return document.getElementById('certificates').getAttribute('data-query') \
             === 'Line1-Press';",
        )
        .await;
    let things = browser
        .script(
            "return [...document.querySelectorAll('#certificates tbody td.thing')] \
             .map(td => td.textContent);",
        )
        .await;
    assert_eq!(things, json!(["Line1-Press-0002", "Line1-Press-0001"]));

    // No script, style or fetch was blocked by the Content-Security-Policy, and nothing failed
    // but the page's first look for a session, before signing in (401 by design).
    let console = browser.console().await;
    let problems: Vec<&String> = console
        .iter()
        .filter(|m| m.contains("SEVERE") || m.contains("Content Security Policy"))
        .filter(|m| !(m.contains("/v1/session - ") && m.contains("status of 401")))
        .collect();
    assert!(problems.is_empty(), "browser console: {problems:#?}");

    browser.resize(1280, page_height(browser).await).await;
    let path = artifacts_dir().join("dashboard.png");
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    std::fs::write(&path, png).expect("write the screenshot");
    println!("dashboard screenshot: {}", path.display());
    println!(
        "dashboard screenshot (before the search): {}",
        overview.display()
    );
}

/// The height of the whole page, so that a screenshot shows all of it (at most 4000 px).
async fn page_height(browser: &Browser) -> u32 {
    // The window is taller than its viewport by the browser's own frame, if any.
    let height = browser
        .script(
            "return Math.ceil(document.body.getBoundingClientRect().height) + \
             Math.max(0, window.outerHeight - window.innerHeight);",
        )
        .await
        .as_u64()
        .unwrap_or(1000);
    (height as u32).clamp(600, 4000)
}
