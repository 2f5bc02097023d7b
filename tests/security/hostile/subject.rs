//! The subject, hand-built and validly signed: each refusal is 422 with the policy's code.
//! The policy (`factory_ca::ca::policy`) wants one CN that is an AWS IoT thing name, one C that
//! is an assigned ISO 3166-1 alpha-2 code, and otherwise only the allowed fields, once each,
//! with printable values in UTF8String or PrintableString.

use super::*;
use crate::on_both_backends;

on_both_backends!(
    a_common_name_that_is_no_thing_name_is_invalid_thing_name,
    a_subject_without_exactly_one_common_name_is_missing_common_name,
    a_country_that_is_no_assigned_iso_3166_code_is_invalid_country,
    a_subject_without_exactly_one_country_is_missing_country,
    an_attribute_not_allowed_or_not_alone_in_its_rdn_is_subject_attribute_not_allowed,
    an_allowed_attribute_with_a_bad_value_is_invalid_subject_attribute,
);

async fn a_common_name_that_is_no_thing_name_is_invalid_thing_name(backend: Backend) {
    refuses_each_csr(backend, &NO_THING_NAME).await;
}

async fn a_subject_without_exactly_one_common_name_is_missing_common_name(backend: Backend) {
    refuses_each_csr(backend, &NOT_ONE_COMMON_NAME).await;
}

async fn a_country_that_is_no_assigned_iso_3166_code_is_invalid_country(backend: Backend) {
    refuses_each_csr(backend, &NO_ASSIGNED_COUNTRY).await;
}

async fn a_subject_without_exactly_one_country_is_missing_country(backend: Backend) {
    refuses_each_csr(backend, &NOT_ONE_COUNTRY).await;
}

async fn an_attribute_not_allowed_or_not_alone_in_its_rdn_is_subject_attribute_not_allowed(
    backend: Backend,
) {
    refuses_each_csr(backend, &ATTRIBUTES_NOT_ALLOWED).await;
}

async fn an_allowed_attribute_with_a_bad_value_is_invalid_subject_attribute(backend: Backend) {
    refuses_each_csr(backend, &BAD_ATTRIBUTE_VALUES).await;
}

/// One case per subject, each in a CSR of its own, all refused with `code`.
fn subjects(code: &'static str, rows: Vec<(String, Vec<Vec<Ava>>)>) -> Vec<Case> {
    rows.into_iter()
        .map(|(name, subject)| case(name, der_body(subject_csr(&subject)), UNPROCESSABLE, code))
        .collect()
}

pub(super) static NO_THING_NAME: Table = Table::new(no_thing_name);

fn no_thing_name() -> Vec<Case> {
    let cns: Vec<(&str, Ava)> = vec![
        ("CN empty", utf8(OID_CN, "")),
        ("CN of 129 characters", printable(OID_CN, &"a".repeat(129))),
        ("CN with spaces", printable(OID_CN, "Thing 1")),
        ("CN with NUL", utf8(OID_CN, "Thing\0-1")),
        ("CN with /", utf8(OID_CN, "line/3")),
        ("CN with a newline", utf8(OID_CN, "Thing-1\n")),
        ("CN non-ASCII", utf8(OID_CN, "Dévice-1")),
        ("CN with a zero-width space", utf8(OID_CN, "Thing\u{200b}1")),
        ("CN as BMPString", ava(OID_CN, BMP, bmp("Thing-1"))),
        ("CN as TeletexString", ava(OID_CN, TELETEX, "Thing-1")),
        ("CN as IA5String", ava(OID_CN, IA5, "Thing-1")),
        (
            "CN as UniversalString",
            ava(OID_CN, UNIVERSAL, universal("Thing-1")),
        ),
        (
            "CN as PrintableString with '_' (not in its alphabet)",
            printable(OID_CN, "Thing_1"),
        ),
        (
            "CN as UTF8String with invalid UTF-8",
            ava(OID_CN, UTF8, b"Thing-\xff"),
        ),
    ];
    subjects(
        "invalid_thing_name",
        cns.into_iter()
            .map(|(name, cn)| (name.to_owned(), with_cn(cn)))
            .collect(),
    )
}

pub(super) static NOT_ONE_COMMON_NAME: Table = Table::new(not_one_common_name);

fn not_one_common_name() -> Vec<Case> {
    subjects(
        "missing_common_name",
        vec![
            ("empty subject".into(), Vec::new()),
            (
                "no CN".into(),
                flat(vec![printable(OID_C, "JP"), utf8(OID_O, "Org")]),
            ),
            (
                "CN twice".into(),
                flat(vec![
                    printable(OID_C, "JP"),
                    utf8(OID_CN, "Thing-1"),
                    utf8(OID_CN, "Thing-1"),
                ]),
            ),
            (
                "two CNs in one RDN".into(),
                vec![
                    vec![printable(OID_C, "JP")],
                    vec![utf8(OID_CN, "Thing-1"), utf8(OID_CN, "Thing-2")],
                ],
            ),
        ],
    )
}

pub(super) static NO_ASSIGNED_COUNTRY: Table = Table::new(no_assigned_country);

