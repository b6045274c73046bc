//! `datarun agent --listen SOCKET`: an agent daemon that masters reach with
//! `transport = "unix"`; it owns its folds across masters.

use super::BIN;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An agent daemon in its own state dir, killed when dropped.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts runner `name`'s daemon (process executor) in `dir`; its socket.
    pub fn start(dir: &Path, name: &str) -> (Daemon, PathBuf) {
        let socket = dir.join(format!("{name}.sock"));
        let child = Command::new(BIN)
            .args(["agent", "--listen"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join(name))
            .args(["--runner", name, "--executor", "process"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the agent daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the daemon did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        (Daemon { child }, socket)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
