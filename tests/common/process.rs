//! Running other programs from a test: one-shot commands, free loopback ports, and the output
//! of a long-running child read while it runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// A self-signed P-256 root CA made by openssl in `dir` (`key`, `cert`; CA:TRUE and
/// keyCertSign/cRLSign, both critical; 30 days), as an offline root of a ceremony would be.
pub fn openssl_root(dir: &Path, key: &str, cert: &str, subject: &str) {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        subject,
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
}

/// A loopback port that was free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Everything a child writes to one of its pipes, read on a thread of its own so that the
/// child never blocks on a full pipe.
pub struct Captured {
    buffer: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Captured {
    pub fn new(mut pipe: impl Read + Send + 'static) -> Captured {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Captured {
            buffer,
            reader: Some(reader),
        }
    }

    /// What was read so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }

    /// Waits until the pipe is closed (the child has exited), so that `text` is all of it.
    pub fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("pipe reader");
        }
    }
}