fn no_assigned_country() -> Vec<Case> {
    let countries: Vec<(&str, Ava)> = vec![
        ("C = XX", printable(OID_C, "XX")),
        ("C = jp", printable(OID_C, "jp")),
        ("C = JPN", printable(OID_C, "JPN")),
        ("C = J", printable(OID_C, "J")),
        ("C empty", printable(OID_C, "")),
        ("C = UK", printable(OID_C, "UK")),
        ("C = EU", printable(OID_C, "EU")),
        ("C with NUL", utf8(OID_C, "J\0")),
        ("C as BMPString", ava(OID_C, BMP, bmp("JP"))),
        ("C as TeletexString", ava(OID_C, TELETEX, "JP")),
    ];
    subjects(
        "invalid_country",
        countries
            .into_iter()
            .map(|(name, c)| (name.to_owned(), with_c(c)))
            .collect(),
    )
}

pub(super) static NOT_ONE_COUNTRY: Table = Table::new(not_one_country);

fn not_one_country() -> Vec<Case> {
    subjects(
        "missing_country",
        vec![
            (
                "no C".into(),
                flat(vec![utf8(OID_O, "Org"), utf8(OID_CN, "No-Country")]),
            ),
            (
                "C twice".into(),
                flat(vec![
                    printable(OID_C, "JP"),
                    printable(OID_C, "JP"),
                    utf8(OID_CN, "Two-Countries"),
                ]),
            ),
        ],
    )
}

pub(super) static ATTRIBUTES_NOT_ALLOWED: Table = Table::new(attributes_not_allowed);

fn attributes_not_allowed() -> Vec<Case> {
    let mut rows: Vec<(String, Vec<Vec<Ava>>)> = vec![(
        "CN and C in one multi-valued RDN".into(),
        vec![vec![printable(OID_C, "JP"), utf8(OID_CN, "Thing-1")]],
    )];
    for (name, extra) in [
        ("emailAddress", ava(OID_EMAIL, IA5, "a@example.com")),
        ("an unknown OID", utf8(OID_UNKNOWN, "x")),
        ("domainComponent", ava(OID_DC, IA5, "example")),
        ("userId", utf8(OID_UID, "root")),
        ("title", utf8(OID_TITLE, "Admin")),
    ] {
        rows.push((
            format!("{name} in the subject"),
            flat(vec![printable(OID_C, "JP"), extra, utf8(OID_CN, "Extra-1")]),
        ));
    }
    rows.push((
        "OU twice".into(),
        flat(vec![
            printable(OID_C, "JP"),
            utf8(OID_OU, "a"),
            utf8(OID_OU, "a"),
            utf8(OID_CN, "Ou-Twice"),
        ]),
    ));
    let mut thousands = vec![printable(OID_C, "JP"), utf8(OID_CN, "Many-Rdns")];
    thousands.extend((0..3000).map(|i| utf8(OID_OU, &format!("u{i}"))));
    rows.push(("3000 OU RDNs".into(), flat(thousands)));
    let mut one_big_rdn = vec![printable(OID_C, "JP"), utf8(OID_CN, "Big-Rdn")];
    one_big_rdn.extend((0..2000).map(|i| utf8(OID_O, &format!("o{i}"))));
    rows.push(("2000 attributes in one RDN".into(), vec![one_big_rdn]));
    subjects("subject_attribute_not_allowed", rows)
}

pub(super) static BAD_ATTRIBUTE_VALUES: Table = Table::new(bad_attribute_values);

fn bad_attribute_values() -> Vec<Case> {
    let values: Vec<(&str, Ava)> = vec![
        ("O empty", utf8(OID_O, "")),
        ("OU of 65 characters", utf8(OID_OU, &"o".repeat(65))),
        ("ST of 129 characters", utf8(OID_ST, &"s".repeat(129))),
        ("L with an ANSI escape", utf8(OID_L, "Tokyo\u{1b}[31m")),
        (
            "O with a newline (log injection)",
            utf8(OID_O, "Org\nlevel=ERROR"),
        ),
        ("O as BMPString", ava(OID_O, BMP, bmp("Org"))),
        ("ST as TeletexString", ava(OID_ST, TELETEX, "Tokyo")),
        ("O with invalid UTF-8", ava(OID_O, UTF8, b"Org\xc0\xaf")),
        (
            "serialNumber as IA5String",
            ava(OID_SERIAL_NUMBER, IA5, "123"),
        ),
        ("dnQualifier empty", printable(OID_DN_QUALIFIER, "")),
        // '?' is in PrintableString's alphabet, but the certificate writer cannot encode it.
        (
            "ST as PrintableString with '?'",
            printable(OID_ST, "Tokyo?"),
        ),
    ];
    subjects(
        "invalid_subject_attribute",
        values
            .into_iter()
            .map(|(name, extra)| {
                let subject = flat(vec![
                    printable(OID_C, "JP"),
                    extra,
                    utf8(OID_CN, "Bad-Value"),
                ]);
                (name.to_owned(), subject)
            })
            .collect(),
    )
}
