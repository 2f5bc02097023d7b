//! The dashboard end to end in headless Chromium, driven over WebDriver by chromedriver: the
//! page shows the ledger's counts, searches thing names, keeps the token out of reach of
//! scripts and URLs, and breaks no Content-Security-Policy rule. Saves
//! `target/test-artifacts/dashboard.png` and `dashboard-overview.png`.

use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::FutureExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

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
