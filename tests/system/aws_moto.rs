//! The real `aws-sdk-iot` client against the moto emulator, for every call moto implements:
//! registration code, register/describe/update/delete CA, register/describe/update
//! certificate, list certificates by CA. moto validates nothing; the AWS rules are tested
//! against the fake (`tests/routes/aws.rs`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use factory_ca::aws::sdk::SdkIotRegistry;
use factory_ca::aws::{
    AwsError, CaUpdate, CertificateMode, IotRegistry, RegisterCaRequest, RegistrationConfig,
};
use time::OffsetDateTime;

use crate::common::aws::{device_certificate, test_ca};
use crate::common::process::free_port;

/// A moto server on its own loopback port, stopped on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_moto() -> Moto {
    start_moto_with(&[])
}

/// moto with `scripts/moto_server.py`'s options (`--kms-as-shipped`).
pub(crate) fn start_moto_with(options: &[&str]) -> Moto {
    let root = env!("CARGO_MANIFEST_DIR");
    let python =
        std::env::var("MOTO_PYTHON").unwrap_or_else(|_| format!("{root}/.venv/bin/python"));
    let port = free_port();
    let child = Command::new(&python)
        .arg(format!("{root}/scripts/moto_server.py"))
        .arg(port.to_string())
        .args(options)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start moto with {python} (scripts/test.sh installs it): {e}")
        });
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn the_sdk_client_drives_every_call_moto_implements() {
    let moto = start_moto();
    let iot = SdkIotRegistry::for_emulator(&moto.url);

    let code = iot.get_registration_code().await.unwrap();
    assert!(!code.is_empty());

    // Register a CA in DEFAULT mode with a verification certificate made by the CA core.
    let ca = test_ca("Moto Root");
    let verification = ca
        .verification_certificate(&code, OffsetDateTime::now_utc())
        .unwrap();
    let template_body =
        r#"{"Parameters":{"AWS::IoT::Certificate::Id":{"Type":"String"}},"Resources":{}}"#;
    let registered = iot
        .register_ca_certificate(RegisterCaRequest {
            ca_certificate_pem: ca.certificate_pem().to_owned(),
            verification_certificate_pem: Some(verification),
            mode: CertificateMode::Default,
            set_as_active: true,
            allow_auto_registration: true,
            registration_config: Some(RegistrationConfig {
                template_body: Some(template_body.to_owned()),
                role_arn: Some("arn:aws:iam::123456789012:role/JITP".to_owned()),
                template_name: None,
            }),
        })
        .await
        .unwrap();
    // use_valid_cert: the id is SHA-256 of the DER, as AWS computes it.
    assert_eq!(registered.certificate_id, ca.aws_certificate_id());
    assert!(
        registered
            .certificate_arn
            .ends_with(&registered.certificate_id)
    );

    let described = iot
        .describe_ca_certificate(&registered.certificate_id)
        .await
        .unwrap();
    assert_eq!(described.status, "ACTIVE");
    assert_eq!(
        described
            .registration_config
            .unwrap()
            .template_body
            .as_deref(),
        Some(template_body)
    );
    // moto implements neither allowAutoRegistration nor newAutoRegistrationStatus (the fake
    // tests those); status and registrationConfig updates it does keep.
    let named = RegistrationConfig {
        template_body: None,
        role_arn: None,
        template_name: Some("line-3-template".to_owned()),
    };
    for (active, status) in [(false, "INACTIVE"), (true, "ACTIVE")] {
        iot.update_ca_certificate(
            &registered.certificate_id,
            CaUpdate {
                active: Some(active),
                auto_registration: None,
                registration_config: Some(named.clone()),
            },
        )
        .await
        .unwrap();
        let described = iot
            .describe_ca_certificate(&registered.certificate_id)
            .await
            .unwrap();
        assert_eq!(described.status, status);
        assert_eq!(described.registration_config.as_ref(), Some(&named));
    }

    // Device certificates: register one as REVOKED, read it back, change it, list by CA.
    let (device_pem, device_id) = device_certificate(&ca, "Moto-Thing-1");
    let id = iot
        .register_certificate(&device_pem, ca.certificate_pem(), "REVOKED")
        .await
        .unwrap();
    assert_eq!(id, device_id);
    assert_eq!(
        iot.describe_certificate(&id).await.unwrap().status,
        "REVOKED"
    );
    iot.update_certificate(&id, "INACTIVE").await.unwrap();
    assert_eq!(
        iot.describe_certificate(&id).await.unwrap().status,
        "INACTIVE"
    );
    let page = iot
        .list_certificates_by_ca(&registered.certificate_id, None)
        .await
        .unwrap();
    assert!(page.certificates.iter().any(|c| c.certificate_id == id));

    // Deactivate and delete; then the CA is gone.
    iot.update_ca_certificate(
        &registered.certificate_id,
        CaUpdate {
            active: Some(false),
            ..CaUpdate::default()
        },
    )
    .await
    .unwrap();
    iot.delete_ca_certificate(&registered.certificate_id)
        .await
        .unwrap();
    let gone = iot
        .describe_ca_certificate(&registered.certificate_id)
        .await
        .unwrap_err();
    assert!(matches!(gone, AwsError::NotFound(_)), "{gone:?}");

    // SNI_ONLY registration without a verification certificate.
    let sni = test_ca("Moto SNI Root");
    let registered = iot
        .register_ca_certificate(RegisterCaRequest {
            ca_certificate_pem: sni.certificate_pem().to_owned(),
            verification_certificate_pem: None,
            mode: CertificateMode::SniOnly,
            set_as_active: false,
            allow_auto_registration: false,
            registration_config: None,
        })
        .await
        .unwrap();
    assert_eq!(registered.certificate_id, sni.aws_certificate_id());
    let unknown = iot.describe_certificate(&"0".repeat(64)).await.unwrap_err();
    assert!(matches!(unknown, AwsError::NotFound(_)), "{unknown:?}");
}

