//! EST renewal (`simplereenroll`, RFC 7030 section 4.2.2) and labels, with the tools a
//! technician has: openssl makes keys and CSRs and reads the PKCS#7 answers, curl presents the
//! device's certificate as the TLS client certificate, `openssl verify -x509_strict -purpose
//! sslclient` checks the chain, and Python `cryptography` parses the same answers. The ledger
//! is read through the JSON API and its hash chain verified with `ledger verify`'s code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use factory_ca::ca::{CaAlgorithm, CaSubject, DeviceProfile};
use factory_ca::config::ClientAuth;
use factory_ca::keys::KeyStore;
use factory_ca::services::ca_admin::{Actor, CaAdmin};
use factory_ca::store::{Channel, NewIssuance, RecordOutcome, Timestamp};
use reqwest::StatusCode;

use crate::common::{Backend, json, write};
use crate::on_both_backends;
use crate::tls::TlsApp;

on_both_backends!(a_device_renews_with_its_certificate_and_the_old_one_is_superseded);

/// The Python with `cryptography` (the moto venv of scripts/test.sh).
fn python() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::env::var("MOTO_PYTHON").unwrap_or_else(|_| format!("{root}/.venv/bin/python"))
}

/// `ledger verify` in process: every CA's chain and checkpoints, with the data directory's
/// audit key.
async fn verify_ledger(app: &TlsApp) -> Vec<factory_ca::services::ledger::CaVerification> {
    let key = KeyStore::from_settings(&app.settings)
        .existing_audit_key()
        .await
        .expect("the audit key reads")
        .expect("serve made the audit key");
    factory_ca::services::ledger::verify(&app.store, None, &[key.public().clone()])
        .await
        .expect("the store answers")
}

