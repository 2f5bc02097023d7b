//! The fan-out over registration targets (`[aws.targets.<name>]`): registration, template,
//! status changes, deregistration, sync and the state view run in each selected target in
//! turn. A failing target (throttled, down, access denied) does not stop the others: the
//! answer says per target what was done and what failed, the failure is kept per (CA, target)
//! (`aws_target_attempts`), and the same call again does only what is missing. Only when every
//! selected target failed is the answer an error, that of the first target.

use futures_util::future::BoxFuture;

use super::register::{parse_status_change, registration_config};
use super::*;
use crate::store::aws::TargetAttempt;

/// What failed in one target.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TargetFailure {
    /// `throttled`, `unreachable`, `unavailable`, `access_denied`, `not_found`,
    /// `already_exists`, `certificate_validation`, `invalid_state`, `rejected`, or `failed`
    /// (not an AWS answer, e.g. the CA key's signer).
    pub kind: String,
    /// AWS's error code, e.g. `ThrottlingException`; null when AWS sent none.
    pub code: Option<String>,
    pub message: String,
}

impl TargetFailure {
    fn of(e: &ProvisioningError) -> Self {
        match e {
            ProvisioningError::Aws(a) => TargetFailure {
                kind: a.kind().to_owned(),
                code: a.failure().code.clone(),
                message: e.to_string(),
            },
            ProvisioningError::NotRegistered(_) => TargetFailure {
                kind: "not_registered".into(),
                code: None,
                message: e.to_string(),
            },
            _ => TargetFailure {
                kind: "failed".into(),
                code: None,
                message: e.to_string(),
            },
        }
    }
}

/// What a register, PATCH or template attachment did in one target.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TargetOutcome {
    pub target: String,
    pub region: String,
    /// The account of the target's role, when one is assumed.
    pub account: Option<String>,
    pub ok: bool,
    /// `registered`, `already_registered`, `updated`, `attached`, `unchanged`, `deleted`,
    /// `not_registered` or `failed`.
    pub result: String,
    /// The registration in this target after the call, each requested setting beside AWS's.
    pub registration: Option<RegistrationOutcome>,
    pub error: Option<TargetFailure>,
}

/// The answer of register and PATCH: the registration of the first target that succeeded
/// (`default` when it is among them) with its fields as before, and every target's outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegisterOutcome {
    #[serde(flatten)]
    pub primary: RegistrationOutcome,
    /// One entry per selected target, in configuration order.
    pub targets: Vec<TargetOutcome>,
    /// The targets that failed (retry the same call: it does only what is missing).
    pub failed_targets: Vec<String>,
}

/// The answer of PUT .../aws/template: the stored registration of the first target that
/// succeeded, and every target's outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TemplateOutcome {
    #[serde(flatten)]
    pub primary: AwsRegistration,
    pub targets: Vec<TargetOutcome>,
    pub failed_targets: Vec<String>,
}

/// The answer of DELETE .../aws when a target failed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeregisterOutcome {
    pub targets: Vec<TargetOutcome>,
    pub failed_targets: Vec<String>,
}

/// A sync in one target.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TargetSync {
    pub target: String,
    pub region: String,
    pub ok: bool,
    pub report: Option<SyncReport>,
    pub error: Option<TargetFailure>,
}

/// The answer of POST .../aws/sync: the first target's report with its fields as before, and
/// every target's.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncOutcome {
    #[serde(flatten)]
    pub primary: SyncReport,
    pub targets: Vec<TargetSync>,
    pub failed_targets: Vec<String>,
}

/// The CA in one target: what we stored, what AWS says now, the drift, and the last attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StateTarget {
    pub target: String,
    pub region: String,
    pub account: Option<String>,
    pub registered: bool,
    pub stored: Option<AwsRegistration>,
    pub live: Option<CaDescription>,
    pub drift: Vec<String>,
    /// The last AWS operation of factory-ca for this CA here, and what failed.
    pub last_attempt: Option<TargetAttempt>,
    /// Why AWS could not be asked now.
    pub error: Option<TargetFailure>,
}

/// The answer of GET .../aws: the registration of the `default` target (or the only or first
/// one) as before, and every target's.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StateOutcome {
    #[serde(flatten)]
    pub primary: RegistrationState,
    pub targets: Vec<StateTarget>,
}

fn outcome(target: &AwsTargetRegistry, result: &str) -> TargetOutcome {
    TargetOutcome {
        target: target.name.clone(),
        region: target.region.clone(),
        account: target.account.clone(),
        ok: true,
        result: result.into(),
        registration: None,
        error: None,
    }
}

