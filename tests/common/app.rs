//! `TestApp`: a real server on port 0 over SQLite (a temporary directory) or PostgreSQL (a
//! fresh database per test), with tokens for each role, driven over HTTP.

use std::path::Path;
use std::sync::Arc;

use factory_ca::app::Application;
use factory_ca::aws::IotRegistry;
use factory_ca::aws::fake::FakeIotRegistry;
use factory_ca::config::{AwsTargetSettings, Secret, Settings};
use factory_ca::services::tokens::{self, Role};
use factory_ca::store::Store;
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    /// The dashboard's read pool of the same database.
    pub reads: Store,
    pub settings: Settings,
    /// The running service's state (its store, its AWS targets, its jobs' entry points).
    pub state: factory_ca::app::AppState,
    pub admin: String,
    pub station: String,
    pub viewer: String,
    pub dir: TempDir,
    iot: Option<Arc<dyn IotRegistry>>,
    /// Named AWS targets and their registries (instead of `iot`).
    targets: Vec<(String, Arc<dyn IotRegistry>)>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A device certificate as the tests use it: its serial, AWS IoT certificate id and DER.
pub struct Device {
    pub serial: String,
    pub aws_id: String,
    pub der: Vec<u8>,
}

/// The PostgreSQL server tests use: `TEST_POSTGRES_URL`, default the local trust-auth one.
pub fn pg_server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Creates an empty database for one test and returns its URL.
pub async fn fresh_pg_database() -> String {
    let server = pg_server();
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL tests need a server at {server} (set TEST_POSTGRES_URL, or run \
                 scripts/test.sh, which starts the local one): {e}"
            )
        });
    // `scripts/test.sh` sets a prefix of its own run, and drops only those databases when it
    // ends, so that test runs of several checkouts can share one server.
    let prefix =
        std::env::var("TEST_POSTGRES_DB_PREFIX").unwrap_or_else(|_| "factory_ca_test_".into());
    let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    format!("{server}/{name}")
}

