//! Dashboard sign-ins: a limit on failed attempts per source address and per presented token,
//! and the collapsing of repeated failure records in the audit log.
//!
//! Without these, anyone holding a station token (or none) could write one audit row per
//! request, about a thousand a second. Within [`SignInGuard::WINDOW`], a presented token that
//! failed [`SignInGuard::FAILURES_PER_TOKEN`] times, or a source address that failed
//! [`SignInGuard::FAILURES_PER_SOURCE`] times (more: several people may sign in through one
//! proxy), is refused until the window ends, before any token lookup; so is a token that
//! signed in [`SignInGuard::SIGN_INS_PER_TOKEN`] times (each sign-in stores a session). Failure
//! records of one actor are written at most once per window; the next one says how many were
//! collapsed into it.
//!
//! In-process, like the station limits: each replica counts its own attempts. Time is passed
//! in, so the windows are testable without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a sign-in attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// Failures from this address.
    Source(IpAddr),
    /// Failures with this token, by the SHA-256 (hex) of what was presented: unknown tokens
    /// count too.
    Token(String),
    /// Successful sign-ins with this token.
    Session(String),
}

impl Key {
    fn limit(&self) -> u32 {
        match self {
            Key::Source(_) => SignInGuard::FAILURES_PER_SOURCE,
            Key::Token(_) => SignInGuard::FAILURES_PER_TOKEN,
            Key::Session(_) => SignInGuard::SIGN_INS_PER_TOKEN,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

#[derive(Default)]
struct Inner {
    attempts: HashMap<Key, Window>,
    /// Per actor: the window of the last failure record written, and the failures collapsed
    /// since.
    audited: HashMap<String, (Instant, u32)>,
}

pub struct SignInGuard {
    inner: Mutex<Inner>,
}

impl Default for SignInGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl SignInGuard {
    /// Failed sign-ins one presented token may make per window.
    pub const FAILURES_PER_TOKEN: u32 = 10;
    /// Failed sign-ins one source address may make per window.
    pub const FAILURES_PER_SOURCE: u32 = 30;
    /// Successful sign-ins one token may make per window.
    pub const SIGN_INS_PER_TOKEN: u32 = 60;
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// Keys tracked before expired ones are dropped; beyond it new keys are not tracked.
    const MAX_TRACKED: usize = 10_000;

    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failure_keys(source: Option<IpAddr>, token_hash: &str) -> impl Iterator<Item = Key> {
        source
            .map(Key::Source)
            .into_iter()
            .chain(std::iter::once(Key::Token(token_hash.to_owned())))
    }

    /// `Err(wait)` when the source or the token used up its attempts in the current window
    /// (failures, or sign-ins of the token): refuse the sign-in without looking the token up,
    /// and retry after `wait`.
    pub fn check(
        &self,
        source: Option<IpAddr>,
        token_hash: &str,
        now: Instant,
    ) -> Result<(), Duration> {
        let inner = self.lock();
        let mut wait = Duration::ZERO;
        let session = Key::Session(token_hash.to_owned());
        for key in Self::failure_keys(source, token_hash).chain([session]) {
            if let Some(w) = inner.attempts.get(&key) {
                let elapsed = now.saturating_duration_since(w.started);
                if elapsed < Self::WINDOW && w.count >= key.limit() {
                    wait = wait.max(Self::WINDOW - elapsed);
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts one failed sign-in against the source and the token.
    pub fn failed(&self, source: Option<IpAddr>, token_hash: &str, now: Instant) {
        let mut inner = self.lock();
        for key in Self::failure_keys(source, token_hash) {
            Self::count(&mut inner, key, now);
        }
    }

    /// Counts one successful sign-in against the token (each stores a session).
    pub fn succeeded(&self, token_hash: &str, now: Instant) {
        let mut inner = self.lock();
        Self::count(&mut inner, Key::Session(token_hash.to_owned()), now);
    }

    fn count(inner: &mut Inner, key: Key, now: Instant) {
        if !inner.attempts.contains_key(&key) && inner.attempts.len() >= Self::MAX_TRACKED {
            inner
                .attempts
                .retain(|_, w| now.saturating_duration_since(w.started) < Self::WINDOW);
            if inner.attempts.len() >= Self::MAX_TRACKED {
                return;
            }
        }
        let w = inner.attempts.entry(key).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.saturating_duration_since(w.started) >= Self::WINDOW {
            *w = Window {
                started: now,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
    }

    /// Whether to write the audit record of a failed sign-in by `actor` now. `Some(n)`: write
    /// it, and say that `n` earlier failures were collapsed into it; `None`: a record of this
    /// actor was written in this window, count this failure into the next one.
    pub fn audit_failure(&self, actor: &str, now: Instant) -> Option<u32> {
        let mut inner = self.lock();
        if !inner.audited.contains_key(actor) && inner.audited.len() >= Self::MAX_TRACKED {
            inner
                .audited
                .retain(|_, (started, _)| now.saturating_duration_since(*started) < Self::WINDOW);
        }
        match inner.audited.get_mut(actor) {
            Some((started, collapsed))
                if now.saturating_duration_since(*started) < Self::WINDOW =>
            {
                *collapsed = collapsed.saturating_add(1);
                None
            }
            Some((started, collapsed)) => {
                let n = *collapsed;
                *started = now;
                *collapsed = 0;
                Some(n)
            }
            None => {
                inner.audited.insert(actor.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaa";
    const B: &str = "bbbb";

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn a_source_is_refused_after_its_failures_until_the_window_ends() {
        let guard = SignInGuard::new();
        let t0 = Instant::now();
        for i in 0..SignInGuard::FAILURES_PER_SOURCE {
            assert!(guard.check(ip(1), &format!("t{i}"), t0).is_ok());
            guard.failed(ip(1), &format!("t{i}"), t0);
        }
        // Another token from the same source: refused; the same token elsewhere: allowed.
        let wait = guard.check(ip(1), "fresh", t0).unwrap_err();
        assert_eq!(wait, SignInGuard::WINDOW);
        assert!(guard.check(ip(2), "fresh", t0).is_ok());
        let later = t0 + Duration::from_secs(45);
        assert_eq!(
            guard.check(ip(1), "fresh", later).unwrap_err(),
            Duration::from_secs(15)
        );
        assert!(
            guard
                .check(ip(1), "fresh", t0 + SignInGuard::WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn a_token_is_refused_from_every_source_after_its_failures() {
        let guard = SignInGuard::new();
        let t0 = Instant::now();
        for i in 0..SignInGuard::FAILURES_PER_TOKEN {
            guard.failed(ip(i as u8), A, t0);
        }
        assert!(guard.check(ip(200), A, t0).is_err());
        assert!(guard.check(None, A, t0).is_err());
        assert!(guard.check(ip(200), B, t0).is_ok());
    }

    #[test]
    fn successful_sign_ins_count_against_the_token_only() {
        let guard = SignInGuard::new();
        let t0 = Instant::now();
        for _ in 0..SignInGuard::SIGN_INS_PER_TOKEN - 1 {
            guard.succeeded(A, t0);
        }
        assert!(guard.check(ip(1), A, t0).is_ok());
        guard.succeeded(A, t0);
        assert!(guard.check(ip(1), A, t0).is_err());
        assert!(guard.check(ip(1), B, t0).is_ok());
    }

    #[test]
    fn failure_records_of_one_actor_are_collapsed_per_window() {
        let guard = SignInGuard::new();
        let t0 = Instant::now();
        assert_eq!(guard.audit_failure("line-1", t0), Some(0));
        for _ in 0..99 {
            assert_eq!(guard.audit_failure("line-1", t0), None);
        }
        assert_eq!(guard.audit_failure("line-2", t0), Some(0));
        let next = t0 + SignInGuard::WINDOW;
        assert_eq!(guard.audit_failure("line-1", next), Some(99));
        assert_eq!(guard.audit_failure("line-1", next), None);
    }
}
