//! The signing step alone, in process: parse and verify the CSR, approve it under the policy,
//! sign the device certificate. No HTTP and no ledger, so this is the ceiling the service's
//! throughput is measured against (`scripts/bench.sh`). One thread; ECDSA P-256 device CSRs
//! such as `factory-ca bench` sends, for an ECDSA P-256 CA and an RSA-2048 CA.
//!
//! `cargo bench --bench signing`; criterion prints the time per operation.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::{Duration, OffsetDateTime};

use factory_ca::bench::{DeviceKeyType, device_csr_pem};
use factory_ca::ca::csr::parse;
use factory_ca::ca::policy::SubjectField;
use factory_ca::ca::{CaAlgorithm, CaSubject, CertificateAuthority, DeviceProfile, IssuancePolicy};

/// Distinct CSRs cycled through, so no cache sees the same input twice in a row.
const CSRS: usize = 256;

fn device_csrs() -> Vec<Vec<u8>> {
    (0..CSRS)
        .map(|i| {
            device_csr_pem(DeviceKeyType::EcdsaP256, &format!("bench-thing-{i}"), "JP")
                .expect("a device CSR")
                .into_bytes()
        })
        .collect()
}

fn signing(c: &mut Criterion) {
    let csrs = device_csrs();
    let policy = IssuancePolicy::new(SubjectField::ALL.to_vec(), true);
    let profile = DeviceProfile::default();
    let now = OffsetDateTime::now_utc();
    let subject = CaSubject {
        common_name: "factory-ca bench root".into(),
        country: Some("JP".into()),
        state: None,
        locality: None,
        organization: Some("factory-ca".into()),
        organizational_unit: None,
    };

    let mut group = c.benchmark_group("signing");
    group.throughput(Throughput::Elements(1));

    // The CA-independent part: decode, check the key, verify the proof of possession.
    let mut next = 0;
    group.bench_function("parse-verify-ecdsa-p256-csr", |b| {
        b.iter(|| {
            next = (next + 1) % csrs.len();
            black_box(parse(black_box(&csrs[next])).expect("a valid CSR"))
        })
    });

    for (name, algorithm) in [
        ("ecdsa-p256-ca", CaAlgorithm::EcdsaP256),
        ("rsa-2048-ca", CaAlgorithm::Rsa2048),
    ] {
        let (ca, _key) =
            CertificateAuthority::generate(algorithm, &subject, Duration::days(30), now)
                .expect("a CA");
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 1) % csrs.len();
                let parsed = parse(black_box(&csrs[next])).expect("a valid CSR");
                let approved = policy.approve(parsed).expect("an approved CSR");
                black_box(ca.sign(&approved, &profile, now).expect("a certificate"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
