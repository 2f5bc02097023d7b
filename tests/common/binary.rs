//! The `factory-ca` binary as a process: one-shot commands (`token create`, `ca import`, ...)
//! and `serve` on a free port. Every test that runs the binary starts it here, so that each
//! gets the same clean environment.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::process::{Captured, free_port, run};

/// The binary cargo built for this test run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_factory-ca");

/// `factory-ca` with only the settings the test gives it: no inherited `FACTORY_CA_*` variable
/// (`scripts/test.sh` exports `FACTORY_CA_TEST_DB_PREFIX`, which the binary would refuse as an
/// unknown setting) and no `RUST_LOG`. It runs in the crate root with `data_dir` as its data
/// directory, logs at `warn` unless the test says otherwise, and reads no standard input.
pub fn factory_ca(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BINARY);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FACTORY_CA_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env("FACTORY_CA_DATA_DIR", data_dir)
        .env("FACTORY_CA_LOG__LEVEL", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` (a `factory_ca` command with its arguments), panicking with its stderr when it
/// fails, and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    stdout(&run(cmd))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `factory-ca serve` on a free loopback port, its stdout and stderr captured. Killed on drop
/// if it is still running (a test that failed before stopping it leaves no process behind).
pub struct Service {
    child: Child,
    pub port: u16,
    stdout: Captured,
    stderr: Captured,
}

impl Service {
    /// Starts `cmd` (from [`factory_ca`], with the test's settings) as `serve`.
    pub fn start(mut cmd: Command) -> Service {
        let port = free_port();
        let mut child = cmd
            .arg("serve")
            .env("FACTORY_CA_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("factory-ca starts");
        let stdout = Captured::new(child.stdout.take().expect("piped stdout"));
        let stderr = Captured::new(child.stderr.take().expect("piped stderr"));
        Service {
            child,
            port,
            stdout,
            stderr,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.text()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits (60 s at most) until `/healthz` answers 200; panics with stderr if the process
    /// exits first.
    pub async fn ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.exited() {
                panic!("factory-ca exited early ({status}): {}", self.stderr_text());
            }
            let healthy = client
                .get(format!("{}/healthz", self.base()))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "factory-ca did not become ready: {}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        run(Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]));
    }

    /// Waits at most `limit` for the process to exit, then for its pipes to close, so that
    /// the captured output is complete.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "factory-ca did not exit within {limit:?}: {}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.stdout.finish();
        self.stderr.finish();
        status
    }

    /// SIGTERM, a bounded wait (30 s) for exit status 0, and the whole (stderr, stdout).
    pub async fn stop(mut self) -> (String, String) {
        self.signal("TERM");
        let status = self.exit_within(Duration::from_secs(30)).await;
        assert!(status.success(), "exit {status}: {}", self.stderr_text());
        (self.stderr_text(), self.stdout_text())
    }

    pub fn accepts_connections(&self) -> bool {
        std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_secs(2),
        )
        .is_ok()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