/// Runs a shell session in `work` with the environment given; its output.
async fn session(work: &Path, script: &str, env: &[(&str, String)]) -> Output {
    let script = write(work, "session.sh", script);
    let mut command = Command::new("sh");
    command.arg(&script).env("WORK", work);
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("sh runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

fn read(work: &Path, name: &str) -> String {
    std::fs::read_to_string(work.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .trim()
        .to_owned()
}

/// The serial as the ledger writes it, from `openssl x509 -serial` output.
fn serial(work: &Path, name: &str) -> String {
    read(work, name)
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// Shell functions of every session: a device key and DER CSR (base64), EST calls with curl.
const FUNCTIONS: &str = r#"
set -eu
cd "$WORK"
csr() { # csr <key file> <subject> <base64 out>
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1" \
    -subj "$2" -outform DER 2>/dev/null | base64 > "$3"
}
# est <path> <out> [curl args...]: POST a base64 CSR body (-d @file given by the caller) or GET;
# writes the body to <out> and prints the HTTP status.
est() {
  p="$1"; out="$2"; shift 2
  curl --silent --show-error --max-time 30 --cacert "$SERVER_CA" -o "$out" \
    -w '%{http_code}' "$@" "$BASE/.well-known/est/$p"
}
p7() { # p7 <base64 PKCS#7> <pem out>
  base64 -d "$1" > "$1.der"
  openssl pkcs7 -inform DER -in "$1.der" -print_certs > "$2"
}
"#;

const RENEWAL: &str = r#"
# Enrollment by a station (HTTP Basic with its token), and the issuing CA.
csr dev.key "/C=JP/CN=$THING" dev.b64
test "$(est simpleenroll dev.p7 -u "line-1:$STATION_TOKEN" \
  -H 'Content-Type: application/pkcs10' --data-binary @dev.b64)" = 200
p7 dev.p7 dev.pem
test "$(est cacerts ca.p7)" = 200
p7 ca.p7 ca.pem
openssl x509 -in dev.pem -noout -serial > old.serial

# The renewal: a new key, the same subject, the current certificate as the client certificate.
csr new.key "/C=JP/CN=$THING" new.b64
test "$(est simplereenroll new.p7 --cert dev.pem --key dev.key \
  -H 'Content-Type: application/pkcs10' --data-binary @new.b64)" = 200
p7 new.p7 new.pem
openssl x509 -in new.pem -noout -serial > new.serial
openssl x509 -in new.pem -noout -subject -nameopt RFC2253 > new.subject
openssl x509 -in dev.pem -noout -subject -nameopt RFC2253 > old.subject
openssl verify -x509_strict -purpose sslclient -CAfile ca.pem new.pem

# The renewed certificate cannot renew again.
csr again.key "/C=JP/CN=$THING" again.b64
est simplereenroll again.txt --cert dev.pem --key dev.key -D again.headers \
  -H 'Content-Type: application/pkcs10' --data-binary @again.b64 > again.status
# Another subject is refused.
csr other.key "/C=JP/CN=Other-$THING" other.b64
est simplereenroll other.txt --cert new.pem --key new.key \
  -H 'Content-Type: application/pkcs10' --data-binary @other.b64 > other.status
# A device certificate is no station: simpleenroll refuses it, even with a station token.
csr enroll.key "/C=JP/CN=Enroll-$THING" enroll.b64
est simpleenroll enroll.txt --cert new.pem --key new.key -u "line-1:$STATION_TOKEN" \
  -H 'Content-Type: application/pkcs10' --data-binary @enroll.b64 > enroll.status
# ... and so does every JSON route, whatever token comes along.
curl --silent --show-error --max-time 30 --cacert "$SERVER_CA" --cert new.pem --key new.key \
  -H "Authorization: Bearer $VIEWER_TOKEN" -o json.txt -w '%{http_code}' \
  "$BASE/v1/certificates" > json.status
curl --silent --show-error --max-time 30 --cacert "$SERVER_CA" --cert new.pem --key new.key \
  -H "Authorization: Bearer $STATION_TOKEN" -H 'Content-Type: application/pkcs10' \
  --data-binary @enroll.b64 -o sign.txt -w '%{http_code}' \
  "$BASE/v1/certificates" > sign.status
# cacerts and csrattrs stay open to a device.
test "$(est cacerts device-cacerts.p7 --cert new.pem --key new.key)" = 200
"#;

const PYTHON_RENEWAL: &str = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
work = sys.argv[1]
new = pkcs7.load_der_pkcs7_certificates(open(f"{work}/new.p7.der", "rb").read())
old = pkcs7.load_der_pkcs7_certificates(open(f"{work}/dev.p7.der", "rb").read())
cas = pkcs7.load_der_pkcs7_certificates(open(f"{work}/ca.p7.der", "rb").read())
assert len(new) == 1 and len(old) == 1 and len(cas) == 1, (new, old, cas)
assert new[0].subject == old[0].subject, (new[0].subject, old[0].subject)
assert new[0].serial_number != old[0].serial_number
new[0].verify_directly_issued_by(cas[0])
print("python ok", new[0].subject.rfc4514_string())
"#;

async fn a_device_renews_with_its_certificate_and_the_old_one_is_superseded(backend: Backend) {
    let app = TlsApp::spawn_with(backend, Some(ClientAuth::Optional), |_, _| {}).await;
    let work = app.pki.dir.join("renewal");
    std::fs::create_dir_all(&work).unwrap();
    let thing = "Thing-0001";
    let output = session(
        &work,
        &format!("{FUNCTIONS}{RENEWAL}"),
        &[
            ("THING", thing.to_owned()),
            ("BASE", app.url("")),
            ("SERVER_CA", app.pki.server_ca_path.display().to_string()),
            ("STATION_TOKEN", app.station.clone()),
            ("VIEWER_TOKEN", app.viewer.clone()),
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "the renewal session failed: {}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(text(&output.stdout).contains("new.pem: OK"));
    assert_eq!(read(&work, "new.subject"), read(&work, "old.subject"));

    // Refusals: the code in the status, the text/plain body and the header.
    assert_eq!(read(&work, "again.status"), "409");
    assert!(read(&work, "again.txt").starts_with("certificate_superseded: "));
    assert!(read(&work, "again.headers").contains("x-error-code: certificate_superseded"));
    assert_eq!(read(&work, "other.status"), "422");
    assert!(
        read(&work, "other.txt").starts_with("renewal_subject_mismatch: "),
        "{}",
        read(&work, "other.txt")
    );
    assert_eq!(read(&work, "enroll.status"), "403");
    assert!(read(&work, "enroll.txt").starts_with("device_certificate_not_allowed: "));
    for route in ["json", "sign"] {
        assert_eq!(read(&work, &format!("{route}.status")), "403", "{route}");
        let body: serde_json::Value =
            serde_json::from_str(&read(&work, &format!("{route}.txt"))).unwrap();
        assert_eq!(body["code"], "device_certificate_not_allowed", "{route}");
    }

    // The ledger: the old certificate superseded by the new one, which holds the thing.
    let (old, new) = (serial(&work, "old.serial"), serial(&work, "new.serial"));
    let client = app.pki.rustls_config_with(None, &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client)
        .build()
        .unwrap();
    let row = |serial: String| {
        let request = client
            .get(app.url(&format!("/v1/certificates/{serial}")))
            .bearer_auth(&app.viewer);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            json(response).await
        }
    };
    let old_row = row(old.clone()).await;
    let new_row = row(new.clone()).await;
    assert_eq!(old_row["status"], "superseded", "{old_row}");
    assert_eq!(old_row["superseded_by"], new.as_str());
    assert!(old_row["revoked_at"].is_null());
    assert_eq!(new_row["status"], "active");
    assert_eq!(new_row["channel"], "est");
    assert_eq!(new_row["station"], format!("device:{thing}"));
    assert!(new_row["superseded_by"].is_null());
    // Three certificates were asked for besides the two issued; none was recorded.
    let listed = client
        .get(app.url("/v1/certificates?status=superseded"))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    let listed = json(listed).await;
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["serial"], old.as_str());
    let csv = client
        .get(app.url("/v1/certificates/export.csv"))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 3, "header and two rows: {csv}");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains("channel,superseded_at,superseded_by")
    );
    assert!(csv.contains(",superseded,") && csv.contains(&new), "{csv}");

    // The hash chain covers the supersession.
    let verified = verify_ledger(&app).await;
    for ca in &verified {
        assert!(ca.mismatch.is_none(), "{}: {:?}", ca.ca_id, ca.mismatch);
    }
    assert_eq!(verified.iter().map(|v| v.verified).sum::<u64>(), 3);

    // Audited, with the device as the actor.
    let audit = client
        .get(app.url("/v1/admin/audit"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("certificate.reenroll"), "{audit}");
    assert!(audit.contains(&format!("device:{thing}")), "{audit}");
    assert!(audit.contains(&format!("superseded by {new}")), "{audit}");

    let python = python();
    let checked = Command::new(&python)
        .arg("-c")
        .arg(PYTHON_RENEWAL)
        .arg(&work)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(text(&checked.stdout).contains(&format!("python ok CN={thing},C=JP")));
}

const REFUSALS: &str = r#"
csr dev.key "/C=JP/CN=$THING" dev.b64
test "$(est simpleenroll dev.p7 -u "line-1:$STATION_TOKEN" \
  -H 'Content-Type: application/pkcs10' --data-binary @dev.b64)" = 200
p7 dev.p7 dev.pem
openssl x509 -in dev.pem -noout -serial > revoked.serial
csr renew.key "/C=JP/CN=$THING" renew.b64
# Viewer and admin tokens may not enroll.
est simpleenroll viewer.txt -u "x:$VIEWER_TOKEN" -H 'Content-Type: application/pkcs10' \
  --data-binary @renew.b64 > viewer.status
est simpleenroll admin.txt -u "x:$ADMIN_TOKEN" -H 'Content-Type: application/pkcs10' \
  --data-binary @renew.b64 > admin.status
# No client certificate, a station certificate: no device to renew.
est simplereenroll none.txt -H 'Content-Type: application/pkcs10' \
  --data-binary @renew.b64 > none.status
est simplereenroll station.txt --cert "$STATION_CERT" --key "$STATION_KEY" \
  -H 'Content-Type: application/pkcs10' --data-binary @renew.b64 > station.status
# A certificate of another CA with the same subject: refused by the TLS handshake.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout rogue-ca.key \
  -out rogue-ca.pem -days 30 -subj "/CN=Rogue CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout foreign.key \
  -out foreign.csr -subj "/C=JP/CN=$THING" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' > leaf.ext
openssl x509 -req -in foreign.csr -CA rogue-ca.pem -CAkey rogue-ca.key -set_serial 7 -days 30 \
  -extfile leaf.ext -out foreign.pem 2>/dev/null
# TLS 1.2, so that curl reports the server's alert (under TLS 1.3 the client certificate is
# checked after the client's Finished, and curl may report only the closed connection).
if est simplereenroll foreign.txt --tls-max 1.2 --cert foreign.pem --key foreign.key \
  -H 'Content-Type: application/pkcs10' --data-binary @renew.b64 > foreign.status \
  2> foreign.err; then echo "foreign: answered"; else echo "foreign: refused"; fi
"#;

const REVOKED: &str = r#"
est simplereenroll revoked.txt --cert dev.pem --key dev.key \
  -H 'Content-Type: application/pkcs10' --data-binary @renew.b64 > revoked.status
# curl says "certificate verification failed" for any certificate alert; -v shows which.
if est simplereenroll expired.txt -v --tls-max 1.2 --cert expired.pem --key expired.key \
  -H 'Content-Type: application/pkcs10' --data-binary @renew.b64 > expired.status \
  2> expired.err; then echo "expired: answered"; else echo "expired: refused"; fi
"#;

/// A certificate of the issuing CA for `thing` that expired a day ago (valid for one day, three
/// days ago), recorded in the ledger as issued then: the CA core takes the time as input.
async fn expired_certificate(app: &TlsApp, work: &Path, thing: &str) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, "JP");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, thing);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let keys = KeyStore::from_settings(&app.settings);
    let ca = CaAdmin::new(&app.store, &keys)
        .load_issuing()
        .await
        .unwrap()
        .expect("an issuing CA");
    let approved = app
        .settings
        .issuance_policy()
        .approve(factory_ca::ca::csr::parse(csr.as_bytes()).unwrap())
        .unwrap();
    let profile = DeviceProfile {
        validity: time::Duration::days(1),
        backdate: time::Duration::ZERO,
        crl_distribution_point: None,
    };
    let then = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let certificate = ca.sign(&approved, &profile, then).unwrap();
    let pem = factory_ca::ca::to_pem("CERTIFICATE", &certificate.certificate_der);
    let outcome = app
        .store
        .record_issuance(&NewIssuance {
            certificate,
            ca_id: ca.id().to_owned(),
            station: "station-1".into(),
            request_id: None,
            channel: Channel::Api,
            issued_at: Timestamp::new(then),
            idempotency: None,
            reject_duplicate_thing: true,
        })
        .await
        .unwrap();
    assert_eq!(outcome, RecordOutcome::Recorded);
    write(work, "expired.pem", &pem);
    write(work, "expired.key", &key.serialize_pem());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_refuses_revoked_expired_foreign_and_station_certificates() {
    let app = TlsApp::spawn_with(Backend::Sqlite, Some(ClientAuth::Optional), |_, _| {}).await;
    let work = app.pki.dir.join("refusals");
    std::fs::create_dir_all(&work).unwrap();
    let station = app.pki.station("line-7", 7);
    let env = [
        ("THING", "Thing-0002".to_owned()),
        ("BASE", app.url("")),
        ("SERVER_CA", app.pki.server_ca_path.display().to_string()),
        ("STATION_TOKEN", app.station.clone()),
        ("VIEWER_TOKEN", app.viewer.clone()),
        ("ADMIN_TOKEN", app.admin.clone()),
        ("STATION_CERT", station.cert_path.display().to_string()),
        ("STATION_KEY", station.key_path.display().to_string()),
    ];
    let output = session(&work, &format!("{FUNCTIONS}{REFUSALS}"), &env).await;
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    for (role, status, code) in [
        ("viewer", "403", "forbidden"),
        ("admin", "403", "forbidden"),
        ("none", "401", "device_certificate_required"),
        ("station", "401", "device_certificate_required"),
    ] {
        assert_eq!(read(&work, &format!("{role}.status")), status, "{role}");
        let body = read(&work, &format!("{role}.txt"));
        assert!(body.starts_with(&format!("{code}: ")), "{role}: {body}");
    }
    // The TLS handshake refused the rogue CA's certificate (OpenSSL reports the alert).
    assert!(text(&output.stdout).contains("foreign: refused"));
    let foreign = read(&work, "foreign.err");
    assert!(foreign.contains("alert"), "{foreign}");

    // Revoked by an admin, then refused; expired (recorded as issued three days ago for one
    // day), refused by the handshake.
    let revoked = serial(&work, "revoked.serial");
    let client = app.pki.rustls_config_with(None, &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client)
        .build()
        .unwrap();
    let response = client
        .post(app.url(&format!("/v1/admin/certificates/{revoked}/revoke")))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"reason": "key_compromise"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    expired_certificate(&app, &work, "Thing-0003").await;
    let before = app.ledger_count().await;
    let output = session(&work, &format!("{FUNCTIONS}{REVOKED}"), &env).await;
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(read(&work, "revoked.status"), "403");
    assert!(read(&work, "revoked.txt").starts_with("certificate_revoked: "));
    assert!(text(&output.stdout).contains("expired: refused"));
    let expired = read(&work, "expired.err");
    assert!(expired.contains("alert, certificate expired"), "{expired}");
    assert_eq!(app.ledger_count().await, before, "nothing recorded");
}

const HIERARCHY: &str = r#"
# The issuing CA and its chain (the offline root), for a technician's trust store.
test "$(est cacerts ca.p7)" = 200
p7 ca.p7 cacerts.pem
grep -c 'BEGIN CERTIFICATE' cacerts.pem > cacerts.count
csr dev.key "/C=JP/CN=$THING" dev.b64
test "$(est simpleenroll dev.p7 -u "line-1:$STATION_TOKEN" \
  -H 'Content-Type: application/pkcs10' --data-binary @dev.b64)" = 200
p7 dev.p7 dev.pem
openssl verify -x509_strict -purpose sslclient -CAfile "$ROOT" -untrusted cacerts.pem dev.pem
# The label's CA, enrollment and renewal with it.
test "$(est line2/cacerts line2.p7)" = 200
p7 line2.p7 line2.pem
grep -c 'BEGIN CERTIFICATE' line2.pem > line2.count
test "$(est line2/csrattrs line2-attrs.b64)" = 200
csr l2.key "/C=JP/CN=L2-$THING" l2.b64
test "$(est line2/simpleenroll l2.p7 -u "line-1:$STATION_TOKEN" \
  -H 'Content-Type: application/pkcs10' --data-binary @l2.b64)" = 200
p7 l2.p7 l2.pem
openssl verify -x509_strict -purpose sslclient -CAfile line2.pem l2.pem
openssl x509 -in l2.pem -noout -serial > l2.serial
csr renew.key "/C=JP/CN=$THING" renew.b64
test "$(est line2/simplereenroll renewed.p7 --cert dev.pem --key dev.key \
  -H 'Content-Type: application/pkcs10' --data-binary @renew.b64)" = 200
p7 renewed.p7 renewed.pem
openssl verify -x509_strict -purpose sslclient -CAfile line2.pem renewed.pem
openssl x509 -in renewed.pem -noout -serial > renewed.serial
openssl x509 -in dev.pem -noout -serial > dev.serial
# An unknown label.
est nope/cacerts nope.txt -D nope.headers > nope.status
"#;

const PYTHON_HIERARCHY: &str = r#"
import sys
from cryptography.hazmat.primitives.serialization import pkcs7
work = sys.argv[1]
cas = pkcs7.load_der_pkcs7_certificates(open(f"{work}/ca.p7.der", "rb").read())
assert len(cas) == 2, cas
root = [c for c in cas if c.subject == c.issuer]
issuing = [c for c in cas if c.subject != c.issuer]
assert len(root) == 1 and len(issuing) == 1, cas
issuing[0].verify_directly_issued_by(root[0])
device = pkcs7.load_der_pkcs7_certificates(open(f"{work}/dev.p7.der", "rb").read())
device[0].verify_directly_issued_by(issuing[0])
line2 = pkcs7.load_der_pkcs7_certificates(open(f"{work}/line2.p7.der", "rb").read())
renewed = pkcs7.load_der_pkcs7_certificates(open(f"{work}/renewed.p7.der", "rb").read())
renewed[0].verify_directly_issued_by(line2[0])
print("python ok", issuing[0].subject.rfc4514_string(), "under", root[0].subject.rfc4514_string())
"#;

/// The test PKI's offline root and issuing CA (openssl), imported as the issuing CA with its
/// chain; a second CA made here, named by the label `line2`.
async fn import_hierarchy(
    dir: &Path,
    mut settings: factory_ca::config::Settings,
) -> factory_ca::config::Settings {
    crate::hierarchy::offline_root_and_issuing(dir);
    let store = factory_ca::store::Store::connect(&settings).await.unwrap();
    store.migrate().await.unwrap();
    let keys = KeyStore::from_settings(&settings);
    let admin = CaAdmin::new(&store, &keys);
    let file = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    admin
        .import(
            &file("issuing.pem"),
            &file("issuing.key"),
            None,
            Some(&file("root.pem")),
            true,
            Actor::system("test"),
        )
        .await
        .unwrap();
    let subject = CaSubject {
        common_name: "Acme Line 2 CA".into(),
        country: Some("JP".into()),
        state: None,
        locality: None,
        organization: Some("Acme".into()),
        organizational_unit: None,
    };
    let (line2, _) = admin
        .create(
            CaAlgorithm::EcdsaP256,
            &subject,
            365,
            false,
            Actor::system("test"),
        )
        .await
        .unwrap();
    store.close().await;
    settings.est.labels.insert("line2".into(), line2.id);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacerts_holds_the_chain_and_a_label_selects_another_ca() {
    let app = TlsApp::spawn_prepared(Backend::Sqlite, None, async |pki, settings| {
        import_hierarchy(&pki.dir, settings).await
    })
    .await;
    let work: PathBuf = app.pki.dir.join("hierarchy");
    std::fs::create_dir_all(&work).unwrap();
    let output = session(
        &work,
        &format!("{FUNCTIONS}{HIERARCHY}"),
        &[
            ("THING", "Thing-0004".to_owned()),
            ("BASE", app.url("")),
            ("SERVER_CA", app.pki.server_ca_path.display().to_string()),
            ("STATION_TOKEN", app.station.clone()),
            ("ROOT", app.pki.dir.join("root.pem").display().to_string()),
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(read(&work, "cacerts.count"), "2");
    assert_eq!(read(&work, "line2.count"), "1");
    assert!(text(&output.stdout).contains("dev.pem: OK"));
    assert!(text(&output.stdout).contains("l2.pem: OK"));
    assert!(text(&output.stdout).contains("renewed.pem: OK"));
    assert_eq!(read(&work, "nope.status"), "404");
    assert!(read(&work, "nope.txt").starts_with("est_label_not_found: "));
    assert!(read(&work, "nope.headers").contains("text/plain"));

    let line2 = &app.settings.est.labels["line2"];
    let client = app.pki.rustls_config_with(None, &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client)
        .build()
        .unwrap();
    let row = async |serial: String| {
        let response = client
            .get(app.url(&format!("/v1/certificates/{serial}")))
            .bearer_auth(&app.viewer)
            .send()
            .await
            .unwrap();
        json(response).await
    };
    let l2 = row(serial(&work, "l2.serial")).await;
    assert_eq!(l2["issuing_ca"], line2.as_str());
    let renewed = row(serial(&work, "renewed.serial")).await;
    assert_eq!(renewed["issuing_ca"], line2.as_str());
    let old = row(serial(&work, "dev.serial")).await;
    assert_eq!(old["status"], "superseded");
    assert_ne!(old["issuing_ca"], line2.as_str());
    // The supersession is in the old certificate's CA chain, the renewal in the label CA's.
    for ca in verify_ledger(&app).await {
        assert!(ca.mismatch.is_none(), "{}: {:?}", ca.ca_id, ca.mismatch);
    }

    let python = python();
    let checked = Command::new(&python)
        .arg("-c")
        .arg(PYTHON_HIERARCHY)
        .arg(&work)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(
        text(&checked.stdout).contains("python ok CN=Acme Issuing CA,O=Acme,C=JP under"),
        "{}",
        text(&checked.stdout)
    );
}
