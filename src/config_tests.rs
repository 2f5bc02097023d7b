//! Tests of `config.rs`: layering, validation messages, defaults.

use super::*;

#[test]
fn config_default_toml_matches_the_built_in_defaults() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
        .unwrap();
    let from_file: Settings = Figment::from(Serialized::defaults(Settings::default()))
        .merge(Toml::string(&text))
        .extract()
        .unwrap();
    assert_eq!(from_file, Settings::default());
}

#[test]
fn production_example_documents_a_valid_configuration() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/production.example.toml"
    ))
    .unwrap();
    let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
        .merge(Toml::string(&text))
        .extract()
        .unwrap();
    settings.validate().unwrap();
    assert!(!settings.ca.create_on_first_start);
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let mut s = Settings::default();
    s.database.url = Secret::new("postgres://u:hunter2@db/x");
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn tls_settings_are_checked_together() {
    let mut s = Settings::default();
    s.server.tls.cert_file = Some("server.crt".into());
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("server.tls.key_file"), "{err}");

    let mut s = Settings::default();
    s.server.tls.client_ca_file = Some("station-ca.pem".into());
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("needs HTTPS"), "{err}");

    let mut s = Settings::default();
    s.server.tls.cert_file = Some("server.crt".into());
    s.server.tls.key_file = Some("server.key".into());
    s.server.tls.client_auth = ClientAuth::Required;
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("client_ca_file"), "{err}");
    s.server.tls.client_ca_file = Some("station-ca.pem".into());
    s.validate().unwrap();
    s.server.tls.handshake_timeout_secs = Duration::ZERO;
    assert!(s.validate().is_err());
}

fn from_toml(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_figment(
        Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(text)),
    )
}

/// Why `text` is refused.
fn refusal(text: &str) -> String {
    from_toml(text)
        .expect_err("the settings are refused")
        .to_string()
}

#[test]
fn loading_says_what_to_fix() {
    let err = refusal("[policy]\nallowed_subject_attributes = [\"CN\", \"E\"]");
    assert!(err.contains("unknown attribute \"E\""), "{err}");
    assert!(err.contains("allowed_subject_attributes"), "{err}");

    let err = refusal("[server]\nlisten = \"localhost\"");
    assert!(err.contains("server.listen"), "{err}");
    assert!(err.contains("127.0.0.1:8080"), "{err}");

    let err = refusal("[metrics]\nlisten = \"9100\"");
    assert!(err.contains("metrics.listen"), "{err}");

    let err = refusal("[server]\nrequest_timeout_secs = -1");
    assert!(err.contains("request_timeout_secs"), "{err}");

    let err = refusal(
        "[policy]\nrequired_subject_attributes = [\"OU\"]\nallowed_subject_attributes = [\"CN\", \"C\"]",
    );
    assert!(err.contains("does not allow it"), "{err}");
}

#[test]
fn pkcs11_settings_name_one_pin_source_by_a_usable_name() {
    let s = from_toml(
        "[pkcs11]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\npin_env = \"PKCS11_PIN\"",
    )
    .unwrap();
    assert_eq!(s.pkcs11.pin_env.as_deref(), Some("PKCS11_PIN"));
    let both = refusal("[pkcs11]\npin_env = \"PIN\"\npin_file = \"/etc/pin\"");
    assert!(both.contains("at most one"), "{both}");
    let prefixed = refusal("[pkcs11]\npin_env = \"FACTORY_CA_PIN\"");
    assert!(prefixed.contains("FACTORY_CA_ prefix"), "{prefixed}");
    let unknown = refusal("[pkcs11]\npin = \"1234\"");
    assert!(unknown.contains("pin"), "{unknown}");
}

