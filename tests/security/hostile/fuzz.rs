//! The property test: arbitrary and mutated CSRs through parse -> policy -> sign. Nothing
//! panics or hangs, and every certificate that comes out has exactly the subject and key the
//! policy approved and the extensions of the profile.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use factory_ca::ca::policy::SubjectField;
use factory_ca::ca::{
    ApprovedCsr, CaAlgorithm, CaSubject, CertificateAuthority, DeviceProfile, IssuancePolicy,
    IssuedCertificate,
};

use super::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicU64, Ordering};

/// A valid CSR to mutate, with the key that signed it (to re-sign mutated infos).
struct Seed {
    key: rcgen::KeyPair,
    der: Vec<u8>,
    info: Vec<u8>,
    algorithm: Vec<u8>,
}

struct Fixture {
    seeds: Vec<Seed>,
    subject_key: rcgen::KeyPair,
    policy: IssuancePolicy,
    ca: CertificateAuthority,
    profile: DeviceProfile,
    now: ::time::OffsetDateTime,
}

fn seed(key: rcgen::KeyPair, der: Vec<u8>) -> Seed {
    let (info, algorithm, _) = split_csr(&der);
    Seed {
        key,
        der,
        info,
        algorithm,
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rcgen_seed =
            |alg: &'static rcgen::SignatureAlgorithm,
             key: Option<rcgen::KeyPair>,
             configure: &dyn Fn(&mut rcgen::CertificateParams)| {
                let key = key.unwrap_or_else(|| rcgen::KeyPair::generate_for(alg).unwrap());
                let mut params = rcgen::CertificateParams::default();
                params.distinguished_name = rcgen::DistinguishedName::new();
                for (ty, v) in [
                    (rcgen::DnType::CountryName, "JP"),
                    (rcgen::DnType::StateOrProvinceName, "Tokyo"),
                    (rcgen::DnType::OrganizationName, "Org"),
                    (rcgen::DnType::OrganizationalUnitName, "Line3"),
                    (rcgen::DnType::CommonName, "Thing-0001"),
                ] {
                    params.distinguished_name.push(ty, v);
                }
                configure(&mut params);
                let der = params.serialize_request(&key).unwrap().der().to_vec();
                seed(key, der)
            };
        let rsa =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let hand_key = p256();
        let hand = signed_csr(
            &hand_key,
            &flat(vec![
                printable(OID_C, "DE"),
                printable(OID_L, "Berlin"),
                printable(OID_SERIAL_NUMBER, "42"),
                printable(OID_DN_QUALIFIER, "q"),
                printable(OID_CN, "Printable-1"),
            ]),
            &[csr_attribute(&[1, 2, 840, 113549, 1, 9, 7], "challenge")],
        );
        let seeds = vec![
            rcgen_seed(&rcgen::PKCS_ECDSA_P256_SHA256, None, &|_| {}),
            rcgen_seed(&rcgen::PKCS_ECDSA_P384_SHA384, None, &|_| {}),
            rcgen_seed(&rcgen::PKCS_ECDSA_P521_SHA512, None, &|_| {}),
            rcgen_seed(&rcgen::PKCS_RSA_SHA256, Some(rsa), &|_| {}),
            rcgen_seed(&rcgen::PKCS_ECDSA_P256_SHA256, None, &|p| {
                p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
                p.subject_alt_names = vec![rcgen::SanType::DnsName(
                    "evil.example.com".try_into().unwrap(),
                )];
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            }),
            seed(hand_key, hand),
        ];
        let now = ::time::OffsetDateTime::now_utc();
        let (ca, _key) = CertificateAuthority::generate(
            CaAlgorithm::EcdsaP256,
            &CaSubject {
                common_name: "fuzz CA".into(),
                country: Some("JP".into()),
                state: None,
                locality: None,
                organization: Some("factory-ca tests".into()),
                organizational_unit: None,
            },
            ::time::Duration::days(30),
            now,
        )
        .unwrap();
        let fixture = Fixture {
            seeds,
            subject_key: p256(),
            policy: IssuancePolicy::new(SubjectField::ALL.to_vec(), true),
            ca,
            profile: DeviceProfile::default(),
            now,
        };
        for s in &fixture.seeds {
            let outcome = check(&fixture, &s.der).expect("a seed passes the checks");
            assert_eq!(outcome, Outcome::Issued, "every seed is a valid request");
        }
        fixture
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Copies up to `len` bytes from one place to another (a repeated TLV, a length that
    /// now lies).
    Duplicate(Index, Index, u8),
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len();
        match m {
            Mutation::Flip(at, bit) if n > 0 => bytes[at.index(n)] ^= 1 << (bit % 8),
            Mutation::Set(at, value) if n > 0 => bytes[at.index(n)] = *value,
            Mutation::Insert(at, value) => bytes.insert(at.index(n + 1), *value),
            Mutation::Delete(at) if n > 0 => {
                bytes.remove(at.index(n));
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(n + 1)),
            Mutation::Duplicate(from, to, len) if n > 0 => {
                let from = from.index(n);
                let end = (from + usize::from(*len)).min(n);
                let chunk = bytes[from..end].to_vec();
                let to = to.index(n + 1);
                bytes.splice(to..to, chunk);
            }
            _ => {}
        }
    }
    bytes
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        1 => prop::sample::select(vec![
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x14, 0x16, 0x1e, 0x30,
            0x31, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0xa0, 0xff,
        ]),
        1 => prop::sample::select(b"aZ09:_- /.\0".to_vec()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        3 => (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>(), any::<u8>())
            .prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
    ]
}

/// One attribute of a generated subject: which OID, which string type, which value.
type GenAva = (usize, usize, Vec<u8>);

const GEN_OIDS: [&[u64]; 11] = [
    OID_CN,
    OID_C,
    OID_ST,
    OID_L,
    OID_O,
    OID_OU,
    OID_SERIAL_NUMBER,
    OID_DN_QUALIFIER,
    OID_EMAIL,
    OID_UNKNOWN,
    OID_TITLE,
];
const GEN_TAGS: [u8; 6] = [UTF8, PRINTABLE, UTF8, PRINTABLE, TELETEX, BMP];

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-zA-Z0-9:_-]{1,24}".prop_map(String::into_bytes),
        2 => prop::sample::select(vec!["JP", "US", "DE", "XX", "jp", "JPN", "", "UK"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => "[ -~]{0,140}".prop_map(String::into_bytes),
        1 => "\\PC{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn gen_ava() -> impl Strategy<Value = GenAva> {
    (0..GEN_OIDS.len(), 0..GEN_TAGS.len(), value())
}

/// Mostly UTF8String or PrintableString, sometimes any of the generated types.
fn tag() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..2usize, 1 => 0..GEN_TAGS.len()]
}