fn failed(target: &AwsTargetRegistry, e: &ProvisioningError) -> TargetOutcome {
    TargetOutcome {
        ok: false,
        error: Some(TargetFailure::of(e)),
        ..outcome(target, "failed")
    }
}

/// A store failure is no target's: it ends the call.
fn per_target(e: ProvisioningError) -> Result<ProvisioningError, ProvisioningError> {
    match e {
        ProvisioningError::Store(_) => Err(e),
        e => Ok(e),
    }
}

/// The error when every selected target failed: the one target's as it is, or the first's code
/// with each target's failure named.
fn all_failed(mut failures: Vec<(String, ProvisioningError)>) -> ProvisioningError {
    if failures.len() == 1 {
        return failures.remove(0).1;
    }
    let detail = failures
        .iter()
        .map(|(t, e)| format!("target {t}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    ProvisioningError::AllTargetsFailed {
        first: Box::new(failures.remove(0).1),
        detail,
    }
}

/// What a fan-out gathered, target by target in configuration order: each target's entry of the
/// answer (`A`), the value of each that succeeded (`V`, one of which becomes the answer's
/// primary) and each failure.
struct FanOut<V, A> {
    values: Vec<(String, V)>,
    answers: Vec<A>,
    failures: Vec<(String, ProvisioningError)>,
}

/// A fan-out's end when some target succeeded: the primary's value, every target's entry and
/// the names of the targets that failed.
struct Gathered<V, A> {
    primary: V,
    answers: Vec<A>,
    failed_targets: Vec<String>,
}

impl<V, A> FanOut<V, A> {
    fn new() -> Self {
        Self {
            values: Vec::new(),
            answers: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A target with nothing to do (the CA is not registered there).
    fn skipped(&mut self, answer: A) {
        self.answers.push(answer);
    }

    fn succeeded(&mut self, target: &AwsTargetRegistry, value: V, answer: A) {
        self.values.push((target.name.clone(), value));
        self.answers.push(answer);
    }

    /// A target's failure, answered by `answer` ([`per_target`]: a store failure ends the call).
    fn failed(
        &mut self,
        target: &AwsTargetRegistry,
        e: ProvisioningError,
        answer: impl FnOnce(&ProvisioningError) -> A,
    ) -> Result<(), ProvisioningError> {
        let e = per_target(e)?;
        self.answers.push(answer(&e));
        self.failures.push((target.name.clone(), e));
        Ok(())
    }

    /// The answer, its primary the value of `default` when it succeeded, else of the first
    /// target that did; the error of [`all_failed`] when none did.
    fn gather(mut self) -> Result<Gathered<V, A>, ProvisioningError> {
        if self.values.is_empty() {
            return Err(all_failed(self.failures));
        }
        let i = self
            .values
            .iter()
            .position(|(t, _)| t == crate::config::DEFAULT_AWS_TARGET)
            .unwrap_or(0);
        Ok(Gathered {
            primary: self.values.swap_remove(i).1,
            answers: self.answers,
            failed_targets: self.failures.into_iter().map(|(t, _)| t).collect(),
        })
    }
}

/// The CA's registration in `target`, when it has one.
fn registered_in<'r>(
    registrations: &'r [(&AwsTargetRegistry, AwsRegistration)],
    target: &AwsTargetRegistry,
) -> Option<&'r AwsRegistration> {
    registrations
        .iter()
        .find(|(t, _)| t.name == target.name)
        .map(|(_, reg)| reg)
}

impl Provisioning<'_> {
    /// Runs `run` in each selected target the CA is registered in (`registrations`), in
    /// configuration order, recording each attempt as `operation`; a selected target the CA is
    /// not registered in is answered `not_registered`. `answer` makes the entry of a target that
    /// succeeded.
    async fn in_registered_targets<'f, V>(
        &self,
        ca_id: &str,
        selected: &[&'f AwsTargetRegistry],
        registrations: &[(&'f AwsTargetRegistry, AwsRegistration)],
        operation: &str,
        mut run: impl FnMut(
            &'f AwsTargetRegistry,
            AwsRegistration,
        ) -> BoxFuture<'f, Result<V, ProvisioningError>>,
        answer: impl Fn(&AwsTargetRegistry, &V) -> TargetOutcome,
    ) -> Result<FanOut<V, TargetOutcome>, ProvisioningError> {
        let mut fan = FanOut::new();
        for &target in selected {
            let Some(reg) = registered_in(registrations, target) else {
                fan.skipped(outcome(target, "not_registered"));
                continue;
            };
            let result = run(target, reg.clone()).await;
            self.record_attempt(ca_id, &target.name, operation, result.as_ref().err())
                .await?;
            match result {
                Ok(value) => {
                    let entry = answer(target, &value);
                    fan.succeeded(target, value, entry);
                }
                Err(e) => fan.failed(target, e, |e| failed(target, e))?,
            }
        }
        Ok(fan)
    }

    /// Registers the CA in each selected target (default: all). Idempotent per target: where
    /// it is registered already, the stored registration is refreshed from AWS. True when no
    /// target registered it now.
    pub async fn register(
        &self,
        ca_id: &str,
        req: RegisterRequest,
        actor: Actor<'_>,
    ) -> Result<(RegisterOutcome, bool), ProvisioningError> {
        let selected = self.select(req.targets.as_deref())?;
        let record = self.ca_record(ca_id).await?;
        let registered = self.store.list_ca_aws_registrations(ca_id).await?;
        let needs_registration = selected
            .iter()
            .any(|t| !registered.iter().any(|r| r.target == t.name));
        let mut config = None;
        if needs_registration {
            let template = req
                .template
                .as_ref()
                .map(TemplateSpec::resolve)
                .transpose()?;
            config = registration_config(template.as_ref(), req.role_arn.as_deref())?;
            let report = self.preflight(ca_id, template.as_ref()).await?;
            if !report.ok {
                self.audit("ca.aws.register", ca_id, false, &report.failures(), actor)
                    .await?;
                return Err(ProvisioningError::PreflightFailed(report.failures()));
            }
        }
        let mut fan = FanOut::new();
        let mut all_already = true;
        for target in &selected {
            let result = self
                .register_in(target, &record, &req, &config, actor)
                .await;
            let error = result.as_ref().err();
            self.record_attempt(ca_id, &target.name, "register", error)
                .await?;
            match result {
                Ok((reg, already)) => {
                    all_already &= already;
                    let result = if already {
                        "already_registered"
                    } else {
                        "registered"
                    };
                    let answer = TargetOutcome {
                        registration: Some(reg.clone()),
                        ..outcome(target, result)
                    };
                    fan.succeeded(target, reg, answer);
                }
                Err(e) => fan.failed(target, e, |e| failed(target, e))?,
            }
        }
        let done = fan.gather()?;
        Ok((
            RegisterOutcome {
                primary: done.primary,
                targets: done.answers,
                failed_targets: done.failed_targets,
            },
            all_already,
        ))
    }

    /// Changes status and/or auto-registration in each selected target the CA is registered
    /// in (default: all of them).
    pub async fn change_status(
        &self,
        ca_id: &str,
        change: StatusChange,
        actor: Actor<'_>,
    ) -> Result<RegisterOutcome, ProvisioningError> {
        let selected = self.select(change.targets.as_deref())?;
        let active = parse_status_change(&change)?;
        let registrations = self.registrations_in(ca_id, &selected).await?;
        let auto_registration = change.auto_registration;
        let fan = self
            .in_registered_targets(
                ca_id,
                &selected,
                &registrations,
                "update",
                |target, reg| {
                    Box::pin(self.change_status_in(target, reg, active, auto_registration, actor))
                },
                |target, reg| TargetOutcome {
                    registration: Some(reg.clone()),
                    ..outcome(target, "updated")
                },
            )
            .await?;
        let done = fan.gather()?;
        Ok(RegisterOutcome {
            primary: done.primary,
            targets: done.answers,
            failed_targets: done.failed_targets,
        })
    }

    /// Deregisters the CA from each selected target it is registered in (default: all). None
    /// when every one succeeded.
    pub async fn deregister(
        &self,
        ca_id: &str,
        targets: Option<&[String]>,
        actor: Actor<'_>,
    ) -> Result<Option<DeregisterOutcome>, ProvisioningError> {
        let selected = self.select(targets)?;
        let registrations = self.registrations_in(ca_id, &selected).await?;
        let fan = self
            .in_registered_targets(
                ca_id,
                &selected,
                &registrations,
                "delete",
                |target, reg| Box::pin(self.deregister_in(target, reg, actor)),
                |target, ()| outcome(target, "deleted"),
            )
            .await?;
        if fan.failures.is_empty() {
            return Ok(None);
        }
        let done = fan.gather()?;
        Ok(Some(DeregisterOutcome {
            targets: done.answers,
            failed_targets: done.failed_targets,
        }))
    }

    /// Attaches the template in each selected target the CA is registered in (default: all);
    /// a target that has it already is left as it is.
    pub async fn attach_template(
        &self,
        ca_id: &str,
        req: TemplateRequest,
        actor: Actor<'_>,
    ) -> Result<TemplateOutcome, ProvisioningError> {
        let selected = self.select(req.targets.as_deref())?;
        let registrations = self.registrations_in(ca_id, &selected).await?;
        let checked = self.check_template(ca_id, &req, actor).await?;
        let fan = self
            .in_registered_targets(
                ca_id,
                &selected,
                &registrations,
                "template",
                |target, reg| Box::pin(self.attach_template_in(target, reg, &checked, &req, actor)),
                |target, (reg, changed)| TargetOutcome {
                    registration: Some(RegistrationOutcome::new(
                        reg.clone(),
                        Vec::new(),
                        Vec::new(),
                    )),
                    ..outcome(target, if *changed { "attached" } else { "unchanged" })
                },
            )
            .await?;
        let done = fan.gather()?;
        Ok(TemplateOutcome {
            primary: done.primary.0,
            targets: done.answers,
            failed_targets: done.failed_targets,
        })
    }

    /// Syncs the CA in each selected target it is registered in (default: all).
    pub async fn sync(
        &self,
        ca_id: &str,
        targets: Option<&[String]>,
        actor: Actor<'_>,
    ) -> Result<SyncOutcome, ProvisioningError> {
        let selected = self.select(targets)?;
        let registrations = self.registrations_in(ca_id, &selected).await?;
        let mut fan = FanOut::new();
        for (target, reg) in registrations {
            let result = self.sync_in(target, &reg, actor).await;
            self.record_attempt(ca_id, &target.name, "sync", result.as_ref().err())
                .await?;
            let entry = TargetSync {
                target: target.name.clone(),
                region: target.region.clone(),
                ok: result.is_ok(),
                report: None,
                error: None,
            };
            match result {
                Ok(report) => {
                    let answer = TargetSync {
                        report: Some(report.clone()),
                        ..entry
                    };
                    fan.succeeded(target, report, answer);
                }
                Err(e) => fan.failed(target, e, |e| TargetSync {
                    error: Some(TargetFailure::of(e)),
                    ..entry
                })?,
            }
        }
        let done = fan.gather()?;
        Ok(SyncOutcome {
            primary: done.primary,
            targets: done.answers,
            failed_targets: done.failed_targets,
        })
    }

    /// What we stored beside what AWS reports now, with the drift named: for the `default`
    /// target (or the only or first one the CA is registered in) as before, and per target.
    pub async fn state(
        &self,
        ca_id: &str,
        targets: Option<&[String]>,
    ) -> Result<StateOutcome, ProvisioningError> {
        let selected = self.select(targets)?;
        self.ca_record(ca_id).await?;
        let attempts = self.store.list_target_attempts(ca_id).await?;
        let mut entries = Vec::new();
        let mut failures = Vec::new();
        for target in &selected {
            let last_attempt = attempts.iter().find(|a| a.target == target.name).cloned();
            let mut entry = StateTarget {
                target: target.name.clone(),
                region: target.region.clone(),
                account: target.account.clone(),
                registered: false,
                stored: None,
                live: None,
                drift: Vec::new(),
                last_attempt,
                error: None,
            };
            match self.state_in(target, ca_id).await {
                Ok(s) => {
                    entry.registered = s.stored.is_some();
                    entry.stored = s.stored;
                    entry.live = s.live;
                    entry.drift = s.drift;
                }
                Err(e) => {
                    let e = per_target(e)?;
                    entry.stored = self
                        .store
                        .get_aws_target_registration(ca_id, &target.name)
                        .await?;
                    entry.registered = entry.stored.is_some();
                    entry.error = Some(TargetFailure::of(&e));
                    failures.push((target.name.clone(), e));
                }
            }
            entries.push(entry);
        }
        // The primary: `default` when registered there, else the first registered target;
        // an unregistered CA has none.
        let registered: Vec<&StateTarget> = entries.iter().filter(|e| e.registered).collect();
        let primary = registered
            .iter()
            .find(|e| e.target == crate::config::DEFAULT_AWS_TARGET)
            .or(registered.first())
            .copied();
        let primary = match primary {
            None => RegistrationState {
                stored: None,
                live: None,
                drift: Vec::new(),
            },
            Some(p) if p.error.is_some() => {
                // AWS could not be asked there: the error, unless another target answered.
                if failures.len() == entries.len() || self.targets.len() == 1 {
                    return Err(all_failed(failures));
                }
                RegistrationState {
                    stored: p.stored.clone(),
                    live: None,
                    drift: vec![format!(
                        "AWS IoT could not be asked in target {}: {}",
                        p.target,
                        p.error.as_ref().map_or("", |e| e.message.as_str())
                    )],
                }
            }
            Some(p) => RegistrationState {
                stored: p.stored.clone(),
                live: p.live.clone(),
                drift: p.drift.clone(),
            },
        };
        Ok(StateOutcome {
            primary,
            targets: entries,
        })
    }
}
