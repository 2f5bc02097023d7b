//! The dashboard end to end in headless Chromium, driven over WebDriver (fantoccini) by
//! chromedriver: the page shows the ledger's counts, searches thing names, keeps the token out
//! of reach of scripts and URLs, breaks no Content-Security-Policy rule, shows the server's
//! reason for a refused sign-in, and fits a phone (390x844). Saves
//! `target/test-artifacts/dashboard.png`, `dashboard-overview.png`, `dashboard-phone.png` (390x844)
//! and `dashboard-phone-full.png` (the whole page at 390 px).

use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::*;

/// Every wait in the browser test is bounded by this.
const WAIT: Duration = Duration::from_secs(20);
/// The flags Debian's Chromium needs on a headless machine with no network but loopback (no
/// sandbox as root, no GPU, no QUIC, no first-run pages, no background downloads, updates or
/// sync); each browser also gets a fresh `--user-data-dir`.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port; killed on drop. It and the browsers it starts write their
/// temporary files (Chromium's singleton socket, for one) under a directory of their own,
/// removed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
    _tmp: TempDir,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let binary = find_on_path("chromedriver").unwrap_or_else(|| {
            panic!(
                "the dashboard test needs Chromium and chromedriver: apt-get install chromium \
                 chromium-driver (scripts/test.sh checks for them)"
            )
        });
        let tmp = tempfile::tempdir().expect("a temporary directory for chromedriver");
        let mut child = Command::new(binary)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .env("TMPDIR", tmp.path())
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
            _tmp: tmp,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chromium session over WebDriver, with a profile of its own.
struct Browser {
    client: Client,
    _profile: TempDir,
}

/// chromedriver's legacy log endpoint (`POST /session/{id}/se/log`), which W3C WebDriver has
/// no command for: the browser console since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