#[test]
fn typed_values_load_from_their_written_forms() {
    let s = from_toml(
        "[server]\nlisten = \"0.0.0.0:9443\"\nrequest_timeout_secs = 7\n\
         [metrics]\nlisten = \"127.0.0.1:9100\"\n\
         [policy]\nallowed_subject_attributes = [\"CN\", \"C\", \"serialNumber\"]\n",
    )
    .unwrap();
    assert_eq!(s.server.listen, "0.0.0.0:9443".parse().unwrap());
    assert_eq!(s.server.request_timeout_secs, Duration::from_secs(7));
    assert_eq!(s.metrics.listen, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(
        s.policy.allowed_subject_attributes,
        vec![
            SubjectField::CommonName,
            SubjectField::Country,
            SubjectField::SerialNumber
        ]
    );
    let s = from_toml("[metrics]\nlisten = \"\"").unwrap();
    assert_eq!(s.metrics.listen, None);
}

#[test]
fn aws_targets_load_with_their_own_region_role_and_pacing() {
    // No target named: `[aws]` is the one target `default`.
    let plain = from_toml("[aws]\nenabled = true\nregion = \"eu-central-1\"\n").unwrap();
    let targets = plain.aws.resolved_targets();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].name, "default");
    assert_eq!(targets[0].region, "eu-central-1");
    assert_eq!(targets[0].api_rate_per_sec, 10.0);

    let named = from_toml(
        "[aws]\nenabled = true\napi_rate_per_sec = 4.0\n\
         [aws.targets.eu]\nregion = \"eu-west-1\"\n\
         [aws.targets.us-east]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:5000\"\n\
         role_arn = \"arn:aws:iam::222222222222:role/factory\"\napi_rate_per_sec = 20.0\n\
         api_burst = 3\nrevocation_push_concurrency = 32\n",
    )
    .unwrap();
    let targets = named.aws.resolved_targets();
    let names: Vec<_> = targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["eu", "us-east"]);
    assert_eq!(targets[0].api_rate_per_sec, 4.0);
    assert_eq!(targets[0].role_arn, None);
    assert_eq!(targets[1].api_rate_per_sec, 20.0);
    assert_eq!(targets[1].api_burst, 3);
    assert_eq!(targets[0].revocation_push_concurrency, 8);
    assert_eq!(targets[1].revocation_push_concurrency, 32);
    assert_eq!(
        targets[1].role_arn.as_deref(),
        Some("arn:aws:iam::222222222222:role/factory")
    );
    assert_eq!(
        targets[1].endpoint_url.as_deref(),
        Some("http://127.0.0.1:5000")
    );
}

#[test]
fn aws_target_names_and_values_are_checked_at_load() {
    let cases = [
        (
            "[aws.targets.EU]\nregion = \"eu-west-1\"\n",
            "lower-case letters",
        ),
        (
            "[aws.targets.\"eu west\"]\nregion = \"eu-west-1\"\n",
            "lower-case letters",
        ),
        (
            "[aws.targets.-eu]\nregion = \"eu-west-1\"\n",
            "lower-case letters",
        ),
        (
            "[aws.targets.prod-eu]\nregion = \"eu-west-1\"\n[aws.targets.prod_eu]\nregion = \"eu-west-1\"\n",
            "differ only by",
        ),
        (
            "[aws.targets.eu]\nendpoint_url = \"http://x\"\n",
            "aws.targets.eu.region must be set",
        ),
        (
            "[aws.targets.eu]\nregion = \"eu-west-1\"\nrole_arn = \"role/x\"\n",
            "aws.targets.eu.role_arn must be an IAM role ARN",
        ),
        (
            "[aws.targets.eu]\nregion = \"eu-west-1\"\nendpoint_url = \"ftp://x\"\n",
            "aws.targets.eu.endpoint_url",
        ),
        (
            "[aws.targets.eu]\nregion = \"eu-west-1\"\napi_burst = 0\n",
            "api_burst at least 1",
        ),
        (
            "[aws.targets.eu]\nregion = \"eu-west-1\"\nrevocation_push_concurrency = 0\n",
            "aws.targets.eu.revocation_push_concurrency must be between 1",
        ),
        (
            "[aws]\nrevocation_push_concurrency = 0\n",
            "aws.revocation_push_concurrency must be between 1 (one push at a time)",
        ),
        (
            "[aws]\nrevocation_push_concurrency = 257\n",
            "aws.revocation_push_concurrency must be between 1",
        ),
        (
            "[aws.targets.eu]\nregion = \"eu-west-1\"\nzone = \"a\"\n",
            "zone",
        ),
    ];
    for (text, expected) in cases {
        let error = refusal(text);
        assert!(error.contains(expected), "{text}: {error}");
    }
}
