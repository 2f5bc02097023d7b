//! Registration targets against moto, one server for several regions and accounts: a CA
//! registered in us-east-1, eu-west-1 and a second account (through moto's STS), each checked
//! with boto3 on its own; one target failing on a bad endpoint while the others succeed, then
//! fixed (a restart with the good endpoint) and retried; revocations REVOKED in every target;
//! a sync of one target records that target's view of each device and leaves the others'.

use std::process::Command;

use serde_json::{Value, json};

use crate::aws_moto::start_moto;
use crate::common::binary::{Service, factory_ca, run_ok};
use crate::common::csr::csr;
use crate::common::process::free_port;

const SECOND_ACCOUNT: &str = "444455556666";
const JITP_ROLE: &str = "arn:aws:iam::123456789012:role/JITP";

/// boto3's view of one target: the CA's status and registrationConfig, and each device
/// certificate's status, as JSON. `role` assumes a role through moto's STS first.
fn boto3_view(moto: &str, region: &str, role: Option<&str>, ca: &str, devices: &[&str]) -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let python =
        std::env::var("MOTO_PYTHON").unwrap_or_else(|_| format!("{root}/.venv/bin/python"));
    let script = r#"
import json, sys
import boto3
url, region, role, ca = sys.argv[1:5]
kw = dict(region_name=region, endpoint_url=url, aws_access_key_id="testing",
          aws_secret_access_key="testing")
if role != "-":
    creds = boto3.client("sts", **kw).assume_role(RoleArn=role, RoleSessionName="check")
    c = creds["Credentials"]
    kw.update(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
              aws_session_token=c["SessionToken"])
iot = boto3.client("iot", **kw)
d = iot.describe_ca_certificate(certificateId=ca)
out = {"status": d["certificateDescription"]["status"],
       "arn": d["certificateDescription"]["certificateArn"],
       "registrationConfig": d.get("registrationConfig"), "devices": {}}
for dev in sys.argv[5:]:
    try:
        out["devices"][dev] = iot.describe_certificate(certificateId=dev)["certificateDescription"]["status"]
    except iot.exceptions.ResourceNotFoundException:
        out["devices"][dev] = None
print(json.dumps(out))
"#;
    let output = Command::new(&python)
        .args(["-c", script, moto, region, role.unwrap_or("-"), ca])
        .args(devices)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "boto3 check failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("boto3 prints JSON")
}

/// Registers a device certificate in one region of the default account with boto3, as JITP
/// would on the device's first connection there (`status` ACTIVE), or as an operator's
/// deactivation leaves it (INACTIVE).
fn boto3_register(moto: &str, region: &str, cert_pem: &str, ca_pem: &str, status: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let python =
        std::env::var("MOTO_PYTHON").unwrap_or_else(|_| format!("{root}/.venv/bin/python"));
    let script = r#"
import sys
import boto3
url, region, cert, ca, status = sys.argv[1:6]
iot = boto3.client("iot", region_name=region, endpoint_url=url, aws_access_key_id="testing",
                   aws_secret_access_key="testing")
iot.register_certificate(certificatePem=cert, caCertificatePem=ca, status=status)
"#;
    let output = Command::new(&python)
        .args(["-c", script, moto, region, cert_pem, ca_pem, status])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "boto3 register failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn service(dir: &std::path::Path, moto: &str, eu_endpoint: &str) -> Service {
    let mut cmd = factory_ca(dir);
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
        .env("FACTORY_CA_AWS__MAX_ATTEMPTS", "1")
        .env("FACTORY_CA_AWS__OPERATION_TIMEOUT_SECS", "5")
        .env("FACTORY_CA_AWS__REVOCATION_RETRY_SECS", "1")
        .env("FACTORY_CA_AWS__TARGETS__US__REGION", "us-east-1")
        .env("FACTORY_CA_AWS__TARGETS__US__ENDPOINT_URL", moto)
        .env("FACTORY_CA_AWS__TARGETS__EU__REGION", "eu-west-1")
        .env("FACTORY_CA_AWS__TARGETS__EU__ENDPOINT_URL", eu_endpoint)
        .env("FACTORY_CA_AWS__TARGETS__PARTNER__REGION", "us-east-1")
        .env("FACTORY_CA_AWS__TARGETS__PARTNER__ENDPOINT_URL", moto)
        .env(
            "FACTORY_CA_AWS__TARGETS__PARTNER__ROLE_ARN",
            format!("arn:aws:iam::{SECOND_ACCOUNT}:role/factory-ca"),
        );
    Service::start(cmd)
}

