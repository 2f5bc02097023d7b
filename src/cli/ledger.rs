//! `factory-ca ledger ...`: the tamper-evident ledger's proofs. `verify` recomputes every
//! CA's hash chain from the ledger rows, checks every signed checkpoint, and exits non-zero
//! naming the first record or checkpoint that does not match; `audit-key` prints the audit
//! public key; `checkpoint` signs the chains' heads now; `export` writes the ledger with a
//! detached signature by the audit key; `recount` recomputes the stats counters.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_lc_rs::digest;
use clap::{Subcommand, ValueEnum};
use time::OffsetDateTime;

use factory_ca::config::Settings;
use factory_ca::http::routes::certificates::{CSV_COLUMNS, CertificateView, csv_row};
use factory_ca::keys::{AuditKey, AuditPublicKey, KeyStore};
use factory_ca::services::ledger::{self, CheckpointWhen, MismatchAt};
use factory_ca::store::{CertificateFilter, Store, Timestamp};

use super::{CLI_ACTOR, StoreNeed, open_store, parse_time};

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Recompute the hash chain of every CA (or one), check every signed checkpoint against it
    /// and the audit key, and name the first record or checkpoint that does not match; exits
    /// with status 1 when any does.
    Verify {
        /// Only this CA (an id as `ca list` shows it).
        #[arg(long = "ca", value_name = "ID")]
        ca_id: Option<String>,
        /// Check checkpoints with this published audit public key (PEM, as
        /// `ledger audit-key` prints it) instead of the data directory's audit key; repeat
        /// for several (keys used before a change).
        #[arg(long = "audit-key", value_name = "FILE")]
        audit_keys: Vec<PathBuf>,
    },
    /// Print the ledger audit public key (PEM) on stdout and its key id on stderr; the key is
    /// generated when the store has none yet.
    AuditKey,
    /// Sign a checkpoint now of every CA chain with records after its last checkpoint.
    Checkpoint,
    /// Recompute the stats counters (certificates per hour, revocations per hour) from the
    /// ledger rows, for a ledger changed by other means than the service.
    Recount,
    /// Write the ledger rows, oldest first, to FILE (CSV as `GET /v1/certificates/export.csv`
    /// writes it, or JSON) and a detached signature by the audit key to FILE.sig, which
    /// `openssl dgst -sha256 -verify audit.pub -signature FILE.sig FILE` checks.
    Export {
        /// The file to write (must not exist); the signature goes to FILE.sig.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only certificates issued at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        issued_after: Option<OffsetDateTime>,
        /// Only certificates issued before this time (RFC 3339).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        issued_before: Option<OffsetDateTime>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

pub async fn run(command: LedgerCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings, StoreNeed::Existing).await?;
    let keys = KeyStore::from_settings(&settings);
    match command {
        LedgerCommand::Verify { ca_id, audit_keys } => {
            verify(&store, &keys, ca_id.as_deref(), &audit_keys).await
        }
        LedgerCommand::AuditKey => {
            let key = audit_key(&keys).await?;
            print!("{}", key.public().to_pem());
            eprintln!("key id (SHA-256 of its DER): {}", key.key_id());
            Ok(())
        }
        LedgerCommand::Checkpoint => {
            let key = audit_key(&keys).await?;
            let now = Timestamp::now();
            let made =
                ledger::checkpoint_chains(&store, &key, CheckpointWhen::Pending, now).await?;
            for cp in &made {
                println!(
                    "{}\tcheckpoint\trecord {}\t{}",
                    cp.ca_id,
                    cp.seq,
                    hex::encode(&cp.head_hash)
                );
                CLI_ACTOR
                    .record(
                        &store,
                        "ledger.checkpoint",
                        Some(&cp.ca_id),
                        true,
                        Some(&format!("record {}, key {}", cp.seq, cp.key_id)),
                    )
                    .await?;
            }
            if made.is_empty() {
                eprintln!("every chain is checkpointed at its head already");
            }
            Ok(())
        }
        LedgerCommand::Recount => {
            let started = std::time::Instant::now();
            store.recount_certificates().await?;
            CLI_ACTOR
                .record(&store, "ledger.recount", None, true, None)
                .await?;
            println!(
                "stats counters recomputed in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        LedgerCommand::Export {
            out,
            format,
            issued_after,
            issued_before,
        } => {
            let key = audit_key(&keys).await?;
            let filter = CertificateFilter {
                issued_after: issued_after.map(Timestamp::new),
                issued_before: issued_before.map(Timestamp::new),
                ascending: true,
                ..CertificateFilter::default()
            };
            let rows = export(&store, &key, &out, format, filter).await;
            let detail = match &rows {
                Ok(n) => format!("{n} rows, {format:?}, key {}", key.key_id()).to_lowercase(),
                Err(e) => format!("failed: {e}"),
            };
            CLI_ACTOR
                .record(
                    &store,
                    "ledger.export",
                    Some(&out.display().to_string()),
                    rows.is_ok(),
                    Some(&detail),
                )
                .await?;
            let rows = rows?;
            println!("{}\t{rows} rows", out.display());
            println!("{}\tsignature", sig_path(&out).display());
            eprintln!(
                "signed by the audit key {}; check with: factory-ca ledger audit-key > audit.pub \
                 && openssl dgst -sha256 -verify audit.pub -signature {} {}",
                key.key_id(),
                sig_path(&out).display(),
                out.display()
            );
            Ok(())
        }
    }
}

async fn audit_key(keys: &KeyStore) -> anyhow::Result<AuditKey> {
    keys.audit_key().await.with_context(|| {
        format!(
            "cannot load or create the ledger audit key ({} under data_dir)",
            factory_ca::keys::AUDIT_KEY_FILE
        )
    })
}

async fn verify(
    store: &Store,
    keys: &KeyStore,
    ca_id: Option<&str>,
    audit_keys: &[PathBuf],
) -> anyhow::Result<()> {
    let trusted: Vec<AuditPublicKey> = if audit_keys.is_empty() {
        keys.existing_audit_key()
            .await
            .context("cannot read the ledger audit key (or give --audit-key FILE)")?
            .map(|k| k.public().clone())
            .into_iter()
            .collect()
    } else {
        audit_keys
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                AuditPublicKey::from_pem(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let results = ledger::verify(store, ca_id, &trusted).await?;
    let mut failed = Vec::new();
    for r in &results {
        match &r.mismatch {
            None => {
                let last = r
                    .last_checkpoint
                    .as_ref()
                    .map(|(seq, hash)| format!("last at record {seq} ({hash})"))
                    .unwrap_or_else(|| "none yet".into());
                println!(
                    "{}\tok\t{} records\t{:.2} s\t{} checkpoints\t{last}",
                    r.ca_id, r.verified, r.seconds, r.checkpoints
                );
            }
            Some(m) => {
                let at = match m.at {
                    MismatchAt::Record => "record",
                    MismatchAt::Checkpoint => "checkpoint",
                };
                println!(
                    "{}\tmismatch\t{at} {}\t{}\t{}",
                    r.ca_id,
                    m.seq,
                    m.serial.as_deref().unwrap_or("-"),
                    m.problem
                );
                failed.push(format!("CA {}: {}", r.ca_id, m.problem));
            }
        }
    }
    // Thing claims span CAs: checked when the whole ledger is.
    if ca_id.is_none() {
        let claims = ledger::verify_claims(store).await?;
        match &claims.stray {
            None => println!(
                "thing claims\tok\t{} claims\t{:.2} s",
                claims.claims, claims.seconds
            ),
            Some((thing, serial)) => {
                let problem = format!(
                    "the claim of thing {thing} names {serial}, which is not a ledger row of \
                     that thing"
                );
                println!("thing claims\tmismatch\t-\t{serial}\t{problem}");
                failed.push(problem);
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "the ledger does not match its hash chain: {}",
            failed.join("; ")
        );
    }
    let trust = trusted
        .iter()
        .map(AuditPublicKey::key_id)
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "every record and checkpoint of {} CA chain(s) matches (audit key {})",
        results.len(),
        if trust.is_empty() { "none" } else { &trust }
    );
    Ok(())
}

fn sig_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Rows read per query of an export.
const EXPORT_CHUNK: u32 = 1_000;

/// A file that hashes what is written to it.
struct Hashing<W> {
    inner: W,
    digest: digest::Context,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the export and its signature; returns the rows written. A failure leaves neither
/// file behind.
async fn export(
    store: &Store,
    key: &AuditKey,
    out: &Path,
    format: ExportFormat,
    filter: CertificateFilter,
) -> anyhow::Result<u64> {
    let sig = sig_path(out);
    if sig.exists() {
        anyhow::bail!(
            "{} exists; an export never overwrites (remove it or choose another --out)",
            sig.display()
        );
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create {} (an export never overwrites an existing file)",
                out.display()
            )
        })?;
    let mut writer = Hashing {
        inner: std::io::BufWriter::new(file),
        digest: digest::Context::new(&digest::SHA256),
    };
    let written = write_export(store, key, &mut writer, format, filter).await;
    let finished = written.and_then(|rows| {
        let Hashing { inner, digest } = writer;
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let signature = key.sign_digest(&digest.finish());
        let mut sig_file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&sig)
            .with_context(|| format!("cannot create {}", sig.display()))?;
        sig_file.write_all(&signature)?;
        sig_file.sync_all()?;
        Ok(rows)
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(out);
    }
    finished
}

async fn write_export(
    store: &Store,
    key: &AuditKey,
    w: &mut impl Write,
    format: ExportFormat,
    mut filter: CertificateFilter,
) -> anyhow::Result<u64> {
    let mut rows = 0u64;
    match format {
        ExportFormat::Csv => {
            write!(w, "{}\r\n", CSV_COLUMNS.join(","))?;
        }
        ExportFormat::Json => {
            // What the chains were when the export began: the newest checkpoint of each CA, so
            // that whoever keeps this file keeps a signed head of each chain too.
            let mut heads = Vec::new();
            for state in store.checkpoint_states().await? {
                let Some(seq) = state.last_seq else { continue };
                if let Some(cp) = store
                    .checkpoints_page(&state.ca_id, seq - 1, 1)
                    .await?
                    .into_iter()
                    .next()
                {
                    heads.push(serde_json::json!({
                        "ca_id": cp.ca_id,
                        "seq": cp.seq,
                        "head_hash": hex::encode(&cp.head_hash),
                        "issued": cp.issued,
                        "revoked": cp.revoked,
                        "created_at": cp.created_at.rfc3339(),
                        "key_id": cp.key_id,
                        "signed_text": String::from_utf8_lossy(&ledger::checkpoint_message(&cp)),
                        "signature": hex::encode(&cp.signature),
                    }));
                }
            }
            let head = serde_json::json!({
                "format": "factory-ca ledger export v1",
                "exported_at": Timestamp::now().rfc3339(),
                "key_id": key.key_id(),
                "checkpoints": heads,
            });
            // The object without its closing brace, then the certificates array.
            let text = serde_json::to_string_pretty(&head)?;
            let open = text
                .strip_suffix('}')
                .expect("an object ends with }")
                .trim_end();
            write!(w, "{open},\n  \"certificates\": [")?;
        }
    }
    loop {
        let page = store.list_certificates(&filter, EXPORT_CHUNK).await?;
        let Some(last) = page.last() else { break };
        filter.before = Some((last.issued_at, last.serial.clone()));
        let full = page.len() == EXPORT_CHUNK as usize;
        let mut targets = store.certificate_aws_targets(&page).await?;
        match format {
            ExportFormat::Csv => {
                let mut chunk = String::with_capacity(page.len() * 400);
                for row in &page {
                    let t = targets
                        .get(&row.serial)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    csv_row(&mut chunk, row, t);
                }
                w.write_all(chunk.as_bytes())?;
            }
            ExportFormat::Json => {
                for row in page.iter().cloned() {
                    let sep = if rows == 0 { "\n    " } else { ",\n    " };
                    w.write_all(sep.as_bytes())?;
                    let t = targets.remove(&row.serial).unwrap_or_default();
                    serde_json::to_writer(&mut *w, &CertificateView::new(row, false, t))?;
                    rows += 1;
                }
                if !full {
                    break;
                }
                continue;
            }
        }
        rows += page.len() as u64;
        if !full {
            break;
        }
    }
    if format == ExportFormat::Json {
        w.write_all(b"\n  ]\n}\n")?;
    }
    w.flush()?;
    Ok(rows)
}
