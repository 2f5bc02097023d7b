//! The hourly and daily certificate counters behind `GET /v1/stats` give the answers the ledger
//! gives: random certificates (issued, renewed, revoked one by one and in bulk, through the
//! store's own writers, at random times over several days) and random ranges (within an hour,
//! across hours, across several days from random offsets, aligned to hours or days), compared
//! in every grouping with the same counts aggregated from the ledger alone. The daily counters
//! that migration 0026 folds from the hourly ones, and those `ledger recount` rebuilds, give
//! the same answers.

use factory_ca::ca::{IssuedCertificate, RevocationReason};
use factory_ca::store::bulk_revocation::{NewRevocationJob, RevocationFilter};
use factory_ca::store::ledger_writer::{GroupCommitConfig, LedgerWriter};
use factory_ca::store::stats::StatsGrouping;
use factory_ca::store::{NewIssuance, RecordOutcome, Store, Superseding, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(counters_answer_as_the_ledger_for_random_certificates_and_ranges);

fn hex(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A time within `hours` of `around`, at a random second and microsecond.
fn near(rng: &mut StdRng, around: OffsetDateTime, hours: i64) -> OffsetDateTime {
    around + Duration::microseconds(rng.random_range(-hours * 3_600_000_000..hours * 3_600_000_000))
}

/// A ledger row issued at `issued_at`; its expiry is random around `now`, a fifth of them
/// within the current hour (the one hour the hourly counters cannot tell expired from live)
/// and a fifth within the current day (the one day the daily counters cannot).
fn row(
    rng: &mut StdRng,
    ca_id: &str,
    n: usize,
    issued_at: OffsetDateTime,
    now: OffsetDateTime,
) -> NewIssuance {
    let this_hour = Timestamp::new(now).hour_start().get();
    let today = Timestamp::new(now).day_start().get();
    let not_after = match rng.random_range(0..5) {
        0 => this_hour + Duration::seconds(rng.random_range(0..3600)),
        1 => near(rng, now, 48),
        2 => today + Duration::microseconds(rng.random_range(0..86_400_000_000)),
        _ => issued_at + Duration::hours(rng.random_range(1..100)),
    };
    let thing = format!("Counted-{n}");
    let country = [Some("JP"), Some("US"), None][rng.random_range(0..3)];
    NewIssuance {
        certificate: IssuedCertificate {
            serial: hex(rng, 20),
            thing_name: thing.clone(),
            country: country.map(str::to_owned),
            subject: format!("CN={thing}"),
            key_algorithm: factory_ca::ca::KeyAlgorithm::EcdsaP256,
            spki_sha256: hex(rng, 32),
            aws_certificate_id: hex(rng, 32),
            // The ledger stores the DER, it does not parse it.
            certificate_der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
            not_before: issued_at,
            not_after,
        },
        ca_id: ca_id.to_owned(),
        station: format!("station-{}", rng.random_range(1..4)),
        request_id: None,
        channel: factory_ca::store::Channel::Api,
        issued_at: Timestamp::new(issued_at),
        idempotency: None,
        reject_duplicate_thing: false,
    }
}

async fn counters_answer_as_the_ledger_for_random_certificates_and_ranges(backend: Backend) {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let app = TestApp::spawn(backend).await;
    let ca_id = app.store.issuing_ca().await.unwrap().unwrap().id;
    let now = OffsetDateTime::now_utc();
    let writer = match &app.store {
        Store::Postgres(pool) => Some(LedgerWriter::spawn(
            pool.clone(),
            GroupCommitConfig {
                max_batch: 16,
                writers: 2,
            },
        )),
        Store::Sqlite(_) => None,
    };

    // Issuance over five days around now, and a third of it over sixteen days: one by one,
    // and on PostgreSQL also in group-commit batches.
    let mut issued: Vec<NewIssuance> = Vec::new();
    for n in 0..300 {
        let at = near(&mut rng, now, if n % 3 == 0 { 192 } else { 60 });
        let new = row(&mut rng, &ca_id, n, at, now);
        let outcome = match (&writer, n % 2) {
            (Some(writer), 0) => writer.record(new.clone()).await.unwrap(),
            _ => app.store.record_issuance(&new).await.unwrap(),
        };
        assert_eq!(outcome, RecordOutcome::Recorded);
        issued.push(new);
    }
    // Renewals: a tenth of them superseded by a new certificate.
    for n in 0..30 {
        let old = &issued[n * 10];
        let at = near(&mut rng, now, 60);
        let mut new = row(&mut rng, &ca_id, 1000 + n, at, now);
        new.certificate.thing_name = old.certificate.thing_name.clone();
        let superseding = Superseding {
            serial: old.certificate.serial.clone(),
            ca_id: old.ca_id.clone(),
        };
        let outcome = app.store.record_renewal(&new, &superseding).await.unwrap();
        assert_eq!(outcome, RecordOutcome::Recorded);
    }
    // Revocations, one by one (of active and of superseded certificates) at random times.
    for n in (0..300).step_by(7) {
        let at = Timestamp::new(near(&mut rng, now, 60));
        app.store
            .revoke_certificate(
                &issued[n].certificate.serial,
                RevocationReason::KeyCompromise,
                at,
            )
            .await
            .unwrap();
    }
    // And in bulk: one station's certificates of a day, in batches.
    let filter = RevocationFilter {
        station: Some("station-2".into()),
        issued_after: Some(now - Duration::hours(30)),
        issued_before: Some(now - Duration::hours(6)),
        ..RevocationFilter::default()
    };
    let job_at = Timestamp::new(now - Duration::minutes(rng.random_range(1..600)));
    let (job, _) = app
        .store
        .create_revocation_job(&NewRevocationJob {
            id: "rev-counted",
            now: job_at,
            actor: "admin-1",
            request_id: None,
            idempotency_key: None,
            filter: &filter,
            reason: RevocationReason::CessationOfOperation,
        })
        .await
        .unwrap();
    while app.store.revoke_batch(&job, 5, job_at).await.unwrap() > 0 {}

    // Ranges: random, hour-aligned at either end or both, inside one hour, and all time;
    // several days long from random offsets, day-aligned at either end or both; and a `now`
    // that is the real one or another hour in which certificates expire.
    let mut checked = 0;
    for case in 0..90 {
        let a = near(&mut rng, now, 80);
        let b = near(&mut rng, now, 80);
        let (mut from, mut to) = (Timestamp::new(a.min(b)), Timestamp::new(a.max(b)));
        let days = Timestamp::new(near(&mut rng, now, 200));
        let days_later = |rng: &mut StdRng, from: Timestamp| {
            Timestamp::new(
                from.get() + Duration::microseconds(rng.random_range(0..8 * 86_400_000_000)),
            )
        };
        match case % 9 {
            0 => from = from.hour_start(),
            1 => to = to.hour_start(),
            2 => (from, to) = (from.hour_start(), to.hour_start()),
            3 => to = Timestamp::new(from.get() + Duration::minutes(rng.random_range(1..59))),
            _ if case == 4 => {
                from = Timestamp::new(Timestamp::MIN);
                to = Timestamp::new(Timestamp::MAX);
            }
            5 => (from, to) = (days, days_later(&mut rng, days)),
            6 => (from, to) = (days.day_start(), days_later(&mut rng, days)),
            7 => (from, to) = (days, days_later(&mut rng, days).day_start()),
            8 => (from, to) = (days.day_start(), days_later(&mut rng, days).day_start()),
            _ => {}
        }
        if from >= to {
            continue;
        }
        let at = if case % 3 == 0 {
            Timestamp::new(near(&mut rng, now, 48))
        } else {
            Timestamp::new(now)
        };
        for grouping in StatsGrouping::ALL {
            let counted = app.store.stats(from, to, grouping, at).await.unwrap();
            let direct = app
                .store
                .stats_from_ledger(from, to, grouping, at)
                .await
                .unwrap();
            assert_eq!(
                counted, direct,
                "seed {seed}: [{from:?}, {to:?}) grouped by {grouping:?}, now {at:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 450, "{checked} comparisons");
    // The comparisons saw every kind of count.
    let all = app
        .store
        .stats(
            Timestamp::new(Timestamp::MIN),
            Timestamp::new(Timestamp::MAX),
            StatsGrouping::Status,
            Timestamp::new(now),
        )
        .await
        .unwrap();
    for status in ["active", "superseded", "revoked", "expired"] {
        assert!(
            all.groups.contains_key(&Some(status.to_owned())),
            "no {status} certificate: {all:?}"
        );
    }
    assert!(all.totals.revoked > 40, "{all:?}");

    // Ranges of several days in every grouping, compared with the ledger after each change
    // to the counters below.
    let windows: Vec<(Timestamp, Timestamp)> = (0..6)
        .map(|_| {
            let from = Timestamp::new(near(&mut rng, now, 200));
            let days = rng.random_range(2..9);
            (from, Timestamp::new(from.get() + Duration::days(days)))
        })
        .chain([(
            Timestamp::new(Timestamp::MIN),
            Timestamp::new(Timestamp::MAX),
        )])
        .collect();
    let kept = every_grouping(&app.store, &windows, Timestamp::new(now), false).await;
    assert_eq!(
        kept,
        every_grouping(&app.store, &windows, Timestamp::new(now), true).await,
        "seed {seed}"
    );

    // The migration's backfill folds the hourly counters into the same daily counters.
    let migration = match backend {
        Backend::Postgres => {
            include_str!("../../migrations/postgres/0026_certificate_counts_daily.sql")
        }
        Backend::Sqlite => {
            include_str!("../../migrations/sqlite/0026_certificate_counts_daily.sql")
        }
    };
    let backfill = &migration[migration
        .find("INSERT INTO")
        .expect("the migration backfills")..];
    app.execute_sql("DELETE FROM certificate_counts_daily; DELETE FROM revocation_counts_daily")
        .await;
    app.execute_sql(backfill).await;
    assert_eq!(
        every_grouping(&app.store, &windows, Timestamp::new(now), false).await,
        kept,
        "seed {seed}: after the migration's backfill"
    );

    // A recount from the ledger rebuilds both levels, whatever they held.
    app.execute_sql(
        "UPDATE certificate_counts_daily SET issued = issued + 3; \
         UPDATE revocation_counts_daily SET count = count + 2; \
         UPDATE certificate_counts SET superseded = superseded + 1",
    )
    .await;
    assert_ne!(
        every_grouping(&app.store, &windows, Timestamp::new(now), false).await,
        kept
    );
    app.store.recount_certificates().await.unwrap();
    assert_eq!(
        every_grouping(&app.store, &windows, Timestamp::new(now), false).await,
        kept,
        "seed {seed}: after a recount"
    );
}

/// The stats of every window in every grouping: from the counters, or (`from_ledger`) from the
/// ledger alone.
async fn every_grouping(
    store: &Store,
    windows: &[(Timestamp, Timestamp)],
    now: Timestamp,
    from_ledger: bool,
) -> Vec<factory_ca::store::stats::Stats> {
    let mut all = Vec::new();
    for &(from, to) in windows {
        for grouping in StatsGrouping::ALL {
            let stats = if from_ledger {
                store.stats_from_ledger(from, to, grouping, now).await
            } else {
                store.stats(from, to, grouping, now).await
            };
            all.push(stats.unwrap());
        }
    }
    all
}