/// Through the service: moto ignores auto-registration, which the register answer names as a
/// difference; and moto implements no provisioning templates (CreateProvisioningTemplate answers
/// an HTML 500 page), which the answer names in one line, not the SDK's debug dump.
#[tokio::test]
async fn the_service_names_what_the_emulator_did_not_do_in_one_line() {
    use crate::common::*;
    use reqwest::{Method, StatusCode};
    use serde_json::json;
    use std::sync::Arc;

    let moto = start_moto();
    let iot: Arc<dyn IotRegistry> = Arc::new(SdkIotRegistry::for_emulator(&moto.url));
    let app = TestApp::spawn_with_iot(Backend::Sqlite, iot, |_| {}).await;
    let ca = json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("/v1/admin/cas/{ca}/aws");
    let role = "arn:aws:iam::123456789012:role/JITP_Role";
    let template = json!({"simple": {"attributes": {"Country": "Country"},
        "policy_name": "My_IoT_Policy", "thing_type": null, "thing_groups": []}});
    let response = app
        .admin_json(
            Method::POST,
            &format!("{base}/register"),
            json!({"mode": "default", "auto_registration": true, "role_arn": role,
                   "template": template}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // moto accepts allowAutoRegistration and keeps it off: the answer says so.
    let outcome = json(response).await;
    assert_eq!(
        outcome["differences"],
        json!(["auto_registration: requested true, AWS says false"]),
        "{outcome}"
    );

    let response = app
        .admin_json(
            Method::PUT,
            &format!("{base}/template"),
            json!({"role_arn": role, "template": template, "attach": "named"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let problem = json(response).await;
    assert_eq!(problem["code"], "aws_unavailable");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("HTTP 500"), "{detail}");
    assert!(detail.len() < 300, "{} characters: {detail}", detail.len());
    assert!(
        !detail.contains("SdkError") && !detail.contains('{'),
        "{detail}"
    );
    let audit = json(
        app.get(&app.admin, "/v1/admin/audit?action=ca.aws.template&limit=1")
            .await,
    )
    .await;
    assert_eq!(audit["items"][0]["outcome"], "failure");
    assert_eq!(audit["items"][0]["detail"], detail);
}

/// Revocations the ledger still owes AWS IoT, over every CA and target (what health reports).
async fn ledger_pending(store: &factory_ca::store::Store) -> i64 {
    store
        .revocation_lag()
        .await
        .expect("the ledger answers")
        .iter()
        .map(|lag| lag.pending)
        .sum()
}

/// A backlog of revocations AWS has not been told of drains at `aws.api_rate_per_sec`, through
/// a restart in the middle, and every certificate ends REVOKED in the emulator.
#[tokio::test]
async fn a_revocation_backlog_drains_at_the_configured_pace_across_a_restart() {
    use crate::common::*;
    use reqwest::{Method, StatusCode};
    use serde_json::json;
    use std::sync::Arc;

    const DEVICES: usize = 150;
    const RATE: f64 = 50.0;
    let moto = start_moto();
    let iot: Arc<dyn IotRegistry> = Arc::new(SdkIotRegistry::for_emulator(&moto.url));
    let app = TestApp::spawn_with_iot(Backend::Sqlite, iot, |s| {
        s.aws.api_rate_per_sec = RATE;
        s.aws.api_burst = 1;
        // The background job's first round comes 10 s after the start: until then only the
        // registration pushes (its first 50), so the restart below comes with 100 left.
        s.aws.revocation_retry_secs = Duration::from_secs(10);
    })
    .await;
    let ca = json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Revoked before the CA is registered: every revocation waits for AWS.
    let mut aws_ids = Vec::new();
    for i in 0..DEVICES {
        let device = json(app.sign(&csr(&format!("Backlog-{i}"), "JP").pem).await).await;
        aws_ids.push(device["aws_certificate_id"].as_str().unwrap().to_owned());
        let revoked = app
            .admin_json(
                Method::POST,
                &format!(
                    "/v1/admin/certificates/{}/revoke",
                    device["serial"].as_str().unwrap()
                ),
                json!({"reason": "key_compromise"}),
            )
            .await;
        assert_eq!(revoked.status(), StatusCode::OK);
    }
    let started = Instant::now();
    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "default"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // The restart comes with the backlog part-way: registering pushed its first 50, the rest
    // is the background job's. The ledger is asked, not /v1/admin/health: health's own AWS
    // calls wait for tokens of the same paced bucket, behind any pushes.
    let before_restart = ledger_pending(&app.store).await;
    assert!(before_restart > 0, "the backlog was never seen pending");
    let app = app.restart().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending_seen = vec![before_restart];
    loop {
        let pending = ledger_pending(&app.store).await;
        pending_seen.push(pending);
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} revocations still pending after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    assert_eq!(
        health["cas"][0]["targets"][0]["revocations_pending"], 0,
        "{health}"
    );
    // Each certificate AWS never saw takes two calls (UpdateCertificate answers not found,
    // then RegisterCertificate as REVOKED), every call one token at RATE per second.
    let floor = Duration::from_secs_f64((2 * DEVICES - 2) as f64 / RATE);
    eprintln!(
        "{DEVICES} revocations pushed in {elapsed:?} at {RATE}/s (floor {floor:?}); \
         pending seen: {:?}",
        &pending_seen[..pending_seen.len().min(8)]
    );
    assert!(
        elapsed >= floor,
        "{elapsed:?} is faster than the pace allows"
    );
    let check = SdkIotRegistry::for_emulator(&moto.url);
    for id in [&aws_ids[0], &aws_ids[DEVICES / 2], &aws_ids[DEVICES - 1]] {
        assert_eq!(
            check.describe_certificate(id).await.unwrap().status,
            "REVOKED"
        );
    }
}

/// `aws.role_arn`: the service assumes the role through moto's STS with the chain's credentials
/// (here the environment's), and its AWS IoT calls land in the role's account.
#[tokio::test]
async fn with_a_role_arn_the_calls_go_to_the_assumed_roles_account() {
    use crate::common::binary::{Service, factory_ca, run_ok};
    use serde_json::json;

    const ACCOUNT: &str = "111122223333";
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    run_ok(factory_ca(dir.path()).args(["ca", "create"]));
    let token = run_ok(
        factory_ca(dir.path()).args(["token", "create", "--role", "admin", "--name", "admin-1"]),
    )
    .trim()
    .to_owned();
    let mut cmd = factory_ca(dir.path());
    for var in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("FACTORY_CA_AWS__ENABLED", "true")
        .env("FACTORY_CA_AWS__REGION", "eu-west-1")
        .env("FACTORY_CA_AWS__ENDPOINT_URL", &moto.url)
        .env("FACTORY_CA_AWS__MAX_ATTEMPTS", "1")
        .env(
            "FACTORY_CA_AWS__ROLE_ARN",
            format!("arn:aws:iam::{ACCOUNT}:role/factory-ca"),
        );
    let mut service = Service::start(cmd);
    service.ready().await;
    let client = reqwest::Client::new();
    let ca: serde_json::Value = client
        .get(format!("{}/v1/ca", service.base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ca = ca["id"].as_str().unwrap();
    let response = client
        .post(format!("{}/v1/admin/cas/{ca}/aws/register", service.base()))
        .bearer_auth(&token)
        .json(&json!({"mode": "sni_only"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}\n{}", service.stderr_text());
    let arn = body["certificate_arn"].as_str().unwrap();
    assert!(
        arn.starts_with(&format!("arn:aws:iot:eu-west-1:{ACCOUNT}:")),
        "{arn}"
    );
    service.stop().await;
}
