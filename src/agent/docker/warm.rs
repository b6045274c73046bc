//! Warm containers: up to `count` containers of a runner's warm image started ahead of the
//! folds, so that a fold's container start and its interpreter's imports are paid before it
//! arrives. Each is confined as a cold fold is (`spec::host_config`, with the warm `memory` as
//! its memory cap and one CPU while it waits), runs the warm `command` with `DATARUN_WARM`
//! naming its go file, and sees only its own fresh directories: `input` (read-only), `output`
//! and `warm` (read-only, where the go appears), under `<state>/warm/<container name>/`.
//!
//! A fold whose image is the warm image, whose command starts with the warm command, with a
//! memory grant and a CPU quota and no GPUs, and whose environment sets nothing an interpreter
//! reads as it starts (`PYTHON*`, `LD_*`), claims the oldest ready one, ONCE:
//! 1. the fold's inputs move into the container's input directory and its three directories
//!    move into the attempt's (`input`, `output`, `warm`): renames on one file system, so the
//!    attempt directory holds them as the journal expects, and the container sees the fold's
//!    inputs and nothing else;
//! 2. the attempt's `warm.json` names the container (adoption checks it: labels cannot change);
//! 3. the fold's grant is applied (`docker update`: memory and memory+swap, CPU quota, pids) and
//!    the container must still run, not OOM-killed; it is renamed to the attempt's container
//!    name;
//! 4. the go (`warm/go.json`: the rest of the fold's command and its environment) is written;
//!    the time limits and the wall time count from then.
//!
//! Any failure on the way removes the container and the fold runs cold in the same
//! directories. The container is removed after the fold as a cold one is, and a new one is
//! started in its place. Warm containers never claimed are removed when the agent stops
//! (`retire`) and, left by a dead agent, when the next one starts.

use super::*;
use crate::inventory::WarmSpec;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Label of warm containers: the pid of the agent that started them.
pub const LABEL_WARM: &str = "datarun.warm";
/// Where a warm container finds its go (read-only).
pub const WARM_PATH: &str = "/datarun/warm";
/// The go file, in the warm directory.
const GO_FILE: &str = "go.json";
/// What a warm command writes in its output directory once it waits for its go: only then
/// may a fold claim it (an image without a warm mode is never given a fold).
const READY_FILE: &str = ".datarun-warm-ready";
/// In the attempt's directory: the warm directory moved there, and the claim.
const CTL_DIR: &str = "warm";
const CLAIM_FILE: &str = "warm.json";
/// How often the ready containers are looked at when nothing happens.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Numbers this process's warm containers (with its pid, their names never repeat).
static SEQ: AtomicU64 = AtomicU64::new(0);

pub(super) struct WarmPool {
    spec: WarmSpec,
    /// `<state>/warm`: one directory per warm container.
    dir: PathBuf,
    ready: Mutex<VecDeque<Idle>>,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
    /// The task keeping the pool full.
    refiller: Mutex<Option<AbortHandle>>,
}

struct Idle {
    name: String,
    dir: PathBuf,
}

/// What the go file says: the words of the fold's command after the warm command, and the
/// fold's whole environment as a cold container would have it.
#[derive(serde::Serialize)]
struct Go<'a> {
    args: &'a [String],
    env: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    container: String,
}

impl WarmPool {
    /// Whether `req` may run in one of these containers.
    fn fits(&self, req: &ExecRequest) -> bool {
        req.image.as_deref() == Some(self.spec.image.as_str())
            && req.command.starts_with(&self.spec.command)
            && req.gpus.is_empty()
            && req.memory_limit.is_some()
            && req.millicpus > 0
            && !req
                .env
                .keys()
                .any(|k| k.starts_with("PYTHON") || k.starts_with("LD_"))
    }