/// Subjects near the valid ones: a C and a CN (in any type and order) plus a few others.
fn subject() -> impl Strategy<Value = Vec<Vec<GenAva>>> {
    let country_value = prop_oneof![
        3 => prop::sample::select(vec!["JP", "US", "DE", "FR", "CN", "BR"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => value(),
    ];
    let name_value = prop_oneof![
        3 => "[a-zA-Z0-9:_-]{1,40}".prop_map(String::into_bytes),
        1 => value(),
    ];
    let country = (tag(), country_value).prop_map(|(t, v)| (1usize, t, v));
    let common_name = (tag(), name_value).prop_map(|(t, v)| (0usize, t, v));
    let rdn = prop_oneof![
        9 => gen_ava().prop_map(|a| vec![a]),
        1 => prop::collection::vec(gen_ava(), 2..4),
    ];
    (
        prop::option::weighted(0.9, country),
        prop::option::weighted(0.95, common_name),
        prop::collection::vec(rdn, 0..3),
    )
        .prop_map(|(c, cn, mut rest)| {
            rest.extend(c.map(|a| vec![a]));
            rest.extend(cn.map(|a| vec![a]));
            rest
        })
        .prop_shuffle()
}

#[derive(Debug, Clone)]
enum Input {
    Bytes(Vec<u8>),
    Pem(Vec<u8>),
    /// A seed's DER, mutated.
    MutatedDer(usize, Vec<Mutation>),
    /// A seed's PEM text, mutated.
    MutatedPem(usize, Vec<Mutation>),
    /// A seed's request info, mutated and signed again: proof of possession holds, so
    /// the mutation reaches the key checks and the policy.
    Resigned(usize, Vec<Mutation>),
    /// A generated subject, signed.
    Subject(Vec<Vec<GenAva>>),
}

fn input(seeds: usize) -> impl Strategy<Value = Input> {
    let mutations = || prop::collection::vec(mutation(), 1..6);
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..2048).prop_map(Input::Bytes),
        1 => prop::collection::vec(any::<u8>(), 0..1024).prop_map(Input::Pem),
        3 => (0..seeds, mutations()).prop_map(|(s, m)| Input::MutatedDer(s, m)),
        1 => (0..seeds, mutations()).prop_map(|(s, m)| Input::MutatedPem(s, m)),
        3 => (0..seeds, mutations()).prop_map(|(s, m)| Input::Resigned(s, m)),
        3 => subject().prop_map(Input::Subject),
    ]
}