fn entry<'a>(answer: &'a Value, target: &str) -> &'a Value {
    answer["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets: {answer}"))
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target}: {answer}"))
}

/// Sends `request` with `token`: the status and the JSON body (null when none).
async fn call(request: reqwest::RequestBuilder, token: &str) -> (u16, Value) {
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn one_ca_in_two_regions_and_a_second_account_with_a_target_down_then_retried() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    run_ok(factory_ca(dir.path()).args(["ca", "create"]));
    let admin = run_ok(
        factory_ca(dir.path()).args(["token", "create", "--role", "admin", "--name", "admin-1"]),
    )
    .trim()
    .to_owned();
    let station = run_ok(factory_ca(dir.path()).args([
        "token",
        "create",
        "--role",
        "station",
        "--name",
        "station-1",
    ]))
    .trim()
    .to_owned();
    // eu's endpoint first: a loopback port nothing listens on.
    let bad = format!("http://127.0.0.1:{}", free_port());
    let mut svc = service(dir.path(), &moto.url, &bad);
    svc.ready().await;
    let client = reqwest::Client::new();
    let base = svc.base();
    let (_, ca) = call(client.get(format!("{base}/v1/ca")), &admin).await;
    let ca_id = ca["id"].as_str().unwrap().to_owned();
    let aws_id = ca["aws_certificate_id"].as_str().unwrap().to_owned();
    let register = json!({"mode": "sni_only", "activate": true, "auto_registration": true,
        "role_arn": JITP_ROLE,
        "template": {"simple": {"attributes": {"Country": "Country"},
                                "policy_name": "Factory_Policy", "thing_type": null,
                                "thing_groups": []}}});
    let register_url = format!("{base}/v1/admin/cas/{ca_id}/aws/register");

    let (status, first) = call(client.post(&register_url).json(&register), &admin).await;
    assert_eq!(status, 201, "{first}\n{}", svc.stderr_text());
    assert_eq!(first["failed_targets"], json!(["eu"]), "{first}");
    assert_eq!(
        entry(&first, "eu")["error"]["kind"],
        "unreachable",
        "{first}"
    );
    assert_eq!(entry(&first, "us")["result"], "registered");
    assert_eq!(entry(&first, "partner")["result"], "registered");
    assert_eq!(entry(&first, "partner")["account"], SECOND_ACCOUNT);

    // A device revoked while eu does not have the CA yet.
    let (status, early) = call(
        client
            .post(format!("{base}/v1/certificates"))
            .json(&json!({"csr": csr("Early-1", "JP").pem})),
        &station,
    )
    .await;
    assert_eq!(status, 201, "{early}");
    let early_serial = early["serial"].as_str().unwrap().to_owned();
    let early_id = early["aws_certificate_id"].as_str().unwrap().to_owned();
    let (status, revoked) = call(
        client
            .post(format!(
                "{base}/v1/admin/certificates/{early_serial}/revoke"
            ))
            .json(&json!({"reason": "key_compromise"})),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["aws_revocation_pending"], false, "{revoked}");

    // boto3, each target on its own: us-east-1 of the default account, and the partner
    // account (through STS) in the same region.
    let us = boto3_view(&moto.url, "us-east-1", None, &aws_id, &[&early_id]);
    assert_eq!(us["status"], "ACTIVE", "{us}");
    assert!(
        us["arn"].as_str().unwrap().contains(":123456789012:"),
        "{us}"
    );
    let config = &us["registrationConfig"];
    assert_eq!(config["roleArn"], JITP_ROLE, "{us}");
    let body: Value = serde_json::from_str(config["templateBody"].as_str().unwrap())
        .expect("the template travels as an escaped JSON string");
    assert!(body["Resources"].is_object(), "{body}");
    assert_eq!(us["devices"][&early_id], "REVOKED", "{us}");
    let partner_role = format!("arn:aws:iam::{SECOND_ACCOUNT}:role/check");
    let partner = boto3_view(
        &moto.url,
        "us-east-1",
        Some(&partner_role),
        &aws_id,
        &[&early_id],
    );
    assert_eq!(partner["status"], "ACTIVE", "{partner}");
    assert!(
        partner["arn"]
            .as_str()
            .unwrap()
            .starts_with(&format!("arn:aws:iot:us-east-1:{SECOND_ACCOUNT}:")),
        "{partner}"
    );
    assert_eq!(partner["devices"][&early_id], "REVOKED", "{partner}");

    // The state keeps what failed in eu.
    let (_, state) = call(
        client.get(format!("{base}/v1/admin/cas/{ca_id}/aws")),
        &admin,
    )
    .await;
    let eu = entry(&state, "eu");
    assert_eq!(eu["registered"], false, "{state}");
    assert_eq!(eu["last_attempt"]["error_kind"], "unreachable", "{state}");

    // Fixed: a restart with eu's good endpoint, and the same call again registers in eu only
    // and gives eu the revocation the others have.
    svc.stop().await;
    let mut svc = service(dir.path(), &moto.url, &moto.url);
    svc.ready().await;
    let base = svc.base();
    let register_url = format!("{base}/v1/admin/cas/{ca_id}/aws/register");
    let (status, second) = call(client.post(&register_url).json(&register), &admin).await;
    assert_eq!(status, 201, "{second}\n{}", svc.stderr_text());
    assert_eq!(second["failed_targets"], json!([]), "{second}");
    assert_eq!(entry(&second, "eu")["result"], "registered");
    assert_eq!(entry(&second, "us")["result"], "already_registered");
    assert_eq!(entry(&second, "partner")["result"], "already_registered");
    let eu = boto3_view(&moto.url, "eu-west-1", None, &aws_id, &[&early_id]);
    assert_eq!(eu["status"], "ACTIVE", "{eu}");
    assert!(
        eu["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iot:eu-west-1:"),
        "{eu}"
    );
    assert_eq!(eu["registrationConfig"]["roleArn"], JITP_ROLE, "{eu}");
    assert_eq!(eu["devices"][&early_id], "REVOKED", "{eu}");

    // A device revoked now: REVOKED in every target.
    let (status, device) = call(
        client
            .post(format!("{base}/v1/certificates"))
            .json(&json!({"csr": csr("Device-1", "JP").pem})),
        &station,
    )
    .await;
    assert_eq!(status, 201, "{device}");
    let serial = device["serial"].as_str().unwrap().to_owned();
    let device_id = device["aws_certificate_id"].as_str().unwrap().to_owned();
    let (status, revoked) = call(
        client
            .post(format!("{base}/v1/admin/certificates/{serial}/revoke"))
            .json(&json!({"reason": "key_compromise"})),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["aws_revocation_pending"], false, "{revoked}");
    for (region, role) in [
        ("us-east-1", None),
        ("eu-west-1", None),
        ("us-east-1", Some(partner_role.as_str())),
    ] {
        let view = boto3_view(&moto.url, region, role, &aws_id, &[&device_id]);
        assert_eq!(
            view["devices"][&device_id], "REVOKED",
            "{region} {role:?}: {view}"
        );
    }

    // A device that connected in us-east-1 and is INACTIVE in eu-west-1: a sync of us records
    // us's view only, a sync of eu then adds eu's and leaves us's as it was.
    let (status, roamer) = call(
        client
            .post(format!("{base}/v1/certificates"))
            .json(&json!({"csr": csr("Roamer-1", "JP").pem})),
        &station,
    )
    .await;
    assert_eq!(status, 201, "{roamer}");
    let roamer_serial = roamer["serial"].as_str().unwrap().to_owned();
    let roamer_pem = roamer["certificate_pem"].as_str().unwrap().to_owned();
    let ca_pem = client
        .get(format!("{base}/v1/ca.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    boto3_register(&moto.url, "us-east-1", &roamer_pem, &ca_pem, "ACTIVE");
    boto3_register(&moto.url, "eu-west-1", &roamer_pem, &ca_pem, "INACTIVE");
    let sync = |targets: &'static str| {
        let request = client.post(format!(
            "{base}/v1/admin/cas/{ca_id}/aws/sync?targets={targets}"
        ));
        let admin = admin.clone();
        async move { call(request, &admin).await }
    };
    let row_url = format!("{base}/v1/certificates/{roamer_serial}");
    let (status, report) = sync("us").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"].as_array().unwrap().len(), 1, "{report}");
    let (_, row) = call(client.get(&row_url), &admin).await;
    assert_eq!(row["aws_status"], "ACTIVE", "{row}");
    assert_eq!(entry_of(&row, "us")["aws_status"], "ACTIVE", "{row}");
    assert!(
        entry_of(&row, "us")["aws_first_seen_at"].is_string(),
        "{row}"
    );
    assert!(entry_of(&row, "eu")["aws_status"].is_null(), "{row}");
    let (status, report) = sync("eu").await;
    assert_eq!(status, 200, "{report}");
    let (_, row) = call(client.get(&row_url), &admin).await;
    assert_eq!(entry_of(&row, "eu")["aws_status"], "INACTIVE", "{row}");
    assert_eq!(entry_of(&row, "us")["aws_status"], "ACTIVE", "{row}");
    assert_eq!(row["aws_status"], "ACTIVE", "{row}");
    // The revoked device, synced in every target: REVOKED in each.
    let (status, report) = sync("us,eu,partner").await;
    assert_eq!(status, 200, "{report}");
    let (_, revoked_row) = call(
        client.get(format!("{base}/v1/certificates/{serial}")),
        &admin,
    )
    .await;
    for target in ["us", "eu", "partner"] {
        assert_eq!(
            entry_of(&revoked_row, target)["aws_status"],
            "REVOKED",
            "{target}: {revoked_row}"
        );
    }
    assert_eq!(revoked_row["aws_status"], "REVOKED", "{revoked_row}");
    // The filter, per target and over all of them.
    let listed = |query: String| {
        let request = client.get(format!("{base}/v1/certificates?{query}"));
        let admin = admin.clone();
        async move {
            let (status, page) = call(request, &admin).await;
            assert_eq!(status, 200, "{query}: {page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["serial"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed("aws_status=INACTIVE&aws_target=eu".into()).await,
        vec![roamer_serial.clone()]
    );
    assert!(
        listed("aws_status=INACTIVE&aws_target=us".into())
            .await
            .is_empty()
    );
    assert_eq!(
        listed("aws_status=INACTIVE".into()).await,
        vec![roamer_serial.clone()]
    );
    assert!(
        listed("aws_status=never_seen&aws_target=partner".into())
            .await
            .contains(&roamer_serial)
    );
    svc.stop().await;
}

/// The entry of `target` in a ledger row's `aws_targets`.
fn entry_of<'a>(row: &'a Value, target: &str) -> &'a Value {
    row["aws_targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no aws_targets: {row}"))
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target}: {row}"))
}