impl Browser {
    async fn launch(driver: &ChromeDriver) -> Browser {
        let chromium = find_on_path("chromium").expect("chromium is installed");
        let profile = tempfile::tempdir().expect("a Chromium profile directory");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session from chromedriver: {e}"));
        Browser {
            client,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("WebDriver: go to");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        element.clear().await.expect("WebDriver: clear");
        element.send_keys(text).await.expect("WebDriver: type");
    }

    async fn click(&self, css: &str) {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        element.click().await.expect("WebDriver: click");
    }

    async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("WebDriver: script {script}: {e}"))
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
        self.client
            .set_window_size(width, height)
            .await
            .expect("WebDriver: window size");
    }

    async fn screenshot(&self) -> Vec<u8> {
        self.client
            .screenshot()
            .await
            .expect("WebDriver: screenshot")
    }

    /// The browser console since the last call.
    async fn console(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("WebDriver: browser log");
        entries
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session (chromedriver closes Chromium); the profile goes with `self`.
    async fn quit(self) {
        let _ = self.client.close().await;
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
    let fake = std::sync::Arc::new(factory_ca::aws::fake::FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Postgres, fake.clone(), |_| {}).await;
    // The issuing CA registered in (fake) AWS IoT, then changed there behind factory-ca's back.
    let ca = json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let registered = app
        .admin_json(
            reqwest::Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "default", "auto_registration": true}),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let aws_id = json(registered).await["aws_certificate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    use factory_ca::aws::IotRegistry;
    fake.update_ca_certificate(
        &aws_id,
        factory_ca::aws::CaUpdate {
            auto_registration: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
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
    // One refused credential: a token the service does not know.
    let unknown = format!("fca_{}", "A".repeat(43));
    let refused = app
        .sign_as(&unknown, &csr("Line1-Press-0004", "DE").pem, None)
        .await;
    assert_eq!(refused.status(), 401);

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
    assert_eq!(rejected, 2, "{stats}");

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
    // Rejections: plain-language reasons beside the codes, and refused credentials (401/403)
    // apart from refused certificate requests.
    let rejections = browser
        .script(
            "return [...document.querySelectorAll('#rejections tbody tr')].map(r => \
             r.classList.contains('group') ? ['group', r.textContent] : \
             [r.getAttribute('data-code'), r.querySelector('.reason').textContent]);",
        )
        .await;
    assert_eq!(
        rejections,
        json!([
            ["group", "Certificate requests refused"],
            [
                "invalid_country",
                "Country (C) is not an ISO 3166 country code"
            ],
            [
                "group",
                "Access refused (token missing, unknown or not a station)"
            ],
            ["unauthorized", "No token, or an unknown or revoked token"]
        ])
    );
    let stations = browser
        .script(
            "return [...document.querySelectorAll('#stations tbody tr')].map(r => \
             [...r.cells].map(c => c.textContent)).sort();",
        )
        .await;
    assert_eq!(
        stations,
        json!([
            ["(none)", "0", "1", "0", "unauthorized\u{a0}×1"],
            ["line-2-station", "3", "0", "0", "–"],
            ["station-1", "3", "1", "0", "invalid_country\u{a0}×1"]
        ]),
        "per-station issued, rejected, revoked, and refusals by code"
    );
    // The CA panel asks AWS IoT now and names the drift: auto-registration was turned off in
    // AWS behind factory-ca's back.
    browser
        .wait_until(
            "the live AWS line of the CA panel",
            "const d = document.getElementById('ca-drift'); \
             return d !== null && d.getAttribute('data-state') === 'drift';",
        )
        .await;
    assert_eq!(
        browser.text("#ca-drift").await,
        "drift auto_registration: stored true, AWS DISABLE"
    );
    let bars = browser
        .script("return document.querySelectorAll('#chart rect.bar-issued').length;")
        .await;
    assert_eq!(bars, json!(14), "one bar per day of the chart");
    // Today by hour: one bar per hour since midnight UTC, together the whole ledger.
    browser.click("#chart-mode button[data-mode='today']").await;
    browser
        .wait_until(
            "the hourly chart",
            "return document.getElementById('chart').getAttribute('data-mode') === 'today';",
        )
        .await;
    let hourly = browser
        .script(
            "const titles = [...document.querySelectorAll('#chart g > title')] \
               .map(t => t.textContent); \
             return [titles.length, new Date().getUTCHours() + 1, \
               titles.reduce((n, t) => n + parseInt(t.split(': ')[1], 10), 0), \
               titles.every(t => /T\\d\\d:00Z: /.test(t))];",
        )
        .await;
    let hours = hourly[0].as_i64().unwrap();
    let expected = hourly[1].as_i64().unwrap();
    assert!(
        hours == expected || hours + 1 == expected,
        "one bar per hour of today: {hourly}"
    );
    assert_eq!(
        hourly[2],
        json!(ledger),
        "today's hours hold every certificate"
    );
    assert_eq!(hourly[3], json!(true), "hour keys: {hourly}");
    browser.click("#chart-mode button[data-mode='days']").await;
    browser
        .wait_until(
            "the daily chart again",
            "return document.getElementById('chart').getAttribute('data-mode') === 'days';",
        )
        .await;
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
    // The console is really read: the expected 401 is in it.
    assert!(
        console
            .iter()
            .any(|m| m.contains("/v1/session - ") && m.contains("status of 401")),
        "the browser console as read: {console:#?}"
    );
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

    sign_in_shows_the_servers_reason(app, browser).await;
    on_a_phone(app, browser).await;
}

/// A token the dashboard refuses: the form shows the server's reason, not a guess.
async fn sign_in_shows_the_servers_reason(app: &TestApp, browser: &Browser) {
    browser.click("#sign-out").await;
    browser
        .wait_until(
            "the sign-in form after signing out",
            "return !document.getElementById('signin').hidden;",
        )
        .await;
    for (token, reason) in [
        (
            &app.admin,
            "This is an admin token; sign in to the dashboard with a viewer token",
        ),
        (
            &app.station,
            "This is a station token; sign in to the dashboard with a viewer token",
        ),
    ] {
        browser.type_into("#token", token).await;
        browser.click("#signin-submit").await;
        let script = format!(
            "const e = document.getElementById('signin-error'); \
             return !e.hidden && e.textContent.startsWith({});",
            json!(reason)
        );
        browser.wait_until(reason, &script).await;
        assert!(browser.text("#signin-error").await.ends_with("(forbidden)"));
    }
}

/// The page at 390x844, a phone held upright: no horizontal scroll, "Sign out" in view, the
/// certificates table scrolling inside its card with thing name and status in view, and chart
/// labels of a readable size. Saves `target/test-artifacts/dashboard-phone.png`.
async fn on_a_phone(app: &TestApp, browser: &Browser) {
    browser.resize(390, 844).await;
    browser.type_into("#token", &app.viewer).await;
    browser.click("#signin-submit").await;
    browser
        .wait_until(
            "the dashboard at phone width",
            "return !document.getElementById('dashboard').hidden && \
             document.getElementById('dashboard').getAttribute('data-state') === 'ready' && \
             document.querySelectorAll('#chart text.tick').length > 0;",
        )
        .await;
    let layout = browser
        .script(
            "window.scrollTo(1000, 0); \
             const box = (q) => { const r = document.querySelector(q).getBoundingClientRect(); \
               return [r.left, r.right]; }; \
             const svg = document.querySelector('#chart svg'); \
             const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width; \
             const ticks = [...svg.querySelectorAll('text.tick')].map(t => \
               parseFloat(getComputedStyle(t).fontSize) * scale); \
             const wrap = document.getElementById('certificates').parentElement; \
             return { width: window.innerWidth, scroll_x: window.scrollX, \
               page: document.documentElement.scrollWidth, sign_out: box('#sign-out'), \
               thing: box('#certificates tbody tr td.thing'), \
               status: box('#certificates tbody tr td.status-col'), \
               card: box('#certificates'), wrap: [wrap.clientWidth, wrap.scrollWidth], \
               smallest_label: Math.min(...ticks) };",
        )
        .await;
    let width = layout["width"].as_f64().unwrap();
    assert!(width <= 400.0, "the window is phone-sized: {layout}");
    assert_eq!(
        layout["scroll_x"],
        json!(0),
        "the page scrolls sideways: {layout}"
    );
    assert!(
        layout["page"].as_f64().unwrap() <= width,
        "the page is wider than the screen: {layout}"
    );
    let in_view = |name: &str| {
        let [left, right] = [
            layout[name][0].as_f64().unwrap(),
            layout[name][1].as_f64().unwrap(),
        ];
        assert!(left >= 0.0 && right <= width, "{name} is cut off: {layout}");
    };
    in_view("sign_out");
    in_view("thing");
    in_view("status");
    let [client, scroll] = [
        layout["wrap"][0].as_f64().unwrap(),
        layout["wrap"][1].as_f64().unwrap(),
    ];
    assert!(
        scroll > client,
        "the table scrolls inside its card: {layout}"
    );
    assert!(
        layout["smallest_label"].as_f64().unwrap() >= 11.0,
        "chart labels are readable: {layout}"
    );
    let png = browser.screenshot().await;
    let path = artifacts_dir().join("dashboard-phone.png");
    std::fs::write(&path, png).expect("write the phone screenshot");
    println!("dashboard screenshot at 390x844: {}", path.display());

    // Scrolled to the end of the table, the thing name and its status are still in view.
    let sticky = browser
        .script(
            "const table = document.getElementById('certificates'); \
             const wrap = table.parentElement; wrap.scrollLeft = wrap.scrollWidth; \
             const w = wrap.getBoundingClientRect(); \
             const inside = (q) => { const r = table.querySelector(q).getBoundingClientRect(); \
               return r.left >= w.left - 1 && r.right <= w.right + 1; }; \
             return [wrap.scrollLeft > 0, inside('tbody tr td.thing'), \
               inside('tbody tr td.status-col')];",
        )
        .await;
    assert_eq!(
        sticky,
        json!([true, true, true]),
        "scrolled table: thing and status"
    );

    // The whole page at phone width, for people to look at.
    browser.resize(390, page_height(browser).await).await;
    let path = artifacts_dir().join("dashboard-phone-full.png");
    std::fs::write(&path, browser.screenshot().await).expect("write the screenshot");
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

/// The CA health panel: a finding made on purpose (the issuing CA expires within
/// `ca.expiry_warn_days`, set beyond its validity) is shown to the viewer's session with its
/// code, severity, CA and fix, as `GET /v1/admin/health` reports it. Saves
/// `target/test-artifacts/dashboard-health.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_panel_shows_a_finding_made_on_purpose() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.ca.expiry_warn_days = 36_500).await;
    let admin_report = json(app.get(&app.admin, "/v1/admin/health").await).await;
    let ca = &admin_report["cas"][0];
    let ca_id = ca["ca_id"].as_str().unwrap().to_owned();
    let finding = ca["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "ca_expiring")
        .unwrap_or_else(|| panic!("the admin report has ca_expiring: {admin_report}"))
        .clone();
    // A viewer session may not call the admin route; the panel reads the viewers' route.
    assert_eq!(app.get(&app.viewer, "/v1/admin/health").await.status(), 403);

    let driver = ChromeDriver::start();
    let browser = Browser::launch(&driver).await;
    let outcome = AssertUnwindSafe(async {
        browser.resize(1280, 1000).await;
        browser.goto(&app.url("/")).await;
        browser
            .wait_until(
                "the sign-in form",
                "return !document.getElementById('signin').hidden;",
            )
            .await;
        browser.type_into("#token", &app.viewer).await;
        browser.click("#signin-submit").await;
        browser
            .wait_until(
                "the health panel",
                "return document.getElementById('dashboard').getAttribute('data-state') === \
                 'ready' && document.getElementById('health-card').getAttribute('data-state') \
                 === 'ready';",
            )
            .await;
        let rows = browser
            .script(
                "return [...document.querySelectorAll('#health tbody tr[data-code]')].map(r => \
                 ({code: r.getAttribute('data-code'), cells: [...r.cells].map(c => \
                 c.textContent), ca: r.cells[2].querySelector('code').getAttribute('title')}));",
            )
            .await;
        let rows = rows.as_array().expect("rows").clone();
        let row = rows
            .iter()
            .find(|r| r["code"] == "ca_expiring")
            .unwrap_or_else(|| panic!("no ca_expiring row: {rows:?}"));
        assert_eq!(row["ca"], ca_id.as_str());
        assert_eq!(row["cells"][0], "warning");
        assert_eq!(row["cells"][1], "ca_expiring");
        assert_eq!(
            row["cells"][3], "\u{2013}",
            "a CA finding has no AWS target"
        );
        assert_eq!(row["cells"][4], finding["message"]);
        assert_eq!(row["cells"][5], finding["fix"]);
        assert!(
            browser.text("#health-summary").await.contains("warning"),
            "the summary counts it"
        );
        let console = browser.console().await;
        let problems: Vec<&String> = console
            .iter()
            .filter(|m| m.contains("SEVERE") || m.contains("Content Security Policy"))
            .filter(|m| !(m.contains("/v1/session - ") && m.contains("status of 401")))
            .collect();
        assert!(problems.is_empty(), "browser console: {problems:#?}");
        browser.resize(1280, page_height(&browser).await).await;
        let path = artifacts_dir().join("dashboard-health.png");
        std::fs::write(&path, browser.screenshot().await).expect("write the screenshot");
        println!("dashboard health screenshot: {}", path.display());
    })
    .catch_unwind()
    .await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