fn render(fx: &Fixture, input: &Input) -> Vec<u8> {
    match input {
        Input::Bytes(b) => b.clone(),
        Input::Pem(b) => pem(b).into_bytes(),
        Input::MutatedDer(s, m) => apply(fx.seeds[*s].der.clone(), m),
        Input::MutatedPem(s, m) => apply(pem(&fx.seeds[*s].der).into_bytes(), m),
        Input::Resigned(s, m) => {
            let seed = &fx.seeds[*s];
            let info = apply(seed.info.clone(), m);
            let signature = rcgen::SigningKey::sign(&seed.key, &info).unwrap();
            request(&info, &seed.algorithm, &signature)
        }
        Input::Subject(rdns) => {
            let rdns: Vec<Vec<Ava>> = rdns
                .iter()
                .map(|rdn| {
                    rdn.iter()
                        .map(|(o, t, v)| ava(GEN_OIDS[*o], GEN_TAGS[*t], v))
                        .collect()
                })
                .collect();
            signed_csr(&fx.subject_key, &rdns, &[])
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    RefusedByParser,
    RefusedByPolicy,
    Issued,
}

/// parse -> approve -> sign, and what must hold of any certificate that comes out.
fn check(fx: &Fixture, bytes: &[u8]) -> Result<Outcome, TestCaseError> {
    let Ok(parsed) = factory_ca::ca::csr::parse(bytes) else {
        return Ok(Outcome::RefusedByParser);
    };
    let Ok(approved) = fx.policy.approve(parsed) else {
        return Ok(Outcome::RefusedByPolicy);
    };
    let issued = fx
        .ca
        .sign(&approved, &fx.profile, fx.now)
        .map_err(|e| TestCaseError::fail(format!("an approved CSR failed to sign: {e}")))?;
    check_issued(fx, bytes, &approved, &issued)?;
    Ok(Outcome::Issued)
}

fn check_issued(
    fx: &Fixture,
    csr_bytes: &[u8],
    approved: &ApprovedCsr,
    issued: &IssuedCertificate,
) -> Result<(), TestCaseError> {
    let (_, cert) = X509Certificate::from_der(&issued.certificate_der)
        .map_err(|e| TestCaseError::fail(format!("the certificate does not parse: {e}")))?;
    // The subject is exactly what the policy approved: same attributes, order, types.
    let approved_subject: Vec<(String, u8, Vec<u8>)> = approved
        .subject()
        .iter()
        .map(|a| {
            (
                a.field.oid().to_owned(),
                if a.utf8 { UTF8 } else { PRINTABLE },
                a.value.as_bytes().to_vec(),
            )
        })
        .collect();
    let issued_subject = attributes(cert.subject());
    prop_assert_eq!(&issued_subject, &approved_subject);
    prop_assert!(
        cert.subject().iter_rdn().all(|rdn| rdn.iter().count() == 1),
        "one attribute per RDN"
    );
    // ... which is also what the request said, read by an independent parser.
    let der = request_der(csr_bytes);
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| TestCaseError::fail(format!("accepted, but x509-parser refuses: {e}")))?;
    prop_assert_eq!(
        &issued_subject,
        &attributes(&csr.certification_request_info.subject)
    );
    prop_assert_eq!(
        cert.public_key().raw,
        csr.certification_request_info.subject_pki.raw
    );
    // The ledger's key fingerprint is the certificate's.
    prop_assert_eq!(
        &issued.spki_sha256,
        &factory_ca::ca::sha256_hex(cert.public_key().raw)
    );
    // The policy's promises, checked from outside.
    let cn: Vec<_> = issued_subject
        .iter()
        .filter(|(o, _, _)| o == "2.5.4.3")
        .collect();
    prop_assert_eq!(cn.len(), 1);
    prop_assert_eq!(cn[0].2.as_slice(), approved.thing_name().as_bytes());
    prop_assert!(factory_ca::ca::policy::is_thing_name(approved.thing_name()));
    let countries: Vec<_> = issued_subject
        .iter()
        .filter(|(o, _, _)| o == "2.5.4.6")
        .collect();
    prop_assert_eq!(countries.len(), 1);
    prop_assert!(factory_ca::ca::country::is_assigned_alpha2(
        std::str::from_utf8(&countries[0].2).unwrap()
    ));
    for (oid, tag, value) in &issued_subject {
        prop_assert!(
            SubjectField::ALL.iter().any(|f| f.oid() == oid),
            "{} is not allowed",
            oid
        );
        prop_assert!(*tag == UTF8 || *tag == PRINTABLE);
        prop_assert!(!value.is_empty());
        let text = std::str::from_utf8(value).unwrap();
        prop_assert!(!text.chars().any(char::is_control));
    }
    // The profile, not the request, made the extensions.
    prop_assert!(!cert.is_ca());
    let mut oids: Vec<String> = cert
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    oids.sort();
    prop_assert_eq!(oids, PROFILE_EXTENSIONS.to_vec());
    prop_assert!(factory_ca::ca::is_signed_by(
        &issued.certificate_der,
        fx.ca.certificate_der()
    ));
    Ok(())
}

/// The DER of an accepted request, given as PEM or DER.
fn request_der(bytes: &[u8]) -> Vec<u8> {
    let text_start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    if text_start.is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN ")) {
        der_of(std::str::from_utf8(bytes).unwrap())
    } else {
        bytes.to_vec()
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 2000 cases by default (`FACTORY_CA_FUZZ_CASES`), within a time budget
/// (`FACTORY_CA_FUZZ_SECS`, default 120): cases past the budget are skipped and counted.
/// The run happens on its own thread so that a hang fails the test instead of stalling it.
#[test]
fn arbitrary_and_mutated_csrs_never_panic_hang_or_yield_an_unapproved_subject() {
    let cases = env_number("FACTORY_CA_FUZZ_CASES", 2000) as u32;
    let budget = Duration::from_secs(env_number("FACTORY_CA_FUZZ_SECS", 120));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("csr-fuzz".into())
        .stack_size(8 << 20)
        .spawn(move || done.send(run(cases, budget)).unwrap())
        .unwrap();
    let report = finished
        .recv_timeout(budget + Duration::from_secs(180))
        .expect("the property test hung");
    let Report {
        result,
        counts,
        elapsed,
        slowest,
    } = report;
    eprintln!(
        "csr fuzz: {} cases in {:.1?} (slowest {:.1?}): {} refused by the parser, {} by the \
         policy, {} issued; {} skipped past the time budget",
        counts[0] + counts[1] + counts[2],
        elapsed,
        slowest,
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        slowest < Duration::from_secs(2),
        "one case took {slowest:?}"
    );
    assert!(counts[2] > 0, "no generated request was ever issued");
    assert!(counts[0] > 0 && counts[1] > 0);
}

struct Report {
    result: Result<(), String>,
    /// Refused by the parser, refused by the policy, issued, skipped.
    counts: [u64; 4],
    elapsed: Duration,
    slowest: Duration,
}

fn run(cases: u32, budget: Duration) -> Report {
    let fx = fixture();
    let started = Instant::now();
    let counts: [AtomicU64; 4] = Default::default();
    let slowest_us = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    });
    let result = runner.run(&input(fx.seeds.len()), |input| {
        if started.elapsed() > budget {
            counts[3].fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let bytes = render(fx, &input);
        let case_started = Instant::now();
        let outcome = check(fx, &bytes)?;
        // Without a new signature, a mutant is refused or is its seed, byte for byte: no
        // change outside the signed part survives, and none inside it.
        if let (Outcome::Issued, Input::MutatedDer(seed, _) | Input::MutatedPem(seed, _)) =
            (&outcome, &input)
        {
            prop_assert_eq!(&request_der(&bytes), &fx.seeds[*seed].der);
        }
        slowest_us.fetch_max(case_started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let slot = match outcome {
            Outcome::RefusedByParser => 0,
            Outcome::RefusedByPolicy => 1,
            Outcome::Issued => 2,
        };
        counts[slot].fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    Report {
        result: result.map_err(|e| e.to_string()),
        counts: counts.map(|c| c.into_inner()),
        elapsed: started.elapsed(),
        slowest: Duration::from_micros(slowest_us.into_inner()),
    }
}
