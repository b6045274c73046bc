//! Where the agent lives on an ssh runner: one place for the paths that provisioning creates and
//! the master's ssh transport uses.
//!
//! ```text
//! <state_dir>/            RunnerSpec::remote_state_dir(), default /var/lib/datarun
//!     bin/datarun         the agent (the datarun binary itself)
//!     bin/datarun-supervise  restarts the agent on hosts without systemd
//!     agent/              the agent's journal (its --state-dir)
//!     agent.sock          the daemon's socket (--listen, --connect, --ping)
//!     agent.log           the daemon's stderr when it runs without systemd
//!     agent.pid           the supervisor's pid when it runs without systemd
//! ```

use std::path::{Path, PathBuf};

use crate::inventory::RunnerSpec;

/// The systemd unit that runs the agent on hosts with systemd.
pub const SYSTEMD_UNIT: &str = "datarun-agent.service";
/// The system user the agent runs as.
pub const AGENT_USER: &str = "datarun";

/// The agent's paths on one runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLayout {
    root: PathBuf,
}

impl RemoteLayout {
    /// The layout under `root` (the runner's state dir).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RemoteLayout { root: root.into() }
    }

    /// The layout of an inventory runner (its `state_dir`, else the default).
    pub fn for_runner(runner: &RunnerSpec) -> Self {
        RemoteLayout::new(runner.remote_state_dir())
    }

    /// The state dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `bin/`.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// `bin/datarun`: the agent binary.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin/datarun")
    }

    /// `bin/datarun-supervise`: the supervisor script (hosts without systemd).
    pub fn supervisor(&self) -> PathBuf {
        self.root.join("bin/datarun-supervise")
    }

    /// `agent/`: the agent's journal, its `--state-dir`.
    pub fn state(&self) -> PathBuf {
        self.root.join("agent")
    }

    /// `agent.sock`: the daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }

    /// `agent.log`: the daemon's stderr (hosts without systemd).
    pub fn log(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    /// `agent.pid`: the supervisor's pid (hosts without systemd).
    pub fn pid(&self) -> PathBuf {
        self.root.join("agent.pid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_hang_off_the_state_dir() {
        let l = RemoteLayout::new("/srv/dr");
        assert_eq!(l.bin(), PathBuf::from("/srv/dr/bin/datarun"));
        assert_eq!(l.state(), PathBuf::from("/srv/dr/agent"));
        assert_eq!(l.socket(), PathBuf::from("/srv/dr/agent.sock"));
        assert_eq!(l.log(), PathBuf::from("/srv/dr/agent.log"));
        assert_eq!(l.pid(), PathBuf::from("/srv/dr/agent.pid"));
        let r = crate::inventory::parse(
            "[[runner]]\nname = \"a\"\naddress = \"10.0.0.1\"\n",
            "runners.toml",
        )
        .unwrap();
        assert_eq!(
            RemoteLayout::for_runner(&r.runners[0]).root(),
            Path::new(crate::inventory::DEFAULT_STATE_DIR)
        );
    }
}
