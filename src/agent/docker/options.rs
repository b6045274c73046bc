//! How the executor confines folds, and what goes wrong talking to the engine.

use super::*;

/// How the executor confines every fold (the grant itself comes with each request).
#[derive(Clone, Debug)]
pub struct DockerOptions {
    /// Give folds the default bridge network instead of none. Off for untrusted code.
    pub allow_network: bool,
    /// Most processes (and threads) a fold may have at once.
    pub pids_limit: i64,
    /// Size of the fold's /tmp (a tmpfs: it also counts against the memory grant).
    pub tmpfs_size: u64,
    /// The container user, "uid:gid"; never root.
    pub user: String,
    /// How often CPU and memory figures are read (from the container's cgroup files when
    /// this process can see them; the engine's own stats come once a second at best).
    pub stats_interval: Duration,
    /// Names and labels this agent's containers (see `spec::container_name`); only they are
    /// listed, adopted and cleaned.
    pub namespace: String,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            allow_network: false,
            pids_limit: 256,
            tmpfs_size: 64 << 20,
            user: "1000:1000".into(),
            stats_interval: Duration::from_millis(100),
            namespace: "default".into(),
        }
    }
}

impl DockerOptions {
    /// Rejects options that would not confine untrusted code.
    pub fn check(&self) -> Result<(), String> {
        let uid = self.user.split(':').next().unwrap_or_default();
        if uid.is_empty() || uid == "0" || uid == "root" {
            return Err(format!(
                "user {:?}: folds never run as root; give a \"uid:gid\" such as \"1000:1000\"",
                self.user
            ));
        }
        if self.pids_limit <= 0 {
            return Err(format!(
                "pids_limit {}: must be a positive number (e.g. 256)",
                self.pids_limit
            ));
        }
        if self.tmpfs_size == 0 {
            return Err("tmpfs_size: must be more than 0 (e.g. 64M)".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached; the message says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// The options would not confine a fold.
    #[error("docker executor options: {0}")]
    Options(String),
    /// The engine answered with an error.
    #[error("Docker engine: {0}")]
    Engine(String),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl From<EngineError> for DockerError {
    fn from(e: EngineError) -> Self {
        DockerError::Engine(engine_message(&e))
    }
}
