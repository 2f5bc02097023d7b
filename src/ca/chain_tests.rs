//! Tests of [`super::verify_chain`]: a root -> intermediate -> issuing hierarchy built with
//! rcgen, given in order, shuffled, broken or with a root that forbids it.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::macros::datetime;

use super::*;

struct Level {
    pem: String,
    der: Vec<u8>,
    key: KeyPair,
}

fn params(name: &str, constraint: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(constraint);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = datetime!(2026-01-01 0:00 UTC);
    params.not_after = datetime!(2030-01-01 0:00 UTC);
    params
}

fn root(name: &str, constraint: BasicConstraints) -> Level {
    let key = KeyPair::generate().unwrap();
    let cert = params(name, constraint).self_signed(&key).unwrap();
    Level {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key,
    }
}

fn below(parent: &Level, name: &str, constraint: BasicConstraints) -> Level {
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_ca_cert_der(&parent.der.clone().into(), &parent.key).unwrap();
    let cert = params(name, constraint).signed_by(&key, &issuer).unwrap();
    Level {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key,
    }
}

const NOW: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);

fn count(pem_text: &str) -> usize {
    pem::parse_many(pem_text).unwrap().len()
}

#[test]
fn a_chain_given_in_any_order_comes_back_ordered_up_to_the_root() {
    let root = root("Root", BasicConstraints::Unconstrained);
    let mid = below(&root, "Mid", BasicConstraints::Constrained(1));
    let issuing = below(&mid, "Issuing", BasicConstraints::Constrained(0));
    let shuffled = format!("{}{}{}", root.pem, issuing.pem, mid.pem);
    let ordered = verify_chain(&issuing.der, &shuffled, NOW).unwrap();
    let certs = pem::parse_many(&ordered).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].contents(), mid.der.as_slice());
    assert_eq!(certs[1].contents(), root.der.as_slice());
    // A device presents the intermediate, never the root.
    let intermediates = intermediates_pem(&ordered);
    assert_eq!(count(&intermediates), 1);
    assert_eq!(
        pem::parse(&intermediates).unwrap().contents(),
        mid.der.as_slice()
    );
}

#[test]
fn a_chain_that_stops_short_of_a_root_is_refused() {
    let root = root("Root", BasicConstraints::Unconstrained);
    let mid = below(&root, "Mid", BasicConstraints::Unconstrained);
    let issuing = below(&mid, "Issuing", BasicConstraints::Unconstrained);
    let err = verify_chain(&issuing.der, &mid.pem, NOW).unwrap_err();
    assert!(
        err.to_string().contains("no certificate in it issued"),
        "{err}"
    );
    assert!(err.to_string().contains("CN=Mid"), "{err}");
}

#[test]
fn a_root_of_the_same_name_but_another_key_is_refused() {
    let root_a = root("Root", BasicConstraints::Unconstrained);
    let root_b = root("Root", BasicConstraints::Unconstrained);
    let issuing = below(&root_a, "Issuing", BasicConstraints::Unconstrained);
    let err = verify_chain(&issuing.der, &root_b.pem, NOW).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    verify_chain(&issuing.der, &root_a.pem, NOW).unwrap();
}

#[test]
fn extra_certificates_off_the_path_are_refused() {
    let root = root("Root", BasicConstraints::Unconstrained);
    let other = root_other();
    let issuing = below(&root, "Issuing", BasicConstraints::Unconstrained);
    let err = verify_chain(&issuing.der, &format!("{}{}", root.pem, other.pem), NOW).unwrap_err();
    assert!(err.to_string().contains("not on the path"), "{err}");
}

fn root_other() -> Level {
    root("Other", BasicConstraints::Unconstrained)
}

#[test]
fn a_path_length_the_issuer_forbids_is_refused() {
    // pathlen:1 allows one CA below the root that issues devices, not two.
    let root = root("Root", BasicConstraints::Constrained(1));
    let mid = below(&root, "Mid", BasicConstraints::Unconstrained);
    let issuing = below(&mid, "Issuing", BasicConstraints::Unconstrained);
    let err = verify_chain(&issuing.der, &format!("{}{}", mid.pem, root.pem), NOW).unwrap_err();
    assert!(err.to_string().contains("pathLenConstraint 1"), "{err}");
    verify_chain(&mid.der, &root.pem, NOW).unwrap();
    // pathlen:0: the root may sign only end entities, so no CA below it may issue devices.
    let leaf_only = self::root("Leaf only", BasicConstraints::Constrained(0));
    let under = below(&leaf_only, "Under", BasicConstraints::Unconstrained);
    let err = verify_chain(&under.der, &leaf_only.pem, NOW).unwrap_err();
    assert!(err.to_string().contains("pathLenConstraint 0"), "{err}");
}

#[test]
fn an_issuer_that_is_not_valid_now_is_refused() {
    let root = root("Root", BasicConstraints::Unconstrained);
    let issuing = below(&root, "Issuing", BasicConstraints::Unconstrained);
    let err = verify_chain(&issuing.der, &root.pem, datetime!(2031-01-01 0:00 UTC)).unwrap_err();
    assert!(err.to_string().contains("not valid now"), "{err}");
}

#[test]
fn a_root_takes_no_chain_and_an_empty_chain_is_refused_for_a_subordinate() {
    let root = root("Root", BasicConstraints::Unconstrained);
    let issuing = below(&root, "Issuing", BasicConstraints::Unconstrained);
    assert_eq!(verify_chain(&root.der, &root.pem, NOW).unwrap(), "");
    let err = verify_chain(&root.der, &issuing.pem, NOW).unwrap_err();
    assert!(err.to_string().contains("self-signed root"), "{err}");
    let err = verify_chain(&issuing.der, &issuing.pem, NOW).unwrap_err();
    assert!(err.to_string().contains("no certificate above"), "{err}");
    assert!(intermediates_pem(&root.pem).is_empty());
}
