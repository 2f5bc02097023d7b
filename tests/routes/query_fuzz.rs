//! The property test of the query surface: every GET route of the OpenAPI document, every one of
//! its query parameters (and its path parameters), driven with arbitrary strings: NUL and other
//! control characters, far-future and far-past times with offsets, huge and negative numbers,
//! forged cursors, and valid values mixed in. No answer may be a 5xx.
//!
//! Cases per backend: `FACTORY_CA_QUERY_FUZZ_CASES` (default 500).

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::fake::FakeIotRegistry;

on_both_backends!(no_query_of_any_get_route_gets_a_5xx);

/// A GET operation: its path template, query parameter names and path parameter names.
struct GetRoute {
    path: String,
    query: Vec<String>,
    path_params: Vec<String>,
}

fn get_routes() -> Vec<GetRoute> {
    let doc = factory_ca::http::openapi::document();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let names = |place: &str| -> Vec<String> {
            params
                .iter()
                .filter(|p| p["in"] == place)
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        routes.push(GetRoute {
            path: path.clone(),
            query: names("query"),
            path_params: names("path"),
        });
    }
    routes
}

/// Times near and past the ends of what RFC 3339 and the API allow, with any offset.
fn time_value() -> impl Strategy<Value = String> {
    let fixed = [
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "2026-11-28T10:00:00.999999999+14:00",
        "+99999-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
    ];
    // The ends of the calendar most of the time: the first and last days of years 0, 1 and
    // 9999, with any offset.
    let year = prop_oneof![Just(0u32), Just(1), Just(9999), Just(1970), 0u32..10000];
    let date = prop_oneof![Just((1u32, 1u32)), Just((12, 31)), (1u32..13, 1u32..29)];
    let offset = prop_oneof![Just(-1439i32), Just(1439), Just(0), -1439i32..1440];
    let generated = (year, date, 0u32..24, 0u32..60, offset, any::<bool>()).prop_map(
        |(y, (mo, d), h, mi, offset, zulu)| {
            let zone = if zulu {
                "Z".to_owned()
            } else {
                let sign = if offset < 0 { '-' } else { '+' };
                let m = offset.unsigned_abs();
                format!("{sign}{:02}:{:02}", m / 60, m % 60)
            };
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:59{zone}")
        },
    );
    prop_oneof![
        1 => prop::sample::select(fixed.map(str::to_owned).to_vec()),
        3 => generated,
    ]
}

/// Numbers around the ends of every integer type, and things that are almost numbers.
fn number_value() -> impl Strategy<Value = String> {
    let fixed = [
        "0",
        "-1",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999999999",
        "1e308",
        "NaN",
    ];
    prop_oneof![
        prop::sample::select(fixed.map(str::to_owned).to_vec()),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u32..2000).prop_map(|n| n.to_string()),
    ]
}