    /// Stops refilling without removing anything, as a killed agent would (tests).
    #[cfg(test)]
    pub(super) fn abandon(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(task) = self
            .refiller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// How many containers are started (waiting for a fold, or still preparing).
    pub(super) fn ready_count(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How many containers said they wait for a fold.
    #[cfg(test)]
    pub(super) fn waiting_count(&self) -> usize {
        let ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        ready
            .iter()
            .filter(|i| i.dir.join("output").join(READY_FILE).exists())
            .count()
    }

    /// The oldest container that said it waits for its go.
    fn take(&self) -> Option<Idle> {
        let idle = {
            let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
            let at = ready
                .iter()
                .position(|i| i.dir.join("output").join(READY_FILE).exists());
            at.and_then(|at| ready.remove(at))
        };
        if idle.is_some() {
            self.wake.notify_one();
        }
        idle
    }
}

impl DockerExecutor {
    /// Starts keeping warm containers of `spec` (directories under `dir`): first removes those
    /// a previous agent of this namespace left, then fills the pool in the background.
    pub async fn with_warm(mut self, spec: WarmSpec, dir: PathBuf) -> DockerExecutor {
        let pool = Arc::new(WarmPool {
            spec,
            dir,
            ready: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            refiller: Mutex::new(None),
        });
        self.remove_warm(None).await;
        let leftovers = pool.dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&leftovers) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("cannot clear {}: {e}", leftovers.display());
                }
            }
        })
        .await;
        self.warm = Some(pool.clone());
        let task = tokio::spawn(refill(self.clone(), pool.clone()));
        *pool.refiller.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        self
    }

    /// Stops keeping warm containers and removes the idle ones (the agent stops).
    pub async fn retire_warm(&self) {
        let Some(pool) = &self.warm else { return };
        pool.closed.store(true, Ordering::SeqCst);
        pool.wake.notify_one();
        while let Some(idle) = pool.take() {
            self.discard(&idle.name, &idle.dir).await;
        }
        self.remove_warm(Some(std::process::id())).await;
    }

    /// The idle warm containers of this namespace (all, or those started by `pid`), by name.
    pub async fn list_warm(&self, pid: Option<u32>) -> Result<Vec<String>, DockerError> {
        let prefix = format!("/{}", warm_prefix(&self.opts.namespace));
        Ok(self
            .list_labelled(LABEL_WARM)
            .await?
            .into_iter()
            .filter(|c| pid.is_none_or(|p| label(c, LABEL_WARM) == Some(&p.to_string())))
            .filter_map(|c| c.names?.into_iter().find(|n| n.starts_with(&prefix)))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// Containers of this namespace with `key` among their labels.
    pub(super) async fn list_labelled(
        &self,
        key: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
        let namespace = format!("{LABEL_NAMESPACE}={}", self.opts.namespace);
        let filters = HashMap::from([("label", vec![key, namespace.as_str()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        Ok(self.docker.list_containers(Some(options)).await?)
    }

    async fn remove_warm(&self, pid: Option<u32>) {
        match self.list_warm(pid).await {
            Ok(names) => {
                for name in names {
                    self.remove_quietly(&name).await;
                }
            }
            Err(e) => tracing::warn!("cannot list the warm containers: {e}"),
        }
    }

    async fn discard(&self, name: &str, dir: &Path) {
        self.remove_quietly(name).await;
        let dir = dir.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }

    /// Creates and starts one warm container.
    async fn start_warm(&self, pool: &WarmPool) -> Result<Idle, String> {
        let name = format!(
            "{}{}-{}",
            warm_prefix(&self.opts.namespace),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = pool.dir.join(&name);
        let req = warm_request(&pool.spec, &dir);
        let started = async {
            let prepared = {
                let (dir, req, user) = (dir.clone(), req.clone(), self.opts.user.clone());
                tokio::task::spawn_blocking(move || {
                    for sub in ["input", "output", CTL_DIR] {
                        std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                            format!("cannot create {}: {e}", dir.join(sub).display())
                        })?;
                    }
                    prepare_dirs(&req, &user)?;
                    dirs::make_readable(&dir.join(CTL_DIR), 0)
                        .map_err(|e| format!("cannot prepare {}: {e}", dir.display()))
                })
                .await
            };
            prepared.map_err(|e| e.to_string())??;
            let volumes = match self.docker.inspect_image(&pool.spec.image).await {
                Ok(info) => info.config.and_then(|c| c.volumes).unwrap_or_default(),
                Err(e) => Err(format!(
                    "image {:?}: {}",
                    pool.spec.image,
                    engine_message(&e)
                ))?,
            };
            let config = spec::warm_config(&req, &pool.spec, &self.opts, &volumes, &dir);
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            self.docker
                .create_container(Some(options), config)
                .await
                .map_err(|e| format!("cannot create {name}: {}", engine_message(&e)))?;
            self.docker
                .start_container(&name, None)
                .await
                .map_err(|e| format!("cannot start {name}: {}", engine_message(&e)))
        };
        match started.await {
            Ok(()) => Ok(Idle { name, dir }),
            Err(message) => {
                self.discard(&name, &dir).await;
                Err(message)
            }
        }
    }

    /// Claims a warm container for `req` and tells it to go (see the module's steps). Returns
    /// the container's (new) name and when it was told, or None: run cold.
    pub(super) async fn claim_warm(&self, req: &ExecRequest) -> Option<(String, SystemTime)> {
        let pool = self.warm.as_ref().filter(|p| p.fits(req))?;
        let (idle, id) = loop {
            let idle = pool.take()?;
            match self.docker.inspect_container(&idle.name, None).await {
                Ok(info) if is_running(&info) => break (idle, info.id.unwrap_or_default()),
                _ => self.discard(&idle.name, &idle.dir).await,
            }
        };
        let ctl = req.work_dir.join(CTL_DIR);
        let taken = {
            let (dir, req, ctl) = (idle.dir.clone(), req.clone(), ctl.clone());
            tokio::task::spawn_blocking(move || take_dirs(&dir, &req, &ctl)).await
        };
        if let Err(e) = taken.map_err(io::Error::other).and_then(|r| r) {
            tracing::warn!(
                "attempt {}: cannot hand warm container {} its directories ({e}); running cold",
                req.attempt,
                idle.name
            );
            self.discard(&idle.name, &idle.dir).await;
            return None;
        }
        let name = self.container_name(req.attempt);
        match self.ready_to_go(req, &idle.name, &id, &name).await {
            Ok(()) => {}
            Err(message) => {
                tracing::warn!(
                    "attempt {}: warm container {}: {message}; running cold",
                    req.attempt,
                    idle.name
                );
                self.remove_quietly(&name).await;
                let _ = std::fs::remove_file(req.work_dir.join(CLAIM_FILE));
                self.discard(&idle.name, &idle.dir).await;
                return None;
            }
        }
        let go = Go {
            args: &req.command[pool.spec.command.len()..],
            env: spec::fold_env(req),
        };
        let go = serde_json::to_vec(&go).expect("a go serializes");
        let told = {
            let path = ctl.join(GO_FILE);
            tokio::task::spawn_blocking(move || {
                crate::agent::journal::write_atomic(&path, &go, false)
            })
            .await
        };
        let at = SystemTime::now();
        if !matches!(told, Ok(Ok(()))) {
            tracing::warn!(
                "attempt {}: cannot write the go of {name} ({told:?}); running cold",
                req.attempt
            );
            self.discard(&name, &idle.dir).await;
            let _ = std::fs::remove_file(req.work_dir.join(CLAIM_FILE));
            return None;
        }
        let dir = idle.dir;
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        tracing::debug!(
            "attempt {}: runs in warm container {}",
            req.attempt,
            idle.name
        );
        Some((name, at))
    }

    /// Steps 2 and 3: the claim, the grant, the check that it still runs, the new name.
    async fn ready_to_go(
        &self,
        req: &ExecRequest,
        warm_name: &str,
        id: &str,
        name: &str,
    ) -> Result<(), String> {
        let claim = serde_json::to_vec(&Claim {
            container: id.to_string(),
        })
        .expect("a claim serializes");
        crate::agent::journal::write_atomic(&req.work_dir.join(CLAIM_FILE), &claim, false)
            .map_err(|e| format!("cannot write the claim: {e}"))?;
        let memory = req
            .memory_limit
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
        let grant = bollard::models::ContainerUpdateBody {
            memory,
            memory_swap: memory,
            nano_cpus: Some(i64::from(req.millicpus) * 1_000_000),
            pids_limit: Some(self.opts.pids_limit),
            ..Default::default()
        };
        self.docker
            .update_container(warm_name, grant)
            .await
            .map_err(|e| format!("cannot apply the grant: {}", engine_message(&e)))?;
        match self.docker.inspect_container(warm_name, None).await {
            Ok(info) if is_running(&info) => {}
            Ok(_) => Err("it stopped (or was OOM-killed) under the fold's grant")?,
            Err(e) => Err(format!("cannot inspect it: {}", engine_message(&e)))?,
        }
        let options = bollard::query_parameters::RenameContainerOptionsBuilder::default()
            .name(name)
            .build();
        self.docker
            .rename_container(warm_name, options)
            .await
            .map_err(|e| format!("cannot rename it to {name}: {}", engine_message(&e)))
    }

    /// For adoption: when a claimed warm container (`id`) running the attempt of `work_dir`
    /// was told to go; None if it never was. Err if the attempt never claimed it.
    pub(super) fn warm_go(work_dir: &Path, id: &str) -> Result<Option<SystemTime>, String> {
        let claim: Claim = std::fs::read(work_dir.join(CLAIM_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("the attempt claimed no warm container")?;
        if claim.container != id {
            return Err(format!(
                "the attempt claimed warm container {}, not this one",
                claim.container
            ));
        }
        match std::fs::metadata(work_dir.join(CTL_DIR).join(GO_FILE)) {
            Ok(meta) => Ok(Some(meta.modified().unwrap_or_else(|_| SystemTime::now()))),
            Err(_) => Ok(None),
        }
    }
}

/// Keeps the pool full: starts containers while fewer than `count` are ready, removes those
/// that stopped while they waited, and backs off (up to 5 minutes) while starting fails or
/// containers do not stay up (an image whose command has no warm mode exits at once).
async fn refill(exec: DockerExecutor, pool: Arc<WarmPool>) {
    let mut backoff = Duration::ZERO;
    loop {
        if pool.closed.load(Ordering::SeqCst) {
            return;
        }
        if exec.prune(&pool).await {
            backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
            tokio::time::sleep(backoff).await;
            continue;
        }
        if pool.ready_count() < pool.spec.count as usize {
            match exec.start_warm(&pool).await {
                Ok(idle) if pool.closed.load(Ordering::SeqCst) => {
                    exec.discard(&idle.name, &idle.dir).await;
                }
                Ok(idle) => {
                    pool.ready
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_back(idle);
                }
                Err(message) => {
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                    tracing::warn!(
                        "cannot start a warm container: {message}; trying again in {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                }
            }
            continue;
        }
        backoff = Duration::ZERO;
        tokio::select! {
            _ = pool.wake.notified() => {}
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

impl DockerExecutor {
    /// Removes the ready containers that no longer run; true if any had stopped.
    async fn prune(&self, pool: &WarmPool) -> bool {
        let names: Vec<String> = pool
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|i| i.name.clone())
            .collect();
        let mut stopped = false;
        for name in names {
            let alive = match self.docker.inspect_container(&name, None).await {
                Ok(info) if is_running(&info) => true,
                Ok(info) => {
                    let code = info.state.and_then(|s| s.exit_code).unwrap_or(-1);
                    tracing::warn!(
                        "warm container {name} stopped before any fold (exit code {code}): does {:?} have a warm mode?",
                        pool.spec.command
                    );
                    false
                }
                Err(e) if status(&e) == Some(404) => false,
                Err(_) => true,
            };
            if !alive {
                stopped = true;
                let idle = {
                    let mut ready = pool.ready.lock().unwrap_or_else(|e| e.into_inner());
                    let at = ready.iter().position(|i| i.name == name);
                    at.and_then(|at| ready.remove(at))
                };
                if let Some(idle) = idle {
                    self.discard(&idle.name, &idle.dir).await;
                }
            }
        }
        stopped
    }
}

/// `datarun-<ns>-warm-`: the names of warm containers not claimed yet.
fn warm_prefix(namespace: &str) -> String {
    format!("datarun-{namespace}-warm-")
}

fn label<'c>(c: &'c bollard::models::ContainerSummary, key: &str) -> Option<&'c String> {
    c.labels.as_ref()?.get(key)
}

fn is_running(info: &bollard::models::ContainerInspectResponse) -> bool {
    let state = info.state.as_ref();
    state.and_then(|s| s.running).unwrap_or(false)
        && !state.and_then(|s| s.oom_killed).unwrap_or(false)
}

/// The request a warm container is created from: its own directories, the warm memory cap,
/// one CPU, the engine log's largest size (the fold's own limit is not known yet).
pub(super) fn warm_request(spec: &WarmSpec, dir: &Path) -> ExecRequest {
    ExecRequest {
        attempt: 0,
        fold: 0,
        runner: String::new(),
        image: Some(spec.image.clone()),
        command: spec.command.clone(),
        env: BTreeMap::new(),
        work_dir: dir.to_path_buf(),
        input_dir: dir.join("input"),
        output_dir: dir.join("output"),
        memory_limit: Some(spec.memory),
        millicpus: 1000,
        soft_limit: None,
        hard_limit: None,
        gpus: vec![],
        log_limit: crate::protocol::MAX_LOG,
        output_limit: 0,
    }
}

/// Step 1: the fold's inputs into the warm input directory, then the warm directories into
/// the attempt's. Blocking. Until the input directory is swapped, a failure puts the inputs
/// back; after it, the attempt's directories work for a cold container as well.
fn take_dirs(warm: &Path, req: &ExecRequest, ctl: &Path) -> io::Result<()> {
    let (input, output) = (&req.input_dir, &req.output_dir);
    std::fs::remove_file(warm.join("output").join(READY_FILE))?;
    if std::fs::read_dir(warm.join("output"))?.next().is_some() {
        return Err(io::Error::other(
            "it wrote to its output directory before its go",
        ));
    }
    let mut moved = Vec::new();
    let swapped = (|| {
        for entry in std::fs::read_dir(input)? {
            let name = entry?.file_name();
            std::fs::rename(input.join(&name), warm.join("input").join(&name))?;
            moved.push(name);
        }
        // Replaces the attempt's input directory, empty now.
        std::fs::rename(warm.join("input"), input)
    })();
    if let Err(e) = swapped {
        for name in moved {
            let _ = std::fs::rename(warm.join("input").join(&name), input.join(&name));
        }
        return Err(e);
    }
    std::fs::rename(warm.join("output"), output)?;
    std::fs::rename(warm.join(CTL_DIR), ctl)?;
    dirs::make_readable(input, 0)
}