pub async fn test_settings(backend: Backend, dir: &Path) -> Settings {
    let mut settings = Settings {
        data_dir: dir.join("data"),
        ..Settings::default()
    };
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.shutdown_grace_secs = std::time::Duration::from_secs(5);
    settings.database.max_connections = 8;
    if backend == Backend::Postgres {
        settings.database.url = Secret::new(fresh_pg_database().await);
    }
    settings
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(backend, dir.path()).await;
        configure(&mut settings);
        Self::start(settings, dir, None, None).await
    }

    /// A server whose AWS IoT is `iot` (the fake, or the SDK client against moto).
    pub async fn spawn_with_iot(
        backend: Backend,
        iot: Arc<dyn IotRegistry>,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(backend, dir.path()).await;
        configure(&mut settings);
        Self::start(settings, dir, None, Some(iot)).await
    }

    /// A server with several AWS registration targets, each with its registry; `configure`
    /// must name them in `aws.targets`.
    pub async fn spawn_with_targets(
        backend: Backend,
        targets: Vec<(String, Arc<dyn IotRegistry>)>,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(backend, dir.path()).await;
        configure(&mut settings);
        Self::start_targets(settings, dir, None, None, targets).await
    }

    /// A server with two fake AWS targets, `eu` (eu-west-1) and `us` (us-east-1), and its
    /// registries; the retry job runs every second so that a target that was down hears of what
    /// it missed soon after it is back.
    pub async fn spawn_eu_us(
        backend: Backend,
    ) -> (TestApp, Arc<FakeIotRegistry>, Arc<FakeIotRegistry>) {
        Self::spawn_eu_us_retrying_every(backend, std::time::Duration::from_secs(1)).await
    }

    /// [`TestApp::spawn_eu_us`] with the retry job running every `retry` (an hour: only the
    /// rounds a test runs itself).
    pub async fn spawn_eu_us_retrying_every(
        backend: Backend,
        retry: std::time::Duration,
    ) -> (TestApp, Arc<FakeIotRegistry>, Arc<FakeIotRegistry>) {
        let eu = Arc::new(FakeIotRegistry::new());
        let us = Arc::new(FakeIotRegistry::new());
        let targets: Vec<(String, Arc<dyn IotRegistry>)> =
            vec![("eu".into(), eu.clone()), ("us".into(), us.clone())];
        let app = Self::spawn_with_targets(backend, targets, |s| {
            s.aws.enabled = true;
            s.aws.revocation_retry_secs = retry;
            s.aws.targets = [("eu", "eu-west-1"), ("us", "us-east-1")]
                .into_iter()
                .map(|(name, region)| {
                    let target = AwsTargetSettings {
                        region: region.into(),
                        ..AwsTargetSettings::default()
                    };
                    (name.to_owned(), target)
                })
                .collect();
        })
        .await;
        (app, eu, us)
    }

    async fn start(
        settings: Settings,
        dir: TempDir,
        tokens: Option<[String; 3]>,
        iot: Option<Arc<dyn IotRegistry>>,
    ) -> TestApp {
        Self::start_targets(settings, dir, tokens, iot, Vec::new()).await
    }

    async fn start_targets(
        settings: Settings,
        dir: TempDir,
        tokens: Option<[String; 3]>,
        iot: Option<Arc<dyn IotRegistry>>,
        targets: Vec<(String, Arc<dyn IotRegistry>)>,
    ) -> TestApp {
        let app = if targets.is_empty() {
            Application::build_with_registry(settings.clone(), iot.clone()).await
        } else {
            Application::build_with_targets(settings.clone(), targets.clone()).await
        }
        .expect("application builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let store = app.state().store.clone();
        let reads = app.state().reads.clone();
        let [admin, station, viewer] = match tokens {
            Some(t) => t,
            None => [
                new_token(&store, "admin-1", Role::Admin).await,
                new_token(&store, "station-1", Role::Station).await,
                new_token(&store, "viewer-1", Role::Viewer).await,
            ],
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        TestApp {
            base,
            client: reqwest::Client::new(),
            store,
            reads,
            settings,
            state,
            admin,
            station,
            viewer,
            dir,
            iot,
            targets,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the server and starts a new process-equivalent on the same store and data dir.
    pub async fn restart(mut self) -> TestApp {
        self.shutdown().await;
        let tokens = [
            self.admin.clone(),
            self.station.clone(),
            self.viewer.clone(),
        ];
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::start_targets(
            self.settings.clone(),
            dir,
            Some(tokens),
            self.iot.clone(),
            self.targets.clone(),
        )
        .await
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a PEM CSR as JSON with the station token.
    pub async fn sign(&self, csr_pem: &str) -> reqwest::Response {
        self.sign_as(&self.station, csr_pem, None).await
    }

    pub async fn sign_as(
        &self,
        token: &str,
        csr_pem: &str,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/v1/certificates"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "csr": csr_pem }));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request sent")
    }

    /// Sends JSON with the admin token.
    pub async fn admin_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Revokes `serial` as the admin (reason key compromise), expecting 200; the answer's body.
    pub async fn revoke(&self, serial: &str) -> serde_json::Value {
        let response = self
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/admin/certificates/{serial}/revoke"),
                serde_json::json!({"reason": "key_compromise"}),
            )
            .await;
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "revoke {serial}"
        );
        json(response).await
    }

    /// Registers the service's CA in every target (SNI_ONLY, active, JITP with a simple
    /// template); returns the CA's id.
    pub async fn register_ca_with_jitp(&self) -> String {
        let ca = json(self.get(&self.admin, "/v1/ca").await).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let register = self.register_with_jitp(&ca, "sni_only").await;
        assert_eq!(register.status(), reqwest::StatusCode::CREATED);
        ca
    }

    /// `POST /v1/admin/cas/{ca}/aws/register` in `mode` (`default`, `sni_only`): activated,
    /// auto-registration on, a simple JITP template with the Country attribute.
    pub async fn register_with_jitp(&self, ca: &str, mode: &str) -> reqwest::Response {
        self.admin_json(
            reqwest::Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            serde_json::json!({"mode": mode, "activate": true, "auto_registration": true,
               "role_arn": "arn:aws:iam::123456789012:role/JITP_Role",
               "template": {"simple": {"attributes": {"Country": "Country"},
                   "policy_name": "My_IoT_Policy", "thing_type": null,
                   "thing_groups": []}}}),
        )
        .await
    }

    /// A device certificate signed through the API for `thing` (country JP).
    pub async fn device(&self, thing: &str) -> Device {
        let answer = json(self.sign(&crate::common::csr(thing, "JP").pem).await).await;
        Device {
            serial: answer["serial"].as_str().unwrap().to_owned(),
            aws_id: answer["aws_certificate_id"].as_str().unwrap().to_owned(),
            der: ::pem::parse(answer["certificate_pem"].as_str().unwrap())
                .unwrap()
                .into_contents(),
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// Rows in the ledger, read directly from the database.
    pub async fn ledger_count(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM issued_certificates";
        let (n,): (i64,) = match &self.store {
            Store::Postgres(pool) => sqlx::query_as(sql).fetch_one(pool).await.unwrap(),
            Store::Sqlite(pool) => sqlx::query_as(sql).fetch_one(pool).await.unwrap(),
        };
        n
    }

    /// `ledger verify` in process: every CA's chain and checkpoints, checked with the data
    /// directory's audit key.
    pub async fn verify_ledger(&self) -> Vec<factory_ca::services::ledger::CaVerification> {
        let key = factory_ca::keys::KeyStore::from_settings(&self.settings)
            .existing_audit_key()
            .await
            .expect("the audit key reads")
            .expect("serve made the audit key");
        factory_ca::services::ledger::verify(&self.store, None, &[key.public().clone()])
            .await
            .expect("the store answers")
    }

    /// A hex value the store keeps as bytes on PostgreSQL (a serial, an AWS certificate id)
    /// as an SQL literal of its column: the bytes on PostgreSQL, the text on SQLite
    /// (`src/store/hex_columns.rs`).
    pub fn hex_sql(&self, hex: &str) -> String {
        match &self.store {
            Store::Postgres(_) => format!("'\\x{hex}'::bytea"),
            Store::Sqlite(_) => format!("'{hex}'"),
        }
    }

    pub async fn execute_sql(&self, sql: &str) {
        match &self.store {
            Store::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Store::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        }
        .expect("test SQL runs");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn new_token(store: &Store, name: &str, role: Role) -> String {
    tokens::create_token(store, name, role, "test", None)
        .await
        .expect("token created")
        .expose()
        .to_owned()
}

pub async fn json(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("JSON body")
}
