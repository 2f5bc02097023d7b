//! HTTPS and station mTLS against real TLS clients: reqwest on rustls (aws-lc-rs provider),
//! tokio-rustls for a hand-driven HTTP/1.1 request, and curl (OpenSSL). The PKI (a server CA
//! and server certificate, a station CA, station client certificates, a rogue CA, a CRL) is
//! generated here with rcgen and written to the test's temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use factory_ca::app::Application;
use factory_ca::config::{ClientAuth, Settings};
use factory_ca::services::tokens::Role;
use factory_ca::store::Store;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use reqwest::StatusCode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::common::{Backend, csr, json, new_token, test_settings, write};
use crate::on_both_backends;

on_both_backends!(
    https_with_a_bearer_token_signs_a_csr,
    an_mtls_station_signs_without_a_token_and_the_ledger_names_it_by_cn,
);

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca(common_name: &str) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    CertifiedIssuer::self_signed(params, key).expect("CA")
}

/// A station client certificate and its key, in memory and as PEM files (for curl).
pub(super) struct StationCert {
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
    pub(super) cert_path: PathBuf,
    pub(super) key_path: PathBuf,
}

impl StationCert {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

fn station_cert(dir: &Path, issuer: &Ca, common_name: &str, serial: u8) -> StationCert {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example Factory");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(SerialNumber::from(vec![0x1a, serial]));
    let cert = params.signed_by(&key, issuer).expect("station certificate");
    let name = format!("station-{serial}");
    StationCert {
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
        cert_path: write(dir, &format!("{name}.crt"), &cert.pem()),
        key_path: write(dir, &format!("{name}.key"), &key.serialize_pem()),
    }
}

/// The test PKI: the server's CA and certificate, and the station CA.
pub(super) struct Pki {
    pub(super) dir: PathBuf,
    server_ca_der: CertificateDer<'static>,
    pub(super) server_ca_path: PathBuf,
    server_cert_path: PathBuf,
    server_key_path: PathBuf,
    station_ca: Ca,
    station_ca_path: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).expect("pki dir");
        let server_ca = new_ca("Test Server CA");
        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("SANs");
        params
            .distinguished_name
            .push(DnType::CommonName, "factory-ca.test");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params
            .signed_by(&server_key, &server_ca)
            .expect("server cert");
        let station_ca = new_ca("Test Station CA");
        Pki {
            server_ca_der: server_ca.der().clone(),
            server_ca_path: write(&dir, "server-ca.crt", &server_ca.pem()),
            // The chain: the server certificate, then its CA (harmless for clients).
            server_cert_path: write(
                &dir,
                "server.crt",
                &format!("{}{}", server_cert.pem(), server_ca.pem()),
            ),
            server_key_path: owner_only(write(&dir, "server.key", &server_key.serialize_pem())),
            station_ca_path: write(&dir, "station-ca.crt", &station_ca.pem()),
            station_ca,
            dir,
        }
    }

    pub(super) fn station(&self, common_name: &str, serial: u8) -> StationCert {
        station_cert(&self.dir, &self.station_ca, common_name, serial)
    }

    /// `[server.tls]` for HTTPS, with station mTLS in `client_auth` mode when given.
    fn configure(&self, settings: &mut Settings, client_auth: Option<ClientAuth>) {
        let tls = &mut settings.server.tls;
        tls.cert_file = Some(self.server_cert_path.clone());
        tls.key_file = Some(self.server_key_path.clone());
        if let Some(mode) = client_auth {
            tls.client_ca_file = Some(self.station_ca_path.clone());
            tls.client_auth = mode;
        }
    }

    fn rustls_config(&self, identity: Option<&StationCert>) -> rustls::ClientConfig {
        self.rustls_config_with(
            identity,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    pub(super) fn rustls_config_with(
        &self,
        identity: Option<&StationCert>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_ca_der.clone()).expect("server CA");
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(station) => builder
                .with_client_auth_cert(vec![station.cert_der.clone()], station.key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// reqwest on rustls (aws-lc-rs), trusting only the test server CA.
    fn client(&self, identity: Option<&StationCert>) -> reqwest::Client {
        client_from(self.rustls_config(identity))
    }
}

fn client_from(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

#[cfg(unix)]
fn owner_only(path: PathBuf) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

#[cfg(not(unix))]
fn owner_only(path: PathBuf) -> PathBuf {
    path
}

/// A real server with `[server.tls]`, run until stopped, with a token for each role.
pub(super) struct TlsApp {
    base: String,
    pub(super) addr: SocketAddr,
    store: Store,
    pub(super) pki: Pki,
    admin: String,
    pub(super) station: String,
    pub(super) viewer: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

impl TlsApp {
    async fn spawn(backend: Backend, client_auth: Option<ClientAuth>) -> TlsApp {
        Self::spawn_with(backend, client_auth, |_, _| {}).await
    }

    pub(super) async fn spawn_with(
        backend: Backend,
        client_auth: Option<ClientAuth>,
        configure: impl FnOnce(&Pki, &mut Settings),
    ) -> TlsApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path());
        let mut settings = test_settings(backend, dir.path()).await;
        pki.configure(&mut settings, client_auth);
        configure(&pki, &mut settings);
        let app = Application::build(settings)
            .await
            .expect("application builds");
        assert_eq!(app.scheme(), "https");
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let store = app.state().store.clone();
        let admin = new_token(&store, "admin-1", Role::Admin).await;
        let station = new_token(&store, "station-1", Role::Station).await;
        let viewer = new_token(&store, "viewer-1", Role::Viewer).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        TlsApp {
            base: format!("https://127.0.0.1:{}", addr.port()),
            addr,
            store,
            pki,
            admin,
            station,
            viewer,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn sign(
        &self,
        client: &reqwest::Client,
        token: Option<&str>,
        thing: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = client
            .post(self.url("/v1/certificates"))
            .json(&serde_json::json!({ "csr": csr(thing, "JP").pem }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await
    }

    /// The ledger row of `serial`, read over HTTPS with the viewer token.
    pub(super) async fn ledger_row(&self, serial: &str) -> serde_json::Value {
        let response = self
            .pki
            .client(None)
            .get(self.url(&format!("/v1/certificates/{serial}")))
            .bearer_auth(&self.viewer)
            .send()
            .await
            .expect("ledger read");
        assert_eq!(response.status(), StatusCode::OK);
        json(response).await
    }

    pub(super) async fn ledger_count(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM issued_certificates";
        let (n,): (i64,) = match &self.store {
            Store::Postgres(pool) => sqlx::query_as(sql).fetch_one(pool).await.unwrap(),
            Store::Sqlite(pool) => sqlx::query_as(sql).fetch_one(pool).await.unwrap(),
        };
        n
    }

    /// Signals shutdown and waits for `run_until` to return.
    async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TlsApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The server still answers (a refused client did not take it down).
async fn assert_still_serving(app: &TlsApp) {
    let response = app
        .pki
        .client(None)
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz over HTTPS");
    assert_eq!(response.status(), StatusCode::OK);
}

async fn https_with_a_bearer_token_signs_a_csr(backend: Backend) {
    let app = TlsApp::spawn(backend, None).await;
    let client = app.pki.client(None);

    let response = app
        .sign(&client, Some(&app.station), "Thing-Tls-1")
        .await
        .expect("HTTPS request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let issued = json(response).await;
    let serial = issued["serial"].as_str().expect("serial").to_owned();
    assert_eq!(app.ledger_row(&serial).await["station"], "station-1");

    // Without a token (and no mTLS configured) nothing authenticates.
    let response = app.sign(&client, None, "Thing-Tls-2").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(response).await["code"], "unauthorized");

    // A TLS 1.2-only client is served too.
    let tls12 = client_from(app.pki.rustls_config_with(None, &[&rustls::version::TLS12]));
    let response = app
        .sign(&tls12, Some(&app.station), "Thing-Tls-3")
        .await
        .expect("TLS 1.2 request");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(app.ledger_count().await, 2);
}

async fn an_mtls_station_signs_without_a_token_and_the_ledger_names_it_by_cn(backend: Backend) {
    let app = TlsApp::spawn(backend, Some(ClientAuth::Optional)).await;
    let line7 = app.pki.station("line-7", 1);
    let client = app.pki.client(Some(&line7));

    let response = app
        .sign(&client, None, "Thing-Mtls-1")
        .await
        .expect("mTLS request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let serial = json(response).await["serial"]
        .as_str()
        .expect("serial")
        .to_owned();
    assert_eq!(app.ledger_row(&serial).await["station"], "cert:line-7");

    // A certificate named like a token (`bootstrap-admin`) is a station of its own:
    // `cert:bootstrap-admin`, never the token's name.
    let impostor = app.pki.station("bootstrap-admin", 11);
    let impostor_client = app.pki.client(Some(&impostor));
    let response = app
        .sign(&impostor_client, None, "Thing-Mtls-3")
        .await
        .expect("mTLS request");
    assert_eq!(response.status(), StatusCode::CREATED);
    // HTTPS answers carry HSTS.
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let impostor_serial = json(response).await["serial"]
        .as_str()
        .expect("serial")
        .to_owned();
    assert_eq!(
        app.ledger_row(&impostor_serial).await["station"],
        "cert:bootstrap-admin"
    );

    // Every request of the connection carries the identity (keep-alive reuses it), and the
    // station's idempotency scope is its CN.
    let body = serde_json::json!({ "csr": csr("Thing-Mtls-2", "JP").pem });
    let mut serials = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(app.url("/v1/certificates"))
            .header("Idempotency-Key", "mtls-key-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        serials.push(json(response).await["serial"].as_str().unwrap().to_owned());
    }
    assert_eq!(serials[0], serials[1]);
    assert_eq!(app.ledger_row(&serials[0]).await["station"], "cert:line-7");
    assert_eq!(app.ledger_count().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused() {
    let app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Optional)).await;
    // A rogue CA with the very name of the station CA, but its own key.
    let rogue = new_ca("Test Station CA");
    let forged = station_cert(&app.pki.dir, &rogue, "line-1", 9);
    let client = app.pki.client(Some(&forged));

    let outcome = app.sign(&client, Some(&app.station), "Thing-Rogue-1").await;
    assert!(outcome.is_err(), "the handshake must fail: {outcome:?}");
    assert_eq!(app.ledger_count().await, 0);
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_auth_refuses_a_handshake_without_a_certificate() {
    let app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Required)).await;

    // Not even a valid admin token gets past the handshake without a certificate.
    let outcome = app
        .pki
        .client(None)
        .get(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .send()
        .await;
    assert!(outcome.is_err(), "the handshake must fail: {outcome:?}");

    let station = app.pki.station("line-2", 2);
    let client = app.pki.client(Some(&station));
    let response = app.sign(&client, None, "Thing-Req-1").await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // With a certificate, a token still decides the role.
    let response = client
        .get(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_still_work_under_optional_mtls_and_win_over_the_certificate() {
    let app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Optional)).await;

    // No certificate: the admin token works as without mTLS.
    let response = app
        .pki
        .client(None)
        .get(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let line3 = app.pki.station("line-3", 3);
    let client = app.pki.client(Some(&line3));
    // A station token with a certificate: the token names the station.
    let response = app
        .sign(&client, Some(&app.station), "Thing-Both-1")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let serial = json(response).await["serial"].as_str().unwrap().to_owned();
    assert_eq!(app.ledger_row(&serial).await["station"], "station-1");

    // A viewer token with a station certificate is a viewer: it may read, not sign.
    let response = client
        .get(app.url("/v1/certificates"))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .sign(&client, Some(&app.viewer), "Thing-Both-2")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // A bad token is not rescued by the certificate.
    let bogus = format!("fca_{}", "A".repeat(43));
    let response = app
        .sign(&client, Some(&bogus), "Thing-Both-3")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.ledger_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_certificate_reaches_no_viewer_or_admin_route() {
    let app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Optional)).await;
    let line4 = app.pki.station("line-4", 4);
    let client = app.pki.client(Some(&line4));

    for path in [
        "/v1/certificates",
        "/v1/admin/tokens",
        "/v1/admin/audit",
        "/v1/admin/cas",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(json(response).await["code"], "forbidden", "{path}");
    }
    let response = client
        .post(app.url("/v1/admin/tokens"))
        .json(&serde_json::json!({"name": "sneaky", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Routes for any role are open to it.
    let response = client.get(app.url("/v1/ca")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_whose_cn_is_no_station_name_gets_401() {
    let app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Optional)).await;
    for (serial, cn) in [(5, "line 5"), (6, "line-6/../admin")] {
        let cert = app.pki.station(cn, serial);
        let client = app.pki.client(Some(&cert));
        let response = app.sign(&client, None, "Thing-Cn-1").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cn}");
        let problem = json(response).await;
        assert_eq!(problem["code"], "unauthorized");
        assert!(
            problem["detail"].as_str().unwrap().contains("CN"),
            "{problem}"
        );
    }
    assert_eq!(app.ledger_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_station_is_rate_limited_like_a_token_station() {
    let app = TlsApp::spawn_with(Backend::Sqlite, Some(ClientAuth::Optional), |_, s| {
        s.server.station_rate_per_sec = 0.001;
        s.server.station_burst = 1;
    })
    .await;
    let line8 = app.pki.station("line-8", 8);
    let client = app.pki.client(Some(&line8));
    let response = app.sign(&client, None, "Thing-Rate-1").await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app.sign(&client, None, "Thing-Rate-2").await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json(response).await["code"], "rate_limited");
    // Another station (by token) has its own bucket.
    let response = app
        .sign(&app.pki.client(None), Some(&app.station), "Thing-Rate-3")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_https_port_gets_400_https_required() {
    let app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Optional)).await;
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("http://{}/v1/certificates", app.addr);
    let response = plain
        .post(&url)
        .bearer_auth(&app.station)
        .json(&serde_json::json!({ "csr": csr("Thing-Plain-1", "JP").pem }))
        .send()
        .await
        .expect("a plain HTTP answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(json(response).await["code"], "https_required");
    assert_eq!(app.ledger_count().await, 0);
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_client_certificate_signs_a_csr() {
    let app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Optional)).await;
    let line9 = app.pki.station("line-9", 10);
    let csr_path = write(&app.pki.dir, "device.csr", &csr("Thing-Curl-1", "JP").pem);
    let out_path = app.pki.dir.join("curl-out.json");
    let args: Vec<String> = vec![
        "--silent".into(),
        "--show-error".into(),
        "--max-time".into(),
        "30".into(),
        "--cacert".into(),
        app.pki.server_ca_path.display().to_string(),
        "--cert".into(),
        line9.cert_path.display().to_string(),
        "--key".into(),
        line9.key_path.display().to_string(),
        "-H".into(),
        "Content-Type: application/pkcs10".into(),
        "--data-binary".into(),
        format!("@{}", csr_path.display()),
        "--output".into(),
        out_path.display().to_string(),
        "--write-out".into(),
        "%{http_code} %{http_version}".into(),
        app.url("/v1/certificates"),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl").args(&args).output()
    })
    .await
    .unwrap()
    .expect("curl runs");
    let written = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 201, over HTTP/2 (negotiated by ALPN).
    assert_eq!(written, "201 2");
    let issued: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(issued["thing_name"], "Thing-Curl-1");
    let serial = issued["serial"].as_str().unwrap();
    assert_eq!(app.ledger_row(serial).await["station"], "cert:line-9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_station_certificate_is_refused_with_a_crl() {
    let app = TlsApp::spawn_with(Backend::Sqlite, Some(ClientAuth::Optional), |pki, s| {
        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(vec![0x1a, 11]),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&pki.station_ca)
        .expect("CRL");
        let path = write(&pki.dir, "station-ca.crl.pem", &crl.pem().expect("CRL PEM"));
        s.server.tls.client_crl_file = Some(path);
    })
    .await;
    let revoked = app.pki.station("line-11", 11);
    let good = app.pki.station("line-12", 12);

    let outcome = app
        .sign(&app.pki.client(Some(&revoked)), None, "Thing-Crl-1")
        .await;
    assert!(
        outcome.is_err(),
        "a revoked certificate must fail: {outcome:?}"
    );
    let response = app
        .sign(&app.pki.client(Some(&good)), None, "Thing-Crl-2")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(app.ledger_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let app = TlsApp::spawn_with(Backend::Sqlite, None, |_, s| {
        s.server.tls.handshake_timeout_secs = std::time::Duration::from_secs(1);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buf = [0u8; 64];
    // Bounded wait, far beyond the 1 s timeout: the server closes the socket (EOF or reset).
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("the server must close a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_over_tls_is_closed_after_the_header_timeout() {
    let app = TlsApp::spawn_with(Backend::Sqlite, None, |_, s| {
        s.server.header_read_timeout_secs = Duration::from_secs(2);
    })
    .await;
    let config = Arc::new(app.pki.rustls_config(None));
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake");
    let start = std::time::Instant::now();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed = loop {
        // One header line a second; the head never ends. Bounded to 20 lines.
        assert!(start.elapsed() < Duration::from_secs(20), "never closed");
        tokio::select! {
            read = tls.read(&mut buf) => match read {
                Ok(0) | Err(_) => break start.elapsed(),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if tls.write_all(b"x-slow: 1\r\n").await.is_err() {
                    break start.elapsed();
                }
            }
        }
    };
    assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
    assert_still_serving(&app).await;
}

/// Reads from `stream` until `needle` has been seen (bounded in bytes; the caller bounds time).
async fn read_until<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, needle: &[u8]) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        assert!(
            seen.len() < 1 << 20,
            "no {needle:?} in {} bytes",
            seen.len()
        );
        let n = stream.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_over_tls_finishes_the_in_flight_request() {
    let mut app = TlsApp::spawn(Backend::Sqlite, Some(ClientAuth::Optional)).await;
    let line13 = app.pki.station("line-13", 13);
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(app.pki.rustls_config(Some(&line13))));
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let body = serde_json::json!({ "csr": csr("Thing-Drain-1", "JP").pem }).to_string();
    let head = format!(
        "POST /v1/certificates HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes when the handler asks for the body: the request is in flight.
    let interim = tokio::time::timeout(Duration::from_secs(30), read_until(&mut tls, b"\r\n\r\n"))
        .await
        .expect("100 Continue");
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    if let Some(stop) = app.stop.take() {
        let _ = stop.send(());
    }
    // New connections are refused once the signal is seen (bounded polling).
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(app.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        refused,
        "the listener still accepts after the shutdown signal"
    );

    // The in-flight request completes, and the server then returns.
    tls.write_all(body.as_bytes()).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), async {
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .expect("the in-flight request is answered");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        response.contains("\"thing_name\":\"Thing-Drain-1\""),
        "{response}"
    );
    tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .expect("run_until returns")
        .expect("clean shutdown");
}

/// Builds an app with `configure` and returns the startup error, or panics if it started.
async fn startup_error(dir: &Path, case: &str, configure: impl FnOnce(&mut Settings)) -> String {
    let mut settings = test_settings(Backend::Sqlite, dir).await;
    configure(&mut settings);
    match Application::build(settings).await {
        Ok(_) => panic!("the application started ({case})"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_unusable_tls_files_and_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let other_key = owner_only(write(
        &pki.dir,
        "other.key",
        &KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    ));
    let loose_key = write(
        &pki.dir,
        "loose.key",
        &std::fs::read_to_string(&pki.server_key_path).unwrap(),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let not_pem = write(&pki.dir, "not-pem.crt", "hello\n");
    let leaf = pki.station("line-14", 14);
    let foreign_crl = {
        let other = new_ca("Some Other CA");
        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&other)
        .unwrap();
        write(&pki.dir, "foreign.crl.pem", &crl.pem().unwrap())
    };

    type Misconfigure<'a> = Box<dyn FnOnce(&mut Settings) + 'a>;
    let cases: Vec<(&str, Misconfigure<'_>)> = vec![
        (
            "server.tls.cert_file",
            Box::new(|s: &mut Settings| {
                pki.configure(s, None);
                s.server.tls.cert_file = Some(pki.dir.join("missing.crt"));
            }),
        ),
        (
            "holds no certificate",
            Box::new(|s: &mut Settings| {
                pki.configure(s, None);
                s.server.tls.cert_file = Some(not_pem.clone());
            }),
        ),
        (
            "does not match the certificate",
            Box::new(|s: &mut Settings| {
                pki.configure(s, None);
                s.server.tls.key_file = Some(other_key.clone());
            }),
        ),
        (
            "chmod 600",
            Box::new(|s: &mut Settings| {
                pki.configure(s, None);
                s.server.tls.key_file = Some(loose_key.clone());
            }),
        ),
        (
            "holds no private key",
            Box::new(|s: &mut Settings| {
                pki.configure(s, None);
                s.server.tls.key_file = Some(owner_only(pki.server_ca_path.clone()));
            }),
        ),
        (
            "is not a CA certificate",
            Box::new(|s: &mut Settings| {
                pki.configure(s, Some(ClientAuth::Optional));
                s.server.tls.client_ca_file = Some(leaf.cert_path.clone());
            }),
        ),
        (
            "which is not a CA in server.tls.client_ca_file",
            Box::new(|s: &mut Settings| {
                pki.configure(s, Some(ClientAuth::Optional));
                s.server.tls.client_crl_file = Some(foreign_crl.clone());
            }),
        ),
        (
            "go together",
            Box::new(|s: &mut Settings| {
                pki.configure(s, None);
                s.server.tls.key_file = None;
            }),
        ),
    ];
    for (expected, configure) in cases {
        let case_dir = tempfile::tempdir().unwrap();
        let error = startup_error(case_dir.path(), expected, configure).await;
        assert!(
            error.contains(expected),
            "expected {expected:?} in: {error}"
        );
    }

    // The permission check has the same escape hatch as CA keys.
    let case_dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(Backend::Sqlite, case_dir.path()).await;
    pki.configure(&mut settings, None);
    settings.server.tls.key_file = Some(loose_key.clone());
    settings.server.tls.allow_insecure_key_permissions = true;
    Application::build(settings)
        .await
        .expect("starts with allow_insecure_key_permissions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_the_device_ca_as_station_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // First start, plain HTTP: creates the issuing (device) CA.
    let settings = test_settings(Backend::Sqlite, dir.path()).await;
    let app = Application::build(settings.clone()).await.expect("builds");
    let device_ca_pem = app
        .state()
        .issuance
        .issuing_ca()
        .certificate_pem()
        .to_owned();
    let store = app.state().store.clone();
    drop(app);
    store.close().await;

    let device_ca_path = write(&pki.dir, "device-ca.crt", &device_ca_pem);
    let mut settings = settings;
    pki.configure(&mut settings, Some(ClientAuth::Optional));
    settings.server.tls.client_ca_file = Some(device_ca_path);
    let error = match Application::build(settings).await {
        Ok(_) => panic!("the device CA was accepted as station CA"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("every device certificate would authenticate as a station"),
        "{error}"
    );
}