/// Anything: arbitrary Unicode, control characters, words the API knows, values of this
/// ledger, base64 (cursor-shaped) bytes, very long strings.
fn any_value(known: Vec<String>) -> impl Strategy<Value = String> {
    let words = [
        "day",
        "hour",
        "country",
        "station",
        "ca",
        "status",
        "asc",
        "desc",
        "active",
        "revoked",
        "never_seen",
        "ACTIVE",
        "success",
        "failure",
        "pem",
        "der",
        "",
    ];
    let control = prop::collection::vec(
        prop_oneof![
            (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
            Just('\u{7f}'),
            Just('\u{85}'),
            Just('\u{2028}'),
            Just('%'),
            Just('&'),
            Just('='),
            Just('+'),
            Just('|'),
            proptest::char::range('a', 'z'),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    prop_oneof![
        2 => any::<String>(),
        2 => control,
        1 => time_value(),
        1 => number_value(),
        1 => prop::sample::select(words.map(str::to_owned).to_vec()),
        1 => prop::sample::select(known),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }),
        1 => (1usize..8).prop_map(|n| "x".repeat(2000 * n)),
    ]
}

/// A value for the parameter `name`: mostly of its own kind (a time for a time, a number for
/// a limit or cursor), sometimes anything.
fn pick(name: &str, choice: u8, any: &str, time: &str, number: &str) -> String {
    let own_kind = choice % 10 < 8;
    match name {
        "issued_after" | "issued_before" | "from" | "to" | "since" | "until" if own_kind => {
            time.to_owned()
        }
        "limit" | "cursor" if own_kind => number.to_owned(),
        _ => any.to_owned(),
    }
}

/// `value` percent-encoded for a URL query or path.
fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn no_query_of_any_get_route_gets_a_5xx(backend: Backend) {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake, |_| {}).await;
    let response = app.sign(&csr("fuzz-1", "JP").pem).await;
    assert_eq!(response.status(), 201);
    let serial = json(response).await["serial"].as_str().unwrap().to_owned();
    let ca_id = json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = json(app.get(&app.viewer, "/v1/certificates?limit=1").await).await;
    let mut known = vec![
        serial.clone(),
        ca_id.clone(),
        "station-1".to_owned(),
        "fuzz-1".to_owned(),
        "JP".to_owned(),
        "viewer-1".to_owned(),
    ];
    if let Some(cursor) = page["next_cursor"].as_str() {
        known.push(cursor.to_owned());
    }

    let routes = get_routes();
    assert!(routes.len() >= 15, "only {} GET routes", routes.len());
    let cases: u32 = std::env::var("FACTORY_CA_QUERY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    // Routes with query parameters four times as often as the others.
    let weighted: Vec<usize> = (0..routes.len())
        .flat_map(|i| std::iter::repeat_n(i, if routes[i].query.is_empty() { 1 } else { 4 }))
        .collect();
    let param = (
        any::<prop::sample::Index>(),
        any::<u8>(),
        any_value(known.clone()),
        time_value(),
        number_value(),
    );
    let case = (
        prop::sample::select(weighted),
        prop::collection::vec(param, 0..3),
        prop::collection::vec(any_value(known.clone()), 1..3),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for _ in 0..cases {
        let (route, params, path_values, valid_path) =
            case.new_tree(&mut runner).unwrap().current();
        let route = &routes[route];
        let mut path = route.path.clone();
        for (i, name) in route.path_params.iter().enumerate() {
            let real = match name.as_str() {
                "serial" => serial.clone(),
                "id" => ca_id.clone(),
                _ => "viewer-1".to_owned(),
            };
            let chosen = if valid_path {
                real
            } else {
                path_values[i % path_values.len()].clone()
            };
            path = path.replace(&format!("{{{name}}}"), &enc(&chosen));
        }
        let mut query = Vec::new();
        for (index, choice, any, time, number) in &params {
            // Mostly the route's own parameters; sometimes an unknown one.
            let name = if route.query.is_empty() || index.index(16) == 0 {
                "unknown".to_owned()
            } else {
                route.query[index.index(route.query.len())].clone()
            };
            let value = pick(&name, *choice, any, time, number);
            query.push(format!("{}={}", enc(&name), enc(&value)));
        }
        let url = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        // Admin passes every role check: the parameters are what is under test.
        let response = app
            .client
            .get(app.url(&url))
            .bearer_auth(&app.admin)
            .send()
            .await
            .unwrap();
        let status = response.status();
        *statuses.entry(status.as_u16()).or_default() += 1;
        if status.is_server_error() {
            let body = response.text().await.unwrap_or_default();
            failures.push(format!("GET {url} -> {status}: {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} requests got a 5xx:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{cases} GET requests by status: {statuses:?}");
    // The test reached the handlers, not only the extractors' refusals.
    assert!(
        statuses.get(&200).copied().unwrap_or_default() > 0,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or_default() > 0,
        "{statuses:?}"
    );
    // The service is still ready and answers.
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _: Value = json(app.get(&app.viewer, "/v1/certificates").await).await;
}
